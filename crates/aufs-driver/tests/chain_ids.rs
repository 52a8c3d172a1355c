//! Layers created to await their apply, named by chain id: complete only
//! with the content their name says; otherwise gone at the next start.

use aufs_driver::{CreateOpts, Driver, DriverConfig, Ports};
use aufs_model::LayerId;
use aufs_ports::fakes::FakeUnionBackend;
use aufs_ports::{BackendKind, InProcessLocks};
use camino::Utf8PathBuf;
use std::sync::Arc;

fn open(root: &Utf8PathBuf, await_apply: bool) -> Driver {
    let mut config = DriverConfig::new(root.clone());
    config.await_apply = await_apply;
    config.chain_ids = await_apply;
    Driver::init(
        config,
        Ports {
            archive: Arc::new(aufs_archive::DiskArchive),
            fs: Arc::new(aufs_linux::LinuxFilesystem::new()),
            host: Arc::new(aufs_linux::LinuxHost::new()),
            backend: Arc::new(FakeUnionBackend::new(BackendKind::Fuse)),
            // Each driver its own locks: a second one is another process.
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap()
}

fn layer(body: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    b.append_data(&mut h, "f", body.as_bytes()).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn only_the_content_a_chain_id_names_completes_its_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().join("aufs")).unwrap();
    let d = open(&root, true);
    let genuine = layer("genuine\n");
    let report = {
        let probe = LayerId::new("probe").unwrap();
        let plain = open(&root, false);
        plain.create(&probe, None, &CreateOpts::default()).unwrap();
        let r = plain.apply_diff(&probe, None, &genuine[..]).unwrap();
        plain.remove(&probe).unwrap();
        r
    };
    let id = LayerId::new(report.diff_id.unwrap().trim_start_matches("sha256:")).unwrap();

    // Other content under the genuine name: applied, but never complete.
    d.create(&id, None, &CreateOpts::default()).unwrap();
    d.apply_diff(&id, None, &layer("forged\n")[..]).unwrap();
    assert!(!d.exists(&id));
    // The process dies before anyone removes it: the next start does.
    drop(d);
    let d = open(&root, true);
    assert!(!root.join("layers").join(id.as_str()).exists());
    assert!(!root.join("diff").join(id.as_str()).exists());

    // The genuine content completes it.
    d.create(&id, None, &CreateOpts::default()).unwrap();
    d.apply_diff(&id, None, &genuine[..]).unwrap();
    assert!(d.exists(&id));
    drop(d);
    let d = open(&root, true);
    assert!(d.exists(&id));
    assert_eq!(
        std::fs::read_to_string(root.join("diff").join(id.as_str()).join("f")).unwrap(),
        "genuine\n"
    );
}
