//! Exact original bytes of an applied layer ("tar-split").
//!
//! While a layer is applied, every byte of the uncompressed tar that is not
//! file content (headers, extension headers, padding, end blocks, trailing
//! bytes) is stored verbatim; file content is stored as a reference
//! (path in the diff dir + byte ranges) and a CRC-64 of the bytes. Content
//! that does not end up in the diff dir (skipped entries, the PAX 1.0 sparse
//! map, content of non-file entries) is stored inline. [`reproduce`] replays
//! the records and re-reads content from the diff dir, so the output is the
//! original tar byte for byte, or [`ArchiveError::LayerChanged`] when a file
//! no longer matches.
//!
//! File format (gzip-compressed): magic `AUFSTSPL`, version byte `1`, then
//! records, each a tag byte and LEB128 integers:
//! `1 len bytes` segment; `2 plen path window realsize` file begin;
//! `3 offset len` range of the file; `4 len bytes` inline content;
//! `5 crc64(8 bytes LE)` file end; `6 total` end of stream (total tar bytes);
//! `7 id` the content of the `id`-th file record (counting those with a path)
//! was kept in the shadow dir `<metadata>.shadow/<id>` because a later entry
//! reused its path.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::crc64::Crc64;
use crate::error::{lossy, ArchiveError, Result};
use crate::reader::TarEvents;

const MAGIC: &[u8] = b"AUFSTSPL";
const VERSION: u8 = 1;
const SEGMENT_FLUSH: usize = 64 * 1024;
/// Largest single record payload we write (and accept when reading).
const MAX_RECORD: u64 = 16 << 20;

const T_SEGMENT: u8 = 1;
const T_FILE: u8 = 2;
const T_RANGE: u8 = 3;
const T_INLINE: u8 = 4;
const T_FILE_END: u8 = 5;
const T_END: u8 = 6;
const T_SHADOW: u8 = 7;

/// Writes the metadata of one layer into a temporary file, renamed into place by [`Self::commit`].
pub(crate) struct TarSplitWriter {
    /// Buffered before the encoder: it pays a fixed cost per write call,
    /// and most records are a few bytes.
    out: BufWriter<flate2::write::GzEncoder<BufWriter<File>>>,
    seg: Vec<u8>,
    /// CRC-64 of the open file's content so far.
    crc: Crc64,
    /// `fsync` the file when done.
    sync: bool,
}

fn put_varint(out: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = b;
            i += 1;
            break;
        }
        buf[i] = b | 0x80;
        i += 1;
    }
    out.write_all(&buf[..i])
}

impl TarSplitWriter {
    pub(crate) fn create(tmp: &Utf8Path, sync: bool) -> Result<Self> {
        if let Some(dir) = tmp.parent().filter(|d| !d.as_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ArchiveError::io("creating tar-split metadata dir", dir, e))?;
        }
        let f = File::create(tmp)
            .map_err(|e| ArchiveError::io("creating tar-split metadata", tmp, e))?;
        // Level 1: the metadata is mostly tar headers, which compress well even
        // so, and deflate competes for the cores with the applying thread.
        let mut out = BufWriter::with_capacity(
            256 * 1024,
            flate2::write::GzEncoder::new(BufWriter::new(f), flate2::Compression::fast()),
        );
        out.write_all(MAGIC)
            .and_then(|_| out.write_all(&[VERSION]))
            .map_err(|e| ArchiveError::io("writing tar-split metadata", tmp, e))?;
        Ok(Self {
            out,
            seg: Vec::new(),
            crc: Crc64::new(),
            sync,
        })
    }

    fn flush_segment(&mut self) -> io::Result<()> {
        if !self.seg.is_empty() {
            self.out.write_all(&[T_SEGMENT])?;
            put_varint(&mut self.out, self.seg.len() as u64)?;
            self.out.write_all(&self.seg)?;
            self.seg.clear();
        }
        Ok(())
    }
}

