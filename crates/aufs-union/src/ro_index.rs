//! Merged listings of the read-only branches, one per union directory,
//! computed once and kept: read-only branches never change under a union, so
//! a lookup costs one hash probe here instead of one probe per layer.

use crate::branch::Branch;
use crate::entry::EntryKind;
use crate::error::{Result, UnionError};
use crate::xino::Xino;
use aufs_model::whiteout::{classify_bytes, whiteout_target_bytes, NameKind};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A visible name of the read-only part of a directory.
#[derive(Debug, Clone)]
pub(crate) struct RoEntry {
    /// Topmost read-only branch holding it.
    pub branch: usize,
    pub kind: EntryKind,
    /// Union inode number (for a directory: of its lowest part).
    pub ino: u64,
    /// For a directory: the branches its merged content comes from, topmost
    /// first (an opaque part found while listing ends it early).
    pub chain: Box<[usize]>,
}

/// The read-only part of one union directory.
#[derive(Debug, Default)]
pub(crate) struct RoDir {
    pub entries: HashMap<OsString, RoEntry>,
}

enum Slot {
    Hidden,
    Visible {
        entry: RoEntry,
        chain: Vec<usize>,
        open: bool,
    },
}

#[derive(Debug)]
pub(crate) struct RoIndex {
    cache: RwLock<HashMap<PathBuf, Arc<RoDir>>>,
}

impl RoIndex {
    pub(crate) fn new() -> Self {
        RoIndex {
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The merged read-only listing of union directory `path`, whose parts
    /// are in `chain`.
    pub(crate) fn dir(
        &self,
        branches: &[Branch],
        xino: &Xino,
        path: &Path,
        chain: &[usize],
    ) -> Result<Arc<RoDir>> {
        if let Some(d) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Ok(d.clone());
        }
        let dir = Arc::new(build(branches, xino, path, chain)?);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), dir.clone());
        Ok(dir)
    }
}

fn build(branches: &[Branch], xino: &Xino, path: &Path, chain: &[usize]) -> Result<RoDir> {
    let mut slots: HashMap<OsString, Slot> = HashMap::new();
    for &b in chain {
        let branch = &branches[b];
        let real = branch.real(path);
        let rd = std::fs::read_dir(&real).map_err(|e| UnionError::io("readdir", &real, e))?;
        let mut plain = Vec::new();
        let mut whiteouts = Vec::new();
        let mut opaque = false;
        for de in rd {
            let de = de.map_err(|e| UnionError::io("readdir", &real, e))?;
            let name = de.file_name();
            match classify_bytes(name.as_bytes()) {
                NameKind::Plain => {
                    let ft = de
                        .file_type()
                        .map_err(|e| UnionError::io("lstat", real.join(&name), e))?;
                    plain.push((name, EntryKind::from_file_type(ft), de.ino()));
                }
                NameKind::Whiteout(_) => {
                    if let Some(t) = whiteout_target_bytes(name.as_bytes()) {
                        whiteouts.push(OsString::from(std::ffi::OsStr::from_bytes(t)));
                    }
                }
                NameKind::Opaque => opaque = true,
                NameKind::Meta => {}
            }
        }
        for (name, kind, ino) in plain {
            match slots.get_mut(&name) {
                None => {
                    let is_dir = kind == EntryKind::Dir;
                    slots.insert(
                        name,
                        Slot::Visible {
                            entry: RoEntry {
                                branch: b,
                                kind,
                                ino: xino.ino(branch.dev, ino),
                                chain: Box::new([]),
                            },
                            chain: if is_dir { vec![b] } else { Vec::new() },
                            open: is_dir,
                        },
                    );
                }
                Some(Slot::Visible {
                    entry, chain, open, ..
                }) if *open => {
                    if kind == EntryKind::Dir {
                        chain.push(b);
                        entry.ino = xino.ino(branch.dev, ino);
                    } else {
                        *open = false;
                    }
                }
                Some(_) => {}
            }
        }
        for target in whiteouts {
            match slots.get_mut(&target) {
                None => {
                    slots.insert(target, Slot::Hidden);
                }
                Some(Slot::Visible { open, .. }) => *open = false,
                Some(Slot::Hidden) => {}
            }
        }
        if opaque {
            break;
        }
    }
    let entries = slots
        .into_iter()
        .filter_map(|(name, slot)| match slot {
            Slot::Hidden => None,
            Slot::Visible {
                mut entry, chain, ..
            } => {
                entry.chain = chain.into_boxed_slice();
                Some((name, entry))
            }
        })
        .collect();
    Ok(RoDir { entries })
}
