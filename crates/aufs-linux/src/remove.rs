//! `remove_all`: moby's `EnsureRemoveAll`, made robust.
//!
//! - Mounts at or below the tree are unmounted first (from the mount table,
//!   deepest first; lazily when busy), and any mount met during the walk
//!   (`STATX_ATTR_MOUNT_ROOT`, or a device change) is detached before the
//!   walk would enter it: the walk never deletes inside a mounted filesystem.
//! - Everything is resolved relative to directory descriptors opened with
//!   `O_NOFOLLOW|O_DIRECTORY`: a symlink is unlinked, never followed, even if
//!   it replaces a directory mid-walk.
//! - Immutable/append-only flags and read-only directory modes inside the
//!   tree are cleared when they block a removal.
//! - Entries vanishing meanwhile are fine; entries appearing meanwhile are
//!   picked up by a bounded number of re-listings.
//! - At most [`MAX_OPEN_DIRS`] directories are held open, so depth is
//!   bounded by neither the stack nor the descriptor limit.

use crate::at::{have_proc_fd, open_dir, proc_fd_path, split_parent};
use crate::mountinfo::{mounts_at_or_below, MountInfoSource};
use camino::{Utf8Path, Utf8PathBuf};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MntFlags;
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use rustix::fs::{IFlags, StatxAttributes, StatxFlags};
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directories held open at once during the walk.
pub const MAX_OPEN_DIRS: usize = 64;
/// Attempts per entry at fixing what blocks its removal, and at unmounting
/// what is mounted on it.
const MAX_ATTEMPTS: u32 = 10;
/// Re-listings of one directory when entries keep appearing in it.
const MAX_RELISTS: u32 = 10;
/// Passes over the mount table before the walk.
const UNMOUNT_ROUNDS: u32 = 5;
/// Mounts detached from one directory met during the walk (stacked mounts
/// need one each).
const MAX_DETACHES: u32 = 64;

/// Removes `path` and everything below it. A missing path is success.
pub fn remove_all(path: &Utf8Path, table: &dyn MountInfoSource) -> io::Result<()> {
    let (parent, name) = split_parent(path)?;
    let top_parent = match open_dir(parent) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(()),
        Err(e) => return Err(e),
    };
    unmount_below(path, table);
    let name = CString::new(name).map_err(|_| io::Error::from(Errno::EINVAL))?;
    let result = Walk {
        top_parent,
        top_dir: parent.to_owned(),
        stack: Vec::new(),
        open: 0,
    }
    .run(name);
    if let Err(e) = &result {
        tracing::warn!("storage-driver" = "aufs", path = %path, error = %e, "remove_all failed");
    }
    result
}

/// Unmounts what the table shows at or below `path`, deepest first. Best
/// effort: what stays mounted is met and detached again during the walk.
fn unmount_below(path: &Utf8Path, table: &dyn MountInfoSource) {
    // A symlink is removed, not followed: nothing of its target is unmounted.
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => {}
        _ => return,
    }
    let Ok(real) = std::fs::canonicalize(path) else {
        return;
    };
    for _ in 0..UNMOUNT_ROUNDS {
        let mounts = match table.mounts() {
            Ok(m) => mounts_at_or_below(&m, &real),
            Err(e) => {
                tracing::warn!("storage-driver" = "aufs", error = %e, "cannot read the mount table");
                return;
            }
        };
        if mounts.is_empty() {
            return;
        }
        for m in mounts {
            if let Err(e) = unmount_path(&m.mount_point) {
                tracing::debug!(
                    "storage-driver" = "aufs",
                    mount_point = %m.mount_point.display(),
                    error = %e,
                    "unmount before removal failed"
                );
            }
        }
    }
}

