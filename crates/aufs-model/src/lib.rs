#![doc = include_str!("../README.md")]
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
