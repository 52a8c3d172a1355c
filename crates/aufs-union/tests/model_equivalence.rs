//! The union view over random layer stacks written to disk shows exactly
//! what the pure aufs model says, before and after writes through it.

mod common;

use aufs_model::union_model::{visible_tree, Layer, LayerNode, ModelPath};
use aufs_union::{NewNode, UnionError};
use common::{open_view, read_layer, union_tree, write_layer};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone)]
enum LayerOp {
    File(ModelPath, u8),
    Dir(ModelPath),
    Symlink(ModelPath),
    Whiteout(ModelPath),
    Opaque(ModelPath),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_string)
}

fn mpath() -> impl Strategy<Value = ModelPath> {
    prop::collection::vec(name(), 1..4)
}

fn layer_op() -> impl Strategy<Value = LayerOp> {
    prop_oneof![
        3 => (mpath(), any::<u8>()).prop_map(|(p, b)| LayerOp::File(p, b)),
        3 => mpath().prop_map(LayerOp::Dir),
        1 => mpath().prop_map(LayerOp::Symlink),
        2 => mpath().prop_map(LayerOp::Whiteout),
        1 => mpath().prop_map(LayerOp::Opaque),
    ]
}

fn build_layer(ops: &[LayerOp]) -> Layer {
    let mut l = Layer::new();
    for op in ops {
        // Conflicting inserts are simply skipped.
        let _ = match op {
            LayerOp::File(p, b) => l.insert(p, LayerNode::File(vec![*b])),
            LayerOp::Dir(p) => l.insert(p, LayerNode::Dir),
            LayerOp::Symlink(p) => l.insert(p, LayerNode::Symlink(format!("t{}", p.len()))),
            LayerOp::Whiteout(p) => l.whiteout(p),
            LayerOp::Opaque(p) => l.make_opaque(p),
        };
    }
    l
}

fn layers() -> impl Strategy<Value = Vec<Layer>> {
    prop::collection::vec(
        prop::collection::vec(layer_op(), 0..10).prop_map(|ops| build_layer(&ops)),
        1..5,
    )
}

type Tree = BTreeMap<ModelPath, LayerNode>;

fn strip(t: &BTreeMap<ModelPath, (usize, LayerNode)>) -> Tree {
    t.iter().map(|(k, (_, n))| (k.clone(), n.clone())).collect()
}

#[derive(Debug, Clone)]
enum WriteOp {
    Create(ModelPath, u8),
    Mkdir(ModelPath),
    Unlink(ModelPath),
    Rmdir(ModelPath),
    Rename(ModelPath, ModelPath),
    Overwrite(ModelPath, u8),
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        (mpath(), any::<u8>()).prop_map(|(p, b)| WriteOp::Create(p, b)),
        mpath().prop_map(WriteOp::Mkdir),
        mpath().prop_map(WriteOp::Unlink),
        mpath().prop_map(WriteOp::Rmdir),
        (mpath(), mpath()).prop_map(|(a, b)| WriteOp::Rename(a, b)),
        (mpath(), any::<u8>()).prop_map(|(p, b)| WriteOp::Overwrite(p, b)),
    ]
}

fn parent_is_dir(t: &Tree, p: &ModelPath) -> bool {
    p.len() == 1 || matches!(t.get(&p[..p.len() - 1]), Some(LayerNode::Dir))
}

fn subtree_of<'a>(t: &'a Tree, p: &'a ModelPath) -> impl Iterator<Item = &'a ModelPath> + 'a {
    t.keys()
        .filter(move |k| k.len() > p.len() && k.starts_with(p))
}

