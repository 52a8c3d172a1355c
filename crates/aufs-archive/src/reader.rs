//! A streaming tar parser that keeps every byte accounted for.
//!
//! The `tar` crate decodes single header blocks ([`tar::Header`]); the framing
//! (extension headers, content windows, padding, end blocks) is done here so
//! that (a) malformed input fails with the entry's name, (b) every byte that is
//! not file content can be recorded verbatim for exact reproduction, and (c)
//! all of GNU tar's sparse formats can be decoded.

use std::io::{self, BufRead};

use crate::error::{lossy, ArchiveError, Result};
use crate::tarsplit::Recorder;

/// Size of a tar block.
pub(crate) const BLOCK: u64 = 512;
/// Largest PAX header, GNU long name or global header we accept (Go's archive/tar uses the same bound).
pub(crate) const MAX_META: u64 = 1 << 20;
/// Largest number of sparse map entries we accept.
pub(crate) const MAX_SPARSE_ENTRIES: usize = 1 << 20;

/// What an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// A timestamp as stored in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Time {
    pub secs: i64,
    pub nsec: u32,
}

/// How a sparse file's data is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sparse {
    /// Map known from the headers (old GNU, PAX 0.0, PAX 0.1): `(offset, length)` pairs.
    Map {
        map: Vec<(u64, u64)>,
        real_size: u64,
    },
    /// PAX 1.0: the map is at the start of the content, padded to a block.
    InData { real_size: u64 },
}

/// One decoded entry (all extension headers folded in).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Time,
    pub atime: Option<Time>,
    /// Bytes of content stored in the archive after the header.
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub sparse: Option<Sparse>,
}

/// Counts the raw tar stream.
struct Source<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Source<R> {
    /// The input's buffered bytes, refilled when empty (empty only at EOF).
    fn fill(&mut self) -> Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Read {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
        // Borrowed again: the loop above cannot return the borrow it retries.
        self.inner.fill_buf().map_err(|source| ArchiveError::Read {
            offset: self.offset,
            source,
        })
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.offset += n as u64;
    }

    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(n) => {
                    self.offset += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ArchiveError::Read {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
    }

    /// Fills `buf` completely; returns the number of bytes read (short only at EOF).
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read_some(&mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }
}

/// The streaming parser.
pub(crate) struct TarReader<'r, R> {
    src: Source<R>,
    rec: Option<Box<dyn Recorder + 'r>>,
    /// Content bytes of the current entry not yet read.
    remaining: u64,
    /// Padding bytes after the current content.
    padding: u64,
    /// Name of the current entry, for messages.
    current: Vec<u8>,
    /// A file record is open in the recorder.
    file_open: bool,
    /// Content bytes go to the recorder inline (not reproducible from the diff dir).
    inline: bool,
    done: bool,
    /// Id of the file record begun for the current entry (ids count records with a path).
    file_id: Option<u64>,
    next_file_id: u64,
}

impl<'r, R: BufRead> TarReader<'r, R> {
    pub(crate) fn new(inner: R, rec: Option<Box<dyn Recorder + 'r>>) -> Self {
        Self {
            src: Source { inner, offset: 0 },
            rec,
            remaining: 0,
            padding: 0,
            current: Vec::new(),
            file_open: false,
            inline: false,
            done: false,
            file_id: None,
            next_file_id: 0,
        }
    }

    fn rec_io(&self, e: io::Error) -> ArchiveError {
        ArchiveError::entry_io(&self.current, "recording tar-split metadata", e)
    }

    fn segment(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(rec) = &mut self.rec {
            rec.segment(bytes).map_err(|e| {
                ArchiveError::entry_io(&self.current, "recording tar-split metadata", e)
            })?;
        }
        Ok(())
    }

    /// Reads exactly one block, recorded as a segment. `None` at a clean EOF.
    fn read_block(&mut self, what: &[u8]) -> Result<Option<[u8; 512]>> {
        let mut block = [0u8; 512];
        let n = self.src.read_full(&mut block)?;
        self.segment(&block[..n])?;
        match n {
            0 => Ok(None),
            512 => Ok(Some(block)),
            _ => Err(ArchiveError::bad_entry(
                what,
                "archive truncated inside a header block",
            )),
        }
    }

