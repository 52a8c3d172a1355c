//! Imports of `docker save` tarballs and OCI layouts (directory and tar)
//! made here, into a store on the real filesystem: layers named by chain
//! id, parents chained, content applied, repeats skipped, and every digest
//! mismatch refused with nothing left behind.

use std::io::Write as _;
use std::sync::Arc;

use aufs_driver::{Driver, DriverConfig, Ports};
use aufs_image::{chain_ids, import, Digest, ImageError, ImportReport};
use aufs_model::LayerId;
use aufs_ports::fakes::FakeUnionBackend;
use aufs_ports::{BackendKind, InProcessLocks};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;

struct Store {
    _tmp: tempfile::TempDir,
    dir: Utf8PathBuf,
    driver: Driver,
}

/// A driver over the real filesystem at `root` (mounts faked: none needed).
fn driver_at(root: &Utf8Path) -> Driver {
    Driver::init(
        DriverConfig::new(root.to_owned()),
        Ports {
            archive: Arc::new(aufs_archive::DiskArchive),
            fs: Arc::new(aufs_linux::LinuxFilesystem::new()),
            host: Arc::new(aufs_linux::LinuxHost::new()),
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap()
}

fn store() -> Store {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(tmp.path().to_path_buf()).unwrap();
    let driver = driver_at(&dir.join("aufs"));
    Store {
        _tmp: tmp,
        dir,
        driver,
    }
}

/// A layer tarball holding `files`.
fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[("etc/os-release", "base\n"), ("bin/sh", "#!sh\n")]),
        layer(&[("etc/os-release", "app\n"), ("app/run", "go\n")]),
    ]
}

fn config(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A tarball of `(name, bytes)` entries.
fn tarball(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, body) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, name, &body[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// What `docker save` writes (legacy layout: `<dir>/layer.tar`, config
/// named by its digest, `manifest.json` last).
fn docker_save(layers: &[Vec<u8>]) -> Vec<u8> {
    let config = config(layers);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut entries = Vec::new();
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        entries.push((name.clone(), l.clone()));
        names.push(name);
    }
    entries.push((config_name.clone(), config));
    let manifest = json!([{"Config": config_name, "RepoTags": ["app:latest"], "Layers": names}]);
    entries.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    tarball(&entries)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An OCI layout's files: gzip'd layer blobs, config, manifest, index.
fn oci_files(layers: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let mut blob = |data: Vec<u8>| {
        let d = Digest::of(&data);
        files.push((format!("blobs/sha256/{}", d.hex()), data.clone()));
        (d, data.len())
    };
    let layer_descs: Vec<_> = layers
        .iter()
        .map(|l| {
            let (d, size) = blob(gzip(l));
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.as_str(), "size": size})
        })
        .collect();
    let (cd, csize) = blob(config(layers));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.as_str(), "size": csize},
        "layers": layer_descs,
    }))
    .unwrap();
    let (md, msize) = blob(manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.as_str(), "size": msize}],
    }))
    .unwrap();
    files.push(("index.json".into(), index));
    files
}

fn write_dir(root: &Utf8Path, files: &[(String, Vec<u8>)]) {
    for (name, body) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

fn expected_ids(layers: &[Vec<u8>]) -> Vec<LayerId> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    chain_ids(&diff_ids)
        .iter()
        .map(|c| LayerId::new(c.hex()).unwrap())
        .collect()
}

fn run(s: &Store, image: &Utf8Path) -> Result<ImportReport, ImageError> {
    let mut seen = Vec::new();
    let r = import(
        &s.driver,
        image,
        &mut |i: usize, n: usize, id: &LayerId, skipped: bool| {
            seen.push((i, n, id.clone(), skipped))
        },
    );
    if let Ok(report) = &r {
        assert_eq!(
            seen.len(),
            report.layers.len(),
            "progress told of every layer"
        );
    }
    r
}

fn check_imported(s: &Store, report: &ImportReport, layers: &[Vec<u8>]) {
    let ids = expected_ids(layers);
    assert_eq!(report.top, ids[1]);
    assert_eq!(
        report.layers,
        vec![(ids[0].clone(), true), (ids[1].clone(), true)]
    );
    let diff = |id: &LayerId, f: &str| {
        std::fs::read_to_string(s.dir.join("aufs/diff").join(id.as_str()).join(f)).unwrap()
    };
    assert_eq!(diff(&ids[0], "bin/sh"), "#!sh\n");
    assert_eq!(diff(&ids[1], "etc/os-release"), "app\n");
    // The top layer's parent chain, as Docker's layers file has it.
    let chain = std::fs::read_to_string(s.dir.join("aufs/layers").join(ids[1].as_str())).unwrap();
    assert_eq!(chain.trim_end(), ids[0].as_str());
}

