//! Diffs between two union views, for a parent that is not the direct one:
//! Docker's `ChangesDirs`, `ChangesSize` and `ExportChanges` (the
//! NaiveDiffDriver path), read in process from the layers' diff dirs, so
//! nothing is mounted.
//!
//! A [`UnionView`] tells which branch shows each name; the entry's metadata,
//! xattrs and data are then read in that branch through a directory fd
//! resolved beneath the branch root without following any symlink
//! (`openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`), and the entry itself is
//! never followed. A layer rewritten meanwhile (the rw layer of a running
//! container) cannot send a read outside its branch. A mounted tree (kernel
//! aufs, a FUSE union) is a view of one branch:
//! `UnionView::open(None, &[mountpoint])`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aufs_model::whiteout::WHITEOUT_PREFIX;
use aufs_union::{UnionError, UnionView};
use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};

use crate::changes::{Change, ChangeKind};
use crate::error::{lossy, ArchiveError, Result};
use crate::export::{write_entry, HeaderInfo, Links, TarWriter};
use crate::fsops::proc_path;

/// Resolution of a directory inside a branch: beneath its root, through no
/// symlink at all.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// A view and `O_PATH` fds of its branch roots.
struct Tree<'v> {
    view: &'v UnionView,
    roots: Vec<OwnedFd>,
}

fn union_path(rel: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(rel))
}

fn union_err(rel: &[u8]) -> impl FnOnce(UnionError) -> ArchiveError + '_ {
    move |source| ArchiveError::Union {
        path: format!("/{}", lossy(rel)),
        source,
    }
}

fn vanished(e: &UnionError) -> bool {
    matches!(
        e,
        UnionError::NotFound { .. } | UnionError::NotADirectory { .. }
    )
}

impl<'v> Tree<'v> {
    fn open(view: &'v UnionView) -> Result<Self> {
        let roots = view
            .branches()
            .iter()
            .map(|b| {
                rustix::fs::open(
                    b.root.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| ArchiveError::io("opening branch", &b.root, e.into()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { view, roots })
    }

    /// Names of union directory `rel` (sorted by bytes) and the branch
    /// showing each; empty when it is gone.
    fn list(&self, rel: &[u8]) -> Result<Vec<(Vec<u8>, usize)>> {
        match self.view.read_dir(union_path(rel)) {
            Ok(list) => Ok(list
                .into_iter()
                .map(|d| (d.name.as_bytes().to_vec(), d.branch_index))
                .collect()),
            Err(e) if vanished(&e) => Ok(Vec::new()),
            Err(e) => Err(union_err(rel)(e)),
        }
    }

    /// The branch showing `name` in union directory `dir`.
    fn branch_of(&self, dir: &[u8], name: &[u8]) -> Result<Option<usize>> {
        match self
            .view
            .lookup_child(union_path(dir), OsStr::from_bytes(name))
        {
            Ok(e) => Ok(e.map(|e| e.branch_index)),
            Err(e) if vanished(&e) => Ok(None),
            Err(e) => Err(union_err(dir)(e)),
        }
    }

    fn dirs(&self, rel: &[u8]) -> RealDirs<'_> {
        RealDirs {
            tree: self,
            rel: rel.to_vec(),
            fds: (0..self.roots.len()).map(|_| None).collect(),
        }
    }

    fn branch_root(&self, branch: usize) -> &Utf8Path {
        &self.view.branches()[branch].root
    }
}

/// The real directories behind one union directory, one per branch, opened
/// when first needed.
struct RealDirs<'t> {
    tree: &'t Tree<'t>,
    rel: Vec<u8>,
    fds: Vec<Option<OwnedFd>>,
}

impl RealDirs<'_> {
    /// The real directory in `branch`; `None` when it is not there (any more).
    fn get(&mut self, branch: usize) -> Result<Option<BorrowedFd<'_>>> {
        if self.fds[branch].is_none() {
            let path = if self.rel.is_empty() {
                &b"."[..]
            } else {
                &self.rel
            };
            match rustix::fs::openat2(
                &self.tree.roots[branch],
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            ) {
                Ok(fd) => self.fds[branch] = Some(fd),
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
                Err(e) => {
                    return Err(ArchiveError::io(
                        "opening branch directory",
                        self.tree.branch_root(branch).join(lossy(&self.rel)),
                        e.into(),
                    ))
                }
            }
        }
        Ok(self.fds[branch].as_ref().map(|f| f.as_fd()))
    }

    /// `lstat` of `name` in `branch`, with the directory holding it; `None`
    /// when it vanished.
    fn lstat(&mut self, branch: usize, name: &[u8]) -> Result<Option<(BorrowedFd<'_>, Stat)>> {
        let root = self.tree.branch_root(branch).to_owned();
        let rel = self.rel.clone();
        let Some(dir) = self.get(branch)? else {
            return Ok(None);
        };
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((dir, st))),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
            Err(e) => Err(ArchiveError::io(
                "lstat",
                root.join(lossy(&join(&rel, name))),
                e.into(),
            )),
        }
    }
}

