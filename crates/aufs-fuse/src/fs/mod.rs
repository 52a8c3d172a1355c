//! The FUSE filesystem: kernel requests mapped onto a [`UnionView`].
//!
//! [`UnionFs`] is one type whose request handling is split by topic, each
//! topic module adding inherent methods that return a `Result`:
//!
//! - this module: the state shared by every request (node names, open
//!   files and listings, I/O modes), the session's start and end, the
//!   helpers that resolve a node id to its union path and branch entry, and
//!   getattr, access and statfs;
//! - [`convert`]: errno, time, file type and attribute conversions;
//! - [`open`]: opens, copy-up for writing, and passthrough;
//! - [`setattr`]: size, owner, mode and times, and set-id bits;
//! - [`xattr`]: extended attributes;
//! - [`dir`]: listings (opendir, readdir, readdirplus, releasedir) and
//!   fsyncdir;
//! - [`names`]: lookup and every request that makes, removes or moves a
//!   name;
//! - [`data`]: I/O through open handles;
//! - [`dispatch`]: the [`fuser::Filesystem`] impl, which only counts each
//!   request, calls one of those methods and sends its result ([`reply`]
//!   holds the answers several requests share).
//!
//! Every access to a branch file goes through an [`aufs_union::Entry`] or
//! a descriptor opened through one: no branch file is reached by path.

mod convert;
mod data;
mod dir;
mod dispatch;
mod names;
mod open;
mod reply;
mod setattr;
mod xattr;

use crate::io_mode::IoModes;
use crate::nodes::NodeTable;
use crate::stats::Stats;
use aufs_union::{DirEntry, Entry, Meta, UnionView, MAX_NAME_LEN, ROOT_INO};
use convert::{attr, errno, io_errno, rustix_errno};
use fuser::{BackingId, Errno, FileAttr, FileHandle, INodeNo, InitFlags, KernelConfig};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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

    /// Index of the rw branch, if the union has one.
    fn rw_branch(&self) -> Option<usize> {
        self.view.branches().iter().position(|b| b.writable)
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

    /// Agrees with the kernel, at INIT, on the capabilities of the session:
    /// what it asks for, and what it learns of passthrough and killpriv.
    fn negotiate(&mut self, config: &mut KernelConfig) {
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
        // A read-only view (the lower part of a stacked mount) never makes a
        // file, so no node number is ever reused for another symlink: the
        // kernel may keep symlink targets (one READLINK each, not one per
        // resolution).
        if self.view.rw_root().is_none()
            && config
                .add_capabilities(InitFlags::FUSE_CACHE_SYMLINKS)
                .is_err()
        {
            tracing::info!(storage_driver = "aufs", "kernel lacks FUSE_CACHE_SYMLINKS");
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
    }

    /// Logs the request counters, if kept, when the session ends.
    fn log_stats(&self) {
        if let Some(table) = self.stats.table() {
            tracing::info!(storage_driver = "aufs", "FUSE requests served:\n{table}");
        }
    }

    /// GETATTR of node `ino`, through handle `fh` when the kernel gives
    /// one: attributes and their cache timeout.
    fn getattr_node(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
    ) -> Result<(FileAttr, Duration), Errno> {
        match fh.map(|fh| self.file(fh)) {
            Some(Ok(f)) => Meta::of(&f.file)
                .map(|md| (attr(ino.0, &md), TTL))
                .map_err(io_errno),
            _ => self.node_attr(ino),
        }
    }

    /// ACCESS: the node exists. Permission checks are the kernel's
    /// (`default_permissions`).
    fn check_access(&self, ino: INodeNo) -> Result<(), Errno> {
        self.node_attr(ino).map(|_| ())
    }

    /// STATFS: that of the filesystem the union root is found on, with its
    /// `f_namemax` lowered to the union's name limit.
    fn statfs_union(&self) -> Result<rustix::fs::StatVfs, Errno> {
        let root = self
            .view
            .lookup(Path::new(""))
            .ok()
            .flatten()
            .and_then(|e| e.pin().ok());
        let Some(root) = root else {
            return Err(Errno::EIO);
        };
        let mut s = rustix::fs::fstatvfs(&root).map_err(rustix_errno)?;
        // Room for the `.wh.` prefix of a whiteout, as aufs.
        s.f_namemax = (s.f_namemax.saturating_sub(4) as usize).min(MAX_NAME_LEN) as u64;
        Ok(s)
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
