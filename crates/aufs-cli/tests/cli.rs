//! `aufsctl` end to end on a temp root, as scripts drive it. No root needed.

mod common;

use common::Ctl;
use std::path::Path;
use std::process::{Command, Output};

#[test]
fn status_plain_and_json() {
    let c = Ctl::new();
    c.ok(&["create", "1"]);
    let out = c.ok(&["status"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("Root Dir: {}", c.root.display()));
    assert!(lines[1].starts_with("Backing Filesystem: "));
    assert_eq!(lines[2], "Dirs: 1");
    assert!(lines[3] == "Dirperm1 Supported: false" || lines[3] == "Dirperm1 Supported: true");
    assert!(lines[4] == "Mount Backend: fuse" || lines[4] == "Mount Backend: kernel");
    assert_eq!(lines[5], "Supports d_type: true");
    assert!(lines[6].starts_with("Supports xattrs: "));
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["--json", "status"])).unwrap();
    assert_eq!(v["root_dir"], c.root.to_str().unwrap());
    assert_eq!(v["dirs"], 1);
    assert!(v["dirperm1_supported"].is_boolean());
    assert!(v["backing_filesystem"].is_string());
    assert!(["fuse", "kernel"].contains(&v["mount_backend"].as_str().unwrap()));
}

#[test]
fn root_is_created_0700_with_docker_layout() {
    use std::os::unix::fs::PermissionsExt;
    let c = Ctl::new();
    c.ok(&["ls"]);
    let mode = std::fs::metadata(&c.root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    for d in ["layers", "diff", "mnt"] {
        assert!(c.root.join(d).is_dir());
    }
}

#[test]
fn create_ls_exists_rm() {
    let c = Ctl::new();
    assert_eq!(c.ok(&["create", "base"]), "");
    c.ok(&["create", "mid", "--parent", "base"]);
    c.ok(&["create-rw", "top", "--parent", "mid"]);
    assert_eq!(c.ok(&["ls"]), "base -\nmid base\ntop mid\n");
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["ls", "--json"])).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"id": "base", "parent": null},
            {"id": "mid", "parent": "base"},
            {"id": "top", "parent": "mid"}
        ])
    );
    // The on-disk layout is Docker's.
    assert_eq!(
        std::fs::read_to_string(c.root.join("layers/top")).unwrap(),
        "mid\nbase\n"
    );
    assert_eq!(
        std::fs::read_to_string(c.root.join("layers/base")).unwrap(),
        ""
    );
    c.ok(&["exists", "top"]);
    let o = c.run(&["exists", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    c.ok(&["rm", "top"]);
    assert!(!c.root.join("diff/top").exists());
    assert!(!c.root.join("mnt/top").exists());
    assert_eq!(c.ok(&["ls"]), "base -\nmid base\n");
}

#[test]
fn errors_name_their_cause() {
    let c = Ctl::new();
    c.ok(&["create", "a"]);
    c.ok(&["create", "b", "--parent", "a"]);
    assert!(c
        .fails(1, &["create", "a"])
        .contains("layer a already exists"));
    assert!(c
        .fails(1, &["create", "x", "--parent", "ghost"])
        .contains("parent ghost does not exist"));
    assert!(c
        .fails(1, &["rm", "ghost"])
        .contains("layer ghost does not exist"));
    assert!(c
        .fails(1, &["rm", "a"])
        .contains("layer a has child layers: b"));
    assert!(c.fails(2, &["create", "a/b"]).contains("contains `/`"));
    assert!(c.fails(2, &["create", ".."]).contains("not allowed"));
    let long = "x".repeat(247);
    assert!(c.fails(2, &["create", &long]).contains("247 bytes"));
    c.ok(&["create", &"y".repeat(246)]);
    c.fails(2, &["frobnicate"]);
    c.fails(2, &["create"]);
}

#[test]
fn real_docker_ids_work() {
    let c = Ctl::new();
    let hex = "4f5e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";
    c.ok(&["create", hex]);
    c.ok(&["create-rw", &format!("{hex}-init"), "--parent", hex]);
    c.ok(&["exists", &format!("{hex}-init")]);
}

#[test]
fn kernel_backend_without_aufs_fails_every_command_at_start() {
    let has_aufs = std::fs::read_to_string("/proc/filesystems")
        .unwrap()
        .contains("aufs");
    if has_aufs {
        eprintln!("skipping: this kernel has aufs, the refusal cannot happen here");
        return;
    }
    let c = Ctl::new();
    for args in [
        &["--backend", "kernel", "status"][..],
        &["--backend", "kernel", "ls"],
        &["--backend", "kernel", "create", "a"],
    ] {
        let e = c.fails(1, args);
        assert!(e.contains("AUFS was not found in /proc/filesystems"), "{e}");
    }
    let o = c.run(&["--backend", "auto", "status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Mount Backend: fuse"));
}

#[test]
fn racing_creates_across_processes_exactly_one_wins() {
    let c = Ctl::new();
    c.ok(&["ls"]);
    for round in 0..3 {
        let id = format!("race{round}");
        let children: Vec<_> = (0..8)
            .map(|_| {
                c.cmd()
                    .args(["create", &id])
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<Output> = children
            .into_iter()
            .map(|ch| ch.wait_with_output().unwrap())
            .collect();
        let wins = outs.iter().filter(|o| o.status.success()).count();
        assert_eq!(wins, 1, "round {round}");
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
        }
    }
    assert_eq!(c.ok(&["ls"]).lines().count(), 3);
}

#[test]
fn root_from_env_and_relative_root() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_aufsctl"))
        .env("AUFSCTL_ROOT", tmp.path().join("envroot"))
        .args(["create", "z"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("envroot/layers/z").exists());
    let o = Command::new(env!("CARGO_BIN_EXE_aufsctl"))
        .current_dir(tmp.path())
        .args(["--root", "rel", "--json", "status"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let root = Path::new(v["root_dir"].as_str().unwrap());
    assert!(root.is_absolute() && root.ends_with("rel"));
}

#[test]
fn verbose_logs_go_to_stderr_never_stdout() {
    let c = Ctl::new();
    let o = c.run(&["-vvv", "create", "l"]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("storage_driver"));
}

#[test]
fn mount_of_a_parentless_layer_is_its_diff_dir_and_counts_references() {
    let c = Ctl::new();
    c.ok(&["create", "a"]);
    let p = c.ok(&["mount", "a"]);
    let expected = std::fs::canonicalize(c.root.join("diff/a")).unwrap();
    assert_eq!(p.trim_end(), expected.to_str().unwrap());
    c.ok(&["mount", "a"]);
    assert_eq!(
        std::fs::read_to_string(c.root.join("refs/a")).unwrap(),
        "2\n"
    );
    c.ok(&["unmount", "a"]);
    c.ok(&["unmount", "a"]);
    assert!(!c.root.join("refs/a").exists());
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["--json", "mount", "a"])).unwrap();
    assert_eq!(v["path"], expected.to_str().unwrap());
    c.ok(&["cleanup"]);
    assert!(
        !c.root.join("refs/a").exists(),
        "cleanup forgets references"
    );
    assert!(c
        .fails(1, &["mount", "ghost"])
        .contains("layer ghost does not exist"));
}

/// A small tree made with the system's tools, in several tar formats.
fn gnu_tar(format: &str, dir: &Path) -> Vec<u8> {
    let src = dir.join(format!("src-{format}"));
    std::fs::create_dir_all(src.join("etc/deep/er")).unwrap();
    std::fs::write(src.join("etc/hostname"), "box\n").unwrap();
    std::fs::write(src.join("etc/deep/er/f"), vec![b'z'; 5000]).unwrap();
    std::fs::write(src.join(".wh.old"), "").unwrap();
    std::os::unix::fs::symlink("etc/hostname", src.join("link")).unwrap();
    std::fs::hard_link(src.join("etc/hostname"), src.join("hard")).unwrap();
    if format != "ustar" {
        // ustar cannot hold a name this long.
        std::fs::write(src.join(format!("long-{}", "n".repeat(150))), "long name\n").unwrap();
    }
    let out = Command::new("tar")
        .arg(format!("--format={format}"))
        .args(["--sort=name", "-C"])
        .arg(&src)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn apply_then_diff_is_byte_identical_for_gnu_pax_and_ustar_tarballs() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    for (i, format) in ["gnu", "pax", "ustar"].iter().enumerate() {
        let input = gnu_tar(format, tmp.path());
        let id = format!("l{i}");
        c.ok(&["create", &id]);
        let file = tmp.path().join(format!("{format}.tar"));
        std::fs::write(&file, &input).unwrap();
        let size: u64 = c
            .ok(&["apply", &id, file.to_str().unwrap()])
            .trim()
            .parse()
            .unwrap();
        assert!(size > 5000, "{format}: size {size}");
        let out = c.cmd().args(["diff", &id]).output().unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout == input,
            "{format}: diff is not the applied tarball"
        );
        assert_eq!(
            c.ok(&["diff-size", &id]).trim().parse::<u64>().unwrap(),
            size
        );
    }
}

#[test]
fn apply_from_stdin_gzip_and_zstd_and_diff_to_file() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    let input = gnu_tar("gnu", tmp.path());
    for (i, tool) in ["gzip", "zstd"].iter().enumerate() {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("skipping {tool}: not installed");
            continue;
        }
        let mut child = Command::new(tool)
            .args(["-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = input.clone();
        let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
        let compressed = child.wait_with_output().unwrap().stdout;
        w.join().unwrap();
        let id = format!("c{i}");
        c.ok(&["create", &id]);
        let mut ch = c
            .cmd()
            .args(["apply", &id, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut ch.stdin.take().unwrap(), &compressed).unwrap();
        let o = ch.wait_with_output().unwrap();
        assert!(o.status.success(), "{tool}");
        let out_file = tmp.path().join(format!("{tool}.out.tar"));
        c.ok(&["diff", &id, "-o", out_file.to_str().unwrap()]);
        assert!(
            std::fs::read(&out_file).unwrap() == input,
            "{tool}: not byte-identical"
        );
        // The same bytes with stdin redirected from a file (mapped, not read).
        let redirected = tmp.path().join(format!("{tool}.layer"));
        std::fs::write(&redirected, &compressed).unwrap();
        let id = format!("r{i}");
        c.ok(&["create", &id]);
        let o = c
            .cmd()
            .args(["--json", "apply", &id])
            .stdin(std::fs::File::open(&redirected).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{tool}: {o:?}");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            report["diff_id"].as_str().unwrap(),
            format!(
                "sha256:{}",
                sha256_hex(&tmp.path().join("input.tar"), &input)
            ),
            "{tool}"
        );
        c.ok(&["diff", &id, "-o", out_file.to_str().unwrap()]);
        assert!(
            std::fs::read(&out_file).unwrap() == input,
            "{tool}: redirected stdin: not byte-identical"
        );
    }
}

#[test]
fn changes_plain_and_json() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("base.tar");
    std::fs::write(&file, gnu_tar("gnu", tmp.path())).unwrap();
    c.ok(&["create", "base"]);
    c.ok(&["apply", "base", file.to_str().unwrap()]);
    c.ok(&["create-rw", "top", "--parent", "base"]);
    std::fs::create_dir(c.diff("top").join("etc")).unwrap();
    std::fs::write(c.diff("top").join("etc/hostname"), "other\n").unwrap();
    std::fs::write(c.diff("top").join("etc/new"), "n\n").unwrap();
    std::fs::write(c.diff("top").join(".wh.link"), "").unwrap();
    let out = c.ok(&["changes", "top"]);
    assert_eq!(out, "C /etc\nC /etc/hostname\nA /etc/new\nD /link\n");
    let v: serde_json::Value = serde_json::from_str(&c.ok(&["--json", "changes", "top"])).unwrap();
    assert_eq!(v[0], serde_json::json!({"path": "/etc", "kind": "C"}));
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert!(!out.contains(".wh."));
}

#[test]
fn hostile_or_broken_tarballs_fail_cleanly() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    c.ok(&["create", "x"]);
    std::fs::write(c.diff("x").join("keep"), "k").unwrap();
    let bad = tmp.path().join("bad.tar");
    std::fs::write(
        &bad,
        b"this is not a tarball at all, just text that is long enough",
    )
    .unwrap();
    let e = c.fails(1, &["apply", "x", bad.to_str().unwrap()]);
    assert!(e.contains("layer x"), "{e}");
    let missing = tmp.path().join("missing.tar");
    let e = c.fails(1, &["apply", "x", missing.to_str().unwrap()]);
    assert!(e.contains("missing.tar"), "{e}");
    assert_eq!(
        std::fs::read_to_string(c.diff("x").join("keep")).unwrap(),
        "k"
    );
    let e = c.fails(1, &["apply", "ghost", bad.to_str().unwrap()]);
    assert!(e.contains("layer ghost does not exist"), "{e}");
}

