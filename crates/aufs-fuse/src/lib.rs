//! A userspace union filesystem with aufs semantics (whiteouts, opaque dirs,
//! copy-up), over FUSE.
//!
//! - [`UnionFs`]: the [`fuser::Filesystem`] over an [`aufs_union::UnionView`].
//! - [`server`]: the process that mounts one union and serves it, detached
//!   from whoever started it.
//! - [`FuseBackend`]: the driver's [`aufs_ports::UnionBackend`], starting one
//!   server per mount through a [`Launcher`].
//! - [`StackedBackend`]: kernel overlayfs over a read-only FUSE view of a
//!   layer's parents, so writes run at kernel speed; the diff dir stays in
//!   aufs form at rest.
//!
//! # Example
//!
//! Mounting needs root and `/dev/fuse`, so this is compiled, not run:
//!
//! ```no_run
//! use aufs_fuse::{FuseBackend, Launcher, StackMode, StackedBackend};
//! use aufs_ports::{UnionBackend, UnionSpec};
//!
//! // One detached server per mount, started as `aufs-union-server`.
//! let fuse = FuseBackend::new(
//!     Launcher::new("/usr/libexec/aufs-union-server", Vec::new()),
//!     "/var/lib/aufs/fuse",
//! );
//! let backend = StackedBackend::new(fuse, "/var/lib/aufs", StackMode::Auto);
//! let spec = UnionSpec {
//!     rw: "/var/lib/aufs/diff/top".into(),
//!     ro: vec!["/var/lib/aufs/diff/base".into()],
//!     target: "/var/lib/aufs/mnt/top".into(),
//!     mount_label: String::new(),
//! };
//! backend.mount(&spec)?;
//! // ... the container runs in /var/lib/aufs/mnt/top ...
//! backend.unmount(&spec.target)?; // diff/top is in aufs form again
//! # Ok::<(), std::io::Error>(())
//! ```

mod backend;
mod error;
mod fs;
mod io_mode;
mod killpriv;
mod nodes;
mod overlay_form;
pub mod server;
mod stacked;
mod stats;

pub use backend::{FuseBackend, Launcher};
pub use error::FuseError;
pub use fs::UnionFs;
pub use stacked::{StackMode, StackedBackend};
pub use stats::STATS_ENV;
