//! Apply streams: a layer of several GB is applied with memory bounded by
//! the pipe between the reading and applying threads, not by the layer.
//!
//! Its own test binary, so the process's peak resident size (`VmHWM`) is
//! this apply's and no other test's.

use std::io::{self, Read};

use aufs_archive::{apply_layer, ApplyOptions};
use camino::Utf8PathBuf;

/// A tar stream generated on the fly: `files` regular files of `size` bytes
/// each (a repeating pattern), then the end-of-archive blocks.
struct Generated {
    files: u64,
    size: u64,
    /// Index of the file being produced, and the bytes of it left to give.
    current: u64,
    pending: Vec<u8>,
    content_left: u64,
    padding_left: u64,
    ended: bool,
    /// Content bytes, copied out in pieces (fast even unoptimised).
    pattern: Vec<u8>,
}

impl Generated {
    fn new(files: u64, size: u64) -> Self {
        Self {
            files,
            size,
            current: 0,
            pending: Vec::new(),
            content_left: 0,
            padding_left: 0,
            ended: false,
            pattern: (0u32..64 * 1024)
                .map(|k| (k.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        }
    }

    fn header(&self, i: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(format!("big-{i}.bin")).unwrap();
        h.set_size(self.size);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        h.as_bytes().to_vec()
    }
}

impl Read for Generated {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if !self.pending.is_empty() {
            let n = out.len().min(self.pending.len());
            out[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        if self.content_left > 0 {
            let n = out
                .len()
                .min(self.pattern.len())
                .min(self.content_left.min(usize::MAX as u64) as usize);
            out[..n].copy_from_slice(&self.pattern[..n]);
            self.content_left -= n as u64;
            return Ok(n);
        }
        if self.padding_left > 0 {
            let n = out.len().min(self.padding_left as usize);
            out[..n].fill(0);
            self.padding_left -= n as u64;
            return Ok(n);
        }
        if self.current < self.files {
            self.pending = self.header(self.current);
            self.current += 1;
            self.content_left = self.size;
            self.padding_left = (512 - self.size % 512) % 512;
            return self.read(out);
        }
        if !self.ended {
            self.ended = true;
            self.pending = vec![0u8; 1024];
            return self.read(out);
        }
        Ok(0)
    }
}

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[test]
fn a_multi_gigabyte_layer_is_applied_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    let diff = root.join("diff");
    let opts = ApplyOptions {
        sync: false,
        tar_split: Some(root.join("tar-split.gz")),
        // Owners from the tar only as root; memory is the same either way.
        chown: rustix::process::geteuid().is_root(),
        ..ApplyOptions::default()
    };
    let (files, size) = (3u64, 700u64 << 20);
    let before = peak_rss_kib();
    let report = apply_layer(Generated::new(files, size), &diff, &opts).unwrap();
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;

    assert_eq!(report.size, files * size, "{report:?}");
    assert_eq!(report.entries, files);
    assert!(report.diff_id.is_some());
    for i in 0..files {
        let len = std::fs::metadata(diff.join(format!("big-{i}.bin")))
            .unwrap()
            .len();
        assert_eq!(len, size);
    }
    // The pipe holds at most 48 blocks of 1 MiB plus a few in the other
    // threads; 2.1 GB of layer must not show up in the peak.
    eprintln!("peak resident size grew by {grown_mib} MiB for a 2.1 GB layer");
    assert!(
        grown_mib < 128,
        "peak resident size grew by {grown_mib} MiB while applying 2.1 GB"
    );
}
