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

use aufs_driver::kernel::KernelAufs;
use aufs_driver::support::lists_aufs;
use aufs_driver::{CreateOpts, Driver, DriverConfig, Ports, RefStore};
use aufs_linux::{FlockLocks, LinuxFilesystem, LinuxHost, LinuxMounter};
use aufs_model::LayerId;
use aufs_ports::fakes::FakeUnionBackend;
use aufs_ports::{BackendKind, SystemClock, UnionBackend};
use aufs_tests::{driver_suite, Rig};
use camino::{Utf8Path, Utf8PathBuf};
use nix::mount::{MntFlags, MsFlags};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

/// Evaluates to the rig `$make` builds, or returns from the test (which
/// passes) when it cannot be built here; the constructor said why.
macro_rules! rig_or_skip {
    ($make:expr) => {
        match $make {
            Some(rig) => rig,
            None => return,
        }
    };
}

/// Why a real rig cannot run here, if it cannot.
fn not_root_reason() -> Option<&'static str> {
    (!nix::unistd::geteuid().is_root()).then_some("mounting a tmpfs needs root")
}

/// Whether the running kernel has aufs, read straight from `/proc`.
fn kernel_lists_aufs() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| lists_aufs(&s))
        .unwrap_or(false)
}

fn skip(rig: &str, reason: &str) {
    eprintln!("skipped: {rig}: {reason}");
}

/// A fresh tmpfs mounted on a temp dir, unmounted (lazily if busy) on drop.
/// The driver root is `<tmpfs>/aufs`, absent until the driver creates it;
/// lock files live beside it in `<tmpfs>/locks`.
#[derive(Debug)]
struct Tmpfs {
    mountpoint: Utf8PathBuf,
    // Dropped after the unmount in `Drop`, so it removes an empty dir.
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aufs-rig-")
            .tempdir()
            .expect("temp dir");
        let mountpoint = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("utf-8 temp dir");
        nix::mount::mount(
            Some("tmpfs"),
            mountpoint.as_std_path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755,size=256m"),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {mountpoint}: {e}"));
        Tmpfs {
            mountpoint,
            _dir: dir,
        }
    }

    fn root(&self) -> Utf8PathBuf {
        self.mountpoint.join("aufs")
    }

    fn lock_dir(&self) -> Utf8PathBuf {
        self.mountpoint.join("locks")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.mountpoint.as_std_path();
        if nix::mount::umount2(path, MntFlags::empty()).is_err() {
            // Something below is still mounted or open: detach it all.
            if let Err(e) = nix::mount::umount2(path, MntFlags::MNT_DETACH) {
                eprintln!("cannot unmount rig tmpfs {}: {e}", self.mountpoint);
            }
        }
    }
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
        if let Some(reason) = not_root_reason() {
            skip("RealFsOnTmpfs", reason);
            return None;
        }
        let tmpfs = Tmpfs::mount();
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
        Ports {
            fs: Arc::new(LinuxFilesystem::new()),
            host: Arc::new(LinuxHost::new()),
            backend: self.backend.clone(),
            locks: Arc::new(FlockLocks::new(self.tmpfs.lock_dir()).expect("lock dir")),
        }
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
        Ports {
            fs: Arc::new(LinuxFilesystem::new()),
            host: Arc::new(LinuxHost::new()),
            backend: self.backend.clone(),
            locks: Arc::new(self.locks.clone()),
        }
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
        if let Some(reason) = not_root_reason() {
            skip("KernelAufsReal", reason);
            return None;
        }
        if !kernel_lists_aufs() {
            skip("KernelAufsReal", "/proc/filesystems does not list aufs");
            return None;
        }
        let tmpfs = Tmpfs::mount();
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
        aufs_mount_points().iter().any(|m| m == path)
    }
    fn path_exists(&self, path: &Utf8Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }
    fn make_dir(&self, path: &Utf8Path) {
        std::fs::create_dir_all(path).unwrap();
    }
}

/// Mount points of aufs mounts, read from `/proc/self/mountinfo` here
/// rather than through the adapter under test.
fn aufs_mount_points() -> Vec<Utf8PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    table
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let fstype = rest.split_whitespace().next()?;
            let point = fields.split_whitespace().nth(4)?;
            (fstype == "aufs").then(|| unescape_octal(point).into())
        })
        .collect()
}

/// Undoes mountinfo's `\ooo` escapes of space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
        ["diff", "layers", "mnt"].map(String::from).into()
    );
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
    assert!(!rig_path_is_mount_point(&point), "{point} still mounted");
    assert!(!point.exists(), "{point} left behind");
}

fn rig_path_is_mount_point(path: &Utf8Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|p| unescape_octal(p) == path.as_str())
}

#[test]
fn mountinfo_unescaping() {
    assert_eq!(unescape_octal(r"/a\040b\011c\134d"), "/a b\tc\\d");
    assert_eq!(unescape_octal(r"/plain"), "/plain");
    assert_eq!(unescape_octal(r"/trailing\04"), r"/trailing\04");
}
