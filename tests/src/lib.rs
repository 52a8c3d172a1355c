//! One conformance suite for the aufs driver, run on every set of adapters
//! (in-memory fakes, the real filesystem with kernel or FUSE unions), like
//! moby's `graphtest`.
//!
//! A [`Rig`] provides the ports and an independent view of the mount table;
//! [`driver_suite!`] expands to one `#[test]` per case of [`suite`] for a rig.

pub mod graphtest;
pub mod suite;

use aufs_driver::{Driver, DriverConfig, Ports};
use camino::{Utf8Path, Utf8PathBuf};

/// A set of adapters the suite runs against.
pub trait Rig: Sync {
    /// The driver root (need not exist yet).
    fn root(&self) -> Utf8PathBuf;
    /// The adapters.
    fn ports(&self) -> Ports;
    /// Whether a union is mounted at `path`, asked without the driver.
    fn is_mounted(&self, path: &Utf8Path) -> bool;
    /// Whether anything exists at `path`, asked without the driver.
    fn path_exists(&self, path: &Utf8Path) -> bool;
    /// Creates a directory (for staging stale dirs) without the driver.
    fn make_dir(&self, path: &Utf8Path);

    /// Opens a driver on this rig.
    fn driver(&self) -> Driver {
        Driver::init(DriverConfig::new(self.root()), self.ports()).expect("driver init")
    }
}

/// Expands to one `#[test]` per suite case, each on a fresh rig from `$make`.
#[macro_export]
macro_rules! driver_suite {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let rig = $make;
                $crate::suite::$case(&rig);
            }
        )*
    };
    ($make:expr) => {
        $crate::driver_suite!($make;
            new_driver, create_dir_structure, new_driver_from_existing_dir,
            create_new_dir_structure, remove_image, get_without_parent,
            cleanup_with_no_dirs, cleanup_with_dir, mounted_false_response,
            mounted_true_response, mount_with_parent, remove_mounted_dir,
            create_with_invalid_parent, exists, status, init_stale_cleanup,
            create_existing_is_refused, storage_opts_refused,
            two_gets_one_mount_two_puts, put_without_get_is_harmless,
            remove_with_children_refused, remove_missing_is_not_found,
            get_missing_is_not_found, is_parent, list_layers,
            racing_creates_exactly_one_wins, hammer_get_put_remove,
            deep_chain_mounts_every_parent, apply_diff_changes_size,
            diff_against_another_ancestor,
        );
    };
}
