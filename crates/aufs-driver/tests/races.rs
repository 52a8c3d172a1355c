//! A create racing the removal of its parent never leaves an orphan.

use aufs_driver::{CreateOpts, Driver, DriverConfig, Ports};
use aufs_model::LayerId;
use aufs_ports::fakes::{FakeHost, FakeUnionBackend, MemFs};
use aufs_ports::{BackendKind, DirEntry, FileKind, Filesystem, InProcessLocks};
use camino::{Utf8Path, Utf8PathBuf};
use std::io;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

/// A [`MemFs`] that runs `hook` once, just before the first removal of
/// `trigger`: the point where a removal has decided there are no children.
struct Paused {
    inner: MemFs,
    trigger: Utf8PathBuf,
    #[allow(clippy::type_complexity)]
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Paused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paused")
            .field("trigger", &self.trigger)
            .finish()
    }
}

impl Filesystem for Paused {
    fn kind(&self, path: &Utf8Path) -> io::Result<Option<FileKind>> {
        self.inner.kind(path)
    }
    fn create_dir_all(
        &self,
        path: &Utf8Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        self.inner.create_dir_all(path, mode, owner)
    }
    fn read_to_string(&self, path: &Utf8Path) -> io::Result<String> {
        self.inner.read_to_string(path)
    }
    fn write_new(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()> {
        self.inner.write_new(path, data)
    }
    fn write_replace(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()> {
        self.inner.write_replace(path, data)
    }
    fn remove_file(&self, path: &Utf8Path) -> io::Result<()> {
        if path == self.trigger {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Utf8Path, to: &Utf8Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_all(&self, path: &Utf8Path) -> io::Result<()> {
        self.inner.remove_all(path)
    }
    fn read_dir(&self, path: &Utf8Path) -> io::Result<Vec<DirEntry>> {
        self.inner.read_dir(path)
    }
    fn make_temp_dir(&self, prefix: &str) -> io::Result<Utf8PathBuf> {
        self.inner.make_temp_dir(prefix)
    }
}

/// Removing `parent` pauses after its check for children while a create of
/// a child runs (given a moment to finish). The create must wait for the
/// removal and then fail, not slip a child under a parent being removed.
#[test]
fn create_racing_the_removal_of_its_parent_leaves_no_orphan() {
    let fs = Arc::new(Paused {
        inner: MemFs::new(),
        trigger: "/r/layers/parent".into(),
        hook: Mutex::new(None),
    });
    let driver: Arc<OnceLock<Driver>> = Arc::new(OnceLock::new());
    let d = Driver::init(
        DriverConfig::new("/r"),
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(Arc::new(MemFs::new()))),
            fs: fs.clone(),
            host: Arc::new(FakeHost::default()),
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap();
    d.create(&id("parent"), None, &CreateOpts::default())
        .unwrap();
    let _ = driver.set(d);
    let (done_tx, done_rx) = mpsc::channel();
    let racer = {
        let driver = driver.clone();
        let (tx, rx) = mpsc::channel();
        *fs.hook.lock().unwrap() = Some(Box::new(move || {
            let _ = tx.send(());
            // The create gets a moment; with the parent locked it waits.
            let _ = done_rx.recv_timeout(Duration::from_millis(300));
        }));
        std::thread::spawn(move || {
            rx.recv().unwrap();
            let d = driver.get().unwrap();
            let r = d.create(&id("child"), Some(&id("parent")), &CreateOpts::default());
            let _ = done_tx.send(());
            r
        })
    };
    let d = driver.get().unwrap();
    d.remove(&id("parent")).unwrap();
    let created = racer.join().unwrap();
    assert!(!d.exists(&id("parent")));
    assert!(
        created.is_err(),
        "a child was created under a parent being removed"
    );
    assert!(!d.exists(&id("child")), "orphan left");
    assert!(d.layer_ids().unwrap().is_empty());
}
