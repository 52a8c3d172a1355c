//! The one error type of the crate; every variant names the path that failed.

use camino::Utf8PathBuf;
use std::io;
use std::path::PathBuf;

/// What went wrong in a union operation.
#[derive(Debug, thiserror::Error)]
pub enum UnionError {
    /// A branch directory could not be opened.
    #[error("branch {path}: {source}")]
    Branch {
        /// The branch root.
        path: Utf8PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A system call on a real file of a branch failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// The operation (`lstat`, `mkdir`, ...).
        op: &'static str,
        /// The real path in a branch.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The union path has `..`, `.` or is otherwise not a plain relative path.
    #[error("invalid union path {path:?}")]
    InvalidPath {
        /// The offending path.
        path: PathBuf,
    },
    /// The union path names nothing.
    #[error("{path:?}: no such entry in the union")]
    NotFound {
        /// The union path.
        path: PathBuf,
    },
    /// The name is reserved for aufs (`.wh.` prefix).
    #[error("{path:?}: names starting with .wh. are reserved for aufs whiteouts")]
    Reserved {
        /// The union path.
        path: PathBuf,
    },
    /// The union has no writable branch.
    #[error("{path:?}: the union has no writable branch")]
    ReadOnly {
        /// The union path.
        path: PathBuf,
    },
    /// A path component or the target is not a directory.
    #[error("{path:?}: not a directory")]
    NotADirectory {
        /// The union path.
        path: PathBuf,
    },
    /// The target is a directory.
    #[error("{path:?}: is a directory")]
    IsADirectory {
        /// The union path.
        path: PathBuf,
    },
    /// The directory still shows entries in the union.
    #[error("{path:?}: directory not empty")]
    NotEmpty {
        /// The union path.
        path: PathBuf,
    },
    /// The name already exists in the union.
    #[error("{path:?}: already exists")]
    Exists {
        /// The union path.
        path: PathBuf,
    },
    /// A directory with parts in read-only branches cannot be renamed
    /// (as aufs without `dirren`); callers fall back to copy and delete.
    #[error("{path:?}: directory has read-only parts and cannot be renamed")]
    CrossBranchRename {
        /// The union path.
        path: PathBuf,
    },
    /// A name is longer than [`crate::MAX_NAME_LEN`] (its whiteout would
    /// not fit in a branch).
    #[error("{path:?}: name too long for the union")]
    NameTooLong {
        /// The union path.
        path: PathBuf,
    },
    /// The operation is not supported by the union.
    #[error("{path:?}: {what} is not supported")]
    Unsupported {
        /// The union path.
        path: PathBuf,
        /// What was asked.
        what: &'static str,
    },
}

impl UnionError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        UnionError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The errno a filesystem reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            UnionError::Branch { source, .. } | UnionError::Io { source, .. } => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            UnionError::InvalidPath { .. } => libc::EINVAL,
            // As aufs (`au_test_shwh`): reserved names are not permitted.
            UnionError::Reserved { .. } => libc::EPERM,
            UnionError::NotFound { .. } => libc::ENOENT,
            UnionError::ReadOnly { .. } => libc::EROFS,
            UnionError::NotADirectory { .. } => libc::ENOTDIR,
            UnionError::IsADirectory { .. } => libc::EISDIR,
            UnionError::NotEmpty { .. } => libc::ENOTEMPTY,
            UnionError::Exists { .. } => libc::EEXIST,
            UnionError::CrossBranchRename { .. } => libc::EXDEV,
            UnionError::NameTooLong { .. } => libc::ENAMETOOLONG,
            UnionError::Unsupported { .. } => libc::EINVAL,
        }
    }
}

/// Result of union operations.
pub type Result<T, E = UnionError> = std::result::Result<T, E>;
