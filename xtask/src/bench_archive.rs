//! The `archive` group: applying and exporting a real root filesystem (a
//! Debian minbase) with aufs-archive, side by side with GNU tar and with
//! Docker's own `pkg/archive` (built offline from Debian's moby sources).
//!
//! All contenders write to the same filesystem: a fresh journaled ext4 image
//! loop-mounted under the bench dir (the usual Docker host setting), or the
//! bench dir itself where that cannot be mounted (then said in the output).
//! Before each run its output dir is removed and everything is `sync`ed
//! (untimed), so no run pays for another's writeback. GNU tar and Docker's
//! Untar do not sync by themselves: each is timed as is and followed by
//! `sync -f` (a `syncfs` of the target filesystem, as durable as our shipped
//! apply); ours is timed as shipped (one `syncfs`) and without it. Durable
//! runs are compared with durable peers, the others with the peers as is.

use crate::measure::{compare, sh, Contender, Outcome};
use crate::rootfs::{drop_ext4, fresh_ext4, q, rootfs};
use aufs_archive::{apply_layer_file, export_diff, ApplyOptions};
use camino::{Utf8Path, Utf8PathBuf};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn utf8(p: &Path) -> Result<Utf8PathBuf, String> {
    Utf8PathBuf::from_path_buf(p.to_path_buf()).map_err(|p| format!("{p:?}: not UTF-8"))
}

/// `tar --format=pax` of the rootfs (once).
fn tarball(dir: &Path, root: &Path) -> Result<PathBuf, String> {
    let tar = dir.join("rootfs-pax.tar");
    if !tar.exists() {
        sh(&format!(
            "tar --format=pax -C {} --exclude=./.complete -cf {}.tmp . && mv {1}.tmp {1}",
            q(root),
            q(&tar)
        ))?;
    }
    Ok(tar)
}

/// Where the contenders write: a loop-mounted ext4 image when possible.
struct WorkFs {
    dir: PathBuf,
    mounted: bool,
    what: String,
}

impl WorkFs {
    fn open(bench: &Path) -> Result<Self, String> {
        let dir = bench.join("archive-fs");
        let _ = sh(&format!("umount {} 2>/dev/null", q(&dir)));
        sh(&format!("rm -rf {0} && mkdir -p {0}", q(&dir)))?;
        Ok(match fresh_ext4(&dir) {
            Ok(()) => WorkFs {
                dir,
                mounted: true,
                what: "a fresh ext4 image per run (journaled), loop-mounted".into(),
            },
            Err(e) => {
                eprintln!("bench archive: no loop-mounted ext4 ({e}); writing into the bench dir");
                WorkFs {
                    dir,
                    mounted: false,
                    what: "the bench dir's own filesystem (no loop mount possible)".into(),
                }
            }
        })
    }
}

impl WorkFs {
    /// A fresh filesystem for the next apply run, with `out` made in it: no
    /// run creates files where earlier runs deleted thousands (ext4's inode
    /// allocator then scans recently deleted inodes), and none pays for
    /// another's leftovers.
    fn fresh_for(&self, out: &Path) -> Result<(), String> {
        if !self.mounted {
            return fresh(out);
        }
        fresh_ext4(&self.dir)?;
        sh(&format!("mkdir -p {} && sync", q(out)))
    }
}

impl Drop for WorkFs {
    fn drop(&mut self) {
        if self.mounted {
            // The image is made afresh by every run: do not keep its GiBs.
            drop_ext4(&self.dir);
        }
    }
}

/// Builds Docker's reference helper (tests/go-ref of aufs-archive) offline
/// against Debian's moby sources; `None`, with the reason printed, without
/// them.
fn go_ref(bench: &Path) -> Option<PathBuf> {
    let src_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .join("crates/aufs-archive/tests/go-ref/main.go");
    let dir = bench.join("goref");
    let build = || -> Result<PathBuf, String> {
        sh("command -v go >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-docker-docker-dev >/dev/null")?;
        let src = dir.join("src/goref");
        std::fs::create_dir_all(&src).map_err(|e| e.to_string())?;
        std::fs::copy(&src_root, src.join("main.go")).map_err(|e| e.to_string())?;
        let bin = dir.join("goref");
        sh(&format!(
            "cd {s} && GO111MODULE=off GOFLAGS= GOPATH={d}:/usr/share/gocode GOCACHE={d}/cache go build -o {b} .",
            s = q(&src),
            d = dir.display(),
            b = q(&bin)
        ))?;
        Ok(bin)
    };
    match build() {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("bench archive: Docker's pkg/archive not compared: {e}");
            None
        }
    }
}

fn fresh(dir: &Path) -> Result<(), String> {
    sh(&format!("rm -rf {0} && mkdir -p {0} && sync", q(dir)))
}

fn ours_apply<'a>(
    work: &'a WorkFs,
    label: &str,
    tar: &'a Path,
    out: PathBuf,
    opts: ApplyOptions,
) -> Result<Contender<'a>, String> {
    let out_u = utf8(&out)?;
    Ok(Contender {
        label: label.into(),
        setup: Box::new(move || work.fresh_for(&out)),
        run: Box::new(move || {
            let diff = out_u.join("diff");
            let mut o = opts.clone();
            if o.tar_split.is_some() {
                o.tar_split = Some(out_u.join("tar-split.gz"));
            }
            let f = std::fs::File::open(tar).map_err(|e| e.to_string())?;
            apply_layer_file(&f, &diff, &o).map_err(|e| e.to_string())?;
            Ok(())
        }),
    })
}

