//! The aufs union view over real branch directories.
//!
//! [`UnionView`] merges one optional read-write branch over read-only
//! branches (nearest first) with aufs's on-disk rules: `.wh.NAME` whiteouts,
//! `.wh..wh..opq` opaque directories, `.wh..wh.*` metadata never visible.
//! It reads ([`UnionView::lookup`], [`UnionView::read_dir`],
//! [`UnionView::walk`]) and, with a rw branch, writes as aufs does: copy-up
//! into the rw branch, whiteouts on delete and rename. It has no FUSE types:
//! the FUSE filesystem and in-process readers (diffs of two unions) share it.

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

pub use branch::Branch;
pub use entry::{DirEntry, Entry, EntryKind};
pub use error::{Result, UnionError};
pub use meta::Meta;
pub use view::{UnionView, MAX_NAME_LEN};
pub use walk::{Walk, WalkEntry};
pub use write::{NewNode, Owner};
pub use xino::ROOT_INO;
