//! Whiteout-aware layer tarballs for Docker's aufs layout: safe apply, diff
//! export, changes, diff size, and exact original bytes.
//!
//! The crate works on plain directories (a layer's diff dir and its parents'),
//! so it can be embedded without the driver:
//! - [`apply_layer`]: a tarball (plain, gzip, zstd) into a diff dir, every path
//!   resolved by the kernel inside the layer (`openat2(RESOLVE_IN_ROOT)`), built
//!   in a staging dir and swapped in atomically.
//! - [`export_diff`]: a diff dir as a tarball with aufs whiteouts.
//! - [`changes`]: what a layer changed against its parents (`docker diff`).
//! - [`diff_size`]: Docker's `directory.Size`.
//! - [`reproduce`]/[`TarSplitStore`]: the original tar, byte for byte.
//! - [`changes_between_views`], [`changes_size_view`], [`export_changes_view`]:
//!   diffs between two in-process union views ([`aufs_union::UnionView`]) of layer
//!   stacks, for an ancestor that is not the direct parent; nothing is mounted.
//!
//! [`DiskArchive`] is all of this as the driver's `aufs_ports::LayerArchive`.
//!
//! All syscalls go through rustix's safe wrappers; the one `unsafe` is the
//! mapping of an input file in [`apply_layer_file`].
//!
//! # Example
//!
//! A layer tarball with a file and an aufs whiteout, applied into a layer's
//! diff dir and read back as `docker diff` shows it:
//!
//! ```
//! use aufs_archive::{apply_layer, changes, ApplyOptions, ChangeKind};
//! use camino::Utf8Path;
//!
//! let mut tar = tar::Builder::new(Vec::new());
//! for (name, body) in [("etc/motd", &b"hi\n"[..]), ("etc/.wh.issue", &b""[..])] {
//!     let mut h = tar::Header::new_gnu();
//!     h.set_size(body.len() as u64);
//!     h.set_mode(0o644);
//!     tar.append_data(&mut h, name, body).unwrap();
//! }
//! let tarball = tar.into_inner().unwrap();
//!
//! let dir = tempfile::tempdir().unwrap();
//! let root = Utf8Path::from_path(dir.path()).unwrap();
//! let (lower, diff) = (root.join("lower"), root.join("diff"));
//! std::fs::create_dir_all(lower.join("etc")).unwrap();
//! std::fs::write(lower.join("etc/issue"), "Debian\n").unwrap();
//! std::fs::create_dir(&diff).unwrap();
//! // Without root the tar's owners cannot be set; nothing else differs.
//! let opts = ApplyOptions { chown: false, sync: false, ..ApplyOptions::default() };
//! let report = apply_layer(&tarball[..], &diff, &opts).unwrap();
//! assert!(report.diff_id.unwrap().starts_with("sha256:"));
//! let seen: Vec<_> = changes(&[&lower], &diff)
//!     .unwrap()
//!     .into_iter()
//!     .map(|c| (c.path, c.kind))
//!     .collect();
//! assert!(seen.contains(&("/etc/issue".to_string(), ChangeKind::Delete)));
//! assert!(seen.contains(&("/etc/motd".to_string(), ChangeKind::Add)));
//! ```

mod apply;
pub mod bench;
mod born;
mod changes;
mod chunk;
mod compress;
mod crc64;
mod error;
mod export;
mod fsops;
mod mapped;
mod numeric;
mod overlay_form;
mod pipe;
mod port;
mod reader;
mod recording;
mod seal;
mod size;
mod sparse;
mod tarsplit;
mod views;
mod walk;

pub use apply::{apply_layer, apply_layer_file, ApplyOptions, ApplyReport};
pub use aufs_model::{IdMap, IdMappings};
pub use changes::{changes, Change, ChangeKind};
pub use compress::{decompress, detect as detect_compression, Compression};
pub use error::{ArchiveError, Result};
pub use export::export_diff;
pub use port::{to_io, DiskArchive};
pub use size::diff_size;
pub use tarsplit::{reproduce, verify, TarSplitStore};
pub use views::{changes_between_views, changes_size_view, export_changes_view};
