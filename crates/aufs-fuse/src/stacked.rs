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
//! (`<stack>/<id>/overlay-form`) says a layer may be in overlay form;
//! [`StackedBackend::recover`] puts every layer whose mount is gone back
//! into aufs form. Every path comes from the store's layout
//! (`<root>/diff/<id>`, `<root>/mnt/<id>`), never from the marker, and a
//! per-layer lock (`<stack>/<id>/lock`) keeps recovery away from a layer
//! another process is mounting or unmounting.
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
/// parents, keeping per-layer state in `<root>/stack` for a store at
/// `<root>` (layers' diff dirs in `<root>/diff`, mount points in
/// `<root>/mnt`).
#[derive(Debug, Clone)]
pub struct StackedBackend {
    fuse: FuseBackend,
    root: Utf8PathBuf,
    mode: StackMode,
}

/// Where one layer's stacked mount keeps its parts, all derived from the
/// store's layout and the layer's id.
#[derive(Debug)]
struct Layout {
    rw: Utf8PathBuf,
    target: Utf8PathBuf,
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

fn canonical(target: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf())
}

fn fs_type_at(target: &Path) -> io::Result<Option<String>> {
    let mp = canonical(target);
    Ok(ProcSelfMountInfo
        .mounts()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == mp)
        .map(|m| m.fs_type))
}

fn overlay_mounted_at(target: &Path) -> io::Result<bool> {
    Ok(fs_type_at(target)?.as_deref() == Some("overlay"))
}

