//! [`Filesystem`] over the real filesystem.

use crate::at::{have_proc_fd, proc_fd_path};
use crate::atomic_write;
use crate::error::LinuxError;
use crate::mountinfo::{MountInfoSource, ProcSelfMountInfo};
use crate::remove;
use aufs_ports::{DirEntry, FileKind, Filesystem};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode};
use nix::unistd::{Gid, Uid};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// The real filesystem. `remove_all` reads the mount table through a
/// [`MountInfoSource`] to unmount what is mounted below the tree first.
#[derive(Debug, Clone)]
pub struct LinuxFilesystem {
    table: Arc<dyn MountInfoSource>,
}

impl Default for LinuxFilesystem {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxFilesystem {
    /// Uses this process's `/proc/self/mountinfo`.
    pub fn new() -> Self {
        Self::with_mount_table(Arc::new(ProcSelfMountInfo))
    }

    /// Uses `table` as the mount table.
    pub fn with_mount_table(table: Arc<dyn MountInfoSource>) -> Self {
        LinuxFilesystem { table }
    }
}

fn kind_of(ft: std::fs::FileType) -> FileKind {
    if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    }
}

/// Opens directories for traversal only (`O_PATH`): no read permission is
/// needed to walk through them.
fn open_path_dir(dir: BorrowedFd<'_>, name: &str, follow: bool) -> nix::Result<OwnedFd> {
    let mut flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if !follow {
        flags |= OFlag::O_NOFOLLOW;
    }
    nix::fcntl::openat(dir, name, flags, Mode::empty())
}

/// `mkdir` of one component. A directory this call creates gets exactly
/// `mode` and `owner`; one that appeared meanwhile is used as it is.
fn make_dir(
    parent: BorrowedFd<'_>,
    name: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<OwnedFd> {
    match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode & 0o777)) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(open_path_dir(parent, name, true)?),
        Err(e) => return Err(e.into()),
    }
    let fd = open_path_dir(parent, name, false)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchownat(
            fd.as_fd(),
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_EMPTY_PATH,
        )?;
    }
    // After chown, which may clear set-id bits.
    let perms = std::fs::Permissions::from_mode(mode & 0o7777);
    if have_proc_fd() {
        std::fs::set_permissions(proc_fd_path(&fd), perms)?;
    } else {
        nix::sys::stat::fchmodat(
            parent,
            name,
            Mode::from_bits_truncate(mode & 0o7777),
            FchmodatFlags::FollowSymlink,
        )?;
    }
    Ok(fd)
}

/// `create_dir_all` relative to directory descriptors: existing components
/// are followed (symlinks included), created ones are opened without
/// following, so the chmod/chown land on the directory just made.
pub fn create_dir_all(path: &Utf8Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    if !path.is_absolute() {
        return Err(LinuxError::BadPath {
            path: path.to_owned(),
            reason: "not an absolute path",
        }
        .into());
    }
    let mut cur = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for component in path.components() {
        let name = match component {
            Utf8Component::RootDir | Utf8Component::CurDir | Utf8Component::Prefix(_) => continue,
            Utf8Component::ParentDir => "..",
            Utf8Component::Normal(name) => name,
        };
        cur = match open_path_dir(cur.as_fd(), name, true) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if name != ".." => make_dir(cur.as_fd(), name, mode, owner)?,
            Err(e) => return Err(e.into()),
        };
    }
    Ok(())
}

impl Filesystem for LinuxFilesystem {
    fn kind(&self, path: &Utf8Path) -> io::Result<Option<FileKind>> {
        match std::fs::symlink_metadata(path) {
            Ok(md) => Ok(Some(kind_of(md.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_dir_all(
        &self,
        path: &Utf8Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        create_dir_all(path, mode, owner)
    }

    fn read_to_string(&self, path: &Utf8Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_new(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()> {
        atomic_write::write_new(path, data)
    }

    fn write_replace(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()> {
        atomic_write::write_replace(path, data)
    }

    fn remove_file(&self, path: &Utf8Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Utf8Path, to: &Utf8Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_all(&self, path: &Utf8Path) -> io::Result<()> {
        remove::remove_all(path, self.table.as_ref())
    }

    fn read_dir(&self, path: &Utf8Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let kind = match entry.file_type() {
                Ok(ft) => kind_of(ft),
                // Removed between readdir and the lstat fallback.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let name = entry.file_name().into_string().map_err(|raw| {
                io::Error::from(LinuxError::NonUtf8Path {
                    parent: path.to_owned(),
                    lossy: raw.to_string_lossy().into_owned(),
                })
            })?;
            out.push(DirEntry { name, kind });
        }
        Ok(out)
    }

    fn make_temp_dir(&self, prefix: &str) -> io::Result<Utf8PathBuf> {
        if prefix.contains('/') || prefix.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("temp dir prefix {prefix:?} is not a plain name"),
            ));
        }
        let template = std::env::temp_dir().join(format!("{prefix}XXXXXX"));
        let made = nix::unistd::mkdtemp(&template)?;
        Utf8PathBuf::from_path_buf(made).map_err(|p| {
            LinuxError::NonUtf8Path {
                parent: Utf8PathBuf::from("/"),
                lossy: p.to_string_lossy().into_owned(),
            }
            .into()
        })
    }
}
