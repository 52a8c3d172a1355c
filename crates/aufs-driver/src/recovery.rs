//! Crash safety: every multi-step change of the store leaves states that
//! the next start of any process recognises and finishes or undoes.
//!
//! - `incomplete/<id>`: a create, import or removal of the layer has not
//!   finished. The layer is absent meanwhile; once neither its lock nor its
//!   claim is held, every trace of it is removed.
//! - `staging/<id>`: an apply's staging tree and temp files; stale once the
//!   layer's lock is free.
//! - `removing/<id>`: the dirs of a removal, moved out of `diff/` and `mnt/`.
//! - `.<name>.<unique>.tmp` in `layers/`, `refs/` and `incomplete/`: a temp
//!   file of an atomic write of `<name>`, made under that layer's lock.
//! - `tar-split/<id>.tar-split.gz[.seal].tmp-<pid>`: metadata an apply was
//!   installing after its swap.
//!
//! Docker's own `diff/<id>-removing` and `mnt/<id>-removing` are removed as
//! the Go driver does, unless a layer of that name exists.

use crate::driver::Driver;
use crate::error::{DriverError, Result};
use aufs_model::{LayerId, REMOVING_SUFFIX};
use aufs_ports::FileKind;
use camino::{Utf8Path, Utf8PathBuf};

impl Driver {
    /// True when the layer has an incomplete marker (or it cannot be told).
    pub fn is_incomplete(&self, id: &LayerId) -> bool {
        !matches!(
            self.ports().fs.kind(&self.layout().incomplete_marker(id)),
            Ok(None)
        )
    }

    /// Marks the layer incomplete; the caller holds its lock.
    pub(crate) fn mark_incomplete(&self, id: &LayerId) -> Result<()> {
        let marker = self.layout().incomplete_marker(id);
        match self.ports().fs.write_new(&marker, b"") {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                Err(DriverError::io("mark incomplete", marker)(e))
            }
            _ => Ok(()),
        }
    }

    /// Marks the layer complete; the caller holds its lock.
    pub(crate) fn clear_incomplete(&self, id: &LayerId) -> Result<()> {
        let marker = self.layout().incomplete_marker(id);
        match self.ports().fs.remove_file(&marker) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                Err(DriverError::io("mark complete", marker)(e))
            }
            _ => Ok(()),
        }
    }

    /// Removes every trace of a layer marked incomplete, its marker last;
    /// the caller holds its lock and it is unmounted. Each step tolerates
    /// having been done already, so a removal cut off anywhere is finished
    /// by running this again.
    pub(crate) fn remove_traces(&self, id: &LayerId) -> Result<()> {
        let fs = &self.ports().fs;
        let layout = self.layout();
        let layers_file = layout.layers_file(id);
        ignore_missing(fs.remove_file(&layers_file))
            .map_err(DriverError::io("remove layers file of", layers_file))?;
        let trash = layout.removing(id);
        // Anything there was moved by an earlier attempt at this removal.
        fs.remove_all(&trash)
            .map_err(DriverError::io("remove", trash.clone()))?;
        fs.create_dir_all(&trash, crate::driver::ROOT_DIR_MODE, self.dir_owner())
            .map_err(DriverError::io("create dir", trash.clone()))?;
        for (dir, name) in [
            (layout.diff_dir(id), "diff"),
            (layout.mount_point(id), "mnt"),
        ] {
            if let Err(e) = ignore_missing(fs.rename(&dir, &trash.join(name))) {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    tracing::warn!(storage_driver = "aufs", %dir, error = %e, "error performing atomic remove due to EBUSY");
                }
                return Err(DriverError::io("prepare atomic delete of", dir)(e));
            }
        }
        fs.remove_all(&trash)
            .map_err(DriverError::io("remove", trash))?;
        self.refs_forget(id)?;
        let staging = layout.staging(id);
        fs.remove_all(&staging)
            .map_err(DriverError::io("remove staging dir", staging))?;
        for path in self.ports().archive.record_paths(&self.record(id)) {
            fs.remove_all(&path)
                .map_err(DriverError::io("remove exact-bytes metadata", path))?;
        }
        self.clear_incomplete(id)?;
        self.release_claim(id);
        self.forget_cached_path(id);
        Ok(())
    }

    /// Finishes or undoes what dead processes left half done: incomplete
    /// layers are removed, staging trees, removal trash and temp files
    /// deleted. A layer whose lock (or claim) a live process holds is left
    /// alone. Every item is tried; the first error is returned.
    pub fn recover(&self) -> Result<()> {
        let mut first_err = None;
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                tracing::warn!(storage_driver = "aufs", error = %e.full_message(), "recovery step failed");
                first_err.get_or_insert(e);
            }
        };
        let layout = self.layout();
        for (name, kind) in self.entries(&layout.incomplete_dir(), &mut note) {
            if kind == FileKind::File && !name.starts_with('.') {
                note(self.recover_incomplete(&name));
            }
        }
        for dir in [layout.staging_dir(), layout.removing_dir()] {
            for (name, _) in self.entries(&dir, &mut note) {
                note(self.remove_if_unlocked(&name, &dir.join(&name)));
            }
        }
        for dir in [
            layout.layers_dir(),
            layout.refs_dir(),
            layout.incomplete_dir(),
        ] {
            for (name, kind) in self.entries(&dir, &mut note) {
                if let (FileKind::File, Some(owner)) = (kind, temp_file_owner(&name)) {
                    note(self.remove_if_unlocked(owner, &dir.join(&name)));
                }
            }
        }
        let tar_split = layout.tar_split_dir();
        for (name, _) in self.entries(&tar_split, &mut note) {
            if let Some(owner) = tar_split_temp_owner(&name) {
                note(self.remove_if_unlocked(owner, &tar_split.join(&name)));
            }
        }
        for dir in [layout.mnt_root(), layout.diff_root()] {
            for (name, kind) in self.entries(&dir, &mut note) {
                if kind == FileKind::Dir && name.ends_with(REMOVING_SUFFIX) {
                    note(self.remove_docker_trash(&name, &dir.join(&name)));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn entries(
        &self,
        dir: &Utf8Path,
        note: &mut impl FnMut(Result<()>),
    ) -> Vec<(String, FileKind)> {
        match self.ports().fs.read_dir(dir) {
            Ok(entries) => entries.into_iter().map(|e| (e.name, e.kind)).collect(),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Vec::new(),
            Err(e) => {
                note(Err(DriverError::io("read dir", dir.to_owned())(e)));
                Vec::new()
            }
        }
    }

    fn recover_incomplete(&self, name: &str) -> Result<()> {
        let Some(id) = owner_id(name) else {
            return Ok(());
        };
        let Some(_lock) = self.try_lock(&id)? else {
            return Ok(());
        };
        let Some(_claim) = self.try_claim(&id)? else {
            return Ok(());
        };
        // Its owner may have finished between the listing and the lock.
        if !self.is_incomplete(&id) {
            return Ok(());
        }
        tracing::info!(storage_driver = "aufs", %id, "removing a layer whose create, import or removal was cut off");
        self.unmount_if_mounted(&self.layout().mount_point(&id))?;
        self.remove_traces(&id)
    }

    /// Removes `path`, made by the store for layer `owner`, unless a live
    /// process holds that layer.
    fn remove_if_unlocked(&self, owner: &str, path: &Utf8Path) -> Result<()> {
        let Some(id) = owner_id(owner) else {
            return Ok(());
        };
        let Some(_lock) = self.try_lock(&id)? else {
            return Ok(());
        };
        tracing::debug!(storage_driver = "aufs", %id, %path, "removing what a dead process left");
        self.ports()
            .fs
            .remove_all(path)
            .map_err(DriverError::io("remove stale", path.to_owned()))
    }

    /// Docker's `<dir>-removing`: trash of the Go driver, never a layer of
    /// ours (ids may not end in `-removing`) unless a layers file says so.
    fn remove_docker_trash(&self, name: &str, path: &Utf8Path) -> Result<()> {
        let layers_file: Utf8PathBuf = self.layout().layers_dir().join(name);
        if !matches!(self.ports().fs.kind(&layers_file), Ok(None)) {
            return Ok(());
        }
        tracing::debug!(storage_driver = "aufs", dir = %path, "cleaning up stale layer dir");
        self.ports()
            .fs
            .remove_all(path)
            .map_err(DriverError::io("remove stale", path.to_owned()))
    }
}

/// The layer an entry of the store's own dirs belongs to. The store never
/// makes one for an invalid id, so such an entry is someone else's: left
/// alone, and no reason for recovery to fail.
fn owner_id(name: &str) -> Option<LayerId> {
    match LayerId::new(name) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(storage_driver = "aufs", error = %e, "recovery leaves alone an entry that names no layer");
            None
        }
    }
}

