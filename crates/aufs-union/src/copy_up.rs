//! Copying one entry of a lower branch into the rw branch: data (holes kept),
//! owner, mode, xattrs and times.

use crate::error::{Result, UnionError};
use rustix::fs::{AtFlags, FileType, Mode, SeekFrom, Timestamps, CWD};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a half-made copy: an aufs metadata name, so the union never
/// shows it even if a crash leaves it behind.
pub(crate) fn temp_name() -> String {
    format!(
        ".wh..wh.cpup.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Copies the bytes of `src` into `dst` (both at offset 0), skipping holes.
pub(crate) fn copy_data(src: &File, dst: &File, len: u64) -> io::Result<()> {
    let mut off = 0u64;
    while off < len {
        let data = match rustix::fs::seek(src, SeekFrom::Data(off)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => off,
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = match rustix::fs::seek(src, SeekFrom::Hole(data)) {
            Ok(h) => h.min(len),
            Err(_) => len,
        };
        copy_range(src, dst, data, hole)?;
        off = hole;
    }
    dst.set_len(len)
}

fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> io::Result<()> {
    let mut pos = start;
    while pos < end {
        let mut off_in = pos;
        let mut off_out = pos;
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(n) => pos += n as u64,
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP,
            ) => return copy_range_rw(src, dst, pos, end),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn copy_range_rw(src: &File, dst: &File, mut pos: u64, end: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = src.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        dst.write_all_at(&buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// Copies all xattrs of `src` onto `dst` (neither followed if a symlink).
pub(crate) fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let size = match rustix::fs::llistxattr_query(src) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(UnionError::io("listxattr", src, e.into())),
    };
    if size == 0 {
        return Ok(());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(src, &mut names[..])
        .map_err(|e| UnionError::io("listxattr", src, e.into()))?;
    names.truncate(n);
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes_ext(name);
        let len = match rustix::fs::lgetxattr_query(src, name) {
            Ok(l) => l,
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(UnionError::io("getxattr", src, e.into())),
        };
        let mut value = vec![0u8; len];
        let len = rustix::fs::lgetxattr(src, name, &mut value[..])
            .map_err(|e| UnionError::io("getxattr", src, e.into()))?;
        value.truncate(len);
        match rustix::fs::lsetxattr(dst, name, &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // Symlinks cannot carry user.* xattrs on Linux.
            Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {
                tracing::debug!(storage_driver = "aufs", ?dst, ?name, "xattr not copied");
            }
            Err(e) => return Err(UnionError::io("setxattr", dst, e.into())),
        }
    }
    Ok(())
}

trait OsStrFromBytes {
    fn from_bytes_ext(b: &[u8]) -> &Self;
}
impl OsStrFromBytes for std::ffi::OsStr {
    fn from_bytes_ext(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// True when this process may give files to any owner (euid 0).
pub(crate) fn privileged() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives `path` (now owned by `current`) the owner `want`, not following a
/// symlink. Nothing is done when it has that owner already. A server
/// running without root cannot give files away: there the entry keeps the
/// server's ids, as in any unprivileged (rootless) union, and the refusal is
/// logged rather than failing the operation. As root every failure counts.
pub(crate) fn set_owner(path: &Path, current: (u32, u32), want: (u32, u32)) -> Result<()> {
    if current == want {
        return Ok(());
    }
    match std::os::unix::fs::lchown(path, Some(want.0), Some(want.1)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !privileged() => {
            tracing::debug!(
                storage_driver = "aufs",
                ?path,
                uid = want.0,
                gid = want.1,
                "owner not set: the union runs unprivileged"
            );
            Ok(())
        }
        Err(e) => Err(UnionError::io("chown", path, e)),
    }
}

/// Sets owner, then mode (chown clears set-id bits), of `dst`.
pub(crate) fn copy_owner_mode(dst: &Path, md: &Metadata) -> Result<()> {
    let now = std::fs::symlink_metadata(dst).map_err(|e| UnionError::io("lstat", dst, e))?;
    set_owner(dst, (now.uid(), now.gid()), (md.uid(), md.gid()))?;
    if !md.file_type().is_symlink() {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| UnionError::io("chmod", dst, e))?;
    }
    Ok(())
}

/// Sets access and modification times of `dst` (not followed).
pub(crate) fn copy_times(dst: &Path, md: &Metadata) -> Result<()> {
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = Timestamps {
        last_access: ts(md.atime(), md.atime_nsec()),
        last_modification: ts(md.mtime(), md.mtime_nsec()),
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| UnionError::io("utimensat", dst, e.into()))
}

/// Creates at `dst` a copy of `src` (described by `md`): a file with its
/// data (or empty when `with_data` is false), a symlink, a device, fifo or
/// socket, or an empty directory; then its attributes.
pub(crate) fn copy_node(src: &Path, md: &Metadata, dst: &Path, with_data: bool) -> Result<()> {
    let ft = md.file_type();
    if ft.is_file() {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dst)
            .map_err(|e| UnionError::io("create", dst, e))?;
        if with_data {
            let input = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(src)
                .map_err(|e| UnionError::io("open", src, e))?;
            copy_data(&input, &out, md.len()).map_err(|e| UnionError::io("copy", dst, e))?;
        }
    } else if ft.is_dir() {
        std::fs::create_dir(dst).map_err(|e| UnionError::io("mkdir", dst, e))?;
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| UnionError::io("readlink", src, e))?;
        std::os::unix::fs::symlink(&target, dst).map_err(|e| UnionError::io("symlink", dst, e))?;
    } else {
        rustix::fs::mknodat(
            CWD,
            dst,
            FileType::from_raw_mode(md.mode()),
            Mode::from_raw_mode(md.mode() & 0o7777),
            md.rdev(),
        )
        .map_err(|e| UnionError::io("mknod", dst, e.into()))?;
    }
    copy_owner_mode(dst, md)?;
    copy_xattrs(src, dst)?;
    copy_times(dst, md)
}
