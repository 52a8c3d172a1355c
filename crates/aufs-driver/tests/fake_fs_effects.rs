//! Effects on the filesystem that only the in-memory fake can observe
//! cheaply: modes, owners, id maps, and what is left after failures.

use aufs_driver::{CreateOpts, Driver, DriverConfig, DriverError, Ports, RefStore};
use aufs_model::{IdMap, IdMappings, LayerId};
use aufs_ports::fakes::{FakeHost, FakeUnionBackend, FsOp, MemFs};
use aufs_ports::{BackendKind, InProcessLocks};
use std::sync::Arc;

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

fn open(fs: &Arc<MemFs>, host: FakeHost, config: DriverConfig) -> Result<Driver, DriverError> {
    Driver::init(
        config,
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
            fs: fs.clone(),
            host: Arc::new(host),
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
}

#[test]
fn dirs_get_go_modes_and_mapped_root_owner() {
    let fs = Arc::new(MemFs::new());
    let mut config = DriverConfig::new("/r");
    config.id_maps = IdMappings {
        uids: vec![IdMap {
            container_id: 0,
            host_id: 100000,
            size: 65536,
        }],
        gids: vec![IdMap {
            container_id: 0,
            host_id: 200000,
            size: 65536,
        }],
    };
    let d = open(&fs, FakeHost::default(), config).unwrap();
    for p in ["/r", "/r/mnt", "/r/diff", "/r/layers"] {
        assert_eq!(
            fs.dir_meta(p.into()),
            Some((0o700, (100000, 200000))),
            "{p}"
        );
    }
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    assert_eq!(
        fs.dir_meta("/r/diff/1".into()),
        Some((0o755, (100000, 200000)))
    );
    assert_eq!(
        fs.dir_meta("/r/mnt/1".into()),
        Some((0o755, (100000, 200000)))
    );
}

#[test]
fn not_root_keeps_callers_own_ids() {
    let fs = Arc::new(MemFs::new());
    let host = FakeHost {
        ids: (1000, 1000),
        ..FakeHost::default()
    };
    let mut config = DriverConfig::new("/home/u/aufs");
    // Even with maps, an unprivileged caller cannot chown: no owner is set.
    config.id_maps.uids.push(IdMap {
        container_id: 0,
        host_id: 5,
        size: 1,
    });
    let d = open(&fs, host, config).unwrap();
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    // MemFs records (0, 0) for "no owner given".
    assert_eq!(
        fs.dir_meta("/home/u/aufs/diff/1".into()),
        Some((0o755, (0, 0)))
    );
}

#[test]
fn unmapped_root_is_a_clear_error() {
    let fs = Arc::new(MemFs::new());
    let mut config = DriverConfig::new("/r");
    config.id_maps.uids.push(IdMap {
        container_id: 1,
        host_id: 5,
        size: 1,
    });
    let e = open(&fs, FakeHost::default(), config).unwrap_err();
    assert!(e.to_string().contains("uid 0 is not mapped"), "{e}");
}

#[test]
fn full_disk_on_create_leaves_nothing_behind() {
    let fs = Arc::new(MemFs::new());
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    let before = fs.all_paths();
    fs.fail(FsOp::Write, Some("/r/layers/1".into()), libc::ENOSPC, 1);
    let e = d
        .create(&id("1"), None, &CreateOpts::default())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    assert!(e.to_string().contains("layers/1"), "{e}");
    assert_eq!(fs.all_paths(), before);
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
}

#[test]
fn interrupted_remove_is_finished_by_next_init() {
    let fs = Arc::new(MemFs::new());
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    // The removal "crashes" once the layer is marked and its layers file gone.
    fs.fail(FsOp::RemoveAll, Some("/r/removing/1".into()), libc::EIO, 1);
    assert!(d.remove(&id("1")).is_err());
    assert!(!d.exists(&id("1")));
    assert!(d.list().unwrap().is_empty());
    assert!(fs.dir_meta("/r/diff/1".into()).is_some());
    drop(d);
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    for left in [
        "/r/diff/1",
        "/r/mnt/1",
        "/r/removing/1",
        "/r/layers/1",
        "/r/incomplete/1",
    ] {
        assert!(
            !fs.all_paths().iter().any(|p| p.as_str() == left),
            "{left} left"
        );
    }
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    assert!(d.exists(&id("1")));
}

#[test]
fn interrupted_create_is_undone_by_next_init() {
    let fs = Arc::new(MemFs::new());
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    // The create "crashes" after its dirs, before its layers file: the
    // marker it wrote first stays (the failed write cannot clear it either).
    fs.fail(FsOp::Write, Some("/r/layers/1".into()), libc::EIO, 1);
    fs.fail(
        FsOp::RemoveFile,
        Some("/r/incomplete/1".into()),
        libc::EIO,
        1,
    );
    assert!(d.create(&id("1"), None, &CreateOpts::default()).is_err());
    assert!(!d.exists(&id("1")));
    drop(d);
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    assert!(!fs.all_paths().iter().any(|p| p.as_str().ends_with("/1")));
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
}

/// `cleanup` recovers too: what a process that died after this driver
/// started left is gone, and a layer whose lock is held is left alone.
#[test]
fn cleanup_recovers_what_dead_processes_left_but_not_live_work() {
    let fs = Arc::new(MemFs::new());
    let locks = Arc::new(InProcessLocks::new());
    let d = Driver::init(
        DriverConfig::new("/r"),
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
            fs: fs.clone(),
            host: Arc::new(FakeHost::default()),
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            locks: locks.clone(),
        },
    )
    .unwrap();
    d.create(&id("dead"), None, &CreateOpts::default()).unwrap();
    d.create(&id("busy"), None, &CreateOpts::default()).unwrap();
    let mkdir = |p: &str| {
        aufs_ports::Filesystem::create_dir_all(fs.as_ref(), p.into(), 0o700, None).unwrap()
    };
    let touch = |p: &str| aufs_ports::Filesystem::write_new(fs.as_ref(), p.into(), b"").unwrap();
    mkdir("/r/tar-split");
    for layer in ["dead", "busy"] {
        mkdir(&format!("/r/staging/{layer}/.aufs-apply-x/tree"));
        touch(&format!("/r/incomplete/{layer}"));
        touch(&format!("/r/tar-split/{layer}.tar-split.gz.seal.tmp-77"));
        touch(&format!("/r/layers/.{layer}.77-0-1f.tmp"));
    }
    // Not the store's: no valid layer id names it.
    mkdir("/r/staging/stray-removing");
    let held = aufs_ports::LayerLocks::lock(locks.as_ref(), "busy").unwrap();
    d.cleanup().unwrap();
    let left: Vec<String> = fs.all_paths().iter().map(|p| p.to_string()).collect();
    assert!(!left.iter().any(|p| p.contains("dead")), "{left:?}");
    for kept in [
        "/r/staging/busy",
        "/r/incomplete/busy",
        "/r/tar-split/busy.tar-split.gz.seal.tmp-77",
        "/r/layers/.busy.77-0-1f.tmp",
        "/r/layers/busy",
        "/r/staging/stray-removing",
    ] {
        assert!(left.iter().any(|p| p == kept), "{kept} removed: {left:?}");
    }
    drop(held);
    d.cleanup().unwrap();
    let left: Vec<String> = fs.all_paths().iter().map(|p| p.to_string()).collect();
    assert!(!left.iter().any(|p| p.contains("busy")), "{left:?}");
}

