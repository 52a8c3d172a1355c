//! LinuxMounter and the mountinfo parser against the live mount table.

use crate::util::{mount_tmpfs, require_root, Tmp};
use aufs_linux::{LinuxMounter, MountInfoSource, ProcSelfMountInfo};
use aufs_ports::{MountFlags, MountRequest, Mounter, UnmountFlags};
use camino::Utf8PathBuf;

#[test]
fn odd_mount_point_names_round_trip_through_mountinfo() {
    require_root!();
    let tmp = Tmp::new();
    let spaced = tmp.join("with space");
    let odd = spaced.join("new\nline\\back\tslash");
    std::fs::create_dir(&spaced).unwrap();
    let _outer = mount_tmpfs(&spaced);
    std::fs::create_dir(&odd).unwrap();
    let _inner = mount_tmpfs(&odd);

    let table = ProcSelfMountInfo.mounts().unwrap();
    let canon_tmp = std::fs::canonicalize(tmp.path()).unwrap();
    for p in [&spaced, &odd] {
        let real = canon_tmp.join(p.strip_prefix(tmp.path()).unwrap());
        let m = table
            .iter()
            .find(|m| m.mount_point == real)
            .unwrap_or_else(|| panic!("{p:?} not in mountinfo"));
        assert_eq!(m.fs_type, "tmpfs");
        assert!(
            m.super_options.contains("size=4096k"),
            "{}",
            m.super_options
        );
    }

    let mounter = LinuxMounter::new();
    assert!(mounter.is_mounted(&spaced).unwrap());
    assert!(mounter.is_mounted(&odd).unwrap());
    assert!(!mounter.is_mounted(tmp.path()).unwrap());
    assert!(!mounter.is_mounted(&tmp.join("missing")).unwrap());
    assert_eq!(
        mounter.mounts_under(tmp.path()).unwrap(),
        vec![odd.clone(), spaced.clone()],
        "deepest first"
    );
    assert_eq!(
        mounter.mounts_under(&odd).unwrap(),
        vec![odd.clone()],
        "a mount point is under itself"
    );
}

#[test]
fn mount_remount_unmount_through_the_port() {
    require_root!();
    let tmp = Tmp::new();
    let target = tmp.join("m");
    std::fs::create_dir(&target).unwrap();
    let mounter = LinuxMounter::new();
    let req = |remount: bool, data: &str| MountRequest {
        source: "none".into(),
        target: target.clone(),
        fstype: "tmpfs".into(),
        flags: MountFlags { remount },
        data: data.into(),
    };
    mounter.mount(&req(false, "size=1m,mode=0750")).unwrap();
    let guard = crate::util::Mounted::from(target.clone());
    assert!(mounter.is_mounted(&target).unwrap());
    let opts = |t: &Utf8PathBuf| {
        let real = std::fs::canonicalize(t).unwrap();
        ProcSelfMountInfo
            .mounts()
            .unwrap()
            .into_iter()
            .rev()
            .find(|m| m.mount_point == real)
            .unwrap()
            .super_options
    };
    assert!(opts(&target).contains("size=1024k"), "{}", opts(&target));
    mounter.mount(&req(true, "size=2m")).unwrap();
    assert!(opts(&target).contains("size=2048k"), "{}", opts(&target));
    assert_eq!(
        mounter.mounts_under(&target).unwrap().len(),
        1,
        "a remount adds no mount"
    );

    // Busy: a plain unmount fails with EBUSY, a detaching one succeeds.
    std::fs::write(target.join("f"), b"x").unwrap();
    let busy = std::fs::File::open(target.join("f")).unwrap();
    let err = mounter
        .unmount(&target, UnmountFlags::default())
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBUSY));
    mounter
        .unmount(&target, UnmountFlags { detach: true })
        .unwrap();
    drop(busy);
    assert!(!mounter.is_mounted(&target).unwrap());
    let err = mounter
        .unmount(&target, UnmountFlags::default())
        .unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EINVAL),
        "not mounted any more"
    );
    drop(guard);
}

#[test]
fn stacked_mounts_are_listed_once_per_mount() {
    require_root!();
    let tmp = Tmp::new();
    let target = tmp.join("stack");
    std::fs::create_dir(&target).unwrap();
    let _a = mount_tmpfs(&target);
    let _b = mount_tmpfs(&target);
    let mounter = LinuxMounter::new();
    assert_eq!(
        mounter.mounts_under(tmp.path()).unwrap(),
        vec![target.clone(), target.clone()]
    );
}

#[test]
fn is_mounted_through_a_symlinked_parent() {
    require_root!();
    let tmp = Tmp::new();
    std::fs::create_dir_all(tmp.join("real/m")).unwrap();
    std::os::unix::fs::symlink(tmp.join("real"), tmp.join("link")).unwrap();
    let _m = mount_tmpfs(tmp.join("real/m"));
    let mounter = LinuxMounter::new();
    assert!(mounter.is_mounted(&tmp.join("link/m")).unwrap());
    assert_eq!(
        mounter.mounts_under(&tmp.join("link")).unwrap(),
        vec![tmp.join("link/m")],
        "reported under the root as given"
    );
}
