//! The raw `mount(2)`/`umount2(2)` calls, and the mount table.

use camino::{Utf8Path, Utf8PathBuf};
use std::io;

/// The `mount(2)` flags the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    /// `MS_REMOUNT`: change an existing mount (aufs `append:`).
    pub remount: bool,
}

/// The `umount2(2)` flags the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnmountFlags {
    /// `MNT_DETACH`: lazy unmount.
    pub detach: bool,
}

/// One `mount(2)` call, recorded as typed data so tests can assert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// The source (`none` for aufs).
    pub source: String,
    /// The mount point.
    pub target: Utf8PathBuf,
    /// The filesystem type (`aufs`).
    pub fstype: String,
    /// Flags.
    pub flags: MountFlags,
    /// The data string (branches and options).
    pub data: String,
}

/// Mounting, unmounting, and questions about the mount table.
pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// `mount(2)`.
    fn mount(&self, req: &MountRequest) -> io::Result<()>;
    /// `umount2(2)`.
    fn unmount(&self, target: &Utf8Path, flags: UnmountFlags) -> io::Result<()>;
    /// True when `target` is itself a mount point (from the mount table,
    /// not by comparing device numbers).
    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool>;
    /// Every mount point at or below `root`, deepest first.
    fn mounts_under(&self, root: &Utf8Path) -> io::Result<Vec<Utf8PathBuf>>;
}
