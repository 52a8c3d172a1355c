//! What the image tests share: a store on the real filesystem, layer
//! tarballs, images in both formats, and a Docker install using aufs.
#![allow(dead_code)]

use std::io::Write as _;
use std::sync::Arc;

use aufs_driver::{Driver, DriverConfig, Ports};
use aufs_image::{chain_ids, import, Digest, ImageError, ImportReport};
use aufs_model::LayerId;
use aufs_ports::fakes::FakeUnionBackend;
use aufs_ports::{BackendKind, InProcessLocks};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
pub struct Store {
    pub _tmp: tempfile::TempDir,
    pub dir: Utf8PathBuf,
    pub driver: Driver,
}

/// A driver over the real filesystem at `root` (mounts faked: none needed).
pub fn driver_at(root: &Utf8Path) -> Driver {
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

pub fn store() -> Store {
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
pub fn layer(files: &[(&str, &str)]) -> Vec<u8> {
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

pub fn layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[("etc/os-release", "base\n"), ("bin/sh", "#!sh\n")]),
        layer(&[("etc/os-release", "app\n"), ("app/run", "go\n")]),
    ]
}

pub fn config(layers: &[Vec<u8>]) -> Vec<u8> {
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
pub fn tarball(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
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
pub fn docker_save(layers: &[Vec<u8>]) -> Vec<u8> {
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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An OCI layout's files: gzip'd layer blobs, config, manifest, index.
pub fn oci_files(layers: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
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

pub fn write_dir(root: &Utf8Path, files: &[(String, Vec<u8>)]) {
    for (name, body) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

pub fn expected_ids(layers: &[Vec<u8>]) -> Vec<LayerId> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    chain_ids(&diff_ids)
        .iter()
        .map(|c| LayerId::new(c.hex()).unwrap())
        .collect()
}

pub fn run(s: &Store, image: &Utf8Path) -> Result<ImportReport, ImageError> {
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

pub fn check_imported(s: &Store, report: &ImportReport, layers: &[Vec<u8>]) {
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

/// Upstream tar-split metadata (gzip'd JSON lines) of a tarball, as moby's
/// layer store writes it beside each layer.
pub fn upstream_tar_split(tarball: &[u8]) -> Vec<u8> {
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

/// What [`docker_install`] made.
pub struct Install {
    /// The image id.
    pub id: Digest,
    /// Chain ids of its layers, bottom first.
    pub chains: Vec<Digest>,
    /// The layers' cache ids (their dirs under `aufs/`), bottom first.
    pub caches: Vec<String>,
    /// The container's id.
    pub container: String,
    /// The container's read-write layer.
    pub mount_id: String,
}

impl Install {
    /// `image/aufs/layerdb/sha256/<chain>/<file>` of layer `i`.
    pub fn layer_file(&self, dir: &Utf8Path, i: usize, file: &str) -> Utf8PathBuf {
        dir.join("image/aufs/layerdb/sha256")
            .join(self.chains[i].hex())
            .join(file)
    }
}

/// A Docker install with the aufs driver: layers under `aufs/` (random
/// hex cache ids, as Docker's), image metadata under `image/aufs/`, one
/// container.
pub fn docker_install(dir: &Utf8Path, layers: &[Vec<u8>]) -> Install {
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
    let chains = chain_ids(&diff_ids);
    let mut caches = Vec::new();
    let mut parent: Option<LayerId> = None;
    for (i, l) in layers.iter().enumerate() {
        let cache = LayerId::new(Digest::of(format!("cache{i}").as_bytes()).hex()).unwrap();
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
            files.push(("parent".into(), chains[i - 1].as_str().as_bytes().to_vec()));
        }
        let files: Vec<_> = files
            .into_iter()
            .map(|(n, b)| (format!("layerdb/sha256/{}/{n}", chains[i].hex()), b))
            .collect();
        write_dir(&meta, &files);
        caches.push(cache.as_str().to_owned());
        parent = Some(cache);
    }
    let container = Digest::of(b"container").hex().to_owned();
    let mount_id = Digest::of(b"rw").hex().to_owned();
    let repos = json!({"Repositories": {"app": {
        "app:latest": id.as_str(),
        "app@sha256:0000000000000000000000000000000000000000000000000000000000000000": id.as_str(),
    }}});
    write_dir(
        &meta,
        &[
            ("repositories.json".into(), repos.to_string().into_bytes()),
            (
                format!("layerdb/mounts/{container}/mount-id"),
                mount_id.as_bytes().to_vec(),
            ),
        ],
    );
    let config =
        json!({"ID": container, "Name": "/web", "Image": id.as_str(), "Config": {"Image": "app"}});
    write_dir(
        dir,
        &[(
            format!("containers/{container}/config.v2.json"),
            config.to_string().into_bytes(),
        )],
    );
    Install {
        id,
        chains,
        caches,
        container,
        mount_id,
    }
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// 30 s (a read that waits on a FIFO forever, or one of `/dev/zero`).
pub fn promptly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("finished within 30 s")
}
