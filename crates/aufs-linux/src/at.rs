//! Small helpers for working relative to directory file descriptors, so a
//! name is resolved in exactly the directory that was checked.

use crate::error::LinuxError;
use camino::Utf8Path;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Splits an absolute path into its parent directory and final name,
/// refusing `/`, relative paths and a final `.`/`..`.
pub fn split_parent(path: &Utf8Path) -> io::Result<(&Utf8Path, &str)> {
    let bad = |reason| LinuxError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if !path.is_absolute() {
        return Err(bad("not an absolute path").into());
    }
    let trimmed = path.as_str().trim_end_matches('/');
    let (parent, name) = trimmed
        .rsplit_once('/')
        .ok_or_else(|| bad("has no final name"))?;
    if name.is_empty() || name == "." || name == ".." {
        return Err(bad("has no final name").into());
    }
    let parent = if parent.is_empty() { "/" } else { parent };
    Ok((Utf8Path::new(parent), name))
}

/// Opens a directory (following symlinks: the caller trusts this path) for
/// use as the base of `*at` calls.
pub fn open_dir(path: &Utf8Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(
        path.as_std_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// The `/proc/self/fd/N` path of an open descriptor: operations on it reach
/// exactly the open inode, whatever happens to names meanwhile.
pub fn proc_fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// True when `/proc/self/fd` can be used for [`proc_fd_path`].
pub fn have_proc_fd() -> bool {
    std::path::Path::new("/proc/self/fd").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parent_cases() {
        assert_eq!(
            split_parent(Utf8Path::new("/a/b")).unwrap(),
            (Utf8Path::new("/a"), "b")
        );
        assert_eq!(
            split_parent(Utf8Path::new("/a/b/")).unwrap(),
            (Utf8Path::new("/a"), "b")
        );
        assert_eq!(
            split_parent(Utf8Path::new("/a")).unwrap(),
            (Utf8Path::new("/"), "a")
        );
        for bad in ["/", "a/b", "/a/..", "/a/.", ""] {
            let e = split_parent(Utf8Path::new(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
