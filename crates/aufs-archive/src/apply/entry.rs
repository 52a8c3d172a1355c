//! The per-entry applier: each tar entry becomes a file, directory,
//! symlink, hardlink or device in the staging tree, through descriptors
//! resolved inside it (see [`crate::fsops`]), with its owner, mode, xattrs
//! and times; aufs and overlay whiteouts, aufs pseudo-links and replaced
//! recorded files are handled here too.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use aufs_model::whiteout::{
    WHITEOUT_LINK_DIR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::names::{clean_path, is_dot_whiteout, split_last};
use super::staging::Staging;
use super::{ApplyOptions, ApplyReport};
use crate::born::{creation_mode, Born, Parents};
use crate::error::{lossy, ArchiveError, Result};
use crate::fsops::{remove_at, timestamps, Target};
use crate::reader::{Entry, Kind, Sparse, TarEvents, TarReader, Time};
use aufs_model::whiteout::is_overlay_xattr;

fn is_errno(e: &io::Error, n: rustix::io::Errno) -> bool {
    e.raw_os_error() == Some(n.raw_os_error())
}

/// A regular file of `.wh..wh.plnk`, extracted aside so hardlinks to it can be materialized.
struct PlnkFile {
    stash_name: String,
    entry: Entry,
}

pub(super) struct Applier<'a, R> {
    staging: &'a Staging,
    opts: &'a ApplyOptions,
    rd: TarReader<'a, R>,
    dirs: Vec<(Vec<u8>, Time, Time)>,
    plnk: HashMap<Vec<u8>, PlnkFile>,
    /// Inodes whose content a file record refers to, by record id.
    recorded: HashMap<(u64, u64), u64>,
    root_owner: Option<(u32, u32)>,
    entries: u64,
    skipped_devices: u64,
    parents: Parents,
    umask: Option<u32>,
    /// The diff size so far, while it can be counted entry by entry (the
    /// tree started empty and nothing was replaced); else it is measured.
    size: Option<u64>,
}

/// Creates `base` in `dir` as a new empty file with the plain bits of
/// `perm` (the staging dir is private, so no one else can open it meanwhile),
/// failing if anything is there, never following it.
fn create_new(dir: BorrowedFd<'_>, base: &[u8], entry: &[u8], perm: u32) -> Result<File> {
    rustix::fs::openat(
        dir,
        base,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        creation_mode(perm),
    )
    .map(File::from)
    .map_err(|err| ArchiveError::entry_io(entry, "creating file", err))
}

impl<'a, R: BufRead> Applier<'a, R> {
    pub(super) fn new(
        staging: &'a Staging,
        opts: &'a ApplyOptions,
        input: R,
        rec: Option<Box<dyn TarEvents + 'a>>,
    ) -> Result<Self> {
        let root_owner = if opts.chown {
            Some(opts.id_maps.root_pair().unwrap_or((0, 0)))
        } else {
            None
        };
        Ok(Self {
            staging,
            opts,
            rd: TarReader::new(input, rec),
            dirs: Vec::new(),
            plnk: HashMap::new(),
            recorded: HashMap::new(),
            root_owner,
            entries: 0,
            skipped_devices: 0,
            parents: Parents::default(),
            umask: crate::born::umask(),
            size: staging.started_empty.then_some(0),
        })
    }

    pub(super) fn run(mut self) -> Result<ApplyReport> {
        while let Some(entry) = self.rd.next_entry()? {
            self.apply_entry(entry)?;
        }
        // Directory times last: creating entries in a directory changes its mtime.
        for (rel, atime, mtime) in std::mem::take(&mut self.dirs) {
            let Ok(fd) = self.staging.root.open_dir_rw(&rel) else {
                continue; // replaced by a later entry
            };
            Target::Fd(fd.as_fd())
                .set_times(&timestamps(atime, mtime))
                .map_err(|e| ArchiveError::entry_io(&rel, "setting directory times", e))?;
        }
        let crate::reader::Finished { tar_bytes, events } = self.rd.finish()?;
        if let Some(events) = events {
            events.finish(tar_bytes).map_err(|e| {
                ArchiveError::io(
                    "writing tar-split metadata",
                    self.opts.tar_split.clone().unwrap_or_default(),
                    e,
                )
            })?;
        }
        let size = match self.size {
            Some(size) => size,
            None => crate::size::diff_size_fd(
                self.staging
                    .root
                    .open_dir_rw(b"")
                    .map_err(|e| {
                        ArchiveError::io("opening staging tree", self.staging.tree_path(), e)
                    })?
                    .as_fd(),
                &self.staging.tree_path(),
            )?,
        };
        Ok(ApplyReport {
            size,
            tar_bytes,
            // Filled in from the reading thread's hash.
            diff_id: None,
            entries: self.entries,
            skipped_devices: self.skipped_devices,
        })
    }

