//! A mounter that records every call and keeps a mount table.

use super::{take_fault, Fault};
use crate::{errno, Filesystem, MountRequest, Mounter, UnmountFlags};
use camino::{Utf8Path, Utf8PathBuf};
use std::io;
use std::sync::{Arc, Mutex};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountCall {
    /// A `mount(2)`.
    Mount(MountRequest),
    /// A `umount2(2)`.
    Unmount(Utf8PathBuf, UnmountFlags),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Mount,
    Remount,
    Unmount,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<MountCall>,
    mounted: Vec<Utf8PathBuf>,
    faults: Vec<Fault<Op>>,
}

/// Records mounts (youki's `TestHelperSyscall` shape) and behaves like the
/// kernel's mount table: a remount needs a mount, unmounting what is not
/// mounted is `EINVAL`, a target must exist in the paired filesystem.
#[derive(Debug, Default)]
pub struct RecordingMounter {
    state: Mutex<State>,
    fs: Option<Arc<dyn Filesystem>>,
}

impl RecordingMounter {
    /// A mounter whose targets need not exist anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mounter checking that targets exist in `fs` (`ENOENT` otherwise).
    pub fn with_fs(fs: Arc<dyn Filesystem>) -> Self {
        RecordingMounter {
            state: Mutex::default(),
            fs: Some(fs),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All calls so far, in order.
    pub fn calls(&self) -> Vec<MountCall> {
        self.lock().calls.clone()
    }

    /// Only the `mount(2)` calls.
    pub fn mount_requests(&self) -> Vec<MountRequest> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                MountCall::Mount(r) => Some(r.clone()),
                MountCall::Unmount(..) => None,
            })
            .collect()
    }

    /// Forgets recorded calls (the mount table stays).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Current mount points.
    pub fn mounted(&self) -> Vec<Utf8PathBuf> {
        self.lock().mounted.clone()
    }

    /// The next `times` first mounts fail with `errno` (and record nothing
    /// as mounted).
    pub fn fail_mount(&self, errno: i32, times: usize) {
        self.lock().faults.push(Fault {
            op: Op::Mount,
            path: None,
            errno,
            times,
        });
    }

    /// The next `times` remounts fail with `errno`.
    pub fn fail_remount(&self, errno: i32, times: usize) {
        self.lock().faults.push(Fault {
            op: Op::Remount,
            path: None,
            errno,
            times,
        });
    }

    /// The next `times` unmounts of `target` fail with `errno`.
    pub fn fail_unmount(&self, target: Option<&Utf8Path>, errno: i32, times: usize) {
        self.lock().faults.push(Fault {
            op: Op::Unmount,
            path: target.map(Utf8Path::to_owned),
            errno,
            times,
        });
    }
}

impl Mounter for RecordingMounter {
    fn mount(&self, req: &MountRequest) -> io::Result<()> {
        if let Some(fs) = &self.fs {
            if fs.kind(&req.target)?.is_none() {
                return Err(errno(libc::ENOENT));
            }
        }
        let mut s = self.lock();
        s.calls.push(MountCall::Mount(req.clone()));
        let op = if req.flags.remount {
            Op::Remount
        } else {
            Op::Mount
        };
        if let Some(e) = take_fault(&mut s.faults, op, &req.target) {
            return Err(e);
        }
        if req.flags.remount {
            if !s.mounted.contains(&req.target) {
                return Err(errno(libc::EINVAL));
            }
        } else {
            s.mounted.push(req.target.clone());
        }
        Ok(())
    }

    fn unmount(&self, target: &Utf8Path, flags: UnmountFlags) -> io::Result<()> {
        let mut s = self.lock();
        s.calls.push(MountCall::Unmount(target.to_owned(), flags));
        if let Some(e) = take_fault(&mut s.faults, Op::Unmount, target) {
            return Err(e);
        }
        match s.mounted.iter().rposition(|m| m == target) {
            Some(i) => {
                s.mounted.remove(i);
                Ok(())
            }
            None => Err(errno(libc::EINVAL)),
        }
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        Ok(self.lock().mounted.iter().any(|m| m == target))
    }

    fn mounts_under(&self, root: &Utf8Path) -> io::Result<Vec<Utf8PathBuf>> {
        let mut v: Vec<_> = self
            .lock()
            .mounted
            .iter()
            .filter(|m| m.starts_with(root))
            .cloned()
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Ok(v)
    }
}
