//! Exact bytes: tarballs made by GNU tar (every format, every sparse format)
//! and Python's tarfile are applied with tar-split recording and reproduced
//! byte for byte; a changed layer is detected.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
use std::process::Command;

use aufs_archive::{
    apply_layer, diff_size, export_diff, reproduce, verify, ApplyOptions, TarSplitStore,
};
use camino::{Utf8Path, Utf8PathBuf};

use crate::util::*;

/// A tree GNU tar can store in every format (names under 100 bytes, links short).
fn plain_tree(root: &Utf8Path) {
    write_file(&root.join("etc/hosts"), b"127.0.0.1 localhost\n");
    write_file(
        &root.join("bin/tool"),
        &(0..70_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    );
    write_file(&root.join("empty"), b"");
    write_file(&root.join(".wh.removed"), b"");
    write_file(&root.join("opq/.wh..wh..opq"), b"");
    fs::create_dir_all(root.join("emptydir")).unwrap();
    symlink("../etc/hosts", root.join("bin/hosts-link")).unwrap();
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool-hardlink")).unwrap();
}

/// Adds what only gnu/pax formats hold: long names, long link targets, a sparse file.
fn rich_tree(root: &Utf8Path) {
    plain_tree(root);
    let long = format!("{}/{}", "x".repeat(110), "y".repeat(120));
    write_file(&root.join(&long), b"long");
    symlink("z".repeat(150), root.join("long-link")).unwrap();
    make_sparse(&root.join("sparse.img"));
}

fn make_sparse(p: &Utf8Path) {
    let f = fs::File::create(p).unwrap();
    f.set_len(8 << 20).unwrap();
    f.write_all_at(&[b'A'; 5000], 1 << 20).unwrap();
    f.write_all_at(&[b'B'; 100], (5 << 20) + 3).unwrap();
    f.write_all_at(b"end", (8 << 20) - 3).unwrap();
}

fn gnu_tar(src: &Utf8Path, out: &Utf8Path, args: &[&str]) {
    let mut c = Command::new("tar");
    c.arg("-C")
        .arg(src.as_str())
        .arg("-cf")
        .arg(out.as_str())
        .args(args)
        .arg(".");
    run(&mut c);
}

fn opts(meta: &Utf8Path) -> ApplyOptions {
    ApplyOptions {
        tar_split: Some(meta.to_owned()),
        sync: false,
        ..base_opts()
    }
}

/// Applies `tar`, reproduces it, and checks bytes, content, and change detection.
fn check_exact(s: &Scratch, label: &str, src: &Utf8Path, tar: &[u8]) {
    let diff = s.mkdir(&format!("diff-{label}"));
    let meta = s.path(&format!("meta-{label}"));
    let report =
        apply_layer(tar, &diff, &opts(&meta)).unwrap_or_else(|e| panic!("{label}: apply: {e}"));
    assert_eq!(
        report.size,
        aufs_archive::diff_size(&diff).unwrap(),
        "{label}: counted diff size"
    );
    let mut again = Vec::new();
    let n =
        reproduce(&meta, &diff, &mut again).unwrap_or_else(|e| panic!("{label}: reproduce: {e}"));
    assert_eq!(n as usize, again.len());
    assert!(
        again == tar,
        "{label}: reproduced bytes differ (len {} vs {})",
        again.len(),
        tar.len()
    );
    assert_eq!(
        content_dump(&diff),
        content_dump(src),
        "{label}: applied tree differs from the source"
    );
    verify(&meta, &diff).unwrap();
}

/// File contents and kinds only (tar formats differ in what metadata they keep).
fn content_dump(root: &Utf8Path) -> String {
    dump(root)
        .lines()
        .map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next().unwrap();
            let kind = parts.next().unwrap();
            let rest: Vec<&str> = parts
                .filter(|p| p.starts_with("size=") || p.starts_with("sha=") || p.starts_with("->"))
                .collect();
            format!("{name} {kind} {}", rest.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn gnu_tar_formats_reproduce_byte_for_byte() {
    let s = Scratch::new();
    let rich = s.mkdir("rich");
    rich_tree(&rich);
    let plain = s.mkdir("plain");
    plain_tree(&plain);
    let cases: &[(&str, &Utf8PathBuf, &[&str])] = &[
        ("gnu", &rich, &["--format=gnu"]),
        ("oldgnu", &rich, &["--format=oldgnu"]),
        ("pax", &rich, &["--format=pax", "--xattrs"]),
        ("ustar", &plain, &["--format=ustar"]),
        ("v7", &plain, &["--format=v7"]),
        ("gnu-sparse", &rich, &["--format=gnu", "--sparse"]),
        (
            "pax-sparse-0.0",
            &rich,
            &["--format=pax", "--sparse", "--sparse-version=0.0"],
        ),
        (
            "pax-sparse-0.1",
            &rich,
            &["--format=pax", "--sparse", "--sparse-version=0.1"],
        ),
        (
            "pax-sparse-1.0",
            &rich,
            &["--format=pax", "--sparse", "--sparse-version=1.0"],
        ),
    ];
    for (label, src, args) in cases {
        let out = s.path(&format!("{label}.tar"));
        gnu_tar(src, &out, args);
        let tar = fs::read(&out).unwrap();
        check_exact(&s, label, src, &tar);
    }
}

#[test]
fn sparse_files_keep_their_holes() {
    let s = Scratch::new();
    let src = s.mkdir("src");
    make_sparse(&src.join("sparse.img"));
    for v in ["0.0", "0.1", "1.0"] {
        let out = s.path(&format!("{v}.tar"));
        gnu_tar(
            &src,
            &out,
            &["--format=pax", "--sparse", &format!("--sparse-version={v}")],
        );
        let diff = s.mkdir(&format!("d{v}"));
        apply_layer(
            &fs::read(&out).unwrap()[..],
            &diff,
            &ApplyOptions {
                sync: false,
                ..base_opts()
            },
        )
        .unwrap();
        let md = fs::metadata(diff.join("sparse.img")).unwrap();
        assert_eq!(md.len(), 8 << 20);
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&md) * 512 < 1 << 20,
            "{v}: holes were filled"
        );
        assert_eq!(
            fs::read(diff.join("sparse.img")).unwrap(),
            fs::read(src.join("sparse.img")).unwrap()
        );
    }
}

#[test]
fn python_tarfile_formats_reproduce_byte_for_byte() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python_tarfile_formats_reproduce_byte_for_byte: skipped: python3 missing");
        return;
    }
    let s = Scratch::new();
    let src = s.mkdir("src");
    plain_tree(&src);
    write_file(
        &src.join(format!("{}/{}", "p".repeat(120), "q".repeat(40))),
        b"long name",
    );
    for fmt in ["GNU_FORMAT", "PAX_FORMAT", "USTAR_FORMAT"] {
        let out = s.path(&format!("{fmt}.tar"));
        let long_ok = fmt != "USTAR_FORMAT";
        let script = format!(
            "import tarfile,os\nt=tarfile.open({out:?},'w',format=tarfile.{fmt})\nfor n in sorted(os.listdir({src:?})):\n  if {long_ok} or not n.startswith('ppp'):\n    t.add(os.path.join({src:?},n),arcname=n)\nt.close()\n",
            out = out.as_str(),
            src = src.as_str(),
            long_ok = if long_ok { "True" } else { "False" }
        );
        run(Command::new("python3").arg("-c").arg(script));
        let tar = fs::read(&out).unwrap();
        let diff = s.mkdir(&format!("diff-{fmt}"));
        let meta = s.path(&format!("meta-{fmt}"));
        apply_layer(&tar[..], &diff, &opts(&meta)).unwrap();
        let mut again = Vec::new();
        reproduce(&meta, &diff, &mut again).unwrap();
        assert!(again == tar, "{fmt}: reproduced bytes differ");
    }
}

