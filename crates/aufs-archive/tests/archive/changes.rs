//! changes() against Docker's expectations, aufs union rules, and a model.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use aufs_archive::{changes, Change, ChangeKind};
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;

use crate::util::*;

fn render(c: &[Change]) -> Vec<String> {
    c.iter().map(|c| c.to_string()).collect()
}

fn touch_dir_like(dst: &Utf8Path, src: &Utf8Path) {
    let md = fs::metadata(src).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777)).unwrap();
    let ts = times_of(&md);
    rustix::fs::utimensat(
        rustix::fs::CWD,
        dst.as_str(),
        &ts,
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
}

#[test]
fn display_is_docker_diff() {
    let c = |k| Change {
        path: "/x".into(),
        raw_path: b"/x".to_vec(),
        kind: k,
    };
    assert_eq!(c(ChangeKind::Modify).to_string(), "C /x");
    assert_eq!(c(ChangeKind::Add).to_string(), "A /x");
    assert_eq!(c(ChangeKind::Delete).to_string(), "D /x");
}

/// Whiteouts of `.` and `..` (made by hand: apply refuses them) name no
/// entry; reporting `D /.` or `D /..` would send a consumer deleting the
/// `D` paths out of the rootfs.
#[test]
fn whiteouts_of_dot_and_dotdot_are_never_reported() {
    let s = Scratch::new();
    let lower = s.mkdir("lower");
    write_file(&lower.join("a/kept"), b"k");
    let upper = s.mkdir("upper");
    write_file(&upper.join(".wh.."), b"");
    write_file(&upper.join(".wh..."), b"");
    write_file(&upper.join("a/.wh.."), b"");
    write_file(&upper.join("a/.wh..."), b"");
    write_file(&upper.join("a/.wh.gone"), b"");
    let got = render(&changes(&[&lower], &upper).unwrap());
    assert_eq!(got, ["C /a", "D /a/gone"]);
}

#[test]
fn docker_changes_with_changes() {
    // pkg/archive TestChangesWithChanges, in aufs form.
    let s = Scratch::new();
    let lower = s.mkdir("lower");
    write_file(&lower.join("dir1/file1-1"), b"1");
    write_file(&lower.join("dir1/file1-2"), b"2");
    fs::create_dir(lower.join("dir1/subfolder")).unwrap();
    let upper = s.mkdir("upper");
    write_file(&upper.join("dir1/file1-1"), b"changed");
    write_file(&upper.join("dir1/.wh.file1-2"), b"");
    fs::create_dir(upper.join("dir1/subfolder")).unwrap();
    touch_dir_like(&upper.join("dir1/subfolder"), &lower.join("dir1/subfolder"));
    write_file(&upper.join("dir1/subfolder/newFile"), b"n");
    // subfolder's size may now differ on some filesystems; make it equal again to hit the GH13590 rule.
    let got = render(&changes(&[&lower], &upper).unwrap());
    assert_eq!(got.first().map(String::as_str), Some("C /dir1"));
    assert!(got.contains(&"C /dir1/file1-1".to_string()));
    assert!(got.contains(&"D /dir1/file1-2".to_string()));
    assert!(
        got.contains(&"C /dir1/subfolder".to_string()),
        "parent of an add is listed: {got:?}"
    );
    assert!(got.contains(&"A /dir1/subfolder/newFile".to_string()));
    assert_eq!(got.len(), 5, "{got:?}");
}

#[test]
fn unchanged_dirs_are_skipped_but_parents_of_adds_are_listed() {
    let s = Scratch::new();
    let lower = s.mkdir("lower");
    fs::create_dir_all(lower.join("a/b")).unwrap();
    let upper = s.mkdir("upper");
    fs::create_dir_all(upper.join("a/b")).unwrap();
    touch_dir_like(&upper.join("a/b"), &lower.join("a/b"));
    touch_dir_like(&upper.join("a"), &lower.join("a"));
    assert_eq!(
        render(&changes(&[&lower], &upper).unwrap()),
        Vec::<String>::new()
    );
    write_file(&upper.join("a/b/new"), b"x");
    touch_dir_like(&upper.join("a/b"), &lower.join("a/b"));
    let got = render(&changes(&[&lower], &upper).unwrap());
    // a/b's size may differ after adding a file (tmpfs); either way the parent of the add is listed.
    assert!(
        got.contains(&"C /a/b".to_string()) && got.contains(&"A /a/b/new".to_string()),
        "{got:?}"
    );
}

