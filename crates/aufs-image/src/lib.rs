//! Container images into and out of an aufs layer store. In: `docker save` tarballs and
//! OCI image layouts (a directory or a tar of one) become one layer per
//! image layer, named by the layer's chain id (hex), as Docker's layer
//! store names them.
//!
//! Every digest is checked: the config's against its name, an OCI
//! manifest's and each blob's against their descriptors, and each layer's
//! uncompressed tar against the config's `rootfs.diff_ids` (the DiffID the
//! apply computes anyway). A layer that fails is removed again; layers
//! already present are skipped without being read.
//!
//! Out: a layer and its parents as a `docker save` tarball or an OCI
//! layout, each layer's tar the driver's diff against its parent (the
//! original bytes of an imported layer, so the chain ids come out the same).

mod adopt;
mod chain;
mod error;
mod export;
mod import;
mod legacy;
mod source;
mod tar_split_json;

pub use adopt::{adopt, Adopted};
pub use chain::{chain_ids, Digest};
pub use error::{ImageError, Result};
pub use export::{export, ExportFormat, ExportReport};
pub use import::{import, ImportReport, Progress};
pub use legacy::{DockerRoot, LegacyContainer, LegacyImage};
