//! The kernel aufs backend: Go's `aufsMount`, `Unmount` and `useDirperm`
//! over the [`Mounter`] port.

use aufs_model::branch::{plan_mount, MountPlanOptions};
use aufs_ports::{
    BackendKind, Clock, Filesystem, Host, MountFlags, MountRequest, Mounter, UnionBackend,
    UnionSpec, UnmountFlags,
};
use camino::Utf8Path;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How many times an unmount is tried while the kernel says `EBUSY`.
pub const UNMOUNT_RETRIES: usize = 5;
/// The pause between those tries.
pub const UNMOUNT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Mounts unions with kernel aufs.
#[derive(Debug)]
pub struct KernelAufs {
    mounter: Arc<dyn Mounter>,
    fs: Arc<dyn Filesystem>,
    host: Arc<dyn Host>,
    clock: Arc<dyn Clock>,
    dirperm1: OnceLock<bool>,
    /// The Go driver serialises its mount calls (`mntL`).
    mount_lock: Mutex<()>,
}

fn mount_req(target: &Utf8Path, data: String, remount: bool) -> MountRequest {
    MountRequest {
        source: "none".into(),
        target: target.to_owned(),
        fstype: "aufs".into(),
        flags: MountFlags { remount },
        data,
    }
}

impl KernelAufs {
    /// A backend over these ports.
    pub fn new(
        mounter: Arc<dyn Mounter>,
        fs: Arc<dyn Filesystem>,
        host: Arc<dyn Host>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        KernelAufs {
            mounter,
            fs,
            host,
            clock,
            dirperm1: OnceLock::new(),
            mount_lock: Mutex::new(()),
        }
    }

    fn locked_mount(&self, req: &MountRequest) -> io::Result<()> {
        let _g = self.mount_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.mounter.mount(req)
    }

    /// Mounts a throwaway union with `dirperm1` to see if the kernel takes it.
    fn probe_dirperm1(&self) -> bool {
        let dirs = (
            self.fs.make_temp_dir("docker-aufs-base"),
            self.fs.make_temp_dir("docker-aufs-union"),
        );
        let (base, union) = match dirs {
            (Ok(b), Ok(u)) => (b, u),
            (b, u) => {
                for d in [b, u].into_iter().flatten() {
                    let _ = self.fs.remove_all(&d);
                }
                tracing::error!(
                    storage_driver = "aufs",
                    "error checking dirperm1: no temp dir"
                );
                return false;
            }
        };
        let data = format!("br:{base},dirperm1,xino=/dev/shm/aufs.xino");
        let ok = self.locked_mount(&mount_req(&union, data, false)).is_ok();
        if ok {
            if let Err(e) = self.unmount(&union) {
                tracing::error!(storage_driver = "aufs", error = %e, "error checking dirperm1: failed to unmount");
            }
        }
        for d in [&base, &union] {
            let _ = self.fs.remove_all(d);
        }
        ok
    }

    fn mount_inner(&self, spec: &UnionSpec) -> io::Result<()> {
        let opts = MountPlanOptions {
            page_size: self.host.page_size(),
            mount_label: spec.mount_label.clone(),
            dirperm1: self.dirperm1_supported(),
        };
        let ro: Vec<&str> = spec.ro.iter().map(|p| p.as_str()).collect();
        let plan = plan_mount(spec.rw.as_str(), &ro, &opts)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.locked_mount(&mount_req(&spec.target, plan.mount_data.clone(), false))
            .inspect_err(|e| {
                tracing::error!(storage_driver = "aufs", target = %spec.target, data = %plan.mount_data, error = %e, "aufs mount failed");
            })?;
        for data in plan.remount_data {
            self.locked_mount(&mount_req(&spec.target, data.clone(), true))
                .inspect_err(|e| {
                    tracing::error!(storage_driver = "aufs", target = %spec.target, %data, error = %e, "aufs remount (append) failed");
                })?;
        }
        Ok(())
    }
}

impl UnionBackend for KernelAufs {
    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }

    fn mount(&self, spec: &UnionSpec) -> io::Result<()> {
        let r = self.mount_inner(spec);
        if r.is_err() {
            // As the Go driver: leave nothing half-mounted.
            let _ = self.mounter.unmount(&spec.target, UnmountFlags::default());
        }
        r
    }

    /// Unmounts, retrying on `EBUSY`; not being mounted (`EINVAL`) is fine.
    fn unmount(&self, target: &Utf8Path) -> io::Result<()> {
        let mut last = Ok(());
        for attempt in 0..UNMOUNT_RETRIES {
            match self.mounter.unmount(target, UnmountFlags::default()) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    tracing::debug!(storage_driver = "aufs", %target, "unmount EBUSY (retrying {}/{})", attempt + 1, UNMOUNT_RETRIES);
                    last = Err(e);
                    self.clock.sleep(UNMOUNT_RETRY_DELAY);
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
                r => return r,
            }
        }
        last
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        self.mounter.is_mounted(target)
    }

    fn dirperm1_supported(&self) -> bool {
        *self.dirperm1.get_or_init(|| self.probe_dirperm1())
    }

    /// Unmounts every mount at or below `root`, deepest first; a submount
    /// that stays busy is detached lazily. The first error is returned.
    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()> {
        let mut first_err = None;
        for m in self.mounter.mounts_under(root)? {
            let r = self.unmount(&m).or_else(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    self.mounter.unmount(&m, UnmountFlags { detach: true })
                } else {
                    Err(e)
                }
            });
            if let Err(e) = r {
                tracing::warn!(storage_driver = "aufs", mount = %m, error = %e, "recursive unmount");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
