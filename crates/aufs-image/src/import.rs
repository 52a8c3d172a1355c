//! The import: read the image's metadata, then create and apply one layer
//! per image layer, bottom first, each verified before the next.

use std::io::{self, Read};

use aufs_driver::{CreateOpts, Driver};
use aufs_model::LayerId;
use camino::Utf8Path;
use oci_spec::image::{ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use crate::chain::{chain_ids, Digest};
use crate::error::{ImageError, Result};
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

/// One image layer: the file holding it, the digest of that file when the
/// format names files by digest (OCI blobs, usually compressed), and the
/// DiffID of its uncompressed tar.
struct LayerRef {
    file: String,
    blob: Option<Digest>,
    diff_id: Digest,
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
        let mut input = Hashing::new(src.open_file(&layer.file)?);
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
        if let Some(want) = &layer.blob {
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

/// `docker save`: `manifest.json` names the config and the layer tars.
fn docker_save_layers(src: &Source) -> Result<Vec<LayerRef>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let manifest: Vec<Entry> = json(src, "manifest.json")?;
    let [entry] = <[Entry; 1]>::try_from(manifest).map_err(|m| {
        malformed(
            src,
            "manifest.json",
            &format!("holds {} images; import one at a time", m.len()),
        )
    })?;
    let config = src.read(&entry.config)?;
    // The config is named by its digest (`<hex>.json`, or `blobs/sha256/<hex>`).
    let stem = entry
        .config
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json");
    if let Some(want) = Digest::parse(&format!("sha256:{stem}")) {
        let got = Digest::of(&config);
        if got != want {
            return Err(mismatch(src, &entry.config, &want, &got));
        }
    }
    let diff_ids = config_diff_ids(src, &entry.config, &config)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(malformed(
            src,
            "manifest.json",
            &format!(
                "{} layers, but the config has {} diff ids",
                entry.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    Ok(entry
        .layers
        .into_iter()
        .zip(diff_ids)
        .map(|(file, diff_id)| LayerRef {
            file,
            blob: None,
            diff_id,
        })
        .collect())
}

/// OCI layout: `index.json` → the image manifest → config and layer blobs.
fn oci_layers(src: &Source) -> Result<Vec<LayerRef>> {
    let index: ImageIndex = json(src, "index.json")?;
    let [desc] = <[_; 1]>::try_from(index.manifests().clone()).map_err(|m: Vec<_>| {
        malformed(
            src,
            "index.json",
            &format!(
                "lists {} manifests; one image is imported at a time",
                m.len()
            ),
        )
    })?;
    let manifest_name = blob_name(src, "index.json", desc.digest().as_ref())?;
    let manifest_bytes = verified_blob(src, &manifest_name, desc.digest().as_ref())?;
    let manifest = ImageManifest::from_reader(&manifest_bytes[..])
        .map_err(|e| malformed(src, &manifest_name, &format!("not an image manifest: {e}")))?;
    let config_name = blob_name(src, &manifest_name, manifest.config().digest().as_ref())?;
    let config = verified_blob(src, &config_name, manifest.config().digest().as_ref())?;
    let diff_ids = config_diff_ids(src, &config_name, &config)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(malformed(
            src,
            &manifest_name,
            &format!(
                "{} layers, but the config has {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| {
            let digest = l.digest().to_string();
            Ok(LayerRef {
                file: blob_name(src, &manifest_name, &digest)?,
                blob: Digest::parse(&digest),
                diff_id,
            })
        })
        .collect()
}

/// `blobs/sha256/<hex>` for a sha256 digest; other algorithms are refused.
fn blob_name(src: &Source, from: &str, digest: &str) -> Result<String> {
    let d = Digest::parse(digest).ok_or_else(|| {
        malformed(
            src,
            from,
            &format!("digest {digest:?} is not sha256:<64 hex>"),
        )
    })?;
    Ok(format!("blobs/sha256/{}", d.hex()))
}

fn verified_blob(src: &Source, name: &str, digest: &str) -> Result<Vec<u8>> {
    let data = src.read(name)?;
    let want = Digest::parse(digest).expect("checked by blob_name");
    let got = Digest::of(&data);
    if got != want {
        return Err(mismatch(src, name, &want, &got));
    }
    Ok(data)
}

/// `rootfs.diff_ids` of an image config (Docker's and OCI's are alike).
fn config_diff_ids(src: &Source, name: &str, config: &[u8]) -> Result<Vec<Digest>> {
    crate::chain::config_diff_ids(config).map_err(|why| malformed(src, name, &why))
}

fn json<T: serde::de::DeserializeOwned>(src: &Source, name: &str) -> Result<T> {
    serde_json::from_slice(&src.read(name)?).map_err(|e| malformed(src, name, &e.to_string()))
}

fn malformed(src: &Source, what: &str, why: &str) -> ImageError {
    ImageError::Malformed {
        path: src.path().to_owned(),
        what: what.to_owned(),
        why: why.to_owned(),
    }
}

fn mismatch(src: &Source, what: &str, want: &Digest, got: &Digest) -> ImageError {
    ImageError::DigestMismatch {
        path: src.path().to_owned(),
        what: what.to_owned(),
        expected: want.to_string(),
        actual: got.to_string(),
    }
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