    /// Reads `len` bytes of extension-header content (plus padding) as a segment.
    fn read_meta(&mut self, len: u64, what: &[u8]) -> Result<Vec<u8>> {
        if len > MAX_META {
            return Err(ArchiveError::bad_entry(
                what,
                format!("extension header of {len} bytes exceeds the {MAX_META}-byte limit"),
            ));
        }
        let padded = len.div_ceil(BLOCK) * BLOCK;
        let mut buf = vec![0u8; padded as usize];
        let n = self.src.read_full(&mut buf)?;
        self.segment(&buf[..n])?;
        if n as u64 != padded {
            return Err(ArchiveError::bad_entry(
                what,
                "archive truncated inside an extension header",
            ));
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// Declares where the current entry's content lands in the diff dir, for
    /// exact reproduction. Without it, content is recorded inline.
    pub(crate) fn begin_file(&mut self, path: &[u8], real_size: u64) -> Result<()> {
        if self.file_open || self.remaining == 0 {
            return Ok(());
        }
        self.file_open = true;
        self.inline = false;
        let window = self.remaining;
        if let Some(rec) = &mut self.rec {
            rec.file_begin(path, window, real_size).map_err(|e| {
                ArchiveError::entry_io(&self.current, "recording tar-split metadata", e)
            })?;
            if !path.is_empty() {
                self.file_id = Some(self.next_file_id);
                self.next_file_id += 1;
            }
        }
        Ok(())
    }

    /// The record id of the current entry's content, when it was recorded by path.
    pub(crate) fn file_id(&self) -> Option<u64> {
        self.file_id
    }

    /// Records that the content of file record `id` was moved aside (its path is reused).
    pub(crate) fn record_shadow(&mut self, id: u64) -> Result<()> {
        if let Some(rec) = &mut self.rec {
            rec.shadow(id).map_err(|e| {
                ArchiveError::entry_io(&self.current, "recording tar-split metadata", e)
            })?;
        }
        Ok(())
    }

    /// Content that follows is (or is not) stored verbatim in the metadata.
    pub(crate) fn set_inline(&mut self, inline: bool) {
        self.inline = inline;
    }

    /// Records that the next `len` content bytes are bytes `offset..` of the file.
    pub(crate) fn record_range(&mut self, offset: u64, len: u64) -> Result<()> {
        if let Some(rec) = &mut self.rec {
            rec.range(offset, len).map_err(|e| {
                ArchiveError::entry_io(&self.current, "recording tar-split metadata", e)
            })?;
        }
        Ok(())
    }

    /// Content bytes of the current entry still unread.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads content of the current entry; 0 at its end. A premature EOF is an error.
    pub(crate) fn read_content(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        self.content_chunk(want, |chunk| {
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(())
        })
    }

    /// Hands the next stretch of content (at most `max` bytes) to `sink`
    /// straight from the input's buffer, so file data is not copied on its
    /// way to the diff dir; returns its length, 0 once the content is read.
    pub(crate) fn content_chunk(
        &mut self,
        max: usize,
        sink: impl FnOnce(&[u8]) -> Result<()>,
    ) -> Result<usize> {
        if self.remaining == 0 || max == 0 {
            return Ok(0);
        }
        if !self.file_open {
            self.begin_file(&[], 0)?;
            self.inline = true;
        }
        let want = max.min(self.remaining.min(usize::MAX as u64) as usize);
        let avail = self.src.fill()?;
        if avail.is_empty() {
            return Err(ArchiveError::bad_entry(
                &self.current,
                format!(
                    "archive truncated: {} bytes of content missing",
                    self.remaining
                ),
            ));
        }
        let chunk = &avail[..want.min(avail.len())];
        let n = chunk.len();
        sink(chunk)?;
        if let Some(rec) = &mut self.rec {
            rec.content(chunk, self.inline).map_err(|e| {
                ArchiveError::entry_io(&self.current, "recording tar-split metadata", e)
            })?;
        }
        self.src.consume(n);
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Reads exactly `buf.len()` content bytes.
    pub(crate) fn read_content_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            let n = self.read_content(&mut buf[got..])?;
            if n == 0 {
                return Err(ArchiveError::bad_entry(
                    &self.current,
                    "content shorter than its declared layout",
                ));
            }
            got += n;
        }
        Ok(())
    }

    /// Consumes what is left of the current entry: content (recorded inline) and padding.
    fn finish_entry(&mut self) -> Result<()> {
        if self.remaining > 0 {
            if self.file_open {
                // Bytes the applier did not place in the diff dir.
                self.inline = true;
            }
            while self.remaining > 0 {
                self.content_chunk(usize::MAX, |_| Ok(()))?;
            }
        }
        if self.file_open {
            if let Some(rec) = &mut self.rec {
                rec.file_end().map_err(|e| self.rec_io_static(e))?;
            }
            self.file_open = false;
        }
        if self.padding > 0 {
            let mut pad = [0u8; 512];
            let p = self.padding as usize;
            let n = self.src.read_full(&mut pad[..p])?;
            self.segment(&pad[..n])?;
            if n != p {
                // GNU tar accepts a missing final padding at EOF; so do we, the next read ends the archive.
                self.padding = 0;
                self.done = true;
                return Ok(());
            }
            self.padding = 0;
        }
        Ok(())
    }

    fn rec_io_static(&self, e: io::Error) -> ArchiveError {
        self.rec_io(e)
    }

    /// The next entry, or `None` at the end of the archive.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>> {
        self.finish_entry()?;
        self.file_id = None;
        if self.done {
            return Ok(None);
        }
        let mut ext = Extensions::default();
        loop {
            let what: Vec<u8> = if ext.name.is_some() || ext.pax.is_some() {
                b"<entry after extension headers>".to_vec()
            } else {
                format!("<header at byte {}>", self.src.offset).into_bytes()
            };
            let pending = ext.name.is_some() || ext.link.is_some() || ext.pax.is_some();
            let block = self.read_block(&what)?;
            let end = block.as_ref().is_none_or(|b| b.iter().all(|&x| x == 0));
            if end {
                self.done = true;
                if pending {
                    return Err(ArchiveError::bad_entry(
                        &what,
                        "archive ends right after an extension header",
                    ));
                }
                return Ok(None);
            }
            let block = block.expect("checked above");
            let header = tar::Header::from_byte_slice(&block);
            let raw_name = header.path_bytes().into_owned();
            self.current = raw_name.clone();
            check_checksum(&block, &raw_name)?;
            let typeflag = block[156];
            let size = unsigned_field(&block, SIZE, "size", &raw_name)?;
            match typeflag {
                b'x' => {
                    let data = self.read_meta(size, &raw_name)?;
                    ext.pax
                        .get_or_insert_with(Vec::new)
                        .extend(parse_pax(&data, &raw_name)?);
                    continue;
                }
                b'g' | b'V' => {
                    // Global PAX headers are ignored (as Docker does); volume labels carry nothing.
                    self.read_meta(size, &raw_name)?;
                    continue;
                }
                b'L' => {
                    ext.name = Some(trim_nul(self.read_meta(size, &raw_name)?));
                    continue;
                }
                b'K' => {
                    ext.link = Some(trim_nul(self.read_meta(size, &raw_name)?));
                    continue;
                }
                _ => {}
            }
            let entry = self.build_entry(header, typeflag, size, ext)?;
            self.current = entry.name.clone();
            self.remaining = entry.size;
            self.padding = (BLOCK - entry.size % BLOCK) % BLOCK;
            return Ok(Some(entry));
        }
    }

