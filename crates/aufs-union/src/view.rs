//! The read side of the union: lookup and merged listings.

use crate::beneath;
use crate::branch::Branch;
use crate::entry::At;
use crate::entry::{DirEntry, Entry, EntryKind};
use crate::error::{Result, UnionError};
use crate::meta::Meta;
use crate::path::components;
use crate::ro_index::{RoDir, RoIndex};
use crate::xino::{Xino, ROOT_INO};
use aufs_model::whiteout::{
    classify_bytes, whiteout_target_bytes, NameKind, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
};
use camino::Utf8Path;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The longest name the union accepts or shows: room is kept for the
/// `.wh.` prefix of its whiteout, as aufs does (`NAME_MAX - 4`).
pub const MAX_NAME_LEN: usize = 251;

/// Resolved directories kept at most; the cache starts over past this.
const DIR_CACHE_MAX: usize = 65_536;

/// Each cached directory holds a descriptor of its rw part: the cache may
/// take at most this share of the process's open-file limit.
const DIR_CACHE_FD_SHARE: u64 = 4;

/// How many resolved directories this process can afford to keep open.
fn dir_cache_max() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(limit / DIR_CACHE_FD_SHARE)
        .unwrap_or(usize::MAX)
        .clamp(64, DIR_CACHE_MAX)
}

/// An aufs union of real branch directories: one optional read-write branch
/// over read-only branches, nearest first.
///
/// Reads follow aufs: lookup goes top-down, `.wh.NAME` hides `NAME` below,
/// `.wh..wh..opq` makes a directory hide everything below it, `.wh..wh.*`
/// names never show. The read-only part of every directory is indexed once
/// (read-only branches never change), so lookups cost the same on a chain of
/// 2 or 200 layers; the rw branch is always read live.
///
/// Inode numbers ([`Entry::ino`]) are stable across views of the same
/// branches: the real inode number when the file lives on the device of the
/// top branch, else a mix of (device, inode); a merged directory takes the
/// number of its lowest part, so copy-up never changes it; the root is
/// [`crate::ROOT_INO`].
#[derive(Debug)]
pub struct UnionView {
    pub(crate) branches: Vec<Branch>,
    pub(crate) rw: Option<usize>,
    ro_chain: Vec<usize>,
    pub(crate) xino: Xino,
    ro_index: RoIndex,
    /// Names of multiply-linked lower files, for pseudo-links.
    pub(crate) links: crate::plink::LinkIndex,
    pub(crate) write_lock: Mutex<()>,
    /// Resolved union directories by path, valid for one generation.
    dir_cache: RwLock<std::collections::HashMap<PathBuf, (u64, Arc<DirState>)>>,
    /// Bumped after every change that can alter a resolved directory (a
    /// directory copied up, created, removed, renamed or made opaque).
    generation: AtomicU64,
    /// Size of `dir_cache` past which it is pruned.
    dir_cache_max: usize,
    /// Descriptors the read-only parts of resolved directories may still
    /// hold (see [`RoParts`]).
    ro_budget: Arc<AtomicUsize>,
}

/// A directory of the union, resolved: where its rw part is, and its
/// read-only part when still visible.
#[derive(Debug, Clone)]
pub(crate) struct DirState {
    pub path: PathBuf,
    pub rw: Option<RwDir>,
    pub ro: Option<Arc<RoDir>>,
    /// Its parts in read-only branches, opened as lookups need them.
    pub ro_parts: Arc<RoParts>,
}

/// The read-only parts of one resolved directory, held open while the
/// directory is: a lookup in it then costs one `statx`, not a resolution
/// of the whole path again. All views' parts share one budget of
/// descriptors; past it a part is opened for the lookup and closed again.
#[derive(Debug)]
pub(crate) struct RoParts {
    open: Mutex<Vec<(usize, Arc<OwnedFd>)>>,
    budget: Arc<AtomicUsize>,
}

impl RoParts {
    fn new(budget: Arc<AtomicUsize>) -> Self {
        RoParts {
            open: Mutex::new(Vec::new()),
            budget,
        }
    }

    /// The part in branch `index`, opened by `open` when not held yet.
    fn get(
        &self,
        index: usize,
        open: impl FnOnce() -> Result<Arc<OwnedFd>>,
    ) -> Result<Arc<OwnedFd>> {
        let mut held = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, fd)) = held.iter().find(|(i, _)| *i == index) {
            return Ok(fd.clone());
        }
        let fd = open()?;
        let took = self
            .budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if took {
            held.push((index, fd.clone()));
        }
        Ok(fd)
    }
}

