//! Benchmarks callable from a harness (`cargo xtask bench`): build a synthetic
//! layer, then time apply, export, changes, diff size and exact reproduction.
//! Nothing here asserts speed; it measures.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{ArchiveError, Result};
use crate::{apply_layer, changes, diff_size, export_diff, reproduce, ApplyOptions};

/// Shape of the synthetic layer.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Scratch directory (created; its previous content is removed).
    pub work_dir: Utf8PathBuf,
    /// Number of regular files.
    pub files: usize,
    /// Bytes per file.
    pub file_size: usize,
    /// Files per directory.
    pub files_per_dir: usize,
    /// Record and time exact-bytes reproduction.
    pub tar_split: bool,
    /// `syncfs` after apply (as in production).
    pub sync: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            work_dir: Utf8PathBuf::from("/tmp/aufs-archive-bench"),
            files: 10_000,
            file_size: 16 * 1024,
            files_per_dir: 100,
            tar_split: true,
            sync: true,
        }
    }
}

/// Wall times of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Size of the uncompressed tar.
    pub tar_bytes: u64,
    /// Entries in the tar.
    pub entries: u64,
    /// `apply_layer` of the tar into an empty diff dir.
    pub apply: Duration,
    /// `export_diff` of the applied layer.
    pub export: Duration,
    /// `changes` of the applied layer against an empty parent.
    pub changes: Duration,
    /// `diff_size` of the applied layer.
    pub diff_size: Duration,
    /// `reproduce` of the original bytes (when tar-split was recorded).
    pub reproduce: Option<Duration>,
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tar: {} bytes, {} entries", self.tar_bytes, self.entries)?;
        writeln!(
            f,
            "apply      {:>10.3?}  {:>8.1} MB/s",
            self.apply,
            rate(self.tar_bytes, self.apply)
        )?;
        writeln!(
            f,
            "export     {:>10.3?}  {:>8.1} MB/s",
            self.export,
            rate(self.tar_bytes, self.export)
        )?;
        writeln!(f, "changes    {:>10.3?}", self.changes)?;
        writeln!(f, "diff_size  {:>10.3?}", self.diff_size)?;
        if let Some(r) = self.reproduce {
            writeln!(
                f,
                "reproduce  {:>10.3?}  {:>8.1} MB/s",
                r,
                rate(self.tar_bytes, r)
            )?;
        }
        Ok(())
    }
}

/// Writes the synthetic source tree.
fn make_tree(root: &Utf8Path, cfg: &BenchConfig) -> Result<()> {
    let io = |p: &Utf8Path| {
        let p = p.to_owned();
        move |e| ArchiveError::io("writing bench tree", p, e)
    };
    let mut buf = vec![0u8; cfg.file_size];
    for i in 0..cfg.files {
        let dir = root.join(format!("dir-{}", i / cfg.files_per_dir.max(1)));
        if i % cfg.files_per_dir.max(1) == 0 {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        // Cheap deterministic, poorly compressible content.
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let p = dir.join(format!("file-{i}"));
        fs::write(&p, &buf).map_err(io(&p))?;
    }
    Ok(())
}

/// Builds the layer, then times every operation once.
pub fn run(cfg: &BenchConfig) -> Result<BenchReport> {
    let w = &cfg.work_dir;
    if w.exists() {
        fs::remove_dir_all(w).map_err(|e| ArchiveError::io("clearing bench dir", w, e))?;
    }
    let src = w.join("src");
    fs::create_dir_all(&src).map_err(|e| ArchiveError::io("creating bench dir", &src, e))?;
    make_tree(&src, cfg)?;
    let tar_path = w.join("layer.tar");
    let f = File::create(&tar_path).map_err(|e| ArchiveError::io("creating", &tar_path, e))?;
    let tar_bytes = export_diff(&src, BufWriter::new(f))?;

    let diff = w.join("diff");
    let meta = w.join("layer.tar-split.gz");
    let opts = ApplyOptions {
        tar_split: cfg.tar_split.then(|| meta.clone()),
        sync: cfg.sync,
        ..ApplyOptions::default()
    };
    let input = File::open(&tar_path).map_err(|e| ArchiveError::io("opening", &tar_path, e))?;
    let t = Instant::now();
    let report = apply_layer(input, &diff, &opts)?;
    let apply = t.elapsed();

    let t = Instant::now();
    let mut sink = Counting(0);
    export_diff(&diff, &mut sink)?;
    let export = t.elapsed();

    let empty = w.join("empty");
    fs::create_dir_all(&empty).map_err(|e| ArchiveError::io("creating", &empty, e))?;
    let t = Instant::now();
    changes(&[&empty], &diff)?;
    let changes_t = t.elapsed();

    let t = Instant::now();
    diff_size(&diff)?;
    let size_t = t.elapsed();

    let reproduce_t = if cfg.tar_split {
        let t = Instant::now();
        reproduce(&meta, &diff, Counting(0))?;
        Some(t.elapsed())
    } else {
        None
    };
    Ok(BenchReport {
        tar_bytes,
        entries: report.entries,
        apply,
        export,
        changes: changes_t,
        diff_size: size_t,
        reproduce: reproduce_t,
    })
}

/// A sink that only counts.
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
