//! Stable union inode numbers, like aufs's xino.
//!
//! Branches of one union normally live on one filesystem, so a real inode
//! number already names one file uniquely: it is used as is. Files on another
//! device get a 64-bit mix of (device, inode) with the top bit set, so they
//! cannot collide with plain numbers. A file copied up keeps the number of its
//! lower original while the view lives (when the original had a single link,
//! so no other name still shows it).

use std::collections::HashMap;
use std::sync::RwLock;

/// The inode number of the union root (FUSE's root node id).
pub const ROOT_INO: u64 = 1;

#[derive(Debug)]
pub(crate) struct Xino {
    base_dev: u64,
    copied_up: RwLock<HashMap<u64, u64>>,
}

fn mix(dev: u64, ino: u64) -> u64 {
    // splitmix64 finalizer over both halves.
    let mut z = dev.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ ino;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Xino {
    pub(crate) fn new(base_dev: u64) -> Self {
        Xino {
            base_dev,
            copied_up: RwLock::new(HashMap::new()),
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

    /// Same as [`Xino::ino`] for a file of the rw branch, honouring copy-ups.
    pub(crate) fn rw_ino(&self, dev: u64, ino: u64) -> u64 {
        if let Some(x) = self
            .copied_up
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ino)
        {
            return *x;
        }
        self.ino(dev, ino)
    }

    pub(crate) fn record_copy_up(&self, rw_ino: u64, union_ino: u64) {
        self.copied_up
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rw_ino, union_ino);
    }

    pub(crate) fn forget(&self, rw_ino: u64) {
        self.copied_up
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rw_ino);
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
        x.record_copy_up(99, 1234);
        assert_eq!(x.rw_ino(7, 99), 1234);
        x.forget(99);
        assert_eq!(x.rw_ino(7, 99), 99);
    }
}
