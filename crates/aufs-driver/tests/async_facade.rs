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
    let d = Driver::init(
        DriverConfig::new("/r"),
        Ports {
            fs: Arc::new(MemFs::new()),
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
