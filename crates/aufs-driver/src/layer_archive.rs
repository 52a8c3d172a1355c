//! The layer-archive half of the Go driver: ApplyDiff, Diff (with the exact
//! original bytes when the layer came from a tarball), Changes, DiffSize.
//!
//! With the direct parent (or none) these work on the layer's diff dir
//! alone, as aufs needs no parent for them. With another ancestor they
//! compare the two unions, as moby's `NaiveDiffDriver` does, but read in
//! process from the diff dirs: nothing is mounted.

use crate::driver::Driver;
use crate::error::{DriverError, Result};
use aufs_model::{Change, LayerId};
use aufs_ports::{Applied, ApplyTarget};
use camino::Utf8PathBuf;
use std::io::{Read, Write};

/// What applying a layer tarball did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The layer's diff size (Docker's `ApplyDiff` return value).
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tarball: the layer's DiffID.
    pub diff_id: Option<String>,
}

impl Driver {
    fn archive_err(id: &LayerId, op: &'static str) -> impl FnOnce(std::io::Error) -> DriverError {
        let id = id.clone();
        move |source| DriverError::Archive { id, op, source }
    }

    /// The layer's exact-bytes record.
    pub(crate) fn record(&self, id: &LayerId) -> Utf8PathBuf {
        self.layout()
            .tar_split_dir()
            .join(format!("{id}.tar-split.gz"))
    }

