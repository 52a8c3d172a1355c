//! Mount reference counts (the Go driver's `graphdriver.RefCounter`).
//!
//! A layer is mounted on its first `get` and unmounted on the `put` that
//! brings its count to zero. The first time a layer is seen, a union already
//! mounted (by an earlier run) counts as one reference, as in the Go driver.
//!
//! Counts live in memory for a long-running embedder, or in `refs/<id>`
//! files under the root so separate processes (`aufsctl mount` twice, then
//! `unmount` twice) share them. Callers hold the layer's lock, which makes
//! each read-modify-write of a count atomic.

use crate::error::{DriverError, Result};
use aufs_model::LayerId;
use aufs_ports::Filesystem;
use camino::Utf8PathBuf;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where reference counts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefStore {
    /// In this process only (a daemon embedding the driver).
    #[default]
    InMemory,
    /// In `refs/<id>` under the root, shared by every process using it.
    OnDisk,
}

#[derive(Debug)]
pub(crate) struct RefCounter {
    store: RefStore,
    memory: Mutex<HashMap<LayerId, u32>>,
    fs: Arc<dyn Filesystem>,
    dir: Utf8PathBuf,
}

impl RefCounter {
    pub(crate) fn new(store: RefStore, fs: Arc<dyn Filesystem>, dir: Utf8PathBuf) -> Self {
        RefCounter {
            store,
            memory: Mutex::default(),
            fs,
            dir,
        }
    }

    fn load(&self, id: &LayerId) -> Result<Option<u32>> {
        match self.store {
            RefStore::InMemory => Ok(self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .copied()),
            RefStore::OnDisk => {
                let path = self.dir.join(id.as_str());
                match self.fs.read_to_string(&path) {
                    Ok(s) => Ok(Some(s.trim().parse().unwrap_or_else(|_| {
                        tracing::warn!(storage_driver = "aufs", %path, "unreadable reference count, taking 1");
                        1
                    }))),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
                    Err(e) => Err(DriverError::io("read reference count", path)(e)),
                }
            }
        }
    }

    fn save(&self, id: &LayerId, count: u32) -> Result<()> {
        match self.store {
            RefStore::InMemory => {
                let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
                if count == 0 {
                    m.remove(id);
                } else {
                    m.insert(id.clone(), count);
                }
                Ok(())
            }
            RefStore::OnDisk => {
                let path = self.dir.join(id.as_str());
                if count == 0 {
                    match self.fs.remove_file(&path) {
                        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                            Err(DriverError::io("remove reference count", path)(e))
                        }
                        _ => Ok(()),
                    }
                } else {
                    self.fs
                        .write_replace(&path, format!("{count}\n").as_bytes())
                        .map_err(DriverError::io("write reference count", path))
                }
            }
        }
    }

    /// The current count, counting a union found mounted on first sight.
    fn current(&self, id: &LayerId, mounted: impl FnOnce() -> bool) -> Result<u32> {
        Ok(match self.load(id)? {
            Some(n) => n,
            None => u32::from(mounted()),
        })
    }

    /// Adds a reference; returns the new count.
    pub(crate) fn increment(&self, id: &LayerId, mounted: impl FnOnce() -> bool) -> Result<u32> {
        let n = self.current(id, mounted)?.saturating_add(1);
        self.save(id, n)?;
        Ok(n)
    }

    /// Drops a reference (never below zero); returns the new count.
    pub(crate) fn decrement(&self, id: &LayerId, mounted: impl FnOnce() -> bool) -> Result<u32> {
        let n = self.current(id, mounted)?.saturating_sub(1);
        self.save(id, n)?;
        Ok(n)
    }

    /// Forgets a layer (on removal).
    pub(crate) fn forget(&self, id: &LayerId) -> Result<()> {
        self.save(id, 0)
    }

    /// The count without changing it (0 when unknown).
    pub(crate) fn peek(&self, id: &LayerId) -> Result<u32> {
        Ok(self.load(id)?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aufs_ports::fakes::MemFs;

    fn id(s: &str) -> LayerId {
        LayerId::new(s).unwrap()
    }

    #[test]
    fn counts_in_both_stores() {
        for store in [RefStore::InMemory, RefStore::OnDisk] {
            let fs = Arc::new(MemFs::new());
            fs.create_dir_all("/r/refs".into(), 0o700, None).unwrap();
            let c = RefCounter::new(store, fs.clone(), "/r/refs".into());
            assert_eq!(c.increment(&id("a"), || false).unwrap(), 1);
            assert_eq!(c.increment(&id("a"), || panic!("checked once")).unwrap(), 2);
            assert_eq!(c.decrement(&id("a"), || true).unwrap(), 1);
            assert_eq!(c.decrement(&id("a"), || true).unwrap(), 0);
            // Gone: the next sight checks the mount table again.
            assert_eq!(c.increment(&id("a"), || true).unwrap(), 2);
            c.forget(&id("a")).unwrap();
            assert_eq!(c.peek(&id("a")).unwrap(), 0);
            assert_eq!(c.decrement(&id("b"), || false).unwrap(), 0);
            if store == RefStore::OnDisk {
                assert_eq!(fs.all_paths().len(), 3, "{:?}", fs.all_paths());
            }
        }
    }
}
