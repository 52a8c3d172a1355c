//! Stable union inode numbers, like aufs's xino.
//!
//! Branches of one union normally live on one filesystem, so a real inode
//! number already names one file uniquely: it is used as is. Files on another
//! device get a 64-bit mix of (device, inode) with the top bit set, so they
//! cannot collide with plain numbers. A file copied up keeps the number of its
//! lower original (every other name of a multiply-linked original is linked
//! to the copy, so no name still shows the original; see `plink`), unless
//! renumbered ([`crate::UnionView::renumber`]). With an xino file ([`crate::UnionView::with_xino_file`])
//! that holds across remounts too: each copy-up appends (rw inode, birth
//! time, union inode) to the file, and a record only applies to the rw file
//! born at that time, so a reused inode number never inherits it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// The inode number of the union root (FUSE's root node id).
pub const ROOT_INO: u64 = 1;

/// Bytes of one record of the xino file: rw inode, union inode (0 = gone),
/// birth seconds, birth nanoseconds; little-endian u64s.
const RECORD: usize = 32;

/// A birth time (seconds, nanoseconds since the epoch); (0, 0) when the
/// filesystem does not keep one.
pub(crate) type Birth = (i64, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CopiedUp {
    union_ino: u64,
    birth: Birth,
}

#[derive(Debug)]
pub(crate) struct Xino {
    base_dev: u64,
    copied_up: RwLock<HashMap<u64, CopiedUp>>,
    file: Mutex<Option<(PathBuf, File)>>,
}

fn mix(dev: u64, ino: u64) -> u64 {
    // splitmix64 finalizer over both halves.
    let mut z = dev.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ ino;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn encode(rw_ino: u64, c: CopiedUp) -> [u8; RECORD] {
    let mut b = [0u8; RECORD];
    b[0..8].copy_from_slice(&rw_ino.to_le_bytes());
    b[8..16].copy_from_slice(&c.union_ino.to_le_bytes());
    b[16..24].copy_from_slice(&c.birth.0.to_le_bytes());
    b[24..32].copy_from_slice(&c.birth.1.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> (u64, CopiedUp) {
    let u = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[r]);
        a
    };
    (
        u64::from_le_bytes(u(0..8)),
        CopiedUp {
            union_ino: u64::from_le_bytes(u(8..16)),
            birth: (i64::from_le_bytes(u(16..24)), u64::from_le_bytes(u(24..32))),
        },
    )
}

impl Xino {
    pub(crate) fn new(base_dev: u64) -> Self {
        Xino {
            base_dev,
            copied_up: RwLock::new(HashMap::new()),
            file: Mutex::new(None),
        }
    }

    /// Loads the records of `path` (created when missing), rewrites it with
    /// the live ones only, and appends every later change to it.
    pub(crate) fn attach_file(&self, path: &Path) -> io::Result<()> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut live = HashMap::new();
        for rec in data.chunks_exact(RECORD) {
            let (rw, c) = decode(rec);
            if c.union_ino == 0 {
                live.remove(&rw);
            } else {
                live.insert(rw, c);
            }
        }
        let tmp = path.with_extension("xino-new");
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut buf = Vec::with_capacity(live.len() * RECORD);
        for (rw, c) in &live {
            buf.extend_from_slice(&encode(*rw, *c));
        }
        out.write_all(&buf)?;
        out.sync_data()?;
        std::fs::rename(&tmp, path)?;
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        self.copied_up
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(live);
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.to_path_buf(), file));
        Ok(())
    }

    fn append(&self, rw_ino: u64, c: CopiedUp) {
        if let Some((path, file)) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            if let Err(e) = file.write_all(&encode(rw_ino, c)) {
                tracing::warn!(storage_driver = "aufs", ?path, error = %e, "xino record not written");
            }
        }
    }

    /// The union inode number of a real file in a branch.
    pub(crate) fn ino(&self, dev: u64, ino: u64) -> u64 {
        if dev == self.base_dev && ino > ROOT_INO && ino < (1 << 63) {
            ino
        } else {
            mix(dev, ino) | (1 << 63)
        }
    }

    /// Same as [`Xino::ino`] for a file of the rw branch, honouring copy-ups;
    /// `birth` gives the file's birth time, asked only for copied-up files.
    pub(crate) fn rw_ino(&self, dev: u64, ino: u64, birth: impl FnOnce() -> Birth) -> u64 {
        let known = self
            .copied_up
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
            .copied();
        match known {
            Some(c) if c.birth == (0, 0) || c.birth == birth() => c.union_ino,
            _ => self.ino(dev, ino),
        }
    }

    pub(crate) fn record_copy_up(&self, rw_ino: u64, birth: Birth, union_ino: u64) {
        let c = CopiedUp { union_ino, birth };
        self.copied_up
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rw_ino, c);
        self.append(rw_ino, c);
    }

    pub(crate) fn forget(&self, rw_ino: u64) {
        let had = self
            .copied_up
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rw_ino)
            .is_some();
        if had {
            self.append(
                rw_ino,
                CopiedUp {
                    union_ino: 0,
                    birth: (0, 0),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_device_keeps_real_numbers() {
        let x = Xino::new(7);
        assert_eq!(x.ino(7, 1234), 1234);
        assert_ne!(x.ino(8, 1234), 1234);
        assert!(x.ino(8, 1234) >= 1 << 63);
        assert_ne!(x.ino(7, ROOT_INO), ROOT_INO);
    }

    #[test]
    fn copy_up_keeps_lower_number_until_forgotten() {
        let x = Xino::new(7);
        x.record_copy_up(99, (5, 6), 1234);
        assert_eq!(x.rw_ino(7, 99, || (5, 6)), 1234);
        // Another file born later under the same number is not the copy.
        assert_eq!(x.rw_ino(7, 99, || (9, 0)), 99);
        x.forget(99);
        assert_eq!(x.rw_ino(7, 99, || (5, 6)), 99);
    }

    #[test]
    fn xino_file_survives_reopen_and_compacts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.xino");
        let x = Xino::new(7);
        x.attach_file(&path).unwrap();
        x.record_copy_up(10, (1, 2), 100);
        x.record_copy_up(11, (1, 3), 101);
        x.forget(10);
        drop(x);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * RECORD as u64);
        let y = Xino::new(7);
        y.attach_file(&path).unwrap();
        assert_eq!(y.rw_ino(7, 11, || (1, 3)), 101);
        assert_eq!(y.rw_ino(7, 10, || (1, 2)), 10);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD as u64);
    }
}
