//! The driver: moby's `aufs.go` behaviour over the ports.

use crate::error::{DriverError, Result};
use crate::layout::Layout;
use crate::refcount::{RefCounter, RefStore};
use crate::support;
use aufs_model::{fs_magic, IdMappings, LayerId, ParentChain};
use aufs_ports::{
    BackendKind, BackingFeatures, FileKind, Filesystem, Host, LayerArchive, LayerLocks, LockGuard,
    UnionBackend, UnionSpec,
};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The adapters a driver runs on.
#[derive(Debug, Clone)]
pub struct Ports {
    /// Files and directories.
    pub fs: Arc<dyn Filesystem>,
    /// Kernel and process facts.
    pub host: Arc<dyn Host>,
    /// How unions are mounted.
    pub backend: Arc<dyn UnionBackend>,
    /// Per-layer locks (in-process, or file locks shared by processes).
    pub locks: Arc<dyn LayerLocks>,
    /// Layer content: apply, export, changes, size.
    pub archive: Arc<dyn LayerArchive>,
}

/// What the driver is opened with.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The driver's home (`/var/lib/docker/aufs`).
    pub root: Utf8PathBuf,
    /// User-namespace id maps; directories are owned by the mapped root.
    pub id_maps: IdMappings,
    /// Where mount reference counts live.
    pub refs: RefStore,
    /// Layers made by `create` stay incomplete (absent to `exists`, `ls`
    /// and `get`) until an `apply_diff` into them succeeds: an import cut
    /// off between the two then leaves no empty layer under the name of
    /// its content, and importing again applies it.
    pub await_apply: bool,
    /// With `await_apply`: layer ids are chain ids (an image's layers), and
    /// a layer completes only when the applied content has its chain id.
    /// An import cut off before it compared the content with the image's
    /// config then never leaves a layer with other content under the name.
    pub chain_ids: bool,
}

impl DriverConfig {
    /// A config with identity id maps and in-memory reference counts.
    pub fn new(root: impl Into<Utf8PathBuf>) -> Self {
        DriverConfig {
            root: root.into(),
            id_maps: IdMappings::default(),
            refs: RefStore::InMemory,
            await_apply: false,
            chain_ids: false,
        }
    }
}

/// Options of `create` (Docker's `CreateOpts`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// `--storage-opt` pairs; aufs accepts none.
    pub storage_opt: BTreeMap<String, String>,
}

/// Driver status, as `docker info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The root.
    pub root_dir: Utf8PathBuf,
    /// Docker's name of the backing filesystem.
    pub backing_filesystem: String,
    /// Number of layers.
    pub dirs: usize,
    /// Whether unions use `dirperm1`.
    pub dirperm1_supported: bool,
    /// `kernel` or `fuse`.
    pub mount_backend: BackendKind,
    /// Whether the backing filesystem reports entry types in `readdir`.
    pub supports_d_type: bool,
    /// Whether the backing filesystem takes extended attributes.
    pub supports_xattrs: bool,
}

impl Status {
    /// The `Key: Value` pairs, in the Go driver's order plus the backend.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Root Dir", self.root_dir.to_string()),
            ("Backing Filesystem", self.backing_filesystem.clone()),
            ("Dirs", self.dirs.to_string()),
            ("Dirperm1 Supported", self.dirperm1_supported.to_string()),
            ("Mount Backend", self.mount_backend.to_string()),
            ("Supports d_type", self.supports_d_type.to_string()),
            ("Supports xattrs", self.supports_xattrs.to_string()),
        ]
    }
}

/// A layer and its direct parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The layer.
    pub id: LayerId,
    /// Its direct parent.
    pub parent: Option<LayerId>,
}

