//! What the union shows: entries, their kinds, and directory listings.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

/// The type of a union entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

impl EntryKind {
    /// The kind of a std file type.
    pub fn from_file_type(ft: std::fs::FileType) -> Self {
        if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_char_device() {
            EntryKind::CharDevice
        } else if ft.is_block_device() {
            EntryKind::BlockDevice
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_socket() {
            EntryKind::Socket
        } else {
            EntryKind::File
        }
    }
}

/// A visible entry of the union.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the branch it comes from in [`crate::UnionView::branches`]
    /// (0 = topmost: the rw branch when there is one).
    pub branch_index: usize,
    /// Its real path inside that branch (for a merged directory: the
    /// topmost one).
    pub real_path: PathBuf,
    /// `lstat` of `real_path`.
    pub metadata: Metadata,
    /// Its stable union inode number (see [`crate::UnionView`] on inodes).
    pub ino: u64,
}

impl Entry {
    /// The entry's type.
    pub fn kind(&self) -> EntryKind {
        EntryKind::from_file_type(self.metadata.file_type())
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.metadata.is_dir()
    }
}

/// One name of a merged directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name (never a whiteout or aufs metadata name).
    pub name: OsString,
    /// The entry's type.
    pub kind: EntryKind,
    /// The branch the entry is taken from.
    pub branch_index: usize,
    /// Its stable union inode number, as [`Entry::ino`].
    pub ino: u64,
}