fn shell<'a>(work: &'a WorkFs, label: &str, out: PathBuf, cmd: String) -> Contender<'a> {
    Contender {
        label: label.into(),
        setup: Box::new(move || work.fresh_for(&out)),
        run: Box::new(move || sh(&cmd)),
    }
}

/// Exports `dir` into `cat > /dev/null` (a pipe, as GNU tar's output is:
/// GNU tar skips reading files when it writes to /dev/null itself).
fn export_to_pipe(dir: &Utf8Path) -> Result<(), String> {
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdin = cat.stdin.take().ok_or("no stdin")?;
    export_diff(dir, stdin).map_err(|e| e.to_string())?;
    let st = cat.wait().map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("cat: {st}"))
    }
}

/// Apply and export of the rootfs tarball; one outcome per variant of ours.
pub fn bench_archive(bench: &Path, runs: usize) -> Result<Vec<Outcome>, String> {
    let (root, source) = rootfs(bench)?;
    let tar = tarball(bench, &root)?;
    let work = WorkFs::open(bench)?;
    let go = go_ref(bench);
    let tar_mb = std::fs::metadata(&tar).map_err(|e| e.to_string())?.len() >> 20;
    eprintln!(
        "bench archive: rootfs = {source}; tarball {tar_mb} MiB; target = {}",
        work.what
    );
    let w = |n: &str| work.dir.join(n);
    let shipped = ApplyOptions {
        tar_split: Some(Utf8PathBuf::from("set-per-run")),
        ..ApplyOptions::default()
    };
    let mut contenders = vec![
        ours_apply(
            &work,
            "aufs-archive (syncfs, digest, tar-split)",
            &tar,
            w("ours-shipped"),
            shipped.clone(),
        )?,
        ours_apply(
            &work,
            "aufs-archive (no sync; digest, tar-split)",
            &tar,
            w("ours-nosync"),
            ApplyOptions {
                sync: false,
                ..shipped.clone()
            },
        )?,
        ours_apply(
            &work,
            "aufs-archive (untar only: no sync, digest, tar-split)",
            &tar,
            w("ours-untar"),
            ApplyOptions {
                sync: false,
                digest: false,
                tar_split: None,
                ..ApplyOptions::default()
            },
        )?,
        shell(
            &work,
            "GNU tar -xf",
            w("gnu-tar"),
            format!("tar -xf {} -C {}", q(&tar), q(&w("gnu-tar"))),
        ),
        shell(
            &work,
            "GNU tar -xf && sync -f",
            w("gnu-tar-sync"),
            format!(
                "tar -xf {t} -C {d} && sync -f {d}",
                t = q(&tar),
                d = q(&w("gnu-tar-sync"))
            ),
        ),
    ];
    // Indices of the peers: (as is, followed by syncfs).
    let mut plain = vec![3];
    let mut durable = vec![4];
    if let Some(g) = &go {
        contenders.push(shell(
            &work,
            "Docker pkg/archive.Untar (Go)",
            w("docker"),
            format!("{} untar {} {}", q(g), q(&tar), q(&w("docker"))),
        ));
        contenders.push(shell(
            &work,
            "Docker pkg/archive.Untar (Go) && sync -f",
            w("docker-sync"),
            format!(
                "{g} untar {t} {d} && sync -f {d}",
                g = q(g),
                t = q(&tar),
                d = q(&w("docker-sync"))
            ),
        ));
        plain.push(5);
        durable.push(6);
    }
    let all = compare(
        &format!("apply rootfs tar ({tar_mb} MiB)"),
        runs,
        false,
        contenders,
    )?;
    // Shipped (durable) against durable peers first, then against the peers
    // as is; the runs without sync against the peers as is.
    let pick = |ours: usize, peers: &[usize]| {
        let order: Vec<usize> = std::iter::once(ours).chain(peers.iter().copied()).collect();
        Outcome {
            name: all.name.clone(),
            medians: order.iter().map(|&i| all.medians[i].clone()).collect(),
            spread: order.iter().map(|&i| all.spread[i]).collect(),
        }
    };
    let shipped_peers: Vec<usize> = durable.iter().chain(&plain).copied().collect();
    let mut outcomes = vec![pick(0, &shipped_peers), pick(1, &plain), pick(2, &plain)];

    // Export: the applied rootfs (warm cache) as a tar into a pipe.
    let src = utf8(&w("export-src"))?;
    work.fresh_for(src.as_std_path())?;
    apply_layer_file(
        &std::fs::File::open(&tar).map_err(|e| e.to_string())?,
        &src.join("diff"),
        &ApplyOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let diff = src.join("diff");
    let mut contenders = vec![
        Contender {
            label: "aufs-archive export_diff, piped to cat".into(),
            setup: Box::new(|| Ok(())),
            run: Box::new(|| export_to_pipe(&diff)),
        },
        Contender {
            label: "GNU tar -cf -, piped to cat".into(),
            setup: Box::new(|| Ok(())),
            run: Box::new(|| {
                sh(&format!(
                    "tar -C {} -cf - . | cat > /dev/null",
                    q(diff.as_std_path())
                ))
            }),
        },
    ];
    if let Some(g) = &go {
        let cmd = format!("{} tar {} | cat > /dev/null", q(g), q(diff.as_std_path()));
        contenders.push(Contender {
            label: "Docker pkg/archive.Tar (Go), piped to cat".into(),
            setup: Box::new(|| Ok(())),
            run: Box::new(move || sh(&cmd)),
        });
    }
    outcomes.push(compare("export rootfs diff dir", runs, false, contenders)?);
    drop(work);
    Ok(outcomes)
}
