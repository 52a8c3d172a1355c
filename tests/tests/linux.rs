//! The driver suite on the real Linux adapters, each rig on a tmpfs of its
//! own:
//!
//! - [`RealFsOnTmpfs`]: real files, host and `flock` locks, with a union
//!   backend that only keeps a table (no union mounts needed), plus checks
//!   of what only a real filesystem shows: modes, owners, exact layers
//!   files, no leftover temp files, reference counts shared on disk by two
//!   driver instances as two processes would.
//! - [`KernelAufsReal`]: everything real, unions mounted by kernel aufs;
//!   runs only where `/proc/filesystems` lists `aufs`.
//!
//! Mounting a tmpfs needs root: every test prints why it skips and passes
//! when not root.

mod support;

use aufs_driver::kernel::KernelAufs;
use aufs_driver::support::lists_aufs;
use aufs_driver::{CreateOpts, Driver, DriverConfig, Ports, RefStore};
use aufs_linux::{FlockLocks, LinuxFilesystem, LinuxHost, LinuxMounter};
use aufs_model::LayerId;
use aufs_ports::fakes::FakeUnionBackend;
use aufs_ports::{BackendKind, LayerLocks, SystemClock, UnionBackend};
use aufs_tests::{driver_suite, Rig};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use support::Tmpfs;

/// Whether the running kernel has aufs, read straight from `/proc`.
fn kernel_lists_aufs() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| lists_aufs(&s))
        .unwrap_or(false)
}

/// Real filesystem, host and flock locks on a tmpfs; unions are only
/// recorded by a fake backend.
#[derive(Debug)]
struct RealFsOnTmpfs {
    backend: Arc<FakeUnionBackend>,
    locks: FlockLocks,
    tmpfs: Tmpfs,
}

impl RealFsOnTmpfs {
    fn new() -> Option<Self> {
        let tmpfs = Tmpfs::for_rig("RealFsOnTmpfs", false)?;
        Some(RealFsOnTmpfs {
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            locks: FlockLocks::new(tmpfs.lock_dir()).expect("lock dir"),
            tmpfs,
        })
    }

    /// The ports of another process on the same root: its own filesystem,
    /// host and lock objects over the same lock dir. The mount table (the
    /// fake backend) is the one thing processes share.
    fn ports_of_another_process(&self) -> Ports {
        let locks = FlockLocks::new(self.tmpfs.lock_dir()).expect("lock dir");
        support::real_ports(self.backend.clone(), &locks)
    }

    /// A driver keeping reference counts under the root.
    fn on_disk_driver(&self) -> Driver {
        let config = DriverConfig {
            refs: RefStore::OnDisk,
            ..DriverConfig::new(self.root())
        };
        Driver::init(config, self.ports_of_another_process()).expect("driver init")
    }
}

impl Rig for RealFsOnTmpfs {
    fn root(&self) -> Utf8PathBuf {
        self.tmpfs.root()
    }
    fn ports(&self) -> Ports {
        support::real_ports(self.backend.clone(), &self.locks)
    }
    fn is_mounted(&self, path: &Utf8Path) -> bool {
        self.backend.is_mounted(path).unwrap()
    }
    fn path_exists(&self, path: &Utf8Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }
    fn make_dir(&self, path: &Utf8Path) {
        std::fs::create_dir_all(path).unwrap();
    }
}

/// Everything real: kernel aufs over `mount(2)` on a tmpfs.
#[derive(Debug)]
struct KernelAufsReal {
    locks: FlockLocks,
    tmpfs: Tmpfs,
}

impl KernelAufsReal {
    fn new() -> Option<Self> {
        if !kernel_lists_aufs() {
            support::skip("KernelAufsReal", "/proc/filesystems does not list aufs");
            return None;
        }
        let tmpfs = Tmpfs::for_rig("KernelAufsReal", false)?;
        Some(KernelAufsReal {
            locks: FlockLocks::new(tmpfs.lock_dir()).expect("lock dir"),
            tmpfs,
        })
    }
}

