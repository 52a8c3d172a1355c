//! Whether a backend can work here, and what the root sits on.

use crate::error::{DriverError, Result};
use aufs_model::fs_magic;
use aufs_ports::{BackendKind, BackingFeatures, Filesystem, Host};
use camino::Utf8Path;

/// The Go driver's `ErrAufsNotSupported` text.
pub const AUFS_NOT_FOUND: &str = "AUFS was not found in /proc/filesystems";
/// The Go driver's `ErrAufsNested` text.
pub const AUFS_NESTED: &str = "AUFS cannot be used in non-init user namespace";

/// Which backend the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Kernel aufs where `/proc/filesystems` lists it, else FUSE.
    #[default]
    Auto,
    /// Kernel aufs or nothing.
    Kernel,
    /// The FUSE union.
    Fuse,
}

/// True when the second column of some `/proc/filesystems` line is `aufs`.
pub fn lists_aufs(proc_filesystems: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("aufs"))
}

/// True when the kernel has aufs, loading the module once if it is missing
/// (the host adapter runs `modprobe` at most once per process).
pub fn kernel_has_aufs(host: &dyn Host) -> bool {
    let listed = |h: &dyn Host| {
        h.proc_filesystems()
            .map(|s| lists_aufs(&s))
            .unwrap_or(false)
    };
    if listed(host) {
        return true;
    }
    if let Err(e) = host.load_module("aufs") {
        tracing::debug!(storage_driver = "aufs", error = %e, "modprobe aufs failed");
    }
    listed(host)
}

/// The Go driver's `supportsAufs`: aufs is in the kernel and this is the
/// initial user namespace.
pub fn check_kernel_aufs(host: &dyn Host) -> Result<()> {
    if !kernel_has_aufs(host) {
        return Err(DriverError::NotSupported(AUFS_NOT_FOUND.into()));
    }
    let nested = host
        .in_user_namespace()
        .map_err(DriverError::io("read", "/proc/self/uid_map"))?;
    if nested {
        return Err(DriverError::NotSupported(AUFS_NESTED.into()));
    }
    Ok(())
}

/// Resolves the user's choice to a backend kind.
pub fn choose_backend(choice: BackendChoice, host: &dyn Host) -> Result<BackendKind> {
    match choice {
        BackendChoice::Fuse => Ok(BackendKind::Fuse),
        BackendChoice::Kernel => {
            check_kernel_aufs(host)?;
            Ok(BackendKind::Kernel)
        }
        BackendChoice::Auto => Ok(if kernel_has_aufs(host) {
            BackendKind::Kernel
        } else {
            BackendKind::Fuse
        }),
    }
}

/// The magic of the filesystem the root is (or will be) on: the root itself
/// if it exists, else its parent, as the Go driver's Init does.
pub fn backing_fs_magic(host: &dyn Host, fs: &dyn Filesystem, root: &Utf8Path) -> Result<u64> {
    let exists = fs
        .kind(root)
        .map_err(DriverError::io("stat", root))?
        .is_some();
    let testdir = if exists {
        root
    } else {
        root.parent().unwrap_or(root)
    };
    host.fs_magic(testdir)
        .map_err(DriverError::io("statfs", testdir))
}

/// Refuses backings kernel aufs cannot stack on (aufs, btrfs, ecryptfs).
pub fn check_backing_fs(kind: BackendKind, magic: u64, root: &Utf8Path) -> Result<()> {
    if kind == BackendKind::Kernel && fs_magic::kernel_aufs_refuses(magic) {
        let fs = fs_magic::fs_display_name(magic).to_owned();
        tracing::error!(storage_driver = "aufs", "AUFS is not supported over {fs}");
        return Err(DriverError::IncompatibleFs {
            fs,
            root: root.to_owned(),
        });
    }
    Ok(())
}

