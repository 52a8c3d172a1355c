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
//!
//! # Example
//!
//! Compiled, not run (it needs a store and an image):
//!
//! ```no_run
//! # fn demo(driver: &aufs_driver::Driver) -> aufs_image::Result<()> {
//! use camino::Utf8Path;
//!
//! let mut progress = |i: usize, n: usize, id: &aufs_model::LayerId, skipped: bool| {
//!     eprintln!("{i}/{n} {id}{}", if skipped { " (present)" } else { "" });
//! };
//! let report = aufs_image::import(driver, Utf8Path::new("debian.tar"), &mut progress)?;
//! aufs_image::export(
//!     driver,
//!     &report.top,
//!     Utf8Path::new("debian-oci"),
//!     aufs_image::ExportFormat::OciLayout,
//! )?;
//! # Ok(())
//! # }
//! ```

mod adopt;
mod beneath;
mod chain;
mod error;
mod export;
mod import;
mod legacy;
mod readers;
mod source;
mod tar_split_json;

pub use adopt::{adopt, Adopted};
pub use chain::{chain_ids, Digest};
pub use error::{ImageError, Result};
pub use export::{export, ExportFormat, ExportReport};
pub use import::{import, ImportReport, Progress};
pub use legacy::{DockerRoot, LegacyContainer, LegacyImage};

/// Entry points for the fuzz targets under `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::os::fd::OwnedFd;

    /// Runs one metadata parser on `data`: 0 `manifest.json` of `docker
    /// save`, 1 an OCI `index.json`, 2 an OCI image manifest, anything else
    /// an image config. Returns whether it was accepted.
    pub fn image_reader(kind: u8, data: &[u8]) -> bool {
        match kind {
            0 => crate::readers::docker_manifest(data).is_ok(),
            1 => crate::readers::oci_index(data).is_ok(),
            2 => crate::readers::oci_manifest(data).is_ok(),
            _ => crate::chain::config_diff_ids(data).is_ok(),
        }
    }

    /// Replays upstream tar-split JSON lines (not gzip'd) against the
    /// layer in `diff_dir` into `out`, with lines of at most `line` bytes
    /// and `total` bytes in all.
    pub fn tar_split_replay(
        lines: &[u8],
        diff_dir: &OwnedFd,
        out: &mut Vec<u8>,
        line: usize,
        total: u64,
    ) -> std::io::Result<u64> {
        let limits = crate::tar_split_json::Limits { line, total };
        crate::tar_split_json::replay(lines, diff_dir, out, limits)
    }
}
