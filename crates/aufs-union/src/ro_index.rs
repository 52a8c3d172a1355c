//! Merged listings of the read-only branches, one per union directory,
//! computed once and kept: read-only branches never change under a union, so
//! a lookup costs one hash probe here instead of one probe per layer.

use crate::branch::Branch;
use crate::entry::EntryKind;
use crate::error::{Result, UnionError};
use crate::meta::Meta;
use crate::xino::Xino;
use aufs_model::whiteout::{classify_bytes, whiteout_target_bytes, NameKind};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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

/// One branch's part of a directory, as listed.
#[derive(Debug, Default, PartialEq)]
struct Part {
    plain: Vec<(OsString, EntryKind, u64)>,
    whiteouts: Vec<OsString>,
    opaque: bool,
}

/// Whether directory `dir` is opaque in overlay form
/// (`trusted.overlay.opaque=y`).
///
/// A layer mounted stacked right now (kernel overlayfs over a read-only
/// view of its parents) is in overlay form until its unmount: a whiteout is
/// a character device 0/0, an opaque directory carries that xattr. A child
/// of such a layer mounted at the same time reads it in either form. A
/// character device 0/0 is no device, so nothing real is hidden.
fn overlay_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut v = [0u8; 4];
    matches!(
        rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut v[..]),
        Ok(1) if v[0] == b'y'
    )
}

fn list_part(branch: &Branch, path: &Path) -> Result<Part> {
    let dir = branch.open_dir(path)?;
    let io = |e| UnionError::io("readdir", branch.display(path), e);
    // One descriptor open for reading serves the listing and the xattr.
    let reading = crate::beneath::open_listing(dir.as_fd()).map_err(io)?;
    let mut part = Part {
        opaque: overlay_opaque(reading.as_fd()),
        ..Part::default()
    };
    let listed = crate::beneath::list_open(reading).map_err(io)?;
    for de in listed {
        match classify_bytes(de.name.as_bytes()) {
            NameKind::Plain
                if de.kind == EntryKind::CharDevice
                    && Meta::at(dir.as_fd(), &de.name).is_ok_and(|m| m.rdev() == 0) =>
            {
                part.whiteouts.push(de.name);
            }
            NameKind::Plain => part.plain.push((de.name, de.kind, de.ino)),
            NameKind::Whiteout(_) => {
                if let Some(t) = whiteout_target_bytes(de.name.as_bytes()) {
                    part.whiteouts
                        .push(OsString::from(std::ffi::OsStr::from_bytes(t)));
                }
            }
            NameKind::Opaque => part.opaque = true,
            NameKind::Meta => {}
        }
    }
    Ok(part)
}

/// Lists every part of a directory, topmost first. When the first part was
/// slow to read (its blocks were not cached: a fresh boot, or a first mount
/// of these layers), the rest are read by a few threads at once, so their
/// cold reads overlap instead of queueing one behind the other. A cached
/// directory is read on the calling thread: starting threads would cost
/// more than the whole read.
fn list_parts(branches: &[Branch], path: &Path, chain: &[usize]) -> Result<Vec<Part>> {
    list_parts_after(branches, path, chain, COLD_READ)
}

/// A first part that took longer than this to list was read from disk.
const COLD_READ: Duration = Duration::from_micros(40);
/// Threads listing the parts of a cold directory.
const READERS: usize = 4;

/// [`list_parts`], counting a first read slower than `cold` as cold.
fn list_parts_after(
    branches: &[Branch],
    path: &Path,
    chain: &[usize],
    cold: Duration,
) -> Result<Vec<Part>> {
    let Some((&first, rest)) = chain.split_first() else {
        return Ok(Vec::new());
    };
    let started = Instant::now();
    let mut parts = vec![list_part(&branches[first], path)?];
    if rest.len() < 2 * READERS || started.elapsed() < cold {
        for &b in rest {
            parts.push(list_part(&branches[b], path)?);
        }
        return Ok(parts);
    }
    let mut listed: Vec<Option<Result<Part>>> = (0..rest.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                s.spawn(move || {
                    rest.iter()
                        .enumerate()
                        .skip(r)
                        .step_by(READERS)
                        .map(|(i, &b)| (i, list_part(&branches[b], path)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for reader in readers {
            match reader.join() {
                Ok(done) => {
                    for (i, part) in done {
                        listed[i] = Some(part);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    for part in listed {
        parts.push(part.expect("each part is listed by one reader")?);
    }
    Ok(parts)
}

fn build(branches: &[Branch], xino: &Xino, path: &Path, chain: &[usize]) -> Result<RoDir> {
    let mut slots: HashMap<OsString, Slot> = HashMap::new();
    for (&b, part) in chain.iter().zip(list_parts(branches, path, chain)?) {
        let branch = &branches[b];
        let Part {
            plain,
            whiteouts,
            opaque,
        } = part;
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

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;

    /// Twelve branches holding `d/` with files, whiteouts and (in one) the
    /// opaque marker: the threads must list the same parts, in chain order,
    /// as the calling thread does.
    #[test]
    fn cold_directories_listed_by_threads_match_a_listing_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let branches: Vec<Branch> = (0..12)
            .map(|i| {
                let root = Utf8PathBuf::from_path_buf(tmp.path().join(format!("b{i}"))).unwrap();
                let d = root.as_std_path().join("d");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("only-{i}")), b"").unwrap();
                std::fs::write(d.join("shared"), b"").unwrap();
                std::fs::create_dir(d.join("sub")).unwrap();
                if i % 3 == 0 {
                    std::fs::write(d.join(format!(".wh.gone-{i}")), b"").unwrap();
                }
                if i == 7 {
                    std::fs::write(d.join(".wh..wh..opq"), b"").unwrap();
                }
                Branch::open(&root, false).unwrap()
            })
            .collect();
        let chain: Vec<usize> = (0..12).rev().collect();
        let path = Path::new("d");
        let sort = |mut parts: Vec<Part>| {
            for p in &mut parts {
                p.plain.sort_by(|a, b| a.0.cmp(&b.0));
                p.whiteouts.sort();
            }
            parts
        };
        let calling = sort(list_parts_after(&branches, path, &chain, Duration::MAX).unwrap());
        let threads = sort(list_parts_after(&branches, path, &chain, Duration::ZERO).unwrap());
        assert_eq!(calling.len(), 12);
        assert_eq!(threads, calling);
        for (part, &b) in threads.iter().zip(&chain) {
            assert!(part
                .plain
                .iter()
                .any(|(n, _, _)| n == &format!("only-{b}")[..]));
            assert_eq!(part.opaque, b == 7);
            assert_eq!(part.whiteouts.len(), usize::from(b % 3 == 0));
        }
    }

    #[test]
    fn a_missing_part_fails_the_listing_on_either_path() {
        let tmp = tempfile::tempdir().unwrap();
        let branches: Vec<Branch> = (0..10)
            .map(|i| {
                let root = Utf8PathBuf::from_path_buf(tmp.path().join(format!("b{i}"))).unwrap();
                std::fs::create_dir_all(root.as_std_path().join(if i == 5 { "x" } else { "d" }))
                    .unwrap();
                Branch::open(&root, false).unwrap()
            })
            .collect();
        let chain: Vec<usize> = (0..10).collect();
        for cold in [Duration::MAX, Duration::ZERO] {
            let err = list_parts_after(&branches, Path::new("d"), &chain, cold).unwrap_err();
            assert!(err.to_string().contains("b5"), "{err}");
        }
    }
}
