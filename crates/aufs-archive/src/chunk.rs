//! The pieces the layer stream travels in between the threads of an apply.
//!
//! The reading thread fills them ([`crate::pipe`]), the applying thread
//! parses them, and with tar-split metadata to record, the recording thread
//! ([`crate::recording`]) takes each consumed one before it goes back to be
//! refilled. Both of those modules use the type, so it lives in neither.

use std::sync::mpsc::SyncSender;

/// Bytes handed over at a time.
pub(crate) const BLOCK_SIZE: usize = 1 << 20;

/// A stretch of the layer stream: read into a reusable buffer, or borrowed
/// from the mapping of an uncompressed input file (no copy at all).
#[derive(Debug)]
pub(crate) enum Chunk<'m> {
    Owned(Vec<u8>),
    Mapped(&'m [u8]),
}

impl std::ops::Deref for Chunk<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Mapped(s) => s,
        }
    }
}

impl Chunk<'_> {
    /// Hands a read buffer back to the reader to be filled again.
    pub(crate) fn recycle(self, back: &SyncSender<Vec<u8>>) {
        if let Chunk::Owned(v) = self {
            // The reader may have finished: a spare block is then not needed.
            let _ = back.try_send(v);
        }
    }
}