/// sha256 of `data` by coreutils' `sha256sum` (written to `scratch` first).
fn sha256_hex(scratch: &std::path::Path, data: &[u8]) -> String {
    std::fs::write(scratch, data).unwrap();
    let o = Command::new("sha256sum").arg(scratch).output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()[..64].to_string()
}

/// `docker save` layout made with GNU tar: two layers, config named by its
/// digest, manifest.json. `aufsctl import` prints the top layer (the chain
/// id's hex), chains the parents, and skips what is present.
#[test]
fn import_of_a_docker_save_tarball() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let img = t.join("img");
    let mut diff_ids = Vec::new();
    let mut layers = Vec::new();
    for (i, body) in ["base\n", "app\n"].iter().enumerate() {
        let src = t.join(format!("src{i}"));
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/os-release"), body).unwrap();
        std::fs::create_dir_all(img.join(format!("l{i}"))).unwrap();
        let layer = img.join(format!("l{i}/layer.tar"));
        let st = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&layer)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let bytes = std::fs::read(&layer).unwrap();
        diff_ids.push(format!("sha256:{}", sha256_hex(&t.join("scratch"), &bytes)));
        layers.push(format!("l{i}/layer.tar"));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256_hex(&t.join("scratch"), &config));
    std::fs::write(img.join(&config_name), &config).unwrap();
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": ["app:1"], "Layers": layers}]);
    std::fs::write(img.join("manifest.json"), manifest.to_string()).unwrap();
    let image = t.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&image)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());

    let base = diff_ids[0].trim_start_matches("sha256:").to_string();
    let top = sha256_hex(
        &t.join("scratch"),
        format!("{} {}", diff_ids[0], diff_ids[1]).as_bytes(),
    );
    let out = c.ok(&["import", image.to_str().unwrap()]);
    assert_eq!(out.trim_end(), top);
    let ls = c.ok(&["ls"]);
    assert!(ls.contains(&format!("{top} {base}")), "{ls}");
    assert_eq!(
        std::fs::read_to_string(c.diff(&top).join("etc/os-release")).unwrap(),
        "app\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&c.ok(&["--json", "import", image.to_str().unwrap()])).unwrap();
    assert_eq!(v["id"], top.as_str());
    assert_eq!(v["layers"][0]["created"], false, "already present: {v}");
    // A missing image is one clean error line.
    let e = c.fails(1, &["import", t.join("nope.tar").to_str().unwrap()]);
    assert!(
        e.starts_with("aufsctl: error:") && e.contains("nope.tar"),
        "{e}"
    );

    // Export, both ways, and import into another root: the same layers.
    for (args, out) in [
        (vec![], t.join("saved.tar")),
        (vec!["--oci"], t.join("saved-oci")),
    ] {
        let mut cmd = vec!["export", top.as_str(), "-o", out.to_str().unwrap()];
        cmd.extend(args);
        assert_eq!(c.ok(&cmd), "", "export prints nothing");
        let other = Ctl::new();
        assert_eq!(other.ok(&["import", out.to_str().unwrap()]).trim_end(), top);
    }
    let e = c.fails(
        1,
        &["export", "ghost", "-o", t.join("g.tar").to_str().unwrap()],
    );
    assert!(e.contains("ghost"), "{e}");
}
