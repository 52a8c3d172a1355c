//! What a layer changed against its parents (Docker's `archive.Changes` for aufs).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use aufs_model::whiteout::{
    whiteout_target_bytes, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
};
use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};

use crate::error::{lossy, ArchiveError, Result};
use crate::overlay_form;
use crate::walk::{open_dir, read_names};

pub use aufs_model::{Change, ChangeKind};

/// Changes of the layer whose diff dir is `upper` against the union of
/// `lowers` (diff dirs of its parents, nearest first).
///
/// Docker's rules: a `.wh.NAME` is `D` of NAME; an entry is `A` unless it is
/// visible in the lower union (then `C`), except directories whose size, mode
/// and mtime are equal, which are not listed; the parent of an `A` or `D` is
/// listed as `C`. Past Docker: lower layers are looked up as a union (a path
/// hidden by a lower whiteout or opaque dir is absent), an opaque directory is
/// `C` and everything under it `A`, aufs metadata is never listed, and no
/// `.wh.` name is ever printed. Sorted by path.
pub fn changes(lowers: &[&Utf8Path], upper: &Utf8Path) -> Result<Vec<Change>> {
    let span = tracing::info_span!("changes", "storage-driver" = "aufs", upper = %upper);
    let _g = span.enter();
    let lower_fds = lowers
        .iter()
        .map(|p| {
            rustix::fs::open(
                p.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ArchiveError::io("opening lower layer", *p, e.into()))
        })
        .collect::<Result<Vec<OwnedFd>>>()?;
    let up = open_dir(upper)?;
    let mut w = Walker {
        lowers: &lower_fds,
        upper,
        out: Vec::new(),
    };
    let all: Vec<usize> = (0..lower_fds.len()).collect();
    let rel = Vec::new();
    let root_opaque = has_opaque(up.as_fd(), b".");
    w.dir(
        up.as_fd(),
        &rel,
        if root_opaque { Vec::new() } else { all },
        true,
    )?;
    let mut out = w.out;
    out.sort_by(|a, b| a.raw_path.cmp(&b.raw_path).then(a.kind.cmp(&b.kind)));
    Ok(out)
}

struct Walker<'a> {
    lowers: &'a [OwnedFd],
    upper: &'a Utf8Path,
    out: Vec<Change>,
}

fn has_opaque(dir: BorrowedFd<'_>, sub: &[u8]) -> bool {
    let mut p = sub.to_vec();
    p.push(b'/');
    p.extend_from_slice(WHITEOUT_OPAQUE_DIR.as_bytes());
    lstat_at(dir, &p).is_some()
}

