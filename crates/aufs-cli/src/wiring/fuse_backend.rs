//! The FUSE backend as the CLI runs it.

use aufs_linux::LinuxMounter;
use aufs_ports::{BackendKind, Mounter, UnionBackend, UnionSpec, UnmountFlags};
use camino::Utf8Path;
use std::io;

/// The FUSE union backend for this binary.
pub fn backend() -> FuseUnavailable {
    FuseUnavailable {
        mounter: LinuxMounter::new(),
    }
}

/// Reports FUSE as the backend; mounting is refused with a clear error
/// until the FUSE union server is built in.
#[derive(Debug)]
pub struct FuseUnavailable {
    mounter: LinuxMounter,
}

impl UnionBackend for FuseUnavailable {
    fn kind(&self) -> BackendKind {
        BackendKind::Fuse
    }
    fn mount(&self, _spec: &UnionSpec) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the FUSE union is not available in this build",
        ))
    }
    fn unmount(&self, target: &Utf8Path) -> io::Result<()> {
        self.mounter.unmount(target, UnmountFlags::default())
    }
    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        self.mounter.is_mounted(target)
    }
    fn dirperm1_supported(&self) -> bool {
        false
    }
    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()> {
        for m in self.mounter.mounts_under(root)? {
            match self.mounter.unmount(&m, UnmountFlags { detach: true }) {
                Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
