//! [`UnionBackend`] stacking kernel overlayfs on a read-only FUSE view.
//!
//! Every write through a FUSE union is a round trip to its server, so an
//! untar into one costs several times what it costs the kernel. Here only
//! the layer's parents are served by FUSE, read-only and `noatime` (no
//! copy-up code runs there, and the kernel keeps a read-only file's
//! attributes after a read); the layer's own diff dir is the upper dir of
//! kernel overlayfs stacked on that view, so creates, writes, chmod, chown,
//! utimes and copy-up run in the kernel.
//!
//! The store stays aufs at rest: the diff dir is converted to overlay form
//! just before the mount and back after the unmount
//! ([`crate::overlay_form`]). A marker written before the conversion
//! (`<stack>/<id>/overlay-form`, naming the diff dir and the mount point)
//! says a layer may be in overlay form; [`StackedBackend::recover`] puts
//! every layer whose mount is gone back into aufs form.
//!
//! Where overlayfs cannot be mounted (no permission, an upper filesystem it
//! refuses, an old kernel, a path its options cannot carry), the layer is
//! mounted as a full FUSE union instead, and the log says why.

use crate::backend::FuseBackend;
use crate::overlay_form::{to_aufs, to_overlay};
use aufs_linux::mountinfo::{MountInfoSource, ProcSelfMountInfo};
use aufs_ports::{BackendKind, UnionBackend, UnionSpec};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::mount::{MountFlags, UnmountFlags};
use std::io;
use std::path::Path;
use std::time::Duration;

/// The marker of a layer that may be in overlay form.
const MARKER: &str = "overlay-form";

/// How the backend mounts a layer with a writable top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackMode {
    /// Kernel overlayfs over a read-only FUSE view where the kernel allows
    /// it, else a full FUSE union.
    Auto,
    /// Always kernel overlayfs over a read-only FUSE view; an error where
    /// it cannot be mounted.
    Stacked,
}

/// Mounts layers as kernel overlayfs over a read-only FUSE view of their
/// parents, keeping per-layer state in `stack_dir` (`<root>/stack`).
#[derive(Debug, Clone)]
pub struct StackedBackend {
    fuse: FuseBackend,
    stack_dir: Utf8PathBuf,
    mode: StackMode,
}

/// Where one layer's stacked mount keeps its parts.
#[derive(Debug)]
struct Layout {
    dir: Utf8PathBuf,
    lower: Utf8PathBuf,
    work: Utf8PathBuf,
    stash: Utf8PathBuf,
    marker: Utf8PathBuf,
}

fn errno(code: i32, msg: String) -> io::Error {
    io::Error::new(io::Error::from_raw_os_error(code).kind(), msg)
}

/// True when `p` can be given in overlayfs's comma-separated options.
fn fits_options(p: &Utf8Path) -> bool {
    !p.as_str().contains([',', ':', '\\', '\n'])
}

fn overlay_mounted_at(target: &Path) -> io::Result<bool> {
    let mp = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    Ok(ProcSelfMountInfo
        .mounts()?
        .iter()
        .any(|m| m.fs_type == "overlay" && m.mount_point == mp))
}

