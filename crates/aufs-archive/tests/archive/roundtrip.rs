//! apply(export(x)) == x, compression detection, diff size, id maps, proptest trees.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};

use aufs_archive::{apply_layer, diff_size, export_diff, ApplyOptions, IdMap, IdMappings};
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;

use crate::util::*;

fn set_mtime(p: &std::path::Path, secs: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with one of everything a layer can hold.
pub(crate) fn rich_tree(root: &Utf8Path, privileged: bool) {
    let r = root.as_std_path();
    write_file(&root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n");
    write_file(&root.join("empty"), b"");
    write_file(&root.join("big"), &vec![7u8; 300_000]);
    write_file(&root.join(".wh.gone"), b"");
    write_file(&root.join("opq/.wh..wh..opq"), b"");
    write_file(&root.join("opq/new"), b"n");
    write_file(&root.join(".wh..wh.plnk/123.456"), b"pseudo-link");
    write_file(&root.join(".wh..wh.aufs"), b"");
    let long = "d".repeat(120) + "/" + &"f".repeat(150);
    write_file(&root.join(&long), b"long name");
    symlink("/etc/passwd", r.join("abs-link")).unwrap();
    symlink("./".repeat(60) + "x", r.join("long-link")).unwrap();
    symlink("nowhere", r.join("dangling")).unwrap();
    fs::hard_link(r.join("etc/passwd"), r.join("passwd-hardlink")).unwrap();
    let odd = r.join(OsStr::from_bytes(b"odd-\xff\xfe name"));
    fs::write(&odd, b"not utf-8").unwrap();
    fs::set_permissions(r.join("big"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(r.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
    rustix::fs::setxattr(
        r.join("big"),
        "user.note",
        b"hi\0there",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    if privileged {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        rustix::fs::setxattr(
            r.join("etc/passwd"),
            "security.capability",
            &[
                1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(
            r.join("opq"),
            "trusted.note",
            b"t",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            r.join("empty"),
            Some(rustix::fs::Uid::from_raw(1234)),
            Some(rustix::fs::Gid::from_raw(5678)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            r.join("dangling"),
            Some(rustix::fs::Uid::from_raw(7)),
            Some(rustix::fs::Gid::from_raw(8)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
    // Every mtime fixed (whole seconds: tar headers carry seconds), dirs last.
    let mut all = Vec::new();
    collect(r, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_500_000_000 + i as i64);
    }
}

fn collect(p: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        let is_dir = fs::symlink_metadata(&e).unwrap().is_dir();
        if is_dir {
            collect(&e, out);
        }
        out.push(e);
    }
}

/// The dump of a tree as an export carries it: top-level aufs metadata left out.
pub(crate) fn exported_view(root: &Utf8Path) -> String {
    dump(root)
        .lines()
        .filter(|l| !l.starts_with(".wh..wh.plnk") && !l.starts_with(".wh..wh.aufs"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn no_sync() -> ApplyOptions {
    ApplyOptions {
        sync: false,
        ..base_opts()
    }
}

#[test]
fn export_then_apply_reproduces_the_tree() {
    let s = Scratch::new();
    let src = s.mkdir("src");
    rich_tree(&src, is_root());
    let mut tar = Vec::new();
    export_diff(&src, &mut tar).unwrap();
    let dst = s.mkdir("layers/dst");
    let report = apply_layer(
        &tar[..],
        &dst,
        &ApplyOptions {
            sync: true,
            ..base_opts()
        },
    )
    .unwrap();
    assert_eq!(exported_view(&dst), exported_view(&src));
    assert_eq!(report.size, diff_size(&dst).unwrap());
    assert_eq!(report.tar_bytes, tar.len() as u64);
    assert_eq!(report.diff_id.unwrap(), format!("sha256:{}", sha(&tar)));
    // No staging leftovers beside the diff dir.
    let names: Vec<_> = fs::read_dir(s.path("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsStr::new("dst").to_owned()]);
}

#[test]
fn compressed_inputs_are_detected() {
    let s = Scratch::new();
    let src = s.mkdir("src");
    rich_tree(&src, false);
    let mut tar = Vec::new();
    export_diff(&src, &mut tar).unwrap();
    let gz = gzip(&tar);
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (name, data) in [("gz", gz), ("zst", zst)] {
        let dst = s.mkdir(name);
        let r = apply_layer(&data[..], &dst, &no_sync()).unwrap();
        assert_eq!(exported_view(&dst), exported_view(&src), "{name}");
        assert_eq!(
            r.diff_id.unwrap(),
            format!("sha256:{}", sha(&tar)),
            "{name}: diff id is of the uncompressed tar"
        );
    }
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2];
    let err = apply_layer(&xz[..], &s.mkdir("xz"), &no_sync()).unwrap_err();
    assert!(err.to_string().contains("xz"), "{err}");
}

#[test]
fn diff_size_counts_hardlinks_once_and_ignores_dirs() {
    let s = Scratch::new();
    let d = s.mkdir("d");
    write_file(&d.join("a"), &[1u8; 1024]);
    write_file(&d.join("sub/b"), &[1u8; 10]);
    fs::hard_link(d.join("a"), d.join("a2")).unwrap();
    symlink("abc", d.join("l")).unwrap();
    assert_eq!(diff_size(&d).unwrap(), 1024 + 10 + 3);
}

#[test]
fn apply_merges_into_existing_content() {
    let s = Scratch::new();
    let dst = s.mkdir("dst");
    write_file(&dst.join("keep"), b"old");
    write_file(&dst.join("replace"), b"old");
    write_file(&dst.join("dir/inner"), b"old");
    let tar = RawTar::new()
        .file("replace", b"new")
        .file("dir/added", b"x")
        .end();
    apply_layer(&tar[..], &dst, &no_sync()).unwrap();
    assert_eq!(fs::read(dst.join("keep")).unwrap(), b"old");
    assert_eq!(fs::read(dst.join("replace")).unwrap(), b"new");
    assert_eq!(fs::read(dst.join("dir/inner")).unwrap(), b"old");
    assert_eq!(fs::read(dst.join("dir/added")).unwrap(), b"x");
}

/// A later entry replaces an earlier one of any kind at the same path
/// (created first, the name found taken, then cleared), and a directory
/// entry merges into an existing directory.
#[test]
fn later_entries_replace_earlier_ones_of_any_kind() {
    let s = Scratch::new();
    let dst = s.mkdir("dst");
    let tar = RawTar::new()
        .file("f2d", b"file")
        .dir("f2d/")
        .file("f2d/in", b"inner")
        .dir("d2f/")
        .file("d2f/gone", b"x")
        .file("d2f", b"now a file")
        .link(b'2', "l2f", "f2d")
        .file("l2f", b"not followed")
        .file("f2l", b"file")
        .link(b'2', "f2l", "d2f")
        .dir("m/")
        .file("m/a", b"a")
        .dir("m/")
        .file("m/b", b"b")
        .file("h2f", b"target")
        .link(b'1', "h", "h2f")
        .file("h", b"own content")
        .file("dup", b"one")
        .file("dup", b"two")
        .end();
    let report = apply_layer(&tar[..], &dst, &no_sync()).unwrap();
    assert_eq!(fs::read(dst.join("f2d/in")).unwrap(), b"inner");
    assert_eq!(fs::read(dst.join("d2f")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(dst.join("l2f")).unwrap().is_file());
    assert_eq!(fs::read(dst.join("l2f")).unwrap(), b"not followed");
    assert!(dst.join("f2d/in").is_file(), "symlink target untouched");
    assert_eq!(
        fs::read_link(dst.join("f2l")).unwrap().to_str(),
        Some("d2f")
    );
    assert_eq!(fs::read(dst.join("m/a")).unwrap(), b"a");
    assert_eq!(fs::read(dst.join("m/b")).unwrap(), b"b");
    assert_eq!(fs::read(dst.join("h")).unwrap(), b"own content");
    assert_eq!(
        fs::read(dst.join("h2f")).unwrap(),
        b"target",
        "hardlink target kept"
    );
    assert_eq!(fs::read(dst.join("dup")).unwrap(), b"two");
    assert_eq!(report.size, diff_size(&dst).unwrap());
}

#[test]
fn overlay_whiteouts_become_aufs_names() {
    if skip_unless_root("overlay_whiteouts_become_aufs_names") {
        return;
    }
    let s = Scratch::new();
    let dst = s.mkdir("dst");
    let mut t = RawTar::new();
    t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")]);
    t.dir("o/");
    let mut dev = RawTar::header(b'3', b"o/gone", 0);
    dev.set_device_major(0).unwrap();
    dev.set_device_minor(0).unwrap();
    dev.set_cksum();
    t.raw(&dev, &[]);
    let tar = t.end();
    apply_layer(&tar[..], &dst, &no_sync()).unwrap();
    assert!(dst.join("o/.wh..wh..opq").is_file());
    assert!(dst.join("o/.wh.gone").is_file());
    assert!(!dst.join("o/gone").exists());
    let mut v = [0u8; 8];
    assert!(
        rustix::fs::getxattr(dst.join("o").as_str(), "trusted.overlay.opaque", &mut v[..]).is_err()
    );
}

#[test]
fn aufs_pseudo_links_are_materialized() {
    let s = Scratch::new();
    let dst = s.mkdir("dst");
    let tar = RawTar::new()
        .dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/99.1", b"shared content")
        .link(b'1', "bin/tool", ".wh..wh.plnk/99.1")
        .link(b'1', "bad", ".wh..wh.plnk/nope")
        .end();
    let err = apply_layer(&tar[..], &dst, &no_sync()).unwrap_err();
    assert!(err.to_string().contains("invalid aufs hardlink"), "{err}");
    assert_eq!(
        fs::read_dir(&dst).unwrap().count(),
        0,
        "failed apply left the layer untouched"
    );
    let tar = RawTar::new()
        .file(".wh..wh.plnk/99.1", b"shared content")
        .link(b'1', "bin/tool", ".wh..wh.plnk/99.1")
        .end();
    apply_layer(&tar[..], &dst, &no_sync()).unwrap();
    assert_eq!(fs::read(dst.join("bin/tool")).unwrap(), b"shared content");
    assert!(!dst.join(".wh..wh.plnk").exists());
}

/// Go's archive/tar (Docker's reader) takes an all-NUL or all-space uid,
/// gid or mtime as 0; so do we.
#[test]
fn empty_numeric_fields_read_as_zero_as_in_go() {
    let s = Scratch::new();
    let dst = s.mkdir("dst");
    let mut t = RawTar::new();
    for (name, fill) in [("nuls", 0u8), ("spaces", b' ')] {
        let mut h = RawTar::header(b'0', name.as_bytes(), 1);
        h.set_uid(1234);
        h.set_gid(1234);
        let old = h.as_old_mut();
        old.uid = [fill; 8];
        old.gid = [fill; 8];
        old.mtime = [fill; 12];
        h.set_cksum();
        t.raw(&h, b"x");
    }
    let tar = t.end();
    apply_layer(&tar[..], &dst, &no_sync()).unwrap();
    for name in ["nuls", "spaces"] {
        let md = fs::symlink_metadata(dst.join(name)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(md.mtime(), 0, "{name}");
        if is_root() {
            assert_eq!((md.uid(), md.gid()), (0, 0), "{name}");
        }
    }
}

#[test]
fn id_maps_shift_owners() {
    if skip_unless_root("id_maps_shift_owners") {
        return;
    }
    let s = Scratch::new();
    let dst = s.mkdir("dst");
    let tar = RawTar::new().file("f", b"x").end();
    let map = vec![IdMap {
        container_id: 0,
        host_id: 100_000,
        size: 65536,
    }];
    let opts = ApplyOptions {
        id_maps: IdMappings {
            uids: map.clone(),
            gids: map,
        },
        ..no_sync()
    };
    apply_layer(&tar[..], &dst, &opts).unwrap();
    let md = fs::metadata(dst.join("f")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&md),
            std::os::unix::fs::MetadataExt::gid(&md)
        ),
        (100_000, 100_000)
    );
    let narrow = vec![IdMap {
        container_id: 1,
        host_id: 100_000,
        size: 1,
    }];
    let err = apply_layer(
        &tar[..],
        &s.mkdir("dst2"),
        &ApplyOptions {
            id_maps: IdMappings {
                uids: narrow,
                gids: Vec::new(),
            },
            ..no_sync()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("uid 0 is not mapped"), "{err}");
}

// ---- property: random trees survive export + apply ----

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Dir(Vec<(Vec<u8>, Node)>),
    Symlink(Vec<u8>),
    Whiteout,
    Opaque,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|s| s.into_bytes()),
        proptest::collection::vec(
            prop_oneof![
                Just(b'\xff'),
                Just(b'\x01'),
                Just(b' '),
                Just(b'a'),
                Just(b'\\')
            ],
            1..6
        ),
        "[a-z]{90,130}".prop_map(|s| s.into_bytes()),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..2000),
            prop_oneof![Just(0o644u32), Just(0o600), Just(0o755), Just(0o2755)]
        )
            .prop_map(|(d, m)| Node::File(d, m)),
        "(/|\\./)?[a-z.]{1,10}(/[a-z.]{1,10}){0,3}"
            .prop_filter("no ..", |t| !t.split('/').any(|c| c == ".."))
            .prop_map(|t| Node::Symlink(t.into_bytes())),
        Just(Node::Whiteout),
        Just(Node::Opaque),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        proptest::collection::vec((name(), inner), 0..5).prop_map(Node::Dir)
    })
}

fn materialize(
    dir: &std::path::Path,
    n: &[(Vec<u8>, Node)],
    hardlink_from: &mut Option<std::path::PathBuf>,
) {
    for (nm, node) in n {
        let p = dir.join(OsStr::from_bytes(nm));
        if fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match node {
            Node::File(d, m) => {
                fs::write(&p, d).unwrap();
                fs::set_permissions(&p, fs::Permissions::from_mode(*m)).unwrap();
                match hardlink_from {
                    None => *hardlink_from = Some(p.clone()),
                    Some(first) => {
                        let mut l = p.clone().into_os_string();
                        l.push(".hl");
                        let _ = fs::hard_link(first, l);
                    }
                }
            }
            Node::Dir(kids) => {
                fs::create_dir(&p).unwrap();
                materialize(&p, kids, hardlink_from);
            }
            Node::Symlink(t) => symlink(OsStr::from_bytes(t), &p).unwrap(),
            Node::Whiteout => {
                let mut w = b".wh.".to_vec();
                w.extend_from_slice(nm);
                let _ = fs::write(dir.join(OsStr::from_bytes(&w)), b"");
            }
            Node::Opaque => {
                let _ = fs::write(dir.join(".wh..wh..opq"), b"");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_trees_round_trip(tree in proptest::collection::vec((name(), node()), 0..8)) {
        let s = Scratch::new();
        let src = s.mkdir("src");
        materialize(src.as_std_path(), &tree, &mut None);
        let mut all = Vec::new();
        collect(src.as_std_path(), &mut all);
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for (i, p) in all.iter().enumerate() {
            set_mtime(p, 1_000_000_000 + i as i64 * 7);
        }
        let mut tar = Vec::new();
        export_diff(&src, &mut tar).unwrap();
        let dst: Utf8PathBuf = s.mkdir("dst");
        let report = apply_layer(&tar[..], &dst, &no_sync()).unwrap();
        prop_assert_eq!(dump(&dst), dump(&src));
        prop_assert_eq!(diff_size(&dst).unwrap(), diff_size(&src).unwrap());
        // Counted while applying, it must be what a walk measures.
        prop_assert_eq!(report.size, diff_size(&dst).unwrap());
    }
}

#[test]
fn apply_creates_a_missing_diff_dir() {
    let s = Scratch::new();
    let dst = s.path("new-layer");
    let tar = RawTar::new().file("a", b"x").end();
    let r = apply_layer(&tar[..], &dst, &no_sync()).unwrap();
    assert_eq!(r.size, 1);
    assert_eq!(fs::read(dst.join("a")).unwrap(), b"x");
    assert_eq!(
        fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn changes_between_views_export_as_whiteout_tarballs() {
    use aufs_archive::{changes_between_views, changes_size_view, export_changes_view};
    use aufs_union::UnionView;
    let s = Scratch::new();
    let old = s.mkdir("old");
    write_file(&old.join("keep"), b"k");
    write_file(&old.join("dir/gone"), b"g");
    write_file(&old.join("dir/mod"), b"m");
    let new = s.mkdir("new");
    run(std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{old}/."))
        .arg(new.as_str()));
    fs::remove_file(new.join("dir/gone")).unwrap();
    write_file(&new.join("dir/mod"), b"changed");
    write_file(&new.join("added/file"), b"new!");
    let (old, new) = (
        UnionView::open(None, &[&old]).unwrap(),
        UnionView::open(None, &[&new]).unwrap(),
    );
    let ch = changes_between_views(Some(&old), &new).unwrap();
    let lines: Vec<String> = ch.iter().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "A /added",
            "A /added/file",
            "C /dir",
            "D /dir/gone",
            "C /dir/mod"
        ]
    );
    assert_eq!(changes_size_view(&new, &ch).unwrap(), 4 + 7);
    let mut tar = Vec::new();
    export_changes_view(&new, &ch, &mut tar).unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let e = e.unwrap();
        names.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
    }
    assert_eq!(
        names,
        vec!["added/", "added/file", "dir/", "dir/.wh.gone", "dir/mod"]
    );
}

/// Runs as the child of `devices_are_skipped_without_privilege` (as uid 65534).
#[test]
fn unprivileged_child() {
    let Ok(dir) = std::env::var("AUFS_ARCHIVE_UNPRIV_DIR") else {
        return;
    };
    let dir = Utf8PathBuf::from(dir);
    let mut t = RawTar::new();
    let mut dev = RawTar::header(b'3', b"null", 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_cksum();
    t.raw(&dev, &[]).file("file", b"x");
    let tar = t.end();
    let opts = ApplyOptions {
        chown: false,
        staging_parent: Some(dir.clone()),
        ..no_sync()
    };
    let r = apply_layer(&tar[..], &dir.join("diff"), &opts).unwrap();
    assert_eq!(r.skipped_devices, 1);
    assert!(!dir.join("diff/null").exists());
    assert_eq!(fs::read(dir.join("diff/file")).unwrap(), b"x");
}

#[test]
fn devices_are_skipped_without_privilege() {
    if skip_unless_root("devices_are_skipped_without_privilege") {
        return;
    }
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("devices_are_skipped_without_privilege: skipped: setpriv missing");
        return;
    }
    let s = Scratch::new();
    let dir = s.mkdir("unpriv");
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    rustix::fs::chown(
        dir.as_str(),
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    // A copy of this test binary the unprivileged user can execute wherever the build lives.
    let exe = s.path("test-binary");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(exe.as_str())
        .current_dir("/")
        .args([
            "--exact",
            "roundtrip::unprivileged_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("AUFS_ARCHIVE_UNPRIV_DIR", dir.as_str())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {text}");
    assert!(text.contains("1 passed"), "child did not run: {text}");
    assert!(dir.join("diff/file").exists());
}

#[test]
fn file_inputs_apply_like_streams_mapped_or_read() {
    use aufs_archive::{apply_layer_file, reproduce};
    use std::io::{Seek, SeekFrom, Write as _};
    let s = Scratch::new();
    let src = s.mkdir("src");
    rich_tree(&src, false);
    let mut tar = Vec::new();
    export_diff(&src, &mut tar).unwrap();
    let want_id = format!("sha256:{}", sha(&tar));
    let gz = gzip(&tar);

    // Regular files, plain and compressed, are read (anyone may truncate
    // them); memfds sealed against shrinking are mapped. The tar-split
    // record reproduces the tar byte for byte either way.
    for (name, data, sealed) in [
        ("plain", &tar, false),
        ("gz", &gz, false),
        ("plain-sealed", &tar, true),
        ("gz-sealed", &gz, true),
    ] {
        let input = if sealed {
            let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::ALLOW_SEALING).unwrap();
            let mut f = fs::File::from(fd);
            f.write_all(data).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            rustix::fs::fcntl_add_seals(&f, rustix::fs::SealFlags::SHRINK).unwrap();
            f
        } else {
            let file = s.path(&format!("{name}.layer"));
            fs::write(&file, data).unwrap();
            fs::File::open(&file).unwrap()
        };
        let dst = s.mkdir(&format!("dst-{name}"));
        let meta = s.path(&format!("{name}.tar-split.gz"));
        let opts = ApplyOptions {
            tar_split: Some(meta.clone()),
            ..no_sync()
        };
        let r = apply_layer_file(&input, &dst, &opts).unwrap();
        assert_eq!(exported_view(&dst), exported_view(&src), "{name}");
        assert_eq!(r.diff_id.as_deref(), Some(want_id.as_str()), "{name}");
        assert_eq!(r.tar_bytes, tar.len() as u64, "{name}");
        let mut again = Vec::new();
        reproduce(&meta, &dst, &mut again).unwrap();
        assert!(again == tar, "{name}: reproduced bytes differ");
    }

    // The stream starts at the file's offset, as a read would.
    let file = s.path("offset.layer");
    let mut f = fs::File::create(&file).unwrap();
    f.write_all(b"not part of the layer").unwrap();
    f.write_all(&tar).unwrap();
    drop(f);
    let mut f = fs::File::open(&file).unwrap();
    f.seek(SeekFrom::Start(21)).unwrap();
    let dst = s.mkdir("dst-offset");
    let r = apply_layer_file(&f, &dst, &no_sync()).unwrap();
    assert_eq!(exported_view(&dst), exported_view(&src));
    assert_eq!(r.diff_id.as_deref(), Some(want_id.as_str()));

    // A pipe is read, not mapped.
    let fifo = s.path("layer.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fifo.as_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let writer = {
        let (fifo, tar) = (fifo.clone(), tar.clone());
        std::thread::spawn(move || fs::write(&fifo, &tar).unwrap())
    };
    let dst = s.mkdir("dst-fifo");
    let r = apply_layer_file(&fs::File::open(&fifo).unwrap(), &dst, &no_sync()).unwrap();
    writer.join().unwrap();
    assert_eq!(exported_view(&dst), exported_view(&src));
    assert_eq!(r.diff_id.as_deref(), Some(want_id.as_str()));

    // Truncated and empty files fail as the same bytes read from a stream do.
    for (name, data) in [("truncated", &tar[..tar.len() / 2]), ("empty", &[][..])] {
        let file = s.path(&format!("{name}.layer"));
        fs::write(&file, data).unwrap();
        let from_file = apply_layer_file(
            &fs::File::open(&file).unwrap(),
            &s.mkdir(&format!("f-{name}")),
            &no_sync(),
        );
        let from_stream = apply_layer(data, &s.mkdir(&format!("s-{name}")), &no_sync());
        assert_eq!(
            from_file
                .as_ref()
                .map(|r| r.entries)
                .map_err(|e| e.to_string()),
            from_stream
                .as_ref()
                .map(|r| r.entries)
                .map_err(|e| e.to_string()),
            "{name}"
        );
    }
}
