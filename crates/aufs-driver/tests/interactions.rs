//! Interactions that matter, checked with mockall: order of effects.

use aufs_driver::{CreateOpts, Driver, DriverConfig, Ports};
use aufs_model::LayerId;
use aufs_ports::fakes::{FakeHost, MemFs};
use aufs_ports::{BackendKind, InProcessLocks, MockUnionBackend};
use mockall::Sequence;
use std::sync::Arc;

/// Remove unmounts before it touches the layer's files, and a failed
/// unmount leaves the layer intact.
#[test]
fn remove_unmounts_before_renaming() {
    let fs = Arc::new(MemFs::new());
    let mut backend = MockUnionBackend::new();
    let mut seq = Sequence::new();
    backend.expect_kind().return_const(BackendKind::Fuse);
    backend.expect_dirperm1_supported().return_const(false);
    backend
        .expect_is_mounted()
        .withf(|p| p.as_str() == "/r/mnt/2")
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(true));
    backend
        .expect_unmount()
        .withf(|p| p.as_str() == "/r/mnt/2")
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(aufs_ports::errno(libc::EBUSY)));
    let d = Driver::init(
        DriverConfig::new("/r"),
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
            fs: fs.clone(),
            host: Arc::new(FakeHost::default()),
            backend: Arc::new(backend),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap();
    let one = LayerId::new("1").unwrap();
    let two = LayerId::new("2").unwrap();
    d.create(&one, None, &CreateOpts::default()).unwrap();
    d.create(&two, Some(&one), &CreateOpts::default()).unwrap();
    let e = d.remove(&two).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    assert!(d.exists(&two), "layer touched although unmount failed");
    assert!(fs.dir_meta("/r/diff/2".into()).is_some());
}

/// Get mounts exactly once for concurrent first references.
#[test]
fn concurrent_first_gets_mount_once() {
    let fs = Arc::new(MemFs::new());
    let mounted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut backend = MockUnionBackend::new();
    backend.expect_kind().return_const(BackendKind::Fuse);
    let m = mounted.clone();
    backend
        .expect_is_mounted()
        .returning(move |_| Ok(m.load(std::sync::atomic::Ordering::SeqCst)));
    let m = mounted.clone();
    backend.expect_mount().times(1).returning(move |_| {
        m.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    let d = Arc::new(
        Driver::init(
            DriverConfig::new("/r"),
            Ports {
                archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
                fs,
                host: Arc::new(FakeHost::default()),
                backend: Arc::new(backend),
                locks: Arc::new(InProcessLocks::new()),
            },
        )
        .unwrap(),
    );
    let one = LayerId::new("1").unwrap();
    let two = LayerId::new("2").unwrap();
    d.create(&one, None, &CreateOpts::default()).unwrap();
    d.create(&two, Some(&one), &CreateOpts::default()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| d.get(&two, "").unwrap());
        }
    });
    assert_eq!(d.references(&two).unwrap(), 8);
}
