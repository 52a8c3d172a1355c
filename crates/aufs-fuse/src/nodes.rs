//! The kernel's view of our inodes: which union names each node id (the
//! stable union inode number) is known under, and how many lookups it holds.
//!
//! A name belongs to one node at a time: the latest lookup of
//! (parent, name) wins, and the name leaves the node that had it before. So
//! a node never keeps a name that now shows another file (after a copy-up
//! changed a number, or a revalidation the kernel settled on its own), and
//! a node with several names (hard links) resolves through any name whose
//! directories are still known, not only its first.

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
    /// (parent, name) -> the node it names.
    names: HashMap<(u64, OsString), u64>,
}

/// Deepest directory nesting followed when building a path.
const MAX_DEPTH: usize = 4096;

impl NodeTable {
    /// The union path of `ino`, through the first of its names whose
    /// directories are all known; `None` for an unknown or unlinked node.
    pub(crate) fn path(&self, ino: u64) -> Option<PathBuf> {
        self.paths(ino).into_iter().next()
    }

    /// Every union path of `ino` that resolves (one per known name).
    pub(crate) fn paths(&self, ino: u64) -> Vec<PathBuf> {
        if ino == ROOT_INO {
            return vec![PathBuf::new()];
        }
        let Some(node) = self.nodes.get(&ino) else {
            return Vec::new();
        };
        node.links
            .iter()
            .filter_map(|(parent, name)| {
                let mut p = self.dir_path(*parent)?;
                p.push(name);
                Some(p)
            })
            .collect()
    }

    /// The path of directory node `ino` (directories have one name).
    fn dir_path(&self, ino: u64) -> Option<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let (parent, name) = self.nodes.get(&cur)?.links.first()?;
            names.push(name.as_os_str());
            cur = *parent;
            if names.len() > MAX_DEPTH {
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
        self.name_now_means(parent, name, Some(ino));
        let node = self.nodes.entry(ino).or_default();
        if !node.links.iter().any(|(p, n)| *p == parent && n == name) {
            node.links.push((parent, name.to_os_string()));
        }
        node.lookups += 1;
    }

    /// (`parent`, `name`) names `ino` from now on (or nothing): it leaves
    /// any other node.
    fn name_now_means(&mut self, parent: u64, name: &OsStr, ino: Option<u64>) {
        let key = (parent, name.to_os_string());
        let old = match ino {
            Some(ino) => self.names.insert(key, ino),
            None => self.names.remove(&key),
        };
        if let Some(old) = old.filter(|o| Some(*o) != ino) {
            if let Some(node) = self.nodes.get_mut(&old) {
                node.links.retain(|(p, n)| !(*p == parent && n == name));
            }
        }
    }

    /// Drops `n` lookups of `ino`.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                if let Some(node) = self.nodes.remove(&ino) {
                    for (p, name) in node.links {
                        let key = (p, name);
                        if self.names.get(&key) == Some(&ino) {
                            self.names.remove(&key);
                        }
                    }
                }
            }
        }
    }

    /// `name` in `parent` names nothing any more.
    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr, ino: u64) {
        self.name_now_means(parent, name, None);
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
        self.names.remove(&(parent, name.to_os_string()));
        self.name_now_means(new_parent, new_name, Some(ino));
        if let Some(node) = self.nodes.get_mut(&ino) {
            for link in node.links.iter_mut() {
                if link.0 == parent && link.1 == name {
                    *link = (new_parent, new_name.to_os_string());
                }
            }
            let mut seen = Vec::new();
            node.links.retain(|l| {
                let dup = seen.contains(l);
                seen.push(l.clone());
                !dup
            });
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

    /// A hard-linked node whose first name lived in a directory the kernel
    /// has forgotten still resolves through its other name.
    #[test]
    fn a_node_resolves_through_a_name_whose_directory_is_known() {
        let mut t = NodeTable::default();
        t.remember(ROOT_INO, OsStr::new("gone"), 20);
        t.remember(20, OsStr::new("x"), 30);
        t.remember(ROOT_INO, OsStr::new("kept"), 21);
        t.remember(21, OsStr::new("h2"), 30);
        t.forget(20, 1);
        assert_eq!(t.path(30), Some(PathBuf::from("kept/h2")));
    }

    /// When a lookup answers a name with another node (its number changed),
    /// the old node no longer claims that name.
    #[test]
    fn a_name_belongs_to_its_latest_node() {
        let mut t = NodeTable::default();
        t.remember(ROOT_INO, OsStr::new("b"), 40);
        t.remember(ROOT_INO, OsStr::new("a"), 40);
        t.remember(ROOT_INO, OsStr::new("b"), 41);
        assert_eq!(t.paths(40), vec![PathBuf::from("a")]);
        assert_eq!(t.path(41), Some(PathBuf::from("b")));
        // Unlinking the name with a stale number still frees it.
        t.unlink(ROOT_INO, OsStr::new("b"), 40);
        assert_eq!(t.path(41), None);
    }
}
