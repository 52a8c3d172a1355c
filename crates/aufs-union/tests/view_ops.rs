//! Targeted cases of the union view: layout left on disk by each write, and
//! what copy-up keeps.

mod common;

use aufs_union::{EntryKind, NewNode, Owner, UnionError, UnionView, ROOT_INO};
use common::{open_view, utf8};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn p(s: &str) -> &Path {
    Path::new(s)
}

fn names(v: &UnionView, dir: &str) -> Vec<String> {
    v.read_dir(p(dir))
        .unwrap()
        .into_iter()
        .map(|e| e.name.into_string().unwrap())
        .collect()
}

#[test]
fn metadata_and_whiteouts_never_show() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("l0");
    let l1 = tmp.path().join("l1");
    std::fs::create_dir_all(l0.join(".wh..wh.plnk")).unwrap();
    std::fs::create_dir_all(l1.join("d")).unwrap();
    std::fs::write(l0.join(".wh.gone"), "").unwrap();
    std::fs::write(l1.join("gone"), "x").unwrap();
    std::fs::write(l1.join("kept"), "x").unwrap();
    std::fs::write(l1.join("d/f"), "x").unwrap();
    let v = open_view(tmp.path(), false, 2);
    assert_eq!(names(&v, ""), ["d", "kept"]);
    assert!(v.lookup(p(".wh.gone")).unwrap().is_none());
    assert!(v.lookup(p(".wh..wh.plnk")).unwrap().is_none());
    assert!(v.lookup(p("gone")).unwrap().is_none());
    assert_eq!(v.lookup(p("")).unwrap().unwrap().ino, ROOT_INO);
    assert_eq!(v.lookup(p("d/f")).unwrap().unwrap().branch_index, 1);
    assert!(matches!(
        v.read_dir(p("kept")),
        Err(UnionError::NotADirectory { .. })
    ));
    assert!(matches!(
        v.create(p("x"), NewNode::File { mode: 0o644 }, None),
        Err(UnionError::ReadOnly { .. })
    ));
}

#[test]
fn deep_chain_of_128_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 130;
    for i in 0..n {
        let d = tmp.path().join(format!("l{i}")).join("etc");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    // The top layer hides f129 (the bottom one).
    std::fs::write(tmp.path().join("l0/etc/.wh.f129"), "").unwrap();
    let v = open_view(tmp.path(), true, n);
    let listed = names(&v, "etc");
    assert_eq!(listed.len(), n - 1);
    let e = v.lookup(p("etc/f128")).unwrap().unwrap();
    assert_eq!(e.branch_index, 129);
    assert_eq!(std::fs::read_to_string(&e.real_path).unwrap(), "128");
    assert!(v.lookup(p("etc/f129")).unwrap().is_none());
    // The merged dir has the inode of its lowest part, before and after copy-up.
    let ino = v.lookup(p("etc")).unwrap().unwrap().ino;
    let lowest = std::fs::metadata(tmp.path().join("l129/etc"))
        .unwrap()
        .ino();
    assert_eq!(ino, lowest);
    v.create(p("etc/new"), NewNode::File { mode: 0o600 }, None)
        .unwrap();
    assert_eq!(v.lookup(p("etc")).unwrap().unwrap().ino, lowest);
    assert_eq!(v.walk().count(), 1 + n);
}

#[test]
fn copy_up_keeps_attributes_holes_and_inode() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("l0");
    std::fs::create_dir_all(l0.join("dir")).unwrap();
    let f = l0.join("dir/sparse");
    {
        let file = std::fs::File::create(&f).unwrap();
        file.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"head", 0).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"tail", (8 << 20) - 4).unwrap();
    }
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).ok();
    let xattr_ok =
        rustix::fs::setxattr(&f, "user.k", b"v", rustix::fs::XattrFlags::empty()).is_ok();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1000,
            tv_nsec: 5,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 2000,
            tv_nsec: 7,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &f, &times, rustix::fs::AtFlags::empty()).unwrap();
    std::fs::set_permissions(l0.join("dir"), std::fs::Permissions::from_mode(0o711)).unwrap();

    let v = open_view(tmp.path(), true, 1);
    let before = v.lookup(p("dir/sparse")).unwrap().unwrap();
    let up = v.copy_up(p("dir/sparse"), true).unwrap();
    assert_eq!(up.branch_index, 0);
    assert_eq!(up.ino, before.ino, "copy-up keeps the union inode");
    let src = std::fs::metadata(&f).unwrap();
    let md = std::fs::metadata(&up.real_path).unwrap();
    assert_eq!(md.mode(), src.mode());
    assert_eq!((md.uid(), md.gid()), (src.uid(), src.gid()));
    assert_eq!((md.mtime(), md.mtime_nsec()), (2000, 7));
    assert_eq!(md.len(), 8 << 20);
    assert!(md.blocks() < 1024, "holes kept: {} blocks", md.blocks());
    assert_eq!(
        std::fs::read(&up.real_path).unwrap(),
        std::fs::read(&f).unwrap()
    );
    if xattr_ok {
        let mut buf = [0u8; 8];
        let n = rustix::fs::getxattr(&up.real_path, "user.k", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"v");
    }
    let dir_md = std::fs::metadata(tmp.path().join("rw/dir")).unwrap();
    assert_eq!(
        dir_md.mode() & 0o7777,
        0o711,
        "parent dir copied up with its mode"
    );
    // The lower file is untouched.
    assert_eq!(std::fs::metadata(&f).unwrap().ino(), src.ino());
}