#[test]
fn driver_child_layers_report_only_their_own_changes() {
    // aufs_test.go TestChanges: layer 3 (parent 2, parent 1) with test2.txt.
    let s = Scratch::new();
    let l1 = s.mkdir("1");
    let l2 = s.mkdir("2");
    write_file(&l2.join("test.txt"), b"x");
    let l3 = s.mkdir("3");
    write_file(&l3.join("test2.txt"), b"y");
    assert_eq!(render(&changes(&[&l1], &l2).unwrap()), vec!["A /test.txt"]);
    assert_eq!(
        render(&changes(&[&l2, &l1], &l3).unwrap()),
        vec!["A /test2.txt"]
    );
}

#[test]
fn opaque_dirs_and_lower_whiteouts() {
    let s = Scratch::new();
    let bottom = s.mkdir("bottom");
    write_file(&bottom.join("o/a"), b"a");
    write_file(&bottom.join("o/b"), b"b");
    write_file(&bottom.join("x"), b"x");
    write_file(&bottom.join("gone/deep"), b"d");
    let mid = s.mkdir("mid");
    write_file(&mid.join(".wh.x"), b"");
    write_file(&mid.join(".wh.gone"), b"");
    let upper = s.mkdir("upper");
    write_file(&upper.join("o/.wh..wh..opq"), b"");
    write_file(&upper.join("o/a"), b"new a");
    write_file(&upper.join("o/c"), b"c");
    write_file(&upper.join("x"), b"back");
    write_file(&upper.join("gone/deep"), b"back");
    write_file(&upper.join(".wh..wh.plnk/1.2"), b"meta");
    write_file(&upper.join(".wh..wh.aufs"), b"");
    write_file(&upper.join("n/.wh..wh..opq"), b"");
    let got = render(&changes(&[&mid, &bottom], &upper).unwrap());
    assert_eq!(
        got,
        vec![
            "A /gone",
            "A /gone/deep",
            "A /n",
            "C /o",
            "A /o/a",
            "A /o/c",
            "A /x"
        ],
        "hidden lower entries are absent; no .wh. name is printed"
    );
}

#[test]
fn non_utf8_names_keep_their_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new();
    let lower = s.mkdir("lower");
    let upper = s.mkdir("upper");
    fs::write(
        upper
            .as_std_path()
            .join(std::ffi::OsStr::from_bytes(b"\xff")),
        b"",
    )
    .unwrap();
    fs::write(
        upper
            .as_std_path()
            .join(std::ffi::OsStr::from_bytes(b".wh.\xfe")),
        b"",
    )
    .unwrap();
    let c = changes(&[&lower], &upper).unwrap();
    let raw: Vec<_> = c.iter().map(|c| (c.raw_path.clone(), c.kind)).collect();
    assert_eq!(
        raw,
        vec![
            (b"/\xfe".to_vec(), ChangeKind::Delete),
            (b"/\xff".to_vec(), ChangeKind::Add)
        ]
    );
}

// ---- model: a union of maps, computed independently of the walker ----

#[derive(Debug, Clone)]
pub(crate) enum E {
    File(u8),
    Dir,
    Whiteout,
    Opaque,
}

pub(crate) fn layer() -> impl Strategy<Value = Vec<(Vec<&'static str>, E)>> {
    let comp = prop_oneof![Just("a"), Just("b"), Just("c")];
    let path = proptest::collection::vec(comp, 1..4);
    let e = prop_oneof![
        (0u8..3).prop_map(E::File),
        Just(E::Dir),
        Just(E::Whiteout),
        Just(E::Opaque)
    ];
    proptest::collection::vec((path, e), 0..10)
}

/// Writes a layer; a later entry that conflicts with an earlier one is dropped.
pub(crate) fn build(root: &Utf8Path, entries: &[(Vec<&str>, E)]) {
    for (p, e) in entries {
        let (parent, name) = p.split_at(p.len() - 1);
        let dir = parent.iter().fold(root.to_owned(), |d, c| d.join(c));
        if parent
            .iter()
            .scan(root.to_owned(), |d, c| {
                *d = d.join(c);
                Some(d.clone())
            })
            .any(|d| d.exists() && !d.is_dir())
        {
            continue;
        }
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join(name[0]);
        match e {
            E::File(v) if !target.exists() => fs::write(&target, [*v]).unwrap(),
            E::Dir if !target.exists() => fs::create_dir(&target).unwrap(),
            E::Whiteout => fs::write(dir.join(format!(".wh.{}", name[0])), b"").unwrap(),
            E::Opaque if target.is_dir() => fs::write(target.join(".wh..wh..opq"), b"").unwrap(),
            _ => {}
        }
    }
}

/// Every visible entry of a layer as path -> is_dir, plus its whiteouts and opaque dirs.
struct LayerView {
    entries: BTreeMap<String, bool>,
    whiteouts: BTreeSet<String>,
    opaque: BTreeSet<String>,
}

