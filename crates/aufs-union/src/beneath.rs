//! Resolution that never leaves a branch and never follows a symlink.
//!
//! Processes inside a mounted union control the rw branch: they can swap a
//! directory for a symlink to anywhere between two requests. A path string
//! walked again later would follow that symlink as the server (root), so
//! every branch access starts from a held descriptor: the branch root, or a
//! directory resolved from it with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, which
//! fails (`ELOOP`, `EXDEV`) rather than follow anything. A directory
//! descriptor stays inside its branch whatever is renamed later: the union
//! only moves entries within the rw branch.

use crate::entry::EntryKind;
use crate::meta::Meta;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Resolution flags for every path below a branch root.
pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// The longest relative path handed to one `openat2`: deeper directories
/// (union paths can outgrow `PATH_MAX`) are resolved in steps.
const STEP: usize = 3072;

/// `O_PATH` descriptor of directory `rel` below `root`, resolved without
/// following any symlink and without leaving `root`.
pub(crate) fn open_dir(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut names: Vec<&OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::from_raw_os_error(libc::EINVAL))
            }
        }
    }
    let mut cur: Option<OwnedFd> = None;
    let mut step: Vec<u8> = Vec::new();
    let mut rest = names.into_iter().peekable();
    loop {
        step.clear();
        while let Some(n) = rest.peek() {
            if !step.is_empty() && step.len() + 1 + n.len() > STEP {
                break;
            }
            if !step.is_empty() {
                step.push(b'/');
            }
            step.extend_from_slice(n.as_bytes());
            rest.next();
        }
        if step.is_empty() {
            step.push(b'.');
        }
        let from = cur.as_ref().map_or(root, |f| f.as_fd());
        let next = rustix::fs::openat2(from, &step[..], flags, Mode::empty(), BENEATH)?;
        cur = Some(next);
        if rest.peek().is_none() {
            return Ok(cur.expect("one step resolved"));
        }
    }
}

/// `O_PATH` descriptor of `name` in `dir` itself, not followed if a symlink.
pub(crate) fn pin(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `O_PATH` descriptor of subdirectory `name` of `dir` (`ENOTDIR` for a
/// symlink or anything else).
pub(crate) fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `/proc/thread-self/fd/N` of `fd`: names exactly the file `fd` holds,
/// for the calls that have no descriptor form (`chmod` of an `O_PATH`
/// descriptor, xattrs). The magic link lands on that inode and goes no
/// further, even when it is a symlink. (`thread-self`, not `self`: it
/// resolves whichever thread asks, even once the main thread is gone.)
pub(crate) fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
}

/// One name of a directory listing.
#[derive(Debug)]
pub struct Listed {
    /// The name.
    pub name: OsString,
    /// Its type (from the listing, or `statx` where the filesystem does not
    /// say).
    pub kind: EntryKind,
    /// Its inode number.
    pub ino: u64,
}

/// The names of directory `dir` (any descriptor of it, `O_PATH` too),
/// without `.` and `..`: read through a new descriptor opened from it, so
/// nothing is resolved by path.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Listed>> {
    list_open(open_listing(dir)?)
}

/// A descriptor of directory `dir` open for reading its names (and, unlike
/// an `O_PATH` one, for `fgetxattr`).
pub(crate) fn open_listing(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names of the directory `fd` is open on (see [`open_listing`]).
pub(crate) fn list_open(fd: OwnedFd) -> io::Result<Vec<Listed>> {
    let mut reader = rustix::fs::Dir::new(fd)?;
    let mut out = Vec::new();
    while let Some(de) = reader.read() {
        let de = de?;
        let name = de.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let kind = match de.file_type() {
            rustix::fs::FileType::Unknown => Meta::at(reader.fd()?, &name)?.kind(),
            ft => EntryKind::from_rustix(ft),
        };
        out.push(Listed {
            name,
            kind,
            ino: de.ino(),
        });
    }
    Ok(out)
}

/// Removes `name` in `dir`, a directory with everything below it; nothing
/// below is followed (std's removal walks with `openat(O_NOFOLLOW)`, and
/// the parent is pinned through its descriptor).
pub(crate) fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    std::fs::remove_dir_all(proc_path(dir).join(name))
}

/// Removes non-directory `name` in `dir`.
pub(crate) fn unlink(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::unlinkat(
        dir,
        name,
        rustix::fs::AtFlags::empty(),
    )?)
}

/// True when `name` exists in `dir` (whatever it is).
pub(crate) fn exists(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    match Meta::at(dir, name) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_anywhere_in_the_path_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("a/lnk")).unwrap();
        std::os::unix::fs::symlink("b", root.join("a/rel")).unwrap();
        let fd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert!(open_dir(fd.as_fd(), Path::new("a/b")).is_ok());
        assert!(open_dir(fd.as_fd(), Path::new("")).is_ok());
        for bad in ["a/lnk", "a/rel", "a/lnk/ssl", "a/rel/."] {
            let err = open_dir(fd.as_fd(), Path::new(bad)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{bad}");
        }
        assert!(open_dir(fd.as_fd(), Path::new("a/../..")).is_err());
        let a = open_dir(fd.as_fd(), Path::new("a")).unwrap();
        assert_eq!(
            open_subdir(a.as_fd(), OsStr::new("lnk"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
        assert!(
            Meta::at(pin(a.as_fd(), OsStr::new("lnk")).unwrap(), OsStr::new(""))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn deep_directories_resolve_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let name = "d".repeat(250);
        let mut rel = PathBuf::new();
        let mut cur = open_dir(fd.as_fd(), Path::new("")).unwrap();
        while rel.as_os_str().len() < 5000 {
            rustix::fs::mkdirat(&cur, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            cur = open_subdir(cur.as_fd(), OsStr::new(&name)).unwrap();
            rel.push(&name);
        }
        let deep = open_dir(fd.as_fd(), &rel).unwrap();
        assert_eq!(
            Meta::of(&deep).unwrap().ino(),
            Meta::of(&cur).unwrap().ino()
        );
        let listed = list(open_dir(fd.as_fd(), Path::new("")).unwrap().as_fd()).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].kind, EntryKind::Dir);
    }
}
