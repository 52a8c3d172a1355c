//! Backing filesystem names from statfs on real filesystems, made on loop
//! devices backed by sparse files.

use crate::util::{have_tool, loop_mount, mount_tmpfs, require_root, Mounted, Tmp};
use aufs_linux::{fs_name, LinuxHost, LinuxMounter, MountInfoSource, ProcSelfMountInfo};
use aufs_ports::{Host, Mounter};
use camino::Utf8Path;

/// Checks the statfs name and the mount table's view of `mnt`.
fn check(mnt: &Utf8Path, docker_name: &str, table_type: &str) {
    let magic = LinuxHost::new().fs_magic(mnt).unwrap();
    assert_eq!(fs_name(magic), docker_name, "magic {magic:#x}");
    assert!(LinuxMounter::new().is_mounted(mnt).unwrap());
    let real = std::fs::canonicalize(mnt).unwrap();
    let entry = ProcSelfMountInfo
        .mounts()
        .unwrap()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == real)
        .expect("in mountinfo");
    assert_eq!(entry.fs_type, table_type);
}

#[test]
fn tmpfs() {
    require_root!();
    let tmp = Tmp::new();
    let _m = mount_tmpfs(tmp.path());
    check(tmp.path(), "tmpfs", "tmpfs");
}

#[test]
fn overlay() {
    require_root!();
    let tmp = Tmp::new();
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(tmp.join(d)).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        tmp.join("lower"),
        tmp.join("upper"),
        tmp.join("work")
    );
    nix::mount::mount(
        Some("overlay"),
        tmp.join("merged").as_std_path(),
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .expect("mount overlay");
    let _m = Mounted::from(tmp.join("merged"));
    check(&tmp.join("merged"), "overlayfs", "overlay");
}

/// Makes `fs` with `mkfs` on a loop device and checks its name, or says why
/// it cannot.
fn loop_fs(mkfs: &[&str], size_mib: u64, docker_name: &str, table_type: &str) {
    if !have_tool(mkfs[0]) {
        eprintln!("skipping {docker_name}: {} is not installed", mkfs[0]);
        return;
    }
    let tmp = Tmp::new();
    let mnt = tmp.join("mnt");
    let mounted = match loop_mount(&tmp.join("image"), size_mib << 20, mkfs, &mnt) {
        Ok(m) => m,
        Err(e) if e.contains("loop") => {
            eprintln!("skipping {docker_name}: no loop devices here: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    check(&mnt, docker_name, table_type);
    // The driver's own work on it: a root dir and an atomic write.
    use aufs_ports::Filesystem;
    let fs = aufs_linux::LinuxFilesystem::new();
    fs.create_dir_all(&mnt.join("aufs/layers"), 0o700, None)
        .unwrap();
    fs.write_new(&mnt.join("aufs/layers/x"), b"parent\n")
        .unwrap();
    assert_eq!(
        fs.read_to_string(&mnt.join("aufs/layers/x")).unwrap(),
        "parent\n"
    );
    drop(mounted);
}

#[test]
fn ext4() {
    require_root!();
    loop_fs(&["mkfs.ext4", "-q", "-F"], 64, "extfs", "ext4");
}

#[test]
fn xfs() {
    require_root!();
    loop_fs(&["mkfs.xfs", "-q", "-f"], 320, "xfs", "xfs");
}

#[test]
fn btrfs() {
    require_root!();
    loop_fs(&["mkfs.btrfs", "-q", "-f"], 256, "btrfs", "btrfs");
}
