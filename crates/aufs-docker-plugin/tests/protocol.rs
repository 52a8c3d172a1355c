//! The protocol as moby 20.10's `graphdriver/proxy.go` and `pkg/plugins`
//! speak it, over a real HTTP/1.1 server on a Unix socket, against a
//! recording driver (no root, no mounts): every endpoint's JSON shapes,
//! errors, change kinds, tarballs streamed both ways, keep-alive.

use async_trait::async_trait;
use aufs_docker_plugin::router::percent_decode;
use aufs_docker_plugin::{serve, DriverOpener, Plugin, PluginConfig};
use aufs_driver::async_facade::AsyncGraphDriver;
use aufs_driver::{ApplyOutcome, Change, ChangeKind, CreateOpts, DriverError, LayerInfo, Status};
use aufs_model::{IdMappings, LayerId};
use aufs_ports::BackendKind;
use bytes::Bytes;
use camino::{Utf8Path, Utf8PathBuf};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

type R<T> = Result<T, DriverError>;

/// A driver that records its calls and answers from a small script.
#[derive(Debug, Default)]
struct Recording {
    calls: Mutex<Vec<String>>,
    /// `diff` writes this many bytes and then fails, when set.
    diff_fails_after: Option<usize>,
    /// Told when `apply_diff` has read its first bytes.
    first_read: Mutex<Option<oneshot::Sender<()>>>,
    /// `get` of `wait` waits here for all its peers.
    barrier: Option<Arc<tokio::sync::Barrier>>,
}

impl Recording {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

fn opt(p: &Option<LayerId>) -> String {
    p.as_ref().map_or("-".into(), |p| p.to_string())
}

#[async_trait]
impl AsyncGraphDriver for Recording {
    async fn status(&self) -> R<Status> {
        Ok(Status {
            root_dir: "/var/lib/docker/aufs-rs".into(),
            backing_filesystem: "extfs".into(),
            dirs: 3,
            dirperm1_supported: false,
            mount_backend: BackendKind::Fuse,
            supports_d_type: true,
            supports_xattrs: true,
        })
    }
    async fn exists(&self, id: LayerId) -> bool {
        id.as_str() == "here"
    }
    async fn create(&self, id: LayerId, parent: Option<LayerId>, opts: CreateOpts) -> R<()> {
        if !opts.storage_opt.is_empty() {
            return Err(DriverError::StorageOptNotSupported);
        }
        self.log(format!("create {id} {}", opt(&parent)));
        Ok(())
    }
    async fn create_read_write(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        _opts: CreateOpts,
    ) -> R<()> {
        self.log(format!("create-rw {id} {}", opt(&parent)));
        Ok(())
    }
    async fn remove(&self, id: LayerId) -> R<()> {
        self.log(format!("remove {id}"));
        match id.as_str() {
            "gone" => Err(DriverError::NotFound(id)),
            "parent" => Err(DriverError::HasChildren {
                id,
                children: vec![LayerId::new("child").unwrap()],
            }),
            _ => Ok(()),
        }
    }
    async fn get(&self, id: LayerId, mount_label: String) -> R<Utf8PathBuf> {
        if id.as_str().starts_with("wait") {
            if let Some(b) = &self.barrier {
                b.wait().await;
            }
        }
        self.log(format!("get {id} {mount_label:?}"));
        Ok(Utf8PathBuf::from(format!(
            "/var/lib/docker/aufs-rs/mnt/{id}"
        )))
    }
    async fn put(&self, id: LayerId) -> R<()> {
        self.log(format!("put {id}"));
        Ok(())
    }
    async fn list(&self) -> R<Vec<LayerInfo>> {
        Ok(Vec::new())
    }
    async fn parent(&self, id: LayerId) -> R<Option<LayerId>> {
        Ok((id.as_str() == "child").then(|| LayerId::new("base").unwrap()))
    }
    async fn cleanup(&self) -> R<()> {
        self.log("cleanup".into());
        Ok(())
    }
    async fn apply_diff(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        mut input: Box<dyn Read + Send>,
    ) -> R<ApplyOutcome> {
        let first = self.first_read.lock().unwrap().take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0; 65536];
            let (mut n, mut sum) = (0u64, 0u64);
            let mut first = first;
            loop {
                let got = input.read(&mut buf).unwrap();
                if got == 0 {
                    break;
                }
                if let Some(f) = first.take() {
                    let _ = f.send(());
                }
                n += got as u64;
                sum = buf[..got]
                    .iter()
                    .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
            }
            tx.send((n, sum)).unwrap();
        });
        let (n, sum) = tokio::task::spawn_blocking(move || rx.recv().unwrap())
            .await
            .unwrap();
        self.log(format!("apply {id} {} {n} {sum}", opt(&parent)));
        Ok(ApplyOutcome {
            size: n,
            diff_id: None,
        })
    }
    async fn apply_diff_file(
        &self,
        _id: LayerId,
        _parent: Option<LayerId>,
        _input: std::fs::File,
    ) -> R<ApplyOutcome> {
        unreachable!("the plugin streams; it never has a file")
    }
    async fn diff(
        &self,
        id: LayerId,
        parent: Option<LayerId>,
        mut out: Box<dyn Write + Send>,
    ) -> R<Box<dyn Write + Send>> {
        self.log(format!("diff {id} {}", opt(&parent)));
        if id.as_str() == "gone" {
            return Err(DriverError::NotFound(id));
        }
        let fail = self.diff_fails_after;
        tokio::task::spawn_blocking(move || {
            // 3 MiB of a known pattern, in odd-sized writes.
            let total = fail.unwrap_or(3 << 20);
            let mut written = 0;
            while written < total {
                let n = (total - written).min(1000);
                let chunk: Vec<u8> = (written..written + n).map(|i| (i % 251) as u8).collect();
                out.write_all(&chunk).unwrap();
                written += n;
            }
            if fail.is_some() {
                out.flush().unwrap();
                return Err(DriverError::NotFound(LayerId::new("midway").unwrap()));
            }
            Ok(out)
        })
        .await
        .unwrap()
    }
    async fn changes(&self, id: LayerId, parent: Option<LayerId>) -> R<Vec<Change>> {
        self.log(format!("changes {id} {}", opt(&parent)));
        Ok([
            ("/etc", ChangeKind::Modify),
            ("/etc/new", ChangeKind::Add),
            ("/gone", ChangeKind::Delete),
        ]
        .into_iter()
        .map(|(p, kind)| Change {
            path: p.into(),
            raw_path: p.as_bytes().to_vec(),
            kind,
        })
        .collect())
    }
    async fn diff_size(&self, id: LayerId, parent: Option<LayerId>) -> R<u64> {
        self.log(format!("diff-size {id} {}", opt(&parent)));
        Ok(4096)
    }
}

