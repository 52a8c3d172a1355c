//! Errors of image import, each naming what failed.

use camino::Utf8PathBuf;

/// What went wrong importing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image could not be read.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The image (or the file in it).
        path: Utf8PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The image is neither a `docker save` tarball nor an OCI layout.
    #[error("{path}: not a docker save tarball or an OCI image layout: {why}")]
    UnknownFormat {
        /// The image.
        path: Utf8PathBuf,
        /// What is missing.
        why: String,
    },
    /// A file the image's metadata refers to is missing or malformed.
    #[error("{path}: {what}: {why}")]
    Malformed {
        /// The image.
        path: Utf8PathBuf,
        /// Which part.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// Content does not match the digest that names it.
    #[error("{path}: {what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The image.
        path: Utf8PathBuf,
        /// Which part (config, manifest, layer N).
        what: String,
        /// The digest the metadata gives.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// Content of a Docker install is not what its digest says. What it
    /// hashes to instead is not told: the digest of bytes that may not be
    /// exported would tell something about them.
    #[error("{path}: {what}: does not match its digest {expected}")]
    Unverified {
        /// The install.
        path: Utf8PathBuf,
        /// Which part (config, layer N).
        what: String,
        /// The digest it should have.
        expected: String,
    },
    /// The layer store refused an operation.
    #[error("layer {id}: {source}")]
    Driver {
        /// The layer.
        id: String,
        /// The cause.
        source: aufs_driver::DriverError,
    },
}

/// Result of image operations.
pub type Result<T> = std::result::Result<T, ImageError>;
