//! The kernel's view of our inodes: which union names each node id (the
//! stable union inode number) is known under, and how many lookups it holds.

use aufs_union::ROOT_INO;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

#[derive(Debug, Default)]
struct Node {
    /// (parent node, name) pairs; several for hard links.
    links: Vec<(u64, OsString)>,
    lookups: u64,
}

/// Node ids the kernel holds, with their names.
#[derive(Debug, Default)]
pub(crate) struct NodeTable {
    nodes: HashMap<u64, Node>,
}

impl NodeTable {
    /// The union path of `ino` (through its first name), `None` for an
    /// unknown or unlinked node.
    pub(crate) fn path(&self, ino: u64) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let (parent, name) = self.nodes.get(&cur)?.links.first()?;
            names.push(name.as_os_str());
            cur = *parent;
            if names.len() > 4096 {
                return None;
            }
        }
        Some(names.iter().rev().collect())
    }

    /// The parent of `ino` through its first name (the root's is itself).
    pub(crate) fn parent(&self, ino: u64) -> u64 {
        self.nodes
            .get(&ino)
            .and_then(|n| n.links.first())
            .map_or(ROOT_INO, |(p, _)| *p)
    }

    /// Records one kernel lookup of `ino` as `name` in `parent`.
    pub(crate) fn remember(&mut self, parent: u64, name: &OsStr, ino: u64) {
        if ino == ROOT_INO {
            return;
        }
        let node = self.nodes.entry(ino).or_default();
        if !node.links.iter().any(|(p, n)| *p == parent && n == name) {
            node.links.push((parent, name.to_os_string()));
        }
        node.lookups += 1;
    }

    /// Drops `n` lookups of `ino`.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// `name` in `parent` no longer names `ino`.
    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.links.retain(|(p, n)| !(*p == parent && n == name));
        }
    }

    /// `ino` moved from (`parent`, `name`) to (`new_parent`, `new_name`).
    pub(crate) fn rename(
        &mut self,
        ino: u64,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
    ) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            for link in node.links.iter_mut() {
                if link.0 == parent && link.1 == name {
                    *link = (new_parent, new_name.to_os_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_links_and_renames() {
        let mut t = NodeTable::default();
        t.remember(ROOT_INO, OsStr::new("a"), 10);
        t.remember(10, OsStr::new("b"), 11);
        assert_eq!(t.path(11), Some(PathBuf::from("a/b")));
        t.rename(11, 10, OsStr::new("b"), ROOT_INO, OsStr::new("c"));
        assert_eq!(t.path(11), Some(PathBuf::from("c")));
        t.remember(10, OsStr::new("hard"), 11);
        t.unlink(ROOT_INO, OsStr::new("c"), 11);
        assert_eq!(t.path(11), Some(PathBuf::from("a/hard")));
        t.forget(11, 2);
        assert_eq!(t.path(11), None);
        assert_eq!(t.path(ROOT_INO), Some(PathBuf::new()));
    }
}
