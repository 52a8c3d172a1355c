//! Docker's `directory.Size`: the apparent size of a layer's files.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};

use camino::Utf8Path;
use rustix::fs::FileType;

use crate::error::Result;
use crate::walk::{open_dir, walk, Step};

/// Sum of `st_size` of every non-directory entry under `dir` (symlinks count
/// their target length), each hardlinked inode once — Docker's `directory.Size`,
/// which the aufs driver returns as a layer's diff size.
pub fn diff_size(dir: &Utf8Path) -> Result<u64> {
    let fd = open_dir(dir)?;
    diff_size_fd(fd.as_fd(), dir)
}

pub(crate) fn diff_size_fd(fd: BorrowedFd<'_>, path: &Utf8Path) -> Result<u64> {
    let mut total: u64 = 0;
    // Only inodes with several links can be met twice; remembering just those
    // keeps memory flat for ordinary trees.
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    walk(fd, path, &mut |e| {
        let size = e.stat.st_size as u64;
        if e.file_type() != FileType::Directory && size > 0 {
            let first = e.stat.st_nlink <= 1 || seen.insert((e.stat.st_dev, e.stat.st_ino));
            if first {
                total += size;
            }
        }
        Ok(Step::Descend)
    })?;
    Ok(total)
}