impl Drop for RoParts {
    fn drop(&mut self) {
        let n = self.open.get_mut().map_or(0, |v| v.len());
        self.budget.fetch_add(n, Ordering::AcqRel);
    }
}

/// A directory of the rw branch, held open (`O_PATH`): names in it are
/// reached with `*at` calls on `fd`, never by a path walked again.
#[derive(Debug, Clone)]
pub(crate) struct RwDir {
    pub fd: Arc<OwnedFd>,
    /// Its path, for messages.
    pub real: PathBuf,
}

impl RwDir {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path of `name` in it, for messages.
    pub(crate) fn real(&self, name: &OsStr) -> PathBuf {
        self.real.join(name)
    }

    pub(crate) fn exists(&self, name: &OsStr) -> Result<bool> {
        beneath::exists(self.fd(), name).map_err(|e| UnionError::io("lstat", self.real(name), e))
    }

    pub(crate) fn at(&self, name: &OsStr) -> At {
        At::new(self.fd.clone(), name)
    }

    /// Subdirectory `name`, which must be `expected` (the file a lookup
    /// saw): `ESTALE` when a rename put another one there since.
    pub(crate) fn subdir(&self, name: &OsStr, expected: &Meta) -> Result<RwDir> {
        let real = self.real(name);
        let fd = beneath::open_subdir(self.fd(), name)
            .and_then(|fd| {
                let md = Meta::of(&fd)?;
                if md.ino() == expected.ino() && md.dev() == expected.dev() {
                    Ok(fd)
                } else {
                    Err(std::io::Error::from_raw_os_error(libc::ESTALE))
                }
            })
            .map_err(|e| UnionError::io("open", &real, e))?;
        Ok(RwDir {
            fd: Arc::new(fd),
            real,
        })
    }
}

/// A lookup result together with the state needed to descend into it.
#[derive(Debug)]
pub(crate) struct Found {
    pub entry: Entry,
    /// True when the entry is a directory present in rw.
    pub rw_dir: bool,
    /// The read-only chain, when the entry is a directory with a visible
    /// read-only part.
    pub ro_chain: Option<Box<[usize]>>,
}

pub(crate) fn whiteout_name(name: &OsStr) -> OsString {
    let mut s = OsString::from(WHITEOUT_PREFIX);
    s.push(name);
    s
}

impl UnionView {
    /// Opens a view over `rw` (if any) and `ro` (nearest first). Nothing is
    /// written anywhere.
    pub fn open(rw: Option<&Utf8Path>, ro: &[&Utf8Path]) -> Result<Self> {
        let mut branches = Vec::with_capacity(ro.len() + 1);
        if let Some(rw) = rw {
            branches.push(Branch::open(rw, true)?);
        }
        for r in ro {
            branches.push(Branch::open(r, false)?);
        }
        let base_dev = branches.first().map(|b| b.dev).unwrap_or(0);
        let rw_index = rw.map(|_| 0);
        let ro_chain = (rw_index.map_or(0, |_| 1)..branches.len()).collect();
        // Resolved directories and their read-only parts each may hold
        // this many descriptors.
        let budget = dir_cache_max();
        Ok(UnionView {
            branches,
            rw: rw_index,
            ro_chain,
            xino: Xino::new(base_dev),
            ro_index: RoIndex::new(),
            links: crate::plink::LinkIndex::default(),
            write_lock: Mutex::new(()),
            dir_cache: RwLock::new(std::collections::HashMap::new()),
            generation: AtomicU64::new(0),
            dir_cache_max: budget,
            ro_budget: Arc::new(AtomicUsize::new(budget)),
        })
    }

    /// Keeps the inode numbers of copied-up files in `path` (aufs's xino
    /// file), so they survive remounts: records already there are loaded.
    pub fn with_xino_file(self, path: &Path) -> Result<Self> {
        self.xino
            .attach_file(path)
            .map_err(|e| UnionError::io("xino", path, e))?;
        Ok(self)
    }

    /// The branches, topmost first ([`Entry::branch_index`] indexes this).
    pub fn branches(&self) -> &[Branch] {
        &self.branches
    }

