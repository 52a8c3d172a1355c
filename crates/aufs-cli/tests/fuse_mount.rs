//! `aufsctl mount` with the FUSE union (`--backend fuse`) and with the
//! default, stacked mount, for real (root and /dev/fuse needed; the tests
//! say why they skip otherwise).

mod common;

use common::Ctl;
use std::path::{Path, PathBuf};
use std::process::Command;

fn can_mount() -> bool {
    // SAFETY-free check of the effective uid through /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !euid_root {
        eprintln!("skipping: FUSE mounts through /dev/fuse need root");
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipping: /dev/fuse is missing");
        return false;
    }
    true
}

/// Unmounts whatever a test left mounted under its root.
struct Mounts(Ctl);

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.0.run(&["cleanup"]);
    }
}

impl std::ops::Deref for Mounts {
    type Target = Ctl;
    fn deref(&self) -> &Ctl {
        &self.0
    }
}

fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

fn server_pids(root: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("__union-server") && cmd.contains(root.to_str().unwrap()) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn union_of_layers_through_the_cli() {
    if !can_mount() {
        return;
    }
    let c = Mounts(Ctl::new().with_backend("fuse"));
    c.ok(&["create", "base"]);
    std::fs::write(c.diff("base").join("keep"), "base keep\n").unwrap();
    std::fs::write(c.diff("base").join("gone"), "base gone\n").unwrap();
    std::fs::create_dir(c.diff("base").join("dir")).unwrap();
    std::fs::write(c.diff("base").join("dir/old"), "old\n").unwrap();
    c.ok(&["create", "mid", "--parent", "base"]);
    std::fs::write(c.diff("mid").join(".wh.gone"), "").unwrap();
    std::fs::create_dir(c.diff("mid").join("dir")).unwrap();
    std::fs::write(c.diff("mid").join("dir/.wh..wh..opq"), "").unwrap();
    std::fs::write(c.diff("mid").join("dir/new"), "new\n").unwrap();
    c.ok(&["create-rw", "top", "--parent", "mid"]);

    let m = PathBuf::from(c.ok(&["mount", "top"]).trim_end());
    assert_eq!(m, std::fs::canonicalize(c.root.join("mnt/top")).unwrap());
    assert!(mounted(&m), "not in the mount table after mount returned");
    assert_eq!(
        std::fs::read_to_string(m.join("keep")).unwrap(),
        "base keep\n"
    );
    assert!(!m.join("gone").exists(), "whiteout did not hide");
    let mut names: Vec<String> = std::fs::read_dir(m.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["new"], "opaque dir must hide lower entries");
    // Nothing was written to any branch by mounting.
    assert_eq!(std::fs::read_dir(c.diff("top")).unwrap().count(), 0);

    // Visible to another process (not a private namespace).
    let out = Command::new("cat").arg(m.join("keep")).output().unwrap();
    assert_eq!(out.stdout, b"base keep\n");

    // Writes land in the rw layer; deletes leave whiteouts.
    std::fs::write(m.join("keep"), "changed\n").unwrap();
    std::fs::remove_file(m.join("dir/new")).unwrap();
    assert_eq!(
        std::fs::read_to_string(c.diff("top").join("keep")).unwrap(),
        "changed\n"
    );
    assert_eq!(
        std::fs::read_to_string(c.diff("base").join("keep")).unwrap(),
        "base keep\n"
    );
    assert!(c.diff("top").join("dir/.wh.new").exists());

    // Two mounts need two unmounts, across processes.
    c.ok(&["mount", "top"]);
    c.ok(&["unmount", "top"]);
    assert!(mounted(&m));
    c.ok(&["unmount", "top"]);
    assert!(!mounted(&m));
    // The server exits on unmount.
    for _ in 0..50 {
        if server_pids(&c.root).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(server_pids(&c.root).is_empty(), "union server left running");
    assert!(c.root.join("fuse").read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".log")));
}

