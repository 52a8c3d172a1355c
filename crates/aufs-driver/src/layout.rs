//! Paths of the aufs layout under the root.

use aufs_model::LayerId;
use camino::{Utf8Path, Utf8PathBuf};

/// The directories of a driver root: Docker's `layers/`, `diff/`, `mnt/`,
/// and our own `refs/` (mount reference counts shared by processes),
/// `tar-split/`, `staging/`, `incomplete/` and `removing/`.
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
    /// `incomplete/`: one empty file per layer whose create, import or
    /// removal has not finished (see [`Layout::incomplete_marker`]).
    pub fn incomplete_dir(&self) -> Utf8PathBuf {
        self.root.join("incomplete")
    }
    /// `incomplete/<id>`: while it exists the layer is absent to `exists`,
    /// `ls` and `get`, and once no live process holds the layer, the next
    /// start removes every trace of it.
    pub fn incomplete_marker(&self, id: &LayerId) -> Utf8PathBuf {
        self.incomplete_dir().join(id.as_str())
    }
    /// `removing/`: the dirs of layers being removed, moved out of `diff/`
    /// and `mnt/` so that nothing there is ever deleted by its name alone.
    pub fn removing_dir(&self) -> Utf8PathBuf {
        self.root.join("removing")
    }
    /// `removing/<id>`: the trash of one removal (`diff`, `mnt`).
    pub fn removing(&self, id: &LayerId) -> Utf8PathBuf {
        self.removing_dir().join(id.as_str())
    }
    /// `staging/<id>`: the staging tree and temp files of an apply.
    pub fn staging(&self, id: &LayerId) -> Utf8PathBuf {
        self.staging_dir().join(id.as_str())
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
