//! Errors of the driver, each naming the layer, path or cause.

use aufs_model::{IdError, LayersFileError, MountPlanError, UnmappedId};
use camino::Utf8PathBuf;
use std::io;

/// What went wrong in a driver operation.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The id is not a valid layer id.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// The chosen backend cannot work on this host.
    #[error("driver not supported: {0}")]
    NotSupported(String),
    /// Kernel aufs cannot stack on the backing filesystem.
    #[error("AUFS is not supported over {fs} ({root})")]
    IncompatibleFs {
        /// Docker's name of the backing filesystem.
        fs: String,
        /// The root checked.
        root: Utf8PathBuf,
    },
    /// Storage options were given; aufs has none.
    #[error("--storage-opt is not supported for aufs")]
    StorageOptNotSupported,
    /// The layer already exists.
    #[error("layer {0} already exists")]
    AlreadyExists(String),
    /// The layer does not exist.
    #[error("layer {0} does not exist")]
    NotFound(String),
    /// The parent of a new layer does not exist.
    #[error("layer {id}: parent {parent} does not exist")]
    ParentNotFound {
        /// The layer being created.
        id: String,
        /// The missing parent.
        parent: String,
    },
    /// `parent` is not an ancestor of `id`.
    #[error("layer {id}: {parent} is not one of its ancestors")]
    NotAnAncestor {
        /// The layer.
        id: String,
        /// The claimed ancestor.
        parent: String,
    },
    /// A layer archive operation failed (the tar entry or path is named).
    #[error("layer {id}: {source}")]
    Archive {
        /// The layer.
        id: String,
        /// What failed.
        source: aufs_archive::ArchiveError,
    },
    /// The layer is mounted, so its diff dir cannot be replaced.
    #[error("layer {0} is mounted; unmount it before applying a diff")]
    Mounted(String),
    /// `parent` is not the layer's direct parent.
    #[error("layer {id}: {parent} is not its direct parent")]
    NotDirectParent {
        /// The layer.
        id: String,
        /// The claimed parent.
        parent: String,
    },
    /// Other layers are built on this one.
    #[error("layer {id} has child layers: {children}")]
    HasChildren {
        /// The layer.
        id: String,
        /// Its direct children, comma-separated.
        children: String,
    },
    /// A layers file could not be parsed.
    #[error(transparent)]
    LayersFile(#[from] LayersFileError),
    /// The mount data cannot be built.
    #[error("layer {id}: {source}")]
    MountPlan {
        /// The layer.
        id: String,
        /// Why.
        source: MountPlanError,
    },
    /// Id maps do not cover root.
    #[error(transparent)]
    IdMap(#[from] UnmappedId),
    /// Mounting a union failed.
    #[error("error creating {backend} mount to {target}: {source}")]
    Mount {
        /// `kernel` or `fuse`.
        backend: &'static str,
        /// The mount point.
        target: Utf8PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Unmounting failed.
    #[error("error unmounting {target}: {source}")]
    Unmount {
        /// The mount point.
        target: Utf8PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: Utf8PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl DriverError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<Utf8PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| DriverError::Io { op, path, source }
    }

    /// The OS error number behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            DriverError::Mount { source, .. }
            | DriverError::Unmount { source, .. }
            | DriverError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Shorthand.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;