/// The aufs driver. Safe to share between threads: operations on one layer
/// are serialised by its lock, operations on different layers run at once.
#[derive(Debug)]
pub struct Driver {
    layout: Layout,
    ports: Ports,
    id_maps: IdMappings,
    /// Owner of the directories the driver creates; `None` when not root
    /// (the caller's own ids then).
    owner: Option<(u32, u32)>,
    backing_fs: String,
    features: BackingFeatures,
    refs: RefCounter,
    path_cache: Mutex<HashMap<LayerId, Utf8PathBuf>>,
    await_apply: bool,
    chain_ids: bool,
    /// Claims on the incomplete layers this driver created and has not
    /// filled yet ([`DriverConfig::await_apply`]): while one is held, no
    /// recovery takes the layer for a dead process's.
    claims: Mutex<HashMap<LayerId, LockGuard>>,
}

const LAYER_DIR_MODE: u32 = 0o755;
pub(crate) const ROOT_DIR_MODE: u32 = 0o700;

impl Driver {
    /// Opens (creating when missing) a driver root, as the Go `Init`: checks
    /// the backend can work here, detects the backing filesystem, creates
    /// `layers/`, `diff/`, `mnt/` (0700, owned by the mapped root), and
    /// recovers from whatever dead processes left half done (see
    /// [`Driver::recover`]).
    pub fn init(config: DriverConfig, ports: Ports) -> Result<Driver> {
        let layout = Layout::new(config.root.clone());
        let kind = ports.backend.kind();
        if kind == BackendKind::Kernel {
            support::check_kernel_aufs(ports.host.as_ref())?;
        }
        let magic =
            support::backing_fs_magic(ports.host.as_ref(), ports.fs.as_ref(), layout.root())?;
        support::check_backing_fs(kind, magic, layout.root())?;

        let owner = if ports.host.effective_ids().0 == 0 {
            Some(config.id_maps.root_pair()?)
        } else {
            None
        };
        let mut dirs = vec![
            layout.root().to_owned(),
            layout.mnt_root(),
            layout.diff_root(),
            layout.layers_dir(),
            layout.incomplete_dir(),
            layout.removing_dir(),
            layout.staging_dir(),
        ];
        if config.refs == RefStore::OnDisk {
            dirs.push(layout.refs_dir());
        }
        for d in &dirs {
            ports
                .fs
                .create_dir_all(d, ROOT_DIR_MODE, owner)
                .map_err(DriverError::io("create dir", d.clone()))?;
        }
        let features = ports
            .host
            .backing_features(layout.root())
            .map_err(DriverError::io(
                "probe backing filesystem of",
                layout.root(),
            ))?;
        support::check_backing_features(kind, features, magic, layout.root())?;
        let refs = RefCounter::new(config.refs, ports.fs.clone(), layout.refs_dir());
        let driver = Driver {
            layout,
            ports,
            id_maps: config.id_maps,
            owner,
            backing_fs: fs_magic::fs_display_name(magic).to_owned(),
            features,
            refs,
            path_cache: Mutex::default(),
            await_apply: config.await_apply,
            chain_ids: config.chain_ids,
            claims: Mutex::default(),
        };
        if let Err(e) = driver.recover() {
            tracing::warn!(storage_driver = "aufs", error = %e.full_message(), "recovery left something behind; the next start tries again");
        }
        tracing::debug!(storage_driver = "aufs", root = %driver.layout.root(), backend = %kind, "driver ready");
        Ok(driver)
    }

