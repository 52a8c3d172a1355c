//! [`Mounter`] over `mount(2)`/`umount2(2)` and `/proc/self/mountinfo`.

use crate::error::LinuxError;
use crate::mountinfo::{lexical_clean, mounts_at_or_below, MountInfoSource, ProcSelfMountInfo};
use aufs_ports::{MountFlags, MountRequest, Mounter, UnmountFlags};
use camino::{Utf8Path, Utf8PathBuf};
use nix::mount::{MntFlags, MsFlags};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Mounts for real; reads the mount table through a [`MountInfoSource`].
#[derive(Debug, Clone)]
pub struct LinuxMounter {
    table: Arc<dyn MountInfoSource>,
}

impl Default for LinuxMounter {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxMounter {
    /// Reads this process's `/proc/self/mountinfo`.
    pub fn new() -> Self {
        Self::with_source(Arc::new(ProcSelfMountInfo))
    }

    /// Reads the mount table from `table` (a fixture in tests).
    pub fn with_source(table: Arc<dyn MountInfoSource>) -> Self {
        LinuxMounter { table }
    }
}

/// The `mount(2)` flags of a request.
pub fn ms_flags(flags: MountFlags) -> MsFlags {
    let mut out = MsFlags::empty();
    if flags.remount {
        out |= MsFlags::MS_REMOUNT;
    }
    out
}

/// The `umount2(2)` flags of a request.
pub fn mnt_flags(flags: UnmountFlags) -> MntFlags {
    let mut out = MntFlags::empty();
    if flags.detach {
        out |= MntFlags::MNT_DETACH;
    }
    out
}

/// How the kernel names `path` in the mount table: symlinks resolved when
/// the path exists, lexically cleaned otherwise. `None` when it is missing.
fn table_name(path: &Path) -> io::Result<Option<PathBuf>> {
    match std::fs::canonicalize(path) {
        Ok(real) => Ok(Some(real)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(_) => Ok(Some(lexical_clean(path))),
    }
}

impl Mounter for LinuxMounter {
    fn mount(&self, req: &MountRequest) -> io::Result<()> {
        let data = (!req.data.is_empty()).then_some(req.data.as_str());
        tracing::debug!(
            "storage-driver" = "aufs",
            target = %req.target,
            fstype = %req.fstype,
            remount = req.flags.remount,
            data_len = req.data.len(),
            "mount"
        );
        nix::mount::mount(
            Some(req.source.as_str()),
            req.target.as_std_path(),
            Some(req.fstype.as_str()),
            ms_flags(req.flags),
            data,
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Utf8Path, flags: UnmountFlags) -> io::Result<()> {
        tracing::debug!(
            "storage-driver" = "aufs",
            target = %target,
            detach = flags.detach,
            "unmount"
        );
        nix::mount::umount2(target.as_std_path(), mnt_flags(flags)).map_err(io::Error::from)
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        let Some(name) = table_name(target.as_std_path())? else {
            return Ok(false);
        };
        Ok(self.table.mounts()?.iter().any(|m| m.mount_point == name))
    }

    fn mounts_under(&self, root: &Utf8Path) -> io::Result<Vec<Utf8PathBuf>> {
        let Some(name) = table_name(root.as_std_path())? else {
            return Ok(Vec::new());
        };
        mounts_at_or_below(&self.table.mounts()?, &name)
            .into_iter()
            .map(|m| {
                // Report paths under `root` as given, even when it reaches
                // the table's name through a symlink.
                let rest = m.mount_point.strip_prefix(&name).unwrap_or(Path::new(""));
                let rest = Utf8Path::from_path(rest).ok_or_else(|| LinuxError::NonUtf8Path {
                    parent: root.to_owned(),
                    lossy: rest.to_string_lossy().into_owned(),
                })?;
                Ok(if rest.as_str().is_empty() {
                    root.to_owned()
                } else {
                    root.join(rest)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::FixedMountInfo;

    #[test]
    fn flag_mapping() {
        assert_eq!(ms_flags(MountFlags::default()), MsFlags::empty());
        assert_eq!(ms_flags(MountFlags { remount: true }), MsFlags::MS_REMOUNT);
        assert_eq!(mnt_flags(UnmountFlags::default()), MntFlags::empty());
        assert_eq!(
            mnt_flags(UnmountFlags { detach: true }),
            MntFlags::MNT_DETACH
        );
    }

    #[test]
    fn is_mounted_and_mounts_under_read_the_source() {
        // `/` and `/proc` exist everywhere, so their table names are themselves.
        let table = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
                     2 1 0:5 / /proc rw - proc proc rw\n\
                     3 2 0:6 / /proc/sys rw - sysfs x rw\n\
                     4 1 0:7 / /nonexistent-aufs-test rw - tmpfs none rw\n";
        let m = LinuxMounter::with_source(Arc::new(FixedMountInfo(table.into())));
        assert!(m.is_mounted(Utf8Path::new("/proc")).unwrap());
        assert!(m.is_mounted(Utf8Path::new("/proc/")).unwrap());
        assert!(!m.is_mounted(Utf8Path::new("/proc/self")).unwrap());
        assert!(!m
            .is_mounted(Utf8Path::new("/nonexistent-aufs-test"))
            .unwrap());
        assert_eq!(
            m.mounts_under(Utf8Path::new("/proc")).unwrap(),
            vec![Utf8PathBuf::from("/proc/sys"), Utf8PathBuf::from("/proc")]
        );
        assert_eq!(m.mounts_under(Utf8Path::new("/")).unwrap().len(), 4);
    }
}
