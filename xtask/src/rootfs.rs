//! The benchmark data both groups share: a real root filesystem.

use crate::measure::sh;
use std::path::{Path, PathBuf};

/// `p` quoted for the shell.
pub fn q(p: &Path) -> String {
    format!("'{}'", p.display())
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
