//! A Docker install that used the aufs driver, read in place: its images,
//! its containers and its images exported with their original bytes;
//! and the same install turned hostile.

mod common;

use aufs_image::{Digest, DockerRoot, LegacyContainer};
use camino::{Utf8Path, Utf8PathBuf};
use common::*;
use serde_json::json;

#[test]
fn a_docker_install_is_read_in_place_and_exported_with_its_original_bytes() {
    let s = store();
    let layers = layers();
    let docker = s.dir.join("docker");
    let install = docker_install(&docker, &layers);
    let id = install.id.clone();
    let root = DockerRoot::open(&docker).unwrap();

    let images = root.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, id);
    assert_eq!(images[0].repo_tags, vec!["app:latest".to_string()]);
    assert_eq!(images[0].size, 100 + 101);
    assert_eq!(
        root.containers().unwrap(),
        vec![LegacyContainer {
            name: "web".into(),
            id: install.container.clone(),
            image: "app".into(),
            rw_layer: install.mount_id.clone(),
        }]
    );
    assert_eq!(root.resolve(&id.hex()[..8]).unwrap().id, id);
    assert_eq!(root.resolve("app").unwrap().id, id);
    assert!(root.resolve("nope:1").is_err());

    // The export carries the original layer bytes, the tags, and imports.
    let out = s.dir.join("legacy.tar");
    root.export("app:latest", &out).unwrap();
    let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let mut entries = std::collections::HashMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        entries.insert(e.path().unwrap().to_string_lossy().into_owned(), body);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["RepoTags"], json!(["app:latest"]));
    for (i, l) in layers.iter().enumerate() {
        let name = manifest[0]["Layers"][i].as_str().unwrap();
        assert!(entries[name] == *l, "layer {i} byte for byte");
    }
    let report = run(&s, &out).unwrap();
    assert_eq!(report.top, expected_ids(&layers)[1]);

    // A layer changed in the install no longer matches its record.
    std::fs::write(
        docker
            .join("aufs/diff")
            .join(&install.caches[1])
            .join("app/run"),
        "no\n",
    )
    .unwrap();
    let err = root.export("app", &s.dir.join("changed.tar")).unwrap_err();
    assert!(err.to_string().contains("app/run"), "{err}");
    assert!(!s.dir.join("changed.tar").exists());
    // Not a Docker install.
    let err = DockerRoot::open(&s.dir.join("aufs")).unwrap_err();
    assert!(err.to_string().contains("no image/aufs"), "{err}");
    // One whose image/aufs is a symlink is refused as such.
    let linked = s.dir.join("linked");
    std::fs::create_dir_all(linked.join("image")).unwrap();
    std::os::unix::fs::symlink(docker.join("image/aufs"), linked.join("image/aufs")).unwrap();
    let err = DockerRoot::open(&linked).unwrap_err();
    assert!(
        err.to_string()
            .contains("a symlink, which is not followed here"),
        "{err}"
    );
}

/// The error of `f`, which must fail, promptly; its message may not hold
/// control characters, whatever the install holds.
fn refused<T: std::fmt::Debug + Send + 'static>(
    f: impl FnOnce() -> Result<T, aufs_image::ImageError> + Send + 'static,
) -> String {
    let err = promptly(f).expect_err("refused").to_string();
    assert!(!err.chars().any(char::is_control), "{err:?}");
    err
}

fn hostile() -> (Store, Utf8PathBuf, Install) {
    let s = store();
    let docker = s.dir.join("docker");
    let install = docker_install(&docker, &layers());
    (s, docker, install)
}

fn export_of(s: &Store, docker: &Utf8Path) -> String {
    let root = DockerRoot::open(docker).unwrap();
    let out = s.dir.join("out.tar");
    let err = refused(move || root.export("app", &out));
    assert!(!s.dir.join("out.tar").exists());
    err
}