/// Opens the one recording driver, and records what it was opened with.
#[derive(Debug)]
struct Opener {
    driver: Arc<Recording>,
    opened: Mutex<Vec<(Utf8PathBuf, IdMappings)>>,
}

impl DriverOpener for Opener {
    fn open(&self, home: &Utf8Path, maps: IdMappings) -> Result<Arc<dyn AsyncGraphDriver>, String> {
        if home.as_str().contains("unopenable") {
            return Err("no such filesystem".into());
        }
        self.opened.lock().unwrap().push((home.to_owned(), maps));
        Ok(self.driver.clone())
    }
}

/// A plugin served on a socket in a temp dir, and a client connection.
struct Rig {
    tmp: tempfile::TempDir,
    socket: std::path::PathBuf,
    opener: Arc<Opener>,
    driver: Arc<Recording>,
}

impl Rig {
    async fn new(driver: Recording, selinux: bool) -> Rig {
        Rig::with_init_file(driver, selinux, None).await
    }

    async fn with_init_file(
        driver: Recording,
        selinux: bool,
        init_file: Option<Utf8PathBuf>,
    ) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("plugins/aufs-rs.sock");
        let driver = Arc::new(driver);
        let opener = Arc::new(Opener {
            driver: driver.clone(),
            opened: Mutex::new(Vec::new()),
        });
        let plugin = Arc::new(Plugin::new(
            PluginConfig {
                name: "aufs-rs".into(),
                exact_diffs: false,
                selinux,
                init_file,
            },
            opener.clone(),
        ));
        let path = Utf8PathBuf::from_path_buf(socket.clone()).unwrap();
        let listener = aufs_docker_plugin::bind(&path).await.unwrap();
        tokio::spawn(serve(listener, plugin, std::future::pending()));
        Rig {
            tmp,
            socket,
            opener,
            driver,
        }
    }

    async fn connect(
        &self,
    ) -> SendRequest<http_body_util::combinators::BoxBody<Bytes, std::io::Error>> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        send
    }

    /// One call with a raw body, as moby's client sends it; status, body.
    async fn raw(&self, method: &str, body: &str) -> (StatusCode, Bytes) {
        let mut c = self.connect().await;
        let req = Request::post(format!("/{method}"))
            .header("Host", "plugin")
            .header("Accept", "application/vnd.docker.plugins.v1.2+json")
            .body(
                Full::new(Bytes::from(body.to_owned()))
                    .map_err(|e| match e {})
                    .boxed(),
            )
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    async fn call(&self, method: &str, body: Value) -> (StatusCode, Value) {
        let (status, bytes) = self.raw(method, &body.to_string()).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn init(&self) {
        let (s, v) = self
            .call(
                "GraphDriver.Init",
                json!({"Home": "/var/lib/docker/aufs-rs", "Opts": null, "UIDMaps": null, "GIDMaps": null}),
            )
            .await;
        assert_eq!(
            (s, v),
            (
                StatusCode::OK,
                json!({"Capabilities": {"ReproducesExactDiffs": false}})
            )
        );
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.driver.calls.lock().unwrap())
    }
}

