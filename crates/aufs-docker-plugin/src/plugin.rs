//! What each endpoint does, over the driver's async facade, with the
//! protocol's types in and out. The HTTP side (`router`) only moves bytes.
//!
//! The plugin keeps no state of its own beyond which root is open: layers,
//! parents and mount reference counts are on disk under the root, so a
//! restarted plugin (or a restarted dockerd, which calls `Init` again and
//! never `Exists` before the `Get`/`Put` of old containers) carries on.

use crate::error::PluginError;
use crate::wire::{InitRequest, WireCapabilities, WireChange, WireIdMap};
use aufs_driver::async_facade::AsyncGraphDriver;
use aufs_driver::{ChangeKind, CreateOpts, DriverError};
use aufs_model::{IdMap, IdMappings, LayerId};
use camino::{Utf8Path, Utf8PathBuf};
use std::fmt;
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::sync::RwLock;

/// Opens the driver on a root; the CLI wires the real adapters behind it.
/// Called on the blocking pool (opening does filesystem and mount work).
pub trait DriverOpener: Send + Sync + fmt::Debug {
    /// Opens (creating when missing) the driver rooted at `home`.
    fn open(&self, home: &Utf8Path, maps: IdMappings) -> Result<Arc<dyn AsyncGraphDriver>, String>;
}

/// How the plugin answers.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The plugin's name (its socket's stem), used in messages.
    pub name: String,
    /// What `Capabilities` says of `ReproducesExactDiffs`.
    pub exact_diffs: bool,
    /// Whether mount labels are passed to the driver. Where SELinux is off
    /// a label means nothing and a `context=` option would fail the mount.
    pub selinux: bool,
    /// Where the last `Init` is kept, so a restarted plugin opens the same
    /// root at once: dockerd calls `Init` only when it starts itself, and
    /// goes on calling a plugin that came back without calling it again.
    pub init_file: Option<Utf8PathBuf>,
}

struct Opened {
    home: Utf8PathBuf,
    maps: IdMappings,
    driver: Arc<dyn AsyncGraphDriver>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("home", &self.home)
            .field("maps", &self.maps)
            .finish_non_exhaustive()
    }
}

/// The graph driver plugin: the driver opened by the last `Init`.
#[derive(Debug)]
pub struct Plugin {
    config: PluginConfig,
    opener: Arc<dyn DriverOpener>,
    opened: RwLock<Option<Opened>>,
}

/// Go's `ChangeType` of a change kind.
pub fn change_kind_code(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Modify => 0,
        ChangeKind::Add => 1,
        ChangeKind::Delete => 2,
    }
}

