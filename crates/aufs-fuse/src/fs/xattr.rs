//! Extended attributes: read from the node's branch file, changed on its
//! copy in the rw branch (a set or a removal copies up first, as any other
//! change does).
//!
//! Every access goes through the node's [`aufs_union::Entry`] (a symlink's
//! own attributes, never its target's), or through an open descriptor of
//! the node's rw-branch file, which answers the kernel's frequent reads of
//! `security.capability` and the ACLs of a file being written without a
//! lookup.
//!
//! Overlayfs's own xattrs (`trusted.overlay.*`, `user.overlay.*`) are
//! neither shown nor set: overlayfs stacked on this union as its lower
//! layer (the stacked mount) would take them as instructions (redirects,
//! metacopy, opaque), and no layer may steer it. Overlayfs refuses them on
//! its own mounts the same way (`EPERM`).

use super::convert::io_errno;
use super::UnionFs;
use fuser::{Errno, INodeNo};
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;

impl UnionFs {
    /// SETXATTR: sets `name` on node `ino`, copied up first.
    pub(super) fn set_xattr(
        &self,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        if is_overlay_xattr(name) {
            return Err(Errno::EPERM);
        }
        self.writable_real(ino).and_then(|e| {
            e.set_xattr(
                name,
                value,
                rustix::fs::XattrFlags::from_bits_retain(flags as u32),
            )
            .map_err(io_errno)
        })
    }

    /// GETXATTR: the value of `name` on node `ino`.
    pub(super) fn get_xattr(&self, ino: INodeNo, name: &OsStr) -> Result<Vec<u8>, Errno> {
        if is_overlay_xattr(name) {
            return Err(Errno::ENODATA);
        }
        // The kernel asks for `security.capability` and the ACLs of a file
        // being written: an open rw descriptor answers without a lookup.
        match self.any_open_rw_file(ino.0) {
            Some(f) => fget_xattr(&f.file, name),
            None => self
                .real_of(ino)
                .and_then(|e| e.xattr(name).map_err(io_errno)),
        }
    }

    /// LISTXATTR: the attribute names of node `ino`, each followed by a NUL.
    pub(super) fn list_xattr(&self, ino: INodeNo) -> Result<Vec<u8>, Errno> {
        let names = self
            .real_of(ino)
            .and_then(|e| e.xattr_names().map_err(io_errno))?;
        let mut shown = Vec::with_capacity(names.len());
        for n in names.split_inclusive(|b| *b == 0) {
            if !is_overlay_xattr(OsStr::from_bytes(n.strip_suffix(b"\0").unwrap_or(n))) {
                shown.extend_from_slice(n);
            }
        }
        Ok(shown)
    }

    /// REMOVEXATTR: removes `name` from node `ino`, copied up first.
    pub(super) fn remove_xattr(&self, ino: INodeNo, name: &OsStr) -> Result<(), Errno> {
        if is_overlay_xattr(name) {
            return Err(Errno::EPERM);
        }
        self.real_of(ino).and_then(|e| {
            // Nothing to copy up for a missing attribute.
            e.xattr(name).map_err(io_errno)?;
            let e = self.writable_real(ino)?;
            e.remove_xattr(name).map_err(io_errno)
        })
    }
}

/// Whether `name` is one of overlayfs's own xattrs.
fn is_overlay_xattr(name: &OsStr) -> bool {
    aufs_model::whiteout::is_overlay_xattr(name.as_bytes())
}

/// [`UnionFs::get_xattr`] through an open descriptor.
fn fget_xattr(file: &File, name: &OsStr) -> Result<Vec<u8>, Errno> {
    aufs_union::read_sized(
        || rustix::fs::fgetxattr_query(file, name),
        |buf| rustix::fs::fgetxattr(file, name, buf),
    )
    .map_err(io_errno)
}
