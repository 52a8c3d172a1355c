//! The `fuse` group: our FUSE union (`aufsctl --backend fuse mount`) and
//! our stacked mount (`--backend stacked`: kernel overlayfs over a
//! read-only FUSE view) against kernel overlayfs and fuse-overlayfs on the
//! same branches, a Debian rootfs split into 16 and 128 layers (`--quick`:
//! its `/etc` and `/usr/share` in 8). Every contender is mounted afresh
//! before each run (untimed) and caches are dropped, so every run is cold,
//! including the servers' own caches.

use crate::measure::{compare, sh, Contender, Outcome};
use crate::rootfs::{drop_ext4, fresh_ext4, q, rootfs};
use std::path::{Path, PathBuf};

/// Layer counts compared.
const DEPTHS: [usize; 2] = [16, 128];

/// Layer count of a `--quick` run.
const QUICK_DEPTH: usize = 8;

/// `/etc` and `/usr/share` of the rootfs (hard links), for `--quick`.
fn small_rootfs(dir: &Path, rootfs: &Path) -> Result<PathBuf, String> {
    let small = dir.join("rootfs-small");
    if !small.join(".complete").exists() {
        let tmp = dir.join("rootfs-small.tmp");
        sh(&format!(
            "rm -rf {t} {s} && mkdir -p {t}/usr && cp -al {r}/etc {t}/ && cp -al {r}/usr/share {t}/usr/ && touch {t}/.complete && mv {t} {s}",
            t = q(&tmp),
            s = q(&small),
            r = q(rootfs)
        ))?;
    }
    Ok(small)
}

/// The shared rootfs and a GNU-format tar of it (once).
fn rootfs_and_tar(dir: &Path) -> Result<PathBuf, String> {
    let (root, _source) = rootfs(dir)?;
    let tar = dir.join("rootfs.tar");
    if !tar.exists() {
        sh(&format!(
            "tar -C {} --exclude=./.complete -cf {}.tmp . && mv {1}.tmp {1}",
            q(&root),
            q(&tar)
        ))?;
    }
    Ok(root)
}