/// Unmounts `target`, retrying while it is busy (as moby's aufs `Unmount`):
/// a busy overlay cannot be detached lazily, since its upper dir is
/// converted back right after.
fn umount_retrying(target: &Path, tries: u32) -> io::Result<()> {
    let mut tried = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if tried + 1 < tries => {
                tried += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// An exclusive lock on a layer's stacked state, released when dropped.
struct StateLock(#[allow(dead_code)] std::fs::File);

/// Why a stacked mount failed.
enum Refused {
    /// Nothing was changed (or all of it was undone): a full FUSE union
    /// may be mounted instead.
    Cleanly(io::Error),
    /// The diff dir could not be put back into aufs form: nothing may be
    /// mounted on it until it is.
    Stuck(io::Error),
}

impl StackedBackend {
    /// A backend for the store at `root`, mounting the read-only parts
    /// with `fuse`.
    pub fn new(fuse: FuseBackend, root: impl Into<Utf8PathBuf>, mode: StackMode) -> Self {
        StackedBackend {
            fuse,
            root: root.into(),
            mode,
        }
    }

    fn layout_of(&self, id: &str) -> Layout {
        let dir = self.root.join("stack").join(id);
        Layout {
            rw: self.root.join("diff").join(id),
            target: self.root.join("mnt").join(id),
            lower: dir.join("lower"),
            work: dir.join("work"),
            stash: dir.join("stash"),
            marker: dir.join(MARKER),
            dir,
        }
    }

    /// The layout of `spec`, when it is a layer of this store laid out as
    /// the driver lays them out (else it is not stacked).
    fn layout(&self, spec: &UnionSpec) -> io::Result<Layout> {
        let id = spec.rw.file_name().unwrap_or_default();
        let l = self.layout_of(id);
        if id.is_empty() || l.rw != spec.rw || l.target != spec.target {
            return Err(errno(
                libc::EINVAL,
                format!(
                    "{} is not a layer of the store at {} mounted at its mnt dir",
                    spec.rw, self.root
                ),
            ));
        }
        Ok(l)
    }

    /// Takes the layer's state lock (`wait`: blocking; else `None` when
    /// another process holds it).
    fn lock(&self, l: &Layout, wait: bool) -> io::Result<Option<StateLock>> {
        std::fs::create_dir_all(&l.dir)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(l.dir.join("lock"))?;
        let how = if wait {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        };
        match rustix::fs::flock(&f, how) {
            Ok(()) => Ok(Some(StateLock(f))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The ids of the layers whose marker says they may be in overlay form.
    fn marked(&self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.root.join("stack")) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            let Ok(id) = e.file_name().into_string() else {
                continue;
            };
            if self.layout_of(&id).marker.exists() {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Writes the marker (durably) before the diff dir changes form.
    fn mark(&self, l: &Layout) -> io::Result<()> {
        let tmp = l.dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&tmp, format!("{}\n{}\n", l.rw, l.target))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &l.marker)?;
        std::fs::File::open(&l.dir)?.sync_all()
    }

    /// Puts the layer back in aufs form and forgets its stacked state.
    fn back_to_aufs(&self, l: &Layout) -> io::Result<()> {
        to_aufs(&l.rw, &l.stash)?;
        match std::fs::remove_file(&l.marker) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let _ = std::fs::remove_dir_all(&l.work);
        Ok(())
    }

    fn mount_stacked(&self, spec: &UnionSpec) -> Result<(), Refused> {
        let l = self.layout(spec).map_err(Refused::Cleanly)?;
        for p in [&l.lower, &l.rw, &l.work] {
            if !fits_options(p) {
                return Err(Refused::Cleanly(errno(
                    libc::EINVAL,
                    format!("{p}: overlayfs options cannot carry this path"),
                )));
            }
        }
        let _lock = self.lock(&l, true).map_err(Refused::Cleanly)?;
        if l.marker.exists() {
            // Left in overlay form and not recovered yet: do it now.
            self.back_to_aufs(&l).map_err(Refused::Stuck)?;
        }
        let prepared = (|| {
            let _ = std::fs::remove_dir_all(&l.work);
            std::fs::create_dir_all(&l.work)?;
            std::fs::create_dir_all(&l.lower)?;
            self.fuse.mount_read_only(&spec.ro, &l.lower)
        })();
        prepared.map_err(Refused::Cleanly)?;
        let stacked = (|| {
            self.mark(&l)?;
            to_overlay(&l.rw, &l.stash, &l.lower)?;
            let opts = format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
                l.lower, l.rw, l.work
            );
            let opts = std::ffi::CString::new(opts).map_err(io::Error::other)?;
            rustix::mount::mount(
                "overlay",
                l.target.as_std_path(),
                "overlay",
                MountFlags::empty(),
                Some(opts.as_c_str()),
            )
            .map_err(io::Error::from)
        })();
        if let Err(e) = stacked {
            let undo = self.back_to_aufs(&l);
            let _ = self.fuse.unmount(&l.lower);
            return Err(match undo {
                Ok(()) => Refused::Cleanly(e),
                Err(u) => Refused::Stuck(errno(
                    u.raw_os_error().unwrap_or(libc::EIO),
                    format!("{e}; and {} could not go back to aufs form: {u}", l.rw),
                )),
            });
        }
        tracing::info!(storage_driver = "aufs", target = %l.target, "stacked union mounted (overlayfs over a read-only FUSE view)");
        Ok(())
    }

    /// Puts back into aufs form every layer left in overlay form whose
    /// stacked mount is gone (a crash, a reboot, a killed server). A layer
    /// mounted right now, or whose state another process holds, is left
    /// alone; so is one whose dead overlay mount is still in use (the
    /// unmount fails busy). One layer's failure is logged and does not
    /// stop the others: that layer stays marked, and mounting it fails
    /// until it is fixed.
    pub fn recover(&self) -> io::Result<()> {
        for id in self.marked()? {
            let l = self.layout_of(&id);
            if let Err(e) = self.recover_layer(&l) {
                tracing::error!(storage_driver = "aufs", layer = %l.rw, error = %e, "layer left in overlay form could not go back to aufs form");
            }
        }
        Ok(())
    }

    fn recover_layer(&self, l: &Layout) -> io::Result<()> {
        let Some(_lock) = self.lock(l, false)? else {
            return Ok(());
        };
        if !l.marker.exists() {
            return Ok(());
        }
        match fs_type_at(l.target.as_std_path())?.as_deref() {
            Some("overlay") => {
                if self.fuse.is_mounted(&l.lower)? && self.fuse.server_alive(&l.lower) {
                    return Ok(());
                }
                // Its lower view died: unmounted only if nothing uses it.
                if let Err(e) = umount_retrying(l.target.as_std_path(), 1) {
                    tracing::warn!(storage_driver = "aufs", target = %l.target, error = %e, "stacked mount with a dead lower view still in use");
                    return Ok(());
                }
            }
            // A full FUSE union mounted there instead: not ours to touch.
            Some(t) if t == "fuse" || t.starts_with("fuse.") => return Ok(()),
            _ => {}
        }
        tracing::warn!(storage_driver = "aufs", layer = %l.rw, "layer left in overlay form, converting it back");
        if self.fuse.is_mounted(&l.lower)? {
            let _ = self.fuse.unmount(&l.lower);
        }
        self.back_to_aufs(l)
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
            Err(Refused::Cleanly(e)) if self.mode == StackMode::Auto => {
                tracing::warn!(storage_driver = "aufs", target = %spec.target, error = %e, "kernel overlayfs not usable here, mounting a full FUSE union");
                self.fuse.mount(spec)
            }
            Err(Refused::Cleanly(e) | Refused::Stuck(e)) => Err(e),
        }
    }

    fn unmount(&self, target: &Utf8Path) -> io::Result<()> {
        if !overlay_mounted_at(target.as_std_path())? {
            return self.fuse.unmount(target);
        }
        let id = target.file_name().unwrap_or_default();
        let l = self.layout_of(id);
        if id.is_empty() || l.target != target || !l.marker.exists() {
            return Err(errno(
                libc::EINVAL,
                format!(
                    "{target}: not a stacked mount of the store at {}",
                    self.root
                ),
            ));
        }
        let _lock = self.lock(&l, true)?;
        umount_retrying(target.as_std_path(), 5)?;
        self.fuse.unmount(&l.lower)?;
        self.back_to_aufs(&l)
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        Ok(overlay_mounted_at(target.as_std_path())? || self.fuse.is_mounted(target)?)
    }

    fn dirperm1_supported(&self) -> bool {
        false
    }

    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()> {
        let under = canonical(root.as_std_path());
        for id in self.marked()? {
            let l = self.layout_of(&id);
            if canonical(l.target.as_std_path()).starts_with(&under)
                && overlay_mounted_at(l.target.as_std_path())?
            {
                self.unmount(&l.target)?;
            }
        }
        self.fuse.unmount_all_under(root)?;
        self.recover()
    }
}
