//! Questions about the host the driver runs on.

use camino::Utf8Path;
use std::io;

/// `AUFS_SUPER_MAGIC`.
pub const FS_MAGIC_AUFS: u64 = 0x6175_6673;
/// `BTRFS_SUPER_MAGIC`.
pub const FS_MAGIC_BTRFS: u64 = 0x9123_683E;
/// `ECRYPTFS_SUPER_MAGIC`.
pub const FS_MAGIC_ECRYPTFS: u64 = 0xF15F;
/// `FUSE_SUPER_MAGIC`.
pub const FS_MAGIC_FUSE: u64 = 0x6573_5546;

/// What a backing filesystem offers that the FUSE union and layer apply
/// rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackingFeatures {
    /// `readdir` reports entry types (`d_type`), so merged directory
    /// listings need no `stat` per entry.
    pub d_type: bool,
    /// Extended attributes can be set (layers carry `security.capability`
    /// and others).
    pub xattrs: bool,
}

/// The host: kernel features, identities, and filesystem types.
pub trait Host: Send + Sync + std::fmt::Debug {
    /// The content of `/proc/filesystems`.
    fn proc_filesystems(&self) -> io::Result<String>;
    /// Tries to load a kernel module (`modprobe NAME`), output captured.
    fn load_module(&self, name: &str) -> io::Result<()>;
    /// True inside a user namespace other than the initial one.
    fn in_user_namespace(&self) -> io::Result<bool>;
    /// `statfs(2)` `f_type` of the filesystem holding `path`.
    fn fs_magic(&self, path: &Utf8Path) -> io::Result<u64>;
    /// `getpagesize()`.
    fn page_size(&self) -> usize;
    /// Effective uid and gid of this process.
    fn effective_ids(&self) -> (u32, u32);
    /// Probes the filesystem holding the existing directory `dir` by making
    /// (and removing) a scratch entry in it.
    fn backing_features(&self, dir: &Utf8Path) -> io::Result<BackingFeatures>;
}
