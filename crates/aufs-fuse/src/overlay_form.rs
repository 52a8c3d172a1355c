//! A layer's diff dir is in aufs form at rest and in overlayfs form while
//! kernel overlayfs uses it as its upper dir.
//!
//! | aufs | overlayfs |
//! |---|---|
//! | `.wh.NAME`, an empty file | `NAME`, a character device 0/0 |
//! | `.wh..wh..opq` in a directory | `trusted.overlay.opaque=y` on it |
//! | other `.wh..wh.*` names (aufs metadata) | moved out to a stash dir |
//!
//! Overlayfs trusts the `trusted.overlay.*` (and `user.overlay.*`) xattrs it
//! finds; the layer is hostile, so every such xattr in the diff dir is
//! removed in both directions (the opaque marker is rewritten by us).
//! Both conversions walk through descriptors and follow nothing, and both
//! are idempotent: after a crash, converting back again finishes the job.

use aufs_model::whiteout::{
    classify_bytes, whiteout_target_bytes, NameKind, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
};
use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use std::ffi::OsStr;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// The xattr that marks an opaque directory for overlayfs.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Xattr namespaces overlayfs reads instructions from.
const OVERLAY_XATTRS: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// The stash's list of moved names: one `N KIND HEX-PATH` line each.
const STASH_INDEX: &str = "index";

fn open_dir(path: &Utf8Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path.as_std_path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn open_subdir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names of `dir` (an open directory), without `.` and `..`.
fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    let fd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rustix::fs::Dir::new(fd)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        let ft = match e.file_type() {
            FileType::Unknown => FileType::from_raw_mode(
                rustix::fs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
            ),
            ft => ft,
        };
        out.push((n.to_vec(), ft));
    }
    Ok(out)
}

/// `/proc/thread-self/fd/N/NAME` (or the descriptor itself): names an
/// entry of a held directory for the xattr calls, which have no `*at`
/// form; the `l*` calls then never follow `NAME`.
fn proc_name(dir: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/thread-self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(OsStr::from_bytes(name));
    }
    p
}

