//! What the parser reports of the stream while it reads it.
//!
//! The tar-split metadata must account for every byte of the tar, but the
//! parser should not know how (or whether) those bytes are stored: it
//! reports them through this trait, and the tar-split writer
//! ([`crate::tarsplit`]) and its deferred form on the recording thread
//! ([`crate::recording`]) implement it.

use std::io;

/// Receives the structure of a tar stream while it is parsed (on the
/// applying thread, or replayed on the recording one: hence `Send`).
///
/// Every byte of the stream is reported exactly once, in stream order: by
/// [`raw`](Self::raw) when it is not entry content, by
/// [`content`](Self::content) when it is.
pub(crate) trait TarEvents: Send {
    /// Bytes of the stream that are not file content: header blocks,
    /// extension headers, padding, end blocks and trailing bytes, verbatim.
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The current entry's content (`window` bytes of the stream) is the
    /// file at `path` in the diff dir, `real_size` bytes long; an empty
    /// `path` for content that lands nowhere.
    fn file_begin(&mut self, path: &[u8], window: u64, real_size: u64) -> io::Result<()>;
    /// The next `len` content bytes are bytes `offset..offset + len` of the file.
    fn range(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Content of the open file, in stream order; `inline` when the bytes are
    /// not reproducible from the diff dir and must be stored verbatim.
    fn content(&mut self, bytes: &[u8], inline: bool) -> io::Result<()>;
    /// Ends the open file (its checksum covers every content byte).
    fn file_end(&mut self) -> io::Result<()>;
    /// The content of file record `id` now lives in the shadow dir (its path was reused).
    fn shadow(&mut self, id: u64) -> io::Result<()>;
    /// Ends the stream; `total` is the number of tar bytes seen.
    fn finish(self: Box<Self>, total: u64) -> io::Result<()>;
}
