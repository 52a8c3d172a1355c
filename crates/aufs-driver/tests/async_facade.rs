//! The async facade drives the same driver from tokio.

use aufs_driver::async_facade::{AsyncDriver, AsyncGraphDriver};
use aufs_driver::{CreateOpts, Driver, DriverConfig, Ports};
use aufs_model::LayerId;
use aufs_ports::fakes::{FakeHost, FakeUnionBackend, MemFs};
use aufs_ports::{BackendKind, InProcessLocks};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_lifecycle() {
    let backend = Arc::new(FakeUnionBackend::new(BackendKind::Fuse));
    let fs = Arc::new(MemFs::new());
    let d = Driver::init(
        DriverConfig::new("/r"),
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(fs.clone())),
            fs,
            host: Arc::new(FakeHost::default()),
            backend: backend.clone(),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap();
    let d = AsyncDriver::new(Arc::new(d));
    let base = LayerId::new("base").unwrap();
    d.create(base.clone(), None, CreateOpts::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let d = d.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let l = LayerId::new(format!("c{i}")).unwrap();
                d.create_read_write(l.clone(), Some(base), CreateOpts::default())
                    .await
                    .unwrap();
                let p = d.get(l.clone(), String::new()).await.unwrap();
                assert_eq!(p.as_str(), format!("/r/mnt/c{i}"));
                d.put(l.clone()).await.unwrap();
                d.remove(l).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(d.exists(base.clone()).await);
    assert_eq!(d.list().await.unwrap().len(), 1);
    assert_eq!(d.status().await.unwrap().dirs, 1);
    assert_eq!(backend.history().len(), 16);
    assert!(backend.mounted().is_empty());
    d.cleanup().await.unwrap();
}

/// Layer archives through the facade, on the real filesystem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_apply_diff_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = camino::Utf8PathBuf::from_path_buf(tmp.path().join("aufs")).unwrap();
    let d = Driver::init(
        DriverConfig::new(root.clone()),
        Ports {
            archive: Arc::new(aufs_archive::DiskArchive),
            fs: Arc::new(aufs_linux::LinuxFilesystem::new()),
            host: Arc::new(aufs_linux::LinuxHost::new()),
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap();
    let d = AsyncDriver::new(Arc::new(d));
    let l = LayerId::new("l").unwrap();
    d.create(l.clone(), None, CreateOpts::default())
        .await
        .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(7);
    h.set_size(5);
    b.append_data(&mut h, "hello", &b"world"[..]).unwrap();
    let input = b.into_inner().unwrap();
    let out = d
        .apply_diff(
            l.clone(),
            None,
            Box::new(std::io::Cursor::new(input.clone())),
        )
        .await
        .unwrap();
    assert_eq!(out.size, 5);
    assert_eq!(d.diff_size(l.clone(), None).await.unwrap(), 5);
    let changes = d.changes(l.clone(), None).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].to_string(), "A /hello");
    let shared = Arc::new(std::sync::Mutex::new(Vec::new()));
    d.diff(l, None, Box::new(SharedBuf(shared.clone())))
        .await
        .unwrap();
    assert!(
        *shared.lock().unwrap() == input,
        "exact bytes through the facade"
    );
    // The same tarball from a file (mapped) into another layer.
    let file = tmp.path().join("layer.tar");
    std::fs::write(&file, &input).unwrap();
    let m = LayerId::new("m").unwrap();
    d.create(m.clone(), None, CreateOpts::default())
        .await
        .unwrap();
    let out = d
        .apply_diff_file(m.clone(), None, std::fs::File::open(&file).unwrap())
        .await
        .unwrap();
    assert_eq!(out.size, 5);
    assert_eq!(out.diff_id, {
        let again = d
            .apply_diff(
                m.clone(),
                None,
                Box::new(std::io::Cursor::new(input.clone())),
            )
            .await
            .unwrap();
        again.diff_id
    });
    let shared = Arc::new(std::sync::Mutex::new(Vec::new()));
    d.diff(m, None, Box::new(SharedBuf(shared.clone())))
        .await
        .unwrap();
    assert!(*shared.lock().unwrap() == input, "exact bytes from a file");
}

struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