/// Rewrites layer `i`'s tar-split records with `edit`.
fn edit_tar_split(
    docker: &Utf8Path,
    install: &Install,
    i: usize,
    mut edit: impl FnMut(&mut serde_json::Value),
) {
    let path = install.layer_file(docker, i, "tar-split.json.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()),
        &mut text,
    )
    .unwrap();
    let lines: String = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            edit(&mut v);
            format!("{v}\n")
        })
        .collect();
    std::fs::write(path, gzip(lines.as_bytes())).unwrap();
}

#[test]
fn a_diff_dir_symlinked_out_of_the_docker_root_is_refused() {
    let (s, docker, install) = hostile();
    // The layer's files are elsewhere (say, a tree the caller may not
    // export); the install names them through a symlink.
    let diff = docker.join("aufs/diff").join(&install.caches[1]);
    let elsewhere = s.dir.join("elsewhere");
    std::fs::rename(&diff, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &diff).unwrap();
    let err = export_of(&s, &docker);
    assert!(
        err.contains(&format!("aufs/diff/{}", install.caches[1])),
        "{err}"
    );

    // Likewise a layer's metadata dir.
    let (s, docker, install) = hostile();
    let layer = install.layer_file(&docker, 0, "");
    let moved = s.dir.join("meta-elsewhere");
    std::fs::rename(&layer, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, layer.as_str().trim_end_matches('/')).unwrap();
    let err = export_of(&s, &docker);
    assert!(err.contains(install.chains[0].hex()), "{err}");
}

#[test]
fn a_file_record_without_its_crc_is_refused() {
    let (s, docker, install) = hostile();
    edit_tar_split(&docker, &install, 1, |v| {
        if v["type"] == 1 {
            v["payload"] = serde_json::Value::Null;
        }
    });
    let err = export_of(&s, &docker);
    assert!(err.contains("without its CRC-64"), "{err}");
}

#[test]
fn a_layer_that_does_not_rebuild_to_its_diff_id_is_refused_without_its_digest() {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let (s, docker, install) = hostile();
    // Every file matches its record; one header byte (mtime) differs.
    let layers = layers();
    let mut rebuilt = layers[1].clone();
    rebuilt[140] ^= 1;
    let mut first = true;
    edit_tar_split(&docker, &install, 1, |v| {
        if v["type"] == 2 && first {
            first = false;
            let mut seg = STANDARD.decode(v["payload"].as_str().unwrap()).unwrap();
            seg[140] ^= 1;
            v["payload"] = STANDARD.encode(seg).into();
        }
    });
    let err = export_of(&s, &docker);
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains(Digest::of(&layers[1]).hex()), "{err}");
    assert!(
        !err.contains(Digest::of(&rebuilt).hex()),
        "the digest of what was rebuilt is not told: {err}"
    );

    // The same for a config that is not its id.
    let (_s, docker, install) = hostile();
    let config = docker
        .join("image/aufs/imagedb/content/sha256")
        .join(install.id.hex());
    let mut bytes = std::fs::read(&config).unwrap();
    bytes.push(b' ');
    std::fs::write(&config, &bytes).unwrap();
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.images());
    assert!(err.contains(install.id.hex()), "{err}");
    assert!(!err.contains(Digest::of(&bytes).hex()), "{err}");
}

#[test]
fn metadata_that_is_not_a_small_regular_file_is_refused_unread() {
    // A symlink to /dev/zero (read whole, it grows until memory runs out),
    // a FIFO (opened, it waits forever), a sparse file past the cap.
    let fifo = |p: &Utf8Path| {
        std::fs::remove_file(p).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p.as_std_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    };
    let zero = |p: &Utf8Path| {
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    };
    let huge = |p: &Utf8Path| {
        std::fs::File::create(p).unwrap().set_len(17 << 20).unwrap();
    };
    type Hostile = fn(&Utf8Path);
    let cases: [(&str, Hostile, &str); 5] = [
        ("size", zero, "image"),
        ("cache-id", fifo, "export"),
        ("tar-split.json.gz", fifo, "export"),
        ("tar-split.json.gz", zero, "export"),
        ("size", huge, "image"),
    ];
    for (file, make, op) in cases {
        let (s, docker, install) = hostile();
        let path = install.layer_file(&docker, 1, file);
        make(&path);
        let err = if op == "image" {
            let root = DockerRoot::open(&docker).unwrap();
            refused(move || root.images())
        } else {
            export_of(&s, &docker)
        };
        assert!(err.contains(file), "{file}: {err}");
    }
    // Files of the install's own lists.
    let (_s, docker, install) = hostile();
    zero(&docker.join("image/aufs/repositories.json"));
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.images());
    assert!(err.contains("repositories.json"), "{err}");
    let mount_id = docker
        .join("image/aufs/layerdb/mounts")
        .join(&install.container)
        .join("mount-id");
    fifo(&mount_id);
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.containers());
    assert!(err.contains("mount-id"), "{err}");
}

