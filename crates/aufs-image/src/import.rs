//! The import: read the image's metadata, then create and apply one layer
//! per image layer, bottom first, each verified before the next.

use std::io::{self, Read};

use aufs_driver::{CreateOpts, Driver};
use aufs_model::LayerId;
use camino::Utf8Path;
use sha2::{Digest as _, Sha256};

use crate::chain::{chain_ids, Digest};
use crate::error::{ImageError, Result};
use crate::readers::{docker_save_layers, malformed, mismatch, oci_layers, LayerRef};
use crate::source::Source;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The image's top layer.
    pub top: LayerId,
    /// Every layer of the image, bottom first, and whether this import
    /// created it (false: it was there already).
    pub layers: Vec<(LayerId, bool)>,
}

/// Told about each layer as the import reaches it.
pub trait Progress {
    /// Layer `index` of `total` (from 0) is `id`; `skipped` when present.
    fn layer(&mut self, index: usize, total: usize, id: &LayerId, skipped: bool);
}

impl<F: FnMut(usize, usize, &LayerId, bool)> Progress for F {
    fn layer(&mut self, index: usize, total: usize, id: &LayerId, skipped: bool) {
        self(index, total, id, skipped)
    }
}

/// Imports the image at `image` (a `docker save` tarball, or an OCI image
/// layout as a directory or a tar) into `driver`'s store; layers are named
/// by their chain id's hex and those already present are skipped.
pub fn import(
    driver: &Driver,
    image: &Utf8Path,
    progress: &mut dyn Progress,
) -> Result<ImportReport> {
    let src = Source::open(image)?;
    let layers = if src.has("manifest.json") {
        docker_save_layers(&src)?
    } else if src.has("index.json") && src.has("oci-layout") {
        oci_layers(&src)?
    } else {
        return Err(ImageError::UnknownFormat {
            path: image.to_owned(),
            why: "no manifest.json (docker save) and no index.json with oci-layout (OCI)".into(),
        });
    };
    if layers.is_empty() {
        return Err(malformed(&src, "image", "it has no layers"));
    }
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain = chain_ids(&diff_ids);
    let mut report = Vec::with_capacity(layers.len());
    let mut parent: Option<LayerId> = None;
    for (i, (layer, chain_id)) in layers.iter().zip(&chain).enumerate() {
        let id = LayerId::new(chain_id.hex()).expect("64 hex digits are a valid layer id");
        let present = driver.exists(&id);
        progress.layer(i, layers.len(), &id, present);
        if !present {
            create_and_apply(driver, &src, i, layer, &id, parent.as_ref())?;
            tracing::info!(storage_driver = "aufs", layer = %id, diff_id = %layer.diff_id, "imported layer");
        }
        report.push((id.clone(), !present));
        parent = Some(id);
    }
    Ok(ImportReport {
        top: parent.expect("at least one layer"),
        layers: report,
    })
}

fn create_and_apply(
    driver: &Driver,
    src: &Source,
    index: usize,
    layer: &LayerRef,
    id: &LayerId,
    parent: Option<&LayerId>,
) -> Result<()> {
    let driver_err = |source| ImageError::Driver {
        id: id.to_string(),
        source,
    };
    driver
        .create(id, parent, &CreateOpts::default())
        .map_err(driver_err)?;
    let applied = (|| {
        let mut input = Hashing::new(src.open_file(&layer.file, layer.size)?);
        let outcome = driver
            .apply_diff(id, parent, &mut input)
            .map_err(driver_err)?;
        // Whatever the decompressor left unread still counts for the blob.
        io::copy(&mut input, &mut io::sink()).map_err(|source| ImageError::Io {
            path: src.path().join(&layer.file),
            op: "reading layer",
            source,
        })?;
        let what = format!("layer {index} ({})", layer.file);
        if let Some(want) = &layer.digest {
            let got = input.digest();
            if &got != want {
                return Err(mismatch(src, &what, want, &got));
            }
        }
        let got = outcome.diff_id.as_deref().and_then(Digest::parse);
        if got.as_ref() != Some(&layer.diff_id) {
            let got = got.map_or_else(|| "none".to_owned(), |d| d.to_string());
            return Err(ImageError::DigestMismatch {
                path: src.path().to_owned(),
                what: format!("{what}, uncompressed (DiffID)"),
                expected: layer.diff_id.to_string(),
                actual: got,
            });
        }
        Ok(())
    })();
    if applied.is_err() {
        // Nothing half-imported stays behind.
        if let Err(e) = driver.remove(id) {
            tracing::warn!(storage_driver = "aufs", layer = %id, error = %e, "could not remove a layer that failed to import");
        }
    }
    applied
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
        }
    }

    fn digest(&self) -> Digest {
        Digest::from_sha(self.sha.clone().finalize().into())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}