impl Plugin {
    /// A plugin that opens roots through `opener`.
    pub fn new(config: PluginConfig, opener: Arc<dyn DriverOpener>) -> Self {
        Plugin {
            config,
            opener,
            opened: RwLock::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }

    /// `GraphDriver.Init`: opens `Home`. A second `Init` with the same home
    /// and maps (dockerd restarted) keeps the open driver; another home
    /// opens that one instead.
    pub async fn init(&self, req: InitRequest) -> Result<(), PluginError> {
        let kept = req.clone();
        let opts = req.opts.unwrap_or_default();
        if !opts.is_empty() {
            return Err(PluginError::StorageOptions {
                name: self.config.name.clone(),
                options: opts.join(" "),
            });
        }
        let home = Utf8PathBuf::from(&req.home);
        if !home.is_absolute() {
            return Err(invalid(
                "Init",
                format!("Home must be an absolute path, got {:?}", req.home),
            ));
        }
        let maps = IdMappings {
            uids: id_maps("UIDMaps", req.uid_maps.unwrap_or_default())?,
            gids: id_maps("GIDMaps", req.gid_maps.unwrap_or_default())?,
        };
        let mut opened = self.opened.write().await;
        if let Some(o) = opened.as_ref() {
            if o.home == home && o.maps == maps {
                tracing::info!(%home, "Init again: the root is already open");
                self.keep(&kept);
                return Ok(());
            }
        }
        let opener = Arc::clone(&self.opener);
        let (h, m) = (home.clone(), maps.clone());
        let driver = tokio::task::spawn_blocking(move || opener.open(&h, m))
            .await
            .map_err(|e| PluginError::Open {
                home: home.to_string(),
                reason: e.to_string(),
            })?
            .map_err(|reason| PluginError::Open {
                home: home.to_string(),
                reason,
            })?;
        tracing::info!(%home, "Init: root open");
        *opened = Some(Opened { home, maps, driver });
        self.keep(&kept);
        Ok(())
    }

    /// Keeps the accepted `Init` for a restart of the plugin.
    fn keep(&self, req: &InitRequest) {
        if let Some(file) = &self.config.init_file {
            if let Err(e) = save_init(file, req) {
                tracing::warn!(file = %file, error = %e, "cannot keep the Init for a restart; after one, dockerd must be restarted too");
            }
        }
    }

    /// Opens the root of the `Init` kept in [`PluginConfig::init_file`],
    /// if there is one: the plugin was restarted under a running dockerd.
    /// Returns the home opened.
    pub async fn restore(&self) -> Result<Option<String>, PluginError> {
        let Some(file) = &self.config.init_file else {
            return Ok(None);
        };
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(invalid(
                    "Init",
                    format!("reading the kept Init {file}: {e}"),
                ));
            }
        };
        let req: InitRequest =
            serde_json::from_slice(&bytes).map_err(|source| PluginError::BadRequest {
                method: format!("Init kept in {file}"),
                source,
            })?;
        let home = req.home.clone();
        self.init(req).await?;
        Ok(Some(home))
    }

    /// `GraphDriver.Capabilities`.
    pub fn capabilities(&self) -> WireCapabilities {
        WireCapabilities {
            reproduces_exact_diffs: self.config.exact_diffs,
        }
    }

    async fn driver(&self) -> Result<Arc<dyn AsyncGraphDriver>, PluginError> {
        self.opened
            .read()
            .await
            .as_ref()
            .map(|o| Arc::clone(&o.driver))
            .ok_or(PluginError::NotInitialised)
    }

    /// `GraphDriver.Create` (`rw` false) and `CreateReadWrite` (`rw` true).
    /// Storage options are refused by the driver, as moby's aufs does.
    pub async fn create(
        &self,
        rw: bool,
        id: &str,
        parent: &str,
        storage_opt: Option<std::collections::BTreeMap<String, String>>,
    ) -> Result<(), PluginError> {
        let method = if rw { "CreateReadWrite" } else { "Create" };
        let (id, parent) = (layer_id(method, id)?, parent_id(method, parent)?);
        let opts = CreateOpts {
            storage_opt: storage_opt.unwrap_or_default(),
        };
        let d = self.driver().await?;
        if rw {
            d.create_read_write(id, parent, opts).await?;
        } else {
            d.create(id, parent, opts).await?;
        }
        Ok(())
    }

    /// `GraphDriver.Remove`. A layer already gone is removed: dockerd
    /// retries removals whose earlier attempt finished on our side.
    pub async fn remove(&self, id: &str) -> Result<(), PluginError> {
        let id = layer_id("Remove", id)?;
        match self.driver().await?.remove(id.clone()).await {
            Err(DriverError::NotFound(_)) => {
                tracing::debug!(%id, "Remove: the layer is already gone");
                Ok(())
            }
            r => Ok(r?),
        }
    }

    /// `GraphDriver.Get`: takes a reference and returns the mount path,
    /// the same path for every reference.
    pub async fn get(&self, id: &str, mount_label: &str) -> Result<String, PluginError> {
        let id = layer_id("Get", id)?;
        let label = if self.config.selinux {
            mount_label.to_owned()
        } else {
            String::new()
        };
        Ok(self.driver().await?.get(id, label).await?.into_string())
    }

    /// `GraphDriver.Put`: drops a reference; unmounts at none.
    pub async fn put(&self, id: &str) -> Result<(), PluginError> {
        let id = layer_id("Put", id)?;
        Ok(self.driver().await?.put(id).await?)
    }

    /// `GraphDriver.Exists`. An id that is not a valid layer id does not
    /// exist.
    pub async fn exists(&self, id: &str) -> Result<bool, PluginError> {
        let Ok(id) = LayerId::new(id) else {
            return Ok(false);
        };
        Ok(self.driver().await?.exists(id).await)
    }

    /// `GraphDriver.Status`: the driver's `docker info` lines.
    pub async fn status(&self) -> Result<Vec<[String; 2]>, PluginError> {
        let status = self.driver().await?.status().await?;
        Ok(status
            .pairs()
            .into_iter()
            .map(|(k, v)| [k.to_owned(), v])
            .collect())
    }

    /// `GraphDriver.GetMetadata`: moby's aufs has none to give (nil map,
    /// no error), and so `docker inspect` shows none; a missing layer is
    /// an error here so a bad id is not taken for a good one.
    pub async fn get_metadata(&self, id: &str) -> Result<(), PluginError> {
        let id = layer_id("GetMetadata", id)?;
        if self.driver().await?.exists(id.clone()).await {
            Ok(())
        } else {
            Err(DriverError::NotFound(id).into())
        }
    }

    /// `GraphDriver.Cleanup`: unmounts everything (dockerd is stopping).
    /// The root stays open for the next `Init`.
    pub async fn cleanup(&self) -> Result<(), PluginError> {
        Ok(self.driver().await?.cleanup().await?)
    }

    /// `GraphDriver.Changes`, with Go's change kinds.
    pub async fn changes(&self, id: &str, parent: &str) -> Result<Vec<WireChange>, PluginError> {
        let d = self.driver().await?;
        let (id, parent) = against(d.as_ref(), "Changes", id, parent).await?;
        let changes = d.changes(id, parent).await?;
        Ok(changes
            .into_iter()
            .map(|c| WireChange {
                path: c.path,
                kind: change_kind_code(c.kind),
            })
            .collect())
    }

    /// `GraphDriver.DiffSize`.
    pub async fn diff_size(&self, id: &str, parent: &str) -> Result<i64, PluginError> {
        let d = self.driver().await?;
        let (id, parent) = against(d.as_ref(), "DiffSize", id, parent).await?;
        let size = d.diff_size(id, parent).await?;
        Ok(i64::try_from(size).unwrap_or(i64::MAX))
    }

    /// `GraphDriver.ApplyDiff`: applies the tarball read from `input`
    /// (read on the blocking pool as it arrives) and returns the diff size.
    pub async fn apply_diff(
        &self,
        id: &str,
        parent: &str,
        input: Box<dyn Read + Send>,
    ) -> Result<i64, PluginError> {
        let (id, parent) = (layer_id("ApplyDiff", id)?, parent_id("ApplyDiff", parent)?);
        let outcome = self.driver().await?.apply_diff(id, parent, input).await?;
        Ok(i64::try_from(outcome.size).unwrap_or(i64::MAX))
    }

    /// `GraphDriver.Diff`: writes the layer's tarball into `out` and hands
    /// the writer back (to be flushed on the blocking pool).
    pub async fn diff(
        &self,
        id: &str,
        parent: &str,
        out: Box<dyn Write + Send>,
    ) -> Result<Box<dyn Write + Send>, PluginError> {
        let d = self.driver().await?;
        let (id, parent) = against(d.as_ref(), "Diff", id, parent).await?;
        Ok(d.diff(id, parent, out).await?)
    }
}