/// POSIX semantics on the expected visible tree; `Err(())` when the call
/// must fail.
fn apply_expected(t: &mut Tree, op: &WriteOp) -> Result<(), ()> {
    match op {
        WriteOp::Create(p, _) | WriteOp::Mkdir(p) if !t.contains_key(p) && parent_is_dir(t, p) => {
            let node = match op {
                WriteOp::Create(_, b) => LayerNode::File(vec![*b]),
                _ => LayerNode::Dir,
            };
            t.insert(p.clone(), node);
            Ok(())
        }
        WriteOp::Unlink(p) if matches!(t.get(p), Some(n) if *n != LayerNode::Dir) => {
            t.remove(p);
            Ok(())
        }
        WriteOp::Rmdir(p)
            if t.get(p) == Some(&LayerNode::Dir) && subtree_of(t, p).next().is_none() =>
        {
            t.remove(p);
            Ok(())
        }
        WriteOp::Overwrite(p, b) if matches!(t.get(p), Some(LayerNode::File(_))) => {
            t.insert(p.clone(), LayerNode::File(vec![*b]));
            Ok(())
        }
        WriteOp::Rename(s, d) => {
            let Some(sn) = t.get(s).cloned() else {
                return Err(());
            };
            if s == d {
                return Ok(());
            }
            if !parent_is_dir(t, d) || d.starts_with(s) {
                return Err(());
            }
            let dst_dir_not_empty = t.get(d) == Some(&LayerNode::Dir)
                && sn == LayerNode::Dir
                && subtree_of(t, d).next().is_some();
            let kinds_clash = match (t.get(d), &sn) {
                (Some(LayerNode::Dir), LayerNode::Dir) => false,
                (Some(LayerNode::Dir), _) | (Some(_), LayerNode::Dir) => true,
                _ => false,
            };
            if dst_dir_not_empty || kinds_clash {
                return Err(());
            }
            let moved: Vec<(ModelPath, LayerNode)> = t
                .iter()
                .filter(|(k, _)| k.starts_with(s))
                .map(|(k, v)| {
                    let mut nk = d.clone();
                    nk.extend_from_slice(&k[s.len()..]);
                    (nk, v.clone())
                })
                .collect();
            t.retain(|k, _| !k.starts_with(s));
            t.remove(d);
            t.extend(moved);
            Ok(())
        }
        _ => Err(()),
    }
}

fn pb(p: &ModelPath) -> PathBuf {
    p.iter().collect()
}

fn apply_view(v: &aufs_union::UnionView, op: &WriteOp) -> Result<(), UnionError> {
    match op {
        WriteOp::Create(p, b) => {
            let e = v.create(&pb(p), NewNode::File { mode: 0o644 }, None)?;
            std::fs::write(&e.real_path, [*b]).unwrap();
            Ok(())
        }
        WriteOp::Mkdir(p) => v
            .create(&pb(p), NewNode::Dir { mode: 0o755 }, None)
            .map(drop),
        WriteOp::Unlink(p) => v.unlink(&pb(p)),
        WriteOp::Rmdir(p) => v.rmdir(&pb(p)),
        WriteOp::Rename(s, d) => v.rename(&pb(s), &pb(d), false),
        WriteOp::Overwrite(p, b) => match v.lookup(&pb(p))? {
            Some(e) if e.kind() == aufs_union::EntryKind::File => {
                let e = v.copy_up(&pb(p), false)?;
                std::fs::write(&e.real_path, [*b]).unwrap();
                Ok(())
            }
            _ => Err(UnionError::NotFound { path: pb(p) }),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn read_view_equals_model(layers in layers()) {
        let tmp = tempfile::tempdir().unwrap();
        for (i, l) in layers.iter().enumerate() {
            write_layer(l, &tmp.path().join(format!("l{i}")));
        }
        let view = open_view(tmp.path(), false, layers.len());
        let real = union_tree(&view);
        let model: BTreeMap<_, _> = visible_tree(&layers)
            .into_iter()
            .map(|(k, v)| (k, (v.layer, v.node)))
            .collect();
        prop_assert_eq!(real, model);
    }

    #[test]
    fn writes_match_posix_and_leave_aufs_layout(
        layers in layers(),
        ops in prop::collection::vec(write_op(), 1..12),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        for (i, l) in layers.iter().enumerate() {
            write_layer(l, &tmp.path().join(format!("l{i}")));
        }
        let view = open_view(tmp.path(), true, layers.len());
        let mut expected = strip(&union_tree(&view));
        for op in &ops {
            let got = apply_view(&view, op);
            match got {
                Err(UnionError::CrossBranchRename { .. }) => {
                    let mut probe = expected.clone();
                    prop_assert!(apply_expected(&mut probe, op).is_ok(), "{:?} refused with EXDEV but invalid", op);
                }
                got => {
                    let want = apply_expected(&mut expected, op);
                    prop_assert_eq!(got.is_ok(), want.is_ok(), "{:?}: view {:?}", op, got);
                }
            }
            prop_assert_eq!(&strip(&union_tree(&view)), &expected, "after {:?}", op);
        }
        // The rw branch left on disk means the same to the pure aufs rules,
        // and a fresh view (no caches) agrees.
        let mut stack = vec![read_layer(&tmp.path().join("rw"))];
        stack.extend(layers.iter().cloned());
        let from_disk: Tree = visible_tree(&stack).into_iter().map(|(k, v)| (k, v.node)).collect();
        prop_assert_eq!(&from_disk, &expected);
        let fresh = open_view(tmp.path(), true, layers.len());
        prop_assert_eq!(&strip(&union_tree(&fresh)), &expected);
    }
}