    /// The rw branch root, if the union has one.
    pub fn rw_root(&self) -> Option<&Utf8Path> {
        self.rw.map(|i| self.branches[i].root.as_path())
    }

    pub(crate) fn root_state(&self) -> Result<DirState> {
        let rw = self.rw.map(|i| RwDir {
            fd: self.branches[i].root_fd().clone(),
            real: self.branches[i].root.as_std_path().to_path_buf(),
        });
        let opaque = match &rw {
            Some(r) => r.exists(OsStr::new(WHITEOUT_OPAQUE_DIR))?,
            None => false,
        };
        let ro = if opaque || self.ro_chain.is_empty() {
            None
        } else {
            Some(self.ro_dir(Path::new(""), &self.ro_chain)?)
        };
        Ok(DirState {
            path: PathBuf::new(),
            rw,
            ro,
            ro_parts: Arc::new(RoParts::new(self.ro_budget.clone())),
        })
    }

    fn ro_dir(&self, path: &Path, chain: &[usize]) -> Result<Arc<RoDir>> {
        self.ro_index.dir(&self.branches, &self.xino, path, chain)
    }

    /// The entry of the union root.
    fn root_entry(&self) -> Result<Entry> {
        let top = &self.branches[0];
        let real = top.root.as_std_path().to_path_buf();
        let metadata = Meta::of(top.fd()).map_err(|e| UnionError::io("stat", &real, e))?;
        Ok(Entry {
            branch_index: 0,
            real_path: real,
            metadata,
            ino: ROOT_INO,
            at: At::new(top.root_fd().clone(), OsStr::new(".")),
        })
    }

