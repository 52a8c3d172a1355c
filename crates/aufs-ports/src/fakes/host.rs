//! A configurable host.

use crate::{BackingFeatures, Host};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

/// A host whose answers are set by the test. By default: ext4 everywhere,
/// no aufs in `/proc/filesystems`, the initial user namespace, 4096-byte
/// pages, running as root.
#[derive(Debug)]
pub struct FakeHost {
    /// Content of `/proc/filesystems`.
    pub filesystems: Mutex<String>,
    /// What `in_user_namespace` answers.
    pub user_namespace: bool,
    /// Magic by path prefix (longest prefix wins); default ext4.
    pub magics: Mutex<BTreeMap<Utf8PathBuf, u64>>,
    /// Page size.
    pub page: usize,
    /// Effective ids.
    pub ids: (u32, u32),
    /// What `backing_features` answers.
    pub backing: BackingFeatures,
    /// If set, loading a module adds this line to `filesystems`.
    pub module_adds: Option<String>,
    /// Modules `load_module` was asked for.
    pub loaded: Mutex<Vec<String>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            filesystems: Mutex::new("nodev\ttmpfs\n\text4\nnodev\toverlay\nnodev\tfuse\n".into()),
            user_namespace: false,
            magics: Mutex::default(),
            page: 4096,
            ids: (0, 0),
            backing: BackingFeatures {
                d_type: true,
                xattrs: true,
            },
            module_adds: None,
            loaded: Mutex::default(),
        }
    }
}

impl FakeHost {
    /// A host whose kernel lists aufs.
    pub fn with_aufs() -> Self {
        let h = FakeHost::default();
        h.filesystems.lock().unwrap().push_str("nodev\taufs\n");
        h
    }

    /// Sets the filesystem magic of everything under `prefix`.
    pub fn set_magic(&self, prefix: &Utf8Path, magic: u64) {
        self.magics.lock().unwrap().insert(prefix.to_owned(), magic);
    }

    /// Modules `load_module` was asked for.
    pub fn loaded_modules(&self) -> Vec<String> {
        self.loaded.lock().unwrap().clone()
    }
}

impl Host for FakeHost {
    fn proc_filesystems(&self) -> io::Result<String> {
        Ok(self.filesystems.lock().unwrap().clone())
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        self.loaded.lock().unwrap().push(name.to_owned());
        match &self.module_adds {
            Some(line) => {
                self.filesystems.lock().unwrap().push_str(line);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("modprobe: FATAL: Module {name} not found"),
            )),
        }
    }

    fn in_user_namespace(&self) -> io::Result<bool> {
        Ok(self.user_namespace)
    }

    fn fs_magic(&self, path: &Utf8Path) -> io::Result<u64> {
        let m = self.magics.lock().unwrap();
        Ok(m.iter()
            .filter(|(p, _)| path.starts_with(p))
            .max_by_key(|(p, _)| p.as_str().len())
            .map(|(_, v)| *v)
            .unwrap_or(0xEF53))
    }

    fn page_size(&self) -> usize {
        self.page
    }

    fn effective_ids(&self) -> (u32, u32) {
        self.ids
    }

    fn backing_features(&self, _dir: &Utf8Path) -> io::Result<BackingFeatures> {
        Ok(self.backing)
    }
}
