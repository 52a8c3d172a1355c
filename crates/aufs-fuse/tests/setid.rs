//! Set-id bits and file capabilities through a mounted union: the server
//! clears them where the kernel would (it negotiates
//! `FUSE_HANDLE_KILLPRIV_V2`), for writes and truncates by unprivileged
//! users, for owner changes, and on any write for `security.capability`.
//! Unprivileged callers run under `setpriv` as nobody (65534).

mod common;

use aufs_ports::UnionBackend;
use common::{can_mount, write, Fixture};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

const NOBODY: &str = "65534";

/// Runs `sh -c script path` as nobody; true when it succeeded.
fn as_nobody(script: &str, path: &camino::Utf8Path) -> bool {
    Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            path.as_str(),
        ])
        .status()
        .expect("setpriv (util-linux) runs")
        .success()
}

fn mode(path: &camino::Utf8Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &camino::Utf8Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A fixture whose directories nobody can walk (temp dirs are 0700).
fn open_fixture() -> Fixture {
    let f = Fixture::new();
    chmod(&f.root, 0o755);
    f
}

#[test]
fn unprivileged_writes_and_truncates_clear_set_id_bits() {
    if !can_mount() {
        return;
    }
    let f = open_fixture();
    let spec = f.spec(1);
    // In the rw branch, and in a read-only branch (copied up on write).
    for (dir, name) in [(&spec.rw, "w-rw"), (&spec.ro[0], "w-lower")] {
        write(&dir.join(name), "data");
        chmod(&dir.join(name), 0o6777);
        for t in [format!("t-{name}"), format!("o-{name}")] {
            write(&dir.join(&t), "data");
            chmod(&dir.join(&t), 0o6777);
        }
    }
    // Set-gid without group execute: kept for its group, not for others.
    write(&spec.rw.join("lock"), "data");
    chmod(&spec.rw.join("lock"), 0o2767);
    f.mount(&spec);
    let m = &spec.target;

    for name in ["w-rw", "w-lower"] {
        let p = m.join(name);
        assert_eq!(mode(&p), 0o6777);
        assert!(as_nobody("printf x >> \"$1\"", &p), "append to {name}");
        assert_eq!(mode(&p), 0o0777, "write by nobody clears set-id: {name}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "datax");

        let p = m.join(format!("t-{name}"));
        assert!(as_nobody("truncate -s 2 \"$1\"", &p), "truncate {name}");
        assert_eq!(mode(&p), 0o0777, "truncate by nobody clears set-id: {name}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "da");

        // `>` opens with O_TRUNC: a truncate too.
        let p = m.join(format!("o-{name}"));
        assert!(as_nobody("printf y > \"$1\"", &p), "O_TRUNC open of {name}");
        assert_eq!(
            mode(&p),
            0o0777,
            "O_TRUNC open by nobody clears set-id: {name}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "y");
    }
    let lock = m.join("lock");
    assert!(as_nobody("printf x >> \"$1\"", &lock));
    assert_eq!(mode(&lock), 0o0767, "nobody is not of group root");
    // What the branch holds, not only what the kernel was told.
    assert_eq!(mode(&spec.rw.join("w-lower")), 0o0777);
    assert_eq!(mode(&spec.rw.join("w-rw")), 0o0777);
    f.backend.unmount(&spec.target).unwrap();
}

#[test]
fn privileged_writes_keep_set_id_bits() {
    if !can_mount() {
        return;
    }
    let f = open_fixture();
    let spec = f.spec(1);
    write(&spec.rw.join("suid"), "data");
    chmod(&spec.rw.join("suid"), 0o6755);
    f.mount(&spec);
    let p = spec.target.join("suid");
    let mut file = OpenOptions::new().append(true).open(&p).unwrap();
    file.write_all(b"more").unwrap();
    drop(file);
    let file = OpenOptions::new().write(true).open(&p).unwrap();
    file.set_len(3).unwrap();
    drop(file);
    assert_eq!(mode(&p), 0o6755, "root has CAP_FSETID");
    assert_eq!(mode(&spec.rw.join("suid")), 0o6755);
    f.backend.unmount(&spec.target).unwrap();
}

/// A file open in passthrough mode that gains set-id bits: the kernel asks
/// for them to go on an unprivileged write (the write itself bypasses us).
#[test]
fn a_passthrough_file_made_set_id_loses_the_bits_on_an_unprivileged_write() {
    if !can_mount() {
        return;
    }
    let f = open_fixture();
    let spec = f.spec(0);
    write(&spec.rw.join("pt"), "data");
    chmod(&spec.rw.join("pt"), 0o666);
    f.mount(&spec);
    let p = spec.target.join("pt");
    // Opened for writing before the bits are set: passed through if the
    // kernel can.
    let held = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    chmod(&p, 0o6777);
    assert_eq!(mode(&p), 0o6777);
    assert!(as_nobody("printf x >> \"$1\"", &p));
    assert_eq!(mode(&p), 0o0777);
    assert_eq!(mode(&spec.rw.join("pt")), 0o0777);
    drop(held);
    f.backend.unmount(&spec.target).unwrap();
}

#[test]
fn chown_clears_set_id_bits() {
    if !can_mount() {
        return;
    }
    let f = open_fixture();
    let spec = f.spec(1);
    write(&spec.rw.join("own"), "data");
    chmod(&spec.rw.join("own"), 0o6755);
    write(&spec.ro[0].join("own-lower"), "data");
    chmod(&spec.ro[0].join("own-lower"), 0o4711);
    write(&spec.rw.join("same"), "data");
    chmod(&spec.rw.join("same"), 0o6755);
    f.mount(&spec);
    let m = &spec.target;

    std::os::unix::fs::chown(m.join("own"), Some(1000), Some(1000)).unwrap();
    let md = std::fs::metadata(m.join("own")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    assert_eq!(md.mode() & 0o7777, 0o0755);

    std::os::unix::fs::chown(m.join("own-lower"), Some(1000), None).unwrap();
    assert_eq!(mode(&m.join("own-lower")), 0o0711);
    assert_eq!(mode(&spec.rw.join("own-lower")), 0o0711);

    // chown(f, -1, -1) changes no owner but still clears the bits, as on
    // any Linux filesystem.
    std::os::unix::fs::chown(m.join("same"), None, None).unwrap();
    assert_eq!(mode(&m.join("same")), 0o0755);

    // A directory keeps its set-gid bit.
    let d = m.join("dir");
    std::fs::create_dir(&d).unwrap();
    chmod(&d, 0o2775);
    std::os::unix::fs::chown(&d, Some(1000), Some(1000)).unwrap();
    assert_eq!(mode(&d), 0o2775);
    f.backend.unmount(&spec.target).unwrap();
}

/// `security.capability` of file capabilities: `cap_net_raw+ep`, revision 2.
fn cap_value() -> Vec<u8> {
    let mut v = Vec::new();
    // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    // permitted, inheritable (low words), then the high words.
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

fn has_caps(path: &camino::Utf8Path) -> bool {
    match rustix::fs::lgetxattr(path.as_str(), "security.capability", &mut [0u8; 64]) {
        Ok(_) => true,
        Err(rustix::io::Errno::NODATA) => false,
        Err(e) => panic!("getxattr {path}: {e}"),
    }
}

#[test]
fn writes_remove_file_capabilities() {
    if !can_mount() {
        return;
    }
    let f = open_fixture();
    let spec = f.spec(1);
    for p in [spec.rw.join("cap"), spec.ro[0].join("cap-lower")] {
        write(&p, "data");
        chmod(&p, 0o755);
        rustix::fs::lsetxattr(
            p.as_str(),
            "security.capability",
            &cap_value(),
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert!(has_caps(&p));
    }
    write(&spec.rw.join("cap-nobody"), "data");
    chmod(&spec.rw.join("cap-nobody"), 0o777);
    rustix::fs::lsetxattr(
        spec.rw.join("cap-nobody").as_str(),
        "security.capability",
        &cap_value(),
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    f.mount(&spec);
    let m = &spec.target;

    for name in ["cap", "cap-lower"] {
        let p = m.join(name);
        assert!(has_caps(&p), "{name} shows its capabilities");
        let mut file = OpenOptions::new().append(true).open(&p).unwrap();
        file.write_all(b"x").unwrap();
        drop(file);
        assert!(!has_caps(&p), "a root write removes capabilities: {name}");
        assert!(!has_caps(&spec.rw.join(name)));
    }
    let p = m.join("cap-nobody");
    assert!(as_nobody("printf x >> \"$1\"", &p));
    assert!(!has_caps(&p), "an unprivileged write removes capabilities");
    assert!(!has_caps(&spec.rw.join("cap-nobody")));
    f.backend.unmount(&spec.target).unwrap();
}
