//! `aufsctl serve docker` as dockerd uses it: moby 20.10's own graph driver
//! conformance suite run through dockerd's own plugin client, restarts of
//! the plugin (kill -9 included) with layers mounted, and a private dockerd
//! 20.10 on the plugin. Needs root (FUSE and overlay mounts); says why it
//! skips without it, Go, moby's source or dockerd.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moby's source as Debian ships it (`golang-github-docker-docker-dev`).
const MOBY: &str = "/usr/share/gocode/src/github.com/docker/docker";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// A running `aufsctl serve docker` on a socket in a temp dir; stopped
/// (SIGTERM) on drop, then every mount under the dir is cleaned up.
struct Served {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Served {
    /// On `dir/plugin.sock`.
    fn start(dir: &Path, extra: &[&str]) -> Served {
        let socket = dir.join("plugin.sock");
        let mut args = vec!["--socket", socket.to_str().unwrap()];
        args.extend_from_slice(extra);
        Served::spawn(dir, socket.clone(), &args)
    }

    /// As `--name NAME`, on the socket dockerd looks for.
    fn named(dir: &Path, name: &str, extra: &[&str]) -> Served {
        let socket = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
        let mut args = vec!["--name", name];
        args.extend_from_slice(extra);
        Served::spawn(dir, socket, &args)
    }

