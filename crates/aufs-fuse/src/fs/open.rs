//! Opening files: the copy-up an open for writing needs, the open of the
//! branch file through its [`Entry`], and the choice of its I/O mode
//! (passthrough to a backing file, or served by us; see
//! [`crate::io_mode`]).
//!
//! Opens of a named node, of a node whose names are all gone, and of a
//! file just created all end in [`UnionFs::register_open`], so every open
//! of an inode agrees on one backing file as the kernel requires. An open
//! of a named node that finds the inode bound to another real file (the
//! lower original of a file copied up since) gives the copy a number of its
//! own and has the kernel look the name up again
//! ([`UnionFs::stale_open`]).

use super::convert::{caller, errno, io_errno};
use super::{lock, OpenFile, UnionFs};
use crate::io_mode::{HandleMode, IoModes, Join, RealId};
use crate::killpriv::{is_setid, kill_setid, Caller};
use aufs_union::{Entry, Meta};
use fuser::{BackingId, Errno, FileHandle, FopenFlags, INodeNo, OpenFlags, Request};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How an open was answered.
pub(super) struct Opened {
    pub(super) fh: FileHandle,
    pub(super) flags: FopenFlags,
    pub(super) backing: Option<Arc<BackingId>>,
}

/// Opens the branch file of `e` with the caller's access mode as is
/// (including the Linux-only mode 3, which checks read and write
/// permission but allows neither). Creation is ours and offsets are the
/// kernel's: [`Entry::open`] drops `O_CREAT`, `O_TRUNC` and `O_APPEND`.
pub(super) fn open_real(e: &Entry, flags: i32) -> io::Result<File> {
    e.open(flags)
}

/// What `O_TRUNC` does to a file just opened for writing: empty it, and
/// clear its set-id bits as a truncate by `truncated_by` would (the
/// kernel's `FUSE_OPEN_KILL_SUIDGID` is not passed on to us).
fn truncate_on_open(file: &File, flags: i32, truncated_by: Option<Caller>) -> Result<(), Errno> {
    if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
        file.set_len(0).map_err(io_errno)?;
        if let Some(caller) = truncated_by {
            kill_setid(file, caller).map_err(io_errno)?;
        }
    }
    Ok(())
}

fn real_id(md: &Meta) -> RealId {
    (md.dev(), md.ino())
}

impl UnionFs {
    /// OPEN of node `ino` by `req`'s caller.
    pub(super) fn open_node(
        &self,
        req: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<Opened, Errno> {
        // An open with O_TRUNC truncates: set-id bits go as for a truncate
        // by a caller without CAP_FSETID (uid 0 stands for it).
        let truncated_by = (self.killpriv && req.uid() != 0).then(|| caller(req));
        self.open_inner(ino, flags.0, truncated_by, open_backing)
    }

    fn add_file(
        &self,
        ino: u64,
        file: File,
        in_rw: bool,
        backing: Option<Arc<BackingId>>,
    ) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let open = OpenFile {
            ino,
            file,
            in_rw,
            _backing: backing,
        };
        lock(&self.files).insert(fh, Arc::new(open));
        FileHandle(fh)
    }

