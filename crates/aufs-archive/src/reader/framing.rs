//! Framing of the tar stream: header blocks, extension headers (PAX, GNU
//! long names, old GNU sparse blocks), content windows, padding, end blocks
//! and trailing bytes, every one of them passed on to [`TarEvents`] in
//! stream order.
//!
//! Content is handed out straight from the input's buffer and never held;
//! only extension headers are read into memory, each at most [`MAX_META`]
//! bytes, whatever the entry's size.

use std::io::{self, BufRead};

use super::header::{self, check_checksum, trim_nul, unsigned_field, Fields, SIZE};
use super::pax::{self, parse_pax, PaxSparse};
use super::{Entry, Sparse, TarEvents, BLOCK, MAX_META, MAX_SPARSE_ENTRIES};

/// What the PAX headers in front of one entry may hold together: their
/// records all stay in memory until the entry comes.
const MAX_PAX_TOTAL: u64 = 4 * MAX_META;
use crate::error::{ArchiveError, Result};

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
    events: Option<Box<dyn TarEvents + 'r>>,
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
    pub(crate) fn new(inner: R, events: Option<Box<dyn TarEvents + 'r>>) -> Self {
        Self {
            src: Source { inner, offset: 0 },
            events,
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
        if let Some(events) = &mut self.events {
            events.raw(bytes).map_err(|e| {
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
        if let Some(events) = &mut self.events {
            events.file_begin(path, window, real_size).map_err(|e| {
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
        if let Some(events) = &mut self.events {
            events.shadow(id).map_err(|e| {
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
        if let Some(events) = &mut self.events {
            events.range(offset, len).map_err(|e| {
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
        if let Some(events) = &mut self.events {
            events.content(chunk, self.inline).map_err(|e| {
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
            if let Some(events) = &mut self.events {
                events.file_end().map_err(|e| self.rec_io_static(e))?;
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
        // PAX headers in a row add up (each at most MAX_META); so many that
        // they would hold more than this are refused.
        let mut pax_bytes: u64 = 0;
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
                    pax_bytes += size;
                    if pax_bytes > MAX_PAX_TOTAL {
                        return Err(ArchiveError::bad_entry(
                            &raw_name,
                            format!(
                                "PAX headers before one entry exceed the {MAX_PAX_TOTAL}-byte limit"
                            ),
                        ));
                    }
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
        size: u64,
        ext: Extensions,
    ) -> Result<Entry> {
        let raw_name = header.path_bytes().into_owned();
        let mut fields = Fields::decode(header, typeflag, size, ext.name, ext.link, &raw_name)?;
        let mut xattrs = Vec::new();
        let mut sparse = None;

        // Old GNU sparse: map in the header and in extension blocks.
        if typeflag == b'S' {
            sparse = Some(self.old_gnu_sparse(header, &raw_name)?);
        }

        let pax_sparse = match ext.pax {
            Some(records) => pax::apply_records(records, &mut fields, &mut xattrs, &raw_name)?,
            None => PaxSparse::default(),
        };
        if let Some(s) = pax_sparse.resolve(&raw_name)? {
            sparse = Some(s);
        }
        if let Some(n) = pax_sparse.name {
            fields.name = n;
        }

        let kind = header::kind(typeflag, &fields.name, sparse.is_some())?;
        let Fields {
            name,
            link,
            mode,
            uid,
            gid,
            mtime,
            atime,
            size,
            dev_major,
            dev_minor,
        } = fields;
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

    /// An old GNU sparse entry's map: in its header, continued in the
    /// extension blocks that follow it.
    fn old_gnu_sparse(&mut self, header: &tar::Header, raw_name: &[u8]) -> Result<Sparse> {
        let bad = |field: &str, e: io::Error| {
            ArchiveError::bad_entry(raw_name, format!("bad {field} field: {e}"))
        };
        let gnu = header.as_gnu().ok_or_else(|| {
            ArchiveError::bad_entry(raw_name, "sparse entry without a GNU header")
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
            let Some(b) = self.read_block(raw_name)? else {
                return Err(ArchiveError::bad_entry(
                    raw_name,
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
                    raw_name,
                    "sparse map has too many entries",
                ));
            }
            extended = ext_hdr.is_extended();
        }
        Ok(Sparse::Map { map, real_size })
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
            events: self.events.take(),
        })
    }
}

/// What is left when the stream is done.
pub(crate) struct Finished<'r> {
    pub tar_bytes: u64,
    pub events: Option<Box<dyn TarEvents + 'r>>,
}

#[derive(Default)]
struct Extensions {
    name: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    pax: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}
