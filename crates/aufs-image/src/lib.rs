//! Container images into an aufs layer store: `docker save` tarballs and
//! OCI image layouts (a directory or a tar of one) become one layer per
//! image layer, named by the layer's chain id (hex), as Docker's layer
//! store names them.
//!
//! Every digest is checked: the config's against its name, an OCI
//! manifest's and each blob's against their descriptors, and each layer's
//! uncompressed tar against the config's `rootfs.diff_ids` (the DiffID the
//! apply computes anyway). A layer that fails is removed again; layers
//! already present are skipped without being read.

mod chain;
mod error;
mod import;
mod source;

pub use chain::{chain_ids, Digest};
pub use error::{ImageError, Result};
pub use import::{import, ImportReport, Progress};