/// `dir/name` of union paths without a leading slash.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + name.len() + 1);
    p.extend_from_slice(dir);
    if !dir.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn slash(rel: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(rel.len() + 1);
    p.push(b'/');
    p.extend_from_slice(rel);
    p
}

/// Changes from the union `old` (None: empty) to the union `new`: Docker's
/// `ChangesDirs` on the two merged trees, with no mount. Size and mtime of
/// directories are not compared (moby#9874); a directory with changes inside
/// is `C`. Sorted by path.
pub fn changes_between_views(old: Option<&UnionView>, new: &UnionView) -> Result<Vec<Change>> {
    let span = tracing::info_span!("changes_between_views", "storage-driver" = "aufs", new = %new.branches().first().map_or("", |b| b.root.as_str()));
    let _g = span.enter();
    let new = Tree::open(new)?;
    let old = old.map(Tree::open).transpose()?;
    let mut out = Vec::new();
    add_changes(&new, old.as_ref(), &[], true, &mut out)?;
    out.sort_by(|a, b| a.raw_path.cmp(&b.raw_path).then(a.kind.cmp(&b.kind)));
    Ok(out)
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Linux `statDifferent`.
fn stat_different(a: &Stat, b: &Stat) -> bool {
    let same_time = a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0);
    a.st_mode != b.st_mode
        || a.st_uid != b.st_uid
        || a.st_gid != b.st_gid
        || a.st_rdev != b.st_rdev
        || (!is_dir(a) && (!same_time || a.st_size != b.st_size))
}

