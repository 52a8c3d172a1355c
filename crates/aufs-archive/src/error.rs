//! The crate's one error type: every variant names what failed.

use std::io;

use camino::Utf8PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// Everything that can go wrong while applying, exporting or inspecting a layer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An I/O error on a path outside any tar entry (the diff dir, staging, metadata).
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: Utf8PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A tar entry could not be applied; `entry` is its name as stored in the archive.
    #[error("tar entry {entry:?}: {op}: {source}")]
    EntryIo {
        /// The entry's name (lossy UTF-8).
        entry: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A tar entry is malformed or hostile (bad header, path escaping the layer, bad sparse map...).
    #[error("tar entry {entry:?}: {reason}")]
    BadEntry {
        /// The entry's name (lossy UTF-8), or a description of where in the stream it is.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// The input stream uses a compression this crate does not read.
    #[error("unsupported layer compression: {0}")]
    UnsupportedCompression(&'static str),
    /// The input stream failed to read (decompression error, truncated input).
    #[error("reading layer stream at byte {offset}: {source}")]
    Read {
        /// Offset in the uncompressed tar stream.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A uid or gid of an entry has no mapping in the apply options.
    #[error("tar entry {entry:?}: {source}")]
    Unmapped {
        /// The entry's name.
        entry: String,
        /// Which id is not mapped.
        #[source]
        source: aufs_model::UnmappedId,
    },
    /// The diff dir no longer matches what the tar-split metadata recorded.
    #[error("layer changed since it was applied: {path:?}: {reason}")]
    LayerChanged {
        /// Path inside the diff dir (lossy UTF-8).
        path: String,
        /// What differs.
        reason: String,
    },
    /// A union view (the layers of a diff against a non-direct ancestor)
    /// could not be read.
    #[error("union path {path:?}: {source}")]
    Union {
        /// The path inside the union (lossy UTF-8).
        path: String,
        /// The underlying error.
        #[source]
        source: aufs_union::UnionError,
    },
    /// The tar-split metadata file is unreadable or corrupt.
    #[error("tar-split metadata {path}: {reason}")]
    BadMetadata {
        /// The metadata file.
        path: Utf8PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ArchiveError {
    pub(crate) fn io(op: &'static str, path: impl Into<Utf8PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn entry_io(entry: &[u8], op: &'static str, source: impl Into<io::Error>) -> Self {
        Self::EntryIo {
            entry: lossy(entry),
            op,
            source: source.into(),
        }
    }

    pub(crate) fn bad_entry(entry: &[u8], reason: impl Into<String>) -> Self {
        Self::BadEntry {
            entry: lossy(entry),
            reason: reason.into(),
        }
    }

    /// True when reproducing exact bytes failed because the layer changed (or its
    /// metadata is unusable): the caller should fall back to [`crate::export_diff`].
    pub fn is_not_reproducible(&self) -> bool {
        matches!(self, Self::LayerChanged { .. } | Self::BadMetadata { .. })
    }
}

/// Lossy UTF-8 rendering of raw name bytes, for messages.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
