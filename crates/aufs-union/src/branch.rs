//! The branches of a union: real directories, topmost first, each held by
//! a descriptor on its root from which every access starts (see
//! [`crate::beneath`]).

use crate::beneath;
use crate::error::{Result, UnionError};
use crate::meta::Meta;
use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One branch directory.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Its root directory.
    pub root: Utf8PathBuf,
    /// True for the (single, topmost) read-write branch.
    pub writable: bool,
    /// Device of its root, for inode numbers.
    pub dev: u64,
    /// `O_PATH` descriptor of the root, opened once: the branch is reached
    /// through it, never through `root` again.
    fd: Arc<OwnedFd>,
}

impl PartialEq for Branch {
    fn eq(&self, other: &Self) -> bool {
        (&self.root, self.writable, self.dev) == (&other.root, other.writable, other.dev)
    }
}

impl Eq for Branch {}

impl Branch {
    pub(crate) fn open(root: &Utf8Path, writable: bool) -> Result<Self> {
        let err = |source: std::io::Error| UnionError::Branch {
            path: root.to_owned(),
            source,
        };
        // The root itself must be a directory, not a symlink to one.
        let fd = rustix::fs::open(
            root.as_std_path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        let md = Meta::of(&fd).map_err(err)?;
        Ok(Branch {
            root: root.to_owned(),
            writable,
            dev: md.dev(),
            fd: Arc::new(fd),
        })
    }

    /// The held root descriptor.
    pub(crate) fn root_fd(&self) -> &Arc<OwnedFd> {
        &self.fd
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Directory `rel` of this branch, resolved from the root without
    /// following symlinks.
    pub(crate) fn open_dir(&self, rel: &Path) -> Result<Arc<OwnedFd>> {
        if rel.as_os_str().is_empty() {
            return Ok(self.fd.clone());
        }
        beneath::open_dir(self.fd(), rel)
            .map(Arc::new)
            .map_err(|e| UnionError::io("open", self.display(rel), e))
    }

    /// The path of `rel` in this branch, for messages.
    pub(crate) fn display(&self, rel: &Path) -> PathBuf {
        self.root.as_std_path().join(rel)
    }
}