    /// Checks that the layer exists and `parent` (when given) is its direct
    /// parent; returns whether it is (`None` counts as direct for a layer
    /// with no parent).
    fn is_direct(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<bool> {
        let chain = self.parent_chain(id)?;
        match parent {
            None => Ok(chain.is_empty()),
            Some(p) if chain.parent() == Some(p) => Ok(true),
            Some(p) if chain.contains(p) => Ok(false),
            Some(p) => Err(DriverError::NotAnAncestor {
                id: id.clone(),
                parent: p.clone(),
            }),
        }
    }

    /// Applies a layer tarball (plain, gzip or zstd) into the layer's diff
    /// dir and records its exact bytes. The layer must exist, must not be
    /// mounted, and `parent`, when given, must be its direct parent. On any
    /// error the diff dir is left as it was.
    pub fn apply_diff(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        mut input: impl Read,
    ) -> Result<ApplyOutcome> {
        self.apply_with(id, parent, |target| {
            self.ports().archive.apply(target, &mut input)
        })
    }

    /// [`Driver::apply_diff`] for a tarball in a file (from its current
    /// offset): the real archive adapter maps a regular file rather than
    /// reading it, which saves a copy of every byte.
    pub fn apply_diff_file(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        input: &std::fs::File,
    ) -> Result<ApplyOutcome> {
        self.apply_with(id, parent, |target| {
            self.ports().archive.apply_file(target, input)
        })
    }

    fn apply_with(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        apply: impl FnOnce(&ApplyTarget<'_>) -> std::io::Result<Applied>,
    ) -> Result<ApplyOutcome> {
        let _lock = self.lock_layer(id)?;
        let chain = self.parent_chain(id)?;
        if let Some(p) = parent {
            if chain.parent() != Some(p) {
                return Err(DriverError::NotDirectParent {
                    id: id.clone(),
                    parent: p.clone(),
                });
            }
        }
        if self.references(id)? > 0 {
            return Err(DriverError::Mounted(id.clone()));
        }
        let record = self.record(id);
        // A staging dir per layer: applies of one layer are serialised by
        // its lock, so whatever is in it is left by an interrupted apply.
        let staging = self.layout().staging(id);
        self.ports()
            .fs
            .remove_all(&staging)
            .map_err(DriverError::io("remove stale staging dir", staging.clone()))?;
        for dir in [self.layout().tar_split_dir(), staging.clone()] {
            self.ports()
                .fs
                .create_dir_all(&dir, 0o700, self.dir_owner())
                .map_err(DriverError::io("create dir", dir.clone()))?;
        }
        let diff = self.layout().diff_dir(id);
        let target = ApplyTarget {
            diff: &diff,
            record: &record,
            staging: &staging,
            id_maps: self.id_maps(),
            chown: self.dir_owner().is_some(),
        };
        let report = apply(&target).map_err(Self::archive_err(id, "apply"));
        let _ = self.ports().fs.remove_all(&staging);
        let report = report?;
        if self.holds_claim(id) {
            let named_right = !self.chain_ids()
                || crate::chain_id::is_chain_id(id, chain.parent(), report.diff_id.as_deref());
            if named_right {
                // The layer this driver created incomplete is filled: it exists now.
                self.clear_incomplete(id)?;
                self.release_claim(id);
            } else {
                tracing::warn!(storage_driver = "aufs", %id, diff_id = ?report.diff_id, "applied content does not have the layer's chain id; the layer stays incomplete");
            }
        }
        tracing::debug!(storage_driver = "aufs", %id, size = report.size, entries = report.entries, "applied layer");
        Ok(ApplyOutcome {
            size: report.size,
            diff_id: report.diff_id,
        })
    }

    /// Writes the layer's changes against `parent` as an uncompressed
    /// tarball with aufs whiteouts. With the direct parent: the original
    /// applied tarball byte for byte when the layer is unchanged since, else
    /// the diff dir exported. With another ancestor: a computed diff.
    pub fn diff(&self, id: &LayerId, parent: Option<&LayerId>, mut out: impl Write) -> Result<u64> {
        let archive = &self.ports().archive;
        if !self.is_direct(id, parent)? {
            let (old, new) = self.unions(id, parent)?;
            let changes = archive
                .changes_between(old.as_deref(), &new)
                .map_err(Self::archive_err(id, "diff"))?;
            return archive
                .export_changes(&new, &changes, &mut out)
                .map_err(Self::archive_err(id, "export"));
        }
        archive
            .export(&self.layout().diff_dir(id), &self.record(id), &mut out)
            .map_err(Self::archive_err(id, "export"))
    }

    /// What the layer changed against `parent`, sorted by path (`docker diff`).
    pub fn changes(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<Vec<Change>> {
        let archive = &self.ports().archive;
        if !self.is_direct(id, parent)? {
            let (old, new) = self.unions(id, parent)?;
            return archive
                .changes_between(old.as_deref(), &new)
                .map_err(Self::archive_err(id, "changes"));
        }
        let lowers = self.parent_diff_dirs(id)?;
        archive
            .changes(&self.layout().diff_dir(id), &lowers)
            .map_err(Self::archive_err(id, "changes"))
    }

    /// Bytes of the layer's changes against `parent`: with the direct parent
    /// the apparent size of every non-directory entry of the diff dir,
    /// hardlinks once (Docker's `directory.Size`); with another ancestor the
    /// size of the computed diff's files.
    pub fn diff_size(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<u64> {
        let archive = &self.ports().archive;
        if !self.is_direct(id, parent)? {
            let (old, new) = self.unions(id, parent)?;
            let changes = archive
                .changes_between(old.as_deref(), &new)
                .map_err(Self::archive_err(id, "changes"))?;
            return archive
                .changes_size(&new, &changes)
                .map_err(Self::archive_err(id, "size"));
        }
        archive
            .diff_size(&self.layout().diff_dir(id))
            .map_err(Self::archive_err(id, "size"))
    }

    /// The branches of a layer's union (its diff dir on top, then its
    /// parents'), as its mount would show it.
    fn union_branches(&self, id: &LayerId) -> Result<Vec<Utf8PathBuf>> {
        let mut branches = vec![self.layout().diff_dir(id)];
        branches.extend(self.parent_diff_dirs(id)?);
        Ok(branches)
    }

    /// The unions of `parent` (when given) and of `id`, compared as the Go
    /// `NaiveDiffDriver` compares the two mounts, but read in process by
    /// the archive port: nothing is mounted.
    #[allow(clippy::type_complexity)]
    fn unions(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
    ) -> Result<(Option<Vec<Utf8PathBuf>>, Vec<Utf8PathBuf>)> {
        let new = self.union_branches(id)?;
        let old = parent.map(|p| self.union_branches(p)).transpose()?;
        Ok((old, new))
    }
}
