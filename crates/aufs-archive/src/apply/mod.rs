//! Applying a layer tarball into a diff dir, safely and atomically.
//!
//! The public entry points and the order of an apply live here: a staging
//! dir is made ([`staging`]), the stream is parsed and applied on threads of
//! its own ([`pipeline`], entry by entry in [`entry`], names checked by
//! [`names`]), and the staged tree is swapped in before the exact-bytes
//! metadata is installed beside it.

mod entry;
mod names;
mod pipeline;
mod staging;

use std::fs::File;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender};

use aufs_model::IdMappings;
use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{ArchiveError, Result};
use crate::pipe;
use crate::reader::TarEvents;
use crate::tarsplit::TarSplitWriter;

pub(crate) use names::is_dot_whiteout;
use staging::Staging;

/// How [`apply_layer`] applies a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Container-to-host uid and gid maps (empty: identity).
    pub id_maps: IdMappings,
    /// Record exact-bytes metadata into this file (see [`crate::reproduce`]).
    pub tar_split: Option<Utf8PathBuf>,
    /// Where the staging dir is made; must be on the diff dir's filesystem.
    /// Default: the diff dir's parent.
    pub staging_parent: Option<Utf8PathBuf>,
    /// `syncfs` the staging tree before it replaces the diff dir.
    pub sync: bool,
    /// Set owners from the tar (off for unprivileged use without id maps).
    pub chown: bool,
    /// Compute the sha256 of the uncompressed tar (the layer's DiffID).
    pub digest: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            id_maps: IdMappings::default(),
            tar_split: None,
            staging_parent: None,
            sync: true,
            chown: true,
            digest: true,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The diff size of the applied layer ([`crate::diff_size`] of the diff dir).
    pub size: u64,
    /// Bytes of uncompressed tar read (including trailing bytes).
    pub tar_bytes: u64,
    /// `sha256:<hex>` of the uncompressed tar, when asked for.
    pub diff_id: Option<String>,
    /// Entries applied.
    pub entries: u64,
    /// Device nodes skipped because the process may not create them.
    pub skipped_devices: u64,
}

/// Applies a layer tarball (plain, gzip or zstd) into `diff_dir`.
///
/// The tree is built in a private staging dir (a hardlink clone of the diff
/// dir's current content, if any), synced with one `syncfs`, then swapped in
/// with `renameat2(RENAME_EXCHANGE)`; on any error the diff dir is left as it
/// was. aufs whiteouts (`.wh.NAME`, `.wh..wh..opq`) are kept as files;
/// overlay-style whiteouts are converted to them. No entry can touch anything
/// outside the staging tree. The calling thread reads, decompresses and
/// hashes `input`; a second (scoped) thread writes the tree meanwhile, and
/// a third the tar-split metadata when it is recorded.
pub fn apply_layer(
    input: impl Read,
    diff_dir: &Utf8Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let span = tracing::info_span!("apply_layer", "storage-driver" = "aufs", diff_dir = %diff_dir);
    let _g = span.enter();
    let stream = crate::compress::decompress(input)?;
    apply_from(diff_dir, opts, &span, |tx, back| {
        pipe::pump(stream, opts.digest, tx, back)
    })
}

/// [`apply_layer`] for a tarball in a file, read from its current offset.
///
/// A file sealed against shrinking (a memfd with `F_SEAL_SHRINK`) is mapped
/// instead of read: an uncompressed layer then goes from the page cache to
/// the diff dir without a copy into buffers, and hashing may run ahead of
/// the applier without holding memory of its own; a compressed one is
/// decompressed straight from the mapping. Anything else (a file someone
/// could truncate meanwhile, a pipe, a socket) is read as [`apply_layer`]
/// reads it.
pub fn apply_layer_file(
    file: &File,
    diff_dir: &Utf8Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let Some(map) = crate::mapped::map_rest(file)? else {
        return apply_layer(file, diff_dir, opts);
    };
    let span = tracing::info_span!("apply_layer", "storage-driver" = "aufs", diff_dir = %diff_dir);
    let _g = span.enter();
    let data = map.rest();
    match crate::compress::detect(&data[..data.len().min(6)])? {
        crate::compress::Compression::None => apply_from(diff_dir, opts, &span, |tx, _back| {
            pipe::pump_mapped(data, opts.digest, tx)
        }),
        _ => {
            let stream = crate::compress::decompress(data)?;
            apply_from(diff_dir, opts, &span, |tx, back| {
                pipe::pump(stream, opts.digest, tx, back)
            })
        }
    }
}

