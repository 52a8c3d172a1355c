//! The seal of an applied layer: when its diff dir was last changed by the
//! apply, so that a later change of *any* kind is noticed before the original
//! bytes are handed back.
//!
//! Checksums of file content catch edited files, but not a file added, a
//! symlink removed or a mode changed. Every one of those sets the changed
//! entry's ctime (or its parent directory's) to the current time, and no
//! system call can set a ctime back. So the apply records the diff dir's
//! ctime once it is in place (`<metadata>.seal`, a line `SECONDS NANOS`),
//! and [`check`] walks the diff dir: an entry with a later ctime means the
//! layer changed since. The apply returns only once the clock has moved past
//! the seal (to the next second where the filesystem keeps whole seconds),
//! so a change right after it still gets a later ctime. Metadata
//! written without a seal is checked by content only.

use std::io::{self, Write as _};
use std::os::fd::AsFd;

use camino::{Utf8Path, Utf8PathBuf};

use crate::error::{lossy, ArchiveError, Result};
use crate::walk::{self, Step};

/// Where the seal of the metadata file `meta` lives.
pub(crate) fn path(meta: &Utf8Path) -> Utf8PathBuf {
    Utf8PathBuf::from(format!("{meta}.seal"))
}

/// A point in ctime order.
type Stamp = (i64, i64);

fn ctime(st: &rustix::fs::Stat) -> Stamp {
    (st.st_ctime, st.st_ctime_nsec as i64)
}

/// Records `diff_dir`'s ctime (just set by moving the applied tree into
/// place) as the seal of `meta`, written to a temp name and renamed.
pub(crate) fn write(meta: &Utf8Path, diff_dir: &Utf8Path, sync: bool) -> Result<()> {
    let st = rustix::fs::lstat(diff_dir.as_str())
        .map_err(|e| ArchiveError::io("stat of the applied layer", diff_dir, e.into()))?;
    let (sec, nsec) = ctime(&st);
    // A ctime without nanoseconds most likely comes from a filesystem that
    // keeps whole seconds (ext4 with 128-byte inodes, some network ones):
    // a change later in the same second would get the same ctime.
    wait_past(if nsec == 0 {
        (sec, 999_999_999)
    } else {
        (sec, nsec)
    });
    let dst = path(meta);
    let tmp = Utf8PathBuf::from(format!("{dst}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{sec} {nsec}")?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &dst)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ArchiveError::io("writing the seal of tar-split metadata", dst, e)
    })
}

/// Returns once the clock file times are taken from has moved past
/// `stamp` (at most one tick, 4 ms with HZ=250): a change made later gets a
/// later ctime even on filesystems with coarse timestamps.
fn wait_past(stamp: Stamp) {
    loop {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        if (now.tv_sec, now.tv_nsec) > stamp {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

/// Removes the seal of `meta`, if any.
pub(crate) fn remove(meta: &Utf8Path) -> Result<()> {
    let p = path(meta);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ArchiveError::io(
            "removing the seal of tar-split metadata",
            p,
            e,
        )),
        _ => Ok(()),
    }
}

fn read(meta: &Utf8Path) -> Result<Option<Stamp>> {
    let p = path(meta);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ArchiveError::io(
                "reading the seal of tar-split metadata",
                p,
                e,
            ))
        }
    };
    let mut fields = text.split_whitespace().map(str::parse::<i64>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(sec)), Some(Ok(nsec)), None) => Ok(Some((sec, nsec))),
        _ => Err(ArchiveError::BadMetadata {
            path: p,
            reason: format!("seal is not `SECONDS NANOS`: {text:?}"),
        }),
    }
}

/// Fails with [`ArchiveError::LayerChanged`] naming the first entry of
/// `diff_dir` (the dir itself included) changed after `meta`'s seal.
pub(crate) fn check(meta: &Utf8Path, diff_dir: &Utf8Path) -> Result<()> {
    let Some(seal) = read(meta)? else {
        return Ok(());
    };
    let changed = |rel: &[u8], at: Stamp| ArchiveError::LayerChanged {
        path: lossy(rel),
        reason: format!(
            "changed after the apply (ctime {}.{:09} > seal {}.{:09})",
            at.0, at.1, seal.0, seal.1
        ),
    };
    let root = walk::open_dir(diff_dir)?;
    let st = rustix::fs::fstat(&root)
        .map_err(|e| ArchiveError::io("stat of the layer", diff_dir, e.into()))?;
    if ctime(&st) > seal {
        return Err(changed(b".", ctime(&st)));
    }
    walk::walk(root.as_fd(), diff_dir, &mut |e| {
        let at = ctime(e.stat);
        if at > seal {
            return Err(changed(e.rel, at));
        }
        Ok(Step::Descend)
    })
}
