//! Pure logic of Docker's aufs storage layout, with no I/O.
//!
//! Everything here is a function of its inputs so it can be tested exhaustively
//! (unit tests and proptests) and reused by every adapter:
//! - [`id`]: validated layer ids ([`LayerId`]).
//! - [`layers_file`]: the `layers/<id>` file format (parent chain, nearest first).
//! - [`branch`]: the kernel aufs mount data (`br:` strings clipped to one page,
//!   `append:` remounts for the rest).
//! - [`whiteout`]: aufs whiteout and metadata names.
//! - [`fs_magic`]: filesystem magics and Docker's names for them.
//! - [`idmap`]: user-namespace id maps.

pub mod branch;
pub mod change;
pub mod fs_magic;
pub mod id;
pub mod idmap;
pub mod layers_file;
pub mod union_model;
pub mod whiteout;

pub use branch::{MountPlan, MountPlanError, MountPlanOptions};
pub use change::{Change, ChangeKind};
pub use id::{IdError, LayerId, REMOVING_SUFFIX};
pub use idmap::{IdMap, IdMappings, UnmappedId};
pub use layers_file::{LayersFileError, ParentChain};