impl TarEvents for TarSplitWriter {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.seg.extend_from_slice(bytes);
        if self.seg.len() >= SEGMENT_FLUSH {
            self.flush_segment()?;
        }
        Ok(())
    }

    fn file_begin(&mut self, path: &[u8], window: u64, real_size: u64) -> io::Result<()> {
        self.flush_segment()?;
        self.out.write_all(&[T_FILE])?;
        put_varint(&mut self.out, path.len() as u64)?;
        self.out.write_all(path)?;
        put_varint(&mut self.out, window)?;
        put_varint(&mut self.out, real_size)
    }

    fn range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.out.write_all(&[T_RANGE])?;
        put_varint(&mut self.out, offset)?;
        put_varint(&mut self.out, len)
    }

    fn content(&mut self, bytes: &[u8], inline: bool) -> io::Result<()> {
        self.crc.update(bytes);
        if !inline {
            return Ok(());
        }
        for chunk in bytes.chunks(MAX_RECORD as usize) {
            self.out.write_all(&[T_INLINE])?;
            put_varint(&mut self.out, chunk.len() as u64)?;
            self.out.write_all(chunk)?;
        }
        Ok(())
    }

    fn file_end(&mut self) -> io::Result<()> {
        let crc = std::mem::take(&mut self.crc).finalize();
        self.out.write_all(&[T_FILE_END])?;
        self.out.write_all(&crc.to_le_bytes())
    }

    fn shadow(&mut self, id: u64) -> io::Result<()> {
        self.flush_segment()?;
        self.out.write_all(&[T_SHADOW])?;
        put_varint(&mut self.out, id)
    }

    fn finish(mut self: Box<Self>, total: u64) -> io::Result<()> {
        self.flush_segment()?;
        self.out.write_all(&[T_END])?;
        put_varint(&mut self.out, total)?;
        let gz = self.out.into_inner().map_err(|e| e.into_error())?;
        let f = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        if self.sync {
            f.sync_all()?;
        }
        Ok(())
    }
}

/// A directory of tar-split metadata files, one per layer key.
#[derive(Debug, Clone)]
pub struct TarSplitStore {
    dir: Utf8PathBuf,
}

impl TarSplitStore {
    /// A store in `dir` (created when [`crate::apply_layer`] first records into it).
    pub fn new(dir: impl Into<Utf8PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The metadata file of `key` (a layer id).
    pub fn path_for(&self, key: &str) -> Utf8PathBuf {
        self.dir.join(format!("{key}.tar-split.gz"))
    }

    /// Every file and directory `key`'s metadata may occupy: the metadata
    /// file, its seal, and the dir of kept copies of files the layer
    /// overwrote. [`TarSplitStore::remove`] deletes them all; a caller that
    /// removes through its own filesystem port deletes these.
    pub fn paths_for(&self, key: &str) -> [Utf8PathBuf; 3] {
        let meta = self.path_for(key);
        let seal = crate::seal::path(&meta);
        let shadow = shadow_dir(&meta);
        [meta, seal, shadow]
    }

    /// True when `key` has metadata.
    pub fn contains(&self, key: &str) -> bool {
        self.path_for(key).is_file()
    }

    /// Deletes `key`'s metadata (no error if there is none).
    pub fn remove(&self, key: &str) -> Result<()> {
        let p = self.path_for(key);
        let shadow = shadow_dir(&p);
        match std::fs::remove_dir_all(&shadow) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(ArchiveError::io("removing tar-split metadata", shadow, e))
            }
            _ => {}
        }
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(ArchiveError::io("removing tar-split metadata", p, e))
            }
            _ => {}
        }
        crate::seal::remove(&p)
    }

    /// [`reproduce`] for `key`.
    pub fn reproduce(&self, key: &str, diff_dir: &Utf8Path, out: impl Write) -> Result<u64> {
        reproduce(&self.path_for(key), diff_dir, out)
    }

    /// [`verify`] for `key`.
    pub fn verify(&self, key: &str, diff_dir: &Utf8Path) -> Result<()> {
        verify(&self.path_for(key), diff_dir)
    }
}

/// Checks, without writing anything, that the layer is as applied and
/// [`reproduce`] would succeed: no entry of `diff_dir` changed since the apply
/// (ctimes against the apply's seal: files added, removed, renamed, written,
/// chmod'ed...), then every referenced file read and its checksum compared.
/// Use it before streaming to a sink that cannot be rewound, then fall back
/// to [`crate::export_diff`] on [`ArchiveError::is_not_reproducible`].
pub fn verify(meta: &Utf8Path, diff_dir: &Utf8Path) -> Result<()> {
    crate::seal::check(meta, diff_dir)?;
    reproduce(meta, diff_dir, io::sink()).map(|_| ())
}