#[test]
fn a_tar_split_line_past_its_cap_is_refused() {
    // One line of 64 MiB in 64 KiB of gzip: read whole, each such line
    // costs its size in memory (a 1.5 MB file, 1.5 GiB).
    let (s, docker, install) = hostile();
    let mut line = br#"{"type":2,"payload":""#.to_vec();
    line.resize(line.len() + (64 << 20), b'A');
    line.extend_from_slice(b"\"}\n");
    let gz = gzip(&line);
    assert!(gz.len() < 1 << 20);
    std::fs::write(install.layer_file(&docker, 0, "tar-split.json.gz"), gz).unwrap();
    let err = export_of(&s, &docker);
    assert!(err.contains("tar-split line 1: longer than"), "{err}");
}

#[test]
fn ids_and_names_that_are_not_dockers_are_refused() {
    let config = |docker: &Utf8Path, install: &Install| {
        docker
            .join("containers")
            .join(&install.container)
            .join("config.v2.json")
    };
    let set = |path: &Utf8Path, key: &str, value: &str| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        v[key] = value.into();
        std::fs::write(path, v.to_string()).unwrap();
    };
    // A name that would clear the terminal of whoever lists containers.
    let (_s, docker, install) = hostile();
    set(&config(&docker, &install), "Name", "/web\u{1b}[2J");
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.containers());
    assert!(err.contains("not a container name"), "{err}");
    // An image reference with a newline: a second, forged line.
    let (_s, docker, install) = hostile();
    set(&config(&docker, &install), "Image", "x");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config(&docker, &install)).unwrap()).unwrap();
    v["Config"]["Image"] = "app\nevil c0 app rw".into();
    std::fs::write(config(&docker, &install), v.to_string()).unwrap();
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.containers());
    assert!(err.contains("not an image reference"), "{err}");
    // A mount id that is not hex.
    let (_s, docker, install) = hostile();
    std::fs::write(
        docker
            .join("image/aufs/layerdb/mounts")
            .join(&install.container)
            .join("mount-id"),
        "rw\u{7}123",
    )
    .unwrap();
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.containers());
    assert!(err.contains("mount-id: not a Docker id"), "{err}");
    // A cache id that is not hex, though it names a dir of aufs/diff.
    let (s, docker, install) = hostile();
    std::fs::rename(
        docker.join("aufs/diff").join(&install.caches[0]),
        docker.join("aufs/diff/cache0"),
    )
    .unwrap();
    std::fs::write(install.layer_file(&docker, 0, "cache-id"), "cache0").unwrap();
    let err = export_of(&s, &docker);
    assert!(err.contains("cache-id: not a Docker id"), "{err}");
    // A tag with control characters.
    let (_s, docker, install) = hostile();
    let repos = json!({"Repositories": {"app": {"app:\u{1b}[31mlatest": install.id.as_str()}}});
    std::fs::write(
        docker.join("image/aufs/repositories.json"),
        repos.to_string(),
    )
    .unwrap();
    let root = DockerRoot::open(&docker).unwrap();
    let err = refused(move || root.images());
    assert!(err.contains("not an image reference"), "{err}");
    // A container dir that is not an id is not a container.
    let (_s, docker, install) = hostile();
    std::fs::rename(
        docker.join("containers").join(&install.container),
        docker.join("containers/web\u{1b}[2J"),
    )
    .unwrap();
    let root = DockerRoot::open(&docker).unwrap();
    assert_eq!(promptly(move || root.containers()).unwrap(), vec![]);
}
