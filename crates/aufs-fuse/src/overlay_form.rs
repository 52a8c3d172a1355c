//! A layer's diff dir is in aufs form at rest and in overlayfs form while
//! kernel overlayfs uses it as its upper dir.
//!
//! | aufs | overlayfs |
//! |---|---|
//! | `.wh.NAME`, an empty file | `NAME`, a character device 0/0 |
//! | `.wh..wh..opq` in a directory | `trusted.overlay.opaque=y` on it |
//! | other `.wh..wh.*` names (aufs metadata) | moved out to a stash dir |
//!
//! The diff dir is hostile (a container wrote it), so the conversions walk
//! it through descriptors, never follow a symlink, hold one directory
//! descriptor at a time however deep the tree, and never fail on what the
//! layer holds: whatever cannot go back is left in a quarantine dir beside
//! the stash and logged. Overlayfs trusts the `trusted.overlay.*` (and
//! `user.overlay.*`) xattrs it finds, so every such xattr is removed in
//! both directions (the opaque marker is rewritten by us). Both
//! conversions are idempotent: after a crash, converting back again
//! finishes the job.

use aufs_model::whiteout::{
    classify_bytes, is_overlay_xattr, whiteout_target_bytes, NameKind, OVERLAY_XATTR_PREFIXES,
    WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
};
use aufs_union::EntryKind;
use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, XattrFlags};
use std::ffi::OsStr;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The xattr that marks an opaque directory for overlayfs.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// The overlayfs xattrs removed one by one where a file has too many
/// xattrs to list.
const KNOWN_OVERLAY_XATTRS: [&str; 12] = [
    "opaque",
    "redirect",
    "origin",
    "impure",
    "nlink",
    "upper",
    "metacopy",
    "protattr",
    "uuid",
    "whiteout",
    "whiteouts",
    "xwhiteouts",
];

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

fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Visits every directory below `root` (`root` first), depth first. `visit`
/// converts one directory and returns the names of its subdirectories to
/// go into. One descriptor is held at a time: a child is opened from its
/// parent with `O_NOFOLLOW`, and the walk climbs back through `..`,
/// checked to be the parent it left, so neither depth nor a rename can
/// exhaust descriptors or lead the walk out of the tree.
fn walk_dirs(
    root: OwnedFd,
    mut visit: impl FnMut(BorrowedFd<'_>, &[u8]) -> io::Result<Vec<Vec<u8>>>,
) -> io::Result<()> {
    struct Level {
        id: (u64, u64),
        pending: Vec<Vec<u8>>,
        name_len: usize,
    }
    let mut cur = root;
    let mut rel: Vec<u8> = Vec::new();
    let mut pending = visit(cur.as_fd(), &rel)?;
    pending.reverse();
    let mut stack = vec![Level {
        id: identity(cur.as_fd())?,
        pending,
        name_len: 0,
    }];
    while let Some(top) = stack.last_mut() {
        if let Some(name) = top.pending.pop() {
            let sub = match open_subdir(cur.as_fd(), &name) {
                Ok(fd) => fd,
                // Not a directory (any more): nothing to go into.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            cur = sub;
            let mut pending = visit(cur.as_fd(), &rel)?;
            pending.reverse();
            stack.push(Level {
                id: identity(cur.as_fd())?,
                pending,
                name_len: name.len(),
            });
            continue;
        }
        let done = stack.pop().expect("the level just looked at");
        let Some(parent) = stack.last() else {
            break;
        };
        let up = open_subdir(cur.as_fd(), b"..")?;
        if identity(up.as_fd())? != parent.id {
            return Err(io::Error::other("a directory moved while being converted"));
        }
        cur = up;
        let cut = rel.len() - done.name_len;
        rel.truncate(cut.saturating_sub(usize::from(cut > 0)));
    }
    Ok(())
}

/// The names of `dir` (an open directory), without `.` and `..`, with
/// their types (the union's own listing: one way of reading a directory).
fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<(Vec<u8>, FileType)>> {
    Ok(aufs_union::list_dir(dir)?
        .into_iter()
        .map(|e| {
            let ft = match e.kind {
                EntryKind::Dir => FileType::Directory,
                EntryKind::CharDevice => FileType::CharacterDevice,
                EntryKind::File => FileType::RegularFile,
                EntryKind::Symlink => FileType::Symlink,
                EntryKind::BlockDevice => FileType::BlockDevice,
                EntryKind::Fifo => FileType::Fifo,
                EntryKind::Socket => FileType::Socket,
            };
            (e.name.into_vec(), ft)
        })
        .collect())
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
    let remove = |x: &[u8]| -> io::Result<()> {
        let removed = if own {
            rustix::fs::removexattr(&p, x)
        } else {
            rustix::fs::lremovexattr(&p, x)
        };
        match removed {
            Ok(()) | Err(rustix::io::Errno::NODATA) => Ok(()),
            Err(e) => Err(e.into()),
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    let listed = if own {
        rustix::fs::listxattr(&p, &mut buf[..])
    } else {
        rustix::fs::llistxattr(&p, &mut buf[..])
    };
    match listed {
        Ok(n) => {
            for x in buf[..n].split(|b| *b == 0).filter(|x| !x.is_empty()) {
                if is_overlay_xattr(x) {
                    remove(x)?;
                }
            }
            Ok(())
        }
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
        // Too many names to list at once: every name overlayfs reads.
        Err(rustix::io::Errno::RANGE | rustix::io::Errno::TOOBIG) => {
            for pre in OVERLAY_XATTR_PREFIXES {
                for k in KNOWN_OVERLAY_XATTRS {
                    remove(format!("{pre}{k}").as_bytes())?;
                }
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
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

/// Why a name is in the stash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// aufs metadata: goes back unless the layer has something there now.
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

/// One stashed name: its number in the stash, why, and its path in the
/// layer.
type Stashed = (u64, Kept, Vec<u8>);

/// The stash's index.
fn read_index(stash: &Utf8Path) -> io::Result<Vec<Stashed>> {
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
            if let (Ok(n), Some(k), Some(p)) = (n.parse::<u64>(), Kept::from_letter(k), unhex(p)) {
                out.push((n, k, p));
            }
        }
    }
    Ok(out)
}

/// Where aufs names wait while the layer is in overlay form.
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
        let next = read_index(path)?
            .iter()
            .map(|(n, _, _)| n + 1)
            .max()
            .unwrap_or(0);
        Ok(Stash { dir, next, index })
    }

    /// Moves `names` of `dir` (at `rel` in the layer) into the stash. The
    /// index lines are written (and synced, once) first: a crash before a
    /// move leaves a line whose entry is missing, which restoring skips.
    fn take(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        names: &[(Vec<u8>, Kept)],
    ) -> io::Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let first = self.next;
        let mut lines = String::new();
        for (i, (name, kind)) in names.iter().enumerate() {
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name);
            lines.push_str(&format!(
                "{} {} {}\n",
                first + i as u64,
                kind.letter(),
                hex(&path)
            ));
        }
        self.index.write_all(lines.as_bytes())?;
        self.index.sync_data()?;
        self.next += names.len() as u64;
        for (i, (name, _)) in names.iter().enumerate() {
            let n = (first + i as u64).to_string();
            rustix::fs::renameat(dir, name.as_slice(), &self.dir, n.as_str())?;
        }
        Ok(())
    }
}

/// Whether `rel/name` shows in the read-only view `lower` (nothing is
/// followed on the way).
fn shows_below(lower: BorrowedFd<'_>, rel: &[u8], name: &[u8]) -> io::Result<bool> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    match rustix::fs::openat2(
        lower,
        p.as_slice(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH
            | rustix::fs::ResolveFlags::NO_SYMLINKS
            | rustix::fs::ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(_) => Ok(true),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Converts diff dir `diff` from aufs form to overlay form, moving aufs
/// metadata names and markers into `stash` (on the same filesystem).
/// `lower` is the read-only view of the layer's parents: a whiteout of a
/// name it does not show becomes no device (overlayfs cannot remove a
/// directory of the upper layer alone that holds one), only its stashed
/// marker, which goes back at the conversion back.
pub(crate) fn to_overlay(diff: &Utf8Path, stash: &Utf8Path, lower: &Utf8Path) -> io::Result<()> {
    let mut stash = Stash::open(stash)?;
    let lower = rustix::fs::open(
        lower.as_std_path(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    walk_dirs(open_dir(diff)?, |dir, rel| {
        strip_overlay_xattrs(dir, b"")?;
        let mut taken = Vec::new();
        let mut subdirs = Vec::new();
        for (name, ft) in names(dir)? {
            match classify_bytes(&name) {
                NameKind::Opaque => {
                    rustix::fs::setxattr(
                        proc_name(dir, b""),
                        OPAQUE_XATTR,
                        b"y",
                        XattrFlags::empty(),
                    )?;
                    taken.push((name, Kept::Marker));
                }
                NameKind::Meta => taken.push((name, Kept::Meta)),
                NameKind::Whiteout(_) => {
                    let target = whiteout_target_bytes(&name).unwrap_or_default();
                    if !target.is_empty()
                        && !exists(dir, target)?
                        && shows_below(lower.as_fd(), rel, target)?
                    {
                        rustix::fs::mknodat(
                            dir,
                            target,
                            FileType::CharacterDevice,
                            Mode::empty(),
                            0,
                        )?;
                    }
                    taken.push((name, Kept::Marker));
                }
                NameKind::Plain if ft == FileType::Directory => subdirs.push(name),
                NameKind::Plain => strip_overlay_xattrs(dir, &name)?,
            }
        }
        stash.take(dir, rel, &taken)?;
        Ok(subdirs)
    })
}

/// Converts diff dir `diff` back to aufs form and puts the stashed names
/// back; the stash is removed (what could not go back is kept beside it
/// in `<stash>.unrestored.N` and logged). Safe to run again after a crash
/// part way, and on a diff dir already in aufs form.
pub(crate) fn to_aufs(diff: &Utf8Path, stash: &Utf8Path) -> io::Result<()> {
    let root = open_dir(diff)?;
    let keep = rustix::io::fcntl_dupfd_cloexec(&root, 0)?;
    walk_dirs(root, |dir, rel| {
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
        let mut subdirs = Vec::new();
        for (name, ft) in names(dir)? {
            if is_whiteout_device(dir, &name, ft)? {
                let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
                wh.extend_from_slice(&name);
                // The marker first: a crash in between leaves both, never
                // neither. A name too long for the prefix keeps its device,
                // which every reader takes for a whiteout too.
                match make_marker(dir, &wh) {
                    Ok(()) => rustix::fs::unlinkat(dir, name.as_slice(), AtFlags::empty())?,
                    Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                        tracing::warn!(storage_driver = "aufs", layer = %diff, path = %String::from_utf8_lossy(rel), "whiteout name too long for aufs form, kept as a 0/0 device");
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            if ft == FileType::Directory {
                subdirs.push(name);
            } else {
                strip_overlay_xattrs(dir, &name)?;
            }
        }
        Ok(subdirs)
    })?;
    restore_stash(keep.as_fd(), diff, stash)
}

/// The directory `path` (relative, `/`-separated) below `root`, one
/// component at a time, following nothing; `None` when it is not (or no
/// longer) a directory there.
fn resolve_dir(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<Option<OwnedFd>> {
    let mut cur = rustix::io::fcntl_dupfd_cloexec(root, 0)?;
    for c in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        if c == b".." || c == b"." {
            return Ok(None);
        }
        cur = match open_subdir(cur.as_fd(), c) {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG)
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
    }
    Ok(Some(cur))
}

/// Moves every stashed name back to its place: aufs metadata where the
/// layer has nothing of that name now, a whiteout or opaque marker only
/// where the conversion back made that marker again (replacing the new
/// one). What cannot go back (its directory is gone, or holds something
/// else there) stays in a quarantine dir, logged.
fn restore_stash(root: BorrowedFd<'_>, diff: &Utf8Path, stash: &Utf8Path) -> io::Result<()> {
    let entries = read_index(stash)?;
    if entries.is_empty() {
        return remove_stash(stash, false);
    }
    let sdir = open_dir(stash)?;
    let mut left = 0usize;
    for (n, kind, rel) in entries {
        let n = n.to_string();
        if !exists(sdir.as_fd(), n.as_bytes())? {
            continue;
        }
        let (parent, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], &rel[..]),
        };
        let Some(pdir) = resolve_dir(root, parent)? else {
            left += 1;
            continue;
        };
        match rustix::fs::statat(&pdir, name, AtFlags::SYMLINK_NOFOLLOW) {
            // The new marker made by the conversion back: the original
            // takes its place.
            Ok(st)
                if kind == Kept::Marker
                    && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile =>
            {
                rustix::fs::renameat(&sdir, n.as_str(), &pdir, name)?;
            }
            Ok(_) => {
                if kind == Kept::Meta {
                    left += 1;
                }
            }
            // The marker is gone: the layer changed there meanwhile.
            Err(rustix::io::Errno::NOENT) if kind == Kept::Marker => {}
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::renameat(&sdir, n.as_str(), &pdir, name)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if left > 0 {
        tracing::warn!(storage_driver = "aufs", layer = %diff, names = left, "aufs metadata names could not go back into the layer; kept beside its stash");
    }
    remove_stash(stash, left > 0)
}

/// Removes the stash, or (`keep`) renames it to `<stash>.unrestored.N`.
fn remove_stash(stash: &Utf8Path, keep: bool) -> io::Result<()> {
    let done = if keep {
        let mut i = 0u32;
        loop {
            let to = format!("{stash}.unrestored.{i}");
            if !std::path::Path::new(&to).exists() {
                break std::fs::rename(stash, to);
            }
            i += 1;
        }
    } else {
        std::fs::remove_dir_all(stash)
    };
    match done {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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

    /// Removes a chain of nested `d` directories of any depth (std's
    /// recursive removal would overflow the stack): the chain is shortened
    /// from the top, one level a step.
    fn remove_chain(top: &Utf8Path) {
        let d = top.join("d");
        let next = top.join("next");
        while d.exists() {
            if d.join("d").exists() {
                std::fs::rename(d.join("d"), &next).unwrap();
            }
            for e in std::fs::read_dir(&d).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
            std::fs::remove_dir(&d).unwrap();
            if next.exists() {
                std::fs::rename(&next, &d).unwrap();
            }
        }
    }

    /// A tree far deeper than the open-file limit allows descriptors for
    /// is converted both ways with one descriptor at a time.
    #[test]
    fn deep_trees_convert_without_running_out_of_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let diff = Utf8Path::from_path(dir.path()).unwrap().join("diff");
        std::fs::create_dir(&diff).unwrap();
        let mut cur = open_dir(&diff).unwrap();
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(1024)
            .min(100_000);
        for _ in 0..soft + 100 {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
            cur = open_subdir(cur.as_fd(), b"d").unwrap();
        }
        make_marker(cur.as_fd(), b".wh..wh.plnk").unwrap();
        std::fs::write(diff.join("top"), b"t").unwrap();
        let stash = Utf8Path::from_path(dir.path()).unwrap().join("stash");
        let lower = Utf8Path::from_path(dir.path()).unwrap().join("lower");
        std::fs::create_dir(&lower).unwrap();
        to_overlay(&diff, &stash, &lower).unwrap();
        assert!(!exists(cur.as_fd(), b".wh..wh.plnk").unwrap(), "stashed");
        to_aufs(&diff, &stash).unwrap();
        assert!(
            exists(cur.as_fd(), b".wh..wh.plnk").unwrap(),
            "back in place"
        );
        drop(cur);
        remove_chain(&diff);
        assert!(!stash.exists());
    }
}
