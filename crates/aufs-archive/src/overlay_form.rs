//! A layer mounted right now as the upper dir of kernel overlayfs (the
//! stacked mount of `aufs-fuse`) is in overlay form until its unmount: a
//! whiteout is a character device 0/0 named like what it hides, an opaque
//! directory carries `trusted.overlay.opaque=y`. Changes, exports and sizes
//! of such a layer (a running container's) read both forms as the aufs
//! markers the layer will hold again. A character device 0/0 is no device
//! at all, so reading one as a whiteout in aufs form loses nothing.

use std::os::fd::BorrowedFd;

use rustix::fs::{FileType, Stat};

use crate::fsops::proc_path;

/// The xattr of an opaque directory in overlay form.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether `st` is an overlayfs whiteout.
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether directory `name` of `dir` is opaque in overlay form.
pub(crate) fn is_opaque(dir: BorrowedFd<'_>, name: &[u8]) -> bool {
    let mut v = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(proc_path(dir, name), OPAQUE_XATTR, &mut v[..]),
        Ok(1) if v[0] == b'y'
    )
}
