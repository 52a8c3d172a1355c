//! Layer tarballs in regular files, mapped instead of read.
//!
//! Reading copies every byte from the page cache into a buffer that is then
//! hashed and copied again into the diff dir; with the file mapped, the
//! hash and the writes read the page cache directly. The one `unsafe` of the
//! crate is here: a mapping is only sound while nobody truncates the file.
//! A layer file being applied is not truncated by anyone who wants the
//! apply to succeed, and a truncation faults (SIGBUS) rather than corrupting
//! the layer: the staged tree is never moved into place.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::Seek;

use memmap2::{Advice, Mmap};

use crate::error::{ArchiveError, Result};

/// A file mapped whole, and where in it the stream starts.
pub(crate) struct MappedInput {
    map: Mmap,
    start: usize,
}

impl MappedInput {
    /// The stream: the file from the offset it had when mapped.
    pub(crate) fn rest(&self) -> &[u8] {
        &self.map[self.start..]
    }
}

/// Maps `file` when it is a non-empty regular file; `None` for anything
/// else (pipes, sockets, empty files), which are read instead.
pub(crate) fn map_rest(file: &File) -> Result<Option<MappedInput>> {
    let io_err = |source| ArchiveError::Read { offset: 0, source };
    let md = file.metadata().map_err(io_err)?;
    if !md.file_type().is_file() || md.len() == 0 {
        return Ok(None);
    }
    let mut f = file;
    let start = f.stream_position().map_err(io_err)?;
    if start >= md.len() || usize::try_from(md.len()).is_err() {
        return Ok(None);
    }
    // SAFETY: the mapping is read-only and private to this apply; the file
    // is not truncated while it is applied (see the module doc).
    let map = unsafe { Mmap::map(file) }.map_err(io_err)?;
    // Read front to back once: let the kernel read ahead and drop behind.
    let _ = map.advise(Advice::Sequential);
    Ok(Some(MappedInput {
        map,
        start: start as usize,
    }))
}
