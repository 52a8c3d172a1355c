//! The one error type of the crate.

use camino::Utf8PathBuf;
use std::io;

/// What went wrong serving or mounting a FUSE union.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// The server's command line is wrong.
    #[error("union server: {0}")]
    Args(String),
    /// The union view could not be opened.
    #[error("union at {target}: {source}")]
    Union {
        /// The mount point.
        target: Utf8PathBuf,
        /// What the view reported.
        #[source]
        source: aufs_union::UnionError,
    },
    /// The kernel refused the mount (options, permissions, a label).
    #[error("mounting union at {target}: {source}")]
    Mount {
        /// The mount point.
        target: Utf8PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The server's log or state could not be written.
    #[error("union server state {path}: {source}")]
    State {
        /// The file.
        path: Utf8PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl FuseError {
    /// The errno closest to this error.
    pub fn errno(&self) -> i32 {
        match self {
            FuseError::Args(_) => libc::EINVAL,
            FuseError::Union { source, .. } => source.errno(),
            FuseError::Mount { source, .. } | FuseError::State { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
        }
    }
}
