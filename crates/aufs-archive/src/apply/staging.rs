//! The private directory an apply builds its tree in, and its swap into
//! place.
//!
//! The tree starts as a hardlink clone of the diff dir (no data copied), is
//! made durable with one `syncfs` and replaces the diff dir in one
//! `renameat2(RENAME_EXCHANGE)`; until then the diff dir is untouched, and
//! dropping the staging dir removes whatever an apply left in it.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::ApplyOptions;
use crate::error::{lossy, ArchiveError, Result};
use crate::fsops::{timestamps, Root};
use crate::reader::Time;
use crate::walk::read_names;

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// The private directory an apply works in: `<parent>/.aufs-apply-*/{tree,plnk}`.
pub(super) struct Staging {
    base: Utf8PathBuf,
    pub(super) root: Root,
    pub(super) plnk: OwnedFd,
    /// Contents of recorded files whose path a later entry reused (exact bytes).
    pub(super) shadow: OwnedFd,
    committed: bool,
    /// The tree started empty (a new layer): nothing in it predates the apply.
    pub(super) started_empty: bool,
}

impl Staging {
    pub(super) fn create(diff_dir: &Utf8Path, opts: &ApplyOptions) -> Result<Self> {
        let parent = match &opts.staging_parent {
            Some(p) => p.clone(),
            None => diff_dir
                .parent()
                .filter(|p| !p.as_str().is_empty())
                .unwrap_or(Utf8Path::new("."))
                .to_owned(),
        };
        let name = diff_dir.file_name().unwrap_or("layer");
        let base = parent.join(format!(
            ".aufs-apply-{name}-{}-{}",
            std::process::id(),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fn io<'p>(
            op: &'static str,
            p: &'p Utf8Path,
        ) -> impl FnOnce(io::Error) -> ArchiveError + 'p {
            move |e| ArchiveError::io(op, p, e)
        }
        // Private from the start: nobody else may create or swap entries in it.
        rustix::fs::mkdir(base.as_str(), Mode::from_raw_mode(0o700))
            .map_err(|e| ArchiveError::io("creating staging dir", &base, e.into()))?;
        let mut st = Staging {
            root: Root {
                fd: rustix::fs::open(
                    base.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| ArchiveError::io("opening staging dir", &base, e.into()))?,
            },
            plnk: rustix::fs::open(
                base.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ArchiveError::io("opening staging dir", &base, e.into()))?,
            shadow: rustix::fs::open(
                base.as_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ArchiveError::io("opening staging dir", &base, e.into()))?,
            base,
            committed: false,
            started_empty: true,
        };
        let base = st.base.clone();
        let sys = |op: &'static str| {
            let base = base.clone();
            move |e: rustix::io::Errno| ArchiveError::io(op, base, e.into())
        };
        let tree = st.base.join("tree");
        let plnk = st.base.join("plnk");
        std::fs::create_dir(&plnk).map_err(io("creating staging dir", &plnk))?;
        let shadow = st.base.join("shadow");
        std::fs::create_dir(&shadow).map_err(io("creating staging dir", &shadow))?;
        st.shadow = rustix::fs::open(
            shadow.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("opening staging dir"))?;
        std::fs::create_dir(&tree).map_err(io("creating staging dir", &tree))?;
        st.root.fd = rustix::fs::open(
            tree.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("opening staging tree"))?;
        st.plnk = rustix::fs::open(
            plnk.as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("opening staging dir"))?;
        // The tree starts as the diff dir's current content (hardlinks: no data copied).
        match rustix::fs::open(
            diff_dir.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(src) => {
                let dst = st
                    .root
                    .open_dir_rw(b"")
                    .map_err(io("opening staging tree", &tree))?;
                copy_dir_meta(src.as_fd(), dst.as_fd())
                    .map_err(io("copying diff dir metadata", diff_dir))?;
                st.started_empty = !clone_tree(src.as_fd(), dst.as_fd(), diff_dir)?;
                let st_src = rustix::fs::fstat(&src)
                    .map_err(|e| ArchiveError::io("stat", diff_dir, e.into()))?;
                set_times_like(dst.as_fd(), &st_src)
                    .map_err(io("copying diff dir metadata", diff_dir))?;
            }
            Err(rustix::io::Errno::NOENT) => {
                let dst = st
                    .root
                    .open_dir_rw(b"")
                    .map_err(io("opening staging tree", &tree))?;
                rustix::fs::fchmod(&dst, Mode::from_raw_mode(0o755))
                    .map_err(sys("chmod staging tree"))?;
            }
            Err(e) => return Err(ArchiveError::io("opening diff dir", diff_dir, e.into())),
        }
        Ok(st)
    }

    /// Moves the kept contents of reused paths to `dst` (None when there are none).
    pub(super) fn take_shadow(&self, dst: &Utf8Path) -> Result<Option<Utf8PathBuf>> {
        let src = self.base.join("shadow");
        let names =
            read_names(self.shadow.as_fd()).map_err(|e| ArchiveError::io("reading", &src, e))?;
        if names.is_empty() {
            return Ok(None);
        }
        let _ = std::fs::remove_dir_all(dst);
        match std::fs::rename(&src, dst) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                std::fs::create_dir(dst).map_err(|e| ArchiveError::io("creating", dst, e))?;
                for n in names {
                    let n = String::from_utf8_lossy(&n).into_owned();
                    std::fs::copy(src.join(&n), dst.join(&n))
                        .map_err(|e| ArchiveError::io("copying", dst.join(&n), e))?;
                }
            }
            Err(e) => return Err(ArchiveError::io("moving kept contents", dst, e)),
        }
        if let Ok(d) = File::open(dst) {
            let _ = d.sync_all();
        }
        Ok(Some(dst.to_owned()))
    }

    pub(super) fn tree_path(&self) -> Utf8PathBuf {
        self.base.join("tree")
    }

    /// Makes the staged tree durable: one `syncfs` of its filesystem
    /// instead of an `fsync` per file.
    pub(super) fn syncfs(&self) -> Result<()> {
        let fd = self
            .root
            .open_dir_rw(b"")
            .map_err(|e| ArchiveError::io("opening staging tree", self.tree_path(), e))?;
        rustix::fs::syncfs(&fd).map_err(|e| ArchiveError::io("syncfs", self.tree_path(), e.into()))
    }

    /// Puts the staged tree in place of `diff_dir` and removes the old content.
    pub(super) fn commit(mut self, diff_dir: &Utf8Path, sync: bool) -> Result<()> {
        let tree = self.tree_path();
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            tree.as_str(),
            rustix::fs::CWD,
            diff_dir.as_str(),
            RenameFlags::EXCHANGE,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => std::fs::rename(&tree, diff_dir)
                .map_err(|e| ArchiveError::io("moving staged layer into place", diff_dir, e))?,
            Err(e) => {
                return Err(ArchiveError::io(
                    "swapping staged layer into place",
                    diff_dir,
                    e.into(),
                ))
            }
        }
        self.committed = true;
        if let Some(parent) = diff_dir.parent().filter(|p| sync && !p.as_str().is_empty()) {
            if let Ok(f) = File::open(parent) {
                let _ = f.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // After a commit `tree` holds the previous content; before it, the failed attempt.
        if let Err(e) = std::fs::remove_dir_all(&self.base) {
            tracing::warn!("storage-driver" = "aufs", path = %self.base, error = %e, committed = self.committed, "cannot remove staging dir");
        }
    }
}