/// Spreads the entries of `src` over `layers` diff dirs round-robin (hard
/// links, so no data is copied); each layer gets the directories its entries
/// need, with their modes.
fn split(src: &Path, diffs: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mut n = 0usize;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = src.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if rel.as_os_str().is_empty() && e.file_name() == ".complete" {
                continue;
            }
            let r = rel.join(e.file_name());
            let ft = e.file_type().map_err(|e| e.to_string())?;
            if ft.is_dir() {
                stack.push(r);
                continue;
            }
            let layer = &diffs[n % diffs.len()];
            n += 1;
            // Parent dirs with the source's modes.
            let mut acc = PathBuf::new();
            for c in rel.components() {
                acc.push(c);
                let d = layer.join(&acc);
                if !d.exists() {
                    std::fs::create_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                    let mode = std::fs::symlink_metadata(src.join(&acc))
                        .map_err(|e| e.to_string())?
                        .permissions()
                        .mode();
                    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| e.to_string())?;
                }
            }
            std::fs::hard_link(e.path(), layer.join(&r))
                .map_err(|err| format!("link {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
}

/// An aufs root with `depth` read-only layers holding the rootfs and one rw
/// layer `top` over them; built once.
fn layered(
    dir: &Path,
    ctl: &Path,
    rootfs: &Path,
    depth: usize,
    tag: &str,
) -> Result<PathBuf, String> {
    let root = dir.join(format!("aufs-{tag}{depth}"));
    if root.join(".complete").exists() {
        return Ok(root);
    }
    sh(&format!(
        "{c} --root {r} cleanup 2>/dev/null; rm -rf {r}",
        c = q(ctl),
        r = q(&root)
    ))?;
    let mut parent = String::new();
    for i in 0..depth {
        sh(&format!(
            "{} --root {} create l{i} {parent}",
            q(ctl),
            q(&root)
        ))?;
        parent = format!("--parent l{i}");
    }
    sh(&format!(
        "{} --root {} create-rw top {parent}",
        q(ctl),
        q(&root)
    ))?;
    let diffs: Vec<PathBuf> = (0..depth)
        .map(|i| root.join("diff").join(format!("l{i}")))
        .collect();
    split(rootfs, &diffs)?;
    sh(&format!("touch {}", q(&root.join(".complete"))))?;
    Ok(root)
}

/// One way of mounting the layered tree.
#[derive(Clone, Copy)]
enum Fs {
    Ours,
    Stacked,
    Overlay,
    /// Kernel overlayfs with its upper dir on the store's own filesystem,
    /// emptied between runs: the stacked mount's like for like (its upper
    /// is the layer's diff dir, which cannot have a fresh filesystem of its
    /// own, since overlayfs needs the work dir on the upper's mount).
    OverlayOnStore,
    FuseOverlay,
}

impl Fs {
    fn label(self) -> &'static str {
        match self {
            Fs::Ours => "aufs-fuse (aufsctl --backend fuse)",
            Fs::Stacked => "stacked (aufsctl --backend stacked)",
            Fs::Overlay => "kernel overlayfs",
            Fs::OverlayOnStore => "kernel overlayfs (upper on the store's fs)",
            Fs::FuseOverlay => "fuse-overlayfs",
        }
    }

    /// Where the contender's writable branch lives: a fresh filesystem is
    /// mounted there for every run. The stacked mount's overlayfs needs its
    /// work dir (`<root>/stack/top`) on the upper's own mount, so its upper
    /// stays on the bench dir's filesystem and is emptied instead.
    fn upper(self, root: &Path) -> PathBuf {
        match self {
            Fs::Ours | Fs::Stacked => root.join("diff/top"),
            Fs::Overlay | Fs::FuseOverlay => root.join("ovl"),
            Fs::OverlayOnStore => root.join("ovl-store"),
        }
    }

    fn backend(self) -> &'static str {
        match self {
            Fs::Stacked => "stacked",
            _ => "fuse",
        }
    }

    /// Unmounts, gives the rw branch a fresh filesystem, mounts again;
    /// prints nothing.
    fn remount(self, root: &Path, ctl: &Path, depth: usize) -> Result<PathBuf, String> {
        let r = q(root);
        self.unmount(root, ctl);
        if let Fs::Stacked | Fs::OverlayOnStore = self {
            drop_ext4(&self.upper(root));
            sh(&format!(
                "rm -rf {u} && mkdir -p {u} && sync",
                u = q(&self.upper(root))
            ))?;
        } else {
            fresh_ext4(&self.upper(root))?;
        }
        match self {
            Fs::Ours | Fs::Stacked => {
                sh(&format!(
                    "{} --root {r} --backend {} mount top >/dev/null",
                    q(ctl),
                    self.backend()
                ))?;
                Ok(root.join("mnt/top"))
            }
            Fs::Overlay | Fs::FuseOverlay | Fs::OverlayOnStore => {
                let o = self.upper(root);
                let rel = if let Fs::OverlayOnStore = self {
                    "ovl-store"
                } else {
                    "ovl"
                };
                let lower: Vec<String> = (0..depth).rev().map(|i| format!("l{i}")).collect();
                let opts = format!(
                    "lowerdir={},upperdir=../{rel}/upper,workdir=../{rel}/work",
                    lower.join(":")
                );
                let cmd = match self {
                    Fs::FuseOverlay => format!("fuse-overlayfs -o {opts} ../{rel}/m"),
                    _ => format!("mount -t overlay overlay -o {opts} ../{rel}/m"),
                };
                sh(&format!(
                    "mkdir -p {o}/upper {o}/work {o}/m && cd {r}/diff && {cmd}",
                    o = q(&o)
                ))?;
                Ok(o.join("m"))
            }
        }
    }

    /// Unmounts the union (if mounted), its rw branch's filesystem stays.
    fn unmount(self, root: &Path, ctl: &Path) {
        let _ = match self {
            Fs::Ours | Fs::Stacked => sh(&format!(
                "{} --root {} --backend {} unmount top",
                q(ctl),
                q(root),
                self.backend()
            )),
            _ => sh(&format!(
                "umount {} 2>/dev/null",
                q(&self.upper(root).join("m"))
            )),
        };
    }

    /// Unmounts the union and its rw branch's filesystem.
    fn tear_down(self, root: &Path, ctl: &Path) {
        self.unmount(root, ctl);
        drop_ext4(&self.upper(root));
    }
}

/// Requests in the round-trip workload.
const ROUND_TRIPS: u32 = 20_000;