fn view(root: &Utf8Path) -> LayerView {
    fn rec(root: &Utf8Path, rel: &str, v: &mut LayerView) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let p = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if name == ".wh..wh..opq" {
                v.opaque.insert(rel.to_string());
            } else if let Some(t) = name.strip_prefix(".wh.") {
                v.whiteouts.insert(if rel.is_empty() {
                    t.to_string()
                } else {
                    format!("{rel}/{t}")
                });
            } else {
                let is_dir = root.join(&p).is_dir() && !root.join(&p).is_symlink();
                v.entries.insert(p.clone(), is_dir);
                if is_dir {
                    rec(root, &p, v);
                }
            }
        }
    }
    let mut v = LayerView {
        entries: BTreeMap::new(),
        whiteouts: BTreeSet::new(),
        opaque: BTreeSet::new(),
    };
    rec(root, "", &mut v);
    v
}

fn ancestors(p: &str) -> Vec<String> {
    let parts: Vec<&str> = p.split('/').collect();
    (1..parts.len()).map(|i| parts[..i].join("/")).collect()
}

/// The union of lowers (nearest first): path -> lower root it comes from.
fn union(lowers: &[Utf8PathBuf]) -> BTreeMap<String, Utf8PathBuf> {
    let mut u: BTreeMap<String, Utf8PathBuf> = BTreeMap::new();
    for root in lowers.iter().rev() {
        let v = view(root);
        u.retain(|p, _| {
            let hidden_by_wh =
                v.whiteouts.contains(p) || ancestors(p).iter().any(|a| v.whiteouts.contains(a));
            let hidden_by_opq = ancestors(p).iter().any(|a| v.opaque.contains(a))
                || (v.opaque.contains("") && !p.is_empty());
            let hidden_by_file = ancestors(p)
                .iter()
                .any(|a| v.entries.get(a) == Some(&false));
            let replaced = v.entries.get(p).is_some_and(|d| !*d);
            !(hidden_by_wh || hidden_by_opq || hidden_by_file || replaced)
        });
        for p in v.entries.keys() {
            u.insert(p.clone(), root.clone());
        }
    }
    u
}

fn model(lowers: &[Utf8PathBuf], upper: &Utf8Path) -> Vec<String> {
    let u = union(lowers);
    let v = view(upper);
    let mut out: Vec<(String, ChangeKind)> = Vec::new();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    // Pre-order over the upper layer, as the walker does.
    let mut items: Vec<(String, Option<bool>)> = v
        .entries
        .iter()
        .map(|(p, d)| (p.clone(), Some(*d)))
        .collect();
    items.extend(v.whiteouts.iter().map(|p| (p.clone(), None)));
    items.sort_by(|a, b| a.0.split('/').cmp(b.0.split('/')));
    for (p, is_dir) in items {
        let parent = ancestors(&p).pop().unwrap_or_default();
        let kind = match is_dir {
            None => Some(ChangeKind::Delete),
            Some(is_dir) => {
                let under_opaque =
                    ancestors(&p).iter().any(|a| v.opaque.contains(a)) || v.opaque.contains("");
                match u.get(&p) {
                    Some(root) if !under_opaque => {
                        let lower_dir = root.join(&p).is_dir() && !root.join(&p).is_symlink();
                        if is_dir && lower_dir && !v.opaque.contains(&p) {
                            let a = fs::symlink_metadata(upper.join(&p)).unwrap();
                            let b = fs::symlink_metadata(root.join(&p)).unwrap();
                            let same = a.size() == b.size()
                                && a.mode() == b.mode()
                                && a.mtime() == b.mtime()
                                && (a.mtime_nsec() == b.mtime_nsec()
                                    || a.mtime_nsec() == 0
                                    || b.mtime_nsec() == 0);
                            (!same).then_some(ChangeKind::Modify)
                        } else {
                            Some(ChangeKind::Modify)
                        }
                    }
                    _ => Some(ChangeKind::Add),
                }
            }
        };
        let Some(kind) = kind else { continue };
        if kind != ChangeKind::Modify && !parent.is_empty() && !listed.contains(&parent) {
            out.push((parent.clone(), ChangeKind::Modify));
            listed.insert(parent);
        }
        if is_dir == Some(true) {
            listed.insert(p.clone());
        }
        out.push((p, kind));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()).then(a.1.cmp(&b.1)));
    out.into_iter().map(|(p, k)| format!("{k} /{p}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn changes_match_the_union_model(l1 in layer(), l2 in layer(), up in layer()) {
        let s = Scratch::new();
        let bottom = s.mkdir("bottom");
        let mid = s.mkdir("mid");
        let upper = s.mkdir("upper");
        build(&bottom, &l1);
        build(&mid, &l2);
        build(&upper, &up);
        let lowers = vec![mid.clone(), bottom.clone()];
        let got = render(&changes(&[&mid, &bottom], &upper).unwrap());
        prop_assert_eq!(got, model(&lowers, &upper));
    }
}
