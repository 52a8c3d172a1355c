//! Directory and file operations the driver performs on its root.

use camino::{Utf8Path, Utf8PathBuf};
use std::io;

/// The type of a directory entry, as `lstat` sees it (symlinks not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket).
    Other,
}

/// One entry of [`Filesystem::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (no path).
    pub name: String,
    /// Its type.
    pub kind: FileKind,
}

/// What the driver does to files and directories under its root.
///
/// All paths are absolute. Implementations must be safe to call from many
/// threads at once.
pub trait Filesystem: Send + Sync + std::fmt::Debug {
    /// `lstat`: the kind of `path`, or `None` when it does not exist.
    fn kind(&self, path: &Utf8Path) -> io::Result<Option<FileKind>>;

    /// Creates `path` and any missing parents. Directories this call creates
    /// get exactly `mode` (no umask) and, when `owner` is set, that uid/gid.
    /// Existing directories are left as they are.
    fn create_dir_all(
        &self,
        path: &Utf8Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()>;

    /// Reads a whole (small) file as UTF-8.
    fn read_to_string(&self, path: &Utf8Path) -> io::Result<String>;

    /// Atomically publishes a new file holding `data`: after success, readers
    /// see all of it; if `path` already exists it fails with `EEXIST` and
    /// changes nothing. Of racing callers exactly one succeeds.
    fn write_new(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()>;

    /// Atomically replaces (or creates) `path` with `data`.
    fn write_replace(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()>;

    /// Removes a file (not a directory).
    fn remove_file(&self, path: &Utf8Path) -> io::Result<()>;

    /// `rename(2)`: fails with `EEXIST`/`ENOTEMPTY` when `to` is a non-empty dir.
    fn rename(&self, from: &Utf8Path, to: &Utf8Path) -> io::Result<()>;

    /// Removes `path` and everything below it, like moby's `EnsureRemoveAll`:
    /// a missing path is success; mounts below it are unmounted; symlinks are
    /// removed, never followed.
    fn remove_all(&self, path: &Utf8Path) -> io::Result<()>;

    /// The entries of a directory, in no particular order, without `.`/`..`.
    fn read_dir(&self, path: &Utf8Path) -> io::Result<Vec<DirEntry>>;

    /// Makes a new empty private directory under the system's temp dir.
    fn make_temp_dir(&self, prefix: &str) -> io::Result<Utf8PathBuf>;
}