impl Rig for KernelAufsReal {
    fn root(&self) -> Utf8PathBuf {
        self.tmpfs.root()
    }
    fn ports(&self) -> Ports {
        let fs = Arc::new(LinuxFilesystem::new());
        let host = Arc::new(LinuxHost::new());
        Ports {
            archive: Arc::new(aufs_archive::DiskArchive),
            fs: fs.clone(),
            host: host.clone(),
            backend: Arc::new(KernelAufs::new(
                Arc::new(LinuxMounter::new()),
                fs,
                host,
                Arc::new(SystemClock),
            )),
            locks: Arc::new(self.locks.clone()),
        }
    }
    fn is_mounted(&self, path: &Utf8Path) -> bool {
        support::mounted_at(path, |t| t == "aufs")
    }
    fn path_exists(&self, path: &Utf8Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }
    fn make_dir(&self, path: &Utf8Path) {
        std::fs::create_dir_all(path).unwrap();
    }
}

mod real_fs_on_tmpfs {
    use super::*;
    driver_suite!(rig_or_skip!(RealFsOnTmpfs::new()));
}

mod kernel_aufs_real {
    use super::*;
    driver_suite!(rig_or_skip!(KernelAufsReal::new()));
}

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

fn opts() -> CreateOpts {
    CreateOpts::default()
}

fn mode_of(path: &Utf8Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {path}: {e}"))
        .mode()
}

fn names_in(dir: &Utf8Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn root_dirs_are_private_and_layer_dirs_open() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    let root = rig.root();
    for dir in [
        root.clone(),
        root.join("layers"),
        root.join("diff"),
        root.join("mnt"),
    ] {
        let mode = mode_of(&dir);
        assert_eq!(mode & libc::S_IFMT, libc::S_IFDIR, "{dir} is not a dir");
        assert_eq!(mode & 0o7777, 0o700, "mode of {dir}: {:o}", mode & 0o7777);
    }
    for dir in [root.join("diff/1"), root.join("mnt/1")] {
        let mode = mode_of(&dir);
        assert_eq!(mode & libc::S_IFMT, libc::S_IFDIR, "{dir} is not a dir");
        assert_eq!(mode & 0o7777, 0o755, "mode of {dir}: {:o}", mode & 0o7777);
        let meta = std::fs::symlink_metadata(&dir).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "owner of {dir}");
    }
    let layers_file = root.join("layers/1");
    assert_eq!(mode_of(&layers_file) & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(d.status().unwrap().backing_filesystem, "tmpfs");
}

#[test]
fn layers_files_hold_the_chain_nearest_first() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let d = rig.driver();
    d.create(&id("base"), None, &opts()).unwrap();
    d.create(&id("mid"), Some(&id("base")), &opts()).unwrap();
    d.create_read_write(&id("top"), Some(&id("mid")), &opts())
        .unwrap();
    let read = |name: &str| std::fs::read(rig.root().join("layers").join(name)).unwrap();
    assert_eq!(read("base"), b"");
    assert_eq!(read("mid"), b"base\n");
    assert_eq!(read("top"), b"mid\nbase\n");
}

#[test]
fn many_creates_leave_no_temp_files() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let d = Arc::new(rig.driver());
    d.create(&id("base"), None, &opts()).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let d = Arc::clone(&d);
            s.spawn(move || {
                for i in 0..50 {
                    let l = id(&format!("l-{t}-{i}"));
                    d.create(&l, Some(&id("base")), &opts()).unwrap();
                    if i % 5 == 0 {
                        d.remove(&l).unwrap();
                    }
                }
            });
        }
    });
    let mut expected: BTreeSet<String> = (0..4)
        .flat_map(|t| {
            (0..50)
                .filter(|i| i % 5 != 0)
                .map(move |i| format!("l-{t}-{i}"))
        })
        .collect();
    expected.insert("base".into());
    let root = rig.root();
    assert_eq!(names_in(&root.join("layers")), expected);
    assert_eq!(names_in(&root.join("diff")), expected);
    assert_eq!(names_in(&root.join("mnt")), expected);
    assert_eq!(
        names_in(&root),
        ["diff", "incomplete", "layers", "mnt", "removing", "staging"]
            .map(String::from)
            .into()
    );
    for transient in ["incomplete", "removing", "staging"] {
        assert!(names_in(&root.join(transient)).is_empty(), "{transient}");
    }
}

