//! Paths of the aufs layout under the root.

use aufs_model::LayerId;
use camino::{Utf8Path, Utf8PathBuf};

/// The directories of a driver root: Docker's `layers/`, `diff/`, `mnt/`,
/// and our own `refs/` (mount reference counts shared by processes).
#[derive(Debug, Clone)]
pub struct Layout {
    root: Utf8PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<Utf8PathBuf>) -> Self {
        Layout { root: root.into() }
    }
    /// The root.
    pub fn root(&self) -> &Utf8Path {
        &self.root
    }
    /// `layers/`.
    pub fn layers_dir(&self) -> Utf8PathBuf {
        self.root.join("layers")
    }
    /// `diff/`.
    pub fn diff_root(&self) -> Utf8PathBuf {
        self.root.join("diff")
    }
    /// `mnt/`.
    pub fn mnt_root(&self) -> Utf8PathBuf {
        self.root.join("mnt")
    }
    /// `refs/`.
    pub fn refs_dir(&self) -> Utf8PathBuf {
        self.root.join("refs")
    }
    /// `tar-split/`: exact-bytes metadata of applied layers.
    pub fn tar_split_dir(&self) -> Utf8PathBuf {
        self.root.join("tar-split")
    }
    /// `staging/`: layers being applied, swapped into `diff/` when complete.
    pub fn staging_dir(&self) -> Utf8PathBuf {
        self.root.join("staging")
    }
    /// `layers/<id>`.
    pub fn layers_file(&self, id: &LayerId) -> Utf8PathBuf {
        self.root.join("layers").join(id.as_str())
    }
    /// `diff/<id>`.
    pub fn diff_dir(&self, id: &LayerId) -> Utf8PathBuf {
        self.root.join("diff").join(id.as_str())
    }
    /// `mnt/<id>`.
    pub fn mount_point(&self, id: &LayerId) -> Utf8PathBuf {
        self.root.join("mnt").join(id.as_str())
    }
}
