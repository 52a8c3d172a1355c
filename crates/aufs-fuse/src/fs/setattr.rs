//! `setattr`: size, owner, mode and times of a node, and the set-id bits
//! that go with them (see [`crate::killpriv`]).
//!
//! A change goes through an open descriptor of the rw-branch file when
//! there is one (no lookup, no copy-up: a tar restoring owner, mode and
//! times on the file it just wrote), otherwise through the [`Entry`] the
//! node's copy-up returns, which reaches that very file from a held
//! directory.

use super::convert::{attr, caller, errno, io_errno, rustix_errno};
use super::UnionFs;
use crate::killpriv::{cleared_mode, kill_setid, Caller};
use aufs_union::{Entry, Meta};
use fuser::{Errno, FileAttr, FileHandle, INodeNo, Request, TimeOrNow};
use std::fs::File;
use std::io;
use std::time::UNIX_EPOCH;

/// The changes of one `setattr` request.
pub(super) struct SetAttr {
    pub(super) mode: Option<u32>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) size: Option<u64>,
    pub(super) atime: Option<TimeOrNow>,
    pub(super) mtime: Option<TimeOrNow>,
    pub(super) fh: Option<FileHandle>,
    /// Clear the set-id bits afterwards, for this caller (see
    /// [`crate::killpriv`]).
    pub(super) kill_setid: Option<Caller>,
}

impl UnionFs {
    /// SETATTR of node `ino` by `req`'s caller: `set`, with its
    /// `kill_setid` decided here.
    pub(super) fn setattr_node(
        &self,
        req: &Request,
        ino: INodeNo,
        mut set: SetAttr,
    ) -> Result<FileAttr, Errno> {
        let nothing = set.mode.is_none()
            && set.uid.is_none()
            && set.gid.is_none()
            && set.size.is_none()
            && set.atime.is_none()
            && set.mtime.is_none();
        // What is left of a kernel-side kill, or a truncate by a caller
        // without CAP_FSETID (uid 0 stands for it: the kernel's
        // FATTR_KILL_SUIDGID is not passed on to us).
        set.kill_setid = (self.killpriv
            && set.mode.is_none()
            && (nothing || (set.size.is_some() && req.uid() != 0)))
            .then(|| caller(req));
        self.setattr_inner(ino, set)
    }

    fn setattr_inner(&self, ino: INodeNo, set: SetAttr) -> Result<FileAttr, Errno> {
        let SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh,
            kill_setid,
        } = set;
        let times = (atime, mtime);
        // An open file of the rw branch (a tar restoring owner, mode and
        // times on the file it just wrote) changes through its descriptor:
        // no lookup, no copy-up.
        if let Some(f) = fh.and_then(|fh| self.file(fh).ok()).filter(|f| f.in_rw) {
            return setattr_fd(ino, &f.file, mode, uid, gid, size, times, kill_setid);
        }
        // `fchown`, `fchmod` and `futimens` reach us without a handle: any
        // open descriptor of the same rw-branch file will do (a size change
        // needs a writable one, so it keeps the path below).
        if size.is_none() {
            if let Some(f) = self.any_open_rw_file(ino.0) {
                return setattr_fd(ino, &f.file, mode, uid, gid, size, times, kill_setid);
            }
        }
        let path = match self.path(ino) {
            Ok(p) => p,
            Err(err) => {
                // All names gone, still open: change the open file.
                let f = fh
                    .and_then(|fh| self.file(fh).ok())
                    .or_else(|| self.any_open_file(ino.0))
                    .ok_or(err)?;
                return setattr_fd(ino, &f.file, mode, uid, gid, size, times, kill_setid);
            }
        };
        let e = self
            .view
            .copy_up(&path, size != Some(0))
            .map_err(|e| errno(&e))?;
        if e.ino != ino.0 {
            // The node's name shows another file now (a rename raced us).
            return Err(Errno::ESTALE);
        }
        // Every change goes through `e`, which reaches the very file the
        // copy-up returned, from a held directory, following nothing.
        if let Some(size) = size {
            match fh.map(|fh| self.file(fh)) {
                Some(Ok(f)) => f.file.set_len(size).map_err(io_errno)?,
                _ => e.set_len(size).map_err(io_errno)?,
            }
        }
        if uid.is_some() || gid.is_some() {
            e.set_owner(uid, gid).map_err(io_errno)?;
        }
        if let Some(mode) = mode {
            e.set_mode(mode).map_err(io_errno)?;
        }
        if atime.is_some() || mtime.is_some() {
            e.set_times(&timestamps(atime, mtime)).map_err(io_errno)?;
        }
        if let Some(caller) = kill_setid {
            kill_setid_entry(&e, caller).map_err(io_errno)?;
        }
        let md = e.stat().map_err(io_errno)?;
        Ok(attr(ino.0, &md))
    }
}

/// The `utimensat` times of a setattr (`UTIME_OMIT` for the unset one).
fn timestamps(atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> rustix::fs::Timestamps {
    let ts = |t: Option<TimeOrNow>| match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let (s, ns) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
                Err(e) => {
                    let d = e.duration();
                    if d.subsec_nanos() == 0 {
                        (-(d.as_secs() as i64), 0)
                    } else {
                        (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                    }
                }
            };
            rustix::fs::Timespec {
                tv_sec: s,
                tv_nsec: ns.into(),
            }
        }
    };
    rustix::fs::Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}

/// A setattr through the descriptor of an open rw-branch file, or of an
/// open file whose names are all gone (it lives in the rw branch: only
/// written files are copied up, and they are open for writing).
#[allow(clippy::too_many_arguments)]
fn setattr_fd(
    ino: INodeNo,
    file: &File,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    (atime, mtime): (Option<TimeOrNow>, Option<TimeOrNow>),
    kill: Option<Caller>,
) -> Result<FileAttr, Errno> {
    if let Some(size) = size {
        file.set_len(size).map_err(io_errno)?;
    }
    if uid.is_some() || gid.is_some() {
        rustix::fs::fchown(
            file,
            uid.map(rustix::fs::Uid::from_raw),
            gid.map(rustix::fs::Gid::from_raw),
        )
        .map_err(rustix_errno)?;
    }
    if let Some(mode) = mode {
        rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
            .map_err(rustix_errno)?;
    }
    if atime.is_some() || mtime.is_some() {
        rustix::fs::futimens(file, &timestamps(atime, mtime)).map_err(rustix_errno)?;
    }
    if let Some(caller) = kill {
        kill_setid(file, caller).map_err(io_errno)?;
    }
    let md = Meta::of(file).map_err(io_errno)?;
    Ok(attr(ino.0, &md))
}

/// Clears the set-id bits of branch file `e` for `caller` (see
/// [`crate::killpriv::cleared_mode`]).
fn kill_setid_entry(e: &Entry, caller: Caller) -> io::Result<()> {
    let md = e.stat()?;
    if let Some(m) = cleared_mode(md.mode(), md.gid(), caller) {
        e.set_mode(m)?;
    }
    Ok(())
}