/// `umount2`, lazily when busy. `Ok(false)` when nothing is mounted there.
fn unmount_path(target: &Path) -> io::Result<bool> {
    match nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(true),
        Err(Errno::EBUSY) => {
            match nix::mount::umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) => Ok(true),
                Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Err(Errno::EINVAL | Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What `lstat` tells about one entry.
#[derive(Debug, Clone, Copy)]
struct EntryStat {
    mode: u32,
    dev: (u32, u32),
    /// `Some` when the kernel reports `STATX_ATTR_MOUNT_ROOT`.
    mount_root: Option<bool>,
}

impl EntryStat {
    fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }
}

fn stat_at(dir: BorrowedFd<'_>, name: &CStr, empty_path: bool) -> io::Result<Option<EntryStat>> {
    let flags = if empty_path {
        rustix::fs::AtFlags::EMPTY_PATH
    } else {
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW
    };
    match rustix::fs::statx(dir, name, flags, StatxFlags::TYPE | StatxFlags::MODE) {
        Ok(st) => Ok(Some(EntryStat {
            mode: u32::from(st.stx_mode),
            dev: (st.stx_dev_major, st.stx_dev_minor),
            mount_root: st
                .stx_attributes_mask
                .contains(StatxAttributes::MOUNT_ROOT)
                .then(|| st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)),
        })),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(rustix::io::Errno::NOSYS) => {
            let flags = if empty_path {
                nix::fcntl::AtFlags::AT_EMPTY_PATH
            } else {
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW
            };
            match nix::sys::stat::fstatat(dir, name, flags) {
                Ok(st) => Ok(Some(EntryStat {
                    mode: st.st_mode,
                    dev: (
                        nix::sys::stat::major(st.st_dev) as u32,
                        nix::sys::stat::minor(st.st_dev) as u32,
                    ),
                    mount_root: None,
                })),
                Err(Errno::ENOENT) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Clears `FS_IMMUTABLE_FL`/`FS_APPEND_FL` on an open file. True when
/// something was cleared.
fn clear_flags(fd: BorrowedFd<'_>) -> bool {
    let blocking = IFlags::IMMUTABLE | IFlags::APPEND;
    match rustix::fs::ioctl_getflags(fd) {
        Ok(flags) if flags.intersects(blocking) => {
            rustix::fs::ioctl_setflags(fd, flags - blocking).is_ok()
        }
        _ => false,
    }
}

/// Adds owner rwx to a directory whose mode lacks them. True when changed.
fn make_writable(dir: BorrowedFd<'_>) -> bool {
    let Ok(st) = nix::sys::stat::fstat(dir) else {
        return false;
    };
    if st.st_mode & 0o700 == 0o700 {
        return false;
    }
    nix::sys::stat::fchmod(dir, Mode::from_bits_truncate((st.st_mode & 0o7777) | 0o700)).is_ok()
}

/// Opens the entry itself (a regular file or directory, never a symlink or
/// device) to change its flags or mode.
fn open_entry(parent: BorrowedFd<'_>, name: &CStr, st: &EntryStat) -> Option<OwnedFd> {
    let mut flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    match st.file_type() {
        libc::S_IFDIR => flags |= OFlag::O_DIRECTORY,
        libc::S_IFREG => {}
        _ => return None,
    }
    match nix::fcntl::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => Some(fd),
        // Unreadable directory: open it as a path and chmod through /proc.
        Err(Errno::EACCES) if st.is_dir() => None,
        Err(_) => None,
    }
}

/// Gives owner rwx to an unreadable directory entry without following a
/// symlink put in its place. True when changed.
fn chmod_dir_entry(parent: BorrowedFd<'_>, name: &CStr, st: &EntryStat) -> bool {
    if !have_proc_fd() || st.mode & 0o700 == 0o700 {
        return false;
    }
    let Ok(fd) = nix::fcntl::openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::Permissions::from_mode((st.mode & 0o7777) | 0o700);
    std::fs::set_permissions(proc_fd_path(&fd), perms).is_ok()
}

/// One directory of the walk.
struct Frame {
    /// Its name in the parent frame (or in the top parent).
    name: CString,
    /// Open while within the window of [`MAX_OPEN_DIRS`].
    dir: Option<Dir>,
    /// Entries still to remove.
    pending: Vec<CString>,
    /// Times it was listed again after `ENOTEMPTY`.
    relists: u32,
}

enum Step {
    Done,
    Descend(Dir, Vec<CString>),
}

struct Walk {
    top_parent: OwnedFd,
    top_dir: Utf8PathBuf,
    stack: Vec<Frame>,
    open: usize,
}

fn list(dir: &mut Dir) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

impl Walk {
    /// The path of `name` in frame `depth` (or in the top parent), for
    /// messages and for unmounting without `/proc`.
    fn path_of(&self, depth: usize, name: &CStr) -> PathBuf {
        let mut p = PathBuf::from(self.top_dir.as_std_path());
        for f in &self.stack[..depth] {
            p.push(OsStr::from_bytes(f.name.to_bytes()));
        }
        p.push(OsStr::from_bytes(name.to_bytes()));
        p
    }

    /// The descriptor of frame `depth - 1`, i.e. the parent of entries at
    /// `depth`: the top parent when `depth` is 0.
    fn parent_fd(&self, depth: usize) -> BorrowedFd<'_> {
        match depth {
            0 => self.top_parent.as_fd(),
            d => self.stack[d - 1]
                .dir
                .as_ref()
                .expect("frame opened by ensure_open")
                .as_fd(),
        }
    }

    fn run(mut self, top: CString) -> io::Result<()> {
        match self.visit(0, &top)? {
            Step::Done => return Ok(()),
            Step::Descend(dir, names) => self.push(top, dir, names, 0),
        }
        while !self.stack.is_empty() {
            let depth = self.stack.len();
            if let Some(child) = self.stack[depth - 1].pending.pop() {
                if !self.ensure_open(depth - 1)? {
                    continue;
                }
                if let Step::Descend(dir, names) = self.visit(depth, &child)? {
                    self.push(child, dir, names, 0);
                }
                continue;
            }
            let frame = self.stack.pop().expect("non-empty");
            if frame.dir.is_some() {
                self.open -= 1;
            }
            drop(frame.dir);
            let depth = depth - 1;
            if depth > 0 && !self.ensure_open(depth - 1)? {
                continue;
            }
            match self.unlink(depth, &frame.name, true) {
                Ok(()) => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST))
                        && frame.relists < MAX_RELISTS =>
                {
                    if let Step::Descend(dir, names) = self.visit(depth, &frame.name)? {
                        self.push(frame.name, dir, names, frame.relists + 1);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn push(&mut self, name: CString, dir: Dir, pending: Vec<CString>, relists: u32) {
        self.stack.push(Frame {
            name,
            dir: Some(dir),
            pending,
            relists,
        });
        self.open += 1;
        if self.open > MAX_OPEN_DIRS {
            if let Some(f) = self.stack.iter_mut().find(|f| f.dir.is_some()) {
                f.dir = None;
                self.open -= 1;
            }
        }
    }

    /// Makes sure frame `i` is open, reopening it by name from the nearest
    /// open ancestor. `false` when it is gone (moved, removed, or replaced):
    /// the frames from the missing one down are dropped.
    fn ensure_open(&mut self, i: usize) -> io::Result<bool> {
        if self.stack[i].dir.is_some() {
            return Ok(true);
        }
        let base = (0..i).rev().find(|&j| self.stack[j].dir.is_some());
        let start = base.map_or(0, |j| j + 1);
        let mut cur: Option<OwnedFd> = None;
        for k in start..=i {
            let opened = {
                let parent = match &cur {
                    Some(fd) => fd.as_fd(),
                    None => self.parent_fd(k),
                };
                nix::fcntl::openat(
                    parent,
                    self.stack[k].name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
            };
            match opened {
                Ok(fd) => cur = Some(fd),
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                    for f in self.stack.drain(k..) {
                        if f.dir.is_some() {
                            self.open -= 1;
                        }
                    }
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let fd = cur.expect("at least frame i was opened");
        self.stack[i].dir = Some(Dir::from_fd(fd)?);
        self.open += 1;
        if self.open > MAX_OPEN_DIRS {
            if let Some(f) = self.stack[..i].iter_mut().find(|f| f.dir.is_some()) {
                f.dir = None;
                self.open -= 1;
            }
        }
        Ok(true)
    }

    /// Looks at entry `name` of the directory at `depth`: removes it when
    /// it is not a directory, or opens and lists it. Mounts on it are
    /// detached first.
    fn visit(&self, depth: usize, name: &CStr) -> io::Result<Step> {
        let parent = self.parent_fd(depth);
        let mut attempts = 0;
        let mut detaches = 0;
        loop {
            attempts += 1;
            let Some(st) = stat_at(parent, name, false)? else {
                return Ok(Step::Done);
            };
            if !st.is_dir() {
                match self.unlink(depth, name, false) {
                    // Became a directory meanwhile: look again.
                    Err(e) if e.raw_os_error() == Some(libc::EISDIR) && attempts < MAX_ATTEMPTS => {
                        continue
                    }
                    other => return other.map(|()| Step::Done),
                }
            }
            if self.maybe_mount(parent, &st)? {
                let certain = st.mount_root == Some(true);
                if detaches >= MAX_DETACHES {
                    if certain {
                        // Never walk into a mounted filesystem.
                        return Err(Errno::EBUSY.into());
                    }
                } else {
                    match self.detach(depth, name) {
                        Ok(true) => {
                            detaches += 1;
                            continue;
                        }
                        Ok(false) => {}
                        // A device change without a mount (a btrfs subvolume)
                        // where unmounting is not allowed.
                        Err(_) if !certain => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            match Dir::openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(mut dir) => {
                    let names = list(&mut dir)?;
                    return Ok(Step::Descend(dir, names));
                }
                Err(Errno::ENOENT) => return Ok(Step::Done),
                // Replaced by a symlink or a file meanwhile: look again.
                Err(Errno::ELOOP | Errno::ENOTDIR) if attempts < MAX_ATTEMPTS => continue,
                Err(Errno::EACCES)
                    if attempts < MAX_ATTEMPTS && chmod_dir_entry(parent, name, &st) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether a directory is (or may be) the root of a mount.
    fn maybe_mount(&self, parent: BorrowedFd<'_>, st: &EntryStat) -> io::Result<bool> {
        if let Some(is_root) = st.mount_root {
            return Ok(is_root);
        }
        Ok(match stat_at(parent, c"", true)? {
            Some(parent_st) => parent_st.dev != st.dev,
            None => false,
        })
    }

    /// Unmounts what is mounted on entry `name` at `depth`, without
    /// following a symlink there. `Ok(false)` when nothing was mounted.
    fn detach(&self, depth: usize, name: &CStr) -> io::Result<bool> {
        let target = if have_proc_fd() {
            proc_fd_path(&self.parent_fd(depth)).join(OsStr::from_bytes(name.to_bytes()))
        } else {
            self.path_of(depth, name)
        };
        let done = unmount_path(&target)?;
        if done {
            tracing::debug!(
                "storage-driver" = "aufs",
                path = %self.path_of(depth, name).display(),
                "unmounted during removal"
            );
        }
        Ok(done)
    }

    /// `unlinkat` of entry `name` at `depth`, clearing what blocks it.
    fn unlink(&self, depth: usize, name: &CStr, dir: bool) -> io::Result<()> {
        let parent = self.parent_fd(depth);
        let flag = if dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let err = match nix::unistd::unlinkat(parent, name, flag) {
                Ok(()) | Err(Errno::ENOENT) => return Ok(()),
                Err(e) => e,
            };
            if attempts >= MAX_ATTEMPTS {
                return Err(err.into());
            }
            match err {
                Errno::EPERM | Errno::EACCES => {
                    if !self.loosen(depth, name) {
                        return Err(err.into());
                    }
                }
                Errno::EBUSY => {
                    if !self.detach(depth, name)? {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                _ => return Err(err.into()),
            }
        }
    }

    /// Clears what makes entry `name` at `depth` unremovable: its own
    /// immutable/append-only flags, and — when its directory is inside the
    /// tree — the directory's flags and a mode lacking owner write. True
    /// when anything changed.
    fn loosen(&self, depth: usize, name: &CStr) -> bool {
        let parent = self.parent_fd(depth);
        let mut changed = false;
        if let Ok(Some(st)) = stat_at(parent, name, false) {
            if let Some(fd) = open_entry(parent, name, &st) {
                changed |= clear_flags(fd.as_fd());
            }
        }
        if depth > 0 {
            changed |= clear_flags(parent);
            changed |= make_writable(parent);
        }
        if changed {
            tracing::debug!(
                "storage-driver" = "aufs",
                path = %self.path_of(depth, name).display(),
                "cleared flags or mode blocking removal"
            );
        }
        changed
    }
}
