//! [`DiskArchive`]: this crate as the driver's [`LayerArchive`] port.

use crate::{ApplyOptions, ArchiveError, Change, TarSplitStore};
use aufs_ports::{Applied, ApplyTarget, LayerArchive};
use aufs_union::UnionView;
use camino::{Utf8Path, Utf8PathBuf};
use std::io::{self, Read, Write};

/// The real [`LayerArchive`]: layer tarballs applied into and exported from
/// diff dirs on disk, exact bytes kept as tar-split records, diffs against
/// an older ancestor read from in-process union views.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskArchive;

impl DiskArchive {
    /// The adapter.
    pub fn new() -> Self {
        DiskArchive
    }
}

/// An [`ArchiveError`] as an `io::Error` of its OS error's kind.
pub fn to_io(e: ArchiveError) -> io::Error {
    let kind = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .map_or(io::ErrorKind::Other, io::Error::kind);
    io::Error::new(kind, e)
}

fn options(target: &ApplyTarget<'_>) -> ApplyOptions {
    ApplyOptions {
        id_maps: target.id_maps.clone(),
        tar_split: Some(target.record.to_owned()),
        chown: target.chown,
        staging_parent: Some(target.staging.to_owned()),
        ..ApplyOptions::default()
    }
}

fn applied(r: crate::ApplyReport) -> Applied {
    Applied {
        size: r.size,
        diff_id: r.diff_id,
        entries: r.entries,
    }
}

fn view(branches: &[Utf8PathBuf]) -> io::Result<UnionView> {
    let b: Vec<&Utf8Path> = branches.iter().map(Utf8PathBuf::as_path).collect();
    UnionView::open(None, &b).map_err(|source| {
        to_io(ArchiveError::Union {
            path: "/".into(),
            source,
        })
    })
}

/// The store and key of a record path (`<dir>/<key>.tar-split.gz`).
fn store_of(record: &Utf8Path) -> Option<(TarSplitStore, &str)> {
    let key = record.file_name()?.strip_suffix(".tar-split.gz")?;
    Some((TarSplitStore::new(record.parent()?), key))
}

impl LayerArchive for DiskArchive {
    fn apply(&self, target: &ApplyTarget<'_>, input: &mut dyn Read) -> io::Result<Applied> {
        crate::apply_layer(input, target.diff, &options(target))
            .map(applied)
            .map_err(to_io)
    }

    fn apply_file(&self, target: &ApplyTarget<'_>, input: &std::fs::File) -> io::Result<Applied> {
        crate::apply_layer_file(input, target.diff, &options(target))
            .map(applied)
            .map_err(to_io)
    }

    fn export(&self, diff: &Utf8Path, record: &Utf8Path, out: &mut dyn Write) -> io::Result<u64> {
        if record.is_file() {
            match crate::verify(record, diff) {
                Ok(()) => return crate::reproduce(record, diff, out).map_err(to_io),
                Err(e) if e.is_not_reproducible() => {
                    tracing::info!(storage_driver = "aufs", %diff, reason = %e, "layer changed since apply; exporting its diff dir");
                }
                Err(e) => return Err(to_io(e)),
            }
        }
        crate::export_diff(diff, out).map_err(to_io)
    }

    fn changes(&self, diff: &Utf8Path, lowers: &[Utf8PathBuf]) -> io::Result<Vec<Change>> {
        let lowers: Vec<&Utf8Path> = lowers.iter().map(Utf8PathBuf::as_path).collect();
        crate::changes(&lowers, diff).map_err(to_io)
    }

    fn diff_size(&self, diff: &Utf8Path) -> io::Result<u64> {
        crate::diff_size(diff).map_err(to_io)
    }

    fn changes_between(
        &self,
        old: Option<&[Utf8PathBuf]>,
        new: &[Utf8PathBuf],
    ) -> io::Result<Vec<Change>> {
        let new = view(new)?;
        let old = old.map(view).transpose()?;
        crate::changes_between_views(old.as_ref(), &new).map_err(to_io)
    }

    fn changes_size(&self, new: &[Utf8PathBuf], changes: &[Change]) -> io::Result<u64> {
        crate::changes_size_view(&view(new)?, changes).map_err(to_io)
    }

    fn export_changes(
        &self,
        new: &[Utf8PathBuf],
        changes: &[Change],
        out: &mut dyn Write,
    ) -> io::Result<u64> {
        crate::export_changes_view(&view(new)?, changes, out).map_err(to_io)
    }

    fn record_paths(&self, record: &Utf8Path) -> Vec<Utf8PathBuf> {
        match store_of(record) {
            Some((store, key)) => store.paths_for(key).into(),
            None => vec![record.to_owned()],
        }
    }
}
