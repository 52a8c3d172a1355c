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

/// The host: kernel features, identities, and filesystem types.
#[cfg_attr(feature = "mock", mockall::automock)]
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
}