/// Removes every overlayfs xattr of `name` in `dir` (`""`: `dir` itself,
/// through its magic link, which the non-`l` calls follow to exactly that
/// directory).
fn strip_overlay_xattrs(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let p = proc_name(dir, name);
    let own = name.is_empty();
    let mut buf = vec![0u8; 64 * 1024];
    let listed = if own {
        rustix::fs::listxattr(&p, &mut buf[..])
    } else {
        rustix::fs::llistxattr(&p, &mut buf[..])
    };
    let n = match listed {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for x in buf[..n].split(|b| *b == 0).filter(|x| !x.is_empty()) {
        if OVERLAY_XATTRS.iter().any(|pre| x.starts_with(pre)) {
            let removed = if own {
                rustix::fs::removexattr(&p, x)
            } else {
                rustix::fs::lremovexattr(&p, x)
            };
            match removed {
                Ok(()) | Err(rustix::io::Errno::NODATA) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn is_whiteout_device(dir: BorrowedFd<'_>, name: &[u8], ft: FileType) -> io::Result<bool> {
    if ft != FileType::CharacterDevice {
        return Ok(false);
    }
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(st.st_rdev == 0)
}

/// An empty aufs marker (whiteout or opaque), mode 0444 as the union makes
/// them; one already there is kept.
fn make_marker(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
    ) {
        Ok(_) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn exists(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn remove_any(dir: BorrowedFd<'_>, name: &[u8], ft: FileType) -> io::Result<()> {
    if ft == FileType::Directory {
        std::fs::remove_dir_all(proc_name(dir, name))
    } else {
        Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?)
    }
}

/// Where aufs metadata names wait while the layer is in overlay form.
struct Stash {
    dir: OwnedFd,
    next: u64,
    index: std::fs::File,
}

impl Stash {
    fn open(path: &Utf8Path) -> io::Result<Stash> {
        std::fs::create_dir_all(path)?;
        let dir = open_dir(path)?;
        let index = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.join(STASH_INDEX))?;
        let next = read_index(path)?.len() as u64;
        Ok(Stash { dir, next, index })
    }

    /// Moves `name` of `dir` (at `rel` in the layer) into the stash. The
    /// index line is written first: a crash in between leaves a line
    /// whose entry is missing, which restoring skips.
    fn take(&mut self, dir: BorrowedFd<'_>, name: &[u8], rel: &[u8], kind: Kept) -> io::Result<()> {
        let n = self.next;
        self.next += 1;
        writeln!(self.index, "{n} {} {}", kind.letter(), hex(rel))?;
        self.index.sync_data()?;
        rustix::fs::renameat(dir, name, &self.dir, n.to_string().as_str())?;
        Ok(())
    }
}

/// Why a name is in the stash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// aufs metadata: always goes back.
    Meta,
    /// A whiteout or opaque marker, kept so an unchanged one goes back
    /// with its own attributes: only where the layer still has that
    /// marker after the conversion back.
    Marker,
}

impl Kept {
    fn letter(self) -> char {
        match self {
            Kept::Meta => 'm',
            Kept::Marker => 'w',
        }
    }

    fn from_letter(s: &str) -> Option<Self> {
        match s {
            "m" => Some(Kept::Meta),
            "w" => Some(Kept::Marker),
            _ => None,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The stash's index: (entry name, why kept, path in the layer).
fn read_index(stash: &Utf8Path) -> io::Result<Vec<(String, Kept, Vec<u8>)>> {
    let f = match std::fs::File::open(stash.join(STASH_INDEX)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in io::BufReader::new(f).lines() {
        let line = line?;
        let mut f = line.splitn(3, ' ');
        if let (Some(n), Some(k), Some(p)) = (f.next(), f.next(), f.next()) {
            if let (Ok(_), Some(k), Some(p)) = (n.parse::<u64>(), Kept::from_letter(k), unhex(p)) {
                out.push((n.to_string(), k, p));
            }
        }
    }
    Ok(out)
}

/// Converts diff dir `diff` from aufs form to overlay form, moving aufs
/// metadata names into `stash` (on the same filesystem).
pub(crate) fn to_overlay(diff: &Utf8Path, stash: &Utf8Path) -> io::Result<()> {
    let mut stash = Stash::open(stash)?;
    let root = open_dir(diff)?;
    strip_overlay_xattrs(root.as_fd(), b"")?;
    dir_to_overlay(root.as_fd(), &mut Vec::new(), &mut stash)
}

fn dir_to_overlay(dir: BorrowedFd<'_>, rel: &mut Vec<u8>, stash: &mut Stash) -> io::Result<()> {
    for (name, ft) in names(dir)? {
        let base = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        match classify_bytes(&name) {
            NameKind::Opaque => {
                rustix::fs::setxattr(proc_name(dir, b""), OPAQUE_XATTR, b"y", XattrFlags::empty())?;
                stash.take(dir, &name, rel, Kept::Marker)?;
            }
            NameKind::Meta => stash.take(dir, &name, rel, Kept::Meta)?,
            NameKind::Whiteout(_) => {
                let target = whiteout_target_bytes(&name).unwrap_or_default();
                if !target.is_empty() && !exists(dir, target)? {
                    rustix::fs::mknodat(dir, target, FileType::CharacterDevice, Mode::empty(), 0)?;
                }
                stash.take(dir, &name, rel, Kept::Marker)?;
            }
            NameKind::Plain => {
                strip_overlay_xattrs(dir, &name)?;
                if ft == FileType::Directory {
                    let sub = open_subdir(dir, &name)?;
                    dir_to_overlay(sub.as_fd(), rel, stash)?;
                }
            }
        }
        rel.truncate(base);
    }
    Ok(())
}

/// Converts diff dir `diff` back to aufs form and puts the stashed aufs
/// metadata names back; `stash` is removed. Safe to run again after a
/// crash part way, and on a diff dir already in aufs form.
pub(crate) fn to_aufs(diff: &Utf8Path, stash: &Utf8Path) -> io::Result<()> {
    let root = open_dir(diff)?;
    dir_to_aufs(root.as_fd())?;
    restore_stash(root.as_fd(), stash)?;
    match std::fs::remove_dir_all(stash) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn dir_to_aufs(dir: BorrowedFd<'_>) -> io::Result<()> {
    let opaque = {
        let mut v = [0u8; 8];
        matches!(
            rustix::fs::getxattr(proc_name(dir, b""), OPAQUE_XATTR, &mut v[..]),
            Ok(1) if v[0] == b'y'
        )
    };
    strip_overlay_xattrs(dir, b"")?;
    if opaque {
        make_marker(dir, WHITEOUT_OPAQUE_DIR.as_bytes())?;
    }
    for (name, ft) in names(dir)? {
        if is_whiteout_device(dir, &name, ft)? {
            rustix::fs::unlinkat(dir, name.as_slice(), AtFlags::empty())?;
            let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh.extend_from_slice(&name);
            make_marker(dir, &wh)?;
            continue;
        }
        if ft == FileType::Directory {
            let sub = open_subdir(dir, &name)?;
            dir_to_aufs(sub.as_fd())?;
        } else {
            strip_overlay_xattrs(dir, &name)?;
        }
    }
    Ok(())
}

/// Moves every stashed name back to its place: aufs metadata always (a
/// name made meanwhile under the same path, through the overlay mount,
/// which cannot refuse `.wh..wh.*` names as aufs does, gives way to the
/// original); a whiteout or opaque marker only where the conversion back
/// made that marker again, replacing the new one.
fn restore_stash(root: BorrowedFd<'_>, stash: &Utf8Path) -> io::Result<()> {
    let entries = read_index(stash)?;
    if entries.is_empty() {
        return Ok(());
    }
    let sdir = open_dir(stash)?;
    for (n, kind, rel) in entries {
        if !exists(sdir.as_fd(), n.as_bytes())? {
            continue;
        }
        let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], &rel[..]),
        };
        let pdir = if parent.is_empty() {
            rustix::io::fcntl_dupfd_cloexec(root, 0)?
        } else {
            match rustix::fs::openat2(
                root,
                parent,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                rustix::fs::ResolveFlags::BENEATH
                    | rustix::fs::ResolveFlags::NO_SYMLINKS
                    | rustix::fs::ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                // Its directory is gone: so is the metadata that lived there.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        match rustix::fs::statat(&pdir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => remove_any(pdir.as_fd(), name, FileType::from_raw_mode(st.st_mode))?,
            // The marker is gone: the layer changed there meanwhile.
            Err(rustix::io::Errno::NOENT) if kind == Kept::Marker => continue,
            Err(_) => {}
        }
        rustix::fs::renameat(&sdir, n.as_str(), &pdir, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stash_index_paths_round_trip_as_hex() {
        for p in [&b"a/b"[..], b"\xff\n x", b""] {
            assert_eq!(unhex(&hex(p)).unwrap(), p);
        }
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
