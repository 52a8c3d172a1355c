//! The driver suite and moby's graphtest content cases with unions mounted
//! by the userspace union filesystem (`aufs-union-server` over FUSE), every
//! rig on a tmpfs of its own.
//!
//! Needs root and `/dev/fuse`: without them every test prints why it skips
//! and passes.

mod support;

use aufs_driver::{Driver, DriverConfig, Ports};
use aufs_fuse::{FuseBackend, Launcher, StackMode, StackedBackend};
use aufs_linux::FlockLocks;
use aufs_model::LayerId;
use aufs_ports::UnionBackend;
use aufs_tests::{driver_suite, graphtest, Rig};
use camino::{Utf8Path, Utf8PathBuf};
use std::sync::Arc;
use support::{fuse_mounted_at, Tmpfs};

/// Real filesystem, host and flock locks on a tmpfs, unions mounted by the
/// FUSE backend. `<tmpfs>/aufs` is the driver root, `<tmpfs>/locks` the lock
/// dir, `<tmpfs>/fuse` the servers' logs and pid files.
#[derive(Debug)]
struct FuseOnTmpfs {
    backend: Arc<dyn UnionBackend>,
    locks: FlockLocks,
    tmpfs: Tmpfs,
    /// Layers with a writable top are kernel overlayfs over a read-only
    /// FUSE view (`StackedBackend`), not full FUSE unions.
    stacked: bool,
}

impl FuseOnTmpfs {
    fn new() -> Option<Self> {
        Self::with(false)
    }

    /// The rig with the stacked backend (`<tmpfs>/aufs/stack` its state).
    fn stacked() -> Option<Self> {
        Self::with(true)
    }

    fn with(stacked: bool) -> Option<Self> {
        if let Some(reason) = support::no_fuse_reason() {
            support::skip("FuseOnTmpfs", reason);
            return None;
        }
        let server = support::union_server();
        // Device nodes: overlayfs whiteouts are character devices.
        let tmpfs = Tmpfs::mount(stacked);
        let fuse = FuseBackend::new(Launcher::new(server, Vec::new()), tmpfs.join("fuse"));
        let backend: Arc<dyn UnionBackend> = if stacked {
            Arc::new(StackedBackend::new(fuse, tmpfs.root(), StackMode::Stacked))
        } else {
            Arc::new(fuse)
        };
        Some(FuseOnTmpfs {
            backend,
            locks: FlockLocks::new(tmpfs.lock_dir()).expect("lock dir"),
            tmpfs,
            stacked,
        })
    }

    /// The tails of the union servers' logs, for a failing test's output.
    fn server_logs(&self) -> String {
        let Ok(entries) = std::fs::read_dir(self.tmpfs.join("fuse")) else {
            return String::new();
        };
        let mut out = String::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                out.push_str(&format!("== {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for FuseOnTmpfs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.server_logs());
        }
        if self.path_exists(&self.root()) {
            match Driver::init(DriverConfig::new(self.root()), self.ports()) {
                Ok(d) => {
                    if let Err(e) = d.cleanup() {
                        eprintln!("driver cleanup on {}: {e}", self.root());
                    }
                }
                Err(e) => eprintln!("driver init for cleanup on {}: {e}", self.root()),
            }
        }
        // Whatever the driver did not know of (a test's own mounts).
        if let Err(e) = self.backend.unmount_all_under(&self.tmpfs.mountpoint) {
            eprintln!("unmounting unions under {}: {e}", self.tmpfs.mountpoint);
        }
        // The tmpfs itself is unmounted when the field drops.
    }
}

impl Rig for FuseOnTmpfs {
    fn root(&self) -> Utf8PathBuf {
        self.tmpfs.root()
    }
    fn ports(&self) -> Ports {
        support::real_ports(self.backend.clone(), &self.locks)
    }
    fn is_mounted(&self, path: &Utf8Path) -> bool {
        if self.stacked {
            support::mounted_at(path, |t| t == "overlay") || fuse_mounted_at(path)
        } else {
            fuse_mounted_at(path)
        }
    }
    fn path_exists(&self, path: &Utf8Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }
    fn make_dir(&self, path: &Utf8Path) {
        std::fs::create_dir_all(path).unwrap();
    }
}

mod fuse_on_tmpfs {
    use super::*;
    driver_suite!(rig_or_skip!(FuseOnTmpfs::new()));
}

mod stacked_on_tmpfs {
    use super::*;
    driver_suite!(rig_or_skip!(FuseOnTmpfs::stacked()));
}

/// Expands to one `#[test]` per graphtest case, each on a fresh
/// [`FuseOnTmpfs`]: `name => case(extra args)`.
macro_rules! graphtest_on_fuse {
    ($rig:ident: $($(#[$attr:meta])* $name:ident => $case:ident($($arg:expr),*);)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                let rig = rig_or_skip!(FuseOnTmpfs::$rig());
                graphtest::$case(&rig.driver() $(, $arg)*);
            }
        )*
    };
}

mod graphtest_on_fuse {
    use super::*;

