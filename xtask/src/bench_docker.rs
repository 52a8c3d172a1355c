//! The `docker` group: dockerd 20.10 on the graph driver plugin (`aufsctl
//! serve docker`) against the same dockerd on its built-in overlay2, both
//! running at once on private data roots under the bench dir, runs
//! alternating:
//!
//! - `docker run --rm IMAGE true`: create the container's layers, mount,
//!   start, stop, unmount, remove (the latency every container pays);
//! - `docker load` of a three-layer image (a busybox-static root, then
//!   `/usr/share/doc` and `/usr/lib/python3.11` of this machine, ~180 MB),
//!   with the image removed (untimed) before each run.

use crate::measure::{compare, sh, Contender, Outcome};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The plugin's name in the bench (its socket is where dockerd looks).
const PLUGIN: &str = "aufs-rs-bench";
const IMAGE: &str = "bench-img:1";
const BASE: &str = "bench-base:1";

/// A process stopped (SIGTERM) and waited for on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// A private dockerd and how to call it.
struct Daemon {
    host: String,
    _proc: Proc,
}

impl Daemon {
    fn start(dir: &Path, driver: &str, extra: &[&str]) -> Result<Daemon, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .args(["--storage-driver", driver])
            .args(extra)
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd: {e} (apt-get install docker.io)"))?;
        let d = Daemon {
            host: format!("unix://{}", dir.join("docker.sock").display()),
            _proc: Proc(child),
        };
        let start = Instant::now();
        while d.docker("info >/dev/null 2>&1").is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "dockerd on {driver} did not start; see {}",
                    dir.join("dockerd.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(d)
    }

    /// `docker ARGS` (a shell fragment) against this daemon.
    fn docker(&self, args: &str) -> Result<(), String> {
        sh(&format!("DOCKER_HOST={} docker {args}", self.host))
    }
}

/// Builds the bench image on `d` and saves it to `tarball` (once).
fn build_image(d: &Daemon, work: &Path, tarball: &Path) -> Result<(), String> {
    let root = work.join("rootfs");
    sh(&format!(
        "rm -rf {r} && mkdir -p {r}/bin {r}/etc {r}/tmp {r}/usr/share {r}/usr/lib && cp /bin/busybox {r}/bin/ \
         && for a in sh true cp ls cat; do ln -s busybox {r}/bin/$a; done && tar -C {r} -cf {w}/rootfs.tar .",
        r = root.display(),
        w = work.display()
    ))?;
    d.docker(&format!(
        "import {}/rootfs.tar {BASE} >/dev/null",
        work.display()
    ))?;
    let mut image = BASE.to_string();
    for (i, src) in ["/usr/share/doc", "/usr/lib/python3.11"].iter().enumerate() {
        let name = format!("bench-build-{i}");
        d.docker(&format!(
            "run --name {name} -v {src}:/src:ro {image} cp -a /src {src} >/dev/null"
        ))?;
        image = format!("bench-layer:{i}");
        d.docker(&format!("commit {name} {image}>/dev/null"))?;
        d.docker(&format!("rm {name} >/dev/null"))?;
    }
    d.docker(&format!("tag {image} {IMAGE}"))?;
    d.docker(&format!("save -o {}.tmp {IMAGE}", tarball.display()))?;
    // Nothing of the build may stay: a load must apply every layer.
    d.docker(&format!(
        "rmi {IMAGE} {BASE} bench-layer:0 bench-layer:1 >/dev/null"
    ))?;
    std::fs::rename(format!("{}.tmp", tarball.display()), tarball).map_err(|e| e.to_string())
}

/// The group; skipped (saying why) without root, dockerd or busybox-static.
pub fn bench_docker(bench: &Path, aufsctl: &Path, runs: usize) -> Result<Vec<Outcome>, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if uid.stdout != b"0\n" {
        eprintln!("bench docker: skipped: dockerd needs root");
        return Ok(Vec::new());
    }
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("bench docker: skipped: no dockerd (apt-get install docker.io)");
        return Ok(Vec::new());
    }
    if !Path::new("/bin/busybox").exists() || !Path::new("/usr/lib/python3.11").is_dir() {
        eprintln!("bench docker: skipped: needs /bin/busybox (busybox-static) and /usr/lib/python3.11 for the image");
        return Ok(Vec::new());
    }
    let work = bench.join("docker");
    // Leftovers of an interrupted run: mounts first, then the dirs.
    let _ = sh(&format!(
        "grep -o ' {0}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l",
        work.display()
    ));
    sh(&format!(
        "rm -rf {0}/plugin {0}/overlay2 && mkdir -p {0}",
        work.display()
    ))?;
    let log = std::fs::File::create(work.join("plugin.log")).map_err(|e| e.to_string())?;
    let plugin = Proc(
        Command::new(aufsctl)
            .args(["serve", "docker", "--name", PLUGIN])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", aufsctl.display()))?,
    );
    let socket = PathBuf::from(format!("/run/docker/plugins/{PLUGIN}.sock"));
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err("the plugin did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ours = Daemon::start(&work.join("plugin"), PLUGIN, &["--experimental"])?;
    let peer = Daemon::start(&work.join("overlay2"), "overlay2", &[])?;

    let tarball = work.join("image.tar");
    if !tarball.exists() {
        build_image(&peer, &work, &tarball)?;
    }
    for d in [&ours, &peer] {
        d.docker(&format!("load -q -i {} >/dev/null", tarball.display()))?;
    }
    let mut out = Vec::new();
    let run_true = |d: &Daemon| d.docker(&format!("run --rm {IMAGE} true"));
    // One untimed run each: caches and containerd warm.
    run_true(&ours)?;
    run_true(&peer)?;
    out.push(compare(
        "docker run --rm IMAGE true",
        runs.max(5) * 2,
        false,
        vec![
            Contender {
                label: "dockerd on aufs-rs plugin".into(),
                setup: Box::new(|| Ok(())),
                run: Box::new(|| run_true(&ours)),
            },
            Contender {
                label: "dockerd on overlay2".into(),
                setup: Box::new(|| Ok(())),
                run: Box::new(|| run_true(&peer)),
            },
        ],
    )?);
    // The image and every layer of it gone (checked), so each load
    // applies all three layers.
    let unload = |d: &Daemon| {
        d.docker(&format!("rmi -f {IMAGE} >/dev/null 2>&1 || true"))?;
        d.docker("image ls -aq | wc -l | grep -qx 0")
            .map_err(|_| "an image is left before the load".to_string())
    };
    let load = |d: &Daemon| d.docker(&format!("load -q -i {} >/dev/null", tarball.display()));
    out.push(compare(
        "docker load (3 layers, ~180 MB)",
        runs,
        false,
        vec![
            Contender {
                label: "dockerd on aufs-rs plugin".into(),
                setup: Box::new(|| unload(&ours).and_then(|()| sh("sync"))),
                run: Box::new(|| load(&ours)),
            },
            Contender {
                label: "dockerd on overlay2".into(),
                setup: Box::new(|| unload(&peer).and_then(|()| sh("sync"))),
                run: Box::new(|| load(&peer)),
            },
        ],
    )?);
    drop(ours);
    drop(peer);
    drop(plugin);
    let _ = std::fs::remove_file(format!("/run/docker/plugins/{PLUGIN}.init.json"));
    Ok(out)
}
