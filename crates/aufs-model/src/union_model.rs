//! An in-memory model of the aufs union rules, used as the oracle that the
//! real union view (`aufs-union`) is checked against.
//!
//! A [`Layer`] is a branch's file tree exactly as it lies on disk, whiteout
//! and metadata names included. [`visible_tree`] computes what a union of
//! layers (topmost first) shows, straight from the rules, path by path:
//!
//! - an entry is visible from the topmost layer that has it, unless a higher
//!   layer hides it;
//! - layer `a` hides `c1/../ck/..` of every lower layer when it holds
//!   `c1/../.wh.ck`, when it holds `c1/../ck` as a non-directory (a prefix that
//!   is a file cuts the subtree), or when its directory `c1/../ck` holds
//!   `.wh..wh..opq` (and `ck` is a proper prefix, or the root);
//! - whiteouts and `.wh..wh.*` names are never visible, and nothing below a
//!   `.wh.` name is either.
//!
//! It is deliberately written differently from the real view (no merged
//! directory listings, no caches) so that the two can disagree when one is
//! wrong.

use crate::whiteout::{classify, NameKind, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX};
use std::collections::{BTreeMap, BTreeSet};

/// A path inside a layer or union: its components, root = empty.
pub type ModelPath = Vec<String>;

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerNode {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(Vec<u8>),
    /// A symbolic link with its target.
    Symlink(String),
}

/// Why a layer refused an insertion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    /// A prefix of the path is not a directory in this layer.
    #[error("{path:?}: a parent is not a directory in this layer")]
    ParentNotDir {
        /// The path that could not be inserted.
        path: ModelPath,
    },
    /// The path already exists in this layer.
    #[error("{path:?}: already exists in this layer")]
    Exists {
        /// The path that could not be inserted.
        path: ModelPath,
    },
    /// The root cannot be replaced.
    #[error("the root of a layer is always a directory")]
    Root,
}

/// One branch: its whole tree, as on disk (whiteouts are empty files named
/// `.wh.NAME`, opaque markers are empty files named `.wh..wh..opq`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    entries: BTreeMap<ModelPath, LayerNode>,
}

impl Layer {
    /// An empty layer (just its root directory).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry but the root, parents before children.
    pub fn entries(&self) -> impl Iterator<Item = (&ModelPath, &LayerNode)> {
        self.entries.iter()
    }

    /// The entry at `path` (`Some(Dir)` for the root).
    pub fn get(&self, path: &[String]) -> Option<&LayerNode> {
        if path.is_empty() {
            return Some(&LayerNode::Dir);
        }
        self.entries.get(path)
    }

    /// Adds `path`, creating missing parents as directories.
    pub fn insert(&mut self, path: &[String], node: LayerNode) -> Result<(), LayerError> {
        if path.is_empty() {
            return Err(LayerError::Root);
        }
        for k in 1..path.len() {
            match self.entries.get(&path[..k]) {
                Some(LayerNode::Dir) => {}
                Some(_) => {
                    return Err(LayerError::ParentNotDir {
                        path: path.to_vec(),
                    })
                }
                None => {
                    self.entries.insert(path[..k].to_vec(), LayerNode::Dir);
                }
            }
        }
        if self.entries.contains_key(path) {
            return Err(LayerError::Exists {
                path: path.to_vec(),
            });
        }
        self.entries.insert(path.to_vec(), node);
        Ok(())
    }

    /// Adds the whiteout hiding `path` in lower layers.
    pub fn whiteout(&mut self, path: &[String]) -> Result<(), LayerError> {
        let (name, parent) = path.split_last().ok_or(LayerError::Root)?;
        let mut wh = parent.to_vec();
        wh.push(format!("{WHITEOUT_PREFIX}{name}"));
        self.insert(&wh, LayerNode::File(Vec::new()))
    }

    /// Makes directory `dir` opaque (creating it if missing).
    pub fn make_opaque(&mut self, dir: &[String]) -> Result<(), LayerError> {
        let mut marker = dir.to_vec();
        marker.push(WHITEOUT_OPAQUE_DIR.to_string());
        self.insert(&marker, LayerNode::File(Vec::new()))
    }

    fn has_whiteout_for(&self, path: &[String]) -> bool {
        let Some((name, parent)) = path.split_last() else {
            return false;
        };
        let mut wh = parent.to_vec();
        wh.push(format!("{WHITEOUT_PREFIX}{name}"));
        self.entries.contains_key(&wh)
    }

    fn is_opaque_dir(&self, dir: &[String]) -> bool {
        let mut marker = dir.to_vec();
        marker.push(WHITEOUT_OPAQUE_DIR.to_string());
        matches!(self.get(dir), Some(LayerNode::Dir)) && self.entries.contains_key(&marker)
    }

