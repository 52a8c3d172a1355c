//! The branches of a union: real directories, topmost first.

use crate::error::{Result, UnionError};
use camino::{Utf8Path, Utf8PathBuf};
use std::os::unix::fs::MetadataExt;

/// One branch directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// Its root directory.
    pub root: Utf8PathBuf,
    /// True for the (single, topmost) read-write branch.
    pub writable: bool,
    /// Device of its root, for inode numbers.
    pub dev: u64,
}

impl Branch {
    pub(crate) fn open(root: &Utf8Path, writable: bool) -> Result<Self> {
        let md = std::fs::metadata(root).map_err(|source| UnionError::Branch {
            path: root.to_owned(),
            source,
        })?;
        if !md.is_dir() {
            return Err(UnionError::Branch {
                path: root.to_owned(),
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        Ok(Branch {
            root: root.to_owned(),
            writable,
            dev: md.dev(),
        })
    }
}
