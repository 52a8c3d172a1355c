//! Layer tarballs in files that cannot shrink, mapped instead of read.
//!
//! Reading copies every byte from the page cache into a buffer that is then
//! hashed and copied again into the diff dir; with the file mapped, the
//! hash and the writes read the page cache directly. The one `unsafe` of the
//! crate is here: a mapping is only sound while nobody truncates the file,
//! and a truncation faults (SIGBUS) and kills the process with no error.
//! Only a file sealed against shrinking (`F_SEAL_SHRINK`, a memfd) is
//! therefore mapped; any other file is read, and one truncated meanwhile
//! is a clean "truncated" error.
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

/// Maps `file` when it is a non-empty regular file sealed against
/// shrinking; `None` for anything else (files others may truncate, pipes,
/// sockets, empty files), which are read instead.
pub(crate) fn map_rest(file: &File) -> Result<Option<MappedInput>> {
    let io_err = |source| ArchiveError::Read { offset: 0, source };
    let md = file.metadata().map_err(io_err)?;
    if !md.file_type().is_file() || md.len() == 0 || !cannot_shrink(file) {
        return Ok(None);
    }
    let mut f = file;
    let start = f.stream_position().map_err(io_err)?;
    if start >= md.len() || usize::try_from(md.len()).is_err() {
        return Ok(None);
    }
    // SAFETY: the mapping is shared (`MAP_SHARED`, the page cache itself)
    // and read-only, and only this apply reads it; the file is sealed
    // against shrinking, so no page of it can vanish (no SIGBUS). A write
    // by someone else only changes the bytes read, which the digest checks.
    let map = unsafe { Mmap::map(file) }.map_err(io_err)?;
    // Read front to back once: let the kernel read ahead and drop behind.
    let _ = map.advise(Advice::Sequential);
    Ok(Some(MappedInput {
        map,
        start: start as usize,
    }))
}

/// True when no one can truncate `file` (`F_SEAL_SHRINK` is set).
pub(crate) fn cannot_shrink(file: &File) -> bool {
    rustix::fs::fcntl_get_seals(file)
        .is_ok_and(|seals| seals.contains(rustix::fs::SealFlags::SHRINK))
}