    /// Looks `name` up in directory `dir`.
    pub(crate) fn lookup_in(&self, dir: &DirState, name: &OsStr) -> Result<Option<Found>> {
        if name.len() > MAX_NAME_LEN {
            return Err(UnionError::NameTooLong {
                path: dir.path.join(name),
            });
        }
        if classify_bytes(name.as_bytes()) != NameKind::Plain {
            return Ok(None);
        }
        let ro_entry = dir.ro.as_ref().and_then(|d| d.entries.get(name));
        let path = dir.path.join(name);
        if let (Some(rw_dir), Some(rw_index)) = (&dir.rw, self.rw) {
            let real = rw_dir.real(name);
            match Meta::at(rw_dir.fd(), name) {
                Ok(metadata) => {
                    let is_dir = metadata.is_dir();
                    let ro_chain = match ro_entry {
                        Some(e)
                            if is_dir
                                && e.kind == EntryKind::Dir
                                && !rw_dir.exists(&whiteout_name(name))?
                                && !self.has_opaque_marker(rw_dir, name, &metadata)? =>
                        {
                            Some((e.chain.clone(), e.ino))
                        }
                        _ => None,
                    };
                    let ino = match &ro_chain {
                        Some((_, ino)) => *ino,
                        None => {
                            self.xino
                                .rw_ino(self.branches[rw_index].dev, metadata.ino(), || {
                                    metadata.birth()
                                })
                        }
                    };
                    return Ok(Some(Found {
                        entry: Entry {
                            branch_index: rw_index,
                            real_path: real,
                            metadata,
                            ino,
                            at: rw_dir.at(name),
                        },
                        rw_dir: is_dir,
                        ro_chain: ro_chain.map(|(c, _)| c),
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if rw_dir.exists(&whiteout_name(name))? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(UnionError::io("lstat", &real, e)),
            }
        }
        let Some(e) = ro_entry else {
            return Ok(None);
        };
        let branch = &self.branches[e.branch];
        let real = branch.display(&path);
        let parent = dir.ro_parts.get(e.branch, || branch.open_dir(&dir.path))?;
        let metadata =
            Meta::at(parent.as_fd(), name).map_err(|err| UnionError::io("lstat", &real, err))?;
        Ok(Some(Found {
            entry: Entry {
                branch_index: e.branch,
                real_path: real,
                metadata,
                ino: e.ino,
                at: At::new(parent, name),
            },
            rw_dir: false,
            ro_chain: (e.kind == EntryKind::Dir).then(|| e.chain.clone()),
        }))
    }

    /// True when rw directory `name` of `parent` (with attributes `md`)
    /// holds aufs's opaque marker.
    fn has_opaque_marker(&self, parent: &RwDir, name: &OsStr, md: &Meta) -> Result<bool> {
        parent
            .subdir(name, md)?
            .exists(OsStr::new(WHITEOUT_OPAQUE_DIR))
    }

    /// True when rw subdirectory `name` of `parent` holds aufs's opaque
    /// marker (false when it is gone or no longer a directory).
    fn rw_subdir_is_opaque(&self, parent: &RwDir, name: &OsStr) -> Result<bool> {
        match beneath::open_subdir(parent.fd(), name) {
            Ok(fd) => beneath::exists(fd.as_fd(), OsStr::new(WHITEOUT_OPAQUE_DIR))
                .map_err(|e| UnionError::io("lstat", parent.real(name), e)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                Ok(false)
            }
            Err(e) => Err(UnionError::io("open", parent.real(name), e)),
        }
    }

    /// The state of directory `found` (named `path`), to descend into it.
    pub(crate) fn descend(&self, path: PathBuf, found: &Found) -> Result<DirState> {
        let ro = match &found.ro_chain {
            Some(chain) if !chain.is_empty() => Some(self.ro_dir(&path, chain)?),
            _ => None,
        };
        let rw = if found.rw_dir {
            Some(self.found_rw_dir(found)?)
        } else {
            None
        };
        Ok(DirState {
            path,
            rw,
            ro,
            ro_parts: Arc::new(RoParts::new(self.ro_budget.clone())),
        })
    }

    /// The rw directory a lookup found, held open.
    pub(crate) fn found_rw_dir(&self, found: &Found) -> Result<RwDir> {
        let e = &found.entry;
        if e.ino == ROOT_INO {
            return Ok(RwDir {
                fd: e.at.dir.clone(),
                real: e.real_path.clone(),
            });
        }
        let parent = RwDir {
            fd: e.at.dir.clone(),
            real: e
                .real_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        parent.subdir(&e.at.name, &e.metadata)
    }

    /// Resolves union directory `path`; `Ok(None)` when it does not exist or
    /// is not a directory.
    pub(crate) fn resolve_dir(&self, path: &Path) -> Result<Option<DirState>> {
        Ok(self.resolve_dir_shared(path)?.map(|s| (*s).clone()))
    }

    /// [`Self::resolve_dir`] through the cache of resolved directories:
    /// a path resolved once costs one hash probe until the next change of
    /// directory structure, however deep it is.
    pub(crate) fn resolve_dir_shared(&self, path: &Path) -> Result<Option<Arc<DirState>>> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((g, state)) = self
            .dir_cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            if *g == generation {
                return Ok(Some(state.clone()));
            }
        }
        let mut state = self.root_state()?;
        for name in components(path)? {
            let Some(found) = self.lookup_in(&state, name)? else {
                return Ok(None);
            };
            if !found.entry.is_dir() {
                return Ok(None);
            }
            state = self.descend(state.path.join(name), &found)?;
        }
        let state = Arc::new(state);
        let mut cache = self.dir_cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.dir_cache_max {
            // Stale generations first (their descriptors close with them).
            cache.retain(|_, (g, _)| *g == generation);
            if cache.len() >= self.dir_cache_max {
                cache.clear();
            }
        }
        cache.insert(path.to_path_buf(), (generation, state.clone()));
        Ok(Some(state))
    }

    /// Marks every resolved directory stale; called after a change of
    /// directory structure.
    pub(crate) fn dirs_changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Looks up a union path (`""` or `"/"` is the root). `Ok(None)` when
    /// nothing is visible there.
    pub fn lookup(&self, path: &Path) -> Result<Option<Entry>> {
        Ok(self.lookup_found(path)?.map(|f| f.entry))
    }

    /// Looks `name` up in union directory `dir`: the same as
    /// [`UnionView::lookup`] of `dir/name`, with `dir` resolved through the
    /// cache of resolved directories (what a filesystem's lookup needs).
    pub fn lookup_child(&self, dir: &Path, name: &OsStr) -> Result<Option<Entry>> {
        let Some(state) = self.resolve_dir_shared(dir)? else {
            return Ok(None);
        };
        Ok(self.lookup_in(&state, name)?.map(|f| f.entry))
    }

    pub(crate) fn lookup_found(&self, path: &Path) -> Result<Option<Found>> {
        let comps = components(path)?;
        let Some((last, parents)) = comps.split_last() else {
            let state = self.root_state()?;
            return Ok(Some(Found {
                entry: self.root_entry()?,
                rw_dir: state.rw.is_some(),
                ro_chain: state.ro.map(|_| self.ro_chain.clone().into_boxed_slice()),
            }));
        };
        let parent: PathBuf = parents.iter().collect();
        let Some(state) = self.resolve_dir_shared(&parent)? else {
            return Ok(None);
        };
        self.lookup_in(&state, last)
    }

    /// The merged listing of union directory `path`, sorted by name, without
    /// `.` and `..`.
    pub fn read_dir(&self, path: &Path) -> Result<Vec<DirEntry>> {
        match self.resolve_dir_shared(path)? {
            Some(state) => self.read_dir_state(&state),
            None => match self.lookup(path)? {
                Some(_) => Err(UnionError::NotADirectory {
                    path: path.to_path_buf(),
                }),
                None => Err(UnionError::NotFound {
                    path: path.to_path_buf(),
                }),
            },
        }
    }

    pub(crate) fn read_dir_state(&self, state: &DirState) -> Result<Vec<DirEntry>> {
        let mut out: BTreeMap<OsString, DirEntry> = BTreeMap::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        if let (Some(rw_dir), Some(rw_index)) = (&state.rw, self.rw) {
            let dev = self.branches[rw_index].dev;
            let listed = beneath::list(rw_dir.fd())
                .map_err(|e| UnionError::io("readdir", &rw_dir.real, e))?;
            let mut dirs = Vec::new();
            for de in listed {
                let name = de.name;
                match classify_bytes(name.as_bytes()) {
                    NameKind::Plain => {
                        let kind = de.kind;
                        if kind == EntryKind::Dir {
                            dirs.push(name.clone());
                        }
                        let ino = self.xino.rw_ino(dev, de.ino, || {
                            Meta::at(rw_dir.fd(), &name).map_or((0, 0), |m| m.birth())
                        });
                        out.insert(
                            name.clone(),
                            DirEntry {
                                name,
                                kind,
                                branch_index: rw_index,
                                ino,
                            },
                        );
                    }
                    NameKind::Whiteout(_) => {
                        if let Some(t) = whiteout_target_bytes(name.as_bytes()) {
                            hidden.insert(OsStr::from_bytes(t).to_os_string());
                        }
                    }
                    NameKind::Opaque | NameKind::Meta => {}
                }
            }
            // A rw directory merged with a read-only one has the number of
            // the lowest part.
            if let Some(ro) = &state.ro {
                for name in dirs {
                    if let Some(e) = ro.entries.get(&name) {
                        if e.kind == EntryKind::Dir
                            && !hidden.contains(&name)
                            && !self.rw_subdir_is_opaque(rw_dir, &name)?
                        {
                            if let Some(d) = out.get_mut(&name) {
                                d.ino = e.ino;
                            }
                        }
                    }
                }
            }
        }
        if let Some(ro) = &state.ro {
            for (name, e) in &ro.entries {
                if !out.contains_key(name) && !hidden.contains(name) {
                    out.insert(
                        name.clone(),
                        DirEntry {
                            name: name.clone(),
                            kind: e.kind,
                            branch_index: e.branch,
                            ino: e.ino,
                        },
                    );
                }
            }
        }
        Ok(out.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cached directories hold descriptors: the cache stays within its
    /// bound however many directories are resolved, and every one still
    /// resolves after a pruning.
    #[test]
    fn the_directory_cache_keeps_within_its_descriptor_budget() {
        let dir = tempfile::tempdir().unwrap();
        let rw = camino::Utf8Path::from_path(dir.path()).unwrap();
        for i in 0..300 {
            std::fs::create_dir(rw.join(format!("d{i}"))).unwrap();
        }
        let mut view = UnionView::open(Some(rw), &[]).unwrap();
        view.dir_cache_max = 64;
        for round in 0..2 {
            for i in 0..300 {
                let p = PathBuf::from(format!("d{i}"));
                let state = view.resolve_dir_shared(&p).unwrap();
                assert!(state.is_some_and(|s| s.rw.is_some()), "round {round}: d{i}");
                let cached = view.dir_cache.read().unwrap().len();
                assert!(cached <= 64, "{cached} directories cached");
            }
            view.dirs_changed();
        }
    }
}
