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
//!
//! # Example
//!
//! The driver on the in-memory fakes of `aufs-ports` (no root, nothing on
//! disk): a layer, a container layer on it, its union mounted and its
//! changes.
//!
//! ```
//! use aufs_driver::{ChangeKind, CreateOpts, Driver, DriverConfig, Ports};
//! use aufs_model::LayerId;
//! use aufs_ports::fakes::{FakeHost, FakeUnionBackend, MemArchive, MemFs};
//! use aufs_ports::{BackendKind, Filesystem, InProcessLocks};
//! use std::sync::Arc;
//!
//! let fs = Arc::new(MemFs::new());
//! let backend = Arc::new(FakeUnionBackend::new(BackendKind::Fuse));
//! let ports = Ports {
//!     archive: Arc::new(MemArchive::new(fs.clone())),
//!     fs: fs.clone(),
//!     host: Arc::new(FakeHost::default()),
//!     backend,
//!     locks: Arc::new(InProcessLocks::new()),
//! };
//! let driver = Driver::init(DriverConfig::new("/srv/aufs"), ports).unwrap();
//! let (base, top) = (LayerId::new("base").unwrap(), LayerId::new("top").unwrap());
//! driver.create(&base, None, &CreateOpts::default()).unwrap();
//! driver.create_read_write(&top, Some(&base), &CreateOpts::default()).unwrap();
//! // The layers file of `top` names its parent, as Docker's does.
//! assert_eq!(driver.parent_chain(&top).unwrap().parent(), Some(&base));
//! let mnt = driver.get(&top, "").unwrap();
//! assert_eq!(mnt.as_str(), "/srv/aufs/mnt/top");
//! // A file the container writes lands in the layer's diff dir.
//! fs.write_new("/srv/aufs/diff/top/hello".into(), b"hi").unwrap();
//! let changes = driver.changes(&top, Some(&base)).unwrap();
//! assert_eq!(changes[0].path, "/hello");
//! assert_eq!(changes[0].kind, ChangeKind::Add);
//! driver.put(&top).unwrap();
//! ```

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
pub use error::{with_causes, DriverError};
pub use layer_archive::ApplyOutcome;
pub use layout::Layout;
pub use refcount::RefStore;

/// The tracing target field value every log of the driver carries.
pub const LOG_FIELD: &str = "aufs";
