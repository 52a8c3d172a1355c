//! A union backend that only keeps a table of mounted unions.

use crate::{errno, BackendKind, UnionBackend, UnionSpec};
use camino::{Utf8Path, Utf8PathBuf};
use std::io;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct State {
    mounted: Vec<UnionSpec>,
    history: Vec<UnionSpec>,
    fail_next_mount: Option<i32>,
}

/// Records unions "mounted" by the driver, for tests of backend-independent
/// driver logic (reference counts, locks, removal).
#[derive(Debug)]
pub struct FakeUnionBackend {
    kind: BackendKind,
    dirperm1: bool,
    state: Mutex<State>,
}

impl FakeUnionBackend {
    /// A fake of the given kind.
    pub fn new(kind: BackendKind) -> Self {
        FakeUnionBackend {
            kind,
            dirperm1: false,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unions currently mounted.
    pub fn mounted(&self) -> Vec<UnionSpec> {
        self.lock().mounted.clone()
    }

    /// Every union ever mounted, in order.
    pub fn history(&self) -> Vec<UnionSpec> {
        self.lock().history.clone()
    }

    /// Makes the next mount fail with `errno`.
    pub fn fail_next_mount(&self, errno: i32) {
        self.lock().fail_next_mount = Some(errno);
    }
}

impl UnionBackend for FakeUnionBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn mount(&self, spec: &UnionSpec) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = s.fail_next_mount.take() {
            return Err(errno(e));
        }
        if s.mounted.iter().any(|m| m.target == spec.target) {
            return Err(errno(libc::EBUSY));
        }
        s.mounted.push(spec.clone());
        s.history.push(spec.clone());
        Ok(())
    }

    fn unmount(&self, target: &Utf8Path) -> io::Result<()> {
        let mut s = self.lock();
        let i = s
            .mounted
            .iter()
            .position(|m| m.target == target)
            .ok_or_else(|| errno(libc::EINVAL))?;
        s.mounted.remove(i);
        Ok(())
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        Ok(self.lock().mounted.iter().any(|m| m.target == target))
    }

    fn dirperm1_supported(&self) -> bool {
        self.dirperm1
    }

    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()> {
        self.lock().mounted.retain(|m| !m.target.starts_with(root));
        Ok(())
    }
}

/// Convenience: the targets of mounted unions.
pub fn targets(b: &FakeUnionBackend) -> Vec<Utf8PathBuf> {
    b.mounted().into_iter().map(|s| s.target).collect()
}