#[test]
fn removal_never_touches_a_dir_it_did_not_rename() {
    let fs = Arc::new(MemFs::new());
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    aufs_ports::Filesystem::create_dir_all(fs.as_ref(), "/r/diff/1-removing/x".into(), 0o755, None)
        .unwrap();
    d.remove(&id("1")).unwrap();
    assert!(fs.dir_meta("/r/diff/1-removing/x".into()).is_some());
    assert!(fs.dir_meta("/r/diff/1".into()).is_none());
    assert!(fs.dir_meta("/r/removing/1".into()).is_none());
}

/// Layers made with `await_apply` are absent until an apply fills them.
#[test]
fn awaited_layer_exists_only_once_applied() {
    let fs = Arc::new(MemFs::new());
    let mut config = DriverConfig::new("/r");
    config.await_apply = true;
    let locks = Arc::new(InProcessLocks::new());
    let open_shared = |config| {
        Driver::init(
            config,
            Ports {
                archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
                fs: fs.clone(),
                host: Arc::new(FakeHost::default()),
                backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
                locks: locks.clone(),
            },
        )
        .unwrap()
    };
    let d = open_shared(config);
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    assert!(!d.exists(&id("1")));
    assert!(d.layer_ids().unwrap().is_empty());
    // Still this driver's: a second create is refused, its chain readable.
    assert!(d.create(&id("1"), None, &CreateOpts::default()).is_err());
    assert!(d.parent_chain(&id("1")).is_ok());
    // Another driver on the same root and locks neither sees it nor, while
    // this one holds its claim, recovers it.
    let other = open_shared(DriverConfig::new("/r"));
    assert!(other.parent_chain(&id("1")).is_err());
    assert!(matches!(
        other.remove(&id("1")),
        Err(DriverError::NotFound(_))
    ));
    assert!(fs.all_paths().iter().any(|p| p.as_str() == "/r/layers/1"));
    d.remove(&id("1")).unwrap();
    assert!(!fs.all_paths().iter().any(|p| p.as_str().ends_with("/1")));
}

