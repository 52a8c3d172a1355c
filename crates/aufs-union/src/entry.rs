//! What the union shows: entries, their kinds, and directory listings; and
//! the operations on an entry's branch file, all through descriptors.

use crate::beneath::{pin, proc_path};
use crate::meta::Meta;
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps, XattrFlags};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;

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

/// Where a branch file is: a directory descriptor resolved inside its
/// branch without following symlinks, and the file's name in it (`"."`
/// for the directory itself).
#[derive(Debug, Clone)]
pub(crate) struct At {
    pub dir: Arc<OwnedFd>,
    pub name: OsString,
}

impl At {
    pub(crate) fn new(dir: Arc<OwnedFd>, name: &OsStr) -> Self {
        At {
            dir,
            name: name.to_os_string(),
        }
    }

    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

/// A visible entry of the union.
///
/// Its branch file is reached only through the methods below: each works
/// from the directory descriptor the lookup resolved, never follows the
/// name if it is a symlink, and checks that the file it reached is the one
/// the lookup saw (`ESTALE` otherwise), so a rename racing the call can
/// neither lead it out of the branch nor onto another file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index of the branch it comes from in [`crate::UnionView::branches`]
    /// (0 = topmost: the rw branch when there is one).
    pub branch_index: usize,
    /// Its path inside that branch (for a merged directory: the topmost
    /// one), for messages: it is never opened by path.
    pub real_path: PathBuf,
    /// Its attributes when looked up (never of a symlink's target).
    pub metadata: Meta,
    /// Its stable union inode number (see [`crate::UnionView`] on inodes).
    pub ino: u64,
    pub(crate) at: At,
}

fn stale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

impl Entry {
    /// The entry's type.
    pub fn kind(&self) -> EntryKind {
        self.metadata.kind()
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.metadata.is_dir()
    }

    /// `Ok` when `md` is the file this entry was looked up as: the same
    /// device, inode number, type and (where the filesystem keeps one)
    /// birth time, so a number reused by a file made since does not pass.
    fn same(&self, md: &Meta) -> io::Result<()> {
        let was = &self.metadata;
        if md.ino() == was.ino()
            && md.dev() == was.dev()
            && md.kind() == was.kind()
            && md.birth() == was.birth()
        {
            Ok(())
        } else {
            Err(stale())
        }
    }

    /// The entry of a file of branch `branch_index` that has no name (an
    /// `O_TMPFILE` file, or one unlinked while open), shown as union inode
    /// `ino`: it is reached through `file` alone (reopened through its
    /// `/proc/self/fd` link).
    pub fn nameless(branch_index: usize, file: &File, ino: u64) -> io::Result<Entry> {
        let fd = rustix::io::fcntl_dupfd_cloexec(file, 0)?;
        Ok(Entry {
            branch_index,
            real_path: proc_path(fd.as_fd()),
            metadata: Meta::of(&fd)?,
            ino,
            at: At {
                dir: Arc::new(fd),
                name: OsString::new(),
            },
        })
    }

    /// An `O_PATH` descriptor of exactly this file.
    pub fn pin(&self) -> io::Result<OwnedFd> {
        if self.at.name.is_empty() {
            return Ok(rustix::io::fcntl_dupfd_cloexec(self.at.dir(), 0)?);
        }
        let fd = pin(self.at.dir(), &self.at.name)?;
        self.same(&Meta::of(&fd)?)?;
        Ok(fd)
    }

