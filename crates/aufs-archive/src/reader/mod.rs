//! A streaming tar parser that keeps every byte accounted for.
//!
//! The `tar` crate decodes single header blocks ([`tar::Header`]); the framing
//! (extension headers, content windows, padding, end blocks) is done here so
//! that (a) malformed input fails with the entry's name, (b) every byte that is
//! not file content can be recorded verbatim for exact reproduction, and (c)
//! all of GNU tar's sparse formats can be decoded.
//!
//! [`framing`] walks the blocks of the stream and hands out entries and their
//! content; [`header`] reads a header block's fields and checks its checksum;
//! [`pax`] reads PAX extended records. Whoever keeps a record of the stream's
//! bytes (the tar-split metadata) receives them through [`TarEvents`], so the
//! parser names no storage format.

mod events;
mod framing;
mod header;
mod pax;

pub(crate) use events::TarEvents;
pub(crate) use framing::{Finished, TarReader};

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