/// The timed workloads over a mounted tree.
fn workloads(tar: &Path) -> Vec<(&'static str, String)> {
    let probe = std::env::current_exe().unwrap_or_else(|_| "xtask".into());
    vec![
        // The price of one request: a `security.capability` probe, the
        // request the kernel makes before each write and chown, asked for
        // 20,000 times on one file of the rw layer.
        (
            "round trip: 20,000 getxattr",
            format!(
                "printf x > rt && {} {} rt {ROUND_TRIPS}",
                q(&probe),
                crate::probe::COMMAND
            ),
        ),
        (
            "stat all: find -printf %s",
            "find . -printf '%s\\n' >/dev/null".into(),
        ),
        // Piped, so GNU tar cannot skip reading data for /dev/null.
        (
            "read all: tar -c piped to cat",
            "tar -cf - . | cat >/dev/null".into(),
        ),
        (
            "untar rootfs into the rw layer",
            format!("mkdir x && tar -C x -xf {}", q(tar)),
        ),
        // A small C build in the union: 120 sources written, compiled and
        // linked by make -j2 (the host's gcc; sources, objects and the
        // program live in the union's rw layer).
        ("build a small C project (make -j2)", C_BUILD.into()),
    ]
}

/// Writes and builds a small C project in `./build`.
const C_BUILD: &str = r#"mkdir build && cd build && for i in $(seq 1 120); do printf '#include <stdio.h>\n#include <string.h>\nint f%d(const char *s) { return (int)strlen(s) + %d; }\n' $i $i > f$i.c; done && printf 'int main(void) { return 0; }\n' > main.c && printf 'SRCS := $(wildcard *.c)\nprog: $(SRCS:.c=.o)\n\t$(CC) -o $@ $^\n' > Makefile && make -s -j2 CC=gcc && test -x prog"#;

/// Runs the `fuse` group: every workload, or those whose name contains
/// `only`.
pub fn bench_fuse(
    bench_dir: &Path,
    ctl: &Path,
    runs: usize,
    only: Option<&str>,
    quick: bool,
) -> Result<Vec<Outcome>, String> {
    let dir = bench_dir.join("fuse");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    sh("command -v fuse-overlayfs >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse-overlayfs >/dev/null")?;
    let rootfs = rootfs_and_tar(&dir)?;
    let source = std::fs::read_to_string(rootfs.join(".complete")).unwrap_or_default();
    eprintln!("bench fuse: rootfs from {}", source.trim());
    let (tree, tar, depths, tag) = if quick {
        let small = small_rootfs(&dir, &rootfs)?;
        let tar = dir.join("rootfs-small.tar");
        if !tar.exists() {
            sh(&format!(
                "tar -C {} --exclude=./.complete -cf {}.tmp . && mv {1}.tmp {1}",
                q(&small),
                q(&tar)
            ))?;
        }
        (small, tar, vec![QUICK_DEPTH], "small-")
    } else {
        (rootfs, dir.join("rootfs.tar"), DEPTHS.to_vec(), "")
    };
    let mut outcomes = Vec::new();
    for depth in depths {
        let root = layered(&dir, ctl, &tree, depth, tag)?;
        let selected = workloads(&tar)
            .into_iter()
            .filter(|(name, _)| only.is_none_or(|w| name.contains(w)));
        for (name, cmd) in selected {
            let contenders = [
                Fs::Ours,
                Fs::Stacked,
                Fs::Overlay,
                Fs::OverlayOnStore,
                Fs::FuseOverlay,
            ]
            .into_iter()
            .map(|fs| {
                let (root, ctl, cmd) = (root.clone(), ctl.to_path_buf(), cmd.clone());
                let mnt = std::rc::Rc::new(std::cell::RefCell::new(PathBuf::new()));
                let m2 = mnt.clone();
                let (root2, ctl2) = (root.clone(), ctl.clone());
                Contender {
                    label: fs.label().to_string(),
                    setup: Box::new(move || {
                        *m2.borrow_mut() = fs.remount(&root2, &ctl2, depth)?;
                        Ok(())
                    }),
                    run: Box::new(move || {
                        let r = sh(&format!("cd {} && {cmd}", q(&mnt.borrow())));
                        if r.is_err() {
                            fs.unmount(&root, &ctl);
                        }
                        r
                    }),
                }
            })
            .collect();
            let outcome = compare(&format!("{name}, {depth} layers"), runs, true, contenders);
            for fs in [
                Fs::Ours,
                Fs::Stacked,
                Fs::Overlay,
                Fs::OverlayOnStore,
                Fs::FuseOverlay,
            ] {
                fs.tear_down(&root, ctl);
            }
            outcomes.push(outcome?);
        }
    }
    Ok(outcomes)
}