#[test]
fn own_exports_and_compressed_inputs_reproduce() {
    let s = Scratch::new();
    let src = s.mkdir("src");
    rich_tree(&src);
    let mut tar = Vec::new();
    export_diff(&src, &mut tar).unwrap();
    check_exact(&s, "export", &src, &tar);
    // Trailing garbage after the end blocks is part of the original bytes too.
    let mut padded = tar.clone();
    padded.extend_from_slice(b"trailing bytes");
    check_exact(&s, "trailing", &src, &padded);
    // Compressed input: the uncompressed tar is what is reproduced.
    let zst = zstd::encode_all(&tar[..], 1).unwrap();
    let diff = s.mkdir("diff-zst");
    let store = TarSplitStore::new(s.mkdir("tar-split"));
    apply_layer(&zst[..], &diff, &opts(&store.path_for("zst"))).unwrap();
    let mut again = Vec::new();
    store.reproduce("zst", &diff, &mut again).unwrap();
    assert!(again == tar);
    assert_eq!(diff_size(&diff).unwrap(), diff_size(&src).unwrap());
}

#[test]
fn changed_layers_are_detected() {
    let s = Scratch::new();
    let src = s.mkdir("src");
    plain_tree(&src);
    let mut tar = Vec::new();
    export_diff(&src, &mut tar).unwrap();
    let store = TarSplitStore::new(s.mkdir("ts"));
    type Mutation = fn(&Utf8Path);
    let mutations: &[(&str, Mutation)] = &[
        ("content", |d| {
            fs::write(d.join("etc/hosts"), b"127.0.0.2 localhost\n").unwrap()
        }),
        ("appended", |d| {
            fs::OpenOptions::new()
                .append(true)
                .open(d.join("bin/tool"))
                .unwrap()
                .write_all(b"!")
                .unwrap()
        }),
        ("removed", |d| fs::remove_file(d.join("etc/hosts")).unwrap()),
        ("replaced by symlink", |d| {
            fs::remove_file(d.join("etc/hosts")).unwrap();
            symlink("/etc/hostname", d.join("etc/hosts")).unwrap();
        }),
        // Changes that leave every recorded file's content as it was.
        ("file added", |d| write_file(&d.join("etc/new"), b"new")),
        ("file added at the top", |d| write_file(&d.join("new"), b"")),
        ("symlink removed", |d| {
            fs::remove_file(d.join("bin/hosts-link")).unwrap()
        }),
        ("empty dir removed", |d| {
            fs::remove_dir(d.join("emptydir")).unwrap()
        }),
        ("whiteout removed", |d| {
            fs::remove_file(d.join(".wh.removed")).unwrap()
        }),
        ("mode changed", |d| {
            fs::set_permissions(d.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap()
        }),
        ("owner changed", |d| {
            // Without root an owner can only go to a group of one's own:
            // change the group then.
            let (uid, gid) = if is_root() {
                (Some(1), Some(1))
            } else {
                (None, Some(rustix::process::getegid().as_raw()))
            };
            std::os::unix::fs::lchown(d.join("bin/hosts-link"), uid, gid).unwrap()
        }),
        ("mtime changed", |d| {
            fs::File::options()
                .write(true)
                .open(d.join("empty"))
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH)
                .unwrap()
        }),
        ("renamed", |d| {
            fs::rename(d.join("emptydir"), d.join("emptydir2")).unwrap()
        }),
        ("xattr added", |d| {
            rustix::fs::setxattr(
                d.join("etc/hosts").as_str(),
                "user.note",
                b"x",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap()
        }),
    ];
    for (label, mutate) in mutations {
        let diff = s.mkdir(&format!("diff-{label}"));
        apply_layer(&tar[..], &diff, &opts(&store.path_for(label))).unwrap();
        store.verify(label, &diff).unwrap();
        mutate(&diff);
        let err = store.verify(label, &diff).unwrap_err();
        assert!(err.is_not_reproducible(), "{label}: {err}");
    }
    // Metadata from before seals were written is checked by content only.
    let diff = s.mkdir("diff-unsealed");
    apply_layer(&tar[..], &diff, &opts(&store.path_for("unsealed"))).unwrap();
    fs::remove_file(format!("{}.seal", store.path_for("unsealed"))).unwrap();
    write_file(&diff.join("etc/new"), b"new");
    store.verify("unsealed", &diff).unwrap();
    fs::write(diff.join("etc/hosts"), b"changed").unwrap();
    assert!(store
        .verify("unsealed", &diff)
        .unwrap_err()
        .is_not_reproducible());
    // Removing a layer's metadata removes its seal.
    store.remove("content").unwrap();
    assert!(!Utf8PathBuf::from(format!("{}.seal", store.path_for("content"))).exists());
    apply_layer(
        &tar[..],
        &s.path("diff-content"),
        &opts(&store.path_for("content")),
    )
    .unwrap();
    // Corrupt metadata is reported as such.
    fs::write(store.path_for("content"), b"garbage").unwrap();
    let err = store
        .verify("content", &s.path("diff-content"))
        .unwrap_err();
    assert!(err.is_not_reproducible(), "{err}");
}

#[test]
fn converted_and_skipped_entries_reproduce() {
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.file(".wh..wh.aufs", b"aufs base")
        .dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/7.7", b"pseudo-linked content")
        .link(b'1', "bin/a", ".wh..wh.plnk/7.7")
        .link(b'2', "sym", "bin/a");
    // A symlink entry that (oddly) carries content: kept inline.
    let mut h = RawTar::header(b'2', b"sym2", 5);
    h.set_link_name_literal(b"bin/a").unwrap();
    h.set_cksum();
    t.raw(&h, b"12345");
    t.pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
        .dir("opq/");
    if is_root() {
        let mut dev = RawTar::header(b'3', b"opq/wh", 0);
        dev.set_device_major(0).unwrap();
        dev.set_device_minor(0).unwrap();
        dev.set_cksum();
        t.raw(&dev, &[]);
    }
    let tar = t.end();
    let diff = s.mkdir("diff");
    let meta = s.path("meta");
    apply_layer(&tar[..], &diff, &opts(&meta)).unwrap();
    assert_eq!(
        fs::read(diff.join("bin/a")).unwrap(),
        b"pseudo-linked content"
    );
    assert!(!diff.join(".wh..wh.aufs").exists());
    let mut again = Vec::new();
    reproduce(&meta, &diff, &mut again).unwrap();
    assert!(again == tar, "reproduced bytes differ");
}

#[test]
fn reused_paths_reproduce() {
    let s = Scratch::new();
    let tar = RawTar::new()
        .file("a", b"first version")
        .file("b", b"b")
        .file("a", b"second version, longer")
        .link(b'2', "b", "a")
        .file("a", b"third")
        .end();
    let store = TarSplitStore::new(s.mkdir("ts"));
    let diff = s.mkdir("diff");
    apply_layer(&tar[..], &diff, &opts(&store.path_for("dup"))).unwrap();
    assert_eq!(fs::read(diff.join("a")).unwrap(), b"third");
    assert_eq!(fs::read_link(diff.join("b")).unwrap().to_str(), Some("a"));
    let mut again = Vec::new();
    store.reproduce("dup", &diff, &mut again).unwrap();
    assert!(again == tar, "reproduced bytes differ");
    let shadow = Utf8PathBuf::from(format!("{}.shadow", store.path_for("dup")));
    assert_eq!(
        fs::read_dir(&shadow).unwrap().count(),
        3,
        "two versions of a and one of b kept"
    );
    // Re-applying a layer without reused paths drops the stale kept copies.
    let diff2 = s.mkdir("diff2");
    let plain = RawTar::new().file("a", b"only").end();
    apply_layer(&plain[..], &diff2, &opts(&store.path_for("dup"))).unwrap();
    assert!(!shadow.exists());
    store.reproduce("dup", &diff2, std::io::sink()).unwrap();
    store.remove("dup").unwrap();
    assert!(!store.contains("dup"));
}

/// On a filesystem that keeps whole seconds (ext4 with 128-byte inodes) a
/// change right after the apply still comes after the seal.
#[test]
fn changes_are_detected_on_whole_second_timestamps() {
    if skip_unless_root("changes_are_detected_on_whole_second_timestamps") {
        return;
    }
    let s = Scratch::new();
    let img = s.path("secs.img");
    let mnt = s.mkdir("secs");
    let made = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "truncate -s 64M {img} && mkfs.ext4 -q -F -I 128 {img} && mount -o loop {img} {mnt}"
        ))
        .status()
        .unwrap();
    if !made.success() {
        eprintln!("changes_are_detected_on_whole_second_timestamps: skipped: no loop-mounted ext4");
        return;
    }
    let src = s.mkdir("src");
    plain_tree(&src);
    let mut tar = Vec::new();
    export_diff(&src, &mut tar).unwrap();
    let outcome = std::panic::catch_unwind(|| {
        let meta = mnt.join("layer.tar-split.gz");
        let diff = mnt.join("diff");
        apply_layer(&tar[..], &diff, &opts(&meta)).unwrap();
        let seal = fs::read_to_string(format!("{meta}.seal")).unwrap();
        assert!(seal.trim_end().ends_with(" 0"), "whole seconds: {seal}");
        verify(&meta, &diff).unwrap();
        write_file(&diff.join("etc/new"), b"new");
        assert!(verify(&meta, &diff).unwrap_err().is_not_reproducible());
    });
    let _ = Command::new("umount").arg(mnt.as_str()).status();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
