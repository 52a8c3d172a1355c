//! The FUSE filesystem: kernel requests mapped onto a [`UnionView`].

use crate::io_mode::{HandleMode, IoModes, Join, RealId};
use crate::killpriv::{cleared_mode, is_setid, kill_setid, Caller};
use crate::nodes::NodeTable;
use crate::stats::{Op, Stats};
use aufs_model::whiteout::is_reserved;
use aufs_union::{
    DirEntry, Entry, EntryKind, Meta, NewNode, Owner, UnionError, UnionView, MAX_NAME_LEN, ROOT_INO,
};
use fuser::{
    AccessFlags, BackingId, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache entries and attributes of the rw branch.
/// Every change goes through this filesystem, so the kernel learns about it
/// from our replies; the short timeout only bounds surprises.
const TTL: Duration = Duration::from_secs(1);

/// How long the kernel may cache entries and attributes served from a
/// read-only branch: those never change (a change copies up first, through
/// a request that updates the kernel's view).
const RO_TTL: Duration = Duration::from_secs(3600);

/// The changes of one `setattr` request.
struct SetAttr {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
    fh: Option<FileHandle>,
    /// Clear the set-id bits afterwards, for this caller (see
    /// [`crate::killpriv`]).
    kill_setid: Option<Caller>,
}

struct OpenFile {
    /// The union inode.
    ino: u64,
    file: File,
    /// The file lives in the rw branch: changes through it need no copy-up.
    in_rw: bool,
    /// Keeps the passthrough backing file registered while this is open.
    _backing: Option<Arc<BackingId>>,
}

/// A [`fuser::Filesystem`] showing a [`UnionView`].
pub struct UnionFs {
    view: UnionView,
    nodes: Mutex<NodeTable>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    io: Mutex<IoModes>,
    /// The kernel accepted passthrough at `init`.
    passthrough: bool,
    /// The kernel accepted `FUSE_HANDLE_KILLPRIV_V2` at `init`: set-id bits
    /// are ours to clear (see [`crate::killpriv`]).
    killpriv: bool,
    /// Request counters (see [`crate::stats`]).
    stats: Stats,
}

impl std::fmt::Debug for UnionFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnionFs").field("view", &self.view).finish()
    }
}

fn errno(e: &UnionError) -> Errno {
    tracing::debug!(storage_driver = "aufs", error = %e, "union op failed");
    Errno::from_i32(e.errno())
}

fn io_errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = u32::try_from(nsecs).unwrap_or(0);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nsecs)
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs)
    }
}