    fn build_entry(
        &mut self,
        header: &tar::Header,
        typeflag: u8,
        mut size: u64,
        ext: Extensions,
    ) -> Result<Entry> {
        let raw_name = header.path_bytes().into_owned();
        let bad = |field: &str, e: io::Error| {
            ArchiveError::bad_entry(&raw_name, format!("bad {field} field: {e}"))
        };
        let mut name = ext.name.unwrap_or_else(|| raw_name.clone());
        let mut link = ext.link.unwrap_or_else(|| {
            header
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default()
        });
        let block = header.as_bytes();
        let mode = u32::try_from(unsigned_field(block, MODE, "mode", &raw_name)?)
            .map_err(|_| ArchiveError::bad_entry(&raw_name, "bad mode field: out of range"))?;
        let mut uid = unsigned_field(block, UID, "uid", &raw_name)?;
        let mut gid = unsigned_field(block, GID, "gid", &raw_name)?;
        let mut mtime = Time {
            secs: signed_field(block, MTIME, "mtime", &raw_name)?,
            nsec: 0,
        };
        let mut atime = None;
        let (mut dev_major, mut dev_minor) = (0, 0);
        if matches!(typeflag, b'3' | b'4')
            && (header.as_ustar().is_some() || header.as_gnu().is_some())
        {
            let dev = |range, field| {
                u32::try_from(unsigned_field(block, range, field, &raw_name)?).map_err(|_| {
                    ArchiveError::bad_entry(&raw_name, format!("bad {field} field: out of range"))
                })
            };
            dev_major = dev(DEV_MAJOR, "devmajor")?;
            dev_minor = dev(DEV_MINOR, "devminor")?;
        }
        let mut xattrs = Vec::new();
        let mut sparse = None;

        // Old GNU sparse: map in the header and in extension blocks.
        if typeflag == b'S' {
            let gnu = header.as_gnu().ok_or_else(|| {
                ArchiveError::bad_entry(&raw_name, "sparse entry without a GNU header")
            })?;
            let real_size = gnu.real_size().map_err(|e| bad("realsize", e))?;
            let mut map = Vec::new();
            let push = |map: &mut Vec<(u64, u64)>, s: &tar::GnuSparseHeader| -> Result<()> {
                if s.is_empty() {
                    return Ok(());
                }
                let off = s.offset().map_err(|e| bad("sparse offset", e))?;
                let len = s.length().map_err(|e| bad("sparse length", e))?;
                map.push((off, len));
                Ok(())
            };
            for s in &gnu.sparse {
                push(&mut map, s)?;
            }
            let mut extended = gnu.is_extended();
            while extended {
                let Some(b) = self.read_block(&raw_name)? else {
                    return Err(ArchiveError::bad_entry(
                        &raw_name,
                        "archive truncated inside sparse headers",
                    ));
                };
                let mut ext_hdr = tar::GnuExtSparseHeader::new();
                ext_hdr.as_mut_bytes().copy_from_slice(&b);
                for s in ext_hdr.sparse() {
                    push(&mut map, s)?;
                }
                if map.len() > MAX_SPARSE_ENTRIES {
                    return Err(ArchiveError::bad_entry(
                        &raw_name,
                        "sparse map has too many entries",
                    ));
                }
                extended = ext_hdr.is_extended();
            }
            sparse = Some(Sparse::Map { map, real_size });
        }

        let mut pax_sparse = PaxSparse::default();
        if let Some(records) = ext.pax {
            for (key, value) in records {
                let num = |v: &[u8]| -> Result<u64> {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| {
                            ArchiveError::bad_entry(
                                &raw_name,
                                format!("bad PAX value for {}", lossy(&key)),
                            )
                        })
                };
                match key.as_slice() {
                    b"path" => name = value,
                    b"linkpath" => link = value,
                    b"size" => size = num(&value)?,
                    b"uid" => uid = num(&value)?,
                    b"gid" => gid = num(&value)?,
                    b"mtime" => mtime = parse_pax_time(&value, &raw_name)?,
                    b"atime" => atime = Some(parse_pax_time(&value, &raw_name)?),
                    b"GNU.sparse.major" => pax_sparse.major = Some(value),
                    b"GNU.sparse.minor" => pax_sparse.minor = Some(value),
                    b"GNU.sparse.name" => pax_sparse.name = Some(value),
                    b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                        pax_sparse.real_size = Some(num(&value)?)
                    }
                    b"GNU.sparse.map" => pax_sparse.map01 = Some(value),
                    b"GNU.sparse.numblocks" => pax_sparse.num_blocks = Some(num(&value)?),
                    b"GNU.sparse.offset" => pax_sparse.pending_offset = Some(num(&value)?),
                    b"GNU.sparse.numbytes" => {
                        let len = num(&value)?;
                        let off = pax_sparse.pending_offset.take().ok_or_else(|| {
                            ArchiveError::bad_entry(
                                &raw_name,
                                "GNU.sparse.numbytes without GNU.sparse.offset",
                            )
                        })?;
                        if pax_sparse.map00.len() >= MAX_SPARSE_ENTRIES {
                            return Err(ArchiveError::bad_entry(
                                &raw_name,
                                "sparse map has too many entries",
                            ));
                        }
                        pax_sparse.map00.push((off, len));
                    }
                    k if k.starts_with(b"SCHILY.xattr.") => {
                        xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value));
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = pax_sparse.resolve(&raw_name)? {
            sparse = Some(s);
        }
        if let Some(n) = pax_sparse.name {
            name = n;
        }

        let kind = match typeflag {
            b'0' | b'\0' | b'7' | b'S' => {
                if matches!(typeflag, b'0' | b'\0') && name.ends_with(b"/") && sparse.is_none() {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' | b'D' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => {
                return Err(ArchiveError::bad_entry(
                    &name,
                    format!("unhandled tar header type {:?}", other as char),
                ))
            }
        };
        Ok(Entry {
            name,
            link,
            kind,
            mode,
            uid,
            gid,
            mtime,
            atime,
            size,
            dev_major,
            dev_minor,
            xattrs,
            sparse,
        })
    }

    /// Consumes the rest of the stream after the end of the archive (recorded
    /// verbatim).
    pub(crate) fn finish(mut self) -> Result<Finished<'r>> {
        if !self.done {
            while self.next_entry()?.is_some() {}
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.src.read_some(&mut buf)?;
            if n == 0 {
                break;
            }
            self.segment(&buf[..n])?;
        }
        Ok(Finished {
            tar_bytes: self.src.offset,
            recorder: self.rec.take(),
        })
    }
}