    fn map_ids(&self, e: &Entry) -> Result<(u32, u32)> {
        let id = |v: u64, kind: &str| {
            u32::try_from(v)
                .map_err(|_| ArchiveError::bad_entry(&e.name, format!("{kind} {v} out of range")))
        };
        let (u, g) = (id(e.uid, "uid")?, id(e.gid, "gid")?);
        self.opts
            .id_maps
            .to_host(u, g)
            .map_err(|source| ArchiveError::Unmapped {
                entry: lossy(&e.name),
                source,
            })
    }

    fn apply_entry(&mut self, mut e: Entry) -> Result<()> {
        if e.name.contains(&0) || e.link.contains(&0) {
            return Err(ArchiveError::bad_entry(&e.name, "name contains a NUL byte"));
        }
        let Some(mut rel) = clean_path(&e.name) else {
            return Err(ArchiveError::bad_entry(
                &e.name,
                "path escapes the layer root",
            ));
        };
        let first = rel
            .split(|&b| b == b'/')
            .next()
            .unwrap_or_default()
            .to_vec();
        if first.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            if first == WHITEOUT_LINK_DIR.as_bytes() && e.kind == Kind::File {
                return self.stash_plnk(e, &rel);
            }
            if rel != WHITEOUT_OPAQUE_DIR.as_bytes() {
                tracing::debug!("storage-driver" = "aufs", entry = %lossy(&e.name), "skipping aufs metadata entry");
                return Ok(());
            }
        }
        if is_dot_whiteout(split_last(&rel).1) {
            return Err(ArchiveError::bad_entry(
                &e.name,
                "whiteout of `.` or `..` would delete a directory itself or its parent",
            ));
        }
        if rel.is_empty() {
            if e.kind == Kind::Dir {
                return Ok(()); // The layer root keeps its own metadata (Docker's Untar).
            }
            return Err(ArchiveError::bad_entry(
                &e.name,
                "entry would replace the layer root",
            ));
        }
        // Overlay-format input: whiteout device and opaque xattr become aufs names.
        if e.kind == Kind::Char && e.dev_major == 0 && e.dev_minor == 0 {
            let (dir, base) = split_last(&rel);
            let mut wh = dir.to_vec();
            if !wh.is_empty() {
                wh.push(b'/');
            }
            wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            wh.extend_from_slice(base);
            rel = wh;
            e.kind = Kind::File;
            e.mode = 0o600;
            e.sparse = None;
        }
        let opaque = e.kind == Kind::Dir
            && e.xattrs.iter().any(|(k, v)| {
                (k == b"trusted.overlay.opaque" || k == b"user.overlay.opaque")
                    && v.as_slice() == b"y"
            });
        e.xattrs.retain(|(k, _)| !is_overlay_xattr(k));

