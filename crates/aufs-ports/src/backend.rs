//! How a union of branches is mounted: kernel aufs or a FUSE union.

use camino::{Utf8Path, Utf8PathBuf};
use std::io;

/// Which implementation mounts unions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Kernel aufs (`mount -t aufs`).
    Kernel,
    /// The userspace union filesystem.
    Fuse,
}

impl BackendKind {
    /// The name `status` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Kernel => "kernel",
            BackendKind::Fuse => "fuse",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A union to mount: one read-write branch over read-only ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnionSpec {
    /// The layer's own diff dir (the rw branch).
    pub rw: Utf8PathBuf,
    /// The parents' diff dirs, nearest first.
    pub ro: Vec<Utf8PathBuf>,
    /// Where to mount.
    pub target: Utf8PathBuf,
    /// SELinux mount label, empty for none.
    pub mount_label: String,
}

/// Whether `e`, from an access to a union's mount point, says the union's
/// userspace server is gone: `ENOTCONN`, or `ECONNABORTED` for a request
/// made while it was dying. The mount stays in the table until unmounted.
pub fn is_server_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED))
}

/// Mounts and unmounts unions. The driver holds the layer's lock around
/// every call for one target.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait UnionBackend: Send + Sync + std::fmt::Debug {
    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;
    /// Mounts the union; returns once it is live. On failure nothing stays
    /// mounted at the target.
    fn mount(&self, spec: &UnionSpec) -> io::Result<()>;
    /// Unmounts the union at `target`.
    fn unmount(&self, target: &Utf8Path) -> io::Result<()>;
    /// True when a union of this backend is mounted at `target`.
    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool>;
    /// Whether unions honour `dirperm1` (probed once).
    fn dirperm1_supported(&self) -> bool;
    /// Unmounts everything at or below `root` (used by `Cleanup`).
    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()>;
}
