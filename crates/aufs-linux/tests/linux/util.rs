//! Helpers: root check, temp dirs cleaned up robustly, mounts undone on drop.

use aufs_linux::LinuxFilesystem;
use aufs_ports::Filesystem;
use camino::{Utf8Path, Utf8PathBuf};
use nix::mount::{MntFlags, MsFlags};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns from the test with a printed reason unless running as root.
macro_rules! require_root {
    () => {
        if !crate::util::is_root() {
            eprintln!("skipping {}: needs root", module_path!());
            return;
        }
    };
}
pub(crate) use require_root;

/// A temp dir removed (mounts, immutable flags and all) on drop.
pub struct Tmp {
    path: Utf8PathBuf,
}

impl Tmp {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aufs-linux-test-")
            .tempdir()
            .unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.keep()).unwrap();
        Tmp { path }
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    pub fn join(&self, rest: &str) -> Utf8PathBuf {
        self.path.join(rest)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if let Err(e) = LinuxFilesystem::new().remove_all(&self.path) {
            eprintln!("cleanup of {} failed: {e}", self.path);
        }
    }
}

/// A mount undone (lazily) on drop.
pub struct Mounted {
    target: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

pub fn mount_tmpfs(target: impl AsRef<Path>) -> Mounted {
    let target = target.as_ref().to_owned();
    nix::mount::mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=4m"),
    )
    .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", target.display()));
    Mounted { target }
}

pub fn bind(source: impl AsRef<Path>, target: impl AsRef<Path>) -> Mounted {
    let target = target.as_ref().to_owned();
    nix::mount::mount(
        Some(source.as_ref()),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("bind mount on {}: {e}", target.display()));
    Mounted { target }
}

pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A filesystem made by `mkfs_cmd` on a sparse image file, loop-mounted on
/// `target`; the loop device is released when the mount goes (autoclear).
pub fn loop_mount(
    image: &Utf8Path,
    size: u64,
    mkfs: &[&str],
    target: &Utf8Path,
) -> Result<Mounted, String> {
    let file = std::fs::File::create(image).map_err(|e| e.to_string())?;
    file.set_len(size).map_err(|e| e.to_string())?;
    drop(file);
    let out = Command::new(mkfs[0])
        .args(&mkfs[1..])
        .arg(image)
        .output()
        .map_err(|e| format!("{}: {e}", mkfs[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            mkfs[0],
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::create_dir_all(target).map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(target)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -o loop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Mounted {
        target: target.as_std_path().to_owned(),
    })
}

impl From<Utf8PathBuf> for Mounted {
    fn from(target: Utf8PathBuf) -> Self {
        Mounted {
            target: target.into_std_path_buf(),
        }
    }
}