/// What is left when the stream is done.
pub(crate) struct Finished<'r> {
    pub tar_bytes: u64,
    pub recorder: Option<Box<dyn Recorder + 'r>>,
}

#[derive(Default)]
struct Extensions {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

#[derive(Default)]
struct PaxSparse {
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    real_size: Option<u64>,
    map01: Option<Vec<u8>>,
    map00: Vec<(u64, u64)>,
    pending_offset: Option<u64>,
    num_blocks: Option<u64>,
}

impl PaxSparse {
    fn resolve(&self, entry: &[u8]) -> Result<Option<Sparse>> {
        let is_v1 = self.major.as_deref() == Some(b"1") && self.minor.as_deref() == Some(b"0");
        if is_v1 {
            let real_size = self.real_size.ok_or_else(|| {
                ArchiveError::bad_entry(entry, "PAX sparse 1.0 entry without GNU.sparse.realsize")
            })?;
            return Ok(Some(Sparse::InData { real_size }));
        }
        if self.major.is_some() {
            return Err(ArchiveError::bad_entry(
                entry,
                "unsupported GNU sparse format version",
            ));
        }
        let map = if let Some(m) = &self.map01 {
            if m.is_empty() && self.major.is_none() {
                return Ok(None); // Go: no version and no map is no sparse file
            }
            parse_map01(m, entry)?
        } else if !self.map00.is_empty() {
            self.map00.clone()
        } else {
            return Ok(None);
        };
        // As Go's archive/tar: the 0.x formats state their number of
        // regions, and a map that disagrees (or no number) is malformed.
        if self.num_blocks != Some(map.len() as u64) {
            return Err(ArchiveError::bad_entry(
                entry,
                format!(
                    "GNU.sparse.numblocks {} does not match the {} regions of the sparse map",
                    self.num_blocks
                        .map_or_else(|| "missing".to_owned(), |n| n.to_string()),
                    map.len()
                ),
            ));
        }
        let real_size = self.real_size.ok_or_else(|| {
            ArchiveError::bad_entry(entry, "PAX sparse entry without GNU.sparse.size")
        })?;
        Ok(Some(Sparse::Map { map, real_size }))
    }
}

fn parse_map01(m: &[u8], entry: &[u8]) -> Result<Vec<(u64, u64)>> {
    if m.is_empty() {
        return Ok(Vec::new());
    }
    let nums: Vec<u64> = m
        .split(|&b| b == b',')
        .map(|s| std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| ArchiveError::bad_entry(entry, "bad GNU.sparse.map"))?;
    if nums.len() % 2 != 0 || nums.len() / 2 > MAX_SPARSE_ENTRIES {
        return Err(ArchiveError::bad_entry(entry, "bad GNU.sparse.map length"));
    }
    Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect())
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Verifies a header checksum (unsigned sum, or the signed sum some old tars wrote).
/// Byte ranges of the numeric fields of a header block.
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const DEV_MAJOR: std::ops::Range<usize> = 329..337;
const DEV_MINOR: std::ops::Range<usize> = 337..345;

/// A numeric header field as Go reads it (see [`crate::numeric`]).
fn signed_field(
    block: &[u8],
    range: std::ops::Range<usize>,
    field: &str,
    name: &[u8],
) -> Result<i64> {
    crate::numeric::parse(&block[range.clone()]).ok_or_else(|| {
        ArchiveError::bad_entry(
            name,
            format!(
                "bad {field} field: {:?} is not a number",
                String::from_utf8_lossy(&block[range])
            ),
        )
    })
}

/// A numeric header field that may not be negative.
fn unsigned_field(
    block: &[u8],
    range: std::ops::Range<usize>,
    field: &str,
    name: &[u8],
) -> Result<u64> {
    u64::try_from(signed_field(block, range, field, name)?)
        .map_err(|_| ArchiveError::bad_entry(name, format!("bad {field} field: negative")))
}

fn check_checksum(block: &[u8; 512], name: &[u8]) -> Result<()> {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|&b| b != 0 && b != b' ')
        .collect();
    let stored = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
        .ok_or_else(|| ArchiveError::bad_entry(name, "unreadable header checksum"))?;
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    if stored == unsigned || i64::from(stored) == i64::from(signed) {
        Ok(())
    } else {
        Err(ArchiveError::bad_entry(
            name,
            format!("header checksum mismatch (stored {stored:o}, computed {unsigned:o})"),
        ))
    }
}

