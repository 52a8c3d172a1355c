//! What the real rigs share: a private tmpfs per test, the real adapters,
//! the mount table read straight from `/proc`, and the `aufs-union-server`
//! program.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use aufs_driver::Ports;
use aufs_linux::{FlockLocks, LinuxFilesystem, LinuxHost};
use aufs_ports::UnionBackend;
use camino::{Utf8Path, Utf8PathBuf};
use nix::mount::{MntFlags, MsFlags};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// Evaluates to the rig `$make` builds, or returns from the test (which
/// passes) when it cannot be built here; the constructor said why.
#[macro_export]
macro_rules! rig_or_skip {
    ($make:expr) => {
        match $make {
            Some(rig) => rig,
            None => return,
        }
    };
}

/// Why a tmpfs cannot be mounted here, if it cannot.
pub fn no_root_reason() -> Option<&'static str> {
    (!nix::unistd::geteuid().is_root()).then_some("mounting a tmpfs needs root")
}

/// Why FUSE unions cannot be mounted here, if they cannot.
pub fn no_fuse_reason() -> Option<&'static str> {
    if no_root_reason().is_some() {
        return Some("mounting a tmpfs and FUSE unions needs root");
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing");
    }
    None
}

/// Prints why a rig is skipped.
pub fn skip(rig: &str, reason: &str) {
    eprintln!("skipped: {rig}: {reason}");
}

/// A fresh tmpfs mounted on a temp dir, unmounted (lazily if busy) on drop.
/// A rig's driver root is `<tmpfs>/aufs`, absent until the driver creates
/// it; its lock files live beside it in `<tmpfs>/locks`.
#[derive(Debug)]
pub struct Tmpfs {
    /// Where it is mounted.
    pub mountpoint: Utf8PathBuf,
    // Dropped after the unmount in `Drop`, so it removes an empty dir.
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs, `nosuid`, mode 0755, of at most 512 MiB (pages are
    /// used only as written); `nodev` unless device nodes are needed
    /// (overlay whiteouts are character devices).
    pub fn mount(allow_dev: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aufs-rig-")
            .tempdir()
            .expect("temp dir");
        let mountpoint = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("utf-8 temp dir");
        let mut flags = MsFlags::MS_NOSUID;
        if !allow_dev {
            flags |= MsFlags::MS_NODEV;
        }
        nix::mount::mount(
            Some("tmpfs"),
            mountpoint.as_std_path(),
            Some("tmpfs"),
            flags,
            Some("mode=0755,size=512m"),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {mountpoint}: {e}"));
        Tmpfs {
            mountpoint,
            _dir: dir,
        }
    }

    /// Mounts one for `rig`, or says why the rig is skipped (not root) and
    /// gives none.
    pub fn for_rig(rig: &str, allow_dev: bool) -> Option<Self> {
        if let Some(reason) = no_root_reason() {
            skip(rig, reason);
            return None;
        }
        Some(Self::mount(allow_dev))
    }

    /// A path inside the tmpfs.
    pub fn join(&self, rel: &str) -> Utf8PathBuf {
        self.mountpoint.join(rel)
    }

    /// The driver root of a rig on this tmpfs.
    pub fn root(&self) -> Utf8PathBuf {
        self.join("aufs")
    }

    /// The lock dir of a rig on this tmpfs.
    pub fn lock_dir(&self) -> Utf8PathBuf {
        self.join("locks")
    }
}

/// The real filesystem and host with `backend` and `locks`: what a rig
/// hands the driver.
pub fn real_ports(backend: Arc<dyn UnionBackend>, locks: &FlockLocks) -> Ports {
    Ports {
        archive: Arc::new(aufs_archive::DiskArchive),
        fs: Arc::new(LinuxFilesystem::new()),
        host: Arc::new(LinuxHost::new()),
        backend,
        locks: Arc::new(locks.clone()),
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.mountpoint.as_std_path();
        if nix::mount::umount2(path, MntFlags::empty()).is_err() {
            // Something below is still mounted or open: detach it all.
            if let Err(e) = nix::mount::umount2(path, MntFlags::MNT_DETACH) {
                eprintln!("cannot unmount rig tmpfs {}: {e}", self.mountpoint);
            }
        }
    }
}

/// One line of `/proc/self/mountinfo`: mount point and filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point, unescaped.
    pub point: Utf8PathBuf,
    /// The filesystem type (`fuse.aufs`, `overlay`, `tmpfs`...).
    pub fstype: String,
}

/// The mount table, read from `/proc` rather than through an adapter under
/// test.
pub fn mounts() -> Vec<Mount> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    table
        .lines()
        .filter_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let fstype = rest.split_whitespace().next()?;
            let point = fields.split_whitespace().nth(4)?;
            Some(Mount {
                point: unescape_octal(point).into(),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

/// Whether a FUSE filesystem (`fuse` or `fuse.<subtype>`) is mounted at
/// exactly `path`.
pub fn fuse_mounted_at(path: &Utf8Path) -> bool {
    mounted_at(path, |t| t == "fuse" || t.starts_with("fuse."))
}

/// Whether a filesystem whose type `fstype` accepts is mounted at exactly
/// `path`.
pub fn mounted_at(path: &Utf8Path, fstype: impl Fn(&str) -> bool) -> bool {
    mounts()
        .iter()
        .any(|m| m.point == path && fstype(&m.fstype))
}

/// Undoes mountinfo's `\ooo` escapes of space, tab, newline and backslash.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The union server program, built when needed.
///
/// `aufs-union-server` (a binary of `aufs-fuse`) rather than `aufsctl
/// __union-server`: it serves the same union with no leading argument and
/// builds from `aufs-fuse` alone, not the whole CLI. Cargo builds binaries
/// only for their own package's tests, so it is located beside this test's
/// executable (`<target>/<profile>/deps/<test>` → `<target>/<profile>/`)
/// and built with cargo there and in that profile; `AUFS_UNION_SERVER`
/// names a prebuilt one instead.
pub fn union_server() -> &'static Path {
    static SERVER: OnceLock<PathBuf> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Some(p) = std::env::var_os("AUFS_UNION_SERVER") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target dir");
        let program = profile_dir.join("aufs-union-server");
        build_union_server(target_dir, profile_dir);
        assert!(
            program.is_file(),
            "{} is missing after building it",
            program.display()
        );
        program
    })
}

/// Runs cargo so the server binary is current (a no-op when it is).
fn build_union_server(target_dir: &Path, profile_dir: &Path) {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "aufs-fuse",
        "--bin",
        "aufs-union-server",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    // `cargo test` builds into `debug` (dev profile) or `release`; a custom
    // profile builds into its own name.
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => {}
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run {cargo} to build aufs-union-server: {e}"));
    assert!(
        status.success(),
        "building aufs-union-server failed: {status}"
    );
}
