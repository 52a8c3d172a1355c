//! A Docker install that used the aufs driver, read in place: its images
//! (`image/aufs`: `repositories.json`, `imagedb`, `layerdb`), its
//! containers (`containers/*/config.v2.json` and the layerdb mounts), and
//! its images exported with their original layer bytes, rebuilt from the
//! layer store's own tar-split metadata and the `aufs/diff` dirs.
//!
//! The install is read as untrusted input: nothing beneath it is opened
//! through a symlink ([`crate::beneath`]; in a layer's diff dir, through
//! none that leaves the layer), metadata reads are capped, a layer's
//! bytes are exported only when every file matches its tar-split record
//! (size and CRC-64), and every id and name is checked ([`names`]) before
//! it is returned to be printed.

mod names;

use std::collections::HashMap;
use std::sync::Arc;

use camino::{Utf8Path, Utf8PathBuf};

use crate::beneath::{Beneath, Symlinks};
use crate::chain::{chain_ids, Digest};
use crate::error::{ImageError, Result};
use crate::export::{in_work_dir, stage_blob, write_docker_save};

/// The root of a Docker install (`/var/lib/docker`).
#[derive(Debug, Clone)]
pub struct DockerRoot {
    dir: Utf8PathBuf,
    root: Arc<Beneath>,
}

/// An image of a Docker install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyImage {
    /// Its id: the digest of its config.
    pub id: Digest,
    /// `repo:tag` names pointing at it (none for a dangling image).
    pub repo_tags: Vec<String>,
    /// Bytes of its layers, as the layer store recorded them.
    pub size: u64,
}

/// A container of a Docker install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyContainer {
    /// Its name, without the leading `/` (as Docker allows names:
    /// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
    pub name: String,
    /// Its id (64 hex digits).
    pub id: String,
    /// The image it was created from, as given (`busybox`), else its id.
    pub image: String,
    /// Its read-write layer: a layer id (64 hex digits) under the
    /// install's `aufs/`.
    pub rw_layer: String,
}

