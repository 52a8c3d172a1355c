//! The image's metadata, read into the list of its layers: `docker save`'s
//! `manifest.json` and config, or an OCI layout's `index.json`, image
//! manifest and config. The parsers take bytes alone (fuzzed as they are);
//! the readers around them fetch each file, by its declared size and
//! checked against its digest where the format gives one.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::chain::Digest;
use crate::error::{ImageError, Result};
use crate::source::Source;

/// One image layer: the file holding it, the digest and size of that file
/// when the format gives them (OCI blobs, usually compressed), and the
/// DiffID of its uncompressed tar.
pub(crate) struct LayerRef {
    pub(crate) file: String,
    pub(crate) digest: Option<Digest>,
    pub(crate) size: Option<u64>,
    pub(crate) diff_id: Digest,
}

/// A blob as a descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
}

impl Blob {
    /// `blobs/sha256/<hex>`, its file in the layout.
    pub(crate) fn file(&self) -> String {
        format!("blobs/sha256/{}", self.digest.hex())
    }

    fn of(d: &Descriptor) -> std::result::Result<Self, String> {
        let digest = d.digest().to_string();
        Ok(Blob {
            digest: Digest::parse(&digest)
                .ok_or_else(|| format!("digest {digest:?} is not sha256:<64 hex>"))?,
            size: d.size(),
        })
    }
}

/// `manifest.json` of a `docker save` tarball: the config file and layer
/// files of its one image.
pub(crate) fn docker_manifest(data: &[u8]) -> std::result::Result<(String, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let manifest: Vec<Entry> = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let [entry] = <[Entry; 1]>::try_from(manifest)
        .map_err(|m| format!("holds {} images; import one at a time", m.len()))?;
    Ok((entry.config, entry.layers))
}

/// `index.json` of an OCI layout: its one image manifest.
pub(crate) fn oci_index(data: &[u8]) -> std::result::Result<Blob, String> {
    let index: ImageIndex = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let [desc] = <[_; 1]>::try_from(index.manifests().clone()).map_err(|m: Vec<_>| {
        format!(
            "lists {} manifests; one image is imported at a time",
            m.len()
        )
    })?;
    Blob::of(&desc)
}

/// An OCI image manifest: its config blob and layer blobs, bottom first.
pub(crate) fn oci_manifest(data: &[u8]) -> std::result::Result<(Blob, Vec<Blob>), String> {
    let manifest =
        ImageManifest::from_reader(data).map_err(|e| format!("not an image manifest: {e}"))?;
    let layers = manifest
        .layers()
        .iter()
        .map(Blob::of)
        .collect::<std::result::Result<_, _>>()?;
    Ok((Blob::of(manifest.config())?, layers))
}

/// `docker save`: `manifest.json` names the config and the layer tars.
pub(crate) fn docker_save_layers(src: &Source) -> Result<Vec<LayerRef>> {
    let (config_name, layers) = docker_manifest(&src.read("manifest.json", None)?)
        .map_err(|why| malformed(src, "manifest.json", &why))?;
    let config = src.read(&config_name, None)?;
    // The config is named by its digest (`<hex>.json`, or `blobs/sha256/<hex>`).
    let stem = config_name
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".json");
    if let Some(want) = Digest::parse(&format!("sha256:{stem}")) {
        let got = Digest::of(&config);
        if got != want {
            return Err(mismatch(src, &config_name, &want, &got));
        }
    }
    let diff_ids = config_diff_ids(src, &config_name, &config)?;
    if diff_ids.len() != layers.len() {
        return Err(malformed(
            src,
            "manifest.json",
            &format!(
                "{} layers, but the config has {} diff ids",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    Ok(layers
        .into_iter()
        .zip(diff_ids)
        .map(|(file, diff_id)| LayerRef {
            file,
            digest: None,
            size: None,
            diff_id,
        })
        .collect())
}

/// OCI layout: `index.json` → the image manifest → config and layer blobs.
pub(crate) fn oci_layers(src: &Source) -> Result<Vec<LayerRef>> {
    let desc = oci_index(&src.read("index.json", None)?)
        .map_err(|why| malformed(src, "index.json", &why))?;
    let manifest_name = desc.file();
    let (config, layers) = oci_manifest(&verified_blob(src, &desc)?)
        .map_err(|why| malformed(src, &manifest_name, &why))?;
    let config_name = config.file();
    let config = verified_blob(src, &config)?;
    let diff_ids = config_diff_ids(src, &config_name, &config)?;
    if diff_ids.len() != layers.len() {
        return Err(malformed(
            src,
            &manifest_name,
            &format!(
                "{} layers, but the config has {} diff ids",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    Ok(layers
        .into_iter()
        .zip(diff_ids)
        .map(|(blob, diff_id)| LayerRef {
            file: blob.file(),
            digest: Some(blob.digest),
            size: Some(blob.size),
            diff_id,
        })
        .collect())
}

/// A small blob, read by its declared size and checked against its digest.
fn verified_blob(src: &Source, blob: &Blob) -> Result<Vec<u8>> {
    let name = blob.file();
    let data = src.read(&name, Some(blob.size))?;
    let got = Digest::of(&data);
    if got != blob.digest {
        return Err(mismatch(src, &name, &blob.digest, &got));
    }
    Ok(data)
}

/// `rootfs.diff_ids` of an image config (Docker's and OCI's are alike).
fn config_diff_ids(src: &Source, name: &str, config: &[u8]) -> Result<Vec<Digest>> {
    crate::chain::config_diff_ids(config).map_err(|why| malformed(src, name, &why))
}

pub(crate) fn malformed(src: &Source, what: &str, why: &str) -> ImageError {
    ImageError::Malformed {
        path: src.path().to_owned(),
        what: what.to_owned(),
        why: why.to_owned(),
    }
}

pub(crate) fn mismatch(src: &Source, what: &str, want: &Digest, got: &Digest) -> ImageError {
    ImageError::DigestMismatch {
        path: src.path().to_owned(),
        what: what.to_owned(),
        expected: want.to_string(),
        actual: got.to_string(),
    }
}