    /// True when this layer hides `path` of every lower layer.
    fn hides(&self, path: &[String]) -> bool {
        self.is_opaque_dir(&[])
            || (1..=path.len()).any(|k| {
                let prefix = &path[..k];
                if self.has_whiteout_for(prefix) {
                    return true;
                }
                if k < path.len() {
                    match self.get(prefix) {
                        Some(LayerNode::Dir) => self.is_opaque_dir(prefix),
                        Some(_) => true,
                        None => false,
                    }
                } else {
                    false
                }
            })
    }
}

/// An entry of the union and the layer it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleNode {
    /// Index of the layer (0 = topmost) the entry is taken from.
    pub layer: usize,
    /// The entry itself.
    pub node: LayerNode,
}

fn plain_path(path: &[String]) -> bool {
    path.iter().all(|c| classify(c) == NameKind::Plain)
}

/// The tree a union of `layers` (topmost first) shows, root excluded.
pub fn visible_tree(layers: &[Layer]) -> BTreeMap<ModelPath, VisibleNode> {
    let candidates: BTreeSet<&ModelPath> = layers
        .iter()
        .flat_map(|l| l.entries.keys())
        .filter(|p| plain_path(p))
        .collect();
    let mut out = BTreeMap::new();
    for path in candidates {
        let Some(top) = layers.iter().position(|l| l.entries.contains_key(path)) else {
            continue;
        };
        let hidden = layers[..top].iter().any(|l| l.hides(path))
            || (1..path.len()).any(|k| {
                // Every proper prefix must be a directory where it is visible.
                let prefix = &path[..k];
                let owner = layers.iter().position(|l| l.get(prefix).is_some());
                !matches!(
                    owner.and_then(|o| layers[o].get(prefix)),
                    Some(LayerNode::Dir)
                )
            });
        if !hidden {
            out.insert(
                path.clone(),
                VisibleNode {
                    layer: top,
                    node: layers[top].entries[path].clone(),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ModelPath {
        s.split('/').map(str::to_string).collect()
    }

    fn file(s: &str) -> LayerNode {
        LayerNode::File(s.as_bytes().to_vec())
    }

    #[test]
    fn upper_file_wins() {
        let mut up = Layer::new();
        up.insert(&p("a"), file("up")).unwrap();
        let mut low = Layer::new();
        low.insert(&p("a"), file("low")).unwrap();
        low.insert(&p("b"), file("b")).unwrap();
        let v = visible_tree(&[up, low]);
        assert_eq!(v[&p("a")].layer, 0);
        assert_eq!(v[&p("b")].layer, 1);
    }

    #[test]
    fn whiteout_hides_subtree() {
        let mut up = Layer::new();
        up.whiteout(&p("d")).unwrap();
        let mut low = Layer::new();
        low.insert(&p("d/x"), file("x")).unwrap();
        let v = visible_tree(&[up, low]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn opaque_hides_lower_content_but_keeps_own() {
        let mut up = Layer::new();
        up.make_opaque(&p("d")).unwrap();
        up.insert(&p("d/mine"), file("m")).unwrap();
        let mut low = Layer::new();
        low.insert(&p("d/x"), file("x")).unwrap();
        let v = visible_tree(&[up, low]);
        assert_eq!(
            v.keys().cloned().collect::<Vec<_>>(),
            vec![p("d"), p("d/mine")]
        );
    }

    #[test]
    fn file_over_dir_cuts_subtree() {
        let mut up = Layer::new();
        up.insert(&p("d"), file("f")).unwrap();
        let mut low = Layer::new();
        low.insert(&p("d/x"), file("x")).unwrap();
        let v = visible_tree(&[up, low]);
        assert_eq!(v.keys().cloned().collect::<Vec<_>>(), vec![p("d")]);
    }

    #[test]
    fn dirs_merge_and_same_layer_whiteout_hides_only_lower() {
        let mut up = Layer::new();
        up.insert(&p("d/a"), file("a")).unwrap();
        up.whiteout(&p("d/a")).unwrap();
        up.whiteout(&p("d/b")).unwrap();
        let mut low = Layer::new();
        low.insert(&p("d/a"), file("low")).unwrap();
        low.insert(&p("d/b"), file("b")).unwrap();
        low.insert(&p("d/c"), file("c")).unwrap();
        let v = visible_tree(&[up, low]);
        assert_eq!(
            v.keys().cloned().collect::<Vec<_>>(),
            vec![p("d"), p("d/a"), p("d/c")]
        );
        assert_eq!(v[&p("d/a")].layer, 0);
        assert_eq!(v[&p("d")].layer, 0);
    }

    #[test]
    fn metadata_never_visible() {
        let mut l = Layer::new();
        l.insert(&p(".wh..wh.plnk/x"), file("x")).unwrap();
        assert!(visible_tree(&[l]).is_empty());
    }

    #[test]
    fn insert_rejects_file_parent() {
        let mut l = Layer::new();
        l.insert(&p("f"), file("x")).unwrap();
        assert!(matches!(
            l.insert(&p("f/y"), file("y")),
            Err(LayerError::ParentNotDir { .. })
        ));
    }
}