    /// Opens a regular file or a directory with open(2) `flags` (`O_CREAT`,
    /// `O_TRUNC` and `O_APPEND` are the caller's business and removed; the
    /// name is never followed).
    ///
    /// Opening anything else is refused (`EPERM`): opening a device runs
    /// its driver (a watchdog, a serial line), a fifo can block forever,
    /// and the kernel opens those of a FUSE mount itself. So that a rename
    /// racing the call cannot put one there first, a regular file is
    /// pinned (`O_PATH`), checked to be the file the lookup saw, and only
    /// then opened, through its `/proc/thread-self/fd` link.
    pub fn open(&self, flags: i32) -> io::Result<File> {
        let flags = (flags
            & !(libc::O_CREAT
                | libc::O_EXCL
                | libc::O_APPEND
                | libc::O_DIRECT
                | libc::O_TRUNC
                | libc::O_PATH
                | libc::O_NOFOLLOW))
            | libc::O_NOCTTY
            | libc::O_CLOEXEC;
        let reopen = |fd: BorrowedFd<'_>| -> io::Result<File> {
            Ok(File::from(rustix::fs::open(
                proc_path(fd),
                OFlags::from_bits_retain(flags as u32),
                Mode::empty(),
            )?))
        };
        match self.metadata.kind() {
            EntryKind::File => {}
            EntryKind::Dir if !self.at.name.is_empty() => {
                // O_DIRECTORY fails on anything else before opening it.
                let fd = rustix::fs::openat(
                    self.at.dir(),
                    &self.at.name,
                    OFlags::from_bits_retain((flags | libc::O_DIRECTORY | libc::O_NOFOLLOW) as u32),
                    Mode::empty(),
                )?;
                self.same(&Meta::of(&fd)?)?;
                return Ok(File::from(fd));
            }
            EntryKind::Dir => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EPERM)),
        }
        if self.at.name.is_empty() {
            // Nameless: the held descriptor is the file itself.
            let md = Meta::of(self.at.dir())?;
            if md.kind() != self.metadata.kind() {
                return Err(stale());
            }
            return reopen(self.at.dir());
        }
        let pinned = self.pin()?;
        reopen(pinned.as_fd())
    }

    /// Fresh attributes of the file.
    pub fn stat(&self) -> io::Result<Meta> {
        if self.at.name.is_empty() {
            return Meta::of(self.at.dir());
        }
        let md = Meta::at(self.at.dir(), &self.at.name)?;
        self.same(&md)?;
        Ok(md)
    }

    /// The target of a symlink.
    pub fn read_link(&self) -> io::Result<PathBuf> {
        let fd = self.pin()?;
        let target = rustix::fs::readlinkat(&fd, c"", Vec::new())?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    /// Changes owner and/or group (never of a symlink's target).
    pub fn set_owner(&self, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let fd = self.pin()?;
        rustix::fs::chownat(
            &fd,
            c"",
            uid.map(rustix::fs::Uid::from_raw),
            gid.map(rustix::fs::Gid::from_raw),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Sets the permission bits; a symlink has none and is left alone.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        let fd = self.pin()?;
        set_mode_pinned(&fd, &self.metadata, mode)
    }

    /// Sets access and modification times (`UTIME_OMIT`/`UTIME_NOW` as
    /// utimensat(2)).
    pub fn set_times(&self, times: &Timestamps) -> io::Result<()> {
        let fd = self.pin()?;
        rustix::fs::utimensat(&fd, c"", times, AtFlags::EMPTY_PATH)?;
        Ok(())
    }

    /// Truncates or extends a regular file.
    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.open(libc::O_WRONLY)?.set_len(len)
    }

    /// The value of xattr `name`.
    pub fn xattr(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        let fd = self.pin()?;
        let p = proc_path(fd.as_fd());
        read_sized(
            || rustix::fs::getxattr_query(&p, name),
            |buf| rustix::fs::getxattr(&p, name, buf),
        )
    }

    /// The names of its xattrs, each ending in NUL.
    pub fn xattr_names(&self) -> io::Result<Vec<u8>> {
        let fd = self.pin()?;
        let p = proc_path(fd.as_fd());
        read_sized(
            || rustix::fs::listxattr_query(&p),
            |buf| rustix::fs::listxattr(&p, buf),
        )
    }

    /// Sets xattr `name` (setxattr(2) `flags`).
    pub fn set_xattr(&self, name: &OsStr, value: &[u8], flags: XattrFlags) -> io::Result<()> {
        let fd = self.pin()?;
        let p = proc_path(fd.as_fd());
        Ok(rustix::fs::setxattr(&p, name, value, flags)?)
    }

    /// Removes xattr `name`.
    pub fn remove_xattr(&self, name: &OsStr) -> io::Result<()> {
        let fd = self.pin()?;
        let p = proc_path(fd.as_fd());
        Ok(rustix::fs::removexattr(&p, name)?)
    }
}

/// chmod of pinned `fd` (with attributes `md`); symlinks are left alone.
pub(crate) fn set_mode_pinned(fd: &OwnedFd, md: &Meta, mode: u32) -> io::Result<()> {
    if md.is_symlink() {
        return Ok(());
    }
    rustix::fs::chmod(proc_path(fd.as_fd()), Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// Sizes a value, then reads it, again if it grew in between (`ERANGE`),
/// a few times at most: a value kept growing by someone else ends as
/// `ERANGE` rather than a loop.
pub fn read_sized(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    for _ in 0..8 {
        let len = query()?;
        let mut buf = vec![0u8; len];
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

use std::os::unix::ffi::OsStringExt;

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

#[cfg(test)]
mod tests {
    use crate::UnionView;
    use std::path::Path;

    /// A file swapped for a fifo between the lookup and the open is not
    /// opened (an open of the fifo would block; of a device, run its
    /// driver), and an entry that is a fifo is never opened at all.
    #[test]
    fn open_never_reaches_a_special_file() {
        let dir = tempfile::tempdir().unwrap();
        let rw = camino::Utf8Path::from_path(dir.path()).unwrap();
        std::fs::write(rw.join("x"), b"data").unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            rw.join("fifo").as_std_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .unwrap();
        let view = UnionView::open(Some(rw), &[]).unwrap();
        let x = view.lookup(Path::new("x")).unwrap().unwrap();
        let fifo = view.lookup(Path::new("fifo")).unwrap().unwrap();
        assert_eq!(
            fifo.open(libc::O_RDONLY).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        std::fs::rename(rw.join("fifo"), rw.join("x")).unwrap();
        assert_eq!(
            x.open(libc::O_RDONLY).unwrap_err().raw_os_error(),
            Some(libc::ESTALE),
            "the fifo now named x is not the file looked up"
        );
        // A new regular file under the old name is no match either.
        std::fs::remove_file(rw.join("x")).unwrap();
        std::fs::write(rw.join("x"), b"other").unwrap();
        let err = x.open(libc::O_RDONLY).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESTALE));
    }
}
