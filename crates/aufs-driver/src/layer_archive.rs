//! The layer-archive half of the Go driver: ApplyDiff, Diff (with the exact
//! original bytes when the layer came from a tarball), Changes, DiffSize.
//!
//! With the direct parent (or none) these work on the layer's diff dir
//! alone, as aufs needs no parent for them. With another ancestor they
//! compare the two unions, as moby's `NaiveDiffDriver` does, but read in
//! process from the diff dirs: nothing is mounted.

use crate::driver::Driver;
use crate::error::{DriverError, Result};
use aufs_archive::{ApplyOptions, Change, TarSplitStore, UnionView};
use aufs_model::LayerId;
use camino::{Utf8Path, Utf8PathBuf};
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
    fn archive_err(id: &LayerId) -> impl FnOnce(aufs_archive::ArchiveError) -> DriverError + '_ {
        move |source| DriverError::Archive {
            id: id.to_string(),
            source,
        }
    }

    fn tar_split(&self) -> TarSplitStore {
        TarSplitStore::new(self.layout().tar_split_dir())
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
                id: id.to_string(),
                parent: p.to_string(),
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
        input: impl Read,
    ) -> Result<ApplyOutcome> {
        self.apply_with(id, parent, |diff, opts| {
            aufs_archive::apply_layer(input, diff, opts)
        })
    }

    /// [`Driver::apply_diff`] for a tarball in a file (from its current
    /// offset): a regular file is mapped rather than read, which saves a copy
    /// of every byte (see [`aufs_archive::apply_layer_file`]).
    pub fn apply_diff_file(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        input: &std::fs::File,
    ) -> Result<ApplyOutcome> {
        self.apply_with(id, parent, |diff, opts| {
            aufs_archive::apply_layer_file(input, diff, opts)
        })
    }

    fn apply_with(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        apply: impl FnOnce(&Utf8Path, &ApplyOptions) -> aufs_archive::Result<aufs_archive::ApplyReport>,
    ) -> Result<ApplyOutcome> {
        let _lock = self.lock_layer(id)?;
        let chain = self.parent_chain(id)?;
        if let Some(p) = parent {
            if chain.parent() != Some(p) {
                return Err(DriverError::NotDirectParent {
                    id: id.to_string(),
                    parent: p.to_string(),
                });
            }
        }
        if self.references(id)? > 0 {
            return Err(DriverError::Mounted(id.to_string()));
        }
        let store = self.tar_split();
        let meta = store.path_for(id.as_str());
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
        let opts = ApplyOptions {
            id_maps: self.id_maps().clone(),
            tar_split: Some(meta),
            chown: self.dir_owner().is_some(),
            staging_parent: Some(staging.clone()),
            ..ApplyOptions::default()
        };
        let diff = self.layout().diff_dir(id);
        let report = apply(&diff, &opts).map_err(Self::archive_err(id));
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
        if !self.is_direct(id, parent)? {
            return self.with_views(id, parent, |old, new| {
                let changes =
                    aufs_archive::changes_between_views(old, new).map_err(Self::archive_err(id))?;
                aufs_archive::export_changes_view(new, &changes, &mut out)
                    .map_err(Self::archive_err(id))
            });
        }
        let diff = self.layout().diff_dir(id);
        let store = self.tar_split();
        if store.contains(id.as_str()) {
            match store.verify(id.as_str(), &diff) {
                Ok(()) => {
                    return store
                        .reproduce(id.as_str(), &diff, out)
                        .map_err(Self::archive_err(id))
                }
                Err(e) if e.is_not_reproducible() => {
                    tracing::info!(storage_driver = "aufs", %id, reason = %e, "layer changed since apply; exporting its diff dir");
                }
                Err(e) => return Err(Self::archive_err(id)(e)),
            }
        }
        aufs_archive::export_diff(&diff, out).map_err(Self::archive_err(id))
    }

    /// What the layer changed against `parent`, sorted by path (`docker diff`).
    pub fn changes(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<Vec<Change>> {
        if !self.is_direct(id, parent)? {
            return self.with_views(id, parent, |old, new| {
                aufs_archive::changes_between_views(old, new).map_err(Self::archive_err(id))
            });
        }
        let lowers = self.parent_diff_dirs(id)?;
        let lowers: Vec<&Utf8Path> = lowers.iter().map(Utf8PathBuf::as_path).collect();
        aufs_archive::changes(&lowers, &self.layout().diff_dir(id)).map_err(Self::archive_err(id))
    }

    /// Bytes of the layer's changes against `parent`: with the direct parent
    /// the apparent size of every non-directory entry of the diff dir,
    /// hardlinks once (Docker's `directory.Size`); with another ancestor the
    /// size of the computed diff's files.
    pub fn diff_size(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<u64> {
        if !self.is_direct(id, parent)? {
            return self.with_views(id, parent, |old, new| {
                let changes =
                    aufs_archive::changes_between_views(old, new).map_err(Self::archive_err(id))?;
                aufs_archive::changes_size_view(new, &changes).map_err(Self::archive_err(id))
            });
        }
        aufs_archive::diff_size(&self.layout().diff_dir(id)).map_err(Self::archive_err(id))
    }

    /// The read-only union of a layer and its parents (its diff dir on
    /// top), as its mount would show it.
    fn union_view(&self, id: &LayerId) -> Result<UnionView> {
        let top = self.layout().diff_dir(id);
        let parents = self.parent_diff_dirs(id)?;
        let branches: Vec<&Utf8Path> = std::iter::once(top.as_path())
            .chain(parents.iter().map(Utf8PathBuf::as_path))
            .collect();
        UnionView::open(None, &branches).map_err(|source| {
            Self::archive_err(id)(aufs_archive::ArchiveError::Union {
                path: "/".into(),
                source,
            })
        })
    }

    /// Runs `f` on the unions of `id` and of `parent` (when given), as the Go
    /// `NaiveDiffDriver` does on the two mounts, without mounting: the views
    /// are read from the diff dirs in process.
    fn with_views<T>(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        f: impl FnOnce(Option<&UnionView>, &UnionView) -> Result<T>,
    ) -> Result<T> {
        let new = self.union_view(id)?;
        let old = parent.map(|p| self.union_view(p)).transpose()?;
        f(old.as_ref(), &new)
    }
}
