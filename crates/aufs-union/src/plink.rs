//! aufs pseudo-links: a lower file with several names stays one file in the
//! union. Copy-up of one name links every other name that the union shows
//! of the same lower file to the copy in the rw branch at once — what aufs's
//! plinks leave after `auplink flush` — so all names keep showing one file
//! (one inode, the written data) and the layer's diff holds every name.

use crate::branch::Branch;
use crate::entry::EntryKind;
use crate::error::{Result, UnionError};
use crate::meta::Meta;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The names of each multiply-linked regular file of a read-only branch.
type Names = HashMap<u64, Vec<PathBuf>>;

/// Per read-only branch, built on the first copy-up of a file with several
/// links from it (read-only branches never change, so once is enough).
#[derive(Debug, Default)]
pub(crate) struct LinkIndex {
    branches: Mutex<HashMap<usize, Arc<Names>>>,
}

impl LinkIndex {
    /// The paths (relative to the branch root) of real inode `ino` in
    /// read-only branch `index`.
    pub(crate) fn names(&self, index: usize, branch: &Branch, ino: u64) -> Result<Vec<PathBuf>> {
        let mut map = self.branches.lock().unwrap_or_else(|e| e.into_inner());
        let names = match map.get(&index) {
            Some(n) => n.clone(),
            None => {
                let n = Arc::new(scan(branch)?);
                map.insert(index, n.clone());
                n
            }
        };
        Ok(names.get(&ino).cloned().unwrap_or_default())
    }
}

/// Walks `branch` and collects the names of regular files with several links.
fn scan(branch: &Branch) -> Result<Names> {
    let mut names = Names::new();
    // (parent, name) pairs: a directory is opened only when its turn
    // comes, so the descriptors held grow with depth, not width.
    let mut dirs: Vec<(
        PathBuf,
        Arc<std::os::fd::OwnedFd>,
        Option<std::ffi::OsString>,
    )> = vec![(PathBuf::new(), branch.root_fd().clone(), None)];
    while let Some((rel, parent, name)) = dirs.pop() {
        let dir = match name {
            None => parent,
            Some(n) => Arc::new(
                crate::beneath::open_subdir(parent.as_fd(), &n)
                    .map_err(|e| UnionError::io("open", branch.display(&rel), e))?,
            ),
        };
        let listed = crate::beneath::list(dir.as_fd())
            .map_err(|e| UnionError::io("readdir", branch.display(&rel), e))?;
        for de in listed {
            let path = rel.join(&de.name);
            match de.kind {
                EntryKind::Dir => dirs.push((path, dir.clone(), Some(de.name))),
                EntryKind::File => {
                    let md = Meta::at(dir.as_fd(), &de.name)
                        .map_err(|e| UnionError::io("lstat", branch.display(&path), e))?;
                    if md.nlink() > 1 {
                        names.entry(md.ino()).or_default().push(path);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_name_of_linked_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("a"), "x").unwrap();
        std::fs::hard_link(root.join("a"), root.join("d/e/b")).unwrap();
        std::fs::write(root.join("single"), "y").unwrap();
        let branch = Branch::open(camino::Utf8Path::from_path(root).unwrap(), false).unwrap();
        let names = scan(&branch).unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(root.join("a")).unwrap());
        let mut got = names[&ino].clone();
        got.sort();
        assert_eq!(got, vec![PathBuf::from("a"), PathBuf::from("d/e/b")]);
        assert_eq!(names.len(), 1);
    }
}