#[tokio::test]
async fn activate_names_the_graph_driver_subsystem() {
    let rig = Rig::new(Recording::default(), false).await;
    let mut c = rig.connect().await;
    let resp = c
        .send_request(
            Request::post("/Plugin.Activate")
                .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.docker.plugins.v1.2+json"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"Implements":["GraphDriver"]}"#);
}

#[tokio::test]
async fn calls_before_init_fail_and_init_opens_home_once() {
    let rig = Rig::new(Recording::default(), false).await;
    let (s, v) = rig.call("GraphDriver.Exists", json!({"ID": "here"})).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(v["Err"].as_str().unwrap().contains("Init"), "{v}");
    rig.init().await;
    // dockerd restarted: Init again with the same home keeps the root.
    rig.init().await;
    let (s, v) = rig
        .call(
            "GraphDriver.Init",
            json!({"Home": "/data/aufs-rs", "Opts": [], "UIDMaps": [{"container_id": 0, "host_id": 100000, "size": 65536}], "GIDMaps": [{"container_id": 0, "host_id": 200000, "size": 65536}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let opened = rig.opener.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 2, "{opened:?}");
    assert_eq!(opened[0].0, "/var/lib/docker/aufs-rs");
    assert_eq!(opened[1].0, "/data/aufs-rs");
    assert_eq!(opened[1].1.uids[0].host_id, 100000);
    assert_eq!(opened[1].1.gids[0].host_id, 200000);
    assert_eq!(opened[1].1.uids[0].size, 65536);
}

#[tokio::test]
async fn init_refuses_storage_options_and_says_why_a_root_cannot_open() {
    let rig = Rig::new(Recording::default(), false).await;
    let (s, v) = rig
        .call(
            "GraphDriver.Init",
            json!({"Home": "/var/lib/docker/aufs-rs", "Opts": ["aufs.mountopt=x"]}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        v["Err"],
        "aufs-rs takes no storage options (--storage-opt), got: aufs.mountopt=x"
    );
    let (s, v) = rig
        .call("GraphDriver.Init", json!({"Home": "/unopenable/aufs-rs"}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["Err"], "init /unopenable/aufs-rs: no such filesystem");
    let (s, v) = rig
        .call("GraphDriver.Init", json!({"Home": "relative"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = rig
        .call(
            "GraphDriver.Init",
            json!({"Home": "/x", "UIDMaps": [{"container_id": -1, "host_id": 0, "size": 1}]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(rig.opener.opened.lock().unwrap().is_empty());
}

#[tokio::test]
async fn create_and_create_read_write_pass_id_parent_and_storage_options() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    // proxy.go's graphDriverRequest with omitempty: no Parent for a base.
    let (s, v) = rig.raw("GraphDriver.Create", r#"{"ID":"base"}"#).await;
    assert_eq!(s, StatusCode::OK, "{v:?}");
    let (s, _) = rig
        .raw(
            "GraphDriver.CreateReadWrite",
            r#"{"ID":"ctr","Parent":"base","MountLabel":"system_u:object_r:container_file_t:s0"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rig.calls(), ["create base -", "create-rw ctr base"]);
    let (s, v) = rig
        .call(
            "GraphDriver.Create",
            json!({"ID": "x", "StorageOpt": {"size": "10G"}}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["Err"], "--storage-opt is not supported for aufs");
    let (s, v) = rig.call("GraphDriver.Create", json!({"ID": "a/b"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["Err"].as_str().unwrap().contains("a/b"), "{v}");
}

#[tokio::test]
async fn get_put_exists_and_remove() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    let (s, v) = rig
        .call(
            "GraphDriver.Get",
            json!({"ID": "ctr", "MountLabel": "label"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"Dir": "/var/lib/docker/aufs-rs/mnt/ctr", "Capabilities": {"ReproducesExactDiffs": false}})
    );
    rig.call("GraphDriver.Put", json!({"ID": "ctr"})).await;
    // SELinux is off here: the label is not passed on.
    assert_eq!(rig.calls(), ["get ctr \"\"", "put ctr"]);

    let (_, v) = rig.call("GraphDriver.Exists", json!({"ID": "here"})).await;
    assert_eq!(v["Exists"], true);
    // Go's omitempty leaves false out; the proxy reads it as false.
    let (_, v) = rig
        .call("GraphDriver.Exists", json!({"ID": "nothere"}))
        .await;
    assert_eq!(v.get("Exists"), None);
    let (_, v) = rig.call("GraphDriver.Exists", json!({"ID": ".."})).await;
    assert_eq!(v.get("Exists"), None);

    let (s, _) = rig.call("GraphDriver.Remove", json!({"ID": "gone"})).await;
    assert_eq!(s, StatusCode::OK, "a layer already gone is removed");
    let (s, v) = rig
        .call("GraphDriver.Remove", json!({"ID": "parent"}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["Err"], "layer parent has child layers: child");
}

#[tokio::test]
async fn mount_labels_are_passed_on_where_selinux_is_on() {
    let rig = Rig::new(Recording::default(), true).await;
    rig.init().await;
    rig.call("GraphDriver.Get", json!({"ID": "ctr", "MountLabel": "l"}))
        .await;
    assert_eq!(rig.calls(), ["get ctr \"l\""]);
}

#[tokio::test]
async fn status_metadata_cleanup_and_capabilities() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    // moby's client sends no body at all for Status and Capabilities.
    let (s, body) = rig.raw("GraphDriver.Status", "").await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["Status"],
        json!([
            ["Root Dir", "/var/lib/docker/aufs-rs"],
            ["Backing Filesystem", "extfs"],
            ["Dirs", "3"],
            ["Dirperm1 Supported", "false"],
            ["Mount Backend", "fuse"],
            ["Supports d_type", "true"],
            ["Supports xattrs", "true"]
        ])
    );
    let (_, body) = rig.raw("GraphDriver.Capabilities", "{}\n").await;
    assert_eq!(
        &body[..],
        br#"{"Capabilities":{"ReproducesExactDiffs":false}}"#
    );
    // moby's aufs has no metadata: nil map, no error.
    let (s, v) = rig
        .call("GraphDriver.GetMetadata", json!({"ID": "here"}))
        .await;
    assert_eq!((s, v.get("Metadata")), (StatusCode::OK, None));
    let (s, _) = rig
        .call("GraphDriver.GetMetadata", json!({"ID": "nothere"}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (s, _) = rig.raw("GraphDriver.Cleanup", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rig.calls(), ["cleanup"]);
}

#[tokio::test]
async fn changes_carry_gos_change_kinds_and_sizes_are_numbers() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    let (_, v) = rig
        .call(
            "GraphDriver.Changes",
            json!({"ID": "child", "Parent": "base"}),
        )
        .await;
    assert_eq!(
        v["Changes"],
        json!([
            {"Path": "/etc", "Kind": 0},
            {"Path": "/etc/new", "Kind": 1},
            {"Path": "/gone", "Kind": 2}
        ])
    );
    let (_, v) = rig
        .call("GraphDriver.DiffSize", json!({"ID": "child"}))
        .await;
    assert_eq!(v["Size"], 4096);
    // An empty parent is the direct parent, as moby's aufs ignores it.
    assert_eq!(rig.calls(), ["changes child base", "diff-size child base"]);
}

#[tokio::test]
async fn diff_streams_the_tarball_as_the_raw_body() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    let mut c = rig.connect().await;
    let resp = c
        .send_request(
            Request::post("/GraphDriver.Diff")
                .body(
                    Full::new(Bytes::from_static(br#"{"ID":"child","Parent":"base"}"#))
                        .map_err(|e| match e {})
                        .boxed(),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    let mut body = resp.into_body();
    let (mut n, mut frames) = (0usize, 0);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, ((n + i) % 251) as u8);
        }
        n += data.len();
        frames += 1;
    }
    assert_eq!(n, 3 << 20);
    assert!(frames > 1, "streamed in chunks, not one buffer");
    // The same connection serves the next call (keep-alive).
    let resp = c
        .send_request(
            Request::post("/GraphDriver.Diff")
                .body(
                    Full::new(Bytes::from_static(br#"{"ID":"gone"}"#))
                        .map_err(|e| match e {})
                        .boxed(),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Err"], "layer gone does not exist");
}

#[tokio::test]
async fn a_diff_that_fails_midway_cuts_the_body() {
    let rig = Rig::new(
        Recording {
            diff_fails_after: Some(1 << 20),
            ..Recording::default()
        },
        false,
    )
    .await;
    rig.init().await;
    let mut c = rig.connect().await;
    let resp = c
        .send_request(
            Request::post("/GraphDriver.Diff")
                .body(
                    Full::new(Bytes::from_static(br#"{"ID":"child"}"#))
                        .map_err(|e| match e {})
                        .boxed(),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = resp.into_body().collect().await;
    assert!(got.is_err(), "a cut tarball must not read as a whole one");
}

#[tokio::test]
async fn apply_diff_reads_a_chunked_body_as_it_arrives() {
    let (first_tx, first_rx) = oneshot::channel();
    let rig = Rig::new(
        Recording {
            first_read: Mutex::new(Some(first_tx)),
            ..Recording::default()
        },
        false,
    )
    .await;
    rig.init().await;
    let mut c = rig.connect().await;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
    let body = StreamBody::new(tokio_stream(rx)).boxed();
    // No Content-Length: chunked, as Go's client sends an io.Reader.
    let req = Request::post("/GraphDriver.ApplyDiff?id=ctr%2Dinit&parent=base")
        .body(body)
        .unwrap();
    let sender = tokio::spawn(async move {
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
        // The rest only once the driver has read the first chunk: a server
        // that gathered the whole body before applying would never get it.
        tokio::time::timeout(std::time::Duration::from_secs(30), first_rx)
            .await
            .expect("the driver reads before the body is complete")
            .unwrap();
        for _ in 0..63 {
            tx.send(Ok(Frame::data(chunk.clone()))).await.unwrap();
        }
    });
    let resp = c.send_request(req).await.unwrap();
    sender.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Size"], 64 << 20);
    let mut sum = 0u64;
    for _ in 0..(64 << 20) {
        sum = sum.wrapping_mul(31).wrapping_add(7);
    }
    assert_eq!(
        rig.calls(),
        [format!("apply ctr-init base {} {sum}", 64 << 20)]
    );
}

#[tokio::test]
async fn unknown_endpoints_are_not_found_and_bad_json_is_a_bad_request() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    let (s, v) = rig.call("VolumeDriver.Create", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["Err"].as_str().unwrap().contains("VolumeDriver.Create"));
    let (s, v) = rig.call("GraphDriver.Nope", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, body) = rig.raw("GraphDriver.Get", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["Err"].as_str().unwrap().starts_with("bad Get request"),
        "{v}"
    );
}

#[tokio::test]
async fn requests_on_several_connections_are_served_at_once() {
    let rig = Arc::new(
        Rig::new(
            Recording {
                barrier: Some(Arc::new(tokio::sync::Barrier::new(4))),
                ..Recording::default()
            },
            false,
        )
        .await,
    );
    rig.init().await;
    // Each Get waits in the driver until all four are there: served one
    // after another, none would ever return.
    let calls = (0..4).map(|i| {
        let rig = rig.clone();
        tokio::spawn(async move {
            rig.call("GraphDriver.Get", json!({"ID": format!("wait{i}")}))
                .await
        })
    });
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures_join(calls.collect()),
    )
    .await
    .expect("concurrent requests are served concurrently");
    for (s, v) in all {
        assert_eq!(s, StatusCode::OK, "{v}");
    }
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_restarted_plugin_opens_the_root_of_the_last_init() {
    let dir = tempfile::tempdir().unwrap();
    let file = Utf8PathBuf::from_path_buf(dir.path().join("aufs-rs.init.json")).unwrap();
    let first = Rig::with_init_file(Recording::default(), false, Some(file.clone())).await;
    let (s, _) = first
        .call(
            "GraphDriver.Init",
            json!({"Home": "/data/aufs-rs", "UIDMaps": [{"container_id": 0, "host_id": 1000, "size": 10}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The plugin comes back; dockerd does not call Init again.
    let opener = Arc::new(Opener {
        driver: Arc::new(Recording::default()),
        opened: Mutex::new(Vec::new()),
    });
    let again = Plugin::new(
        PluginConfig {
            name: "aufs-rs".into(),
            exact_diffs: false,
            selinux: false,
            init_file: Some(file),
        },
        opener.clone(),
    );
    assert_eq!(
        again.restore().await.unwrap().as_deref(),
        Some("/data/aufs-rs")
    );
    let opened = opener.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].0, "/data/aufs-rs");
    assert_eq!(opened[0].1.uids[0].host_id, 1000);
    assert!(again.exists("here").await.unwrap());
    // With no kept Init there is nothing to open.
    let none = Plugin::new(
        PluginConfig {
            name: "aufs-rs".into(),
            exact_diffs: false,
            selinux: false,
            init_file: Some(
                Utf8PathBuf::from_path_buf(first.tmp.path().join("none.json")).unwrap(),
            ),
        },
        opener,
    );
    assert_eq!(none.restore().await.unwrap(), None);
}

#[tokio::test]
async fn a_refused_apply_diff_still_gets_its_reply_while_the_body_is_sent() {
    let rig = Rig::new(Recording::default(), false).await;
    rig.init().await;
    for uri in [
        "/GraphDriver.ApplyDiff?id=a/b&parent=",
        "/GraphDriver.ApplyDiff?id=%zz",
    ] {
        let mut c = rig.connect().await;
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
        let sender = tokio::spawn(async move {
            for _ in 0..32 {
                tx.send(Ok(Frame::data(Bytes::from(vec![1u8; 1 << 20]))))
                    .await
                    .unwrap();
            }
        });
        let resp = c
            .send_request(
                Request::post(uri)
                    .body(StreamBody::new(tokio_stream(rx)).boxed())
                    .unwrap(),
            )
            .await
            .expect("a reply, not a reset connection");
        sender.await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            v["Err"]
                .as_str()
                .unwrap()
                .starts_with("bad ApplyDiff request"),
            "{v}"
        );
    }
    // Activate with a body, as a client may send one, on a kept-alive
    // connection: the next call on it still works.
    let mut c = rig.connect().await;
    for method in ["/Plugin.Activate", "/GraphDriver.Capabilities"] {
        let resp = c
            .send_request(
                Request::post(method)
                    .body(
                        Full::new(Bytes::from_static(b"{}\n"))
                            .map_err(|e| match e {})
                            .boxed(),
                    )
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{method}");
        resp.into_body().collect().await.unwrap();
    }
}

#[test]
fn query_values_are_unescaped_as_go_does() {
    assert_eq!(percent_decode("abc%2Dinit").as_deref(), Some("abc-init"));
    assert_eq!(percent_decode("a+b").as_deref(), Some("a b"));
    assert_eq!(percent_decode("%zz"), None);
    assert_eq!(percent_decode("%4"), None);
}

/// A stream over an mpsc receiver (what `StreamBody` takes).
fn tokio_stream<T>(rx: mpsc::Receiver<T>) -> RxStream<T> {
    RxStream(rx)
}

/// The items of an mpsc receiver as a stream.
struct RxStream<T>(mpsc::Receiver<T>);

impl<T> futures_core::Stream for RxStream<T> {
    type Item = T;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