        let ids = self.map_ids(&e)?;
        let (dir_rel, base) = split_last(&rel);
        let parent = self
            .parents
            .get(&self.staging.root, dir_rel, self.root_owner)
            .map_err(|err| ArchiveError::entry_io(&e.name, "resolving parent directory", err))?;
        let pfd = parent.fd.as_fd();
        self.entries += 1;
        match e.kind {
            Kind::File => {
                // Created before its content is read, so EEXIST can still be handled.
                let created = self.create_at(pfd, base, &e, "creating file", || {
                    rustix::fs::openat(
                        pfd,
                        base,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        creation_mode(e.mode),
                    )
                })?;
                let f = File::from(created.expect("only directories merge"));
                let (f, len) = self.write_file(f, &e, Some(&rel))?;
                self.add_size(len);
                if let Some(id) = self.rd.file_id() {
                    let st = rustix::fs::fstat(&f)
                        .map_err(|err| ArchiveError::entry_io(&e.name, "stat", err))?;
                    self.recorded.insert((st.st_dev, st.st_ino), id);
                }
                let born = Born::new(&parent, e.mode, self.umask, false);
                self.finish_meta(Target::Fd(f.as_fd()), &e, ids, true, Some(born))?;
            }
            Kind::Dir => {
                let made = self.create_at(pfd, base, &e, "mkdir", || {
                    rustix::fs::mkdirat(pfd, base, creation_mode(e.mode))
                })?;
                // An existing directory is merged into: its metadata is set, not known.
                let born = made.map(|()| Born::new(&parent, e.mode, self.umask, true));
                let fd = rustix::fs::openat(
                    pfd,
                    base,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| ArchiveError::entry_io(&e.name, "opening directory", err))?;
                self.finish_meta(Target::Fd(fd.as_fd()), &e, ids, false, born)?;
                if opaque {
                    self.make_opaque_marker(fd.as_fd(), &e, ids)?;
                }
                self.dirs.push((
                    rel.clone(),
                    e.atime.filter(|a| *a >= e.mtime).unwrap_or(e.mtime),
                    e.mtime,
                ));
            }
            Kind::Symlink => {
                // Docker's Untar refuses relative targets that climb out of the layer.
                let mut joined = dir_rel.to_vec();
                if !joined.is_empty() {
                    joined.push(b'/');
                }
                joined.extend_from_slice(e.link.strip_prefix(b"/").unwrap_or(&e.link));
                if e.link.is_empty() || clean_path(&joined).is_none() {
                    return Err(ArchiveError::bad_entry(
                        &e.name,
                        format!("invalid symlink target {:?}", lossy(&e.link)),
                    ));
                }
                self.create_at(pfd, base, &e, "symlink", || {
                    rustix::fs::symlinkat(e.link.as_slice(), pfd, base)
                })?;
                self.add_size(e.link.len() as u64);
                let born = Born::new(&parent, 0o777, self.umask, false);
                self.finish_meta(Target::At(pfd, base), &e, ids, true, Some(born))?;
            }
            Kind::HardLink => {
                // Rare: the name is cleared first (the target is resolved after).
                self.make_room(pfd, base, &e)?;
                let copied = self.hardlink(pfd, base, &e)?;
                self.add_size(copied);
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                self.make_room(pfd, base, &e)?;
                let ft = match e.kind {
                    Kind::Char => FileType::CharacterDevice,
                    Kind::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let dev = rustix::fs::makedev(e.dev_major, e.dev_minor);
                match rustix::fs::mknodat(pfd, base, ft, creation_mode(e.mode), dev) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM)
                        if e.kind != Kind::Fifo && !rustix::process::geteuid().is_root() =>
                    {
                        // As Docker in a user namespace: devices cannot be created, skip them.
                        tracing::warn!("storage-driver" = "aufs", entry = %lossy(&e.name), "skipping device node: not permitted");
                        self.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(err) => return Err(ArchiveError::entry_io(&e.name, "mknod", err)),
                }
                let born = Born::new(&parent, e.mode, self.umask, false);
                self.finish_meta(Target::At(pfd, base), &e, ids, true, Some(born))?;
            }
        }
        Ok(())
    }

    /// Runs `create` for `base` in `dir`; when the name is taken, makes room
    /// (see [`Self::make_room`]) and runs it again. `None` when the entry is a
    /// directory and a directory is already there: it is merged into. New
    /// layers never pay for a lookup this way.
    fn create_at<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &[u8],
        e: &Entry,
        op: &'static str,
        mut create: impl FnMut() -> rustix::io::Result<T>,
    ) -> Result<Option<T>> {
        match create() {
            Err(rustix::io::Errno::EXIST) => {}
            other => {
                return other
                    .map(Some)
                    .map_err(|err| ArchiveError::entry_io(&e.name, op, err))
            }
        }
        if self.make_room(dir, base, e)? {
            return Ok(None);
        }
        create()
            .map(Some)
            .map_err(|err| ArchiveError::entry_io(&e.name, op, err))
    }

    /// Clears `base` in `dir` for entry `e`: whatever is there is removed
    /// (a recorded file's content is kept aside), except a directory when `e`
    /// is one too: then `true`, and the two merge.
    fn make_room(&mut self, dir: BorrowedFd<'_>, base: &[u8], e: &Entry) -> Result<bool> {
        let st = match rustix::fs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(err) => return Err(ArchiveError::entry_io(&e.name, "lstat", err)),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if is_dir && e.kind == Kind::Dir {
            return Ok(true);
        }
        // Resolved directories may go with it; sizes no longer add up.
        self.parents.clear();
        self.size = None;
        if let Some(id) = self.recorded.remove(&(st.st_dev, st.st_ino)) {
            // Its content is part of the original bytes: keep it aside.
            rustix::fs::renameat(dir, base, &self.staging.shadow, id.to_string())
                .map_err(|err| ArchiveError::entry_io(&e.name, "keeping replaced content", err))?;
            self.rd.record_shadow(id)?;
        } else {
            remove_at(dir, base, is_dir)
                .map_err(|err| ArchiveError::entry_io(&e.name, "removing existing entry", err))?;
        }
        Ok(false)
    }

    fn add_size(&mut self, len: u64) {
        if let Some(s) = &mut self.size {
            *s += len;
        }
    }

    /// Owner, xattrs, mode (after chown, which clears set-id bits), times.
    /// What `born` says the inode already has is not set again.
    fn finish_meta(
        &self,
        t: Target<'_>,
        e: &Entry,
        (u, g): (u32, u32),
        times: bool,
        born: Option<Born>,
    ) -> Result<()> {
        let is_symlink = e.kind == Kind::Symlink;
        if self.opts.chown && born.is_none_or(|b| b.owner != (u, g)) {
            t.chown(u, g)
                .map_err(|err| ArchiveError::entry_io(&e.name, "chown", err))?;
        }
        for (k, v) in &e.xattrs {
            if let Err(err) = t.set_xattr(k, v) {
                if is_errno(&err, rustix::io::Errno::NOTSUP)
                    || is_errno(&err, rustix::io::Errno::PERM)
                {
                    tracing::warn!("storage-driver" = "aufs", entry = %lossy(&e.name), xattr = %lossy(k), error = %err, "ignoring xattr");
                    continue;
                }
                return Err(ArchiveError::entry_io(&e.name, "setxattr", err));
            }
        }
        if !is_symlink && born.and_then(|b| b.perm) != Some(e.mode & 0o7777) {
            t.chmod(e.mode)
                .map_err(|err| ArchiveError::entry_io(&e.name, "chmod", err))?;
        }
        if times {
            let atime = e.atime.filter(|a| *a >= e.mtime).unwrap_or(e.mtime);
            t.set_times(&timestamps(atime, e.mtime))
                .map_err(|err| ArchiveError::entry_io(&e.name, "setting times", err))?;
        }
        Ok(())
    }

    /// Writes the entry's content into the new file `f` (sparse-aware).
    /// `record` is the file's path in the layer, for exact-bytes metadata.
    fn write_file(&mut self, mut f: File, e: &Entry, record: Option<&[u8]>) -> Result<(File, u64)> {
        let mut len = e.size;
        let werr = |err: io::Error| ArchiveError::entry_io(&e.name, "writing file", err);
        match &e.sparse {
            None => {
                if let Some(p) = record {
                    self.rd.begin_file(p, e.size)?;
                    if e.size > 0 {
                        self.rd.record_range(0, e.size)?;
                    }
                }
                while self
                    .rd
                    .content_chunk(usize::MAX, |chunk| f.write_all(chunk).map_err(werr))?
                    > 0
                {}
            }
            Some(sparse) => {
                let (map, real_size) = match sparse {
                    Sparse::Map { map, real_size } => (map.clone(), *real_size),
                    Sparse::InData { real_size } => {
                        if let Some(p) = record {
                            self.rd.begin_file(p, *real_size)?;
                        }
                        // The map is archive bytes that are not file content: stored inline.
                        self.rd.set_inline(true);
                        let (map, _) = crate::sparse::read_data_map(&mut self.rd, &e.name)?;
                        if record.is_some() {
                            self.rd.set_inline(false);
                        }
                        (map, *real_size)
                    }
                };
                crate::sparse::validate(&map, real_size, self.rd.remaining(), &e.name)?;
                if let Some(p) = record {
                    self.rd.begin_file(p, real_size)?;
                }
                for (off, len) in map {
                    if record.is_some() {
                        self.rd.record_range(off, len)?;
                    }
                    let mut pos = off;
                    let end = off + len;
                    while pos < end {
                        let want = (end - pos).min(usize::MAX as u64) as usize;
                        let n = self.rd.content_chunk(want, |chunk| {
                            f.write_all_at(chunk, pos).map_err(werr)
                        })?;
                        if n == 0 {
                            return Err(ArchiveError::bad_entry(
                                &e.name,
                                "sparse data shorter than its map",
                            ));
                        }
                        pos += n as u64;
                    }
                }
                f.set_len(real_size).map_err(werr)?;
                len = real_size;
            }
        }
        if self.rd.remaining() != 0 {
            return Err(ArchiveError::bad_entry(
                &e.name,
                "content longer than its sparse map",
            ));
        }
        Ok((f, len))
    }

    fn make_opaque_marker(
        &mut self,
        dir: BorrowedFd<'_>,
        e: &Entry,
        ids: (u32, u32),
    ) -> Result<()> {
        let name = WHITEOUT_OPAQUE_DIR.as_bytes();
        match rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                let marker = Entry {
                    kind: Kind::File,
                    mode: e.mode & 0o777,
                    xattrs: Vec::new(),
                    ..e.clone()
                };
                self.finish_meta(Target::Fd(fd.as_fd()), &marker, ids, true, None)
            }
            Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(err) => Err(ArchiveError::entry_io(
                &e.name,
                "creating opaque marker",
                err,
            )),
        }
    }

    /// Keeps a `.wh..wh.plnk` file aside (not in the layer), as Docker's UnpackLayer.
    fn stash_plnk(&mut self, e: Entry, rel: &[u8]) -> Result<()> {
        let key = split_last(rel).1.to_vec();
        let stash_name = format!("{}", self.plnk.len());
        let plnk = self
            .staging
            .plnk
            .try_clone()
            .map_err(|err| ArchiveError::entry_io(&e.name, "dup", err))?;
        let _ = rustix::fs::unlinkat(&plnk, stash_name.as_str(), AtFlags::empty());
        let f = create_new(plnk.as_fd(), stash_name.as_bytes(), &e.name, 0o600)?;
        self.write_file(f, &e, None)?;
        self.plnk.insert(
            key,
            PlnkFile {
                stash_name,
                entry: e,
            },
        );
        Ok(())
    }

    /// Returns the bytes a copied aufs pseudo-link added to the layer.
    fn hardlink(&mut self, dir: BorrowedFd<'_>, base: &[u8], e: &Entry) -> Result<u64> {
        let Some(target) = clean_path(&e.link) else {
            return Err(ArchiveError::bad_entry(
                &e.name,
                format!(
                    "hardlink target {:?} escapes the layer root",
                    lossy(&e.link)
                ),
            ));
        };
        if target.starts_with(WHITEOUT_LINK_DIR.as_bytes()) {
            // A hardlink into aufs's pseudo-link dir: materialize a copy of the stashed file.
            let key = split_last(&target).1;
            let Some(p) = self.plnk.get(key) else {
                return Err(ArchiveError::bad_entry(
                    &e.name,
                    "invalid aufs hardlink: target not in .wh..wh.plnk",
                ));
            };
            let (stash_name, src_entry) = (p.stash_name.clone(), p.entry.clone());
            let src = rustix::fs::openat(
                &self.staging.plnk,
                stash_name.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|err| {
                ArchiveError::entry_io(&e.name, "opening stashed aufs hardlink target", err)
            })?;
            let mut out = create_new(dir, base, &e.name, 0o600)?;
            let copied = io::copy(&mut File::from(src), &mut out).map_err(|err| {
                ArchiveError::entry_io(&e.name, "copying aufs hardlink target", err)
            })?;
            let ids = self.map_ids(&src_entry)?;
            self.finish_meta(
                Target::Fd(out.as_fd()),
                &Entry {
                    name: e.name.clone(),
                    ..src_entry
                },
                ids,
                true,
                None,
            )?;
            return Ok(copied);
        }
        let (tdir, tbase) = split_last(&target);
        if tbase.is_empty() {
            return Err(ArchiveError::bad_entry(
                &e.name,
                "hardlink to the layer root",
            ));
        }
        let tparent = self
            .staging
            .root
            .resolve_dir(tdir)
            .map_err(|err| ArchiveError::entry_io(&e.name, "resolving hardlink target", err))?;
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself, never followed.
        rustix::fs::linkat(&tparent, tbase, dir, base, AtFlags::empty())
            .map_err(|err| ArchiveError::entry_io(&e.name, "hardlink", err))?;
        Ok(0)
    }
}