#[test]
fn docker_save_tarballs_import_layer_by_layer() {
    let s = store();
    let layers = layers();
    let image = s.dir.join("app.tar");
    std::fs::write(&image, docker_save(&layers)).unwrap();
    let report = run(&s, &image).unwrap();
    check_imported(&s, &report, &layers);
    // Importing again creates nothing.
    let again = run(&s, &image).unwrap();
    assert!(again.layers.iter().all(|(_, created)| !created));
    assert_eq!(again.top, report.top);
}

#[test]
fn oci_layouts_import_from_a_directory_and_from_a_tar() {
    let layers = layers();
    let files = oci_files(&layers);
    let s = store();
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    check_imported(&s, &run(&s, &dir).unwrap(), &layers);

    let s = store();
    let tar = s.dir.join("oci.tar");
    std::fs::write(&tar, tarball(&files)).unwrap();
    check_imported(&s, &run(&s, &tar).unwrap(), &layers);
}

#[test]
fn a_layer_that_is_not_its_diff_id_is_refused_and_removed() {
    let s = store();
    let mut layers = layers();
    let good = layers.clone();
    let image = s.dir.join("bad.tar");
    // The config lists the good layers; the tarball carries another top.
    let mut bytes = docker_save(&good);
    let evil = layer(&[("etc/os-release", "evil\n"), ("app/run", "go\n")]);
    assert_eq!(evil.len(), good[1].len());
    let at = bytes
        .windows(good[1].len())
        .position(|w| w == &good[1][..])
        .unwrap();
    bytes[at..at + evil.len()].copy_from_slice(&evil);
    std::fs::write(&image, bytes).unwrap();
    layers[1] = evil;
    let err = run(&s, &image).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("layer 1"), "{err}");
    let ids = expected_ids(&good);
    assert!(s.driver.exists(&ids[0]), "the good base layer stays");
    assert!(!s.driver.exists(&ids[1]), "the refused layer is removed");
}

#[test]
fn oci_blobs_are_checked_against_their_digests() {
    let layers = layers();
    let mut files = oci_files(&layers);
    // Corrupt the first layer blob (still valid gzip of the same tar, but
    // other bytes: a different compression level).
    let blob = files
        .iter_mut()
        .find(|(n, b)| n.starts_with("blobs/") && b.starts_with(&[0x1f, 0x8b]))
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&layers[0]).unwrap();
    blob.1 = gz.finish().unwrap();
    let s = store();
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    let err = run(&s, &dir).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!s.driver.exists(&expected_ids(&layers)[0]));

    // A manifest blob that is not what the index says.
    let mut files = oci_files(&layers);
    let index: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "index.json").unwrap().1).unwrap();
    let md = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let manifest = files
        .iter_mut()
        .find(|(n, _)| n == &format!("blobs/sha256/{}", md.hex()))
        .unwrap();
    manifest.1.push(b' ');
    let s = store();
    let dir = s.dir.join("oci");
    write_dir(&dir, &files);
    let err = run(&s, &dir).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}

#[test]
fn hostile_and_unknown_images_are_refused() {
    let s = store();
    // Not an image at all.
    let junk = s.dir.join("junk.tar");
    std::fs::write(&junk, tarball(&[("hello".into(), b"x".to_vec())])).unwrap();
    assert!(matches!(
        run(&s, &junk).unwrap_err(),
        ImageError::UnknownFormat { .. }
    ));
    // A manifest pointing out of the image.
    let manifest = json!([{"Config": "../../etc/passwd", "Layers": []}]);
    let evil = s.dir.join("evil.tar");
    std::fs::write(
        &evil,
        tarball(&[(
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        )]),
    )
    .unwrap();
    let err = run(&s, &evil).unwrap_err();
    assert!(err.to_string().contains("../../etc/passwd"), "{err}");
    // Two images in one tarball.
    let layers = layers();
    let config = config(&layers);
    let name = format!("{}.json", Digest::of(&config).hex());
    let two = json!([{"Config": name, "Layers": []}, {"Config": name, "Layers": []}]);
    let both = s.dir.join("two.tar");
    std::fs::write(
        &both,
        tarball(&[
            (name.clone(), config),
            ("manifest.json".into(), serde_json::to_vec(&two).unwrap()),
        ]),
    )
    .unwrap();
    let err = run(&s, &both).unwrap_err();
    assert!(err.to_string().contains("holds 2 images"), "{err}");
    assert!(s.driver.list().unwrap().is_empty());
}