    fn spawn(dir: &Path, socket: PathBuf, args: &[&str]) -> Served {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("plugin.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_aufsctl"))
            .args(["-vv", "serve", "docker"])
            .args(args)
            .env_remove("AUFSCTL_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Served {
            child,
            socket,
            dir: dir.to_owned(),
        };
        let start = Instant::now();
        while UnixStream::connect(&s.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the plugin did not listen: {}",
                std::fs::read_to_string(dir.join("plugin.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// One POST, `Connection: close`; the status and the body.
    fn post(&self, method: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        write!(
            s,
            "POST /{method} HTTP/1.1\r\nHost: plugin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap_or_else(|e| {
            panic!(
                "{method}: reading the reply: {e}\nplugin log tail:\n{}",
                tail(&self.dir.join("plugin.log"))
            )
        });
        let end = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP reply");
        let head = String::from_utf8_lossy(&reply[..end]).to_string();
        let status = head[9..12].parse().unwrap();
        let mut body = reply[end + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = unchunk(&body);
        }
        (status, body)
    }

    /// A JSON call that must succeed; its reply.
    fn call(&self, method: &str, req: serde_json::Value) -> serde_json::Value {
        let (status, body) = self.post(method, req.to_string().as_bytes());
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "{method} {req}: {reply}");
        reply
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        unmount_under(&self.dir);
    }
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

/// Lazily unmounts everything mounted under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

/// What the Go build of the suite needs; `Err` says what is missing.
fn go_prerequisites() -> Result<(), String> {
    if Command::new("go").arg("version").output().is_err() {
        return Err("no Go toolchain (apt-get install golang-go)".into());
    }
    for (dir, package) in [
        (
            format!("{MOBY}/daemon/graphdriver/graphtest"),
            "golang-github-docker-docker-dev",
        ),
        (
            "/usr/share/gocode/src/github.com/vbatts/tar-split/tar/storage".into(),
            "golang-github-vbatts-tar-split-dev",
        ),
        (
            "/usr/share/gocode/src/gotest.tools/assert".into(),
            "golang-github-gotestyourself-gotest.tools-dev",
        ),
    ] {
        if !Path::new(&dir).is_dir() {
            return Err(format!("no {dir} (apt-get install {package})"));
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Builds `tests/go/graphtest` of the plugin crate in GOPATH mode against
/// Debian's moby source, into `gopath`; returns the test binary.
fn build_graphtest(gopath: &Path) -> PathBuf {
    let go = Path::new(env!("CARGO_MANIFEST_DIR")).join("../aufs-docker-plugin/tests/go");
    let pkg = gopath.join("src/aufsrs/graphtest");
    copy_tree(&go.join("graphtest"), &pkg);
    // Stand-ins for the two moby packages Debian leaves out (see each).
    copy_tree(&go.join("shim"), &gopath.join("src"));
    // Debian installs gotest.tools without its /v3 module suffix, which
    // GOPATH mode cannot map; the suffix is a link to it.
    std::fs::create_dir_all(gopath.join("src/gotest.tools")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/share/gocode/src/gotest.tools",
        gopath.join("src/gotest.tools/v3"),
    )
    .unwrap();
    let bin = gopath.join("graphtest.test");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    let out = Command::new("go")
        .args(["test", "-c", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&pkg)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPATH", format!("{}:/usr/share/gocode", gopath.display()))
        .env("GOCACHE", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building moby's graphtest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn moby_graphtest_passes_through_dockerds_plugin_client() {
    let name = "moby_graphtest_passes_through_dockerds_plugin_client";
    if !is_root() {
        eprintln!("{name}: skipped: the plugin mounts unions (FUSE, overlayfs), which needs root");
        return;
    }
    if let Err(why) = go_prerequisites() {
        eprintln!("{name}: skipped: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let bin = build_graphtest(&t.join("gopath"));
    let served = Served::start(t, &[]);
    let scratch = t.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = Command::new(&bin)
        .arg("-test.v")
        .env("AUFS_PLUGIN_SOCKET", &served.socket)
        // graphtest makes its roots under TMPDIR.
        .env("TMPDIR", &scratch)
        .current_dir(t)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(t.join("plugin.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "moby's graphtest failed:\n{stdout}\n{}\nplugin log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    for case in [
        "Setup",
        "CreateEmpty",
        "CreateBase",
        "CreateSnap",
        "128LayerRead",
        "DiffApply10Files",
        "Changes",
        "Teardown",
    ] {
        assert!(
            stdout.contains(&format!("--- PASS: TestPlugin{case} ")),
            "TestPlugin{case} did not pass:\n{stdout}"
        );
    }
    assert!(!stdout.contains("--- SKIP"), "{stdout}");
    drop(served);
    assert!(mounts_under(t).is_empty(), "{:?}", mounts_under(t));
}

#[test]
fn the_plugin_survives_its_own_kill_9_and_a_second_init() {
    let name = "the_plugin_survives_its_own_kill_9_and_a_second_init";
    if !is_root() {
        eprintln!("{name}: skipped: the plugin mounts unions (FUSE, overlayfs), which needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let home = t.join("data/aufs-rs");
    let init = serde_json::json!({"Home": home, "Opts": null, "UIDMaps": null, "GIDMaps": null});
    let p = Served::start(t, &[]);
    p.call("GraphDriver.Init", init.clone());
    p.call("GraphDriver.Create", serde_json::json!({"ID": "base"}));
    p.call(
        "GraphDriver.CreateReadWrite",
        serde_json::json!({"ID": "ctr", "Parent": "base"}),
    );
    let dir = p.call("GraphDriver.Get", serde_json::json!({"ID": "ctr"}))["Dir"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(Path::new(&dir), home.join("mnt/ctr"));
    std::fs::write(Path::new(&dir).join("kept"), "x").unwrap();
    p.kill9();

    // A running dockerd goes on calling the plugin that came back without
    // calling Init again: the plugin opens the root of the last Init itself.
    let p = Served::start(t, &[]);
    let again = p.call("GraphDriver.Get", serde_json::json!({"ID": "ctr"}))["Dir"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(again, dir, "Get gives the same path every time");
    assert_eq!(
        std::fs::read_to_string(Path::new(&dir).join("kept")).unwrap(),
        "x"
    );
    // dockerd starts again: Activate, Init, Capabilities, then Get/Put of
    // its old containers with no Exists first.
    let manifest = p.call("Plugin.Activate", serde_json::json!({}));
    assert_eq!(manifest["Implements"], serde_json::json!(["GraphDriver"]));
    p.call("GraphDriver.Init", init.clone());
    p.call("GraphDriver.Init", init);
    let caps = p.call("GraphDriver.Capabilities", serde_json::json!({}));
    assert_eq!(
        caps["Capabilities"]["ReproducesExactDiffs"],
        serde_json::json!(false)
    );
    let third = p.call("GraphDriver.Get", serde_json::json!({"ID": "ctr"}))["Dir"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(third, dir);
    // Three references now: before the kill, after it, after the Init.
    for _ in 0..2 {
        p.call("GraphDriver.Put", serde_json::json!({"ID": "ctr"}));
        assert!(mounts_under(&home)
            .iter()
            .any(|m| Path::new(m) == Path::new(&dir)));
    }
    p.call("GraphDriver.Put", serde_json::json!({"ID": "ctr"}));
    assert!(
        !mounts_under(&home)
            .iter()
            .any(|m| Path::new(m) == Path::new(&dir)),
        "the last Put unmounts"
    );
    let changes = p.call(
        "GraphDriver.Changes",
        serde_json::json!({"ID": "ctr", "Parent": "base"}),
    );
    assert_eq!(
        changes["Changes"],
        serde_json::json!([{"Path": "/kept", "Kind": 1}])
    );
    p.call("GraphDriver.Remove", serde_json::json!({"ID": "ctr"}));
    // Removing a layer already gone succeeds, as dockerd expects.
    p.call("GraphDriver.Remove", serde_json::json!({"ID": "ctr"}));
    p.call("GraphDriver.Remove", serde_json::json!({"ID": "base"}));
    let exists = p.call("GraphDriver.Exists", serde_json::json!({"ID": "base"}));
    assert_eq!(
        exists.get("Exists"),
        None,
        "false is left out, as Go's omitempty"
    );
    let (status, body) = p.post("GraphDriver.Get", br#"{"ID":"base"}"#);
    assert_eq!(status, 500);
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(err["Err"].as_str().unwrap().contains("base"), "{err}");
    drop(p);
    assert!(mounts_under(t).is_empty(), "{:?}", mounts_under(t));
}

/// A private dockerd 20.10 on the plugin `driver`, stopped on drop.
struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    fn start(dir: &Path, driver: &str) -> Dockerd {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .args(["--experimental", "--storage-driver", driver])
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
            .unwrap();
        let d = Dockerd {
            child,
            dir: dir.to_owned(),
        };
        let start = Instant::now();
        while !d.docker(&["info"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "dockerd did not start:\n{}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}\nplugin log tail:\n{}",
            String::from_utf8_lossy(&o.stderr),
            tail(&self.dir.join("plugin.log"))
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn stop(mut self) {
        self.terminate();
        std::mem::forget(self);
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// Checks a `docker save` tarball: each layer tar's sha256 is the image's
/// DiffID at its place and the config is named by its own digest.
fn verify_save(d: &Dockerd, image: &str, tarball: &Path) {
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
    let config = manifest[0]["Config"].as_str().unwrap();
    assert_eq!(
        format!("{}.json", sha256_hex(&unpacked.join(config))),
        config,
        "the config's digest"
    );
    let diff_ids: Vec<String> = serde_json::from_str(
        d.ok(&[
            "image",
            "inspect",
            image,
            "--format",
            "{{json .RootFS.Layers}}",
        ])
        .trim(),
    )
    .unwrap();
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(&unpacked.join(l.as_str().unwrap()))))
        .collect();
    assert_eq!(layers, diff_ids, "each layer's bytes hash to its DiffID");
}

/// A busybox-static root filesystem as a tarball.
fn busybox_rootfs(t: &Path) -> PathBuf {
    let root = t.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "true", "ls", "rm", "echo", "cat", "mkdir", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/os-release"), "NAME=busybox\n").unwrap();
    let tarball = t.join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap()
        .success());
    tarball
}

fn is_busybox_static() -> bool {
    Command::new("file")
        .arg("-L")
        .arg("/bin/busybox")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("statically linked"))
        .unwrap_or_else(|_| Path::new("/bin/busybox").exists())
}

#[test]
fn dockerd_20_10_runs_on_the_plugin() {
    let name = "dockerd_20_10_runs_on_the_plugin";
    if !is_root() {
        eprintln!("{name}: skipped: dockerd and the plugin's mounts need root");
        return;
    }
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("{name}: skipped: no dockerd (apt-get install docker.io)");
        return;
    }
    if !Path::new("/bin/busybox").exists() || !is_busybox_static() {
        eprintln!("{name}: skipped: no static /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A name of its own: the socket is where dockerd looks, shared by all.
    let plugin = format!("aufs-rs-test-{}", std::process::id());
    let init_file = PathBuf::from(format!("/run/docker/plugins/{plugin}.init.json"));
    let home = t.join("data").join(&plugin);
    let p = Served::named(t, &plugin, &[]);
    let d = Dockerd::start(t, &plugin);
    let info = d.ok(&["info", "--format", "{{.Driver}} {{json .DriverStatus}}"]);
    assert!(info.starts_with(&format!("{plugin} ")), "{info}");
    assert!(
        info.contains(&format!("[\"Root Dir\",\"{}\"]", home.display())),
        "{info}"
    );

    // A one-layer image from a rootfs tarball (ApplyDiff), a container that
    // writes and deletes files, and its changes as docker diff shows them.
    let rootfs = busybox_rootfs(t);
    d.ok(&["import", rootfs.to_str().unwrap(), "bb:1"]);
    d.ok(&[
        "run",
        "--name",
        "c1",
        "bb:1",
        "sh",
        "-c",
        "echo hi > /hello && rm /bin/ls && mkdir /made",
    ]);
    assert_eq!(
        d.ok(&["diff", "c1"]),
        "C /bin\nD /bin/ls\nA /hello\nA /made\n"
    );
    // Commit: a second layer (Diff of the container, ApplyDiff of it).
    d.ok(&["commit", "c1", "bb:2"]);
    assert_eq!(d.ok(&["run", "--rm", "bb:2", "cat", "/hello"]), "hi\n");
    assert!(!d
        .docker(&["run", "--rm", "bb:2", "ls", "/"])
        .status
        .success());
    let saved = t.join("bb2.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "bb:2"]);
    verify_save(&d, "bb:2", &saved);

    // docker load of the two-layer image into an empty store.
    d.ok(&["rm", "c1"]);
    d.ok(&["rmi", "bb:2", "bb:1"]);
    assert_eq!(std::fs::read_dir(home.join("layers")).unwrap().count(), 0);
    let loaded = d.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: bb:2"), "{loaded}");
    assert_eq!(d.ok(&["run", "--rm", "bb:2", "cat", "/hello"]), "hi\n");

    // A running container while the plugin is killed and comes back.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "long",
        "bb:2",
        "sh",
        "-c",
        "echo start > /log; while true; do sleep 1; done",
    ]);
    p.kill9();
    let p = Served::named(t, &plugin, &[]);
    assert_eq!(d.ok(&["exec", "long", "cat", "/log"]), "start\n");
    assert_eq!(d.ok(&["diff", "long"]), "A /log\n");
    // docker ps -s: the container's size is its rw layer's (DiffSize).
    let size = d.ok(&["ps", "-s", "--filter", "name=long", "--format", "{{.Size}}"]);
    assert!(size.starts_with("6B "), "{size}");
    // docker cp both ways, through the mounted union.
    let out = t.join("log.out");
    d.ok(&["cp", "long:/log", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "start\n");
    let into = t.join("into");
    std::fs::write(&into, "copied\n").unwrap();
    d.ok(&["cp", into.to_str().unwrap(), "long:/copied"]);
    assert_eq!(d.ok(&["exec", "long", "cat", "/copied"]), "copied\n");
    d.ok(&["stop", "-t", "1", "long"]);

    // dockerd restarts (Init again, no Exists before Get of old containers);
    // this time the plugin says its diffs are exact.
    d.stop();
    drop(p);
    let p = Served::named(t, &plugin, &["--exact-diffs"]);
    let d = Dockerd::start(t, &plugin);
    d.ok(&["start", "long"]);
    assert_eq!(d.ok(&["exec", "long", "cat", "/log"]), "start\n");
    d.ok(&["stop", "-t", "1", "long"]);
    d.ok(&["commit", "long", "bb:3"]);
    let saved3 = t.join("bb3.tar");
    d.ok(&["save", "-o", saved3.to_str().unwrap(), "bb:3"]);
    verify_save(&d, "bb:3", &saved3);

    // Nothing left: no layer, no mount.
    d.ok(&["rm", "long"]);
    d.ok(&["rmi", "bb:3", "bb:2"]);
    assert_eq!(
        std::fs::read_dir(home.join("layers")).unwrap().count(),
        0,
        "every layer removed"
    );
    assert!(mounts_under(&home).is_empty(), "{:?}", mounts_under(&home));
    d.stop();
    drop(p);
    let _ = std::fs::remove_file(init_file);
    assert!(mounts_under(t).is_empty(), "{:?}", mounts_under(t));
}

/// The plugin's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn hundreds_of_mb_stream_through_the_plugin_in_bounded_memory() {
    let name = "hundreds_of_mb_stream_through_the_plugin_in_bounded_memory";
    if !is_root() {
        eprintln!("{name}: skipped: the plugin's root is made as Docker's, owned by root");
        return;
    }
    const SIZE: u64 = 384 << 20;
    const CHUNK: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let p = Served::start(t, &[]);
    p.call(
        "GraphDriver.Init",
        serde_json::json!({"Home": t.join("data/aufs-rs")}),
    );
    p.call("GraphDriver.Create", serde_json::json!({"ID": "big"}));

    // ApplyDiff as moby's client sends an io.Reader: chunked, generated
    // here as it goes (a tar of one 384 MiB file of a non-zero pattern).
    let mut s = UnixStream::connect(&p.socket).unwrap();
    write!(
        s,
        "POST /GraphDriver.ApplyDiff?id=big&parent= HTTP/1.1\r\nHost: plugin\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("big.bin").unwrap();
    header.set_size(SIZE);
    header.set_mode(0o644);
    header.set_mtime(1_600_000_000);
    header.set_cksum();
    let mut send = |data: &[u8]| {
        write!(s, "{:x}\r\n", data.len()).unwrap();
        s.write_all(data).unwrap();
        s.write_all(b"\r\n").unwrap();
    };
    send(header.as_bytes());
    let pattern: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8 + 1).collect();
    for _ in 0..SIZE / CHUNK as u64 {
        send(&pattern);
    }
    send(&[0; 1024]);
    s.write_all(b"0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(&format!("\"Size\":{SIZE}")), "{reply}");

    // Diff back: the raw tarball, counted as it arrives, never kept.
    let mut s = UnixStream::connect(&p.socket).unwrap();
    let body = br#"{"ID":"big"}"#;
    write!(
        s,
        "POST /GraphDriver.Diff HTTP/1.1\r\nHost: plugin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut total = 0u64;
    let mut buf = vec![0; CHUNK];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total > SIZE + 1024, "{total} bytes of reply");
    let peak = peak_rss(p.child.id());
    eprintln!(
        "{name}: plugin peak RSS {} MiB for {} MiB each way",
        peak >> 20,
        SIZE >> 20
    );
    assert!(
        peak < 128 << 20,
        "the plugin peaked at {} MiB for a {} MiB layer each way",
        peak >> 20,
        SIZE >> 20
    );
    p.call("GraphDriver.Remove", serde_json::json!({"ID": "big"}));
}

#[test]
fn a_socket_passed_by_systemd_is_served() {
    let name = "a_socket_passed_by_systemd_is_served";
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("{name}: skipped: no systemd-socket-activate (apt-get install systemd)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("activated.sock");
    let log = std::fs::File::create(tmp.path().join("plugin.log")).unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg(env!("CARGO_BIN_EXE_aufsctl"))
        .args(["-vv", "serve", "docker", "--name", "aufs-rs-activated"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first connection starts the plugin on the passed descriptor.
    let served = Served {
        child: Command::new("true").spawn().unwrap(),
        socket: socket.clone(),
        dir: tmp.path().to_owned(),
    };
    let manifest = served.call("Plugin.Activate", serde_json::json!({}));
    assert_eq!(manifest["Implements"], serde_json::json!(["GraphDriver"]));
    let caps = served.call("GraphDriver.Capabilities", serde_json::json!({}));
    assert_eq!(
        caps["Capabilities"]["ReproducesExactDiffs"],
        serde_json::json!(false)
    );
    let log = std::fs::read_to_string(tmp.path().join("plugin.log")).unwrap();
    assert!(
        !Path::new("/run/docker/plugins/aufs-rs-activated.sock").exists(),
        "no socket of its own when one is passed: {log}"
    );
    drop(served);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

#[test]
fn an_install_of_dockers_own_aufs_driver_is_adopted() {
    let name = "an_install_of_dockers_own_aufs_driver_is_adopted";
    if !is_root() {
        eprintln!("{name}: skipped: dockerd and the plugin's mounts need root");
        return;
    }
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("{name}: skipped: no dockerd (apt-get install docker.io)");
        return;
    }
    if !Path::new("/bin/busybox").exists() || !is_busybox_static() {
        eprintln!("{name}: skipped: no static /bin/busybox (apt-get install busybox-static)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    // An install as Docker's aufs driver leaves it: made here by dockerd on
    // the plugin (the same layout), then named as the aufs driver names it.
    let first = format!("aufs-rs-made-{}", std::process::id());
    let p = Served::named(t, &first, &[]);
    let d = Dockerd::start(t, &first);
    d.ok(&["import", busybox_rootfs(t).to_str().unwrap(), "bb:1"]);
    d.ok(&[
        "run",
        "--name",
        "keep",
        "bb:1",
        "sh",
        "-c",
        "echo kept > /f",
    ]);
    d.stop();
    drop(p);
    std::fs::rename(data.join(&first), data.join("aufs")).unwrap();
    std::fs::rename(data.join("image").join(&first), data.join("image/aufs")).unwrap();
    for c in std::fs::read_dir(data.join("containers")).unwrap() {
        let config = c.unwrap().path().join("config.v2.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        v["Driver"] = serde_json::json!("aufs");
        std::fs::write(&config, v.to_string()).unwrap();
    }
    let _ = std::fs::remove_file(format!("/run/docker/plugins/{first}.init.json"));

    let ctl = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_aufsctl"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let root = data.to_str().unwrap();
    assert!(ctl(&["legacy", "images", "--docker-root", root]).starts_with("bb:1 "));
    let plugin = format!("aufs-rs-adopt-{}", std::process::id());
    let done: serde_json::Value = serde_json::from_str(&ctl(&[
        "--json",
        "legacy",
        "adopt",
        "--docker-root",
        root,
        "--name",
        &plugin,
    ]))
    .unwrap();
    assert_eq!(done["moved_store"], true, "{done}");
    assert_eq!(done["containers"].as_array().unwrap().len(), 1, "{done}");
    // Again: nothing left to do, and no harm.
    let again: serde_json::Value = serde_json::from_str(&ctl(&[
        "--json",
        "legacy",
        "adopt",
        "--docker-root",
        root,
        "--name",
        &plugin,
    ]))
    .unwrap();
    assert_eq!(again["moved_store"], false, "{again}");
    assert_eq!(again["containers"], serde_json::json!([]), "{again}");

    let p = Served::named(t, &plugin, &[]);
    let d = Dockerd::start(t, &plugin);
    assert!(d
        .ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .contains("bb:1"));
    assert_eq!(d.ok(&["diff", "keep"]), "A /f\n");
    d.ok(&["start", "-a", "keep"]);
    assert_eq!(
        d.ok(&["run", "--rm", "bb:1", "cat", "/etc/os-release"]),
        "NAME=busybox\n"
    );
    d.ok(&["rm", "keep"]);
    d.ok(&["rmi", "bb:1"]);
    d.stop();
    drop(p);
    let _ = std::fs::remove_file(format!("/run/docker/plugins/{plugin}.init.json"));
    assert!(mounts_under(t).is_empty(), "{:?}", mounts_under(t));
}
