//! Conversions between the union's types and the kernel's: error numbers,
//! times, file types and attributes, and the ids of a request's caller.
//!
//! Every request handler needs some of these, and none of them needs the
//! filesystem's state, so they live apart from it as plain functions.

use crate::killpriv::Caller;
use aufs_union::{Entry, EntryKind, Meta, Owner, UnionError};
use fuser::{Errno, FileAttr, FileType, INodeNo, Request};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) fn errno(e: &UnionError) -> Errno {
    tracing::debug!(storage_driver = "aufs", error = %e, "union op failed");
    Errno::from_i32(e.errno())
}

pub(super) fn io_errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

pub(super) fn rustix_errno(e: rustix::io::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = u32::try_from(nsecs).unwrap_or(0);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nsecs)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs)
    }
}

pub(super) fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
    }
}

pub(super) fn attr(ino: u64, md: &Meta) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: md.size(),
        blocks: md.blocks(),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: file_type(md.kind()),
        perm: (md.mode() & 0o7777) as u16,
        nlink: u32::try_from(md.nlink()).unwrap_or(u32::MAX),
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev() as u32,
        blksize: md.blksize() as u32,
        flags: 0,
    }
}

pub(super) fn entry_attr(e: &Entry) -> FileAttr {
    attr(e.ino, &e.metadata)
}

/// The owner of an entry made by `req`'s caller.
pub(super) fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// The ids of the process behind a request.
pub(super) fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}