impl DockerRoot {
    /// The install at `dir`; it must have `image/aufs`.
    pub fn open(dir: &Utf8Path) -> Result<Self> {
        let root = Beneath::open(dir, Symlinks::Refused)?;
        match root.dir(Utf8Path::new("image/aufs")) {
            Ok(_) => {}
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::UnknownFormat {
                    path: dir.to_owned(),
                    why: "no image/aufs: not a Docker install that used the aufs driver".into(),
                })
            }
            Err(e) => return Err(e),
        }
        Ok(Self {
            dir: dir.to_owned(),
            root: Arc::new(root),
        })
    }

    /// `image/aufs/<rel>`, relative to the root.
    fn meta(rel: &str) -> Utf8PathBuf {
        Utf8Path::new("image/aufs").join(rel)
    }

    fn read_text(&self, rel: &Utf8Path) -> Result<String> {
        let data = self.root.read(rel)?;
        let text = std::str::from_utf8(&data).map_err(|_| self.malformed(rel, "not UTF-8"))?;
        Ok(text.trim().to_owned())
    }

    /// A 64-hex id from file `rel` (a cache id, a mount id).
    fn read_id(&self, rel: &Utf8Path) -> Result<String> {
        let id = self.read_text(rel)?;
        if !names::is_hex_id(&id) {
            return Err(self.malformed(rel, "not a Docker id (64 hex digits)"));
        }
        Ok(id)
    }

    fn malformed(&self, rel: &Utf8Path, why: &str) -> ImageError {
        ImageError::Malformed {
            path: self.dir.clone(),
            what: rel.to_string(),
            why: why.to_owned(),
        }
    }

    /// `repo:tag` names by image id (`repositories.json`; digest
    /// references are left out).
    fn tags(&self) -> Result<HashMap<String, Vec<String>>> {
        let rel = Self::meta("repositories.json");
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let Some(data) = self.root.read_if_present(&rel)? else {
            return Ok(out);
        };
        let v: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| self.malformed(&rel, &e.to_string()))?;
        if let Some(repos) = v.get("Repositories").and_then(|r| r.as_object()) {
            for refs in repos.values().filter_map(|r| r.as_object()) {
                for (name, id) in refs {
                    if !names::is_reference(name) {
                        return Err(self.malformed(&rel, "a name is not an image reference"));
                    }
                    if let (false, Some(id)) = (name.contains('@'), id.as_str()) {
                        out.entry(id.to_owned()).or_default().push(name.clone());
                    }
                }
            }
        }
        for names in out.values_mut() {
            names.sort();
        }
        Ok(out)
    }

    fn config_path(id: &Digest) -> Utf8PathBuf {
        Self::meta("imagedb/content/sha256").join(id.hex())
    }

    /// The config of image `id`, checked against its id.
    fn config(&self, id: &Digest) -> Result<Vec<u8>> {
        let rel = Self::config_path(id);
        let config = self.root.read(&rel)?;
        if &Digest::of(&config) != id {
            return Err(ImageError::Unverified {
                path: self.dir.clone(),
                what: rel.to_string(),
                expected: id.to_string(),
            });
        }
        Ok(config)
    }

    fn diff_ids(&self, id: &Digest, config: &[u8]) -> Result<Vec<Digest>> {
        crate::chain::config_diff_ids(config)
            .map_err(|why| self.malformed(&Self::config_path(id), &why))
    }

    fn layer_dir(chain: &Digest) -> Utf8PathBuf {
        Self::meta("layerdb/sha256").join(chain.hex())
    }

    /// Every image, sorted by name then id.
    pub fn images(&self) -> Result<Vec<LegacyImage>> {
        let tags = self.tags()?;
        let mut out = Vec::new();
        let listed = self.root.list(&Self::meta("imagedb/content/sha256"))?;
        for name in listed.unwrap_or_default() {
            let Some(id) = Digest::parse(&format!("sha256:{name}")) else {
                tracing::debug!(docker_root = %self.dir, name = %name.escape_debug(), "skipping a file of imagedb that is not an image id");
                continue;
            };
            let config = self.config(&id)?;
            let mut size = 0u64;
            for chain in chain_ids(&self.diff_ids(&id, &config)?) {
                let rel = Self::layer_dir(&chain).join("size");
                let layer: u64 = self
                    .read_text(&rel)?
                    .parse()
                    .map_err(|_| self.malformed(&rel, "not a size in bytes"))?;
                size = size.saturating_add(layer);
            }
            out.push(LegacyImage {
                repo_tags: tags.get(id.as_str()).cloned().unwrap_or_default(),
                id,
                size,
            });
        }
        out.sort_by(|a, b| (&a.repo_tags, &a.id.as_str()).cmp(&(&b.repo_tags, &b.id.as_str())));
        Ok(out)
    }

    /// Every container, sorted by name.
    pub fn containers(&self) -> Result<Vec<LegacyContainer>> {
        let mut out = Vec::new();
        let listed = self.root.list(Utf8Path::new("containers"))?;
        for cid in listed.unwrap_or_default() {
            if !names::is_hex_id(&cid) {
                tracing::debug!(docker_root = %self.dir, name = %cid.escape_debug(), "skipping an entry of containers/ that is not a container id");
                continue;
            }
            let rel = Utf8Path::new("containers")
                .join(&cid)
                .join("config.v2.json");
            let Some(data) = self.root.read_if_present(&rel)? else {
                continue;
            };
            let v: serde_json::Value =
                serde_json::from_slice(&data).map_err(|e| self.malformed(&rel, &e.to_string()))?;
            let image = v
                .pointer("/Config/Image")
                .and_then(|i| i.as_str())
                .filter(|i| !i.is_empty())
                .or_else(|| v.get("Image").and_then(|i| i.as_str()))
                .unwrap_or_default()
                .to_owned();
            if !names::is_reference(&image) {
                return Err(self.malformed(&rel, "its image is not an image reference"));
            }
            let name = v
                .get("Name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned();
            if !names::is_container_name(&name) {
                return Err(self.malformed(&rel, "its name is not a container name"));
            }
            let rw_layer =
                self.read_id(&Self::meta("layerdb/mounts").join(&cid).join("mount-id"))?;
            out.push(LegacyContainer {
                name,
                id: cid,
                image,
                rw_layer,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Image `reference`: `repo:tag` (`repo` means `repo:latest`), or an id
    /// (`sha256:<hex>`, the hex, or a prefix naming one image).
    pub fn resolve(&self, reference: &str) -> Result<LegacyImage> {
        let images = self.images()?;
        let tagged = if reference.contains(':') && !reference.starts_with("sha256:") {
            reference.to_owned()
        } else {
            format!("{reference}:latest")
        };
        if let Some(i) = images.iter().find(|i| i.repo_tags.contains(&tagged)) {
            return Ok(i.clone());
        }
        let hex = reference.trim_start_matches("sha256:");
        let found: Vec<_> = images
            .iter()
            .filter(|i| !hex.is_empty() && i.id.hex().starts_with(hex))
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ImageError::Malformed {
                path: self.dir.clone(),
                what: reference.to_owned(),
                why: "no such image".into(),
            }),
            many => Err(ImageError::Malformed {
                path: self.dir.clone(),
                what: reference.to_owned(),
                why: format!("names {} images", many.len()),
            }),
        }
    }

    /// Image `reference` as a `docker save` tarball at `out`, every layer
    /// rebuilt byte for byte from the layer store's tar-split metadata and
    /// checked against its DiffID.
    pub fn export(&self, reference: &str, out: &Utf8Path) -> Result<()> {
        let image = self.resolve(reference)?;
        let config = self.config(&image.id)?;
        let diff_ids = self.diff_ids(&image.id, &config)?;
        in_work_dir(out, |work| {
            for (i, (diff_id, chain)) in diff_ids.iter().zip(chain_ids(&diff_ids)).enumerate() {
                let layer = Self::layer_dir(&chain);
                let cache_id = self.read_id(&layer.join("cache-id"))?;
                let diff_rel = Utf8Path::new("aufs/diff").join(&cache_id);
                let diff_dir = self.root.dir(&diff_rel)?;
                let meta_rel = layer.join("tar-split.json.gz");
                let meta = self.root.file(&meta_rel)?.ok_or_else(|| {
                    self.malformed(&meta_rel, "missing: the layer's original bytes are unknown")
                })?;
                let got = stage_blob(work, |w| {
                    crate::tar_split_json::assemble(meta, &diff_dir, w)
                        .map(|_| ())
                        .map_err(|source| ImageError::Io {
                            path: self.dir.join(&diff_rel),
                            op: "rebuilding the layer's original tar",
                            source,
                        })
                })?;
                if &got != diff_id {
                    return Err(ImageError::Unverified {
                        path: self.dir.clone(),
                        what: format!("layer {i} rebuilt from {diff_rel}"),
                        expected: diff_id.to_string(),
                    });
                }
            }
            write_docker_save(work, out, &diff_ids, &config, &image.id, &image.repo_tags)
        })
    }
}
