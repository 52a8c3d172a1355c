//! A process inside a mounted union, as an ordinary user, races renames of
//! a directory against a symlink to a host directory while asking the
//! union server (root) to open, create, chmod, chown, truncate, set and
//! remove xattrs on, change the times of, and copy up files below it. The
//! server must never act outside the store: a root-only file and a
//! root-owned directory outside it are read by no one and left exactly as
//! they were.
//!
//! Needs root and `/dev/fuse`: without them the test prints why it skips.
//! `AUFS_ESCAPE_MILLIS` sets the time per variant (default 3000).

mod support;

use aufs_fuse::{FuseBackend, Launcher};
use aufs_ports::{UnionBackend, UnionSpec};
use camino::{Utf8Path, Utf8PathBuf};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use support::Tmpfs;

/// What the attacker is: nobody.
const NOBODY: u32 = 65534;

const VARIANTS: &[&str] = &[
    "read",
    "write",
    "create",
    "chmod",
    "chown",
    "truncate",
    "setxattr",
    "removexattr",
    "utimes",
    "copy-up",
];

/// Everything about a file or directory an escape could change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, i64),
    size: u64,
    content: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
    entries: Vec<String>,
}

fn snapshot(p: &Utf8Path) -> Snapshot {
    let md = std::fs::symlink_metadata(p).unwrap();
    let mut names: Vec<String> = xattr_bytes(|buf| rustix::fs::listxattr(p.as_std_path(), buf))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let xattrs = names
        .into_iter()
        .map(|n| {
            let v =
                xattr_bytes(|buf| rustix::fs::getxattr(p.as_std_path(), n.as_str(), buf)).unwrap();
            (n, v)
        })
        .collect();
    let (content, entries) = if md.is_dir() {
        let mut e: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        e.sort();
        (Vec::new(), e)
    } else {
        (std::fs::read(p).unwrap(), Vec::new())
    };
    Snapshot {
        mode: md.mode(),
        owner: (md.uid(), md.gid()),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: md.len(),
        content,
        xattrs,
        entries,
    }
}

/// An xattr value or name list (read into a buffer large enough here).
fn xattr_bytes(
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = read(&mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

fn mkdir_owned(p: &Utf8Path, mode: u32, owner: u32) {
    std::fs::create_dir_all(p).unwrap();
    std::fs::set_permissions(p, PermissionsExt::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(p, Some(owner), Some(owner)).unwrap();
}

#[test]
fn a_process_in_the_union_cannot_make_the_server_act_outside_it() {
    if let Some(reason) = support::no_fuse_reason() {
        support::skip("escape", reason);
        return;
    }
    let millis: u64 = std::env::var("AUFS_ESCAPE_MILLIS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(3000);
    let tmpfs = Tmpfs::mount(false);
    // Outside the store: a root-only file and a root-owned directory.
    let outside: Utf8PathBuf = tmpfs.join("outside");
    mkdir_owned(&outside, 0o755, 0);
    let secret = outside.join("secret");
    std::fs::write(&secret, b"TOPSECRET").unwrap();
    std::fs::set_permissions(&secret, PermissionsExt::from_mode(0o600)).unwrap();
    rustix::fs::setxattr(
        secret.as_std_path(),
        "user.keep",
        b"1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    mkdir_owned(&outside.join("dir"), 0o755, 0);
    let watched = [outside.clone(), secret.clone(), outside.join("dir")];
    let mut before: Vec<Snapshot> = watched.iter().map(|p| snapshot(p)).collect();

    // The store: one read-only layer with nobody's directory `w0` and a
    // lower file in it, under an empty rw layer.
    let (rw, l0, mnt) = (tmpfs.join("rw"), tmpfs.join("l0"), tmpfs.join("mnt"));
    for d in [&rw, &mnt] {
        mkdir_owned(d, 0o755, 0);
    }
    mkdir_owned(&l0.join("w0"), 0o755, NOBODY);
    mkdir_owned(&l0.join("w0/lower"), 0o755, NOBODY);
    std::fs::set_permissions(&l0, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(l0.join("w0/lower/file"), b"lower").unwrap();
    std::os::unix::fs::chown(l0.join("w0/lower/file"), Some(NOBODY), Some(NOBODY)).unwrap();
    let backend = FuseBackend::new(
        Launcher::new(support::union_server(), Vec::new()),
        tmpfs.join("fuse"),
    );
    let spec = UnionSpec {
        rw: rw.clone(),
        ro: vec![l0.clone()],
        target: mnt.clone(),
        mount_label: String::new(),
    };
    backend.mount(&spec).unwrap();

    let mut failures = Vec::new();
    for variant in VARIANTS {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_union-attacker"))
            .args([variant.to_string(), millis.to_string(), outside.to_string()])
            .current_dir(mnt.join("w0"))
            .uid(NOBODY)
            .gid(NOBODY)
            .status()
            .unwrap();
        match status.code() {
            Some(0) => {}
            Some(3) => failures.push(format!("{variant}: the outside file was read")),
            other => failures.push(format!("{variant}: attacker exited with {other:?}")),
        }
        let now: Vec<Snapshot> = watched.iter().map(|p| snapshot(p)).collect();
        for ((p, b), n) in watched.iter().zip(&before).zip(&now) {
            if b != n {
                failures.push(format!("{variant}: {p} changed: {b:?} -> {n:?}"));
            }
        }
        if failures.iter().any(|f| f.starts_with(variant)) {
            // Put it back, so the next variant starts from the same state.
            std::fs::write(&secret, b"TOPSECRET").unwrap();
            std::fs::set_permissions(&secret, PermissionsExt::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&secret, Some(0), Some(0)).unwrap();
            before = watched.iter().map(|p| snapshot(p)).collect();
        }
    }
    // The union still works for its own files.
    assert_eq!(
        std::fs::read(mnt.join("w0/read/d/secret"))
            .or_else(|_| std::fs::read(mnt.join("w0/read/d2/secret")))
            .unwrap_or_default(),
        b"mine",
        "the attacker's own file"
    );
    backend.unmount(&mnt).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
