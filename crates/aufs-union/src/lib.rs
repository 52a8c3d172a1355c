#![doc = include_str!("../README.md")]
mod beneath;
mod branch;
mod copy_up;
mod entry;
mod error;
mod meta;
mod path;
mod plink;
mod ro_index;
mod view;
mod walk;
mod write;
mod xino;

pub use beneath::{list as list_dir, Listed};
pub use branch::Branch;
pub use entry::{read_sized, DirEntry, Entry, EntryKind};
pub use error::{Result, UnionError};
pub use meta::Meta;
pub use view::{UnionView, MAX_NAME_LEN};
pub use walk::{Walk, WalkEntry};
pub use write::{NewNode, Owner};
pub use xino::ROOT_INO;