/// `lstat` of `rel` below `dir`. Layers are hostile (a lower layer's
/// `etc` may be a symlink to the host's `/etc`, a running container swaps
/// its rw layer's directories for symlinks): the parent is resolved
/// without following any symlink or leaving `dir`, and a path that would
/// need one counts as absent.
fn lstat_at(dir: BorrowedFd<'_>, rel: &[u8]) -> Option<Stat> {
    let Some(slash) = rel.iter().rposition(|b| *b == b'/') else {
        return rustix::fs::statat(dir, rel, AtFlags::SYMLINK_NOFOLLOW).ok();
    };
    let parent = rustix::fs::openat2(
        dir,
        &rel[..slash],
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    rustix::fs::statat(&parent, &rel[slash + 1..], AtFlags::SYMLINK_NOFOLLOW).ok()
}

/// Whether directory `rel` below `dir` is opaque in overlay form (a lower
/// layer mounted stacked right now).
fn lower_overlay_opaque(dir: BorrowedFd<'_>, rel: &[u8]) -> bool {
    let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => return overlay_form::is_opaque(dir, rel),
    };
    rustix::fs::openat2(
        dir,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .is_ok_and(|p| overlay_form::is_opaque(p.as_fd(), name))
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Go's `sameFsTime`: equal, or the same second with one side lacking nanoseconds.
fn same_time(a: &Stat, b: &Stat) -> bool {
    a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn abs(rel: &[u8]) -> Vec<u8> {
    let mut p = b"/".to_vec();
    p.extend_from_slice(rel);
    p
}

impl Walker<'_> {
    /// Looks `rel` up in the lower union restricted to `visible` (the lowers in
    /// which its parent is a visible directory, nearest first).
    fn lookup(&self, parent: &[u8], name: &[u8], visible: &[usize]) -> Option<Stat> {
        let rel = join(parent, name);
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(name);
        let wh_rel = join(parent, &wh);
        for &i in visible {
            let fd = self.lowers[i].as_fd();
            if let Some(st) = lstat_at(fd, &rel) {
                // A lower layer mounted stacked right now: a whiteout.
                return (!overlay_form::is_whiteout(&st)).then_some(st);
            }
            if lstat_at(fd, &wh_rel).is_some() {
                return None;
            }
        }
        None
    }

    /// The lowers in which directory `rel` is visible, nearest first.
    fn visible_below(&self, parent: &[u8], name: &[u8], visible: &[usize]) -> Vec<usize> {
        let rel = join(parent, name);
        let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
        wh.extend_from_slice(name);
        let wh_rel = join(parent, &wh);
        let mut out = Vec::new();
        for &i in visible {
            let fd = self.lowers[i].as_fd();
            match lstat_at(fd, &rel) {
                Some(st) if is_dir(&st) => {
                    out.push(i);
                    // An opaque dir, or a whiteout beside the dir, hides the lower layers' copies.
                    if has_opaque(fd, &rel)
                        || lower_overlay_opaque(fd, &rel)
                        || lstat_at(fd, &wh_rel).is_some()
                    {
                        break;
                    }
                }
                Some(_) => break,
                None => {
                    if lstat_at(fd, &wh_rel).is_some() {
                        break;
                    }
                }
            }
        }
        out
    }

    fn push_parent_modify(&mut self, parent_rel: &[u8], parent_recorded: &mut bool) {
        if !*parent_recorded && !parent_rel.is_empty() {
            self.out
                .push(Change::new(abs(parent_rel), ChangeKind::Modify));
            *parent_recorded = true;
        }
    }

    /// Visits directory `rel` of the upper layer. `parent_recorded` is whether
    /// `rel` itself is already listed (Docker's `changedDirs`).
    fn dir(
        &mut self,
        fd: BorrowedFd<'_>,
        rel: &[u8],
        visible: Vec<usize>,
        mut parent_recorded: bool,
    ) -> Result<()> {
        let names = read_names(fd)
            .map_err(|e| ArchiveError::io("reading directory", self.upper.join(lossy(rel)), e))?;
        for name in names {
            if name.starts_with(WHITEOUT_META_PREFIX.as_bytes())
                || name == WHITEOUT_PREFIX.as_bytes()
            {
                // aufs metadata (.wh..wh.plnk, .wh..wh.aufs, the opaque marker): never listed.
                continue;
            }
            let Some(st) = lstat_at(fd, &name) else {
                continue;
            };
            if crate::apply::is_dot_whiteout(&name) {
                // Never applied; made by hand it deletes nothing a union shows.
                tracing::warn!("storage-driver" = "aufs", path = %self.upper.join(lossy(&join(rel, &name))), "ignoring a whiteout of `.` or `..`");
                continue;
            }
            let target = if overlay_form::is_whiteout(&st) {
                Some(name.as_slice())
            } else {
                whiteout_target_bytes(&name)
            };
            if let Some(target) = target {
                let parent = rel.to_vec();
                self.push_parent_modify(&parent, &mut parent_recorded);
                self.out
                    .push(Change::new(abs(&join(rel, target)), ChangeKind::Delete));
                continue;
            }
            let child_rel = join(rel, &name);
            let child_is_dir = is_dir(&st);
            // The upper layer may be mounted stacked right now (overlay form).
            let opaque =
                child_is_dir && (has_opaque(fd, &name) || overlay_form::is_opaque(fd, &name));
            let lower = self.lookup(rel, &name, &visible);
            let kind = match &lower {
                None => Some(ChangeKind::Add),
                Some(l) if child_is_dir && is_dir(l) && !opaque => {
                    let same =
                        st.st_size == l.st_size && st.st_mode == l.st_mode && same_time(&st, l);
                    (!same).then_some(ChangeKind::Modify)
                }
                Some(_) => Some(ChangeKind::Modify),
            };
            if let Some(kind) = kind {
                if kind == ChangeKind::Add {
                    let parent = rel.to_vec();
                    self.push_parent_modify(&parent, &mut parent_recorded);
                }
                self.out.push(Change::new(abs(&child_rel), kind));
            }
            if child_is_dir {
                let sub_visible = if opaque {
                    Vec::new()
                } else {
                    self.visible_below(rel, &name, &visible)
                };
                let sub = rustix::fs::openat(
                    fd,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    ArchiveError::io(
                        "opening directory",
                        self.upper.join(lossy(&child_rel)),
                        e.into(),
                    )
                })?;
                self.dir(sub.as_fd(), &child_rel, sub_visible, kind.is_some())?;
            }
        }
        Ok(())
    }
}
