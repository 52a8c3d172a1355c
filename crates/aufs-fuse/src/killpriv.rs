//! Clearing set-id bits, which the server owns under
//! `FUSE_HANDLE_KILLPRIV_V2`.
//!
//! With that capability the kernel marks the FUSE superblock `SB_NOSEC`: an
//! inode once found free of set-id bits and `security.capability` is not
//! probed again before each write (a `getxattr` round trip per write
//! otherwise), and a `chown` needs no `getattr` first. In exchange the
//! server clears `S_ISUID`/`S_ISGID` where the kernel would:
//!
//! - `chown` of a non-directory: the server's own `fchown`/`lchown` on the
//!   branch file clears them (Linux does so for any caller);
//! - a truncate (`setattr` of the size) by a caller without `CAP_FSETID`:
//!   the kernel says so with `FATTR_KILL_SUIDGID`, which the FUSE library in
//!   use does not pass on; a caller other than uid 0 stands for it;
//! - a write served by us: `FUSE_WRITE_KILL_SUIDGID` in the write flags;
//! - a write through passthrough: the branch file is written with the
//!   server's credentials, which keep the bits. Files with a set-id bit are
//!   therefore never passed through; one that gains a bit while passed
//!   through is handled by the kernel itself: it never marks a set-id inode
//!   `S_NOSEC`, so an unprivileged write asks for the bits to go with an
//!   empty `setattr` (all changes stripped, as below);
//! - an empty `setattr` (nothing to change) on a regular file: what is left
//!   of a kernel-side kill (`chown(f, -1, -1)`, `file_remove_privs`) once
//!   FUSE strips the mode change it cannot trust.
//!
//! `security.capability` needs nothing from us: the branch filesystem
//! removes it on every write and owner change, whoever makes it.

use rustix::fs::Mode;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

/// Who asks for the set-id bits to go, as far as the kernel's rules
/// (`setattr_should_drop_sgid`) care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Filesystem uid; 0 stands for `CAP_FSETID`.
    pub uid: u32,
    /// Filesystem gid (supplementary groups are not known to the server).
    pub gid: u32,
}

/// The permission bits of `mode` (a full `st_mode`, of a file owned by
/// group `file_gid`) once the set-id bits removed for `caller` are gone:
/// `S_ISUID` always; `S_ISGID` when group-executable, or when the caller is
/// neither privileged nor of the file's group (without group execute the
/// bit marks mandatory locking, which a group member keeps). `None` when
/// there is nothing to remove, or for anything but a regular file.
pub(crate) fn cleared_mode(mode: u32, file_gid: u32, caller: Caller) -> Option<u32> {
    if mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let perm = mode & 0o7777;
    let mut m = perm & !libc::S_ISUID;
    let outsider = caller.uid != 0 && caller.gid != file_gid;
    if m & libc::S_IXGRP != 0 || outsider {
        m &= !libc::S_ISGID;
    }
    (m != perm).then_some(m)
}

/// Whether `mode` carries a set-id bit: such files are not passed through.
pub(crate) fn is_setid(mode: u32) -> bool {
    mode & (libc::S_ISUID | libc::S_ISGID) != 0
}

/// Clears the set-id bits of open file `file` for `caller` (see
/// [`cleared_mode`]).
pub(crate) fn kill_setid(file: &File, caller: Caller) -> io::Result<()> {
    let md = file.metadata()?;
    if let Some(m) = cleared_mode(md.mode(), md.gid(), caller) {
        rustix::fs::fchmod(file, Mode::from_raw_mode(m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clears_suid_and_group_executable_sgid_of_regular_files() {
        let reg = libc::S_IFREG;
        let root = Caller { uid: 0, gid: 0 };
        let member = Caller { uid: 1000, gid: 50 };
        let outsider = Caller {
            uid: 1000,
            gid: 1000,
        };
        assert_eq!(cleared_mode(reg | 0o6777, 50, root), Some(0o0777));
        assert_eq!(cleared_mode(reg | 0o4755, 50, root), Some(0o0755));
        // Set-gid without group execute is a locking mark: kept for the
        // privileged and the file's group, dropped for anyone else.
        assert_eq!(cleared_mode(reg | 0o6744, 50, root), Some(0o2744));
        assert_eq!(cleared_mode(reg | 0o2744, 50, member), None);
        assert_eq!(cleared_mode(reg | 0o2744, 50, outsider), Some(0o0744));
        assert_eq!(cleared_mode(reg | 0o1777, 50, outsider), None);
        assert_eq!(cleared_mode(libc::S_IFDIR | 0o2775, 50, outsider), None);
        assert!(is_setid(reg | 0o2000) && is_setid(reg | 0o4000));
        assert!(!is_setid(reg | 0o1777));
    }
}
