//! The benchmark data both groups share: a real root filesystem.

use crate::measure::sh;
use std::path::{Path, PathBuf};

/// `p` quoted for the shell.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// An empty ext4 freshly made on the image `<dir>.img` (3 GiB, sparse) and
/// loop-mounted on `dir`, in place of whatever was mounted there. Inode
/// tables and journal are written at mkfs time, so no `ext4lazyinit`
/// thread zeroes them in the background of a timed run; and a run that
/// creates thousands of files never does so where an earlier run deleted
/// them (ext4 then scans recently deleted inodes, `recently_deleted`).
pub fn fresh_ext4(dir: &Path) -> Result<(), String> {
    sh(&format!(
        "umount {d} 2>/dev/null; mkdir -p {d} && rm -f {i} && truncate -s 3G {i} \
         && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 {i} \
         && mount -o loop {i} {d} && rmdir {d}/lost+found && sync",
        d = q(dir),
        i = q(&dir.with_extension("img"))
    ))
}

/// Unmounts what [`fresh_ext4`] mounted on `dir` and deletes its image.
pub fn drop_ext4(dir: &Path) {
    let _ = sh(&format!(
        "umount {} 2>/dev/null; rm -f {}",
        q(dir),
        q(&dir.with_extension("img"))
    ));
}

/// Builds (once) `dir/rootfs`, a Debian minbase made by debootstrap, or a
/// copy of /usr/lib and /usr/share when that fails; returns it and what it is.
pub fn rootfs(dir: &Path) -> Result<(PathBuf, String), String> {
    let root = dir.join("rootfs");
    let marker = root.join(".complete");
    if !marker.exists() {
        let tmp = dir.join("rootfs.tmp");
        sh(&format!("rm -rf {}", q(&tmp)))?;
        sh("command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null")?;
        let made = sh(&format!(
            "debootstrap --variant=minbase bookworm {} http://deb.debian.org/debian > {} 2>&1",
            q(&tmp),
            q(&dir.join("debootstrap.log"))
        ));
        let source = match made {
            Ok(()) => "debootstrap --variant=minbase bookworm".to_string(),
            Err(e) => {
                eprintln!(
                    "bench: debootstrap failed ({e}); using a copy of /usr/lib and /usr/share instead"
                );
                sh(&format!(
                    "rm -rf {t} && mkdir -p {t}/usr && cp -a /usr/share /usr/lib {t}/usr/",
                    t = q(&tmp)
                ))?;
                "copy of /usr/lib + /usr/share (debootstrap failed)".to_string()
            }
        };
        sh(&format!(
            "rm -rf {r} && mv {t} {r} && echo {s:?} > {r}/.complete",
            r = q(&root),
            t = q(&tmp),
            s = source
        ))?;
    }
    let source = std::fs::read_to_string(&marker)
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    Ok((root, source))
}
