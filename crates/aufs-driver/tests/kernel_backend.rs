//! The kernel aufs path against a recording mounter: the exact mount data
//! strings, remount batches, retries, and failure handling.

use aufs_driver::kernel::{KernelAufs, UNMOUNT_RETRIES, UNMOUNT_RETRY_DELAY};
use aufs_driver::{CreateOpts, Driver, DriverConfig, DriverError, Ports};
use aufs_model::branch::{branches_of, MountPlan};
use aufs_model::{fs_magic, LayerId};
use aufs_ports::fakes::{FakeClock, FakeHost, MemFs, MountCall, RecordingMounter};
use aufs_ports::{Filesystem, InProcessLocks, MountRequest, UnionBackend, UnionSpec};
use camino::Utf8PathBuf;
use std::sync::Arc;

struct World {
    fs: Arc<MemFs>,
    mounter: Arc<RecordingMounter>,
    host: Arc<FakeHost>,
    clock: Arc<FakeClock>,
    backend: Arc<KernelAufs>,
}

fn world_with(host: FakeHost) -> World {
    let fs = Arc::new(MemFs::new());
    let mounter = Arc::new(RecordingMounter::with_fs(fs.clone()));
    let host = Arc::new(host);
    let clock = Arc::new(FakeClock::default());
    let backend = Arc::new(KernelAufs::new(
        mounter.clone(),
        fs.clone(),
        host.clone(),
        clock.clone(),
    ));
    World {
        fs,
        mounter,
        host,
        clock,
        backend,
    }
}

fn world() -> World {
    world_with(FakeHost::with_aufs())
}

impl World {
    fn driver(&self, root: &str) -> Result<Driver, DriverError> {
        Driver::init(
            DriverConfig::new(root),
            Ports {
                archive: Arc::new(aufs_ports::fakes::MemArchive::new(self.fs.clone())),
                fs: self.fs.clone(),
                host: self.host.clone(),
                backend: self.backend.clone(),
                locks: Arc::new(InProcessLocks::new()),
            },
        )
    }
}

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

/// Builds a chain of `n` layers; ids are sha256-like hex as in moby's test.
fn chain(d: &Driver, n: usize) -> Vec<LayerId> {
    let mut ids: Vec<LayerId> = Vec::new();
    for i in 0..n {
        let l = id(&format!("{:064x}", i * 7919 + 1));
        d.create(&l, ids.last(), &CreateOpts::default()).unwrap();
        ids.push(l);
    }
    ids
}

fn plan_of(reqs: &[MountRequest]) -> MountPlan {
    assert!(!reqs[0].flags.remount);
    MountPlan {
        mount_data: reqs[0].data.clone(),
        remount_data: reqs[1..]
            .iter()
            .map(|r| {
                assert!(r.flags.remount, "later calls must be MS_REMOUNT");
                r.data.clone()
            })
            .collect(),
    }
}

fn check_mount_of(n: usize, root: &str, label: &str) {
    let w = world();
    let d = w.driver(root).unwrap();
    let ids = chain(&d, n);
    w.mounter.clear_calls();
    let top = ids.last().unwrap();
    let m = d.get(top, label).unwrap();
    let reqs: Vec<MountRequest> = w
        .mounter
        .mount_requests()
        .into_iter()
        .filter(|r| r.target == m)
        .collect();
    for r in &reqs {
        assert_eq!((r.source.as_str(), r.fstype.as_str()), ("none", "aufs"));
        assert!(r.data.len() < 4096, "{} bytes of mount data", r.data.len());
        if !label.is_empty() {
            assert!(
                r.data.ends_with(&format!(",context=\"{label}\""))
                    || r.data.starts_with("context=")
            );
        }
    }
    let first = &reqs[0].data;
    assert!(
        first.starts_with(&format!("br:{root}/diff/{top}=rw:")),
        "{first}"
    );
    assert!(first.contains(",dio,xino=/dev/shm/aufs.xino"));
    // Every layer exactly once, nearest parent first, across all calls.
    let branches = branches_of(&plan_of(&reqs), label);
    assert_eq!(branches.len(), n);
    let expected: Vec<String> = ids
        .iter()
        .rev()
        .map(|i| format!("{root}/diff/{i}"))
        .collect();
    let got: Vec<String> = branches.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(got, expected);
    assert_eq!(branches[0].1, "rw");
    assert!(branches[1..].iter().all(|(_, perm)| perm == "ro+wh"));
    if n >= 128 {
        assert!(reqs.len() > 1, "a deep chain needs append remounts");
    }
    d.put(top).unwrap();
    assert!(w.mounter.mounted().is_empty());
}

