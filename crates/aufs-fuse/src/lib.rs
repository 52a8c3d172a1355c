//! A userspace union filesystem with aufs semantics (whiteouts, opaque dirs,
//! copy-up), over FUSE.
//!
//! - [`UnionFs`]: the [`fuser::Filesystem`] over an [`aufs_union::UnionView`].
//! - [`server`]: the process that mounts one union and serves it, detached
//!   from whoever started it.
//! - [`FuseBackend`]: the driver's [`aufs_ports::UnionBackend`], starting one
//!   server per mount through a [`Launcher`].

mod backend;
mod error;
mod fs;
mod io_mode;
mod killpriv;
mod nodes;
pub mod server;
mod stats;

pub use backend::{FuseBackend, Launcher};
pub use error::FuseError;
pub use fs::UnionFs;
pub use stats::STATS_ENV;