/// Parses PAX records `"LEN KEY=VALUE\n"`.
pub(crate) fn parse_pax(data: &[u8], entry: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| ArchiveError::bad_entry(entry, "malformed PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > sp + 1 && l <= rest.len())
            .ok_or_else(|| ArchiveError::bad_entry(entry, "malformed PAX record length"))?;
        let record = &rest[sp + 1..len];
        if record.last() != Some(&b'\n') {
            return Err(ArchiveError::bad_entry(
                entry,
                "PAX record not terminated by a newline",
            ));
        }
        let record = &record[..record.len() - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| ArchiveError::bad_entry(entry, "PAX record without '='"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Parses a PAX time `SECS[.FRACTION]` (SECS may be negative).
fn parse_pax_time(v: &[u8], entry: &[u8]) -> Result<Time> {
    let bad = || ArchiveError::bad_entry(entry, format!("bad PAX time {:?}", lossy(v)));
    let s = std::str::from_utf8(v).map_err(|_| bad())?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let neg = int.starts_with('-');
    let secs: i64 = int.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().map_err(|_| bad())?;
    if neg && nsec > 0 {
        Ok(Time {
            secs: secs - 1,
            nsec: 1_000_000_000 - nsec,
        })
    } else {
        Ok(Time { secs, nsec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_parse() {
        let data = b"30 mtime=1350244992.023960108\n20 path=hello/world\n";
        let r = parse_pax(data, b"x").unwrap();
        assert_eq!(r[0].0, b"mtime");
        assert_eq!(r[1].1, b"hello/world");
        assert!(parse_pax(b"99 path=x\n", b"x").is_err());
        assert!(parse_pax(b"9 path=x\t", b"x").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"12.5", b"").unwrap(),
            Time {
                secs: 12,
                nsec: 500_000_000
            }
        );
        assert_eq!(
            parse_pax_time(b"-1.25", b"").unwrap(),
            Time {
                secs: -2,
                nsec: 750_000_000
            }
        );
        assert!(parse_pax_time(b"1.x", b"").is_err());
    }
}
