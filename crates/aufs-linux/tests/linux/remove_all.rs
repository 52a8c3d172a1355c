//! remove_all: mounts, immutable flags, read-only dirs, symlinks out, depth.

use crate::util::{bind, mount_tmpfs, require_root, Tmp};
use aufs_linux::{FixedMountInfo, LinuxFilesystem, LinuxMounter, MAX_OPEN_DIRS};
use aufs_ports::{Filesystem, Mounter};
use camino::Utf8Path;
use rustix::fs::IFlags;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// `chattr +flags` through FS_IOC_SETFLAGS.
fn chattr(path: &Utf8Path, add: IFlags) {
    let f = std::fs::File::open(path).unwrap();
    let flags = rustix::fs::ioctl_getflags(&f).unwrap();
    rustix::fs::ioctl_setflags(&f, flags | add).unwrap();
}

fn outside_sentinel(tmp: &Tmp) -> (camino::Utf8PathBuf, camino::Utf8PathBuf) {
    let outside = tmp.join("outside");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    let file = outside.join("sub/precious");
    std::fs::write(&file, b"keep me").unwrap();
    (outside, file)
}

#[test]
fn missing_path_is_success() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    fs.remove_all(&tmp.join("missing")).unwrap();
    fs.remove_all(&tmp.join("missing/deeper")).unwrap();
    assert!(fs.remove_all(Utf8Path::new("/")).is_err());
    assert!(fs.remove_all(Utf8Path::new("relative")).is_err());
}

#[test]
fn removes_files_and_plain_trees() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    std::fs::write(tmp.join("file"), b"x").unwrap();
    fs.remove_all(&tmp.join("file")).unwrap();
    assert!(!tmp.join("file").exists());
    std::fs::create_dir_all(tmp.join("tree/a/b/c")).unwrap();
    for i in 0..50 {
        std::fs::write(tmp.join(&format!("tree/a/f{i}")), b"x").unwrap();
    }
    nix::unistd::mkfifo(
        tmp.join("tree/a/b/fifo").as_std_path(),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    fs.remove_all(&tmp.join("tree")).unwrap();
    assert!(!tmp.join("tree").exists());
}

#[test]
fn symlinks_are_removed_never_followed() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let (outside, precious) = outside_sentinel(&tmp);
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("d/to-dir")).unwrap();
    std::os::unix::fs::symlink(&precious, tree.join("to-file")).unwrap();
    std::os::unix::fs::symlink("../outside", tree.join("relative")).unwrap();
    std::os::unix::fs::symlink("/", tree.join("to-root")).unwrap();
    fs.remove_all(&tree).unwrap();
    assert!(!tree.exists());
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");

    // The path itself a symlink: only the link goes.
    let link = tmp.join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    fs.remove_all(&link).unwrap();
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
}

#[test]
fn read_only_directories_are_removed() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("ro/inner")).unwrap();
    std::fs::write(tree.join("ro/inner/f"), b"x").unwrap();
    std::fs::write(tree.join("ro/f"), b"x").unwrap();
    std::fs::set_permissions(
        tree.join("ro/inner"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o500)).unwrap();
    fs.remove_all(&tree).unwrap();
    assert!(!tree.exists());
}

#[test]
fn immutable_and_append_only_entries_are_cleared_and_removed() {
    require_root!();
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("imm-dir/sub")).unwrap();
    std::fs::create_dir_all(tree.join("append-dir")).unwrap();
    std::fs::write(tree.join("imm-file"), b"x").unwrap();
    std::fs::write(tree.join("imm-dir/sub/f"), b"x").unwrap();
    std::fs::write(tree.join("imm-dir/f"), b"x").unwrap();
    std::fs::write(tree.join("append-dir/f"), b"x").unwrap();
    std::fs::write(tree.join("append-file"), b"x").unwrap();
    chattr(&tree.join("imm-file"), IFlags::IMMUTABLE);
    chattr(&tree.join("imm-dir/sub/f"), IFlags::IMMUTABLE);
    chattr(&tree.join("imm-dir"), IFlags::IMMUTABLE);
    chattr(&tree.join("append-dir"), IFlags::APPEND);
    chattr(&tree.join("append-file"), IFlags::APPEND);
    // The flags really block a plain removal.
    assert!(std::fs::remove_file(tree.join("imm-file")).is_err());
    assert!(std::fs::remove_file(tree.join("append-dir/f")).is_err());

    fs.remove_all(&tree).unwrap();
    assert!(!tree.exists());
}

