//! What an apply knows without asking the kernel again: resolved parent
//! directories, and the owner and permission bits the kernel gives a new
//! inode, so `chown`/`chmod` calls that would change nothing are skipped.
//!
//! A layer is mostly root-owned files with plain modes: for those the
//! created inode already is what the header says, and two syscalls per entry
//! go away. Anything not known for sure (setgid parents, an unreadable
//! umask, special mode bits) falls back to the explicit calls.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use rustix::fs::Mode;
use std::os::fd::OwnedFd;

use crate::fsops::Root;

/// Directories resolved at most; the cache starts over past this (fds).
const MAX_CACHED: usize = 64;

/// A resolved parent directory and what entries created in it get.
#[derive(Debug)]
pub(crate) struct Parent {
    pub fd: OwnedFd,
    /// Owner of an inode created in it.
    pub owner: (u32, u32),
    /// Its setgid bit is set: new directories inherit it, so their mode is
    /// not known in advance.
    pub setgid: bool,
}

/// Parent directories by path inside the staging tree. Valid only while no
/// entry is removed or replaced: the applier clears it whenever that
/// happens, so a path always resolves as the kernel would resolve it now.
#[derive(Debug, Default)]
pub(crate) struct Parents {
    map: HashMap<Vec<u8>, Rc<Parent>>,
    /// The effective uid and gid, asked once.
    ids: Option<(u32, u32)>,
}

impl Parents {
    /// The directory `rel` (created with missing components, owned by
    /// `owner`, when `create`).
    pub(crate) fn get(
        &mut self,
        root: &Root,
        rel: &[u8],
        create_owner: Option<(u32, u32)>,
    ) -> io::Result<Rc<Parent>> {
        if let Some(p) = self.map.get(rel) {
            return Ok(p.clone());
        }
        let fd = root.ensure_dir(rel, create_owner)?;
        let st = rustix::fs::fstat(&fd)?;
        let setgid = st.st_mode & 0o2000 != 0;
        let (euid, egid) = *self.ids.get_or_insert_with(|| {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        });
        let gid = if setgid { st.st_gid } else { egid };
        let parent = Rc::new(Parent {
            fd,
            owner: (euid, gid),
            setgid,
        });
        if self.map.len() >= MAX_CACHED {
            self.map.clear();
        }
        self.map.insert(rel.to_vec(), parent.clone());
        Ok(parent)
    }

    /// Forgets every resolved directory (an entry was removed or replaced).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

/// The process umask, read from `/proc/self/status` (reading it with
/// `umask(2)` would change it for every thread meanwhile). `None` when the
/// kernel does not say.
pub(crate) fn umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

/// Owner and permission bits of a just-created inode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Born {
    pub owner: (u32, u32),
    /// `None` when not known for sure.
    pub perm: Option<u32>,
}

impl Born {
    /// An inode created in `parent` with `requested` permission bits.
    pub(crate) fn new(parent: &Parent, requested: u32, umask: Option<u32>, dir: bool) -> Self {
        let perm = match umask {
            Some(m) if !(dir && parent.setgid) => Some(requested & 0o777 & !m),
            _ => None,
        };
        Self {
            owner: parent.owner,
            perm,
        }
    }
}

/// The creation mode for permission bits `mode`: its plain bits (special
/// bits are set by the explicit chmod after chown).
pub(crate) fn creation_mode(mode: u32) -> Mode {
    Mode::from_raw_mode(mode & 0o777)
}
