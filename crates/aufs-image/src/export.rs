//! Export: a layer and its parents as an image that `docker load` (a
//! `docker save` tarball) or any OCI tool (an OCI image layout) accepts.
//!
//! Each layer's tar is the driver's `diff` against its direct parent: the
//! original bytes when the layer came from a tarball, so its DiffID (and
//! chain id) is what it was when imported. The image config is minimal:
//! the platform of this machine and `rootfs.diff_ids`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};

use aufs_driver::Driver;
use aufs_model::LayerId;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::chain::{chain_ids, Digest};
use crate::error::{ImageError, Result};

/// The shape of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A `docker save` tarball (`manifest.json`, config, `<id>/layer.tar`).
    DockerSave,
    /// An OCI image layout directory (uncompressed layer blobs).
    OciLayout,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// DiffIDs of the layers, bottom first.
    pub diff_ids: Vec<Digest>,
    /// Digest of the image config.
    pub config: Digest,
}

/// Writes `id` and its parents to `out` in `format`. `out` must not exist;
/// it appears only once complete.
pub fn export(
    driver: &Driver,
    id: &LayerId,
    out: &Utf8Path,
    format: ExportFormat,
) -> Result<ExportReport> {
    let chain = driver
        .parent_chain(id)
        .map_err(|source| ImageError::Driver {
            id: id.to_string(),
            source,
        })?;
    let stack: Vec<LayerId> = chain
        .ids()
        .iter()
        .rev()
        .cloned()
        .chain([id.clone()])
        .collect();
    in_work_dir(out, |work| {
        let mut diff_ids = Vec::new();
        let mut parent: Option<&LayerId> = None;
        for layer in &stack {
            diff_ids.push(stage_blob(work, |w| {
                driver
                    .diff(layer, parent, w)
                    .map(|_| ())
                    .map_err(|source| ImageError::Driver {
                        id: layer.to_string(),
                        source,
                    })
            })?);
            parent = Some(layer);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": go_arch(),
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": diff_ids.iter().map(Digest::as_str).collect::<Vec<_>>(),
            },
        }))
        .expect("a JSON value serialises");
        let config_digest = Digest::of(&config);
        match format {
            ExportFormat::OciLayout => {
                write_oci(work, &diff_ids, &config, &config_digest)?;
                fs::rename(work, out).map_err(io_err(out, "moving the layout into place"))?;
            }
            ExportFormat::DockerSave => {
                write_docker_save(work, out, &diff_ids, &config, &config_digest, &[])?
            }
        }
        Ok(ExportReport {
            diff_ids,
            config: config_digest,
        })
    })
}

/// Runs `build` on a fresh work dir beside `out` (`<out>.tmp-<pid>`, with
/// `blobs/sha256` in it), then removes the work dir whatever happened
/// (`build` may have moved it into place as `out`). `out` must not exist.
pub(crate) fn in_work_dir<T>(
    out: &Utf8Path,
    build: impl FnOnce(&Utf8Path) -> Result<T>,
) -> Result<T> {
    if out.symlink_metadata().is_ok() {
        return Err(ImageError::Io {
            path: out.to_owned(),
            op: "exporting",
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        });
    }
    let work = Utf8PathBuf::from(format!("{out}.tmp-{}", std::process::id()));
    let result = fs::create_dir_all(work.join("blobs/sha256"))
        .map_err(io_err(&work, "creating"))
        .and_then(|()| build(&work));
    let _ = fs::remove_dir_all(&work);
    result
}

/// Writes one blob into `work`'s `blobs/sha256`, hashed on the way, and
/// names it by its digest, which it returns.
pub(crate) fn stage_blob(
    work: &Utf8Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Digest> {
    let partial = work.join("blobs/sha256/blob.partial");
    let mut w = HashingWriter::new(BufWriter::new(
        File::create(&partial).map_err(io_err(&partial, "creating"))?,
    ));
    write(&mut w)?;
    let digest = w.finish().map_err(io_err(&partial, "writing"))?;
    let blob = work.join("blobs/sha256").join(digest.hex());
    fs::rename(&partial, &blob).map_err(io_err(&blob, "writing"))?;
    Ok(digest)
}

/// The OCI layout in `dir`: config and manifest blobs, `index.json`.
fn write_oci(
    dir: &Utf8Path,
    diff_ids: &[Digest],
    config: &[u8],
    config_digest: &Digest,
) -> Result<()> {
    let blob = |data: &[u8]| -> Result<Digest> {
        let d = Digest::of(data);
        let p = dir.join("blobs/sha256").join(d.hex());
        fs::write(&p, data).map_err(io_err(&p, "writing"))?;
        Ok(d)
    };
    blob(config)?;
    let layers: Vec<_> = diff_ids
        .iter()
        .map(|d| {
            let size = fs::metadata(dir.join("blobs/sha256").join(d.hex()))
                .map(|m| m.len())
                .unwrap_or(0);
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.as_str(), "size": size})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("a JSON value serialises");
    let manifest_digest = blob(&manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.as_str(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    for (name, data) in [
        ("index.json", index.to_string().into_bytes()),
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    ] {
        let p = dir.join(name);
        fs::write(&p, data).map_err(io_err(&p, "writing"))?;
    }
    Ok(())
}

/// The `docker save` tarball at `out` (through a temp name), from the
/// layer blobs in `dir` (`blobs/sha256/<diff id hex>`).
pub(crate) fn write_docker_save(
    dir: &Utf8Path,
    out: &Utf8Path,
    diff_ids: &[Digest],
    config: &[u8],
    config_digest: &Digest,
    repo_tags: &[String],
) -> Result<()> {
    let tmp = Utf8PathBuf::from(format!("{out}.partial-{}", std::process::id()));
    let written = (|| -> io::Result<()> {
        let mut tar = tar::Builder::new(BufWriter::new(File::create(&tmp)?));
        let entry = |size: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(size);
            h.set_entry_type(tar::EntryType::Regular);
            h
        };
        let chains = chain_ids(diff_ids);
        let mut layers = Vec::new();
        for (d, c) in diff_ids.iter().zip(&chains) {
            // One directory per position (its chain id), as a layer may repeat.
            let name = format!("{}/layer.tar", c.hex());
            let mut f = File::open(dir.join("blobs/sha256").join(d.hex()))?;
            let len = f.metadata()?.len();
            tar.append_data(&mut entry(len), &name, &mut f)?;
            layers.push(name);
        }
        let config_name = format!("{}.json", config_digest.hex());
        tar.append_data(&mut entry(config.len() as u64), &config_name, config)?;
        let tags = (!repo_tags.is_empty()).then_some(repo_tags);
        let manifest =
            json!([{"Config": config_name, "RepoTags": tags, "Layers": layers}]).to_string();
        tar.append_data(
            &mut entry(manifest.len() as u64),
            "manifest.json",
            manifest.as_bytes(),
        )?;
        let mut w = tar.into_inner()?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, out)
    })();
    written.map_err(|source| {
        let _ = fs::remove_file(&tmp);
        ImageError::Io {
            path: out.to_owned(),
            op: "writing the image tarball",
            source,
        }
    })
}

/// The platform name Go (and so Docker) gives this machine's architecture.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn io_err<'a>(path: &'a Utf8Path, op: &'static str) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// A writer that hashes what goes through it.
struct HashingWriter<W: Write> {
    inner: W,
    sha: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            sha: Sha256::new(),
        }
    }

    fn finish(mut self) -> io::Result<Digest> {
        self.inner.flush()?;
        Ok(Digest::from_sha(self.sha.finalize().into()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