fn capability(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Vec<u8>> {
    let mut v = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(proc_path(dir, name), "security.capability", &mut v[..]).ok()?;
    v.truncate(n);
    Some(v)
}

/// Compares union directory `rel` of `new` with the same directory of `old`
/// (None: absent there). `listed`: `rel` itself is already a change.
fn add_changes(
    new: &Tree<'_>,
    old: Option<&Tree<'_>>,
    rel: &[u8],
    listed: bool,
    out: &mut Vec<Change>,
) -> Result<()> {
    let start = out.len();
    let new_names = new.list(rel)?;
    let old_names = match old {
        Some(o) => o.list(rel)?,
        None => Vec::new(),
    };
    let mut new_dirs = new.dirs(rel);
    let mut old_dirs = old.map(|o| o.dirs(rel));
    for (name, branch) in &new_names {
        let Some((new_fd, nst)) = new_dirs.lstat(*branch, name)? else {
            continue;
        };
        let new_cap = capability(new_fd, name);
        let child = join(rel, name);
        let old_entry = match (
            old_names.binary_search_by(|(n, _)| n.as_slice().cmp(name)),
            old_dirs.as_mut(),
        ) {
            (Ok(i), Some(dirs)) => dirs
                .lstat(old_names[i].1, name)?
                .map(|(fd, st)| (capability(fd, name), st)),
            _ => None,
        };
        let mut child_listed = false;
        match &old_entry {
            None => {
                out.push(Change::new(slash(&child), ChangeKind::Add));
                child_listed = true;
            }
            Some((old_cap, ost)) => {
                if stat_different(ost, &nst) || *old_cap != new_cap {
                    out.push(Change::new(slash(&child), ChangeKind::Modify));
                    child_listed = true;
                }
            }
        }
        if is_dir(&nst) {
            let old_sub = match &old_entry {
                Some((_, ost)) if is_dir(ost) => old,
                _ => None,
            };
            add_changes(new, old_sub, &child, child_listed, out)?;
        }
    }
    for (name, _) in &old_names {
        if new_names
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .is_err()
        {
            out.push(Change::new(slash(&join(rel, name)), ChangeKind::Delete));
        }
    }
    if out.len() > start && !listed && !rel.is_empty() {
        out.insert(start, Change::new(slash(rel), ChangeKind::Modify));
    }
    Ok(())
}

/// Splits an absolute change path into (parent relative to the view, name).
fn split_change(raw: &[u8]) -> (&[u8], &[u8]) {
    let p = raw.strip_prefix(b"/").unwrap_or(raw);
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}

/// Walks the changes that still exist in `view` (deletes excluded), sorted,
/// with the real directory holding each and its `lstat`.
fn for_each_present(
    view: &UnionView,
    changes: &[Change],
    mut f: impl FnMut(&Change, &Utf8Path, BorrowedFd<'_>, &[u8], &Stat) -> Result<()>,
) -> Result<()> {
    let tree = Tree::open(view)?;
    let mut sorted: Vec<&Change> = changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Delete)
        .collect();
    sorted.sort_by(|a, b| a.raw_path.cmp(&b.raw_path));
    let mut dirs: Option<RealDirs<'_>> = None;
    for c in sorted {
        let (dir, name) = split_change(&c.raw_path);
        if name.is_empty() {
            continue;
        }
        let Some(branch) = tree.branch_of(dir, name)? else {
            tracing::debug!("storage-driver" = "aufs", path = %c.path, "change vanished");
            continue;
        };
        if dirs.as_ref().is_none_or(|d| d.rel != dir) {
            dirs = Some(tree.dirs(dir));
        }
        let d = dirs.as_mut().expect("set above");
        if let Some((fd, st)) = d.lstat(branch, name)? {
            f(c, tree.branch_root(branch), fd, name, &st)?;
        }
    }
    Ok(())
}

/// Docker's `ChangesSize`: bytes of the added and modified non-directories
/// of `view`, each multiply-linked inode once.
pub fn changes_size_view(view: &UnionView, changes: &[Change]) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for_each_present(view, changes, |_, _, _, _, st| {
        if !is_dir(st) && (st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino))) {
            total += st.st_size as u64;
        }
        Ok(())
    })?;
    Ok(total)
}

/// Docker's `ExportChanges`: a tarball of `changes` read from `view` (deletes
/// as aufs whiteouts, directories as their own entry only). Entries that
/// vanished meanwhile are left out, as Docker does. Returns bytes written.
pub fn export_changes_view(view: &UnionView, changes: &[Change], out: impl Write) -> Result<u64> {
    let top = view
        .branches()
        .first()
        .map(|b| b.root.clone())
        .unwrap_or_default();
    let werr = |e| ArchiveError::io("writing tar", &top, e);
    let mut w = TarWriter::new(out);
    let mut links = Links::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Deletes and present entries interleave in path order, as Docker writes them.
    let mut deletes: Vec<&Change> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Delete)
        .collect();
    deletes.sort_by(|a, b| a.raw_path.cmp(&b.raw_path));
    let mut deletes = deletes.into_iter().peekable();
    let mut write_deletes_before = |w: &mut TarWriter<_>, limit: Option<&[u8]>| -> Result<()> {
        while let Some(c) = deletes.next_if(|c| limit.is_none_or(|l| c.raw_path.as_slice() < l)) {
            let (dir, name) = split_change(&c.raw_path);
            if name.is_empty() {
                continue;
            }
            let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh.extend_from_slice(name);
            w.header(&HeaderInfo::whiteout(join(dir, &wh), now))
                .map_err(werr)?;
        }
        Ok(())
    };
    for_each_present(view, changes, |c, root, dir, name, st| {
        write_deletes_before(&mut w, Some(&c.raw_path))?;
        let rel = c.raw_path.strip_prefix(b"/").unwrap_or(&c.raw_path);
        write_entry(&mut w, &mut links, dir, name, rel, st, root)?;
        Ok(())
    })?;
    write_deletes_before(&mut w, None)?;
    w.finish().map_err(werr)
}
