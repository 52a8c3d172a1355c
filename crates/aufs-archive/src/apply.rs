//! Applying a layer tarball into a diff dir, safely and atomically.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use aufs_model::whiteout::{
    WHITEOUT_LINK_DIR, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX,
};
use aufs_model::IdMappings;
use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use crate::born::{creation_mode, Born, Parents};
use crate::error::{lossy, ArchiveError, Result};
use crate::fsops::{remove_at, timestamps, Root, Target};
use crate::pipe::{self, BlockReader};
use crate::reader::{Entry, Kind, Sparse, TarEvents, TarReader, Time};
use crate::recording;
use crate::tarsplit::TarSplitWriter;
use crate::walk::read_names;

/// How [`apply_layer`] applies a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Container-to-host uid and gid maps (empty: identity).
    pub id_maps: IdMappings,
    /// Record exact-bytes metadata into this file (see [`crate::reproduce`]).
    pub tar_split: Option<Utf8PathBuf>,
    /// Where the staging dir is made; must be on the diff dir's filesystem.
    /// Default: the diff dir's parent.
    pub staging_parent: Option<Utf8PathBuf>,
    /// `syncfs` the staging tree before it replaces the diff dir.
    pub sync: bool,
    /// Set owners from the tar (off for unprivileged use without id maps).
    pub chown: bool,
    /// Compute the sha256 of the uncompressed tar (the layer's DiffID).
    pub digest: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            id_maps: IdMappings::default(),
            tar_split: None,
            staging_parent: None,
            sync: true,
            chown: true,
            digest: true,
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The diff size of the applied layer ([`crate::diff_size`] of the diff dir).
    pub size: u64,
    /// Bytes of uncompressed tar read (including trailing bytes).
    pub tar_bytes: u64,
    /// `sha256:<hex>` of the uncompressed tar, when asked for.
    pub diff_id: Option<String>,
    /// Entries applied.
    pub entries: u64,
    /// Device nodes skipped because the process may not create them.
    pub skipped_devices: u64,
}

/// Applies a layer tarball (plain, gzip or zstd) into `diff_dir`.
///
/// The tree is built in a private staging dir (a hardlink clone of the diff
/// dir's current content, if any), synced with one `syncfs`, then swapped in
/// with `renameat2(RENAME_EXCHANGE)`; on any error the diff dir is left as it
/// was. aufs whiteouts (`.wh.NAME`, `.wh..wh..opq`) are kept as files;
/// overlay-style whiteouts are converted to them. No entry can touch anything
/// outside the staging tree. The calling thread reads, decompresses and
/// hashes `input`; a second (scoped) thread writes the tree meanwhile, and
/// a third the tar-split metadata when it is recorded.
pub fn apply_layer(
    input: impl Read,
    diff_dir: &Utf8Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let span = tracing::info_span!("apply_layer", "storage-driver" = "aufs", diff_dir = %diff_dir);
    let _g = span.enter();
    let stream = crate::compress::decompress(input)?;
    apply_from(diff_dir, opts, &span, |tx, back| {
        pipe::pump(stream, opts.digest, tx, back)
    })
}

/// [`apply_layer`] for a tarball in a file, read from its current offset.
///
/// A file sealed against shrinking (a memfd with `F_SEAL_SHRINK`) is mapped
/// instead of read: an uncompressed layer then goes from the page cache to
/// the diff dir without a copy into buffers, and hashing may run ahead of
/// the applier without holding memory of its own; a compressed one is
/// decompressed straight from the mapping. Anything else (a file someone
/// could truncate meanwhile, a pipe, a socket) is read as [`apply_layer`]
/// reads it.
pub fn apply_layer_file(
    file: &File,
    diff_dir: &Utf8Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let Some(map) = crate::mapped::map_rest(file)? else {
        return apply_layer(file, diff_dir, opts);
    };
    let span = tracing::info_span!("apply_layer", "storage-driver" = "aufs", diff_dir = %diff_dir);
    let _g = span.enter();
    let data = map.rest();
    match crate::compress::detect(&data[..data.len().min(6)])? {
        crate::compress::Compression::None => apply_from(diff_dir, opts, &span, |tx, _back| {
            pipe::pump_mapped(data, opts.digest, tx)
        }),
        _ => {
            let stream = crate::compress::decompress(data)?;
            apply_from(diff_dir, opts, &span, |tx, back| {
                pipe::pump(stream, opts.digest, tx, back)
            })
        }
    }
}

