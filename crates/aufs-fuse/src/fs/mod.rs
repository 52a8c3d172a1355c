//! The FUSE filesystem: kernel requests mapped onto a [`UnionView`].

mod convert;
mod open;
mod setattr;
mod xattr;

use crate::io_mode::IoModes;
use crate::killpriv::kill_setid;
use crate::nodes::NodeTable;
use crate::stats::{Op, Stats};
use aufs_model::whiteout::is_reserved;
use aufs_union::{DirEntry, Entry, Meta, NewNode, UnionError, UnionView, MAX_NAME_LEN, ROOT_INO};
use convert::{attr, caller, entry_attr, errno, file_type, io_errno, owner, rustix_errno};
use fuser::{
    AccessFlags, BackingId, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use open::{open_real, Opened};
use setattr::SetAttr;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How long the kernel may cache entries and attributes of the rw branch.
/// Every change goes through this filesystem, so the kernel learns about it
/// from our replies; the short timeout only bounds surprises.
const TTL: Duration = Duration::from_secs(1);

/// How long the kernel may cache entries and attributes served from a
/// read-only branch: those never change (a change copies up first, through
/// a request that updates the kernel's view).
const RO_TTL: Duration = Duration::from_secs(3600);

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            fh,
            kill_setid: None,
        };
        match self.setattr_node(req, ino, set) {
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
        match self.open_node(req, ino, flags, |f| reply.open_backing(f)) {
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
        reply_empty(reply, self.set_xattr(ino, name, value, flags))
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _t = self.stats.start(Op::Getxattr);
        self.stats.xattr_name(name.as_bytes());
        Self::xattr_reply(reply, size, self.get_xattr(ino, name));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _t = self.stats.start(Op::Listxattr);
        Self::xattr_reply(reply, size, self.list_xattr(ino));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _t = self.stats.start(Op::Removexattr);
        reply_empty(reply, self.remove_xattr(ino, name))
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