/// Images written by the OCI tools themselves: an OCI layout built with
/// `umoci` (two layers, gzip), and the same image as a `docker save`
/// tarball written by `skopeo` (its layer files are `<hex>.tar` with
/// `<id>/layer.tar` symlinks). Both import to the same layers.
#[test]
fn images_made_by_umoci_and_skopeo_import_alike() {
    let have = |tool: &str| {
        std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("umoci") || !have("skopeo") {
        eprintln!("images_made_by_umoci_and_skopeo_import_alike: skipped: umoci and skopeo are needed (apt-get install umoci skopeo)");
        return;
    }
    let s = store();
    let sh = |script: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(s.dir.as_std_path())
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    };
    sh("umoci init --layout oci && umoci new --image oci:t \
        && umoci unpack --rootless --image oci:t b && mkdir -p b/rootfs/etc \
        && echo base > b/rootfs/etc/os-release && umoci repack --image oci:t b && rm -rf b \
        && umoci unpack --rootless --image oci:t b && mkdir b/rootfs/app \
        && echo run > b/rootfs/app/run && rm b/rootfs/etc/os-release \
        && echo app > b/rootfs/etc/os-release && umoci repack --image oci:t b \
        && skopeo copy -q oci:oci:t docker-archive:saved.tar:img:t");
    let from_oci = run(&s, &s.dir.join("oci")).unwrap();
    assert_eq!(from_oci.layers.len(), 2);
    assert!(from_oci.layers.iter().all(|(_, created)| *created));
    let top = s.dir.join("aufs/diff").join(from_oci.top.as_str());
    assert_eq!(
        std::fs::read_to_string(top.join("etc/os-release")).unwrap(),
        "app\n"
    );
    assert_eq!(
        std::fs::read_to_string(top.join("app/run")).unwrap(),
        "run\n"
    );
    // The docker save tarball holds the same layers: nothing new to create.
    let from_save = run(&s, &s.dir.join("saved.tar")).unwrap();
    assert_eq!(from_save.top, from_oci.top);
    assert!(from_save.layers.iter().all(|(_, created)| !created));
    // Into an empty store, the docker save tarball creates them itself.
    let s2 = store();
    let again = run(&s2, &s.dir.join("saved.tar")).unwrap();
    assert_eq!(again.top, from_oci.top);
    assert!(again.layers.iter().all(|(_, created)| *created));
}

/// Export gives back what import took: the same chain ids from a fresh
/// store, in both formats; and the OCI tools read what it writes.
#[test]
fn exported_images_import_to_the_same_layers() {
    use aufs_image::{export, ExportFormat};
    let s = store();
    let layers = layers();
    let image = s.dir.join("app.tar");
    std::fs::write(&image, docker_save(&layers)).unwrap();
    let top = run(&s, &image).unwrap().top;
    for (format, name) in [
        (ExportFormat::DockerSave, "out.tar"),
        (ExportFormat::OciLayout, "out-oci"),
    ] {
        let out = s.dir.join(name);
        let report = export(&s.driver, &top, &out, format).unwrap();
        let want: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
        assert_eq!(report.diff_ids, want, "{name}: the original bytes");
        let fresh = store();
        let again = run(&fresh, &out).unwrap();
        assert_eq!(again.top, top, "{name}");
        // An existing destination is refused, and left alone.
        assert!(export(&s.driver, &top, &out, format).is_err());
        assert!(out.exists());
    }
    let no_tmp = std::fs::read_dir(&s.dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(no_tmp, 0, "no temporary files left");
    // skopeo (the OCI tools' reference) reads both and checks every digest.
    let skopeo = std::process::Command::new("skopeo")
        .arg("--version")
        .output();
    if skopeo.is_ok_and(|o| o.status.success()) {
        for src in [
            format!("docker-archive:{}", s.dir.join("out.tar")),
            format!("oci:{}:latest", s.dir.join("out-oci")),
        ] {
            let dst = s.dir.join(format!("copy-{}", src.len()));
            let o = std::process::Command::new("skopeo")
                .args(["copy", "-q", &src, &format!("oci:{dst}:x")])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{src}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    } else {
        eprintln!("exported_images_import_to_the_same_layers: skopeo not installed: its reading of the exports not checked");
    }
}

/// Upstream tar-split metadata (gzip'd JSON lines) of a tarball, as moby's
/// layer store writes it beside each layer.
fn upstream_tar_split(tarball: &[u8]) -> Vec<u8> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let mut lines = Vec::new();
    let mut pos = 0u64;
    let mut at = 0usize;
    let mut ar = tar::Archive::new(tarball);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let start = e.raw_file_position() as usize;
        let size = e.size();
        lines.push(
            json!({"type": 2, "payload": STANDARD.encode(&tarball[at..start]), "position": pos}),
        );
        pos += 1;
        let content = &tarball[start..start + size as usize];
        let payload = (size > 0).then(|| {
            let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64GoIso);
            crc.update(content);
            STANDARD.encode(crc.finalize().to_be_bytes())
        });
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        lines.push(
            json!({"type": 1, "name": name, "size": size, "payload": payload, "position": pos}),
        );
        pos += 1;
        at = start + size as usize;
    }
    lines.push(json!({"type": 2, "payload": STANDARD.encode(&tarball[at..]), "position": pos}));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    gzip(text.as_bytes())
}

