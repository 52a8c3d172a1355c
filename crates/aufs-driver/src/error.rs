//! Errors of the driver, each naming the layer or path. A cause is
//! returned by `source()` and never repeated in the message.

use aufs_model::{IdError, LayerId, LayersFileError, MountPlanError, UnmappedId};
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
    AlreadyExists(LayerId),
    /// The layer does not exist.
    #[error("layer {0} does not exist")]
    NotFound(LayerId),
    /// The parent of a new layer does not exist.
    #[error("layer {id}: parent {parent} does not exist")]
    ParentNotFound {
        /// The layer being created.
        id: LayerId,
        /// The missing parent.
        parent: LayerId,
    },
    /// `parent` is not an ancestor of `id`.
    #[error("layer {id}: {parent} is not one of its ancestors")]
    NotAnAncestor {
        /// The layer.
        id: LayerId,
        /// The claimed ancestor.
        parent: LayerId,
    },
    /// A layer archive operation failed (the cause names the tar entry or path).
    #[error("layer {id}: {op} failed")]
    Archive {
        /// The layer.
        id: LayerId,
        /// `apply`, `export`, `changes`, `diff` or `size`.
        op: &'static str,
        /// What failed, from the archive port.
        source: io::Error,
    },
    /// The layer is mounted, so its diff dir cannot be replaced.
    #[error("layer {0} is mounted; unmount it before applying a diff")]
    Mounted(LayerId),
    /// `parent` is not the layer's direct parent.
    #[error("layer {id}: {parent} is not its direct parent")]
    NotDirectParent {
        /// The layer.
        id: LayerId,
        /// The claimed parent.
        parent: LayerId,
    },
    /// Other layers are built on this one.
    #[error("layer {id} has child layers: {}", join_ids(.children))]
    HasChildren {
        /// The layer.
        id: LayerId,
        /// Its direct children.
        children: Vec<LayerId>,
    },
    /// A layers file could not be parsed.
    #[error(transparent)]
    LayersFile(#[from] LayersFileError),
    /// The mount data cannot be built.
    #[error("layer {id}: cannot build the mount data")]
    MountPlan {
        /// The layer.
        id: LayerId,
        /// Why.
        source: MountPlanError,
    },
    /// Id maps do not cover root.
    #[error(transparent)]
    IdMap(#[from] UnmappedId),
    /// Mounting a union failed.
    #[error("error creating {backend} mount to {target}")]
    Mount {
        /// `kernel` or `fuse`.
        backend: &'static str,
        /// The mount point.
        target: Utf8PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Unmounting failed.
    #[error("error unmounting {target}")]
    Unmount {
        /// The mount point.
        target: Utf8PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}")]
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

    /// The message followed by its causes, `: `-separated, each cause left
    /// out when the text so far already holds it (for logs and one-line
    /// reports).
    pub fn full_message(&self) -> String {
        with_causes(self)
    }

    /// The OS error number behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            DriverError::Mount { source, .. }
            | DriverError::Unmount { source, .. }
            | DriverError::Io { source, .. }
            | DriverError::Archive { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn join_ids(ids: &[LayerId]) -> String {
    ids.iter()
        .map(LayerId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorthand.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// Any error followed by its causes, `: `-separated, each cause left out
/// when the text so far already holds it: the one line an error makes in a
/// log, on a command line or in a reply.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let text = cause.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_cause_is_in_the_source_not_in_the_message() {
        let id = LayerId::new("l").unwrap();
        let e = DriverError::Archive {
            id: id.clone(),
            op: "apply",
            source: io::Error::other("bad entry ../x"),
        };
        assert_eq!(e.to_string(), "layer l: apply failed");
        assert_eq!(e.source().unwrap().to_string(), "bad entry ../x");
        assert_eq!(e.full_message(), "layer l: apply failed: bad entry ../x");
        let e = DriverError::io("read", "/r/layers/l")(io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.to_string(), "read /r/layers/l");
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
        let e = DriverError::HasChildren {
            id,
            children: vec![LayerId::new("a").unwrap(), LayerId::new("b").unwrap()],
        };
        assert_eq!(e.to_string(), "layer l has child layers: a, b");
        assert!(e.source().is_none());
    }
}