#[test]
fn mount_data_for_1_42_128_1000_layers() {
    for n in [2, 42, 128, 1000] {
        check_mount_of(n, "/var/lib/docker/aufs", "");
    }
}

#[test]
fn mount_data_with_long_labels() {
    let label = format!("system_u:object_r:container_file_t:s0:c{}", "1".repeat(900));
    check_mount_of(128, "/var/lib/docker/aufs", &label);
    check_mount_of(
        42,
        "/var/lib/docker/aufs",
        "system_u:object_r:svirt_sandbox_file_t:s0:c1,c2",
    );
}

/// moby's TestMountMoreThan42LayersMatchingPathLength: roots padded so the
/// page boundary falls inside a branch path or its `=ro+wh` suffix.
#[test]
fn page_boundary_inside_a_branch() {
    for pad in 0..40 {
        let root = format!("/tmp/aufs-tests-{}", "0".repeat(pad));
        check_mount_of(60, &root, "");
    }
}

#[test]
fn exact_single_parent_string() {
    let w = world();
    let d = w.driver("/r").unwrap();
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    d.create(&id("2"), Some(&id("1")), &CreateOpts::default())
        .unwrap();
    w.mounter.fail_mount(libc::EINVAL, 1);
    assert!(!w.backend.dirperm1_supported(), "probe fails: no dirperm1");
    w.mounter.clear_calls();
    d.get(&id("2"), "").unwrap();
    assert_eq!(
        w.mounter.calls(),
        vec![MountCall::Mount(MountRequest {
            source: "none".into(),
            target: "/r/mnt/2".into(),
            fstype: "aufs".into(),
            flags: Default::default(),
            data: "br:/r/diff/2=rw:/r/diff/1=ro+wh,dio,xino=/dev/shm/aufs.xino".into(),
        })]
    );
}

#[test]
fn dirperm1_probe_runs_once_and_adds_the_option() {
    let w = world();
    let d = w.driver("/r").unwrap();
    assert!(d.status().unwrap().dirperm1_supported);
    assert!(w.backend.dirperm1_supported());
    let probes: Vec<_> = w
        .mounter
        .mount_requests()
        .into_iter()
        .filter(|r| r.data.contains(",dirperm1,xino="))
        .collect();
    assert_eq!(probes.len(), 1, "probe must run once");
    assert!(probes[0].data.starts_with("br:/tmp/docker-aufs-base"));
    // Probe dirs are gone and unmounted.
    assert!(w.mounter.mounted().is_empty());
    assert!(!w
        .fs
        .all_paths()
        .iter()
        .any(|p| p.as_str().contains("docker-aufs")));
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    d.create(&id("2"), Some(&id("1")), &CreateOpts::default())
        .unwrap();
    d.get(&id("2"), "").unwrap();
    let last = w.mounter.mount_requests().pop().unwrap();
    assert!(
        last.data.ends_with(",dio,xino=/dev/shm/aufs.xino,dirperm1"),
        "{}",
        last.data
    );
}

#[test]
fn dirperm1_false_when_probe_mount_fails() {
    let w = world();
    w.mounter.fail_mount(libc::EINVAL, 1);
    assert!(!w.backend.dirperm1_supported());
    assert!(!w
        .fs
        .all_paths()
        .iter()
        .any(|p| p.as_str().contains("docker-aufs")));
}

#[test]
fn unmount_retries_on_ebusy_then_succeeds() {
    let w = world();
    let spec = UnionSpec {
        rw: "/rw".into(),
        ro: vec!["/ro".into()],
        target: "/tmp".into(),
        mount_label: String::new(),
    };
    w.backend.dirperm1_supported();
    w.backend.mount(&spec).unwrap();
    w.mounter.fail_unmount(Some("/tmp".into()), libc::EBUSY, 3);
    w.backend.unmount("/tmp".into()).unwrap();
    assert_eq!(w.clock.sleeps(), vec![UNMOUNT_RETRY_DELAY; 3]);
    assert!(w.mounter.mounted().is_empty());
}