#[test]
fn live_mounts_inside_are_unmounted_not_emptied() {
    require_root!();
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let (outside, precious) = outside_sentinel(&tmp);
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("mnt/a b/deep")).unwrap();
    std::fs::create_dir_all(tree.join("bound")).unwrap();
    let _t = mount_tmpfs(tree.join("mnt/a b"));
    std::fs::create_dir_all(tree.join("mnt/a b/deep")).unwrap();
    let _t2 = mount_tmpfs(tree.join("mnt/a b/deep"));
    std::fs::write(tree.join("mnt/a b/deep/inside"), b"x").unwrap();
    let _b = bind(&outside, tree.join("bound"));
    // A busy mount: a plain unmount fails, the lazy one succeeds.
    let busy = std::fs::File::open(tree.join("mnt/a b/deep/inside")).unwrap();

    fs.remove_all(&tree).unwrap();
    assert!(!tree.exists());
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    assert!(LinuxMounter::new()
        .mounts_under(tmp.path())
        .unwrap()
        .is_empty());
    drop(busy);
}

#[test]
fn mounts_missing_from_the_table_are_detected_during_the_walk() {
    require_root!();
    let tmp = Tmp::new();
    // An empty table: the walk alone must notice the mounts.
    let fs = LinuxFilesystem::with_mount_table(Arc::new(FixedMountInfo(Vec::new())));
    let (outside, precious) = outside_sentinel(&tmp);
    let tree = tmp.join("tree");
    std::fs::create_dir_all(tree.join("x/bound")).unwrap();
    std::fs::create_dir_all(tree.join("x/t")).unwrap();
    let _b = bind(&outside, tree.join("x/bound"));
    let _t = mount_tmpfs(tree.join("x/t"));
    // Stacked: each needs its own detach.
    let _t2 = mount_tmpfs(tree.join("x/t"));
    let _t3 = mount_tmpfs(tree.join("x/t"));
    std::fs::write(tree.join("x/t/f"), b"x").unwrap();
    let busy = std::fs::File::open(tree.join("x/t/f")).unwrap();
    let _top = mount_tmpfs(&tree);
    std::fs::create_dir(tree.join("on-top")).unwrap();
    let _inner = bind(&outside, tree.join("on-top"));

    fs.remove_all(&tree).unwrap();
    assert!(!tree.exists());
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    assert!(LinuxMounter::new()
        .mounts_under(tmp.path())
        .unwrap()
        .is_empty());
    drop(busy);
}

#[test]
fn deeper_than_the_open_directory_window() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let depth = MAX_OPEN_DIRS * 4 + 3;
    let mut p = tmp.join("deep");
    for i in 0..depth {
        p.push(if i % 2 == 0 { "d" } else { "e" });
    }
    std::fs::create_dir_all(&p).unwrap();
    // Files at several depths, including ones whose directory was closed.
    let mut q = tmp.join("deep");
    for i in 0..depth {
        q.push(if i % 2 == 0 { "d" } else { "e" });
        if i % 37 == 0 {
            std::fs::write(q.join("file"), b"x").unwrap();
            std::fs::create_dir(q.join("side")).unwrap();
        }
    }
    fs.remove_all(&tmp.join("deep")).unwrap();
    assert!(!tmp.join("deep").exists());
}

#[test]
fn concurrent_removers_of_one_tree_both_succeed() {
    let tmp = Tmp::new();
    let tree = tmp.join("tree");
    for i in 0..20 {
        std::fs::create_dir_all(tree.join(format!("d{i}/x/y"))).unwrap();
        for j in 0..20 {
            std::fs::write(tree.join(format!("d{i}/x/f{j}")), b"x").unwrap();
        }
    }
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let tree = tree.clone();
            std::thread::spawn(move || LinuxFilesystem::new().remove_all(&tree))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert!(!tree.exists());
}
