//! What the command groups share: JSON output, atomic output files, and
//! standard input and paths as the driver and image code take them.

use crate::Failure;
use std::fs::File;
use std::path::Path;

/// Writes `path` through a temp file in the same dir, renamed into place
/// only when `write` succeeds: a failed diff leaves no half-written file.
pub(super) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<File>) -> Result<(), aufs_driver::DriverError>,
) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Failure::Error(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let f =
            File::create(&tmp).map_err(|e| Failure::Error(format!("{}: {e}", tmp.display())))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut w)?;
        let f = w
            .into_inner()
            .map_err(|e| Failure::Error(format!("{}: {}", tmp.display(), e.error())))?;
        f.sync_all()
            .map_err(|e| Failure::Error(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| Failure::Error(format!("{}: {e}", path.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Prints one JSON document on stdout.
pub(super) fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Standard input as a file, when it is one (`aufsctl apply ID < layer.tar`);
/// `None` for a pipe or a terminal, which are read as streams.
pub(super) fn stdin_file() -> Option<File> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd().try_clone_to_owned().ok()?;
    let f = File::from(fd);
    f.metadata().ok()?.file_type().is_file().then_some(f)
}

/// A path argument the image code takes, which must be UTF-8.
pub(super) fn utf8(p: &Path) -> Result<&camino::Utf8Path, Failure> {
    camino::Utf8Path::from_path(p)
        .ok_or_else(|| Failure::Error(format!("{}: not a UTF-8 path", p.display())))
}
