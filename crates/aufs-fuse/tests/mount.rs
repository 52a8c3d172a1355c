//! Real FUSE mounts through `FuseBackend` and the `aufs-union-server`
//! binary. They need root and /dev/fuse, and skip (saying why) without them.

mod common;

use aufs_ports::{BackendKind, UnionBackend};
use common::{can_mount, names, write, Fixture};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every entry below `dir`: path -> (mode, size, content for files).
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    fn rec(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, u64, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            let data = if md.is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            out.insert(rel, (md.mode(), md.size(), data));
            if md.is_dir() {
                rec(base, &e.path(), out);
            }
        }
    }
    rec(dir, dir, &mut out);
    out
}

#[test]
fn read_only_union_is_detached_and_unmounts_cleanly() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(2);
    let (l0, l1) = (&spec.ro[0], &spec.ro[1]);
    write(&l1.join("etc/passwd"), "low");
    write(&l0.join("etc/passwd"), "high");
    write(&l1.join("etc/gone"), "x");
    write(&l0.join("etc/.wh.gone"), "");
    write(&l1.join("opq/old"), "x");
    write(&l0.join("opq/.wh..wh..opq"), "");
    write(&l0.join("opq/new"), "y");
    std::fs::create_dir_all(l0.join(".wh..wh.plnk")).unwrap();
    let before: Vec<_> = [&spec.rw, l0, l1]
        .iter()
        .map(|d| snapshot(d.as_std_path()))
        .collect();

    assert_eq!(f.backend.kind(), BackendKind::Fuse);
    assert!(!f.backend.dirperm1_supported());
    f.mount(&spec);
    let pid = f.backend.server_pid(&spec.target).expect("server pid");
    assert_ne!(pid as u32, std::process::id());
    let m = &spec.target;
    assert_eq!(names(m), ["etc", "opq"]);
    assert_eq!(names(&m.join("etc")), ["passwd"]);
    assert_eq!(
        std::fs::read_to_string(m.join("etc/passwd")).unwrap(),
        "high"
    );
    assert_eq!(names(&m.join("opq")), ["new"]);
    assert!(!m.join(".wh..wh.plnk").exists());
    assert!(!m.join("etc/gone").exists());

    // Visible from another process, and nothing was written anywhere.
    let ls = std::process::Command::new("ls")
        .arg(m.join("etc").as_str())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "passwd");
    let after: Vec<_> = [&spec.rw, l0, l1]
        .iter()
        .map(|d| snapshot(d.as_std_path()))
        .collect();
    assert_eq!(before, after);

    assert!(f.backend.mount(&spec).is_err(), "double mount refused");
    f.backend.unmount(m).unwrap();
    assert!(!f.backend.is_mounted(m).unwrap());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z"),
        "server exited"
    );
    assert!(f.backend.unmount(m).is_err());
    let log = std::fs::read_to_string(f.backend.log_path(m)).unwrap();
    assert!(log.contains("union mounted"), "{log}");
}