/// The name whose atomic write left `name` (`.<name>.<pid>-<n>-<nanos>.tmp`).
fn temp_file_owner(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (owner, unique) = inner.rsplit_once('.')?;
    let mut parts = unique.split('-');
    let numeric = parts.next()?.bytes().all(|b| b.is_ascii_digit())
        && parts.next()?.bytes().all(|b| b.is_ascii_digit())
        && parts.next()?.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.next().is_none();
    (numeric && !owner.is_empty()).then_some(owner)
}

/// The layer whose apply left `name` in `tar-split/`: a temp file of its
/// metadata or seal (`<id>.tar-split.gz[.seal].tmp-<pid>`).
fn tar_split_temp_owner(name: &str) -> Option<&str> {
    let (owner, rest) = name.split_once(".tar-split.gz")?;
    let pid = rest
        .strip_prefix(".tmp-")
        .or_else(|| rest.strip_prefix(".seal.tmp-"))?;
    (!owner.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then_some(owner)
}

fn ignore_missing(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::temp_file_owner;

    #[test]
    fn tar_split_temp_names_give_their_layer() {
        use super::tar_split_temp_owner as owner;
        assert_eq!(owner("a.b.tar-split.gz.tmp-12"), Some("a.b"));
        assert_eq!(owner("x.tar-split.gz.seal.tmp-7"), Some("x"));
        for other in [
            "x.tar-split.gz",
            "x.tar-split.gz.seal",
            "x.tar-split.gz.tmp-",
            ".tar-split.gz.tmp-1",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
    }

    #[test]
    fn temp_file_names_give_their_owner() {
        assert_eq!(temp_file_owner(".a.b.123-4-1f.tmp"), Some("a.b"));
        assert_eq!(temp_file_owner(".x.1-0-0.tmp"), Some("x"));
        for other in ["x", ".x.tmp", ".x.1-2.tmp", "..1-2-3.tmp", ".x.1-2-zz.tmp"] {
            assert_eq!(temp_file_owner(other), None, "{other}");
        }
    }
}
