//! A directory walker over file descriptors: names are bytes, nothing is
//! followed, entries come in byte order (as Go's `filepath.Walk`).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use camino::Utf8Path;
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};

use crate::error::{lossy, ArchiveError, Result};

/// One entry met by [`walk`].
pub(crate) struct WalkEntry<'a> {
    /// Path relative to the walk root, without a leading slash.
    pub rel: &'a [u8],
    /// The last component.
    pub name: &'a [u8],
    /// The directory holding it.
    pub parent: BorrowedFd<'a>,
    /// `lstat` of the entry.
    pub stat: &'a Stat,
}

impl WalkEntry<'_> {
    pub(crate) fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// What to do after visiting a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Descend,
    Skip,
}

/// Opens `path` as a directory for reading.
pub(crate) fn open_dir(path: &Utf8Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("opening directory", path, e.into()))
}

/// The names in a directory, sorted by bytes, without `.` and `..`.
pub(crate) fn read_names(dir: BorrowedFd<'_>) -> std::io::Result<Vec<Vec<u8>>> {
    let fd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = Dir::new(fd)?;
    let mut names = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n: &CStr = ent.file_name();
        let b = n.to_bytes();
        if b != b"." && b != b".." {
            names.push(b.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// Walks the tree under `root` (an open directory) depth first, parents before children.
pub(crate) fn walk(
    root: BorrowedFd<'_>,
    root_path: &Utf8Path,
    f: &mut dyn FnMut(&WalkEntry<'_>) -> Result<Step>,
) -> Result<()> {
    let mut rel = Vec::new();
    walk_dir(root, root_path, &mut rel, f)
}

fn walk_dir(
    dir: BorrowedFd<'_>,
    root_path: &Utf8Path,
    rel: &mut Vec<u8>,
    f: &mut dyn FnMut(&WalkEntry<'_>) -> Result<Step>,
) -> Result<()> {
    let err = |rel: &[u8], op: &'static str, e: std::io::Error| {
        ArchiveError::io(op, root_path.join(lossy(rel)), e)
    };
    let names = read_names(dir).map_err(|e| err(rel, "reading directory", e))?;
    for name in names {
        let base = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let stat = match rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            // Gone since the directory was read: as filepath.Walk, ignore it.
            Err(rustix::io::Errno::NOENT) => {
                rel.truncate(base);
                continue;
            }
            Err(e) => return Err(err(rel, "lstat", e.into())),
        };
        let entry = WalkEntry {
            rel,
            name: &name,
            parent: dir,
            stat: &stat,
        };
        let step = f(&entry)?;
        if step == Step::Descend && FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let sub = rustix::fs::openat(
                dir,
                name.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(rel, "opening directory", e.into()))?;
            walk_dir(sub.as_fd(), root_path, rel, f)?;
        }
        rel.truncate(base);
    }
    Ok(())
}