/// Copies owner, mode and xattrs of one directory onto another.
fn copy_dir_meta(src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> io::Result<()> {
    let st = rustix::fs::fstat(src)?;
    rustix::fs::fchown(
        dst,
        Some(crate::fsops::uid(st.st_uid)),
        Some(crate::fsops::gid(st.st_gid)),
    )?;
    rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    for (k, v) in crate::export::list_xattrs_fd(src)? {
        let _ = rustix::fs::fsetxattr(dst, k.as_slice(), &v, rustix::fs::XattrFlags::empty());
    }
    Ok(())
}

fn set_times_like(dst: BorrowedFd<'_>, st: &rustix::fs::Stat) -> io::Result<()> {
    let ts = timestamps(
        Time {
            secs: st.st_atime,
            nsec: st.st_atime_nsec as u32,
        },
        Time {
            secs: st.st_mtime,
            nsec: st.st_mtime_nsec as u32,
        },
    );
    Ok(rustix::fs::futimens(dst, &ts)?)
}

/// Rebuilds `src` under `dst`: new directories (same metadata), hardlinks
/// for everything else. Returns whether `src` had any entry.
fn clone_tree(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, src_path: &Utf8Path) -> Result<bool> {
    let names = read_names(src).map_err(|e| ArchiveError::io("reading diff dir", src_path, e))?;
    let any = !names.is_empty();
    for name in names {
        let at = |op| {
            let p = src_path.join(lossy(&name));
            move |e: io::Error| ArchiveError::io(op, p, e)
        };
        let st = rustix::fs::statat(src, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| at("lstat")(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            rustix::fs::mkdirat(dst, name.as_slice(), Mode::from_raw_mode(0o700))
                .map_err(|e| at("cloning directory")(e.into()))?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let s = rustix::fs::openat(src, name.as_slice(), flags, Mode::empty())
                .map_err(|e| at("opening directory")(e.into()))?;
            let d = rustix::fs::openat(dst, name.as_slice(), flags, Mode::empty())
                .map_err(|e| at("opening directory")(e.into()))?;
            copy_dir_meta(s.as_fd(), d.as_fd()).map_err(at("cloning directory metadata"))?;
            clone_tree(s.as_fd(), d.as_fd(), &src_path.join(lossy(&name)))?;
            set_times_like(d.as_fd(), &st).map_err(at("cloning directory times"))?;
        } else {
            rustix::fs::linkat(src, name.as_slice(), dst, name.as_slice(), AtFlags::empty())
                .map_err(|e| {
                    at("hardlinking into staging dir (must be on the diff dir's filesystem)")(
                        e.into(),
                    )
                })?;
        }
    }
    Ok(any)
}