#[test]
fn on_disk_refs_are_shared_by_two_instances() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let (a, b) = (rig.on_disk_driver(), rig.on_disk_driver());
    a.create(&id("1"), None, &opts()).unwrap();
    b.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let refs_file = rig.root().join("refs/2");

    let m = a.get(&id("2"), "").unwrap();
    assert!(rig.is_mounted(&m));
    assert_eq!(b.references(&id("2")).unwrap(), 1);
    assert_eq!(std::fs::read_to_string(&refs_file).unwrap(), "1\n");

    assert_eq!(b.get(&id("2"), "").unwrap(), m);
    assert_eq!(a.references(&id("2")).unwrap(), 2);
    assert_eq!(rig.backend.history().len(), 1, "mounted twice");

    a.put(&id("2")).unwrap();
    assert!(rig.is_mounted(&m), "unmounted while the other holds it");
    assert_eq!(b.references(&id("2")).unwrap(), 1);
    b.put(&id("2")).unwrap();
    assert!(!rig.is_mounted(&m));
    assert_eq!(a.references(&id("2")).unwrap(), 0);
    assert!(!rig.path_exists(&refs_file), "zero count left a file");
}

#[test]
fn on_disk_refs_are_forgotten_on_remove_by_the_other_instance() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let (a, b) = (rig.on_disk_driver(), rig.on_disk_driver());
    a.create(&id("1"), None, &opts()).unwrap();
    a.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let m = a.get(&id("2"), "").unwrap();
    b.remove(&id("2")).unwrap();
    assert!(!rig.is_mounted(&m));
    assert_eq!(a.references(&id("2")).unwrap(), 0);
    assert!(names_in(&rig.root().join("refs")).is_empty());
}

#[test]
fn hammer_two_instances_with_flock_locks() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let drivers = [
        Arc::new(rig.on_disk_driver()),
        Arc::new(rig.on_disk_driver()),
    ];
    drivers[0].create(&id("base"), None, &opts()).unwrap();
    let shared: Vec<LayerId> = (0..3).map(|i| id(&format!("shared{i}"))).collect();
    for s in &shared {
        drivers[1]
            .create_read_write(s, Some(&id("base")), &opts())
            .unwrap();
    }
    std::thread::scope(|scope| {
        for t in 0..6 {
            let d = Arc::clone(&drivers[t % 2]);
            let shared = &shared;
            scope.spawn(move || {
                for i in 0..30 {
                    let s = &shared[(t + i) % shared.len()];
                    // The fake backend refuses a second mount on one target,
                    // so a lost count update fails here.
                    let p = d.get(s, "").unwrap();
                    assert!(p.ends_with(s.as_str()));
                    d.put(s).unwrap();
                    let own = id(&format!("own-{t}-{i}"));
                    d.create_read_write(&own, Some(&id("base")), &opts())
                        .unwrap();
                    d.get(&own, "").unwrap();
                    d.remove(&own).unwrap();
                }
            });
        }
    });
    for s in &shared {
        for d in &drivers {
            assert_eq!(d.references(s).unwrap(), 0, "count of {s}");
        }
        assert!(
            !rig.is_mounted(&rig.root().join("mnt").join(s.as_str())),
            "leaked mount of {s}"
        );
    }
    assert!(rig.backend.mounted().is_empty(), "leaked mounts");
    assert!(names_in(&rig.root().join("refs")).is_empty(), "leaked refs");
    let ids: Vec<String> = drivers[0]
        .layer_ids()
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(ids, vec!["base", "shared0", "shared1", "shared2"]);
}

#[test]
fn flock_locks_of_two_instances_exclude_each_other() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let other = FlockLocks::new(rig.tmpfs.lock_dir()).unwrap();
    let held = other.try_lock("layer").unwrap().expect("free lock");
    assert!(rig.locks.try_lock("layer").unwrap().is_none());
    drop(held);
    assert!(rig.locks.try_lock("layer").unwrap().is_some());
}

#[test]
fn tmpfs_rig_is_unmounted_on_drop() {
    let rig = rig_or_skip!(RealFsOnTmpfs::new());
    let point = rig.tmpfs.mountpoint.clone();
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    drop(d);
    drop(rig);
    assert!(
        !support::mounts().iter().any(|m| m.point == point),
        "{point} still mounted"
    );
    assert!(!point.exists(), "{point} left behind");
}
