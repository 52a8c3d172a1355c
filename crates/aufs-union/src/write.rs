//! The write side of the union, as aufs does it: every change lands in the
//! rw branch; lower entries are copied up before they change and hidden by
//! whiteouts when removed; a directory re-created over a removed one is
//! opaque.

use crate::beneath::{self, pin, proc_path};
use crate::copy_up::{copy_attrs, copy_node, set_owner, temp_name};
use crate::entry::{set_mode_pinned, At, Entry, EntryKind};
use crate::error::{Result, UnionError};
use crate::meta::Meta;
use crate::path::{components, split_parent};
use crate::view::{whiteout_name, DirState, RwDir, UnionView};
use aufs_model::whiteout::{classify_bytes, is_reserved, NameKind, WHITEOUT_OPAQUE_DIR};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

/// Who owns a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid (a set-gid parent directory's gid wins, as in the kernel).
    pub gid: u32,
}

/// What to create.
#[derive(Debug, Clone, Copy)]
pub enum NewNode<'a> {
    /// An empty regular file with these permission bits.
    File {
        /// Permission bits (`0o7777` mask).
        mode: u32,
    },
    /// A directory with these permission bits.
    Dir {
        /// Permission bits (`0o7777` mask).
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: &'a Path,
    },
    /// A device, fifo or socket: `mode` carries the `S_IFMT` type bits.
    Special {
        /// Type and permission bits.
        mode: u32,
        /// Device number for devices.
        rdev: u64,
    },
}

/// Marks resolved directories stale when dropped, so every exit of an
/// operation that changed directory structure (errors too) invalidates them.
struct DirsChanged<'a>(&'a UnionView);

impl Drop for DirsChanged<'_> {
    fn drop(&mut self) {
        self.0.dirs_changed();
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnionError + 'a {
    move |e| UnionError::io(op, path, e)
}

fn errno_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(rustix::io::Errno) -> UnionError + 'a {
    move |e| UnionError::io(op, path, e.into())
}