#[test]
fn garbage_layers_file_names_file_and_line() {
    let fs = Arc::new(MemFs::new());
    let d = open(&fs, FakeHost::default(), DriverConfig::new("/r")).unwrap();
    aufs_ports::Filesystem::write_new(fs.as_ref(), "/r/layers/bad".into(), b"ok\n../../etc\n")
        .unwrap();
    let e = d.parent_chain(&id("bad")).unwrap_err();
    assert!(e.to_string().contains("/r/layers/bad: line 2"), "{e}");
}

#[test]
fn on_disk_refs_are_shared_by_driver_instances() {
    let fs = Arc::new(MemFs::new());
    let backend = Arc::new(FakeUnionBackend::new(BackendKind::Fuse));
    let open = || {
        let mut c = DriverConfig::new("/r");
        c.refs = RefStore::OnDisk;
        Driver::init(
            c,
            Ports {
                archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
                fs: fs.clone(),
                host: Arc::new(FakeHost::default()),
                backend: backend.clone(),
                locks: Arc::new(InProcessLocks::new()),
            },
        )
        .unwrap()
    };
    let a = open();
    a.create(&id("1"), None, &CreateOpts::default()).unwrap();
    a.create(&id("2"), Some(&id("1")), &CreateOpts::default())
        .unwrap();
    a.get(&id("2"), "").unwrap();
    let b = open();
    b.get(&id("2"), "").unwrap();
    assert_eq!(
        backend.history().len(),
        1,
        "second process must not mount again"
    );
    open().put(&id("2")).unwrap();
    assert_eq!(backend.mounted().len(), 1);
    open().put(&id("2")).unwrap();
    assert!(backend.mounted().is_empty());
}

#[test]
fn stale_union_is_unmounted_and_mounted_again() {
    let fs = Arc::new(MemFs::new());
    let backend = Arc::new(FakeUnionBackend::new(BackendKind::Fuse));
    let d = Driver::init(
        DriverConfig::new("/r"),
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
            fs: fs.clone(),
            host: Arc::new(FakeHost::default()),
            backend: backend.clone(),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap();
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    d.create(&id("2"), Some(&id("1")), &CreateOpts::default())
        .unwrap();
    d.get(&id("2"), "").unwrap();
    // The server dies: the mount point answers ENOTCONN.
    fs.fail(FsOp::Kind, Some("/r/mnt/2".into()), libc::ENOTCONN, 1);
    d.get(&id("2"), "").unwrap();
    assert_eq!(
        backend.history().len(),
        2,
        "stale union must be mounted again"
    );
    assert_eq!(backend.mounted().len(), 1);
    assert_eq!(d.references(&id("2")).unwrap(), 2);
    // A healthy mount is not touched.
    d.get(&id("2"), "").unwrap();
    assert_eq!(backend.history().len(), 2);
}