/// A Docker install with the aufs driver: layers under `aufs/` (cache ids
/// `cache0`, `cache1`), image metadata under `image/aufs/`, one container.
fn docker_install(dir: &Utf8Path, layers: &[Vec<u8>]) -> Digest {
    std::fs::create_dir_all(dir).unwrap();
    let driver = driver_at(&dir.join("aufs"));
    let meta = dir.join("image/aufs");
    let config = config(layers);
    let id = Digest::of(&config);
    write_dir(
        &meta,
        &[(format!("imagedb/content/sha256/{}", id.hex()), config)],
    );
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let chain = chain_ids(&diff_ids);
    let mut parent: Option<LayerId> = None;
    for (i, l) in layers.iter().enumerate() {
        let cache = LayerId::new(format!("cache{i}")).unwrap();
        driver
            .create(&cache, parent.as_ref(), &Default::default())
            .unwrap();
        driver.apply_diff(&cache, parent.as_ref(), &l[..]).unwrap();
        let mut files = vec![
            ("cache-id".to_string(), cache.as_str().as_bytes().to_vec()),
            ("diff".into(), diff_ids[i].as_str().as_bytes().to_vec()),
            ("size".into(), format!("{}", 100 + i).into_bytes()),
            ("tar-split.json.gz".into(), upstream_tar_split(l)),
        ];
        if i > 0 {
            files.push(("parent".into(), chain[i - 1].as_str().as_bytes().to_vec()));
        }
        let files: Vec<_> = files
            .into_iter()
            .map(|(n, b)| (format!("layerdb/sha256/{}/{n}", chain[i].hex()), b))
            .collect();
        write_dir(&meta, &files);
        parent = Some(cache);
    }
    let repos = json!({"Repositories": {"app": {
        "app:latest": id.as_str(),
        "app@sha256:0000000000000000000000000000000000000000000000000000000000000000": id.as_str(),
    }}});
    write_dir(
        &meta,
        &[
            ("repositories.json".into(), repos.to_string().into_bytes()),
            ("layerdb/mounts/c0ffee/mount-id".into(), b"rw123".to_vec()),
        ],
    );
    let container =
        json!({"ID": "c0ffee", "Name": "/web", "Image": id.as_str(), "Config": {"Image": "app"}});
    write_dir(
        dir,
        &[(
            "containers/c0ffee/config.v2.json".into(),
            container.to_string().into_bytes(),
        )],
    );
    id
}

#[test]
fn a_docker_install_is_read_in_place_and_exported_with_its_original_bytes() {
    use aufs_image::{DockerRoot, LegacyContainer};
    let s = store();
    let layers = layers();
    let docker = s.dir.join("docker");
    let id = docker_install(&docker, &layers);
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
            id: "c0ffee".into(),
            image: "app".into(),
            rw_layer: "rw123".into(),
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
    std::fs::write(docker.join("aufs/diff/cache1/app/run"), "no\n").unwrap();
    let err = root.export("app", &s.dir.join("changed.tar")).unwrap_err();
    assert!(err.to_string().contains("app/run"), "{err}");
    assert!(!s.dir.join("changed.tar").exists());
    // Not a Docker install.
    assert!(DockerRoot::open(&s.dir.join("aufs")).is_err());
}
