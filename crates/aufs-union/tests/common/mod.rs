//! Helpers shared by the union tests: model layers written to real dirs and
//! the union read back as a model tree.

#![allow(dead_code)]

use aufs_model::union_model::{Layer, LayerNode, ModelPath};
use aufs_union::{EntryKind, UnionView};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::path::Path;

pub fn write_layer(layer: &Layer, root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    for (path, node) in layer.entries() {
        let real = path.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        match node {
            LayerNode::Dir => std::fs::create_dir(&real).unwrap(),
            LayerNode::File(data) => std::fs::write(&real, data).unwrap(),
            LayerNode::Symlink(t) => std::os::unix::fs::symlink(t, &real).unwrap(),
        }
    }
}

/// Reads a real directory back as a layer (whiteouts included).
pub fn read_layer(root: &Path) -> Layer {
    let mut layer = Layer::new();
    fn rec(dir: &Path, prefix: &ModelPath, layer: &mut Layer) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let mut p = prefix.clone();
            p.push(e.file_name().into_string().unwrap());
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                layer.insert(&p, LayerNode::Dir).unwrap();
                rec(&e.path(), &p, layer);
            } else if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                layer
                    .insert(&p, LayerNode::Symlink(t.to_str().unwrap().to_string()))
                    .unwrap();
            } else {
                layer
                    .insert(&p, LayerNode::File(std::fs::read(e.path()).unwrap()))
                    .unwrap();
            }
        }
    }
    rec(root, &Vec::new(), &mut layer);
    layer
}

/// The union as (path -> (branch index, node)).
pub fn union_tree(view: &UnionView) -> BTreeMap<ModelPath, (usize, LayerNode)> {
    let mut out = BTreeMap::new();
    for w in view.walk() {
        let w = w.unwrap();
        let path: ModelPath = w
            .path
            .iter()
            .map(|c| c.to_str().unwrap().to_string())
            .collect();
        let node = match w.entry.kind() {
            EntryKind::Dir => LayerNode::Dir,
            EntryKind::Symlink => LayerNode::Symlink(
                std::fs::read_link(&w.entry.real_path)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string(),
            ),
            _ => LayerNode::File(std::fs::read(&w.entry.real_path).unwrap()),
        };
        out.insert(path, (w.entry.branch_index, node));
    }
    out
}

pub fn utf8(p: &Path) -> Utf8PathBuf {
    Utf8Path::from_path(p).unwrap().to_owned()
}

/// Opens a view over dirs `tmp/rw` (when `with_rw`) and `tmp/l0..`.
pub fn open_view(tmp: &Path, with_rw: bool, n: usize) -> UnionView {
    let ro: Vec<Utf8PathBuf> = (0..n).map(|i| utf8(&tmp.join(format!("l{i}")))).collect();
    let ro_refs: Vec<&Utf8Path> = ro.iter().map(|p| p.as_path()).collect();
    let rw = utf8(&tmp.join("rw"));
    if with_rw {
        std::fs::create_dir_all(&rw).unwrap();
    }
    UnionView::open(with_rw.then_some(rw.as_path()), &ro_refs).unwrap()
}
