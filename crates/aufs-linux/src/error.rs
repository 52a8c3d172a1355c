//! The errors of this crate that are not plain OS errors.
//!
//! The ports speak `std::io::Error`; OS failures are passed through with
//! their errno intact (the driver reacts to `EBUSY`, `EEXIST`, ...). The
//! failures below have no errno of their own: they are wrapped into an
//! `io::Error` of the matching kind, with this enum as the payload.

use camino::Utf8PathBuf;
use std::io;

/// What went wrong in an adapter, beyond an OS error code.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A line of `/proc/self/mountinfo` does not have the documented shape.
    #[error("mountinfo line {line}: {reason}: {text:?}")]
    MountInfo {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
        /// The line as read (lossy UTF-8).
        text: String,
    },
    /// A path the ports must express as UTF-8 is not.
    #[error("path under {parent} is not UTF-8: {lossy:?}")]
    NonUtf8Path {
        /// The directory or root being listed.
        parent: Utf8PathBuf,
        /// The name, with invalid bytes replaced.
        lossy: String,
    },
    /// The operation needs an absolute path with a final name.
    #[error("{path}: {reason}")]
    BadPath {
        /// The path given.
        path: Utf8PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A lock key that cannot name a file.
    #[error("lock key {key:?} is not a plain file name")]
    BadLockKey {
        /// The key given.
        key: String,
    },
    /// `modprobe NAME` ran and failed.
    #[error("modprobe {module} failed ({status}): {stderr}")]
    Modprobe {
        /// The module name.
        module: String,
        /// Its exit status, as text.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
}

impl LinuxError {
    /// The `io::ErrorKind` this failure is reported as.
    fn kind(&self) -> io::ErrorKind {
        match self {
            LinuxError::MountInfo { .. } | LinuxError::NonUtf8Path { .. } => {
                io::ErrorKind::InvalidData
            }
            LinuxError::BadPath { .. } | LinuxError::BadLockKey { .. } => {
                io::ErrorKind::InvalidInput
            }
            LinuxError::Modprobe { .. } => io::ErrorKind::Other,
        }
    }
}

impl From<LinuxError> for io::Error {
    fn from(e: LinuxError) -> Self {
        io::Error::new(e.kind(), e)
    }
}