#[test]
fn unmount_gives_up_after_retries_with_ebusy() {
    let w = world();
    w.backend.dirperm1_supported();
    let spec = UnionSpec {
        rw: "/rw".into(),
        ro: vec![],
        target: "/tmp".into(),
        mount_label: String::new(),
    };
    w.backend.mount(&spec).unwrap();
    w.mounter
        .fail_unmount(Some("/tmp".into()), libc::EBUSY, 100);
    let e = w.backend.unmount("/tmp".into()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    assert_eq!(w.clock.sleeps().len(), UNMOUNT_RETRIES);
}

#[test]
fn unmounting_what_is_not_mounted_is_fine() {
    let w = world();
    w.backend.unmount("/nothing".into()).unwrap();
}

#[test]
fn failed_append_unmounts_and_keeps_no_reference() {
    let w = world();
    let d = w.driver("/var/lib/docker/aufs").unwrap();
    let ids = chain(&d, 200);
    let top = ids.last().unwrap();
    w.mounter.fail_remount(libc::ENOMEM, 1);
    let e = d.get(top, "").unwrap_err();
    assert!(matches!(e, DriverError::Mount { .. }), "{e}");
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
    assert!(e.to_string().contains(&format!("mnt/{top}")));
    assert!(
        w.mounter.mounted().is_empty(),
        "half-built union left mounted"
    );
    assert_eq!(d.references(top).unwrap(), 0);
    // And the next get works.
    d.get(top, "").unwrap();
    assert_eq!(d.references(top).unwrap(), 1);
}

#[test]
fn remove_of_a_busy_mountpoint_returns_the_error() {
    let w = world();
    let d = w.driver("/r").unwrap();
    d.create(&id("1"), None, &CreateOpts::default()).unwrap();
    w.fs.set_busy("/r/mnt/1".into(), true);
    let e = d.remove(&id("1")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
    // The layers file went first: the layer no longer exists.
    assert!(!d.exists(&id("1")));
    w.fs.set_busy("/r/mnt/1".into(), false);
    // A later remove finishes the job.
    d.remove(&id("1")).unwrap();
    assert!(!w.fs.all_paths().iter().any(|p| p.as_str().contains("/1")));
}

#[test]
fn init_refuses_without_aufs_in_kernel_and_nested_userns() {
    let w = world_with(FakeHost::default());
    let e = w.driver("/r").unwrap_err();
    assert!(
        e.to_string()
            .contains("AUFS was not found in /proc/filesystems"),
        "{e}"
    );
    let w = world_with(FakeHost {
        user_namespace: true,
        ..FakeHost::with_aufs()
    });
    let e = w.driver("/r").unwrap_err();
    assert!(e.to_string().contains("non-init user namespace"), "{e}");
}

#[test]
fn init_refuses_btrfs_backing_for_kernel_aufs() {
    let w = world();
    w.host.set_magic("/".into(), fs_magic::BTRFS);
    let e = w.driver("/var/lib/docker/aufs").unwrap_err();
    assert_eq!(
        e.to_string(),
        "AUFS is not supported over btrfs (/var/lib/docker/aufs)"
    );
    assert!(
        w.fs.kind("/var/lib/docker".into()).unwrap().is_none(),
        "nothing created"
    );
}

#[test]
fn cleanup_unmounts_everything_under_root() {
    let w = world();
    let d = w.driver("/r").unwrap();
    let ids = chain(&d, 3);
    d.get(&ids[2], "").unwrap();
    d.get(&ids[1], "").unwrap();
    // Something else mounted below the root, e.g. by a crashed run.
    w.fs.create_dir_all("/r/diff/x".into(), 0o755, None)
        .unwrap();
    w.backend
        .mount(&UnionSpec {
            rw: "/a".into(),
            ro: vec![],
            target: Utf8PathBuf::from("/r/diff/x"),
            mount_label: String::new(),
        })
        .unwrap();
    d.cleanup().unwrap();
    assert!(w.mounter.mounted().is_empty());
}
