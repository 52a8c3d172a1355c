//! Names: lookups and every request that makes, removes or moves one
//! (mknod, mkdir, symlink, create, tmpfile, link, unlink, rmdir, rename),
//! plus forget and readlink.
//!
//! The union view does the aufs work (whiteouts, opaque directories,
//! copy-up); here each change is also recorded in the node table, which
//! tells later requests under which union names a node id is known (see
//! [`crate::nodes`]). Names starting with `.wh.` are refused up front, as
//! aufs does.

use super::convert::{errno, io_errno, owner};
use super::open::{open_real, Opened};
use super::{lock, UnionFs};
use aufs_model::whiteout::is_reserved;
use aufs_union::{Entry, NewNode, UnionError, UnionView};
use fuser::{BackingId, Errno, INodeNo, RenameFlags, Request};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

impl UnionFs {
    /// LOOKUP of `name` in `parent`, remembered for the node found.
    pub(super) fn lookup_name(&self, parent: INodeNo, name: &OsStr) -> Result<Entry, Errno> {
        if is_reserved(name.as_bytes()) {
            // aufs's answer for any `.wh.` name (`au_test_shwh`): such names
            // are neither shown nor made, so `open(O_CREAT)` fails alike.
            return Err(Errno::EPERM);
        }
        self.path(parent).and_then(|dir| {
            let e = match self.view.lookup_child(&dir, name) {
                Ok(Some(e)) => e,
                Ok(None) => return Err(Errno::ENOENT),
                Err(e) => return Err(errno(&e)),
            };
            lock(&self.nodes).remember(parent.0, name, e.ino);
            Ok(e)
        })
    }

    /// FORGET: the kernel dropped `nlookup` lookups of node `ino`.
    pub(super) fn forget_node(&self, ino: INodeNo, nlookup: u64) {
        lock(&self.nodes).forget(ino.0, nlookup);
    }

    /// READLINK: the target of symlink node `ino`.
    pub(super) fn read_link(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.real_of(ino)
            .and_then(|e| e.read_link().map_err(io_errno))
    }

    pub(super) fn new_entry(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        node: NewNode<'_>,
    ) -> Result<Entry, Errno> {
        if is_reserved(name.as_bytes()) {
            return Err(Errno::EPERM);
        }
        let path = self.child(parent, name)?;
        let e = self
            .view
            .create(&path, node, Some(owner(req)))
            .map_err(|e| errno(&e))?;
        lock(&self.nodes).remember(parent.0, name, e.ino);
        Ok(e)
    }

    /// MKNOD: a regular file, a directory or a special file, by `mode`.
    pub(super) fn make_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<Entry, Errno> {
        let node = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => NewNode::File { mode },
            libc::S_IFDIR => NewNode::Dir { mode },
            _ => NewNode::Special {
                mode,
                rdev: rdev.into(),
            },
        };
        self.new_entry(req, parent, name, node)
    }

    /// Removes `name` from `parent` with `remove` (unlink or rmdir, which
    /// leave the whiteouts aufs would) and forgets the name's node link.
    pub(super) fn remove_name(
        &self,
        parent: INodeNo,
        name: &OsStr,
        remove: fn(&UnionView, &Path) -> Result<(), UnionError>,
    ) -> Result<(), Errno> {
        let p = self.child(parent, name)?;
        let ino = self.lookup_path(&p)?.ino;
        remove(&self.view, &p).map_err(|e| errno(&e))?;
        lock(&self.nodes).unlink(parent.0, name, ino);
        Ok(())
    }

    /// RENAME of `name` in `parent` to `newname` in `newparent`.
    pub(super) fn rename_entry(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        if is_reserved(newname.as_bytes()) {
            return Err(Errno::EPERM);
        }
        let src = self.child(parent, name)?;
        let dst = self.child(newparent, newname)?;
        let src_ino = self.lookup_path(&src)?.ino;
        let dst_ino = self.view.lookup(&dst).ok().flatten().map(|e| e.ino);
        self.view
            .rename(&src, &dst, flags.contains(RenameFlags::RENAME_NOREPLACE))
            .map_err(|e| errno(&e))?;
        let mut nodes = lock(&self.nodes);
        if let Some(d) = dst_ino {
            nodes.unlink(newparent.0, newname, d);
        }
        nodes.rename(src_ino, parent.0, name, newparent.0, newname);
        Ok(())
    }

    /// LINK: a new name `newname` in `newparent` for node `ino`.
    pub(super) fn link_entry(
        &self,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> Result<Entry, Errno> {
        if is_reserved(newname.as_bytes()) {
            return Err(Errno::EPERM);
        }
        let dst = self.child(newparent, newname)?;
        let e = match self.path(ino) {
            Ok(src) => self.view.link(&src, &dst),
            // An `O_TMPFILE` file (or one unlinked while open) gets a
            // name: `linkat` of its descriptor.
            Err(err) => {
                let f = self.any_open_rw_file(ino.0).ok_or(err)?;
                self.view.link_unnamed(&f.file, &dst)
            }
        }
        .map_err(|e| errno(&e))?;
        lock(&self.nodes).remember(newparent.0, newname, e.ino);
        Ok(e)
    }

    /// CREATE: a new regular file `name` in `parent`, opened.
    pub(super) fn create_file(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<(Entry, Opened), Errno> {
        self.new_entry(req, parent, name, NewNode::File { mode })
            .and_then(|e| {
                // Read-write when allowed: the same descriptor then serves
                // as the passthrough backing file, no second open needed.
                let rw = (flags & !libc::O_ACCMODE) | libc::O_RDWR;
                let file = open_real(&e, rw)
                    .or_else(|_| open_real(&e, flags))
                    .map_err(io_errno)?;
                self.open_new(e, file, open_backing)
            })
    }

    /// TMPFILE: a new unnamed file in directory `parent`, opened.
    pub(super) fn create_tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        flags: i32,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> Result<(Entry, Opened), Errno> {
        self.path(parent).and_then(|dir| {
            let (file, e) = self
                .view
                .create_unnamed(&dir, mode, flags, Some(owner(req)))
                .map_err(|e| errno(&e))?;
            self.open_new(e, file, open_backing)
        })
    }
}
