//! Copying one entry of a lower branch into the rw branch: data (holes kept),
//! owner, mode, xattrs and times.

use crate::beneath::{pin, proc_path};
use crate::entry::{read_sized, set_mode_pinned, Entry, EntryKind};
use crate::error::{Result, UnionError};
use crate::meta::Meta;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom, Timestamps};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
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

/// Copies all xattrs of `src` onto `dst`, a pinned (`O_PATH`) new file.
pub(crate) fn copy_xattrs(src: &Entry, dst: &OwnedFd, dst_path: &Path) -> Result<()> {
    let sfd = src
        .pin()
        .map_err(|e| UnionError::io("open", &src.real_path, e))?;
    let sp = proc_path(sfd.as_fd());
    let names = match read_sized(
        || rustix::fs::listxattr_query(&sp),
        |buf| rustix::fs::listxattr(&sp, buf),
    ) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(UnionError::io("listxattr", &src.real_path, e)),
    };
    let dp = proc_path(dst.as_fd());
    // Overlayfs's own xattrs are instructions to an overlayfs stacked on
    // the layer (redirects, metacopy, opaque): never carried up.
    for name in names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter(|n| !aufs_model::whiteout::is_overlay_xattr(n))
    {
        let name = OsStr::from_bytes(name);
        let value = match read_sized(
            || rustix::fs::getxattr_query(&sp, name),
            |buf| rustix::fs::getxattr(&sp, name, buf),
        ) {
            Ok(v) => v,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(UnionError::io("getxattr", &src.real_path, e)),
        };
        match rustix::fs::setxattr(&dp, name, &value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => {}
            // Symlinks cannot carry user.* xattrs on Linux.
            Err(rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP) => {
                tracing::debug!(
                    storage_driver = "aufs",
                    ?dst_path,
                    ?name,
                    "xattr not copied"
                );
            }
            Err(e) => return Err(UnionError::io("setxattr", dst_path, e.into())),
        }
    }
    Ok(())
}

/// True when this process may give files to any owner (euid 0).
pub(crate) fn privileged() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives pinned `fd` (at `path`, now owned by `current`) the owner `want`.
/// Nothing is done when it has that owner already. A server running
/// without root cannot give files away: there the entry keeps the server's
/// ids, as in any unprivileged (rootless) union, and the refusal is logged
/// rather than failing the operation. As root every failure counts.
pub(crate) fn set_owner(
    fd: &OwnedFd,
    path: &Path,
    current: (u32, u32),
    want: (u32, u32),
) -> Result<()> {
    if current == want {
        return Ok(());
    }
    match rustix::fs::chownat(
        fd,
        c"",
        Some(rustix::fs::Uid::from_raw(want.0)),
        Some(rustix::fs::Gid::from_raw(want.1)),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::PERM) if !privileged() => {
            tracing::debug!(
                storage_driver = "aufs",
                ?path,
                uid = want.0,
                gid = want.1,
                "owner not set: the union runs unprivileged"
            );
            Ok(())
        }
        Err(e) => Err(UnionError::io("chown", path, e.into())),
    }
}

/// Sets owner, then mode (chown clears set-id bits), of pinned `dst`.
pub(crate) fn copy_owner_mode(dst: &OwnedFd, path: &Path, md: &Meta) -> Result<()> {
    let now = Meta::of(dst).map_err(|e| UnionError::io("lstat", path, e))?;
    set_owner(dst, path, (now.uid(), now.gid()), (md.uid(), md.gid()))?;
    set_mode_pinned(dst, md, md.mode()).map_err(|e| UnionError::io("chmod", path, e))
}

/// Sets access and modification times of pinned `dst`.
pub(crate) fn copy_times(dst: &OwnedFd, path: &Path, md: &Meta) -> Result<()> {
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    let times = Timestamps {
        last_access: ts(md.atime(), md.atime_nsec()),
        last_modification: ts(md.mtime(), md.mtime_nsec()),
    };
    rustix::fs::utimensat(dst, c"", &times, AtFlags::EMPTY_PATH)
        .map_err(|e| UnionError::io("utimensat", path, e.into()))
}

/// Owner, mode, xattrs and times of `src` onto `name` in `dir`, just made.
pub(crate) fn copy_attrs(
    src: &Entry,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
) -> Result<()> {
    let dst = pin(dir, name).map_err(|e| UnionError::io("open", path, e))?;
    copy_owner_mode(&dst, path, &src.metadata)?;
    copy_xattrs(src, &dst, path)?;
    copy_times(&dst, path, &src.metadata)
}

/// Creates `name` in `dir` (at `path`), a copy of `src`: a file with its
/// data (or empty when `with_data` is false), a symlink, a device, fifo or
/// socket, or an empty directory; then its attributes.
pub(crate) fn copy_node(
    src: &Entry,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    path: &Path,
    with_data: bool,
) -> Result<()> {
    let md = &src.metadata;
    let io = |op: &'static str| move |e: rustix::io::Errno| UnionError::io(op, path, e.into());
    match md.kind() {
        EntryKind::File => {
            let out = File::from(
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io("create"))?,
            );
            if with_data {
                let input = src
                    .open(libc::O_RDONLY)
                    .map_err(|e| UnionError::io("open", &src.real_path, e))?;
                copy_data(&input, &out, md.len()).map_err(|e| UnionError::io("copy", path, e))?;
            }
        }
        EntryKind::Dir => {
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(io("mkdir"))?
        }
        EntryKind::Symlink => {
            let target = src
                .read_link()
                .map_err(|e| UnionError::io("readlink", &src.real_path, e))?;
            rustix::fs::symlinkat(&target, dir, name).map_err(io("symlink"))?;
        }
        _ => rustix::fs::mknodat(
            dir,
            name,
            FileType::from_raw_mode(md.mode()),
            Mode::from_raw_mode(md.mode() & 0o7777),
            md.rdev(),
        )
        .map_err(io("mknod"))?,
    }
    copy_attrs(src, dir, name, path)
}
