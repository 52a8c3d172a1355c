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
