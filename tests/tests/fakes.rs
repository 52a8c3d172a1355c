//! The driver suite on in-memory fakes: no root, no kernel, no disk.

use aufs_driver::kernel::KernelAufs;
use aufs_driver::Ports;
use aufs_ports::fakes::{FakeClock, FakeHost, FakeUnionBackend, MemFs, RecordingMounter};
use aufs_ports::{BackendKind, Filesystem, InProcessLocks, UnionBackend};
use aufs_tests::{driver_suite, Rig};
use camino::{Utf8Path, Utf8PathBuf};
use std::sync::Arc;

/// Fakes with the kernel aufs backend over a recording mounter.
struct KernelFakes {
    fs: Arc<MemFs>,
    mounter: Arc<RecordingMounter>,
    host: Arc<FakeHost>,
    locks: InProcessLocks,
}

impl KernelFakes {
    fn new() -> Self {
        let fs = Arc::new(MemFs::new());
        KernelFakes {
            mounter: Arc::new(RecordingMounter::with_fs(fs.clone())),
            fs,
            host: Arc::new(FakeHost::with_aufs()),
            locks: InProcessLocks::new(),
        }
    }
}

impl Rig for KernelFakes {
    fn root(&self) -> Utf8PathBuf {
        "/var/lib/docker/aufs".into()
    }
    fn ports(&self) -> Ports {
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(self.fs.clone())),
            fs: self.fs.clone(),
            host: self.host.clone(),
            backend: Arc::new(KernelAufs::new(
                self.mounter.clone(),
                self.fs.clone(),
                self.host.clone(),
                Arc::new(FakeClock::default()),
            )),
            locks: Arc::new(self.locks.clone()),
        }
    }
    fn is_mounted(&self, path: &Utf8Path) -> bool {
        self.mounter.mounted().iter().any(|m| m == path)
    }
    fn path_exists(&self, path: &Utf8Path) -> bool {
        self.fs.kind(path).unwrap().is_some()
    }
    fn make_dir(&self, path: &Utf8Path) {
        self.fs.create_dir_all(path, 0o755, None).unwrap();
    }
}

/// Fakes with a FUSE-kind backend that only keeps a table.
struct FuseFakes {
    fs: Arc<MemFs>,
    backend: Arc<FakeUnionBackend>,
    locks: InProcessLocks,
}

impl Rig for FuseFakes {
    fn root(&self) -> Utf8PathBuf {
        "/srv/aufs".into()
    }
    fn ports(&self) -> Ports {
        Ports {
            archive: Arc::new(aufs_ports::fakes::MemArchive::new(self.fs.clone())),
            fs: self.fs.clone(),
            host: Arc::new(FakeHost::default()),
            backend: self.backend.clone(),
            locks: Arc::new(self.locks.clone()),
        }
    }
    fn is_mounted(&self, path: &Utf8Path) -> bool {
        self.backend.is_mounted(path).unwrap()
    }
    fn path_exists(&self, path: &Utf8Path) -> bool {
        self.fs.kind(path).unwrap().is_some()
    }
    fn make_dir(&self, path: &Utf8Path) {
        self.fs.create_dir_all(path, 0o755, None).unwrap();
    }
}

mod kernel_fakes {
    use super::*;
    driver_suite!(KernelFakes::new());
}

mod fuse_fakes {
    use super::*;
    driver_suite!(FuseFakes {
        fs: Arc::new(MemFs::new()),
        backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
        locks: InProcessLocks::new(),
    });
}
