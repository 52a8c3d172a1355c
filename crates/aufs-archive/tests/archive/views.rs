//! Diffs between in-process union views against the same diffs between
//! real trees: each view is materialized into a plain directory by walking
//! it (what a mount of the union shows), and the diff of the two copies
//! must be the same. Exports of view diffs must rebuild the newer union.

use std::fs;
use std::os::unix::ffi::OsStrExt;

use aufs_archive::{
    apply_layer, changes_between_views, changes_size_view, export_changes_view, Change,
};
use aufs_union::UnionView;
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps};

use crate::changes::{build, layer};
use crate::util::*;

/// Copies everything `view` shows into the empty directory `dst`, with
/// modes, owners and times: the tree a mount of the union would show.
pub fn materialize(view: &UnionView, dst: &Utf8Path) {
    let mut dirs = Vec::new();
    for w in view.walk() {
        let w = w.unwrap();
        let target = dst.as_std_path().join(&w.path);
        let md = &w.entry.metadata;
        if md.is_dir() {
            fs::create_dir(&target).unwrap();
            dirs.push((target.clone(), view_times(md)));
        } else if md.is_symlink() {
            std::os::unix::fs::symlink(w.entry.read_link().unwrap(), &target).unwrap();
        } else if md.is_file() {
            let mut src = w.entry.open(0 /* O_RDONLY */).unwrap();
            let mut dst = fs::File::create(&target).unwrap();
            std::io::copy(&mut src, &mut dst).unwrap();
        } else {
            panic!("unexpected entry type at {:?}", w.path);
        }
        rustix::fs::chownat(
            rustix::fs::CWD,
            &target,
            Some(rustix::fs::Uid::from_raw(md.uid())),
            Some(rustix::fs::Gid::from_raw(md.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if !md.is_symlink() {
            rustix::fs::chmod(&target, Mode::from_raw_mode(md.mode() & 0o7777)).unwrap();
        }
        if !md.is_dir() {
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &target,
                &view_times(md),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    }
    // Directory times last: filling a directory changes its mtime.
    for (d, t) in dirs.into_iter().rev() {
        rustix::fs::utimensat(rustix::fs::CWD, &d, &t, AtFlags::empty()).unwrap();
    }
}

/// The access and modification times of a union entry.
fn view_times(md: &aufs_union::Meta) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    }
}

fn view(branches: &[&Utf8PathBuf]) -> UnionView {
    let b: Vec<&Utf8Path> = branches.iter().map(|p| p.as_path()).collect();
    UnionView::open(None, &b).unwrap()
}

fn render(c: &[Change]) -> Vec<String> {
    c.iter().map(|c| c.to_string()).collect()
}

/// `dump` without directory mtimes: a diff does not carry the mtime of a
/// directory whose only change is its mtime (Docker's `ChangesDirs` rule).
fn dump_but_dir_mtimes(root: &Utf8Path) -> String {
    dump(root)
        .lines()
        .map(|l| {
            let t: Vec<&str> = l.split(' ').collect();
            if t.get(1) == Some(&"d") {
                t.iter()
                    .filter(|w| !w.starts_with("mtime="))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn set_file_times(dir: &Utf8Path, secs: i64) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = Utf8PathBuf::from_path_buf(e.path()).unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            set_file_times(&p, secs);
        } else if ft.is_file() {
            let t = Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            };
            let ts = Timestamps {
                last_access: t,
                last_modification: t,
            };
            rustix::fs::utimensat(rustix::fs::CWD, p.as_str(), &ts, AtFlags::empty()).unwrap();
        }
    }
}

/// A stack of four layers: `old` is the union of the lower two, `new` of all.
pub(crate) struct Stack {
    pub s: Scratch,
    layers: Vec<Utf8PathBuf>,
}

impl Stack {
    pub fn new(ls: [Vec<(Vec<&'static str>, crate::changes::E)>; 4]) -> Self {
        let s = Scratch::new();
        let mut layers = Vec::new();
        for (i, l) in ls.iter().enumerate() {
            let d = s.mkdir(&format!("l{i}"));
            build(&d, l);
            // Distinct file times per layer: writes in one clock tick would
            // otherwise leave a rewritten file with the same size and mtime,
            // which Docker's rules (rightly) cannot tell from unchanged.
            set_file_times(&d, 1_600_000_000 + i as i64 * 1000);
            layers.push(d);
        }
        // Nearest first.
        layers.reverse();
        Stack { s, layers }
    }
    pub fn old(&self) -> UnionView {
        view(&[&self.layers[2], &self.layers[3]])
    }
    pub fn new_view(&self) -> UnionView {
        view(&self.layers.iter().collect::<Vec<_>>())
    }
}

#[test]
fn ancestor_diff_is_computed_without_mounting() {
    let s = Scratch::new();
    let (l1, l2, l3) = (s.mkdir("l1"), s.mkdir("l2"), s.mkdir("l3"));
    write_file(&l1.join("etc/passwd"), b"root");
    write_file(&l1.join("etc/gone"), b"g");
    write_file(&l1.join("usr/bin/sh"), b"sh");
    write_file(&l2.join("etc/.wh.gone"), b"");
    write_file(&l2.join("etc/new"), b"n1");
    write_file(&l3.join("etc/passwd"), b"root+user");
    fs::create_dir_all(l3.join("usr")).unwrap();
    write_file(&l3.join("usr/.wh..wh..opq"), b"");
    write_file(&l3.join("usr/local"), b"l");
    let old = view(&[&l1]);
    let new = view(&[&l3, &l2, &l1]);
    let ch = changes_between_views(Some(&old), &new).unwrap();
    assert_eq!(
        render(&ch),
        vec![
            "C /etc",
            "D /etc/gone",
            "A /etc/new",
            "C /etc/passwd",
            "C /usr",
            "D /usr/bin",
            "A /usr/local",
        ]
    );
    assert_eq!(changes_size_view(&new, &ch).unwrap(), 2 + 9 + 1);
    let mut tar = Vec::new();
    export_changes_view(&new, &ch, &mut tar).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "etc/",
            "etc/.wh.gone",
            "etc/new",
            "etc/passwd",
            "usr/",
            "usr/.wh.bin",
            "usr/local"
        ]
    );
    // Without an ancestor everything visible is added, whiteouts never show.
    let all = render(&changes_between_views(None, &new).unwrap());
    assert!(all.contains(&"A /etc/new".to_string()), "{all:?}");
    assert!(!all.iter().any(|c| c.contains(".wh.")), "{all:?}");
}

#[test]
fn a_symlinked_directory_in_a_layer_is_not_followed() {
    let s = Scratch::new();
    let outside = s.mkdir("outside");
    write_file(&outside.join("secret"), b"secret data");
    let (l1, l2) = (s.mkdir("l1"), s.mkdir("l2"));
    write_file(&l1.join("d/secret"), b"x");
    let new = view(&[&l2, &l1]);
    let old = view(&[&l1]);
    let ch = changes_between_views(Some(&old), &new).unwrap();
    assert!(ch.is_empty(), "{:?}", render(&ch));
    // The lower layer's directory is swapped for a symlink to the outside
    // after the union resolved it: reads must not follow it.
    let listed = new.read_dir(std::path::Path::new("d")).unwrap();
    assert_eq!(listed.len(), 1);
    fs::remove_dir_all(l1.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, l1.join("d")).unwrap();
    let fake = vec![Change {
        path: "/d/secret".into(),
        raw_path: b"/d/secret".to_vec(),
        kind: aufs_archive::ChangeKind::Add,
    }];
    let mut tar = Vec::new();
    match export_changes_view(&new, &fake, &mut tar) {
        Ok(_) => assert!(
            !tar.windows(11).any(|w| w == b"secret data"),
            "data from outside the branch was exported"
        ),
        // Refused by the export's own resolution, or already by the
        // union's (`ELOOP`: no symlink is followed on the way).
        Err(e) => assert!(
            e.to_string().contains("branch directory")
                || e.to_string().contains("Too many levels of symbolic links"),
            "{e}"
        ),
    }
}

#[test]
fn non_utf8_names_keep_their_bytes_through_views() {
    let s = Scratch::new();
    let (l1, l2) = (s.mkdir("l1"), s.mkdir("l2"));
    let name = std::ffi::OsStr::from_bytes(b"\xff");
    fs::write(l2.as_std_path().join(name), b"v").unwrap();
    let ch = changes_between_views(Some(&view(&[&l1])), &view(&[&l2, &l1])).unwrap();
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].raw_path, b"/\xff");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn view_diffs_equal_diffs_of_materialized_unions(
        l0 in layer(), l1 in layer(), l2 in layer(), l3 in layer()
    ) {
        let st = Stack::new([l0, l1, l2, l3]);
        let (old, new) = (st.old(), st.new_view());
        let (old_copy, new_copy) = (st.s.mkdir("old-copy"), st.s.mkdir("new-copy"));
        materialize(&old, &old_copy);
        materialize(&new, &new_copy);
        let ours = changes_between_views(Some(&old), &new).unwrap();
        let copies = changes_between_views(
            Some(&view(&[&old_copy])),
            &view(&[&new_copy]),
        ).unwrap();
        prop_assert_eq!(render(&ours), render(&copies));
        prop_assert_eq!(
            changes_size_view(&new, &ours).unwrap(),
            changes_size_view(&view(&[&new_copy]), &copies).unwrap()
        );

        // The exported diff, applied as a layer over the old union, shows the new one.
        let mut tar = Vec::new();
        export_changes_view(&new, &ours, &mut tar).unwrap();
        let layer_dir = st.s.path("applied");
        apply_layer(&tar[..], &layer_dir, &base_opts()).unwrap();
        let rebuilt = st.s.mkdir("rebuilt");
        materialize(&view(&[&layer_dir, &old_copy]), &rebuilt);
        prop_assert_eq!(dump_but_dir_mtimes(&rebuilt), dump_but_dir_mtimes(&new_copy));
    }
}
