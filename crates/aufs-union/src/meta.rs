//! File attributes as `statx` returns them, taken relative to a descriptor.
//!
//! `std::fs::Metadata` can only come from a path or an open file; a union
//! that never walks a path string needs the attributes of `name` in a held
//! directory (one `statx(dirfd, name, AT_SYMLINK_NOFOLLOW)`), so it keeps
//! its own type with the accessors the union and its filesystems use.

use crate::entry::EntryKind;
use rustix::fs::{AtFlags, FileType, StatxFlags};
use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;

/// The attributes of one file (never of a symlink's target).
#[derive(Clone, Copy)]
pub struct Meta(rustix::fs::Statx);

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta")
            .field("dev", &self.dev())
            .field("ino", &self.ino())
            .field("mode", &format_args!("{:o}", self.mode()))
            .field("nlink", &self.nlink())
            .field("size", &self.size())
            .finish()
    }
}

const WANTED: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);

impl Meta {
    /// The attributes of `name` in directory `dir`, not following it
    /// (`""` or `"."`: of `dir` itself).
    pub fn at(dir: impl AsFd, name: &OsStr) -> io::Result<Meta> {
        let flags = if name.is_empty() {
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        Ok(Meta(rustix::fs::statx(dir, name, flags, WANTED)?))
    }

    /// The attributes of what `fd` refers to (an open file or an `O_PATH`
    /// descriptor).
    pub fn of(fd: impl AsFd) -> io::Result<Meta> {
        Self::at(fd, OsStr::new(""))
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.0.stx_ino
    }

    /// Device the file lives on (`st_dev`).
    pub fn dev(&self) -> u64 {
        rustix::fs::makedev(self.0.stx_dev_major, self.0.stx_dev_minor)
    }

    /// Type and permission bits (`st_mode`).
    pub fn mode(&self) -> u32 {
        u32::from(self.0.stx_mode)
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        u64::from(self.0.stx_nlink)
    }

    /// Owner.
    pub fn uid(&self) -> u32 {
        self.0.stx_uid
    }

    /// Group.
    pub fn gid(&self) -> u32 {
        self.0.stx_gid
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.0.stx_size
    }

    /// Size in bytes (as `std::fs::Metadata::len`).
    pub fn len(&self) -> u64 {
        self.size()
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        self.0.stx_blocks
    }

    /// Preferred I/O block size.
    pub fn blksize(&self) -> u64 {
        u64::from(self.0.stx_blksize)
    }

    /// Device number of a device file.
    pub fn rdev(&self) -> u64 {
        rustix::fs::makedev(self.0.stx_rdev_major, self.0.stx_rdev_minor)
    }

    /// Last access, seconds.
    pub fn atime(&self) -> i64 {
        self.0.stx_atime.tv_sec
    }

    /// Last access, nanoseconds.
    pub fn atime_nsec(&self) -> i64 {
        i64::from(self.0.stx_atime.tv_nsec)
    }

    /// Last modification, seconds.
    pub fn mtime(&self) -> i64 {
        self.0.stx_mtime.tv_sec
    }

    /// Last modification, nanoseconds.
    pub fn mtime_nsec(&self) -> i64 {
        i64::from(self.0.stx_mtime.tv_nsec)
    }

    /// Last status change, seconds.
    pub fn ctime(&self) -> i64 {
        self.0.stx_ctime.tv_sec
    }

    /// Last status change, nanoseconds.
    pub fn ctime_nsec(&self) -> i64 {
        i64::from(self.0.stx_ctime.tv_nsec)
    }

    /// Birth time (seconds, nanoseconds); `(0, 0)` where the filesystem
    /// keeps none.
    pub fn birth(&self) -> (i64, u64) {
        if self.0.stx_mask & StatxFlags::BTIME.bits() == 0 {
            return (0, 0);
        }
        (self.0.stx_btime.tv_sec, u64::from(self.0.stx_btime.tv_nsec))
    }

    /// The file's type.
    pub fn kind(&self) -> EntryKind {
        EntryKind::from_raw_mode(self.mode())
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind() == EntryKind::Dir
    }

    /// True for regular files.
    pub fn is_file(&self) -> bool {
        self.kind() == EntryKind::File
    }

    /// True for symbolic links.
    pub fn is_symlink(&self) -> bool {
        self.kind() == EntryKind::Symlink
    }
}

impl EntryKind {
    /// The kind of a raw `st_mode`.
    pub fn from_raw_mode(mode: u32) -> Self {
        Self::from_rustix(FileType::from_raw_mode(mode))
    }

    /// The kind of a `rustix` file type (unknown types count as files).
    pub(crate) fn from_rustix(ft: FileType) -> Self {
        match ft {
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink,
            FileType::CharacterDevice => EntryKind::CharDevice,
            FileType::BlockDevice => EntryKind::BlockDevice,
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
            _ => EntryKind::File,
        }
    }
}
