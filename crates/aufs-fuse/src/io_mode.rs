//! How the kernel does the I/O of each open union inode.
//!
//! The kernel puts an inode either in passthrough mode (reads, writes and
//! mmap go straight to one backing file, never through this server) or in
//! cached mode (through this server, page cache in the kernel); all open
//! files of an inode must agree, and all passthrough opens must share one
//! backing file, or `open` fails with `EIO`. This table keeps that promise:
//! the first open of an inode picks the mode and later opens join it.
//!
//! Files of the rw branch are passed through with a backing file open for
//! reading and writing, so every later open can share it. Files of
//! read-only branches are passed through read-only. Such a file may be
//! copied up while open, and the kernel cannot move a live passthrough inode
//! to the copy: an open that finds the inode bound to another real file than
//! its path shows now is told so ([`Join::Stale`]); the filesystem then gives
//! the copy a number of its own and has the kernel look the name up again,
//! so old descriptors keep reading the lower file (as with overlayfs) and
//! new opens get the copy.

use fuser::BackingId;
use std::collections::HashMap;
use std::sync::Arc;

/// The real file behind a union inode: (device, inode) in its branch.
pub(crate) type RealId = (u64, u64);

/// The mode of one open file handle.
#[derive(Debug, Clone)]
pub(crate) enum HandleMode {
    /// Passthrough to the inode's backing file.
    Passthrough(Arc<BackingId>),
    /// Served by us, kernel page cache.
    Cached,
}

#[derive(Debug)]
enum InodeMode {
    Passthrough {
        backing: Arc<BackingId>,
        real: RealId,
        opens: usize,
    },
    Cached {
        opens: usize,
    },
}

/// What an open should do, as decided by [`IoModes::join`].
#[derive(Debug)]
pub(crate) enum Join {
    /// Reuse this backing file.
    Passthrough(Arc<BackingId>),
    /// The inode is in cached mode: open cached.
    Cached,
    /// Nothing open yet: the caller picks, then calls [`IoModes::start`].
    First,
    /// The inode is passed through to another real file (its lower
    /// original, before a copy-up): this open cannot join it.
    Stale,
}

/// Per-inode I/O modes of the open files.
#[derive(Debug, Default)]
pub(crate) struct IoModes {
    inodes: HashMap<u64, InodeMode>,
}

impl IoModes {
    /// Joins the mode of inode `ino` for an open of real file `real`.
    pub(crate) fn join(&mut self, ino: u64, real: RealId) -> Join {
        match self.inodes.get_mut(&ino) {
            None => Join::First,
            Some(InodeMode::Cached { opens }) => {
                *opens += 1;
                Join::Cached
            }
            Some(InodeMode::Passthrough {
                backing,
                real: r,
                opens,
            }) => {
                if *r != real {
                    // The kernel allows no other backing next to this one.
                    return Join::Stale;
                }
                *opens += 1;
                Join::Passthrough(backing.clone())
            }
        }
    }

    /// The real file `ino` is passed through to, if it is.
    pub(crate) fn passthrough_real(&self, ino: u64) -> Option<RealId> {
        match self.inodes.get(&ino) {
            Some(InodeMode::Passthrough { real, .. }) => Some(*real),
            _ => None,
        }
    }

    /// Records the first open of `ino`: passthrough with `backing` (on
    /// `real`), or cached when `backing` is `None`.
    pub(crate) fn start(
        &mut self,
        ino: u64,
        real: RealId,
        backing: Option<Arc<BackingId>>,
    ) -> HandleMode {
        match backing {
            Some(backing) => {
                self.inodes.insert(
                    ino,
                    InodeMode::Passthrough {
                        backing: backing.clone(),
                        real,
                        opens: 1,
                    },
                );
                HandleMode::Passthrough(backing)
            }
            None => {
                self.inodes.insert(ino, InodeMode::Cached { opens: 1 });
                HandleMode::Cached
            }
        }
    }

    /// A handle of `ino` in `mode` was released.
    pub(crate) fn release(&mut self, ino: u64) {
        let done = match self.inodes.get_mut(&ino) {
            Some(InodeMode::Passthrough { opens, .. } | InodeMode::Cached { opens }) => {
                *opens = opens.saturating_sub(1);
                *opens == 0
            }
            None => false,
        };
        if done {
            // Drops the backing id: the kernel's files are closed by now.
            self.inodes.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_inodes_stay_cached_until_the_last_release() {
        let mut m = IoModes::default();
        assert!(matches!(m.join(5, (1, 2)), Join::First));
        let h = m.start(5, (1, 2), None);
        assert!(matches!(h, HandleMode::Cached));
        assert!(matches!(m.join(5, (1, 2)), Join::Cached));
        m.release(5);
        assert!(matches!(m.join(5, (1, 2)), Join::Cached));
        m.release(5);
        m.release(5);
        assert!(matches!(m.join(5, (1, 2)), Join::First));
    }
}