    graphtest_on_fuse! { new:
        create_empty => driver_test_create_empty();
        create_base => driver_test_create_base();
        create_snap => driver_test_create_snap();
        /// As moby's overlay2 `TestOverlay128LayerRead`.
        deep_layer_read_128 => driver_test_deep_layer_read(128);
        echo => driver_test_echo();
        /// As moby's overlay2 `TestOverlayDiffApply10Files`.
        diff_apply_10_files => driver_test_diff_apply(10);
        /// Ten directories of files.
        diff_apply_1000_files => driver_test_diff_apply(1000);
        changes => driver_test_changes();
        /// The grandparent has no parent: only the top is a union.
        diff_from_grandparent => driver_test_diff_from_ancestor(false);
        /// The grandparent is a union too: two unions are compared.
        diff_from_grandparent_on_a_base => driver_test_diff_from_ancestor(true);
    }
}

mod graphtest_on_stacked {
    use super::*;

    graphtest_on_fuse! { stacked:
        create_empty => driver_test_create_empty();
        create_base => driver_test_create_base();
        create_snap => driver_test_create_snap();
        /// As moby's overlay2 `TestOverlay128LayerRead`.
        deep_layer_read_128 => driver_test_deep_layer_read(128);
        echo => driver_test_echo();
        /// As moby's overlay2 `TestOverlayDiffApply10Files`.
        diff_apply_10_files => driver_test_diff_apply(10);
        /// Ten directories of files.
        diff_apply_1000_files => driver_test_diff_apply(1000);
        changes => driver_test_changes();
        /// The grandparent has no parent: only the top is a union.
        diff_from_grandparent => driver_test_diff_from_ancestor(false);
        /// The grandparent is a union too: two unions are compared.
        diff_from_grandparent_on_a_base => driver_test_diff_from_ancestor(true);
    }
}

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

/// The rig's own cleanup leaves no union and no tmpfs behind, even with
/// layers still referenced.
#[test]
fn rig_drop_unmounts_everything() {
    let rig = rig_or_skip!(FuseOnTmpfs::new());
    let point = rig.tmpfs.mountpoint.clone();
    let d = rig.driver();
    d.create(&id("1"), None, &Default::default()).unwrap();
    d.create(&id("2"), Some(&id("1")), &Default::default())
        .unwrap();
    let m = d.get(&id("2"), "").unwrap();
    assert!(fuse_mounted_at(&m));
    drop(d);
    drop(rig);
    assert!(!fuse_mounted_at(&m), "{m} still mounted");
    assert!(
        !support::mounts()
            .iter()
            .any(|x| x.point.starts_with(&point)),
        "mounts left under {point}"
    );
}

/// The rig sees a FUSE mount only at its exact path.
#[test]
fn is_mounted_is_exact() {
    let rig = rig_or_skip!(FuseOnTmpfs::new());
    let d = rig.driver();
    d.create(&id("1"), None, &Default::default()).unwrap();
    d.create(&id("2"), Some(&id("1")), &Default::default())
        .unwrap();
    let m = d.get(&id("2"), "").unwrap();
    assert!(rig.is_mounted(&m));
    assert!(!rig.is_mounted(&m.join("sub")));
    assert!(!rig.is_mounted(m.parent().unwrap()));
    assert!(!rig.is_mounted(&rig.tmpfs.mountpoint), "tmpfs is not fuse");
    d.put(&id("2")).unwrap();
}

#[test]
fn mountinfo_unescaping() {
    assert_eq!(support::unescape_octal(r"/a\040b\011c\134d"), "/a b\tc\\d");
    assert_eq!(support::unescape_octal(r"/plain"), "/plain");
    assert_eq!(support::unescape_octal(r"/trailing\04"), r"/trailing\04");
}