/// Writes the `Init` request to `file` atomically (a whole file or none);
/// the rename replaces the name, never a file a symlink there points to.
fn save_init(file: &Utf8Path, req: &InitRequest) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A fresh file (O_EXCL: never through a symlink planted at its name),
    // readable by root alone.
    let tmp = Utf8PathBuf::from(format!("{file}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?
    };
    f.write_all(&serde_json::to_vec(req).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

fn invalid(method: &str, reason: String) -> PluginError {
    PluginError::Invalid {
        method: method.to_owned(),
        reason,
    }
}

fn layer_id(method: &str, id: &str) -> Result<LayerId, PluginError> {
    LayerId::new(id).map_err(|e| invalid(method, format!("ID {id:?}: {e}")))
}

/// The layer and the parent to compare it with. moby's aufs ignores the
/// parent of `Diff`, `Changes` and `DiffSize` and always works against the
/// direct parent; an empty one (graphtest's `Diff(id, "")`) means that
/// here too, while another ancestor gives a computed diff.
async fn against(
    d: &dyn AsyncGraphDriver,
    method: &str,
    id: &str,
    parent: &str,
) -> Result<(LayerId, Option<LayerId>), PluginError> {
    let id = layer_id(method, id)?;
    let parent = match parent_id(method, parent)? {
        Some(p) => Some(p),
        None => d.parent(id.clone()).await?,
    };
    Ok((id, parent))
}

fn parent_id(method: &str, parent: &str) -> Result<Option<LayerId>, PluginError> {
    if parent.is_empty() {
        return Ok(None);
    }
    LayerId::new(parent)
        .map(Some)
        .map_err(|e| invalid(method, format!("Parent {parent:?}: {e}")))
}

fn id_maps(field: &str, maps: Vec<WireIdMap>) -> Result<Vec<IdMap>, PluginError> {
    maps.into_iter()
        .map(|m| {
            let conv = |v: i64| u32::try_from(v).ok();
            match (conv(m.container_id), conv(m.host_id), conv(m.size)) {
                (Some(container_id), Some(host_id), Some(size)) => Ok(IdMap {
                    container_id,
                    host_id,
                    size,
                }),
                _ => Err(invalid("Init", format!("{field}: {m:?} is out of range"))),
            }
        })
        .collect()
}