#[test]
fn rmdir_then_mkdir_leaves_whiteout_then_opaque_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("l0");
    std::fs::create_dir_all(l0.join("d")).unwrap();
    std::fs::write(l0.join("d/f"), "x").unwrap();
    let v = open_view(tmp.path(), true, 1);
    assert!(matches!(v.rmdir(p("d")), Err(UnionError::NotEmpty { .. })));
    v.unlink(p("d/f")).unwrap();
    assert!(tmp.path().join("rw/d/.wh.f").exists());
    assert_eq!(names(&v, "d"), Vec::<String>::new());
    v.rmdir(p("d")).unwrap();
    assert!(tmp.path().join("rw/.wh.d").exists());
    assert!(!tmp.path().join("rw/d").exists());
    assert!(v.lookup(p("d")).unwrap().is_none());
    let e = v
        .create(
            p("d"),
            NewNode::Dir { mode: 0o750 },
            Some(Owner { uid: 42, gid: 43 }),
        )
        .unwrap();
    assert!(tmp.path().join("rw/d/.wh..wh..opq").exists());
    assert!(!tmp.path().join("rw/.wh.d").exists());
    assert_eq!(e.metadata.mode() & 0o7777, 0o750);
    if rustix::process::geteuid().is_root() {
        assert_eq!((e.metadata.uid(), e.metadata.gid()), (42, 43));
    } else {
        eprintln!("skipped: owner 42:43 of the new dir needs root (the union keeps its own ids)");
        assert_eq!(e.metadata.uid(), rustix::process::geteuid().as_raw());
    }
    assert_eq!(names(&v, "d"), Vec::<String>::new());
}

#[test]
fn rename_and_link_of_lower_files() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("l0");
    std::fs::create_dir_all(l0.join("dir/sub")).unwrap();
    std::fs::write(l0.join("a"), "A").unwrap();
    std::fs::write(l0.join("dir/sub/x"), "X").unwrap();
    let v = open_view(tmp.path(), true, 1);
    v.rename(p("a"), p("b"), false).unwrap();
    assert!(tmp.path().join("rw/.wh.a").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("rw/b")).unwrap(),
        "A"
    );
    assert!(matches!(
        v.rename(p("dir"), p("dir2"), false),
        Err(UnionError::CrossBranchRename { .. })
    ));
    v.link(p("b"), p("c")).unwrap();
    let (b, c) = (
        v.lookup(p("b")).unwrap().unwrap(),
        v.lookup(p("c")).unwrap().unwrap(),
    );
    assert_eq!(b.ino, c.ino);
    assert_eq!(b.metadata.nlink(), 2);
    assert!(matches!(
        v.rename(p("b"), p("dir"), false),
        Err(UnionError::IsADirectory { .. })
    ));
    assert!(matches!(
        v.rename(p("b"), p("c"), true),
        Err(UnionError::Exists { .. })
    ));
    assert!(matches!(
        v.create(p(".wh.x"), NewNode::File { mode: 0o644 }, None),
        Err(UnionError::Reserved { .. })
    ));
    let sym = v
        .create(p("s"), NewNode::Symlink { target: p("b") }, None)
        .unwrap();
    assert_eq!(sym.kind(), EntryKind::Symlink);
    let _ = utf8(tmp.path());
}

/// aufs pseudo-links: copy-up of one name of a lower hard-linked file makes
/// every other visible name a hard link to the copy in the rw branch, with
/// the lower inode number kept; hidden names stay hidden.
#[test]
fn copy_up_links_the_other_visible_names_of_a_lower_file() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("l0");
    std::fs::create_dir_all(l0.join("d")).unwrap();
    std::fs::write(l0.join("a"), "old").unwrap();
    std::fs::hard_link(l0.join("a"), l0.join("d/b")).unwrap();
    std::fs::hard_link(l0.join("a"), l0.join("hidden")).unwrap();
    let v = open_view(tmp.path(), true, 1);
    let lower_ino = v.lookup(p("a")).unwrap().unwrap().ino;
    v.unlink(p("hidden")).unwrap();
    let e = v.copy_up(p("a"), true).unwrap();
    std::fs::write(&e.real_path, "new").unwrap();
    let rw = tmp.path().join("rw");
    let (a, b) = (
        std::fs::metadata(rw.join("a")).unwrap(),
        std::fs::metadata(rw.join("d/b")).expect("d/b linked into rw"),
    );
    assert_eq!(a.ino(), b.ino(), "one file in the rw branch");
    assert_eq!(std::fs::read_to_string(rw.join("d/b")).unwrap(), "new");
    assert!(!rw.join("hidden").exists(), "a hidden name came back");
    assert!(v.lookup(p("hidden")).unwrap().is_none());
    for n in ["a", "d/b"] {
        let e = v.lookup(p(n)).unwrap().unwrap();
        assert_eq!(e.branch_index, 0, "{n} from rw");
        assert_eq!(e.ino, lower_ino, "{n} keeps the lower number");
    }
    // The lower file is untouched.
    assert_eq!(std::fs::read_to_string(l0.join("d/b")).unwrap(), "old");
}