    /// The driver's name.
    pub fn name(&self) -> &'static str {
        "aufs"
    }

    /// The paths of the layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The id maps the driver was opened with.
    pub fn id_maps(&self) -> &IdMappings {
        &self.id_maps
    }

    /// Root dir, backing filesystem, number of layers, dirperm1, backend.
    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            root_dir: self.layout.root().to_owned(),
            backing_filesystem: self.backing_fs.clone(),
            dirs: self.layer_ids()?.len(),
            dirperm1_supported: self.ports.backend.dirperm1_supported(),
            mount_backend: self.ports.backend.kind(),
            supports_d_type: self.features.d_type,
            supports_xattrs: self.features.xattrs,
        })
    }

    /// True when `layers/<id>` exists and the layer is complete.
    pub fn exists(&self, id: &LayerId) -> bool {
        self.has_layers_file(id) && !self.is_incomplete(id)
    }

    pub(crate) fn has_layers_file(&self, id: &LayerId) -> bool {
        matches!(
            self.ports.fs.kind(&self.layout.layers_file(id)),
            Ok(Some(_))
        )
    }

    /// Every complete layer's id (the files of `layers/`), sorted.
    pub fn layer_ids(&self) -> Result<Vec<LayerId>> {
        Ok(self
            .all_layer_ids()?
            .into_iter()
            .filter(|id| !self.is_incomplete(id))
            .collect())
    }

    /// Every file of `layers/` that is a valid id, complete or not, sorted.
    fn all_layer_ids(&self) -> Result<Vec<LayerId>> {
        let dir = self.layout.layers_dir();
        let mut ids: Vec<LayerId> = self
            .ports
            .fs
            .read_dir(&dir)
            .map_err(DriverError::io("read dir", dir))?
            .into_iter()
            .filter(|e| e.kind == FileKind::File)
            .filter_map(|e| LayerId::new(e.name).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every layer with its direct parent, sorted by id.
    pub fn list(&self) -> Result<Vec<LayerInfo>> {
        self.layer_ids()?
            .into_iter()
            .map(|id| {
                let parent = self.parent_chain(&id)?.parent().cloned();
                Ok(LayerInfo { id, parent })
            })
            .collect()
    }

    /// The layer's ancestors, nearest first, from `layers/<id>`. An
    /// incomplete layer does not exist, except to the driver filling it.
    pub fn parent_chain(&self, id: &LayerId) -> Result<ParentChain> {
        if self.is_incomplete(id) && !self.holds_claim(id) {
            return Err(DriverError::NotFound(id.clone()));
        }
        self.read_chain(id)
    }

    /// `layers/<id>` parsed, whether the layer is complete or not.
    fn read_chain(&self, id: &LayerId) -> Result<ParentChain> {
        let path = self.layout.layers_file(id);
        match self.ports.fs.read_to_string(&path) {
            Ok(text) => Ok(ParentChain::parse(path.as_str(), &text)?),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                Err(DriverError::NotFound(id.clone()))
            }
            Err(e) => Err(DriverError::io("read", path)(e)),
        }
    }

    /// The diff dirs of the layer's ancestors, nearest first.
    pub fn parent_diff_dirs(&self, id: &LayerId) -> Result<Vec<Utf8PathBuf>> {
        Ok(self
            .parent_chain(id)?
            .ids()
            .iter()
            .map(|p| self.layout.diff_dir(p))
            .collect())
    }

    /// True when `parent` is the layer's direct parent (`None`: it has none).
    pub fn is_parent(&self, id: &LayerId, parent: Option<&LayerId>) -> bool {
        let chain = self.parent_chain(id).unwrap_or_default();
        chain.parent() == parent
    }

    /// Creates a read-only layer (an image layer).
    pub fn create(&self, id: &LayerId, parent: Option<&LayerId>, opts: &CreateOpts) -> Result<()> {
        if !opts.storage_opt.is_empty() {
            return Err(DriverError::StorageOptNotSupported);
        }
        let _lock = self.lock(id)?;
        // The parent's lock too: its removal checks for children under it,
        // so it either sees this layer or has finished before we look.
        let _parent_lock = parent
            .filter(|p| *p != id)
            .map(|p| self.lock(p))
            .transpose()?;
        if self.is_incomplete(id) {
            // Under the layer's lock only a live claim can be working on it.
            match self.try_claim(id)? {
                None => return Err(DriverError::AlreadyExists(id.clone())),
                Some(_dead_owner) => self.remove_traces(id)?,
            }
        } else if self.has_layers_file(id) {
            return Err(DriverError::AlreadyExists(id.clone()));
        }
        let chain = match parent {
            None => ParentChain::empty(),
            Some(p) if p == id => {
                return Err(DriverError::ParentNotFound {
                    id: id.clone(),
                    parent: p.clone(),
                })
            }
            Some(p) => {
                let pc = self.parent_chain(p).map_err(|e| match e {
                    DriverError::NotFound(_) => DriverError::ParentNotFound {
                        id: id.clone(),
                        parent: p.clone(),
                    },
                    e => e,
                })?;
                if pc.contains(id) {
                    return Err(DriverError::AlreadyExists(id.clone()));
                }
                ParentChain::with_parent(p.clone(), &pc)
            }
        };

        let diff = self.layout.diff_dir(id);
        let mnt = self.layout.mount_point(id);
        let fresh: Vec<Utf8PathBuf> = [&mnt, &diff]
            .into_iter()
            .filter(|p| !matches!(self.ports.fs.kind(p), Ok(Some(_))))
            .cloned()
            .collect();
        let claim = if self.await_apply {
            let claim = self.try_claim(id)?;
            Some(claim.ok_or_else(|| DriverError::AlreadyExists(id.clone()))?)
        } else {
            None
        };
        let result = (|| {
            self.mark_incomplete(id)?;
            for d in [&mnt, &diff] {
                self.ports
                    .fs
                    .create_dir_all(d, LAYER_DIR_MODE, self.owner)
                    .map_err(DriverError::io("create dir", d.clone()))?;
            }
            let lf = self.layout.layers_file(id);
            self.ports
                .fs
                .write_new(&lf, chain.render().as_bytes())
                .map_err(|e| {
                    if e.raw_os_error() == Some(libc::EEXIST) {
                        DriverError::AlreadyExists(id.clone())
                    } else {
                        DriverError::io("write layers file", lf.clone())(e)
                    }
                })
        })();
        let result = result.and_then(|()| match claim {
            // Complete once something is applied into it.
            Some(claim) => {
                self.hold_claim(id, claim);
                Ok(())
            }
            None => self.clear_incomplete(id),
        });
        if let Err(e) = &result {
            if !matches!(e, DriverError::AlreadyExists(_)) {
                for d in &fresh {
                    let _ = self.ports.fs.remove_all(d);
                }
            }
            if let Err(e) = self.clear_incomplete(id) {
                tracing::warn!(storage_driver = "aufs", %id, error = %e.full_message(), "a failed create stays incomplete; the next start removes it");
            }
            tracing::debug!(storage_driver = "aufs", %id, error = %e.full_message(), "create failed");
        } else {
            tracing::debug!(storage_driver = "aufs", %id, parent = ?parent.map(|p| p.as_str()), "created layer");
        }
        result
    }

    /// Creates a read-write layer (a container's); same as [`Driver::create`]
    /// for aufs.
    pub fn create_read_write(
        &self,
        id: &LayerId,
        parent: Option<&LayerId>,
        opts: &CreateOpts,
    ) -> Result<()> {
        self.create(id, parent, opts)
    }

    /// The direct children of a layer, complete or not.
    pub fn children(&self, id: &LayerId) -> Result<Vec<LayerId>> {
        let mut out = Vec::new();
        for other in self.all_layer_ids()? {
            match self.read_chain(&other) {
                Ok(c) if c.parent() == Some(id) => out.push(other),
                Ok(_) | Err(DriverError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Unmounts and removes a layer. It is marked incomplete first (so it
    /// stops existing at once, and a removal cut off is finished by the next
    /// start), then its layers file goes and its dirs are moved to
    /// `removing/<id>` and removed. A layer with children is refused.
    pub fn remove(&self, id: &LayerId) -> Result<()> {
        let _lock = self.lock(id)?;
        let mountpoint = self
            .cached_path(id)
            .unwrap_or_else(|| self.layout.mount_point(id));
        let present = [
            self.layout.layers_file(id),
            self.layout.diff_dir(id),
            self.layout.mount_point(id),
            self.layout.incomplete_marker(id),
        ]
        .iter()
        .any(|p| matches!(self.ports.fs.kind(p), Ok(Some(_))));
        // A layer another live process is creating is not there yet.
        let claim = if self.is_incomplete(id) && !self.holds_claim(id) {
            Some(self.try_claim(id)?)
        } else {
            None
        };
        if !present || matches!(claim, Some(None)) {
            return Err(DriverError::NotFound(id.clone()));
        }
        let children = self.children(id)?;
        if !children.is_empty() {
            return Err(DriverError::HasChildren {
                id: id.clone(),
                children,
            });
        }

        if let Err(e) = self.unmount_if_mounted(&mountpoint) {
            tracing::warn!(storage_driver = "aufs", method = "Remove()", %id, error = %e.full_message());
            return Err(e);
        }
        self.mark_incomplete(id)?;
        self.remove_traces(id)?;
        tracing::debug!(storage_driver = "aufs", %id, "removed layer");
        Ok(())
    }

    fn cached_path(&self, id: &LayerId) -> Option<Utf8PathBuf> {
        self.path_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Whether layer ids are chain ids ([`DriverConfig::chain_ids`]).
    pub(crate) fn chain_ids(&self) -> bool {
        self.chain_ids
    }

    /// The adapters.
    pub(crate) fn ports(&self) -> &Ports {
        &self.ports
    }

    pub(crate) fn refs_forget(&self, id: &LayerId) -> Result<()> {
        self.refs.forget(id)
    }

    /// Owner given to directories the driver creates.
    pub(crate) fn dir_owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    pub(crate) fn lock_layer(&self, id: &LayerId) -> Result<LockGuard> {
        self.lock(id)
    }

    fn lock(&self, id: &LayerId) -> Result<LockGuard> {
        self.ports
            .locks
            .lock(id.as_str())
            .map_err(DriverError::io("lock layer", id.as_str()))
    }

    /// The layer's lock if no one holds it now.
    pub(crate) fn try_lock(&self, id: &LayerId) -> Result<Option<LockGuard>> {
        self.ports
            .locks
            .try_lock(id.as_str())
            .map_err(DriverError::io("lock layer", id.as_str()))
    }

    /// The layer's claim if no one holds it now.
    pub(crate) fn try_claim(&self, id: &LayerId) -> Result<Option<LockGuard>> {
        let key = format!("claim/{id}");
        self.ports
            .locks
            .try_lock(&key)
            .map_err(DriverError::io("lock", key))
    }

    fn hold_claim(&self, id: &LayerId, claim: LockGuard) {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), claim);
    }

    pub(crate) fn holds_claim(&self, id: &LayerId) -> bool {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    pub(crate) fn release_claim(&self, id: &LayerId) {
        self.claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    pub(crate) fn forget_cached_path(&self, id: &LayerId) {
        self.path_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    fn is_mounted(&self, path: &Utf8Path) -> Result<bool> {
        self.ports
            .backend
            .is_mounted(path)
            .map_err(DriverError::io("check mount", path))
    }

    pub(crate) fn unmount_if_mounted(&self, path: &Utf8Path) -> Result<()> {
        if self.is_mounted(path)? {
            self.ports
                .backend
                .unmount(path)
                .map_err(|source| DriverError::Unmount {
                    target: path.to_owned(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Takes a reference to the layer and returns its root: the diff dir of
    /// a layer with no parent, else `mnt/<id>` with the union mounted there
    /// (by the first reference).
    pub fn get(&self, id: &LayerId, mount_label: &str) -> Result<Utf8PathBuf> {
        let _lock = self.lock(id)?;
        let parents = self.parent_diff_dirs(id)?;
        let m = self.cached_path(id).unwrap_or_else(|| {
            if parents.is_empty() {
                self.layout.diff_dir(id)
            } else {
                self.layout.mount_point(id)
            }
        });
        if parents.is_empty() {
            self.refs.increment(id, || false)?;
        } else {
            let mounted = self.is_mounted(&m)? && !self.recovered_stale_mount(id, &m)?;
            let count = self.refs.increment(id, || mounted)?;
            if !mounted {
                if count > 1 {
                    tracing::warn!(storage_driver = "aufs", %id, count, "union was not mounted though referenced; mounting again");
                }
                let spec = UnionSpec {
                    rw: self.layout.diff_dir(id),
                    ro: parents,
                    target: m.clone(),
                    mount_label: mount_label.to_owned(),
                };
                if let Err(source) = self.ports.backend.mount(&spec) {
                    let _ = self.refs.decrement(id, || false);
                    return Err(DriverError::Mount {
                        backend: self.ports.backend.kind().as_str(),
                        target: m,
                        source,
                    });
                }
                tracing::debug!(storage_driver = "aufs", %id, target = %m, layers = spec.ro.len() + 1, "mounted union");
            }
        }
        self.path_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), m.clone());
        Ok(m)
    }

    /// A union whose server died (FUSE) stays in the mount table but every
    /// access fails with `ENOTCONN` (`ECONNABORTED` for one made while the
    /// server was dying). Such a mount is unmounted so it can be mounted
    /// again; returns true when that happened.
    fn recovered_stale_mount(&self, id: &LayerId, m: &Utf8Path) -> Result<bool> {
        match self.ports.fs.kind(m) {
            Err(e) if aufs_ports::is_server_gone(&e) => {
                tracing::warn!(storage_driver = "aufs", %id, target = %m, "union server is gone (ENOTCONN); remounting");
                self.ports
                    .backend
                    .unmount(m)
                    .map_err(|source| DriverError::Unmount {
                        target: m.to_owned(),
                        source,
                    })?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Drops a reference; the last one unmounts the union.
    pub fn put(&self, id: &LayerId) -> Result<()> {
        let _lock = self.lock(id)?;
        let m = self
            .cached_path(id)
            .unwrap_or_else(|| self.layout.mount_point(id));
        let count = self
            .refs
            .decrement(id, || self.is_mounted(&m).unwrap_or(false))?;
        if count > 0 {
            return Ok(());
        }
        let r = self.unmount_if_mounted(&m);
        if let Err(e) = &r {
            tracing::warn!(storage_driver = "aufs", method = "Put()", %id, error = %e.full_message());
        }
        r
    }

    /// The current reference count of a layer.
    pub fn references(&self, id: &LayerId) -> Result<u32> {
        self.refs.peek(id)
    }

    /// Unmounts every union under `mnt/` and anything else mounted under the
    /// root, forgets all references, and recovers from whatever dead
    /// processes left half done ([`Driver::recover`]).
    pub fn cleanup(&self) -> Result<()> {
        let mnt = self.layout.mnt_root();
        let entries = self
            .ports
            .fs
            .read_dir(&mnt)
            .map_err(DriverError::io("aufs readdir", mnt.clone()))?;
        for e in entries.into_iter().filter(|e| e.kind == FileKind::Dir) {
            let m = mnt.join(&e.name);
            if let Err(err) = self.unmount_if_mounted(&m) {
                tracing::warn!(storage_driver = "aufs", method = "Cleanup()", error = %err.full_message());
            }
        }
        self.ports
            .backend
            .unmount_all_under(self.layout.root())
            .map_err(|source| DriverError::Unmount {
                target: self.layout.root().to_owned(),
                source,
            })?;
        for id in self.layer_ids()? {
            self.refs.forget(&id)?;
        }
        self.path_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.recover()
    }
}