#[test]
fn writes_copy_up_and_leave_aufs_whiteouts() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    let l0 = &spec.ro[0];
    write(&l0.join("dir/file"), "lower");
    write(&l0.join("dir/sub/x"), "x");
    write(&l0.join("top"), "t");
    write(&l0.join("moveme"), "m");
    f.mount(&spec);
    let m = &spec.target;
    let rw = &spec.rw;

    // Copy-up on write keeps the lower file intact.
    std::fs::write(m.join("dir/file"), "upper").unwrap();
    assert_eq!(
        std::fs::read_to_string(rw.join("dir/file")).unwrap(),
        "upper"
    );
    assert_eq!(
        std::fs::read_to_string(l0.join("dir/file")).unwrap(),
        "lower"
    );

    // Delete of a lower file leaves a whiteout.
    std::fs::remove_file(m.join("top")).unwrap();
    assert!(rw.join(".wh.top").exists());
    assert!(!m.join("top").exists());

    // Rename of a lower file: copy at the new name, whiteout at the old.
    std::fs::rename(m.join("moveme"), m.join("moved")).unwrap();
    assert!(rw.join(".wh.moveme").exists());
    assert_eq!(std::fs::read_to_string(m.join("moved")).unwrap(), "m");

    // Directory removal and re-creation: whiteout, then opaque dir.
    std::fs::remove_file(m.join("dir/sub/x")).unwrap();
    std::fs::remove_dir(m.join("dir/sub")).unwrap();
    assert!(rw.join("dir/.wh.sub").exists());
    std::fs::create_dir(m.join("dir/sub")).unwrap();
    assert!(rw.join("dir/sub/.wh..wh..opq").exists());
    assert!(names(&m.join("dir/sub")).is_empty());

    // Hard links and symlinks.
    std::fs::hard_link(m.join("moved"), m.join("hard")).unwrap();
    let (a, b) = (
        std::fs::metadata(m.join("moved")).unwrap(),
        std::fs::metadata(m.join("hard")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert_eq!(b.nlink(), 2);
    std::os::unix::fs::symlink("moved", m.join("sym")).unwrap();
    assert_eq!(std::fs::read_to_string(m.join("sym")).unwrap(), "m");
    assert_eq!(
        std::fs::read_link(m.join("sym")).unwrap(),
        Path::new("moved")
    );

    // xattrs copy the file up and land on the rw copy.
    rustix::fs::setxattr(
        m.join("dir/sub").as_std_path(),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(rw.join("dir/sub").as_std_path(), "user.k", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"v");

    // aufs names cannot be created through the union.
    let err = std::fs::write(m.join(".wh.evil"), "").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    let err = std::fs::create_dir(m.join(".wh..wh..opq")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));

    // chmod copies up and keeps content.
    std::fs::set_permissions(
        m.join("moved"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(rw.join("moved")).unwrap().mode() & 0o777,
        0o600
    );

    // Renaming a directory with lower parts is EXDEV (tools copy instead).
    let err = std::fs::rename(m.join("dir"), m.join("dir2")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV));
    f.backend.unmount(m).unwrap();
}

#[test]
fn readdir_of_100k_entries() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(2);
    let big = spec.ro[1].join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..100_000 {
        std::fs::File::create(big.join(format!("f{i:06}"))).unwrap();
    }
    // Hide one from the upper layer, add one in rw.
    write(&spec.ro[0].join("big/.wh.f000007"), "");
    write(&spec.rw.join("big/extra"), "");
    f.mount(&spec);
    let listed = names(&spec.target.join("big"));
    assert_eq!(listed.len(), 100_000);
    assert!(!listed.contains(&"f000007".to_string()));
    assert!(listed.contains(&"extra".to_string()));
    f.backend.unmount(&spec.target).unwrap();
}

#[test]
fn deep_chain_of_128_layers_reads_and_keeps_inodes_across_remounts() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(128);
    for (i, l) in spec.ro.iter().enumerate() {
        write(&l.join(format!("usr/lib/f{i}")), &i.to_string());
    }
    write(&spec.ro[127].join("bottom/deep/file"), "bottom");
    f.mount(&spec);
    let m = &spec.target;
    assert_eq!(names(&m.join("usr/lib")).len(), 128);
    assert_eq!(
        std::fs::read_to_string(m.join("bottom/deep/file")).unwrap(),
        "bottom"
    );
    assert_eq!(
        std::fs::read_to_string(m.join("usr/lib/f77")).unwrap(),
        "77"
    );
    let inos = |p: &str| std::fs::symlink_metadata(m.join(p)).unwrap().ino();
    let before: Vec<u64> = ["usr", "usr/lib", "usr/lib/f3", "bottom/deep/file"]
        .iter()
        .map(|p| inos(p))
        .collect();
    assert_eq!(before[3], inos("bottom/deep/file"), "stable across lookups");
    f.backend.unmount(m).unwrap();
    f.mount(&spec);
    let after: Vec<u64> = ["usr", "usr/lib", "usr/lib/f3", "bottom/deep/file"]
        .iter()
        .map(|p| inos(p))
        .collect();
    assert_eq!(before, after, "stable across remounts");
    f.backend.unmount(m).unwrap();
}

#[test]
fn crashed_server_is_detected_and_recovered() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(1);
    write(&spec.ro[0].join("a"), "a");
    f.mount(&spec);
    let pid = f.backend.server_pid(&spec.target).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let stale = loop {
        match std::fs::metadata(spec.target.join("a")) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => break true,
            _ if std::time::Instant::now() > deadline => break false,
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    assert!(stale, "dead server shows as ENOTCONN");
    assert!(f.backend.is_mounted(&spec.target).unwrap());
    // A new mount recovers the stale one.
    f.mount(&spec);
    assert_eq!(std::fs::read_to_string(spec.target.join("a")).unwrap(), "a");
    f.backend.unmount_all_under(&f.root).unwrap();
    assert!(!f.backend.is_mounted(&spec.target).unwrap());
}

#[test]
fn mount_label_is_passed_to_the_kernel_or_refused_clearly() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let mut spec = f.spec(1);
    spec.mount_label = "system_u:object_r:container_file_t:s0:c1,c2".into();
    match f.backend.mount(&spec) {
        Ok(()) => {
            f.backend.unmount(&spec.target).unwrap();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("label"), "{msg}");
            assert!(!f.backend.is_mounted(&spec.target).unwrap());
        }
    }
}
