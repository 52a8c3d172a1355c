//! A Docker install that used the aufs driver, read in place: its images
//! (`image/aufs`: `repositories.json`, `imagedb`, `layerdb`), its
//! containers (`containers/*/config.v2.json` and the layerdb mounts), and
//! its images exported with their original layer bytes, rebuilt from the
//! layer store's own tar-split metadata and the `aufs/diff` dirs.

use std::collections::HashMap;
use std::fs::{self, File};

use camino::{Utf8Path, Utf8PathBuf};

use crate::chain::{chain_ids, Digest};
use crate::error::{ImageError, Result};
use crate::export::{in_work_dir, stage_blob, write_docker_save};

/// The root of a Docker install (`/var/lib/docker`).
#[derive(Debug, Clone)]
pub struct DockerRoot {
    dir: Utf8PathBuf,
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
    /// Its name, without the leading `/`.
    pub name: String,
    /// Its id.
    pub id: String,
    /// The image it was created from, as given (`busybox`), else its id.
    pub image: String,
    /// Its read-write layer: a layer id under the install's `aufs/`.
    pub rw_layer: String,
}

impl DockerRoot {
    /// The install at `dir`; it must have `image/aufs`.
    pub fn open(dir: &Utf8Path) -> Result<Self> {
        if !dir.join("image/aufs").is_dir() {
            return Err(ImageError::UnknownFormat {
                path: dir.to_owned(),
                why: "no image/aufs: not a Docker install that used the aufs driver".into(),
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn meta(&self) -> Utf8PathBuf {
        self.dir.join("image/aufs")
    }

    fn read(&self, path: &Utf8Path) -> Result<Vec<u8>> {
        fs::read(path).map_err(|source| ImageError::Io {
            path: path.to_owned(),
            op: "reading",
            source,
        })
    }

    fn read_text(&self, path: &Utf8Path) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.read(path)?).trim().to_owned())
    }

    /// `repo:tag` names by image id (`repositories.json`; digest
    /// references are left out).
    fn tags(&self) -> Result<HashMap<String, Vec<String>>> {
        let path = self.meta().join("repositories.json");
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        if !path.exists() {
            return Ok(out);
        }
        let v: serde_json::Value = serde_json::from_slice(&self.read(&path)?)
            .map_err(|e| self.malformed(&path, &e.to_string()))?;
        if let Some(repos) = v.get("Repositories").and_then(|r| r.as_object()) {
            for refs in repos.values().filter_map(|r| r.as_object()) {
                for (name, id) in refs {
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

    fn malformed(&self, path: &Utf8Path, why: &str) -> ImageError {
        ImageError::Malformed {
            path: self.dir.clone(),
            what: path.to_string(),
            why: why.to_owned(),
        }
    }

    /// The config of image `id`, checked against its id.
    fn config(&self, id: &Digest) -> Result<Vec<u8>> {
        let path = self.meta().join("imagedb/content/sha256").join(id.hex());
        let config = self.read(&path)?;
        let got = Digest::of(&config);
        if &got != id {
            return Err(ImageError::DigestMismatch {
                path: self.dir.clone(),
                what: path.to_string(),
                expected: id.to_string(),
                actual: got.to_string(),
            });
        }
        Ok(config)
    }

    fn diff_ids(&self, id: &Digest, config: &[u8]) -> Result<Vec<Digest>> {
        crate::chain::config_diff_ids(config).map_err(|why| {
            self.malformed(
                &self.meta().join("imagedb/content/sha256").join(id.hex()),
                &why,
            )
        })
    }

    fn layer_dir(&self, chain: &Digest) -> Utf8PathBuf {
        self.meta().join("layerdb/sha256").join(chain.hex())
    }

    /// Every image, sorted by name then id.
    pub fn images(&self) -> Result<Vec<LegacyImage>> {
        let tags = self.tags()?;
        let dir = self.meta().join("imagedb/content/sha256");
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(ImageError::Io {
                    path: dir,
                    op: "listing images",
                    source,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| ImageError::Io {
                path: dir.clone(),
                op: "listing images",
                source,
            })?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|h| Digest::parse(&format!("sha256:{h}")))
            else {
                continue;
            };
            let config = self.config(&id)?;
            let mut size = 0;
            for chain in chain_ids(&self.diff_ids(&id, &config)?) {
                let p = self.layer_dir(&chain).join("size");
                size += self
                    .read_text(&p)?
                    .parse::<u64>()
                    .map_err(|e| self.malformed(&p, &e.to_string()))?;
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
        let dir = self.dir.join("containers");
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let Some(cid) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = dir.join(&cid).join("config.v2.json");
            if !path.exists() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&self.read(&path)?)
                .map_err(|e| self.malformed(&path, &e.to_string()))?;
            let image = v
                .pointer("/Config/Image")
                .and_then(|i| i.as_str())
                .filter(|i| !i.is_empty())
                .or_else(|| v.get("Image").and_then(|i| i.as_str()))
                .unwrap_or_default()
                .to_owned();
            let rw_layer = self.read_text(
                &self
                    .meta()
                    .join("layerdb/mounts")
                    .join(&cid)
                    .join("mount-id"),
            )?;
            out.push(LegacyContainer {
                name: v
                    .get("Name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned(),
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
                let layer = self.layer_dir(&chain);
                let cache_id = self.read_text(&layer.join("cache-id"))?;
                if cache_id.is_empty() || cache_id.contains('/') || cache_id.starts_with('.') {
                    return Err(self.malformed(&layer.join("cache-id"), "not a layer id"));
                }
                let diff_dir = self.dir.join("aufs/diff").join(&cache_id);
                let meta_path = layer.join("tar-split.json.gz");
                let meta = File::open(&meta_path).map_err(|source| ImageError::Io {
                    path: meta_path.clone(),
                    op: "opening the layer's tar-split metadata",
                    source,
                })?;
                let got = stage_blob(work, |w| {
                    crate::tar_split_json::assemble(meta, &diff_dir, w)
                        .map(|_| ())
                        .map_err(|source| ImageError::Io {
                            path: diff_dir.clone(),
                            op: "rebuilding the layer's original tar",
                            source,
                        })
                })?;
                if &got != diff_id {
                    return Err(ImageError::DigestMismatch {
                        path: self.dir.clone(),
                        what: format!("layer {i} (aufs/diff/{cache_id})"),
                        expected: diff_id.to_string(),
                        actual: got.to_string(),
                    });
                }
            }
            write_docker_save(work, out, &diff_ids, &config, &image.id, &image.repo_tags)
        })
    }
}