/// Unmounts `target`, retrying while it is busy (as moby's aufs `Unmount`):
/// a busy overlay cannot be detached lazily, since its upper dir is
/// converted back right after.
fn umount_retrying(target: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl StackedBackend {
    /// A backend mounting the read-only parts with `fuse` and keeping
    /// per-layer state under `stack_dir`.
    pub fn new(fuse: FuseBackend, stack_dir: impl Into<Utf8PathBuf>, mode: StackMode) -> Self {
        StackedBackend {
            fuse,
            stack_dir: stack_dir.into(),
            mode,
        }
    }

    fn layout(&self, rw: &Utf8Path) -> io::Result<Layout> {
        let id = rw
            .file_name()
            .ok_or_else(|| errno(libc::EINVAL, format!("{rw}: no layer name")))?;
        let dir = self.stack_dir.join(id);
        Ok(Layout {
            lower: dir.join("lower"),
            work: dir.join("work"),
            stash: dir.join("stash"),
            marker: dir.join(MARKER),
            dir,
        })
    }

    /// The layers whose marker says they may be in overlay form: (diff
    /// dir, mount point, layout).
    fn marked(&self) -> io::Result<Vec<(Utf8PathBuf, Utf8PathBuf, Layout)>> {
        let entries = match std::fs::read_dir(&self.stack_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            let Ok(text) = std::fs::read_to_string(e.path().join(MARKER)) else {
                continue;
            };
            let mut lines = text.lines();
            if let (Some(rw), Some(target)) = (lines.next(), lines.next()) {
                let rw = Utf8PathBuf::from(rw);
                let layout = self.layout(&rw)?;
                out.push((rw, Utf8PathBuf::from(target), layout));
            }
        }
        Ok(out)
    }

    /// Writes the marker (durably) before the diff dir changes form.
    fn mark(&self, l: &Layout, rw: &Utf8Path, target: &Utf8Path) -> io::Result<()> {
        let tmp = l.dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&tmp, format!("{rw}\n{target}\n"))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &l.marker)?;
        std::fs::File::open(&l.dir)?.sync_all()
    }

    /// Puts `rw` back in aufs form and forgets the layer's stacked state.
    fn back_to_aufs(&self, rw: &Utf8Path, l: &Layout) -> io::Result<()> {
        to_aufs(rw, &l.stash)?;
        std::fs::remove_file(&l.marker).or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        let _ = std::fs::remove_dir_all(&l.work);
        Ok(())
    }

    fn mount_stacked(&self, spec: &UnionSpec) -> io::Result<()> {
        let l = self.layout(&spec.rw)?;
        for p in [&l.lower, &spec.rw, &l.work] {
            if !fits_options(p) {
                return Err(errno(
                    libc::EINVAL,
                    format!("{p}: overlayfs options cannot carry this path"),
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&l.work);
        std::fs::create_dir_all(&l.work)?;
        std::fs::create_dir_all(&l.lower)?;
        self.fuse.mount_read_only(&spec.ro, &l.lower)?;
        let stacked = (|| {
            self.mark(&l, &spec.rw, &spec.target)?;
            to_overlay(&spec.rw, &l.stash)?;
            let opts = format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
                l.lower, spec.rw, l.work
            );
            let opts = std::ffi::CString::new(opts).map_err(io::Error::other)?;
            rustix::mount::mount(
                "overlay",
                spec.target.as_std_path(),
                "overlay",
                MountFlags::empty(),
                Some(opts.as_c_str()),
            )
            .map_err(io::Error::from)
        })();
        if let Err(e) = stacked {
            let undo = self.back_to_aufs(&spec.rw, &l);
            let _ = self.fuse.unmount(&l.lower);
            undo?;
            return Err(e);
        }
        tracing::info!(storage_driver = "aufs", target = %spec.target, "stacked union mounted (overlayfs over a read-only FUSE view)");
        Ok(())
    }

    /// Puts back into aufs form every layer left in overlay form whose
    /// stacked mount is gone (a crash, a reboot, a killed server). Layers
    /// mounted right now are left alone.
    pub fn recover(&self) -> io::Result<()> {
        for (rw, target, l) in self.marked()? {
            let lower_alive = self.fuse.is_mounted(&l.lower)? && self.fuse.server_alive(&l.lower);
            if overlay_mounted_at(target.as_std_path())? && lower_alive {
                continue;
            }
            tracing::warn!(storage_driver = "aufs", %rw, %target, "layer left in overlay form, converting it back");
            if overlay_mounted_at(target.as_std_path())? {
                rustix::mount::unmount(target.as_std_path(), UnmountFlags::DETACH)?;
            }
            if self.fuse.is_mounted(&l.lower)? {
                let _ = self.fuse.unmount(&l.lower);
            }
            self.back_to_aufs(&rw, &l)?;
        }
        Ok(())
    }
}

impl UnionBackend for StackedBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Fuse
    }

    fn mount(&self, spec: &UnionSpec) -> io::Result<()> {
        if spec.ro.is_empty() {
            return self.fuse.mount(spec);
        }
        if overlay_mounted_at(spec.target.as_std_path())? || self.fuse.is_mounted(&spec.target)? {
            return Err(errno(
                libc::EBUSY,
                format!("a union is already mounted at {}", spec.target),
            ));
        }
        match self.mount_stacked(spec) {
            Ok(()) => Ok(()),
            Err(e) if self.mode == StackMode::Auto => {
                tracing::warn!(storage_driver = "aufs", target = %spec.target, error = %e, "kernel overlayfs not usable here, mounting a full FUSE union");
                self.fuse.mount(spec)
            }
            Err(e) => Err(e),
        }
    }

    fn unmount(&self, target: &Utf8Path) -> io::Result<()> {
        if !overlay_mounted_at(target.as_std_path())? {
            return self.fuse.unmount(target);
        }
        let layer = self
            .marked()?
            .into_iter()
            .find(|(_, t, _)| t == target)
            .ok_or_else(|| errno(libc::EINVAL, format!("{target}: no stacked layer recorded")))?;
        let (rw, _, l) = layer;
        umount_retrying(target.as_std_path())?;
        self.fuse.unmount(&l.lower)?;
        self.back_to_aufs(&rw, &l)
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        Ok(overlay_mounted_at(target.as_std_path())? || self.fuse.is_mounted(target)?)
    }

    fn dirperm1_supported(&self) -> bool {
        false
    }

    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()> {
        let root_path =
            std::fs::canonicalize(root).unwrap_or_else(|_| root.as_std_path().to_path_buf());
        for (_, target, _) in self.marked()? {
            let canon = std::fs::canonicalize(target.as_std_path())
                .unwrap_or_else(|_| target.as_std_path().to_path_buf());
            if canon.starts_with(&root_path) && overlay_mounted_at(target.as_std_path())? {
                self.unmount(&target)?;
            }
        }
        self.fuse.unmount_all_under(root)?;
        self.recover()
    }
}
