//! A union of temporary branch dirs mounted through `FuseBackend` and the
//! `aufs-union-server` binary, for the mount tests. They need root and
//! /dev/fuse, and skip (saying why) without them.

#![allow(dead_code)]

use aufs_fuse::{FuseBackend, Launcher};
use aufs_ports::{UnionBackend, UnionSpec};
use camino::{Utf8Path, Utf8PathBuf};
use std::path::Path;

pub fn can_mount() -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping: FUSE mount tests need root");
        return false;
    }
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipping: /dev/fuse is missing");
        return false;
    }
    true
}

pub struct Fixture {
    _tmp: tempfile::TempDir,
    pub root: Utf8PathBuf,
    pub backend: FuseBackend,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let backend = FuseBackend::new(
            Launcher::new(env!("CARGO_BIN_EXE_aufs-union-server"), Vec::new()),
            root.join("state"),
        );
        Fixture {
            _tmp: tmp,
            root,
            backend,
        }
    }

    pub fn dir(&self, name: &str) -> Utf8PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn spec(&self, layers: usize) -> UnionSpec {
        UnionSpec {
            rw: self.dir("rw"),
            ro: (0..layers).map(|i| self.dir(&format!("l{i}"))).collect(),
            target: self.dir("mnt"),
            mount_label: String::new(),
        }
    }

    pub fn mount(&self, spec: &UnionSpec) {
        self.backend.mount(spec).unwrap();
        assert!(self.backend.is_mounted(&spec.target).unwrap());
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.backend.unmount_all_under(&self.root);
    }
}

pub fn names(dir: &Utf8Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

pub fn write(path: &Utf8Path, data: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}