    /// Registers the open of real file `e` (already opened as `file`) for
    /// union inode `ino`, choosing its I/O mode (see [`crate::io_mode`]) in
    /// `io`, the locked table. `open_backing` registers a backing file with
    /// the kernel. `None` when the inode is passed through to another real
    /// file: the open cannot join it.
    fn register_open(
        &self,
        io: &mut IoModes,
        ino: u64,
        e: &Entry,
        file: File,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Option<Opened> {
        let writable_branch = self.view.branches()[e.branch_index].writable;
        let real = real_id(&e.metadata);
        let cached_flags = if writable_branch {
            FopenFlags::empty()
        } else {
            // Data of a read-only branch never changes: keep the page cache.
            FopenFlags::FOPEN_KEEP_CACHE
        };
        let (mode, flags) = match io.join(ino, real) {
            Join::Stale => return None,
            Join::Passthrough(b) => (HandleMode::Passthrough(b), FopenFlags::empty()),
            Join::Cached => (HandleMode::Cached, cached_flags),
            Join::First => {
                // Passthrough writes keep set-id bits (see
                // `crate::killpriv`): such files are served by us.
                let backing = (self.passthrough && !is_setid(e.metadata.mode()))
                    .then(|| self.backing_for(e, &file, writable_branch, open_backing))
                    .flatten();
                let mode = io.start(ino, real, backing);
                let flags = match mode {
                    HandleMode::Cached => cached_flags,
                    _ => FopenFlags::empty(),
                };
                (mode, flags)
            }
        };
        let backing = match &mode {
            HandleMode::Passthrough(b) => Some(b.clone()),
            _ => None,
        };
        Some(Opened {
            fh: self.add_file(ino, file, writable_branch, backing.clone()),
            flags,
            backing,
        })
    }

    /// A backing file for passthrough of branch file `e`: for a rw branch
    /// file open for reading and writing, so every later open can share it;
    /// for a read-only branch file open for reading (a write copies up
    /// first). `None` when passthrough is not possible (a running
    /// executable cannot be opened for writing, a filesystem may refuse
    /// stacking).
    fn backing_for(
        &self,
        e: &Entry,
        file: &File,
        writable_branch: bool,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        let access = rustix::fs::fcntl_getfl(file).ok()? & rustix::fs::OFlags::RWMODE;
        // The open's own descriptor serves when it has the access needed
        // (always for read-only branch files, opened for reading only).
        let own;
        let real = if !writable_branch || access == rustix::fs::OFlags::RDWR {
            file
        } else {
            own = open_real(e, libc::O_RDWR).ok()?;
            &own
        };
        match open_backing(real) {
            Ok(id) => Some(Arc::new(id)),
            Err(err) => {
                tracing::debug!(storage_driver = "aufs", path = ?e.real_path, error = %err, "no passthrough");
                None
            }
        }
    }

    /// The answer to an open of node `ino` (union `path`, now `e`) that
    /// found the node passed through to another real file: the lower
    /// original, still open, of a file copied up since. The copy gets a
    /// number of its own, and `ESTALE` makes the kernel look the name up
    /// again (the VFS retries the open once with revalidation), so the open
    /// lands on a new node: old descriptors keep reading the lower file, as
    /// with overlayfs, and new ones get the copy.
    fn stale_open(&self, ino: u64, path: &Path, e: &Entry) -> Errno {
        if e.ino == ino && self.view.branches()[e.branch_index].writable {
            if let Err(err) = self.view.renumber(path) {
                return errno(&err);
            }
        }
        tracing::debug!(
            storage_driver = "aufs",
            ?path,
            ino,
            "open of a stale passthrough node"
        );
        Errno::ESTALE
    }

    fn open_inner(
        &self,
        ino: INodeNo,
        flags: i32,
        truncated_by: Option<Caller>,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<Opened, Errno> {
        let path = match self.path(ino) {
            Ok(p) => p,
            // No name, but open in the rw branch (an `O_TMPFILE` file, or
            // one unlinked while open), reached through `/proc/PID/fd/N`.
            Err(err) => {
                let f = self.any_open_rw_file(ino.0).ok_or(err)?;
                return self.reopen_nameless(ino, &f.file, flags, truncated_by, open_backing);
            }
        };
        let acc = flags & libc::O_ACCMODE;
        let writes = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if writes {
            // The I/O modes stay locked through the copy-up: no passthrough
            // of the lower original can start in between.
            let mut io = lock(&self.io);
            let e = self
                .view
                .copy_up(&path, flags & libc::O_TRUNC == 0)
                .map_err(|e| errno(&e))?;
            if io
                .passthrough_real(ino.0)
                .is_some_and(|r| r != real_id(&e.metadata))
            {
                drop(io);
                return Err(self.stale_open(ino.0, &path, &e));
            }
            let file = open_real(&e, flags).map_err(io_errno)?;
            truncate_on_open(&file, flags, truncated_by)?;
            return self
                .register_open(&mut io, ino.0, &e, file, open_backing)
                .ok_or(Errno::ESTALE);
        }
        let e = self.lookup_path(&path)?;
        if e.ino != ino.0 {
            return Err(Errno::ESTALE);
        }
        let file = open_real(&e, flags).map_err(io_errno)?;
        let mut io = lock(&self.io);
        match self.register_open(&mut io, ino.0, &e, file, open_backing) {
            Some(o) => Ok(o),
            None => {
                drop(io);
                Err(self.stale_open(ino.0, &path, &e))
            }
        }
    }

    /// Opens again node `ino` of the rw branch, which has no name left,
    /// through `held`, an open descriptor of it.
    fn reopen_nameless(
        &self,
        ino: INodeNo,
        held: &File,
        flags: i32,
        truncated_by: Option<Caller>,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<Opened, Errno> {
        let branch = self.rw_branch().ok_or(Errno::EROFS)?;
        let e = Entry::nameless(branch, held, ino.0).map_err(io_errno)?;
        let file = open_real(&e, flags).map_err(io_errno)?;
        truncate_on_open(&file, flags, truncated_by)?;
        let mut io = lock(&self.io);
        self.register_open(&mut io, ino.0, &e, file, open_backing)
            .ok_or(Errno::ESTALE)
    }

    /// Registers the first open of `e`, a file just made in the rw branch.
    pub(super) fn open_new(
        &self,
        e: Entry,
        file: File,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<(Entry, Opened), Errno> {
        let mut io = lock(&self.io);
        let opened = self
            .register_open(&mut io, e.ino, &e, file, open_backing)
            .ok_or(Errno::ESTALE)?;
        Ok((e, opened))
    }
}
