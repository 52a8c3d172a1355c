//! The branches of a union: real directories, topmost first.

use crate::error::{Result, UnionError};
use camino::{Utf8Path, Utf8PathBuf};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Real paths longer than this are reached through the branch's short root:
/// what is left below `PATH_MAX` (4096) is room for one more name (255), a
/// `.wh.` prefix and an opaque marker below it.
const LONG_PATH: usize = 3584;

/// One branch directory.
#[derive(Debug, Clone)]
pub struct Branch {
    /// Its root directory.
    pub root: Utf8PathBuf,
    /// True for the (single, topmost) read-write branch.
    pub writable: bool,
    /// Device of its root, for inode numbers.
    pub dev: u64,
    /// The root as `/proc/self/fd/N/`, for paths near `PATH_MAX`: opened
    /// the first time one is met (a view of many layers holds no
    /// descriptors otherwise).
    short_root: Arc<OnceLock<Option<ShortRoot>>>,
}

impl PartialEq for Branch {
    fn eq(&self, other: &Self) -> bool {
        (&self.root, self.writable, self.dev) == (&other.root, other.writable, other.dev)
    }
}

impl Eq for Branch {}

/// A descriptor held open on a branch root, and the path naming it.
///
/// A union path of up to `PATH_MAX` bytes is longer than that in a branch
/// whose root path is longer than the mount point's (Docker's `diff/<id>`
/// is one byte longer than `mnt/<id>`); the kernel refuses it with
/// `ENAMETOOLONG` where aufs, working below the VFS, has no such limit.
/// Through `/proc/self/fd/N/` the root takes some 17 bytes. Only long paths
/// go this way: resolving every path through procfs made an untar 12 %
/// slower.
#[derive(Debug)]
struct ShortRoot {
    path: PathBuf,
    _fd: OwnedFd,
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
            short_root: Arc::default(),
        })
    }

    /// `real`, a path in this branch, as the kernel accepts it: itself, or
    /// when it is near `PATH_MAX` the same file below the short root.
    pub(crate) fn fit(&self, real: PathBuf) -> PathBuf {
        if real.as_os_str().len() <= LONG_PATH {
            return real;
        }
        let Some(short) = self.short_root.get_or_init(|| short_root(&self.root)) else {
            return real;
        };
        match real.strip_prefix(self.root.as_std_path()) {
            Ok(rel) => short.path.join(rel),
            Err(_) => real,
        }
    }

    /// The real path of union path `rel` in this branch (see [`Self::fit`]).
    pub(crate) fn real(&self, rel: &Path) -> PathBuf {
        self.fit(self.root.as_std_path().join(rel))
    }
}

/// `/proc/self/fd/N/` of a descriptor on `root`; `None` without procfs.
fn short_root(root: &Utf8Path) -> Option<ShortRoot> {
    if !Path::new("/proc/self/fd").is_dir() {
        return None;
    }
    let fd = rustix::fs::open(
        root.as_std_path(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    // The trailing slash: calls that do not follow a final symlink still
    // resolve the magic link to the directory.
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}/",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    Some(ShortRoot { path, _fd: fd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_go_through_the_short_root_and_reach_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        // A root much longer than `/proc/self/fd/N/`, as Docker's are.
        let root = Utf8PathBuf::from_path_buf(dir.path().join("r".repeat(200))).unwrap();
        std::fs::create_dir(&root).unwrap();
        let b = Branch::open(&root, true).unwrap();
        assert_eq!(
            b.real(Path::new("a/b")),
            root.as_std_path().join("a/b"),
            "short paths stay real"
        );
        // Nested dirs down to a real path just over PATH_MAX.
        let mut rel = PathBuf::new();
        loop {
            let left = 4096 + 10 - root.as_str().len() - rel.as_os_str().len() - 1;
            let name = "d".repeat(left.min(200));
            let parent = b.real(&rel);
            rustix::fs::mkdir(parent.join(&name), rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
            rel.push(&name);
            if left <= 200 {
                break;
            }
        }
        let long = root.as_std_path().join(&rel);
        assert!(long.as_os_str().len() > 4096);
        assert_eq!(
            std::fs::symlink_metadata(&long).unwrap_err().raw_os_error(),
            Some(libc::ENAMETOOLONG),
            "the real path itself is refused"
        );
        let fitted = b.real(&rel);
        assert!(fitted.starts_with("/proc/self/fd/"), "{}", fitted.display());
        assert!(std::fs::symlink_metadata(&fitted).unwrap().is_dir());
        std::fs::write(fitted.join("f"), b"x").unwrap();
        assert_eq!(std::fs::read(b.real(&rel.join("f"))).unwrap(), b"x");
    }
}
