//! Path-safe filesystem operations inside one root directory.
//!
//! Every path of a tar entry is resolved by the kernel with `openat2` and
//! `RESOLVE_IN_ROOT`: `..`, absolute symlinks and symlinked parents all stay
//! inside the root, as if the process were chrooted there (Docker's
//! chrootarchive semantics), without a chroot. The last component is then
//! handled by `*at` calls on the parent's fd that never follow it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
};

use crate::reader::Time;

/// Resolution flags for everything under the root.
pub(crate) const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// An open root directory (the staging tree of an apply).
#[derive(Debug)]
pub(crate) struct Root {
    pub fd: OwnedFd,
}

fn path_arg(rel: &[u8]) -> &[u8] {
    if rel.is_empty() {
        b"."
    } else {
        rel
    }
}

impl Root {
    /// Resolves an existing directory inside the root (an `O_PATH` fd).
    pub(crate) fn resolve_dir(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat2(
            &self.fd,
            path_arg(rel),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )?)
    }

    /// Opens an existing directory inside the root for reading and metadata changes.
    pub(crate) fn open_dir_rw(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat2(
            &self.fd,
            path_arg(rel),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )?)
    }

    /// Resolves a directory, creating missing components (mode 0755, owned by
    /// `owner`) as Docker's Untar does for entries whose parents are not in the tar.
    pub(crate) fn ensure_dir(&self, rel: &[u8], owner: Option<(u32, u32)>) -> io::Result<OwnedFd> {
        match self.resolve_dir(rel) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {}
            other => return other,
        }
        let mut cur = self.resolve_dir(b"")?;
        let mut prefix: Vec<u8> = Vec::new();
        for comp in rel.split(|&b| b == b'/') {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(comp);
            match self.resolve_dir(&prefix) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
                    rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755))?;
                    let fd = rustix::fs::openat(
                        &cur,
                        comp,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    if let Some((u, g)) = owner {
                        rustix::fs::fchown(&fd, Some(uid(u)), Some(gid(g)))?;
                    }
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
                    cur = self.resolve_dir(&prefix)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }
}

pub(crate) fn uid(u: u32) -> Uid {
    Uid::from_raw(u)
}

pub(crate) fn gid(g: u32) -> Gid {
    Gid::from_raw(g)
}

/// `/proc/thread-self/fd/<dir>/<name>`: a path naming `name` in an already-resolved
/// directory, for calls that have no `*at` form (`lsetxattr`, `llistxattr`).
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut p = PathBuf::from(format!("/proc/thread-self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(std::ffi::OsStr::from_bytes(name));
    }
    p
}

/// Removes `name` in `dir`, whatever it is (a directory with everything under it).
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &[u8], is_dir: bool) -> io::Result<()> {
    if is_dir {
        // std's remove_dir_all never follows symlinks (it walks with openat/unlinkat);
        // the parent is pinned by its fd through /proc.
        std::fs::remove_dir_all(proc_path(dir, name))
    } else {
        Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
    }
}

pub(crate) fn timestamps(atime: Time, mtime: Time) -> Timestamps {
    let ts = |t: Time| Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nsec),
    };
    Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}

/// Where a metadata change is applied.
pub(crate) enum Target<'a> {
    /// An fd opened for reading or writing (regular files, directories).
    Fd(BorrowedFd<'a>),
    /// `name` in directory `dir`, never followed (symlinks, devices, fifos).
    At(BorrowedFd<'a>, &'a [u8]),
}

impl Target<'_> {
    pub(crate) fn chown(&self, u: u32, g: u32) -> io::Result<()> {
        match self {
            Target::Fd(fd) => rustix::fs::fchown(fd, Some(uid(u)), Some(gid(g)))?,
            Target::At(dir, name) => rustix::fs::chownat(
                dir,
                *name,
                Some(uid(u)),
                Some(gid(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )?,
        }
        Ok(())
    }

    /// Sets permission bits; never on a symlink (they have none).
    pub(crate) fn chmod(&self, mode: u32) -> io::Result<()> {
        let mode = Mode::from_raw_mode(mode & 0o7777);
        match self {
            Target::Fd(fd) => rustix::fs::fchmod(fd, mode)?,
            Target::At(dir, name) => {
                // Pin the inode with O_PATH, check it is no symlink, then chmod
                // through its /proc magic link (which names the inode itself).
                let fd = rustix::fs::openat(
                    dir,
                    *name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let st = rustix::fs::fstat(&fd)?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                    return Ok(());
                }
                rustix::fs::chmod(proc_path(fd.as_fd(), b""), mode)?;
            }
        }
        Ok(())
    }

    pub(crate) fn set_xattr(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            Target::Fd(fd) => rustix::fs::fsetxattr(fd, key, value, XattrFlags::empty())?,
            Target::At(dir, name) => {
                rustix::fs::lsetxattr(proc_path(*dir, name), key, value, XattrFlags::empty())?
            }
        }
        Ok(())
    }

    pub(crate) fn set_times(&self, ts: &Timestamps) -> io::Result<()> {
        match self {
            Target::Fd(fd) => rustix::fs::futimens(fd, ts)?,
            Target::At(dir, name) => {
                rustix::fs::utimensat(dir, *name, ts, AtFlags::SYMLINK_NOFOLLOW)?
            }
        }
        Ok(())
    }
}