/// Writes the original tar of a layer applied with tar-split recording, byte for
/// byte, re-reading file content from `diff_dir`. Returns the number of bytes written.
///
/// Fails with [`ArchiveError::LayerChanged`] when a file is missing or its content
/// differs; bytes already written to `out` are then incomplete.
pub fn reproduce(meta: &Utf8Path, diff_dir: &Utf8Path, mut out: impl Write) -> Result<u64> {
    let shadowed = scan_shadows(meta)?;
    let shadow_dir = shadow_dir(meta);
    let mut rd = open_meta(meta)?;
    let root = rustix::fs::open(
        diff_dir.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ArchiveError::io("opening diff dir", diff_dir, e.into()))?;
    let w_err = |e: io::Error| ArchiveError::io("writing reproduced tar", diff_dir, e);
    let mut written: u64 = 0;
    // Writes of half a default pipe (see `export::OUT_BUF`).
    let mut buf = vec![0u8; 32 * 1024];
    let mut file: Option<OpenFile> = None;
    let mut next_id: u64 = 0;
    loop {
        let Some(tag) = rd.tag()? else {
            return Err(rd.corrupt("missing end record"));
        };
        match tag {
            T_SEGMENT | T_INLINE => {
                let len = rd.len()?;
                let mut left = len;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    rd.exact(&mut buf[..n])?;
                    out.write_all(&buf[..n]).map_err(w_err)?;
                    if tag == T_INLINE {
                        let f = file
                            .as_mut()
                            .ok_or_else(|| rd.corrupt("inline content outside a file"))?;
                        f.crc.update(&buf[..n]);
                        f.emitted += n as u64;
                    }
                    left -= n as u64;
                }
                written += len;
            }
            T_FILE => {
                let plen = rd.len()?;
                let mut path = vec![0u8; plen as usize];
                rd.exact(&mut path)?;
                let window = rd.varint()?;
                let real_size = rd.varint()?;
                let handle = if path.is_empty() {
                    None
                } else {
                    let id = next_id;
                    next_id += 1;
                    if shadowed.contains(&id) {
                        Some(open_shadow(&shadow_dir, id, &path, real_size)?)
                    } else {
                        Some(open_content(&root, &path, real_size)?)
                    }
                };
                file = Some(OpenFile {
                    path,
                    handle,
                    window,
                    emitted: 0,
                    crc: Crc64::new(),
                });
            }
            T_RANGE => {
                let offset = rd.varint()?;
                let len = rd.varint()?;
                let f = file
                    .as_mut()
                    .ok_or_else(|| rd.corrupt("range outside a file"))?;
                let Some(h) = &f.handle else {
                    return Err(rd.corrupt("range in an inline-only file"));
                };
                let mut pos = offset;
                let end = offset
                    .checked_add(len)
                    .ok_or_else(|| rd.corrupt("range overflows"))?;
                while pos < end {
                    let n = (end - pos).min(buf.len() as u64) as usize;
                    let got = h
                        .read_at(&mut buf[..n], pos)
                        .map_err(|e| ArchiveError::io("reading layer file", lossy(&f.path), e))?;
                    if got == 0 {
                        return Err(ArchiveError::LayerChanged {
                            path: lossy(&f.path),
                            reason: "file is shorter than recorded".into(),
                        });
                    }
                    out.write_all(&buf[..got]).map_err(w_err)?;
                    f.crc.update(&buf[..got]);
                    pos += got as u64;
                }
                f.emitted += len;
                written += len;
            }
            T_FILE_END => {
                let mut c = [0u8; 8];
                rd.exact(&mut c)?;
                let f = file
                    .take()
                    .ok_or_else(|| rd.corrupt("file end without a file"))?;
                if f.emitted != f.window {
                    return Err(rd.corrupt("file parts do not add up to its size"));
                }
                if f.crc.finalize() != u64::from_le_bytes(c) {
                    return Err(ArchiveError::LayerChanged {
                        path: lossy(&f.path),
                        reason: "content differs from the applied layer".into(),
                    });
                }
            }
            T_SHADOW => {
                rd.varint()?;
            }
            T_END => {
                let total = rd.varint()?;
                if total != written || file.is_some() {
                    return Err(rd.corrupt("stream length does not match the recorded total"));
                }
                out.flush().map_err(w_err)?;
                return Ok(written);
            }
            _ => return Err(rd.corrupt("unknown record")),
        }
    }
}

/// Where the contents of reused paths are kept beside a metadata file.
pub(crate) fn shadow_dir(meta: &Utf8Path) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{meta}.shadow"))
}

