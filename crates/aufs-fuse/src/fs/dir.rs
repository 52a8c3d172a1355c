//! Directories: listings and their `fsync`.
//!
//! OPENDIR takes the merged listing of the union directory (whiteouts and
//! metadata names left out, lower duplicates hidden) once, and READDIR and
//! READDIRPLUS page through that snapshot by offset, so a listing stays
//! consistent however the directory changes while it is read. READDIRPLUS
//! also looks each name up, which spares the kernel a LOOKUP per entry.

use super::convert::{entry_attr, errno, file_type, io_errno};
use super::{lock, UnionFs, TTL};
use fuser::{Errno, FileHandle, FileType, Generation, INodeNo, ReplyDirectory, ReplyDirectoryPlus};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl UnionFs {
    /// OPENDIR: a handle on the merged listing of node `ino`, taken now.
    pub(super) fn open_dir(&self, ino: INodeNo) -> Result<FileHandle, Errno> {
        self.path(ino).and_then(|p| {
            let list = self.view.read_dir(&p).map_err(|e| errno(&e))?;
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            lock(&self.dirs).insert(fh, Arc::new(list));
            Ok(FileHandle(fh))
        })
    }

    /// READDIR: the entries of listing `fh` (of node `ino`) from `offset`
    /// on, as many as `reply` holds.
    pub(super) fn fill_dir(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Errno> {
        let Some(list) = lock(&self.dirs).get(&fh.0).cloned() else {
            return Err(Errno::EBADF);
        };
        let parent = lock(&self.nodes).parent(ino.0);
        // Offsets: 1 = ".", 2 = "..", 3.. = the snapshot taken at opendir.
        let mut i = offset;
        loop {
            let full = match i {
                0 => reply.add(ino, 1, FileType::Directory, "."),
                1 => reply.add(INodeNo(parent), 2, FileType::Directory, ".."),
                n => match list.get((n - 2) as usize) {
                    Some(e) => reply.add(INodeNo(e.ino), n + 1, file_type(e.kind), &e.name),
                    None => break,
                },
            };
            if full {
                break;
            }
            i += 1;
        }
        Ok(())
    }

    /// RELEASEDIR: drops listing `fh`.
    pub(super) fn close_dir(&self, fh: FileHandle) {
        lock(&self.dirs).remove(&fh.0);
    }

    /// READDIRPLUS: [`Self::fill_dir`] with each entry looked up, its
    /// attributes sent along and its name remembered for its node.
    pub(super) fn fill_dir_plus(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Result<(), Errno> {
        let Some(list) = lock(&self.dirs).get(&fh.0).cloned() else {
            return Err(Errno::EBADF);
        };
        let dir = self.path(ino)?;
        let parent = lock(&self.nodes).parent(ino.0);
        // The kernel takes no reference on "." and "..", and ignores their
        // attributes.
        let (dot, _) = self.node_attr(ino)?;
        let mut i = offset;
        loop {
            let full = match i {
                0 => reply.add(ino, 1, ".", &TTL, &dot, Generation(0)),
                1 => reply.add(INodeNo(parent), 2, "..", &TTL, &dot, Generation(0)),
                n => {
                    let Some(de) = list.get((n - 2) as usize) else {
                        break;
                    };
                    match self.view.lookup_child(&dir, &de.name) {
                        Ok(Some(e)) => {
                            let full = reply.add(
                                INodeNo(e.ino),
                                n + 1,
                                &de.name,
                                &self.ttl(&e),
                                &entry_attr(&e),
                                Generation(0),
                            );
                            if !full {
                                // Each entry sent is a lookup for the kernel.
                                lock(&self.nodes).remember(ino.0, &de.name, e.ino);
                            }
                            full
                        }
                        // Gone since opendir.
                        Ok(None) => false,
                        Err(e) => {
                            tracing::debug!(storage_driver = "aufs", error = %e, "readdirplus entry skipped");
                            false
                        }
                    }
                }
            };
            if full {
                break;
            }
            i += 1;
        }
        Ok(())
    }

    /// FSYNCDIR: syncs the rw-branch directory of node `ino`.
    pub(super) fn sync_dir(&self, ino: INodeNo) -> Result<(), Errno> {
        // Only the rw branch ever changes.
        self.real_of(ino).and_then(|e| {
            if !self.view.branches()[e.branch_index].writable {
                return Ok(());
            }
            e.open(libc::O_RDONLY | libc::O_DIRECTORY)
                .and_then(|d| d.sync_all())
                .map_err(io_errno)
        })
    }
}