fn file_type(kind: EntryKind) -> FileType {
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

fn attr(ino: u64, md: &Meta) -> FileAttr {
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

fn entry_attr(e: &Entry) -> FileAttr {
    attr(e.ino, &e.metadata)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the branch file of `e` with the caller's access mode as is
/// (including the Linux-only mode 3, which checks read and write
/// permission but allows neither). Creation is ours and offsets are the
/// kernel's: [`Entry::open`] drops `O_CREAT`, `O_TRUNC` and `O_APPEND`.
fn open_real(e: &Entry, flags: i32) -> io::Result<File> {
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

/// The owner of an entry made by `req`'s caller.
fn owner(req: &Request) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// Answers a create (named or not) with the new entry and its open file.
fn reply_created(reply: ReplyCreate, r: Result<(Entry, Opened), Errno>) {
    match r {
        Ok((e, o)) => match &o.backing {
            Some(b) => {
                reply.created_passthrough(&TTL, &entry_attr(&e), Generation(0), o.fh, o.flags, b)
            }
            None => reply.created(&TTL, &entry_attr(&e), Generation(0), o.fh, o.flags),
        },
        Err(e) => reply.error(e),
    }
}

fn real_id(md: &Meta) -> RealId {
    (md.dev(), md.ino())
}

/// How an open was answered.
struct Opened {
    fh: FileHandle,
    flags: FopenFlags,
    backing: Option<Arc<BackingId>>,
}

impl UnionFs {
    /// A filesystem over `view`.
    pub fn new(view: UnionView) -> Self {
        UnionFs {
            view,
            nodes: Mutex::new(NodeTable::default()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            io: Mutex::new(IoModes::default()),
            passthrough: false,
            killpriv: false,
            stats: Stats::new(false),
        }
    }

    /// Counts requests per kind and logs the table at unmount when
    /// `enabled` (the server turns it on with `AUFS_FUSE_STATS=1`).
    pub fn with_stats(mut self, enabled: bool) -> Self {
        self.stats = Stats::new(enabled);
        self
    }

    /// The cache timeout of an entry: long when it comes from a read-only
    /// branch.
    fn ttl(&self, e: &Entry) -> Duration {
        if e.ino == ROOT_INO || self.view.branches()[e.branch_index].writable {
            TTL
        } else {
            RO_TTL
        }
    }

    /// An open file of inode `ino`, if any (for a node whose names are all
    /// gone but which is still open).
    fn any_open_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        lock(&self.files).values().find(|f| f.ino == ino).cloned()
    }

    /// An open descriptor of node `ino` in the rw branch: the node's own
    /// file, reachable without a lookup or a copy-up.
    fn any_open_rw_file(&self, ino: u64) -> Option<Arc<OpenFile>> {
        lock(&self.files)
            .values()
            .find(|f| f.ino == ino && f.in_rw)
            .cloned()
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        lock(&self.nodes).path(ino.0).ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn lookup_path(&self, path: &Path) -> Result<Entry, Errno> {
        match self.view.lookup(path) {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err(Errno::ENOENT),
            Err(e) => Err(errno(&e)),
        }
    }

    /// Attributes of node `ino`, reported under that number, with their
    /// cache timeout. A node with no name left but still open is answered
    /// from its open file.
    fn node_attr(&self, ino: INodeNo) -> Result<(FileAttr, Duration), Errno> {
        // Any name of the node that the union still shows will do.
        let paths = lock(&self.nodes).paths(ino.0);
        // A name that shows another file now (a rename raced this) is no
        // answer for this node.
        let found = paths
            .iter()
            .map(|p| self.lookup_path(p))
            .find(|r| r.as_ref().is_ok_and(|e| e.ino == ino.0))
            .unwrap_or(Err(Errno::ENOENT));
        match found {
            Ok(e) => Ok((attr(ino.0, &e.metadata), self.ttl(&e))),
            Err(err) => match self.any_open_file(ino.0) {
                Some(f) => {
                    let md = Meta::of(&f.file).map_err(io_errno)?;
                    Ok((attr(ino.0, &md), TTL))
                }
                None => Err(err),
            },
        }
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<OpenFile>, Errno> {
        lock(&self.files).get(&fh.0).cloned().ok_or(Errno::EBADF)
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

    fn new_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        node: NewNode<'_>,
    ) -> Result<Entry, Errno> {
        if is_reserved(name.as_bytes()) {
            return Err(Errno::EPERM);
        }
        let path = self.child(parent, name)?;
        let e = self
            .view
            .create(&path, node, Some(owner(req)))
            .map_err(|e| errno(&e))?;
        lock(&self.nodes).remember(parent.0, name, e.ino);
        Ok(e)
    }

    /// Removes `name` from `parent` with `remove` (unlink or rmdir, which
    /// leave the whiteouts aufs would) and forgets the name's node link.
    fn remove_name(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(&UnionView, &Path) -> Result<(), UnionError>,
    ) -> Result<(), Errno> {
        let p = self.child(parent, name)?;
        let ino = self.lookup_path(&p)?.ino;
        remove(&self.view, &p).map_err(|e| errno(&e))?;
        lock(&self.nodes).unlink(parent.0, name, ino);
        Ok(())
    }

    fn reply_entry(&self, reply: ReplyEntry, r: Result<Entry, Errno>) {
        match r {
            Ok(e) => reply.entry(&self.ttl(&e), &entry_attr(&e), Generation(0)),
            Err(e) => reply.error(e),
        }
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
    fn open_new(
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

    /// Index of the rw branch, if the union has one.
    fn rw_branch(&self) -> Option<usize> {
        self.view.branches().iter().position(|b| b.writable)
    }

    fn xattr_reply(reply: ReplyXattr, size: u32, data: Result<Vec<u8>, Errno>) {
        match data {
            Err(e) => reply.error(e),
            Ok(d) if size == 0 => reply.size(d.len() as u32),
            Ok(d) if d.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(d) => reply.data(&d),
        }
    }

    /// The entry of node `ino`; `ESTALE` when its name shows another
    /// file now (a rename raced this request).
    fn real_of(&self, ino: INodeNo) -> Result<Entry, Errno> {
        let path = self.path(ino)?;
        same_node(ino, self.lookup_path(&path)?)
    }

    /// [`Self::real_of`], copied up to the rw branch first.
    fn writable_real(&self, ino: INodeNo) -> Result<Entry, Errno> {
        let path = self.path(ino)?;
        same_node(ino, self.view.copy_up(&path, true).map_err(|e| errno(&e))?)
    }
}

/// `e` when it is node `ino`; `ESTALE` otherwise.
fn same_node(ino: INodeNo, e: Entry) -> Result<Entry, Errno> {
    if e.ino == ino.0 {
        Ok(e)
    } else {
        Err(Errno::ESTALE)
    }
}

/// The ids of the process behind a request.
fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn rustix_errno(e: rustix::io::Errno) -> Errno {
    Errno::from_i32(e.raw_os_error())
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

/// [`get_xattr`] through an open descriptor.
fn fget_xattr(file: &File, name: &OsStr) -> Result<Vec<u8>, Errno> {
    read_xattr(
        || rustix::fs::fgetxattr_query(file, name),
        |buf| rustix::fs::fgetxattr(file, name, buf),
    )
}

/// Sizes an xattr, then reads it, again if it grew in between (`ERANGE`).
fn read_xattr(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> Result<Vec<u8>, Errno> {
    loop {
        let len = query().map_err(rustix_errno)?;
        let mut buf = vec![0u8; len];
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(rustix_errno(e)),
        }
    }
}

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // File locks (flock, POSIX) stay with the kernel, which keeps them
        // locally: no lock capability is asked for.
        for cap in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_POSIX_ACL,
        ] {
            if config.add_capabilities(cap).is_err() {
                tracing::info!(
                    storage_driver = "aufs",
                    ?cap,
                    "kernel lacks FUSE capability"
                );
            }
        }
        // Set-id bits are cleared by us (see `crate::killpriv`), so the
        // kernel stops probing `security.capability` before every write.
        self.killpriv = config
            .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_ok();
        // Readahead of files not passed through goes out in the background:
        // allow more of it in flight than the default 12 requests.
        let _ = config.set_max_background(64);
        // Passthrough needs room for one stacking level (the branches' own
        // filesystem).
        self.passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        tracing::info!(
            storage_driver = "aufs",
            passthrough = self.passthrough,
            killpriv = self.killpriv,
            "FUSE session started"
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _t = self.stats.start(Op::Lookup);
        if is_reserved(name.as_bytes()) {
            // aufs's answer for any `.wh.` name (`au_test_shwh`): such names
            // are neither shown nor made, so `open(O_CREAT)` fails alike.
            reply.error(Errno::EPERM);
            return;
        }
        let r = self.path(parent).and_then(|dir| {
            let e = match self.view.lookup_child(&dir, name) {
                Ok(Some(e)) => e,
                Ok(None) => return Err(Errno::ENOENT),
                Err(e) => return Err(errno(&e)),
            };
            lock(&self.nodes).remember(parent.0, name, e.ino);
            Ok(e)
        });
        self.reply_entry(reply, r);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _t = self.stats.start(Op::Forget);
        lock(&self.nodes).forget(ino.0, nlookup);
    }

    fn destroy(&mut self) {
        if let Some(table) = self.stats.table() {
            tracing::info!(storage_driver = "aufs", "FUSE requests served:\n{table}");
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _t = self.stats.start(Op::Getattr);
        let r = match fh.map(|fh| self.file(fh)) {
            Some(Ok(f)) => Meta::of(&f.file)
                .map(|md| (attr(ino.0, &md), TTL))
                .map_err(io_errno),
            _ => self.node_attr(ino),
        };
        match r {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _t = self.stats.start(Op::Setattr);
        let nothing = mode.is_none()
            && uid.is_none()
            && gid.is_none()
            && size.is_none()
            && atime.is_none()
            && mtime.is_none();
        // What is left of a kernel-side kill, or a truncate by a caller
        // without CAP_FSETID (uid 0 stands for it: the kernel's
        // FATTR_KILL_SUIDGID is not passed on to us).
        let kill_setid =
            (self.killpriv && mode.is_none() && (nothing || (size.is_some() && req.uid() != 0)))
                .then(|| caller(req));
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh,
            kill_setid,
        };
        match self.setattr_inner(ino, set) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _t = self.stats.start(Op::Readlink);
        match self
            .real_of(ino)
            .and_then(|e| e.read_link().map_err(io_errno))
        {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _t = self.stats.start(Op::Mknod);
        let node = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => NewNode::File { mode },
            libc::S_IFDIR => NewNode::Dir { mode },
            _ => NewNode::Special {
                mode,
                rdev: rdev.into(),
            },
        };
        let r = self.new_entry(req, parent, name, node);
        self.reply_entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _t = self.stats.start(Op::Mkdir);
        let r = self.new_entry(req, parent, name, NewNode::Dir { mode });
        self.reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.stats.start(Op::Unlink);
        reply_empty(reply, self.remove_name(parent, name, UnionView::unlink))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.stats.start(Op::Rmdir);
        reply_empty(reply, self.remove_name(parent, name, UnionView::rmdir))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _t = self.stats.start(Op::Symlink);
        let r = self.new_entry(req, parent, link_name, NewNode::Symlink { target });
        self.reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Rename);
        let r = (|| {
            if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
                return Err(Errno::EINVAL);
            }
            if is_reserved(newname.as_bytes()) {
                return Err(Errno::EPERM);
            }
            let src = self.child(parent, name)?;
            let dst = self.child(newparent, newname)?;
            let src_ino = self.lookup_path(&src)?.ino;
            let dst_ino = self.view.lookup(&dst).ok().flatten().map(|e| e.ino);
            self.view
                .rename(&src, &dst, flags.contains(RenameFlags::RENAME_NOREPLACE))
                .map_err(|e| errno(&e))?;
            let mut nodes = lock(&self.nodes);
            if let Some(d) = dst_ino {
                nodes.unlink(newparent.0, newname, d);
            }
            nodes.rename(src_ino, parent.0, name, newparent.0, newname);
            Ok(())
        })();
        reply_empty(reply, r)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _t = self.stats.start(Op::Link);
        let r = (|| {
            if is_reserved(newname.as_bytes()) {
                return Err(Errno::EPERM);
            }
            let dst = self.child(newparent, newname)?;
            let e = match self.path(ino) {
                Ok(src) => self.view.link(&src, &dst),
                // An `O_TMPFILE` file (or one unlinked while open) gets a
                // name: `linkat` of its descriptor.
                Err(err) => {
                    let f = self.any_open_rw_file(ino.0).ok_or(err)?;
                    self.view.link_unnamed(&f.file, &dst)
                }
            }
            .map_err(|e| errno(&e))?;
            lock(&self.nodes).remember(newparent.0, newname, e.ino);
            Ok(e)
        })();
        self.reply_entry(reply, r);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.stats.start(Op::Open);
        // An open with O_TRUNC truncates: set-id bits go as for a truncate
        // by a caller without CAP_FSETID (uid 0 stands for it).
        let truncated_by = (self.killpriv && req.uid() != 0).then(|| caller(req));
        match self.open_inner(ino, flags.0, truncated_by, |f| reply.open_backing(f)) {
            Ok(Opened {
                fh,
                flags,
                backing: Some(b),
            }) => reply.opened_passthrough(fh, flags, &b),
            Ok(o) => reply.opened(o.fh, o.flags),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _t = self.stats.start(Op::Read);
        let r = self.file(fh).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                match f.file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_errno(e)),
                }
            }
            buf.truncate(done);
            Ok(buf)
        });
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _t = self.stats.start(Op::Write);
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        match self.file(fh).and_then(|f| {
            if kill {
                kill_setid(&f.file, caller(req)).map_err(io_errno)?;
            }
            f.file.write_all_at(data, offset).map_err(io_errno)
        }) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Flush);
        // Nothing to flush: writes reach the branch file when they are made
        // and file locks stay with the kernel. `ENOSYS` makes the kernel
        // stop sending FLUSH, a round trip on every close.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Release);
        // The files table is unlocked before the I/O modes are taken (an
        // open takes them in the other order).
        let released = lock(&self.files).remove(&fh.0);
        if let Some(f) = released {
            lock(&self.io).release(f.ino);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Fsync);
        let r = self.file(fh).and_then(|f| {
            if datasync {
                f.file.sync_data()
            } else {
                f.file.sync_all()
            }
            .map_err(io_errno)
        });
        reply_empty(reply, r)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _t = self.stats.start(Op::Opendir);
        let r = self.path(ino).and_then(|p| {
            let list = self.view.read_dir(&p).map_err(|e| errno(&e))?;
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            lock(&self.dirs).insert(fh, Arc::new(list));
            Ok(FileHandle(fh))
        });
        match r {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _t = self.stats.start(Op::Readdir);
        let Some(list) = lock(&self.dirs).get(&fh.0).cloned() else {
            reply.error(Errno::EBADF);
            return;
        };
        let parent = lock(&self.nodes).parent(ino.0);
        // Offsets: 1 = ".", 2 = "..", 3.. = the snapshot taken at opendir.
        let mut i = offset;
        loop {
            let full = match i {
                0 => reply.add(ino, 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(parent), 2, FileType::Directory, ".."),
                n => match list.get((n - 2) as usize) {
                    Some(e) => reply.add(INodeNo(e.ino), n + 1, file_type(e.kind), &e.name),
                    None => break,
                },
            };
            if full {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Releasedir);
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _t = self.stats.start(Op::Readdirplus);
        let Some(list) = lock(&self.dirs).get(&fh.0).cloned() else {
            reply.error(Errno::EBADF);
            return;
        };
        let dir = match self.path(ino) {
            Ok(d) => d,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let parent = lock(&self.nodes).parent(ino.0);
        // The kernel takes no reference on "." and "..", and ignores their
        // attributes.
        let dot = match self.node_attr(ino) {
            Ok((a, _)) => a,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let mut i = offset;
        loop {
            let full = match i {
                0 => reply.add(ino, 1, ".", &TTL, &dot, Generation(0)),
                1 => reply.add(INodeNo(parent), 2, "..", &TTL, &dot, Generation(0)),
                n => {
                    let Some(de) = list.get((n - 2) as usize) else {
                        break;
                    };
                    match self.view.lookup_child(&dir, &de.name) {
                        Ok(Some(e)) => {
                            let full = reply.add(
                                INodeNo(e.ino),
                                n + 1,
                                &de.name,
                                &self.ttl(&e),
                                &entry_attr(&e),
                                Generation(0),
                            );
                            if !full {
                                // Each entry sent is a lookup for the kernel.
                                lock(&self.nodes).remember(ino.0, &de.name, e.ino);
                            }
                            full
                        }
                        // Gone since opendir.
                        Ok(None) => false,
                        Err(e) => {
                            tracing::debug!(storage_driver = "aufs", error = %e, "readdirplus entry skipped");
                            false
                        }
                    }
                }
            };
            if full {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Fsyncdir);
        // Only the rw branch ever changes.
        let r = self.real_of(ino).and_then(|e| {
            if !self.view.branches()[e.branch_index].writable {
                return Ok(());
            }
            e.open(libc::O_RDONLY | libc::O_DIRECTORY)
                .and_then(|d| d.sync_all())
                .map_err(io_errno)
        });
        reply_empty(reply, r)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _t = self.stats.start(Op::Statfs);
        let root = self
            .view
            .lookup(Path::new(""))
            .ok()
            .flatten()
            .and_then(|e| e.pin().ok());
        let Some(root) = root else {
            return reply.error(Errno::EIO);
        };
        match rustix::fs::fstatvfs(&root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                // Room for the `.wh.` prefix of a whiteout, as aufs.
                (s.f_namemax.saturating_sub(4) as usize).min(MAX_NAME_LEN) as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(rustix_errno(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Setxattr);
        let r = self.writable_real(ino).and_then(|e| {
            e.set_xattr(
                name,
                value,
                rustix::fs::XattrFlags::from_bits_retain(flags as u32),
            )
            .map_err(io_errno)
        });
        reply_empty(reply, r)
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _t = self.stats.start(Op::Getxattr);
        self.stats.xattr_name(name.as_bytes());
        // The kernel asks for `security.capability` and the ACLs of a file
        // being written: an open rw descriptor answers without a lookup.
        let data = match self.any_open_rw_file(ino.0) {
            Some(f) => fget_xattr(&f.file, name),
            None => self
                .real_of(ino)
                .and_then(|e| e.xattr(name).map_err(io_errno)),
        };
        Self::xattr_reply(reply, size, data);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _t = self.stats.start(Op::Listxattr);
        let data = self
            .real_of(ino)
            .and_then(|e| e.xattr_names().map_err(io_errno));
        Self::xattr_reply(reply, size, data);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.stats.start(Op::Removexattr);
        let r = self.real_of(ino).and_then(|e| {
            // Nothing to copy up for a missing attribute.
            e.xattr(name).map_err(io_errno)?;
            let e = self.writable_real(ino)?;
            e.remove_xattr(name).map_err(io_errno)
        });
        reply_empty(reply, r)
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        let _t = self.stats.start(Op::Access);
        // Permission checks are the kernel's (`default_permissions`).
        match self.node_attr(ino).map(|(a, _)| a) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _t = self.stats.start(Op::Create);
        let r = self
            .new_entry(req, parent, name, NewNode::File { mode })
            .and_then(|e| {
                // Read-write when allowed: the same descriptor then serves
                // as the passthrough backing file, no second open needed.
                let rw = (flags & !libc::O_ACCMODE) | libc::O_RDWR;
                let file = open_real(&e, rw)
                    .or_else(|_| open_real(&e, flags))
                    .map_err(io_errno)?;
                self.open_new(e, file, |f| reply.open_backing(f))
            });
        reply_created(reply, r);
    }

    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _t = self.stats.start(Op::Tmpfile);
        let r = self.path(parent).and_then(|dir| {
            let (file, e) = self
                .view
                .create_unnamed(&dir, mode, flags, Some(owner(req)))
                .map_err(|e| errno(&e))?;
            self.open_new(e, file, |f| reply.open_backing(f))
        });
        reply_created(reply, r);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _t = self.stats.start(Op::Fallocate);
        let r = self.file(fh).and_then(|f| {
            rustix::fs::fallocate(
                &f.file,
                rustix::fs::FallocateFlags::from_bits_retain(mode as u32),
                offset,
                length,
            )
            .map_err(rustix_errno)
        });
        reply_empty(reply, r)
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        let _t = self.stats.start(Op::Ioctl);
        // No ioctls (FS_IOC_GETFLAGS and the like) pass through the union.
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _t = self.stats.start(Op::CopyFileRange);
        let r = self.file(fh_in).and_then(|src| {
            let dst = self.file(fh_out)?;
            let (mut off_in, mut off_out) = (offset_in, offset_out);
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 30);
            rustix::fs::copy_file_range(
                &src.file,
                Some(&mut off_in),
                &dst.file,
                Some(&mut off_out),
                want,
            )
            .map_err(rustix_errno)
        });
        match r {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _t = self.stats.start(Op::Lseek);
        let r = self.file(fh).and_then(|f| {
            let off = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
            let pos = match whence {
                libc::SEEK_DATA => rustix::fs::SeekFrom::Data(off),
                libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(off),
                libc::SEEK_SET => rustix::fs::SeekFrom::Start(off),
                libc::SEEK_END => rustix::fs::SeekFrom::End(offset),
                _ => return Err(Errno::EINVAL),
            };
            rustix::fs::seek(&f.file, pos).map_err(rustix_errno)
        });
        match r {
            Ok(o) => reply.offset(o as i64),
            Err(e) => reply.error(e),
        }
    }
}

/// Answers a request that returns no data.
fn reply_empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}