/// The apply proper: `pump` feeds the stream's blocks (and hashes them) on
/// this thread while the tree is built in a staging dir, then swapped in.
fn apply_from<'m>(
    diff_dir: &Utf8Path,
    opts: &ApplyOptions,
    span: &tracing::Span,
    pump: impl FnOnce(SyncSender<pipe::Block<'m>>, Receiver<Vec<u8>>) -> pipe::Pumped,
) -> Result<ApplyReport> {
    let staging = Staging::create(diff_dir, opts)?;
    // Beside the staging tree when there is a staging dir: whoever clears
    // a dead apply's staging dir clears its temp metadata too.
    let split_tmp = opts.tar_split.as_ref().map(|p| {
        let name = format!(
            "{}.tmp-{}",
            p.file_name().unwrap_or("tar-split"),
            std::process::id()
        );
        match &opts.staging_parent {
            Some(dir) => dir.join(name),
            None => p.with_file_name(name),
        }
    });
    let result = (|| {
        let rec: Option<Box<dyn TarEvents>> = match &split_tmp {
            Some(tmp) => Some(Box::new(TarSplitWriter::create(tmp, opts.sync)?)),
            None => None,
        };
        let report = apply_pipelined(&staging, opts, pump, rec, span, diff_dir)?;
        if opts.sync {
            let fd = staging
                .root
                .open_dir_rw(b"")
                .map_err(|e| ArchiveError::io("opening staging tree", staging.tree_path(), e))?;
            rustix::fs::syncfs(&fd)
                .map_err(|e| ArchiveError::io("syncfs", staging.tree_path(), e.into()))?;
        }
        Ok(report)
    })();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(tmp) = &split_tmp {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
    };
    let shadow_tmp = match (&split_tmp, &opts.tar_split) {
        (Some(tmp), Some(_)) => {
            match staging.take_shadow(&Utf8PathBuf::from(format!("{tmp}.shadow"))) {
                Ok(moved) => moved,
                Err(e) => {
                    let _ = std::fs::remove_file(tmp);
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let cleanup = || {
        if let Some(tmp) = &split_tmp {
            let _ = std::fs::remove_file(tmp);
        }
        if let Some(d) = &shadow_tmp {
            let _ = std::fs::remove_dir_all(d);
        }
    };
    // Metadata of the old content goes before the swap: cut off between
    // the two, the layer has no exact bytes rather than another tar's.
    if let Some(dst) = &opts.tar_split {
        if let Err(e) = remove_if_present(dst) {
            cleanup();
            return Err(ArchiveError::io("removing old tar-split metadata", dst, e));
        }
    }
    if let Err(e) = staging.commit(diff_dir, opts.sync) {
        cleanup();
        return Err(e);
    }
    if let (Some(tmp), Some(dst)) = (&split_tmp, &opts.tar_split) {
        let shadow = crate::tarsplit::shadow_dir(dst);
        let installed = match std::fs::remove_dir_all(&shadow) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
        .and_then(|()| match &shadow_tmp {
            Some(d) => std::fs::rename(d, &shadow),
            None => Ok(()),
        })
        .map_err(|e| ArchiveError::io("installing tar-split metadata", dst.clone(), e))
        // The seal first: metadata in place without its seal would be
        // checked by content only.
        .and_then(|()| crate::seal::write(dst, diff_dir, opts.sync))
        .and_then(|()| {
            std::fs::rename(tmp, dst)
                .map_err(|e| ArchiveError::io("installing tar-split metadata", dst.clone(), e))
        });
        if let Err(e) = installed {
            cleanup();
            return Err(e);
        }
    }
    tracing::debug!(
        size = report.size,
        entries = report.entries,
        "layer applied"
    );
    Ok(report)
}

/// Runs the applier on its own thread, fed by [`pipe::pump`] on this one
/// (which reads, decompresses and hashes: the input need not be `Send`),
/// and the tar-split writer `rec`, if any, on a third
/// ([`recording::replay`]).
fn apply_pipelined<'m>(
    staging: &Staging,
    opts: &ApplyOptions,
    pump: impl FnOnce(SyncSender<pipe::Block<'m>>, Receiver<Vec<u8>>) -> pipe::Pumped,
    rec: Option<Box<dyn TarEvents + 'm>>,
    span: &tracing::Span,
    diff_dir: &Utf8Path,
) -> Result<ApplyReport> {
    let (tx, rx) = sync_channel(pipe::IN_FLIGHT);
    // Room for every block in circulation, so none is dropped and allocated anew.
    let (back_tx, back_rx) = sync_channel(pipe::IN_FLIGHT + recording::IN_FLIGHT + 4);
    std::thread::scope(|s| {
        // With metadata to record, a third thread writes it from the events
        // and consumed blocks the applying thread passes on.
        let (rec, tap): (Option<Box<dyn TarEvents + 'm>>, _) = match rec {
            Some(writer) => {
                let (tap_tx, tap_rx) = sync_channel(recording::IN_FLIGHT);
                let (res_tx, res_rx) = sync_channel(1);
                let back = back_tx.clone();
                std::thread::Builder::new()
                    .name("aufs-record".into())
                    .spawn_scoped(s, move || {
                        let _g = span.enter();
                        recording::replay(tap_rx, writer, back, res_tx)
                    })
                    .map_err(|e| ArchiveError::io("starting the recording thread", diff_dir, e))?;
                (
                    Some(Box::new(recording::Deferred::new(tap_tx.clone(), res_rx))),
                    Some(tap_tx),
                )
            }
            None => (None, None),
        };
        let applying = std::thread::Builder::new()
            .name("aufs-apply".into())
            .spawn_scoped(s, move || {
                let _g = span.enter();
                Applier::new(staging, opts, BlockReader::new(rx, back_tx, tap), rec)?.run()
            })
            .map_err(|e| ArchiveError::io("starting the applying thread", diff_dir, e))?;
        let pumped = pump(tx, back_rx);
        let mut report = match applying.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        report.diff_id = pumped.digest.map(|d| {
            format!(
                "sha256:{}",
                d.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        });
        Ok(report)
    })
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// The private directory an apply works in: `<parent>/.aufs-apply-*/{tree,plnk}`.
struct Staging {
    base: Utf8PathBuf,
    root: Root,
    plnk: OwnedFd,
    /// Contents of recorded files whose path a later entry reused (exact bytes).
    shadow: OwnedFd,
    committed: bool,
    /// The tree started empty (a new layer): nothing in it predates the apply.
    started_empty: bool,
}

impl Staging {
    fn create(diff_dir: &Utf8Path, opts: &ApplyOptions) -> Result<Self> {
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
    fn take_shadow(&self, dst: &Utf8Path) -> Result<Option<Utf8PathBuf>> {
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

    fn tree_path(&self) -> Utf8PathBuf {
        self.base.join("tree")
    }

    /// Puts the staged tree in place of `diff_dir` and removes the old content.
    fn commit(mut self, diff_dir: &Utf8Path, sync: bool) -> Result<()> {
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

fn remove_if_present(p: &Utf8Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn is_errno(e: &io::Error, n: rustix::io::Errno) -> bool {
    e.raw_os_error() == Some(n.raw_os_error())
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

/// A regular file of `.wh..wh.plnk`, extracted aside so hardlinks to it can be materialized.
struct PlnkFile {
    stash_name: String,
    entry: Entry,
}

struct Applier<'a, R> {
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

/// `.wh..` and `.wh...`: whiteouts naming no entry but the directory itself
/// or its parent.
pub(crate) fn is_dot_whiteout(name: &[u8]) -> bool {
    name.strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .is_some_and(|target| target == b"." || target == b"..")
}

/// Docker's `filepath.Clean` + breakout check: the path relative to the root,
/// or `None` when it climbs out of it.
pub(crate) fn clean_path(name: &[u8]) -> Option<Vec<u8>> {
    let abs = name.starts_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && !abs {
                    return None;
                }
            }
            c => parts.push(c),
        }
    }
    Some(parts.join(&b'/'))
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

fn split_last(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}

fn is_overlay_xattr(k: &[u8]) -> bool {
    k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.")
}

impl<'a, R: BufRead> Applier<'a, R> {
    fn new(
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

    fn run(mut self) -> Result<ApplyReport> {
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