/// A copied-up file keeps its lower number until renumbered; then it shows
/// its own rw number, and the lower file is untouched.
#[test]
fn renumber_gives_a_copy_its_own_number() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = tmp.path().join("l0");
    std::fs::create_dir_all(&l0).unwrap();
    std::fs::write(l0.join("f"), "x").unwrap();
    let v = open_view(tmp.path(), true, 1);
    let lower = v.lookup(p("f")).unwrap().unwrap().ino;
    let up = v.copy_up(p("f"), true).unwrap();
    assert_eq!(up.ino, lower);
    let again = v.renumber(p("f")).unwrap();
    let rw_ino = std::fs::metadata(tmp.path().join("rw/f")).unwrap().ino();
    assert_eq!(again.ino, rw_ino);
    assert_ne!(again.ino, lower);
    assert_eq!(v.lookup(p("f")).unwrap().unwrap().ino, rw_ino);
}

#[test]
fn an_unnamed_file_is_made_in_the_rw_branch_and_named_by_link_unnamed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("l0/d")).unwrap();
    std::fs::write(tmp.path().join("l0/d/taken"), "x").unwrap();
    std::fs::write(tmp.path().join("l0/d/gone"), "lower").unwrap();
    let v = open_view(tmp.path(), true, 1);
    v.unlink(p("d/gone")).unwrap();
    assert!(tmp.path().join("rw/d/.wh.gone").exists());

    let owner = Owner {
        uid: 1234,
        gid: 5678,
    };
    let (file, e) = v.create_unnamed(p("d"), 0o4751, 0, Some(owner)).unwrap();
    // Made in the copied-up directory, shown nowhere, owned and moded as
    // asked (set-id bits survive the chown).
    assert_eq!(e.real_path, tmp.path().join("rw/d"));
    assert_eq!(e.branch_index, 0);
    assert_eq!(e.metadata.nlink(), 0);
    // Without root the file keeps the process's own ids (no give-away).
    let root = rustix::process::geteuid().is_root();
    let expected = if root {
        (1234, 5678)
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    };
    assert_eq!((e.metadata.uid(), e.metadata.gid()), expected);
    assert_eq!(e.metadata.mode() & 0o7777, 0o4751);
    assert_eq!(names(&v, "d"), ["taken"]);
    std::io::Write::write_all(&mut &file, b"unnamed").unwrap();

    // A name that shows already is refused; a whited-out one is taken.
    assert!(matches!(
        v.link_unnamed(&file, p("d/taken")),
        Err(UnionError::Exists { .. })
    ));
    assert!(matches!(
        v.link_unnamed(&file, p("d/.wh.x")),
        Err(UnionError::Reserved { .. })
    ));
    let named = v.link_unnamed(&file, p("d/gone")).unwrap();
    assert_eq!(named.ino, e.ino);
    assert_eq!(named.branch_index, 0);
    assert!(!tmp.path().join("rw/d/.wh.gone").exists());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("rw/d/gone")).unwrap(),
        "unnamed"
    );
    assert_eq!(names(&v, "d"), ["gone", "taken"]);
    assert_eq!(v.lookup(p("d/gone")).unwrap().unwrap().ino, e.ino);
}

#[test]
fn an_unnamed_file_needs_a_writable_union_and_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("l0/d")).unwrap();
    std::fs::write(tmp.path().join("l0/f"), "x").unwrap();
    let ro = open_view(tmp.path(), false, 1);
    assert!(matches!(
        ro.create_unnamed(p("d"), 0o600, 0, None),
        Err(UnionError::ReadOnly { .. })
    ));
    let v = open_view(tmp.path(), true, 1);
    assert!(matches!(
        v.create_unnamed(p("f"), 0o600, 0, None),
        Err(UnionError::NotADirectory { .. })
    ));
    assert!(matches!(
        v.create_unnamed(p("missing"), 0o600, 0, None),
        Err(UnionError::NotFound { .. })
    ));
    // Nothing was copied up for the refused requests.
    assert_eq!(std::fs::read_dir(tmp.path().join("rw")).unwrap().count(), 0);
}
