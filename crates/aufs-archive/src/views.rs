//! Diffs between two union views (mounted layers), for a parent that is not
//! the direct one: Docker's `ChangesDirs`, `ChangesSize` and `ExportChanges`
//! (the NaiveDiffDriver path). The caller mounts the views.

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

use aufs_model::whiteout::WHITEOUT_PREFIX;
use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::changes::{Change, ChangeKind};
use crate::error::{lossy, ArchiveError, Result};
use crate::export::{write_entry, HeaderInfo, Links, TarWriter};
use crate::fsops::{proc_path, IN_ROOT};
use crate::walk::{open_dir, read_names};

/// Changes from the tree `old` (None: empty) to the tree `new`, both plain
/// views (no whiteouts): Docker's `ChangesDirs`. Size and mtime of directories
/// are not compared (moby#9874); a directory with changes inside is `C`.
/// Sorted by path.
pub fn changes_between(old: Option<&Utf8Path>, new: &Utf8Path) -> Result<Vec<Change>> {
    let span = tracing::info_span!("changes_between", "storage-driver" = "aufs", new = %new);
    let _g = span.enter();
    let new_fd = open_dir(new)?;
    let old_fd = old.map(open_dir).transpose()?;
    let mut out = Vec::new();
    add_changes(
        new_fd.as_fd(),
        old_fd.as_ref().map(|f| f.as_fd()),
        &[],
        true,
        new,
        &mut out,
    )?;
    out.sort_by(|a, b| a.raw_path.cmp(&b.raw_path).then(a.kind.cmp(&b.kind)));
    Ok(out)
}

fn lstat(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()
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

fn open_sub(dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn add_changes(
    new: BorrowedFd<'_>,
    old: Option<BorrowedFd<'_>>,
    rel: &[u8],
    listed: bool,
    root: &Utf8Path,
    out: &mut Vec<Change>,
) -> Result<()> {
    let at = |op, r: &[u8]| {
        let p = root.join(lossy(r.strip_prefix(b"/").unwrap_or(r)));
        move |e: std::io::Error| ArchiveError::io(op, p, e)
    };
    let start = out.len();
    let new_names = read_names(new).map_err(at("reading directory", rel))?;
    let mut old_names: Vec<Vec<u8>> = match old {
        Some(o) => read_names(o).map_err(at("reading directory", rel))?,
        None => Vec::new(),
    };
    for name in &new_names {
        let Some(nst) = lstat(new, name) else {
            continue;
        };
        let mut child = rel.to_vec();
        child.push(b'/');
        child.extend_from_slice(name);
        let ost = old
            .filter(|_| old_names.binary_search(name).is_ok())
            .and_then(|o| lstat(o, name));
        let mut child_listed = false;
        match &ost {
            None => {
                out.push(Change::new(child.clone(), ChangeKind::Add));
                child_listed = true;
            }
            Some(o) => {
                let o_fd = old.expect("old stat implies old dir");
                if stat_different(o, &nst) || capability(o_fd, name) != capability(new, name) {
                    out.push(Change::new(child.clone(), ChangeKind::Modify));
                    child_listed = true;
                }
            }
        }
        if is_dir(&nst) {
            let sub_new = open_sub(new, name).map_err(at("opening directory", &child))?;
            let sub_old = match (&ost, old) {
                (Some(o), Some(od)) if is_dir(o) => {
                    Some(open_sub(od, name).map_err(at("opening directory", &child))?)
                }
                _ => None,
            };
            add_changes(
                sub_new.as_fd(),
                sub_old.as_ref().map(|f| f.as_fd()),
                &child,
                child_listed,
                root,
                out,
            )?;
        }
    }
    let new_set: HashSet<&Vec<u8>> = new_names.iter().collect();
    old_names.retain(|n| !new_set.contains(n));
    for name in old_names {
        let mut child = rel.to_vec();
        child.push(b'/');
        child.extend_from_slice(&name);
        out.push(Change::new(child, ChangeKind::Delete));
    }
    if out.len() > start && !listed && !rel.is_empty() {
        out.insert(start, Change::new(rel.to_vec(), ChangeKind::Modify));
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

/// Docker's `ChangesSize`: bytes of the added and modified non-directories
/// under `view`, each multiply-linked inode once.
pub fn changes_size(view: &Utf8Path, changes: &[Change]) -> Result<u64> {
    let root = crate::fsops::Root {
        fd: rustix::fs::open(
            view.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ArchiveError::io("opening view", view, e.into()))?,
    };
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Delete) {
        let (dir, name) = split_change(&c.raw_path);
        let Ok(parent) = root.resolve_dir(dir) else {
            continue;
        };
        let Some(st) = lstat(parent.as_fd(), name) else {
            continue;
        };
        if is_dir(&st) {
            continue;
        }
        if st.st_nlink <= 1 || seen.insert(st.st_ino) {
            total += st.st_size as u64;
        }
    }
    Ok(total)
}

/// Docker's `ExportChanges`: a tarball of `changes` read from `view` (deletes
/// as aufs whiteouts, directories as their own entry only). Entries that
/// vanished meanwhile are left out, as Docker does. Returns bytes written.
pub fn export_changes(view: &Utf8Path, changes: &[Change], out: impl Write) -> Result<u64> {
    let root = rustix::fs::open(
        view.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("opening view", view, e.into()))?;
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| a.raw_path.cmp(&b.raw_path));
    let mut w = TarWriter::new(out);
    let mut links = Links::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for c in sorted {
        let (dir, name) = split_change(&c.raw_path);
        if name.is_empty() {
            continue;
        }
        let rel = c.raw_path.strip_prefix(b"/").unwrap_or(&c.raw_path);
        if c.kind == ChangeKind::Delete {
            let mut wh = dir.to_vec();
            if !wh.is_empty() {
                wh.push(b'/');
            }
            wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            wh.extend_from_slice(name);
            let h = HeaderInfo {
                name: wh,
                link: Vec::new(),
                typeflag: b'0',
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: now,
                size: 0,
                dev: (0, 0),
                xattrs: Vec::new(),
            };
            w.header(&h)
                .map_err(|e| ArchiveError::io("writing tar", view, e))?;
            continue;
        }
        let parent = match rustix::fs::openat2(
            &root,
            if dir.is_empty() { &b"."[..] } else { dir },
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("storage-driver" = "aufs", path = %c.path, error = %e, "change vanished");
                continue;
            }
        };
        let Some(st) = lstat(parent.as_fd(), name) else {
            continue;
        };
        write_entry(&mut w, &mut links, parent.as_fd(), name, rel, &st, view)?;
    }
    w.finish()
        .map_err(|e| ArchiveError::io("writing tar", view, e))
}