/// The write side runs under the view's write lock: names in the rw branch
/// change only there, so between a lookup and a change made under the same
/// lock no name can move.
impl UnionView {
    fn lock_writes(&self, path: &Path) -> Result<MutexGuard<'_, ()>> {
        if self.rw.is_none() {
            return Err(UnionError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        Ok(self.write_lock.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn rw_index(&self) -> usize {
        self.rw.unwrap_or(0)
    }

    fn parent_and_name<'p>(&self, path: &'p Path) -> Result<(DirState, PathBuf, &'p OsStr)> {
        let (parent, name) = split_parent(path)?;
        let state = self
            .resolve_dir(&parent)?
            .ok_or_else(|| UnionError::NotFound {
                path: parent.clone(),
            })?;
        Ok((state, parent, name))
    }

    /// Makes union directory `path` exist in the rw branch (copying up each
    /// missing directory with its attributes) and returns it, held open.
    fn ensure_rw_dir(&self, path: &Path) -> Result<RwDir> {
        // Already in the rw branch: the resolved directory says where.
        if let Some(rw) = self
            .resolve_dir_shared(path)?
            .and_then(|state| state.rw.clone())
        {
            return Ok(rw);
        }
        let mut state = self.root_state()?;
        for name in components(path)? {
            let child = state.path.join(name);
            let found = self
                .lookup_in(&state, name)?
                .ok_or_else(|| UnionError::NotFound {
                    path: child.clone(),
                })?;
            if !found.entry.is_dir() {
                return Err(UnionError::NotADirectory { path: child });
            }
            let found = if found.rw_dir {
                found
            } else {
                let rw_parent = state.rw.as_ref().ok_or_else(|| UnionError::NotFound {
                    path: state.path.clone(),
                })?;
                let real = rw_parent.real(name);
                let _changed = DirsChanged(self);
                rustix::fs::mkdirat(rw_parent.fd(), name, Mode::from_raw_mode(0o700))
                    .map_err(errno_err("mkdir", &real))?;
                copy_attrs(&found.entry, rw_parent.fd(), name, &real)?;
                self.lookup_in(&state, name)?
                    .ok_or_else(|| UnionError::NotFound {
                        path: child.clone(),
                    })?
            };
            state = self.descend(child, &found)?;
        }
        state.rw.ok_or_else(|| UnionError::NotFound {
            path: path.to_path_buf(),
        })
    }

    /// Makes `path` live in the rw branch, copying it up (data too unless
    /// `with_data` is false, for an open that truncates) with owner, mode,
    /// xattrs and times. Returns the rw entry; a no-op for rw entries.
    pub fn copy_up(&self, path: &Path, with_data: bool) -> Result<Entry> {
        let _guard = self.lock_writes(path)?;
        self.copy_up_locked(path, with_data)
    }

    /// Gives the copied-up rw file at `path` its own inode number (the rw
    /// file's) instead of its lower original's, from now on and across
    /// remounts. A filesystem uses this when the lower original is still in
    /// use under the old number (open with the kernel bound to it), so the
    /// copy needs a number of its own. Returns the entry with its new number.
    pub fn renumber(&self, path: &Path) -> Result<Entry> {
        let _guard = self.lock_writes(path)?;
        let e = self.lookup(path)?.ok_or_else(|| UnionError::NotFound {
            path: path.to_path_buf(),
        })?;
        if e.branch_index == self.rw_index() && !e.is_dir() {
            self.xino.forget(e.metadata.ino());
        }
        self.lookup(path)?.ok_or_else(|| UnionError::NotFound {
            path: path.to_path_buf(),
        })
    }

    fn copy_up_locked(&self, path: &Path, with_data: bool) -> Result<Entry> {
        let rw = self.rw_index();
        let found = self
            .lookup_found(path)?
            .ok_or_else(|| UnionError::NotFound {
                path: path.to_path_buf(),
            })?;
        if found.entry.branch_index == rw {
            return Ok(found.entry);
        }
        if found.entry.is_dir() {
            self.ensure_rw_dir(path)?;
        } else {
            let (parent, name) = split_parent(path)?;
            let rw_parent = self.ensure_rw_dir(&parent)?;
            let tmp = temp_name();
            let tmp = OsStr::new(&tmp);
            let tmp_real = rw_parent.real(tmp);
            let src = &found.entry;
            let made = copy_node(src, rw_parent.fd(), tmp, &tmp_real, with_data).and_then(|()| {
                rustix::fs::renameat(rw_parent.fd(), tmp, rw_parent.fd(), name)
                    .map_err(errno_err("rename", &tmp_real))
            });
            if let Err(e) = made {
                let _ = beneath::unlink(rw_parent.fd(), tmp);
                return Err(e);
            }
            let real = rw_parent.real(name);
            if src.metadata.nlink() > 1 && src.metadata.is_file() {
                self.link_other_names(path, src, &rw_parent.at(name))?;
            }
            // Every visible name of the lower file now shows the copy: it
            // keeps the lower number.
            if src.metadata.nlink() == 1 || src.metadata.is_file() {
                let md = Meta::at(rw_parent.fd(), name).map_err(io_err("lstat", &real))?;
                self.xino.record_copy_up(md.ino(), md.birth(), src.ino);
            }
            tracing::debug!(storage_driver = "aufs", ?path, "copied up");
        }
        self.lookup(path)?.ok_or_else(|| UnionError::NotFound {
            path: path.to_path_buf(),
        })
    }

    /// aufs pseudo-links, flushed: every other name under which the union
    /// shows lower file `src` (just copied up from `path` to `copy`) becomes
    /// a hard link to `copy` in the rw branch.
    fn link_other_names(&self, path: &Path, src: &Entry, copy: &At) -> Result<()> {
        let branch = &self.branches[src.branch_index];
        let others = self
            .links
            .names(src.branch_index, branch, src.metadata.ino())?;
        let me = components(path)?;
        for other in &others {
            if components(other)? == me {
                continue;
            }
            let Some(found) = self.lookup_found(other)? else {
                continue;
            };
            if found.entry.branch_index != src.branch_index || found.entry.ino != src.ino {
                continue;
            }
            let (parent, name) = split_parent(other)?;
            let rw_parent = self.ensure_rw_dir(&parent)?;
            let link = rw_parent.real(name);
            rustix::fs::linkat(
                copy.dir(),
                &copy.name,
                rw_parent.fd(),
                name,
                AtFlags::empty(),
            )
            .map_err(errno_err("link", &link))?;
            tracing::debug!(storage_driver = "aufs", ?path, ?other, "pseudo-link");
        }
        Ok(())
    }

    /// Takes the write lock to make `path`, a name that must be free (not
    /// shown in the union, not reserved); returns the lock, the union
    /// parent and the name.
    fn claim_new_name<'p>(
        &self,
        path: &'p Path,
    ) -> Result<(MutexGuard<'_, ()>, PathBuf, &'p OsStr)> {
        let guard = self.lock_writes(path)?;
        let (state, parent, name) = self.parent_and_name(path)?;
        Self::check_new_name(path, name)?;
        if self.lookup_in(&state, name)?.is_some() {
            return Err(UnionError::Exists {
                path: path.to_path_buf(),
            });
        }
        Ok((guard, parent, name))
    }

    fn check_new_name(path: &Path, name: &OsStr) -> Result<()> {
        if is_reserved(name.as_bytes()) {
            return Err(UnionError::Reserved {
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Creates `path` in the rw branch. A whiteout of the same name is
    /// removed; a directory created over one is made opaque, so nothing of a
    /// removed lower directory shows through.
    pub fn create(&self, path: &Path, node: NewNode<'_>, owner: Option<Owner>) -> Result<Entry> {
        let (_guard, parent, name) = self.claim_new_name(path)?;
        let rw_parent = self.ensure_rw_dir(&parent)?;
        let dir = rw_parent.fd();
        let is_dir = matches!(node, NewNode::Dir { .. });
        let _changed = is_dir.then(|| DirsChanged(self));
        let real = rw_parent.real(name);
        let wh = whiteout_name(name);
        let had_whiteout = rw_parent.exists(&wh)?;
        let mode = match node {
            NewNode::File { mode } => {
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode & 0o7777),
                )
                .map_err(errno_err("create", &real))?;
                Some(mode)
            }
            NewNode::Dir { mode } => {
                rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode & 0o7777))
                    .map_err(errno_err("mkdir", &real))?;
                Some(mode)
            }
            NewNode::Symlink { target } => {
                rustix::fs::symlinkat(target, dir, name).map_err(errno_err("symlink", &real))?;
                None
            }
            NewNode::Special { mode, rdev } => {
                rustix::fs::mknodat(
                    dir,
                    name,
                    FileType::from_raw_mode(mode),
                    Mode::from_raw_mode(mode & 0o7777),
                    rdev,
                )
                .map_err(errno_err("mknod", &real))?;
                Some(mode)
            }
        };
        let finish = || -> Result<()> {
            // As made by this process: its ids, or the group of a set-gid
            // parent (which the kernel gave it already).
            let fd = pin(dir, name).map_err(io_err("open", &real))?;
            let made = Meta::of(&fd).map_err(io_err("lstat", &real))?;
            let mut changed = false;
            if let Some(owner) = owner {
                let want = (owner.uid, owner_gid(owner, made.gid(), &rw_parent)?);
                changed |= (made.uid(), made.gid()) != want;
                set_owner(&fd, &real, (made.uid(), made.gid()), want)?;
            }
            if let Some(mode) = mode {
                let mut bits = mode & 0o7777;
                if is_dir {
                    // A directory keeps the set-gid bit its parent gave it.
                    bits |= made.mode() & libc::S_ISGID;
                }
                // A chown clears set-id bits: set the mode again after one.
                if changed || made.mode() & 0o7777 != bits {
                    set_mode_pinned(&fd, &made, bits).map_err(io_err("chmod", &real))?;
                }
            }
            if had_whiteout {
                if is_dir {
                    let new_dir = beneath::open_subdir(dir, name).map_err(io_err("open", &real))?;
                    make_marker(new_dir.as_fd(), OsStr::new(WHITEOUT_OPAQUE_DIR), &real)?;
                }
                beneath::unlink(dir, &wh).map_err(io_err("unlink", &rw_parent.real(&wh)))?;
            }
            Ok(())
        };
        if let Err(e) = finish() {
            let _ = if is_dir {
                beneath::remove_tree(dir, name)
            } else {
                beneath::unlink(dir, name)
            };
            return Err(e);
        }
        // A new entry shows nothing of the read-only branches (a directory
        // created over a removed one is opaque): its own number is its
        // union number.
        let metadata = Meta::at(dir, name).map_err(io_err("lstat", &real))?;
        Ok(self.new_rw_entry(real, metadata, rw_parent.at(name)))
    }

    /// The entry of a file just made in the rw branch (at `real_path`, or
    /// unnamed in that directory), with `metadata` its `lstat`: its own
    /// number is its union number, and a record left by an earlier file of
    /// that inode number is stale.
    fn new_rw_entry(&self, real_path: PathBuf, metadata: Meta, at: At) -> Entry {
        self.xino.forget(metadata.ino());
        let ino = self
            .xino
            .ino(self.branches[self.rw_index()].dev, metadata.ino());
        Entry {
            branch_index: self.rw_index(),
            real_path,
            metadata,
            ino,
            at,
        }
    }

    /// Hard-links `src` (copied up first) as `dst`.
    pub fn link(&self, src: &Path, dst: &Path) -> Result<Entry> {
        let (_guard, parent, name) = self.claim_new_name(dst)?;
        let src_entry = self.lookup(src)?.ok_or_else(|| UnionError::NotFound {
            path: src.to_path_buf(),
        })?;
        if src_entry.is_dir() {
            return Err(UnionError::IsADirectory {
                path: src.to_path_buf(),
            });
        }
        let src_entry = self.copy_up_locked(src, true)?;
        let rw_parent = self.ensure_rw_dir(&parent)?;
        let real = rw_parent.real(name);
        rustix::fs::linkat(
            src_entry.at.dir(),
            &src_entry.at.name,
            rw_parent.fd(),
            name,
            AtFlags::empty(),
        )
        .map_err(errno_err("link", &real))?;
        remove_if_exists(&rw_parent, &whiteout_name(name))?;
        self.lookup(dst)?.ok_or_else(|| UnionError::NotFound {
            path: dst.to_path_buf(),
        })
    }

    /// An unnamed regular file in union directory `dir` (`O_TMPFILE`), made
    /// in the rw branch (the directory is copied up first). `flags` are the
    /// caller's open flags; only `O_EXCL` (never to be named) is kept, the
    /// file is always opened for reading and writing. No listing shows it
    /// until [`UnionView::link_unnamed`] names it; unnamed, it is gone with
    /// its last descriptor. The entry's `real_path` is the branch directory.
    pub fn create_unnamed(
        &self,
        dir: &Path,
        mode: u32,
        flags: i32,
        owner: Option<Owner>,
    ) -> Result<(std::fs::File, Entry)> {
        let _guard = self.lock_writes(dir)?;
        let rw_dir = self.ensure_rw_dir(dir)?;
        let excl = if flags & libc::O_EXCL != 0 {
            OFlags::EXCL
        } else {
            OFlags::empty()
        };
        let file = std::fs::File::from(
            rustix::fs::openat(
                rw_dir.fd(),
                c".",
                OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC | excl,
                Mode::from_raw_mode(mode & 0o7777),
            )
            .map_err(errno_err("open O_TMPFILE", &rw_dir.real))?,
        );
        let made = Meta::of(&file).map_err(io_err("fstat", &rw_dir.real))?;
        let want = match owner {
            Some(o) => Some((o.uid, owner_gid(o, made.gid(), &rw_dir)?)),
            None => None,
        };
        let metadata = match want {
            // A union running without root cannot give files away: the
            // file keeps the server's ids, as `create` does.
            Some(_) if !crate::copy_up::privileged() => made,
            Some(want) if (made.uid(), made.gid()) != want => {
                rustix::fs::fchown(
                    &file,
                    Some(rustix::fs::Uid::from_raw(want.0)),
                    Some(rustix::fs::Gid::from_raw(want.1)),
                )
                .map_err(errno_err("fchown", &rw_dir.real))?;
                // A chown clears set-id bits: set the mode again.
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o7777))
                    .map_err(errno_err("fchmod", &rw_dir.real))?;
                Meta::of(&file).map_err(io_err("fstat", &rw_dir.real))?
            }
            // Nothing changed since the first fstat.
            _ => made,
        };
        let named =
            Entry::nameless(self.rw_index(), &file, 0).map_err(io_err("open", &rw_dir.real))?;
        let entry = self.new_rw_entry(rw_dir.real.clone(), metadata, named.at);
        Ok((file, entry))
    }

    /// Names `file`, an unnamed file of the rw branch made by
    /// [`UnionView::create_unnamed`] (or one whose names are all gone), as
    /// `dst`; like [`UnionView::link`], a whiteout of that name goes.
    pub fn link_unnamed(&self, file: &std::fs::File, dst: &Path) -> Result<Entry> {
        let (_guard, parent, name) = self.claim_new_name(dst)?;
        let rw_parent = self.ensure_rw_dir(&parent)?;
        let real = rw_parent.real(name);
        // `AT_EMPTY_PATH` would need CAP_DAC_READ_SEARCH; the descriptor's
        // procfs link works for any caller that holds it.
        rustix::fs::linkat(
            CWD,
            proc_path(file.as_fd()),
            rw_parent.fd(),
            name,
            AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(errno_err("link", &real))?;
        remove_if_exists(&rw_parent, &whiteout_name(name))?;
        self.lookup(dst)?.ok_or_else(|| UnionError::NotFound {
            path: dst.to_path_buf(),
        })
    }

    /// Removes non-directory `path`; a whiteout hides any lower copy.
    pub fn unlink(&self, path: &Path) -> Result<()> {
        let _guard = self.lock_writes(path)?;
        let (state, parent, name) = self.parent_and_name(path)?;
        let found = self
            .lookup_in(&state, name)?
            .ok_or_else(|| UnionError::NotFound {
                path: path.to_path_buf(),
            })?;
        if found.entry.is_dir() {
            return Err(UnionError::IsADirectory {
                path: path.to_path_buf(),
            });
        }
        if lower_has(&state, name) {
            let rw_parent = self.ensure_rw_dir(&parent)?;
            let wh = whiteout_name(name);
            make_marker(rw_parent.fd(), &wh, &rw_parent.real(&wh))?;
        }
        if found.entry.branch_index == self.rw_index() {
            let e = &found.entry;
            beneath::unlink(e.at.dir(), &e.at.name).map_err(io_err("unlink", &e.real_path))?;
            if e.metadata.nlink() == 1 {
                self.xino.forget(e.metadata.ino());
            }
        }
        Ok(())
    }

    /// Removes directory `path`, which must look empty in the union; a
    /// whiteout hides its lower parts.
    pub fn rmdir(&self, path: &Path) -> Result<()> {
        let _guard = self.lock_writes(path)?;
        let _changed = DirsChanged(self);
        let (state, parent, name) = self.parent_and_name(path)?;
        let found = self
            .lookup_in(&state, name)?
            .ok_or_else(|| UnionError::NotFound {
                path: path.to_path_buf(),
            })?;
        if !found.entry.is_dir() {
            return Err(UnionError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        let child = self.descend(path.to_path_buf(), &found)?;
        if !self.read_dir_state(&child)?.is_empty() {
            return Err(UnionError::NotEmpty {
                path: path.to_path_buf(),
            });
        }
        if lower_has(&state, name) {
            let rw_parent = self.ensure_rw_dir(&parent)?;
            let wh = whiteout_name(name);
            make_marker(rw_parent.fd(), &wh, &rw_parent.real(&wh))?;
        }
        if let Some(rw_dir) = &child.rw {
            clear_hidden(rw_dir, path)?;
            let e = &found.entry;
            rustix::fs::unlinkat(e.at.dir(), &e.at.name, AtFlags::REMOVEDIR)
                .map_err(errno_err("rmdir", &e.real_path))?;
        }
        Ok(())
    }

    /// Renames `src` to `dst` as aufs does: a lower file is copied up first
    /// and whited out at its old name; a directory with read-only parts
    /// cannot move ([`UnionError::CrossBranchRename`], `EXDEV`, so tools
    /// copy instead). With `noreplace`, an existing `dst` is an error.
    pub fn rename(&self, src: &Path, dst: &Path, noreplace: bool) -> Result<()> {
        let _guard = self.lock_writes(dst)?;
        let _changed = DirsChanged(self);
        let (s_state, s_parent, s_name) = self.parent_and_name(src)?;
        let (d_state, d_parent, d_name) = self.parent_and_name(dst)?;
        Self::check_new_name(dst, d_name)?;
        let s_found = self
            .lookup_in(&s_state, s_name)?
            .ok_or_else(|| UnionError::NotFound {
                path: src.to_path_buf(),
            })?;
        let d_found = self.lookup_in(&d_state, d_name)?;
        if components(src)? == components(dst)? {
            return Ok(());
        }
        let s_is_dir = s_found.entry.is_dir();
        if s_is_dir && components(dst)?.starts_with(&components(src)?) {
            // A directory cannot move below itself.
            return Err(UnionError::InvalidPath {
                path: dst.to_path_buf(),
            });
        }
        let mut d_rw_dir = None;
        if let Some(d) = &d_found {
            if noreplace {
                return Err(UnionError::Exists {
                    path: dst.to_path_buf(),
                });
            }
            if d.entry.is_dir() {
                if !s_is_dir {
                    return Err(UnionError::IsADirectory {
                        path: dst.to_path_buf(),
                    });
                }
                let dstate = self.descend(dst.to_path_buf(), d)?;
                if !self.read_dir_state(&dstate)?.is_empty() {
                    return Err(UnionError::NotEmpty {
                        path: dst.to_path_buf(),
                    });
                }
                d_rw_dir = dstate.rw;
            } else if s_is_dir {
                return Err(UnionError::NotADirectory {
                    path: dst.to_path_buf(),
                });
            }
        }
        let rw = self.rw_index();
        if s_is_dir && (s_found.entry.branch_index != rw || s_found.ro_chain.is_some()) {
            return Err(UnionError::CrossBranchRename {
                path: src.to_path_buf(),
            });
        }
        let s_lower = lower_has(&s_state, s_name);
        let d_lower = lower_has(&d_state, d_name);
        let s_entry = if s_is_dir {
            s_found.entry
        } else {
            self.copy_up_locked(src, true)?
        };
        let d_parent_rw = self.ensure_rw_dir(&d_parent)?;
        let d_real = d_parent_rw.real(d_name);
        let d_wh = whiteout_name(d_name);
        if let Some(rw_dir) = &d_rw_dir {
            clear_hidden(rw_dir, dst)?;
        }
        if s_is_dir && (d_lower || d_parent_rw.exists(&d_wh)?) {
            let s_dir = beneath::open_subdir(s_entry.at.dir(), &s_entry.at.name)
                .map_err(io_err("open", &s_entry.real_path))?;
            make_marker(
                s_dir.as_fd(),
                OsStr::new(WHITEOUT_OPAQUE_DIR),
                &s_entry.real_path,
            )?;
        }
        rustix::fs::renameat(s_entry.at.dir(), &s_entry.at.name, d_parent_rw.fd(), d_name)
            .map_err(|e| UnionError::io("rename", &d_real, e.into()))?;
        remove_if_exists(&d_parent_rw, &d_wh)?;
        if s_lower {
            let s_parent_rw = self.ensure_rw_dir(&s_parent)?;
            let wh = whiteout_name(s_name);
            make_marker(s_parent_rw.fd(), &wh, &s_parent_rw.real(&wh))?;
        }
        Ok(())
    }
}

/// True when the read-only part of `dir` shows `name`.
fn lower_has(dir: &DirState, name: &OsStr) -> bool {
    dir.ro
        .as_ref()
        .is_some_and(|r| r.entries.contains_key(name))
}

/// Creates an empty whiteout or opaque marker `name` in `dir` (mode 0444,
/// as aufs's); `path` names it in messages.
fn make_marker(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<()> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
    ) {
        Ok(_) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(UnionError::io("create", path, e.into())),
    }
}

/// The group of a new entry of `owner` that the kernel made with group
/// `made` in rw directory `parent`: the parent's group when it is set-gid,
/// as the kernel does, else the owner's.
fn owner_gid(owner: Owner, made: u32, parent: &RwDir) -> Result<u32> {
    // With the caller's group already (the common case) the parent's
    // set-gid bit cannot change the answer.
    if made == owner.gid {
        return Ok(owner.gid);
    }
    let parent_md = Meta::of(parent.fd()).map_err(io_err("stat", &parent.real))?;
    Ok(if parent_md.mode() & libc::S_ISGID != 0 {
        parent_md.gid()
    } else {
        owner.gid
    })
}

fn remove_if_exists(dir: &RwDir, name: &OsStr) -> Result<()> {
    match beneath::unlink(dir.fd(), name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(UnionError::io("unlink", dir.real(name), e)),
    }
}

/// Empties a rw directory that looks empty in the union: only whiteouts and
/// aufs metadata may be left in it.
fn clear_hidden(dir: &RwDir, union_path: &Path) -> Result<()> {
    let listed = beneath::list(dir.fd()).map_err(io_err("readdir", &dir.real))?;
    for de in listed {
        if classify_bytes(de.name.as_bytes()) == NameKind::Plain {
            return Err(UnionError::NotEmpty {
                path: union_path.to_path_buf(),
            });
        }
        let p = dir.real(&de.name);
        if de.kind == EntryKind::Dir {
            beneath::remove_tree(dir.fd(), &de.name).map_err(io_err("rmdir", &p))?;
        } else {
            beneath::unlink(dir.fd(), &de.name).map_err(io_err("unlink", &p))?;
        }
    }
    Ok(())
}