fn open_meta(meta: &Utf8Path) -> Result<MetaReader<'_, impl BufRead>> {
    let f =
        File::open(meta).map_err(|e| ArchiveError::io("opening tar-split metadata", meta, e))?;
    let mut rd = MetaReader {
        inner: BufReader::with_capacity(
            256 * 1024,
            flate2::read::GzDecoder::new(BufReader::new(f)),
        ),
        path: meta,
    };
    let mut magic = [0u8; 9];
    rd.exact(&mut magic)?;
    if &magic[..8] != MAGIC || magic[8] != VERSION {
        return Err(rd.corrupt("not a tar-split file of a known version"));
    }
    Ok(rd)
}

/// First pass: the ids of file records whose content is in the shadow dir.
fn scan_shadows(meta: &Utf8Path) -> Result<HashSet<u64>> {
    let mut rd = open_meta(meta)?;
    let mut ids = HashSet::new();
    let mut skip = vec![0u8; 64 * 1024];
    loop {
        let Some(tag) = rd.tag()? else {
            return Err(rd.corrupt("missing end record"));
        };
        match tag {
            T_SEGMENT | T_INLINE | T_FILE => {
                let mut left = rd.len()?;
                while left > 0 {
                    let n = left.min(skip.len() as u64) as usize;
                    rd.exact(&mut skip[..n])?;
                    left -= n as u64;
                }
                if tag == T_FILE {
                    rd.varint()?;
                    rd.varint()?;
                }
            }
            T_RANGE => {
                rd.varint()?;
                rd.varint()?;
            }
            T_FILE_END => rd.exact(&mut [0u8; 8])?,
            T_SHADOW => {
                ids.insert(rd.varint()?);
            }
            T_END => return Ok(ids),
            _ => return Err(rd.corrupt("unknown record")),
        }
    }
}

fn open_shadow(dir: &Utf8Path, id: u64, path: &[u8], real_size: u64) -> Result<File> {
    let p = dir.join(id.to_string());
    let changed = |reason: String| ArchiveError::LayerChanged {
        path: lossy(path),
        reason,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(o_nofollow())
        .open(&p)
        .map_err(|e| changed(format!("kept copy {p} unreadable: {e}")))?;
    let len = f
        .metadata()
        .map_err(|e| changed(format!("kept copy {p}: {e}")))?
        .len();
    if len != real_size {
        return Err(changed(format!(
            "kept copy {p} has size {len}, recorded {real_size}"
        )));
    }
    Ok(f)
}

fn o_nofollow() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

struct OpenFile {
    path: Vec<u8>,
    handle: Option<File>,
    window: u64,
    emitted: u64,
    crc: Crc64,
}

/// Opens a content file inside the diff dir without following symlinks out of it.
fn open_content(root: &rustix::fd::OwnedFd, path: &[u8], real_size: u64) -> Result<File> {
    let changed = |reason: String| ArchiveError::LayerChanged {
        path: lossy(path),
        reason,
    };
    let fd = rustix::fs::openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    )
    .map_err(|e| changed(format!("cannot open: {e}")))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| changed(format!("cannot stat: {e}")))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(changed("no longer a regular file".into()));
    }
    if st.st_size as u64 != real_size {
        return Err(changed(format!(
            "size {} differs from the recorded {real_size}",
            st.st_size
        )));
    }
    Ok(File::from(fd))
}

struct MetaReader<'a, R> {
    inner: R,
    path: &'a Utf8Path,
}

impl<R: BufRead> MetaReader<'_, R> {
    fn corrupt(&self, reason: &str) -> ArchiveError {
        ArchiveError::BadMetadata {
            path: self.path.to_owned(),
            reason: reason.to_owned(),
        }
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.inner
            .read_exact(buf)
            .map_err(|e| ArchiveError::BadMetadata {
                path: self.path.to_owned(),
                reason: format!("truncated or unreadable: {e}"),
            })
    }

    fn tag(&mut self) -> Result<Option<u8>> {
        let mut b = [0u8; 1];
        match self.inner.read(&mut b) {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(b[0])),
            Err(e) => Err(ArchiveError::BadMetadata {
                path: self.path.to_owned(),
                reason: format!("unreadable: {e}"),
            }),
        }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let mut b = [0u8; 1];
            self.exact(&mut b)?;
            if shift == 63 && b[0] > 1 {
                break;
            }
            v |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.corrupt("bad integer"))
    }

    fn len(&mut self) -> Result<u64> {
        let v = self.varint()?;
        if v > MAX_RECORD {
            return Err(self.corrupt("record too large"));
        }
        Ok(v)
    }
}