/// The FUSE union needs `d_type` (merged listings without a `stat` per
/// entry) and xattrs (layers carry them); kernel aufs is not checked, as in
/// the Go driver.
pub fn check_backing_features(
    kind: BackendKind,
    features: BackingFeatures,
    magic: u64,
    root: &Utf8Path,
) -> Result<()> {
    if kind != BackendKind::Fuse {
        return Ok(());
    }
    let fs = fs_magic::fs_display_name(magic);
    let missing: Vec<&str> = [
        (!features.d_type).then_some("d_type"),
        (!features.xattrs).then_some("xattrs"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DriverError::NotSupported(format!(
            "the FUSE union needs {} on the backing filesystem; {fs} at {root} lacks it",
            missing.join(" and ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aufs_ports::fakes::{FakeHost, MemFs};

    #[test]
    fn proc_filesystems_parsing() {
        assert!(lists_aufs("nodev\tsysfs\nnodev\taufs\n"));
        assert!(!lists_aufs("nodev\tsysfs\n\text4\n"));
        assert!(!lists_aufs("nodev\tnotaufs\n"));
    }

    #[test]
    fn auto_picks_fuse_without_aufs_and_tries_modprobe_once_per_call() {
        let host = FakeHost::default();
        assert_eq!(
            choose_backend(BackendChoice::Auto, &host).unwrap(),
            BackendKind::Fuse
        );
        assert_eq!(host.loaded_modules(), vec!["aufs".to_string()]);
        let e = choose_backend(BackendChoice::Kernel, &host).unwrap_err();
        assert!(e.to_string().contains(AUFS_NOT_FOUND), "{e}");
        let host = FakeHost::with_aufs();
        assert_eq!(
            choose_backend(BackendChoice::Auto, &host).unwrap(),
            BackendKind::Kernel
        );
        assert!(host.loaded_modules().is_empty());
    }

    #[test]
    fn modprobe_that_loads_aufs_is_enough() {
        let host = FakeHost {
            module_adds: Some("nodev\taufs\n".into()),
            ..FakeHost::default()
        };
        assert_eq!(
            choose_backend(BackendChoice::Kernel, &host).unwrap(),
            BackendKind::Kernel
        );
    }

    #[test]
    fn nested_userns_is_refused_for_kernel() {
        let host = FakeHost {
            user_namespace: true,
            ..FakeHost::with_aufs()
        };
        let e = check_kernel_aufs(&host).unwrap_err();
        assert!(e.to_string().contains(AUFS_NESTED));
        assert_eq!(
            choose_backend(BackendChoice::Fuse, &host).unwrap(),
            BackendKind::Fuse
        );
    }

    #[test]
    fn incompatible_backings() {
        let root = Utf8Path::new("/var/lib/x");
        for magic in [fs_magic::BTRFS, fs_magic::AUFS, fs_magic::ECRYPTFS] {
            let e = check_backing_fs(BackendKind::Kernel, magic, root).unwrap_err();
            assert!(matches!(e, DriverError::IncompatibleFs { .. }));
            check_backing_fs(BackendKind::Fuse, magic, root).unwrap();
        }
        check_backing_fs(BackendKind::Kernel, fs_magic::XFS, root).unwrap();
    }

    #[test]
    fn fuse_needs_d_type_and_xattrs() {
        let root = Utf8Path::new("/r");
        let all = BackingFeatures {
            d_type: true,
            xattrs: true,
        };
        check_backing_features(BackendKind::Fuse, all, fs_magic::XFS, root).unwrap();
        let none = BackingFeatures {
            d_type: false,
            xattrs: false,
        };
        let e = check_backing_features(BackendKind::Fuse, none, fs_magic::XFS, root).unwrap_err();
        assert_eq!(
            e.to_string(),
            "driver not supported: the FUSE union needs d_type and xattrs on the backing filesystem; xfs at /r lacks it"
        );
        check_backing_features(BackendKind::Kernel, none, fs_magic::XFS, root).unwrap();
    }

    #[test]
    fn backing_magic_of_missing_root_is_its_parent() {
        let host = FakeHost::default();
        host.set_magic("/data".into(), fs_magic::XFS);
        host.set_magic("/data/root".into(), fs_magic::TMPFS);
        let fs = MemFs::new();
        fs.create_dir_all("/data".into(), 0o755, None).unwrap();
        assert_eq!(
            backing_fs_magic(&host, &fs, "/data/root".into()).unwrap(),
            fs_magic::XFS
        );
        fs.create_dir_all("/data/root".into(), 0o755, None).unwrap();
        assert_eq!(
            backing_fs_magic(&host, &fs, "/data/root".into()).unwrap(),
            fs_magic::TMPFS
        );
    }
}
