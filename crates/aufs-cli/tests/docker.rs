//! Images against Docker itself (moby's `dockerd` from Debian's docker.io,
//! run on a private data root): what `docker save` writes, `aufsctl import`
//! takes; what `aufsctl export` writes, `docker load` takes, with the same
//! layers. Needs root and `dockerd`; says why it skips without them.

mod common;

use common::Ctl;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private dockerd, stopped on drop.
struct Dockerd {
    child: Child,
    sock: PathBuf,
}

impl Dockerd {
    fn start(dir: &Path) -> Option<Self> {
        let sock = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none", "--ip-masq=false"])
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).ok()?)
            .spawn()
            .ok()?;
        let d = Dockerd { child, sock };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if d.docker(&["version"]).status.success() {
                return Some(d);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn docker_save_imports_and_docker_load_takes_the_export() {
    let uid = Command::new("id").arg("-u").output().unwrap().stdout;
    if uid != b"0\n" {
        eprintln!(
            "docker_save_imports_and_docker_load_takes_the_export: skipped: dockerd needs root"
        );
        return;
    }
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("docker_save_imports_and_docker_load_takes_the_export: skipped: no dockerd (apt-get install docker.io)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let Some(d) = Dockerd::start(t) else {
        let log = std::fs::read_to_string(t.join("dockerd.log")).unwrap_or_default();
        panic!("dockerd did not start:\n{log}");
    };
    // An image made by Docker from a rootfs tarball.
    let src = t.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/os-release"), "from docker\n").unwrap();
    let rootfs = t.join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&rootfs)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let image = d.ok(&["import", rootfs.to_str().unwrap(), "aufs-test:1"]);
    let image = image.trim();
    let saved = t.join("saved.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "aufs-test:1"]);
    let layers = d.ok(&[
        "image",
        "inspect",
        image,
        "--format",
        "{{json .RootFS.Layers}}",
    ]);

    let c = Ctl::new();
    let top = c
        .ok(&["import", saved.to_str().unwrap()])
        .trim()
        .to_string();
    // One layer: its chain id is its DiffID.
    assert_eq!(layers.trim(), format!("[\"sha256:{top}\"]"));
    assert_eq!(
        std::fs::read_to_string(c.diff(&top).join("etc/os-release")).unwrap(),
        "from docker\n"
    );

    // Back into Docker: a new daemon-side image with the same layers.
    d.ok(&["rmi", "aufs-test:1"]);
    let exported = t.join("exported.tar");
    c.ok(&["export", &top, "-o", exported.to_str().unwrap()]);
    let loaded = d.ok(&["load", "-i", exported.to_str().unwrap()]);
    let id = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: "))
        .unwrap_or_else(|| panic!("docker load said: {loaded}"));
    let again = d.ok(&[
        "image",
        "inspect",
        id,
        "--format",
        "{{json .RootFS.Layers}}",
    ]);
    assert_eq!(again.trim(), layers.trim());

    // The daemon's own image metadata and tar-split records, read by
    // `aufsctl legacy` as a Docker install: its overlay2 store is copied
    // where image/aufs and aufs/diff would be (copies, not symlinks: legacy
    // follows no symlink beneath a Docker root), so the records moby wrote
    // are what the export replays.
    d.ok(&["tag", id, "aufs-test:again"]);
    let data = t.join("root");
    let fake = t.join("fake-docker");
    std::fs::create_dir_all(fake.join("aufs/diff")).unwrap();
    std::fs::create_dir_all(fake.join("image")).unwrap();
    let copy = |from: &Path, to: &Path| {
        assert!(Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success());
    };
    copy(&data.join("image/overlay2"), &fake.join("image/aufs"));
    for layer in std::fs::read_dir(data.join("image/overlay2/layerdb/sha256")).unwrap() {
        let cache = std::fs::read_to_string(layer.unwrap().path().join("cache-id")).unwrap();
        copy(
            &data.join("overlay2").join(cache.trim()).join("diff"),
            &fake.join("aufs/diff").join(cache.trim()),
        );
    }
    let images = c.ok(&["legacy", "images", "--docker-root", fake.to_str().unwrap()]);
    let hex = id.trim_start_matches("sha256:");
    assert!(
        images.contains(&format!("aufs-test:again {}", &hex[..12])),
        "{images}"
    );
    let legacy = t.join("legacy.tar");
    c.ok(&[
        "legacy",
        "export",
        "aufs-test:again",
        "--docker-root",
        fake.to_str().unwrap(),
        "-o",
        legacy.to_str().unwrap(),
    ]);
    // Docker's own save of the same image carries the same layer bytes.
    let resaved = t.join("resaved.tar");
    d.ok(&["save", "-o", resaved.to_str().unwrap(), "aufs-test:again"]);
    assert!(!layer_tars(&legacy).is_empty());
    assert!(
        layer_tars(&legacy) == layer_tars(&resaved),
        "layer bytes differ"
    );
}

/// The layer tars of a `docker save` tarball, in manifest order.
fn layer_tars(tarball: &Path) -> Vec<Vec<u8>> {
    let unpacked = tarball.with_extension("d");
    std::fs::create_dir_all(&unpacked).unwrap();
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&unpacked)
        .arg("-xf")
        .arg(tarball)
        .status()
        .unwrap()
        .success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| std::fs::read(unpacked.join(l.as_str().unwrap())).unwrap())
        .collect()
}