/// The apply proper: `pump` feeds the stream's blocks (and hashes them) on
/// this thread while the tree is built in a staging dir, then swapped in.
fn apply_from<'m>(
    diff_dir: &Utf8Path,
    opts: &ApplyOptions,
    span: &tracing::Span,
    pump: impl FnOnce(SyncSender<pipe::Block<'m>>, Receiver<Vec<u8>>) -> pipe::Pumped,
) -> Result<ApplyReport> {
    let staging = Staging::create(diff_dir, opts)?;
    // Beside the staging tree when there is a staging dir: whoever clears
    // a dead apply's staging dir clears its temp metadata too.
    let split_tmp = opts.tar_split.as_ref().map(|p| {
        let name = format!(
            "{}.tmp-{}",
            p.file_name().unwrap_or("tar-split"),
            std::process::id()
        );
        match &opts.staging_parent {
            Some(dir) => dir.join(name),
            None => p.with_file_name(name),
        }
    });
    let result = (|| {
        let rec: Option<Box<dyn TarEvents>> = match &split_tmp {
            Some(tmp) => Some(Box::new(TarSplitWriter::create(tmp, opts.sync)?)),
            None => None,
        };
        let report = pipeline::apply_pipelined(&staging, opts, pump, rec, span, diff_dir)?;
        if opts.sync {
            staging.syncfs()?;
        }
        Ok(report)
    })();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(tmp) = &split_tmp {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
    };
    let shadow_tmp = match (&split_tmp, &opts.tar_split) {
        (Some(tmp), Some(_)) => {
            match staging.take_shadow(&Utf8PathBuf::from(format!("{tmp}.shadow"))) {
                Ok(moved) => moved,
                Err(e) => {
                    let _ = std::fs::remove_file(tmp);
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let cleanup = || {
        if let Some(tmp) = &split_tmp {
            let _ = std::fs::remove_file(tmp);
        }
        if let Some(d) = &shadow_tmp {
            let _ = std::fs::remove_dir_all(d);
        }
    };
    // Metadata of the old content goes before the swap: cut off between
    // the two, the layer has no exact bytes rather than another tar's.
    if let Some(dst) = &opts.tar_split {
        if let Err(e) = remove_if_present(dst) {
            cleanup();
            return Err(ArchiveError::io("removing old tar-split metadata", dst, e));
        }
    }
    if let Err(e) = staging.commit(diff_dir, opts.sync) {
        cleanup();
        return Err(e);
    }
    if let (Some(tmp), Some(dst)) = (&split_tmp, &opts.tar_split) {
        let shadow = crate::tarsplit::shadow_dir(dst);
        let installed = match std::fs::remove_dir_all(&shadow) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
        .and_then(|()| match &shadow_tmp {
            Some(d) => std::fs::rename(d, &shadow),
            None => Ok(()),
        })
        .map_err(|e| ArchiveError::io("installing tar-split metadata", dst.clone(), e))
        // The seal first: metadata in place without its seal would be
        // checked by content only.
        .and_then(|()| crate::seal::write(dst, diff_dir, opts.sync))
        .and_then(|()| {
            std::fs::rename(tmp, dst)
                .map_err(|e| ArchiveError::io("installing tar-split metadata", dst.clone(), e))
        });
        if let Err(e) = installed {
            cleanup();
            return Err(e);
        }
    }
    tracing::debug!(
        size = report.size,
        entries = report.entries,
        "layer applied"
    );
    Ok(report)
}

fn remove_if_present(p: &Utf8Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}
