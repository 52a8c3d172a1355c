//! The aufs storage driver, as moby's `daemon/graphdriver/aufs`, over ports.
//!
//! [`Driver`] keeps Docker's on-disk layout (`layers/`, `diff/`, `mnt/`) and
//! its behaviour: creation, atomic removal, reference-counted mounts, stale
//! dir cleanup. Every effect goes through the traits of `aufs-ports`, so the
//! whole driver is tested against in-memory fakes; the CLI wires in the real
//! Linux, FUSE and archive adapters. Layer content (`apply_diff`, `diff`,
//! `changes`, `diff_size`) goes through the
//! [`aufs_ports::LayerArchive`] port.
//!
//! - [`kernel`]: the kernel aufs [`UnionBackend`](aufs_ports::UnionBackend)
//!   (branch strings, `append:` remounts, dirperm1 probe, unmount retries).
//! - [`support`]: the Go driver's refusals (no aufs, nested user namespace,
//!   incompatible backing filesystem).
//! - [`refcount`]: mount reference counts, in memory or under the root.
//!
//! Every start recovers from what killed processes left half done
//! ([`Driver::recover`]; the states are in `docs/architecture.md`).

mod chain_id;
mod driver;
mod error;
pub mod kernel;
mod layer_archive;
mod layout;
mod recovery;
pub mod refcount;
pub mod support;

#[cfg(feature = "async")]
pub mod async_facade;

pub use aufs_model::{Change, ChangeKind};
pub use aufs_ports::{Applied, ApplyTarget, LayerArchive};
pub use driver::{CreateOpts, Driver, DriverConfig, LayerInfo, Ports, Status};
pub use error::DriverError;
pub use layer_archive::ApplyOutcome;
pub use layout::Layout;
pub use refcount::RefStore;

/// The tracing target field value every log of the driver carries.
pub const LOG_FIELD: &str = "aufs";