#[test]
fn rm_and_cleanup_unmount() {
    if !can_mount() {
        return;
    }
    let c = Mounts(Ctl::new().with_backend("fuse"));
    c.ok(&["create", "a"]);
    c.ok(&["create-rw", "b", "--parent", "a"]);
    c.ok(&["create-rw", "c", "--parent", "a"]);
    let mb = PathBuf::from(c.ok(&["mount", "b"]).trim_end());
    let mc = PathBuf::from(c.ok(&["mount", "c"]).trim_end());
    assert!(mounted(&mb) && mounted(&mc));
    c.ok(&["rm", "b"]);
    assert!(!mounted(&mb));
    assert!(!c.root.join("mnt/b").exists());
    c.ok(&["cleanup"]);
    assert!(!mounted(&mc));
    // Mounting again after cleanup starts from a clean count.
    c.ok(&["mount", "c"]);
    c.ok(&["unmount", "c"]);
    assert!(!mounted(&mc));
}

#[test]
fn crashed_server_is_detected_and_recovered() {
    if !can_mount() {
        return;
    }
    let c = Mounts(Ctl::new().with_backend("fuse"));
    c.ok(&["create", "a"]);
    std::fs::write(c.diff("a").join("f"), "x").unwrap();
    c.ok(&["create-rw", "b", "--parent", "a"]);
    let m = PathBuf::from(c.ok(&["mount", "b"]).trim_end());
    let pids = server_pids(&c.root);
    assert_eq!(pids.len(), 1, "{pids:?}");
    Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    for _ in 0..50 {
        if server_pids(&c.root).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The dead mount answers ENOTCONN. A request made while the dying
    // server still held /dev/fuse (its command line is gone from /proc
    // before its descriptors are closed) ends with ECONNABORTED instead.
    let mut errno = None;
    for _ in 0..50 {
        errno = std::fs::metadata(m.join("f")).unwrap_err().raw_os_error();
        if errno != Some(libc::ECONNABORTED) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(errno, Some(libc::ENOTCONN));
    // A new mount recovers it.
    let m2 = PathBuf::from(c.ok(&["mount", "b"]).trim_end());
    assert_eq!(std::fs::read_to_string(m2.join("f")).unwrap(), "x");
    c.ok(&["unmount", "b"]);
    c.ok(&["unmount", "b"]);
    assert!(!mounted(&m));
}

/// The default mount on a kernel without aufs: overlayfs over a read-only
/// FUSE view. While mounted the diff dir is in overlay form; after the
/// unmount, and after a crash at the next command, it is in aufs form.
#[test]
fn stacked_by_default_and_back_to_aufs_form_after_a_crash() {
    if !can_mount() {
        return;
    }
    let c = Mounts(Ctl::new());
    c.ok(&["create", "a"]);
    std::fs::write(c.diff("a").join("f"), "x").unwrap();
    std::fs::write(c.diff("a").join("g"), "y").unwrap();
    c.ok(&["create-rw", "b", "--parent", "a"]);
    let status = c.ok(&["status"]);
    assert!(status.contains("Union Mode: stacked"), "{status}");
    let m = PathBuf::from(c.ok(&["mount", "b"]).trim_end());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        info.lines()
            .any(|l| l.split(' ').nth(4) == m.to_str() && l.contains(" - overlay ")),
        "mnt/b is an overlayfs mount"
    );
    std::fs::write(m.join("new"), "n").unwrap();
    std::fs::remove_file(m.join("g")).unwrap();
    // The unmount puts the diff dir back in aufs form.
    c.ok(&["unmount", "b"]);
    assert!(!mounted(&m));
    assert!(c.diff("b").join(".wh.g").is_file());
    assert_eq!(
        std::fs::read_to_string(c.diff("b").join("new")).unwrap(),
        "n"
    );
    // Mounted again, then everything killed: the next command converts back.
    let m = PathBuf::from(c.ok(&["mount", "b"]).trim_end());
    std::fs::remove_file(m.join("f")).unwrap();
    for pid in server_pids(&c.root) {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.ok(&["ls"]);
    assert!(
        c.diff("b").join(".wh.f").is_file(),
        "whiteout back in aufs form"
    );
    assert!(c.diff("b").join(".wh.g").is_file());
    assert!(!c.root.join("stack/b/overlay-form").exists());
    assert!(!mounted(&m), "the dead stacked mount is gone");
    let m = PathBuf::from(c.ok(&["mount", "b"]).trim_end());
    assert!(!m.join("f").exists() && !m.join("g").exists());
    assert_eq!(std::fs::read_to_string(m.join("new")).unwrap(), "n");
    c.ok(&["unmount", "b"]);
}
