//! The cases: moby's `aufs_test.go` cases, layer content (apply, diff,
//! changes, size) as Docker computes it, plus
//! reference counting, refusals and concurrency.

use crate::Rig;
use aufs_driver::{CreateOpts, DriverError};
use aufs_model::LayerId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

fn opts() -> CreateOpts {
    CreateOpts::default()
}

/// TestNewDriver / TestAufsString.
pub fn new_driver(rig: &dyn Rig) {
    let d = rig.driver();
    assert_eq!(d.name(), "aufs");
}

/// TestCreateDirStructure.
pub fn create_dir_structure(rig: &dyn Rig) {
    let _d = rig.driver();
    for p in ["mnt", "layers", "diff"] {
        assert!(rig.path_exists(&rig.root().join(p)), "{p} missing");
    }
}

/// TestNewDriverFromExistingDir.
pub fn new_driver_from_existing_dir(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    drop(d);
    let d = rig.driver();
    assert!(d.exists(&id("1")));
}

/// TestCreateNewDir / TestCreateNewDirStructure.
pub fn create_new_dir_structure(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    for p in ["mnt", "diff", "layers"] {
        assert!(
            rig.path_exists(&rig.root().join(p).join("1")),
            "{p}/1 missing"
        );
    }
}

/// TestRemoveImage.
pub fn remove_image(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.remove(&id("1")).unwrap();
    for p in ["mnt", "diff", "layers"] {
        assert!(
            !rig.path_exists(&rig.root().join(p).join("1")),
            "{p}/1 left"
        );
        assert!(
            !rig.path_exists(&rig.root().join(p).join("1-removing")),
            "{p}/1-removing left"
        );
    }
    assert!(!d.exists(&id("1")));
}

/// TestGetWithoutParent.
pub fn get_without_parent(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    let p = d.get(&id("1"), "").unwrap();
    assert_eq!(p, rig.root().join("diff").join("1"));
    d.put(&id("1")).unwrap();
}

/// TestCleanupWithNoDirs.
pub fn cleanup_with_no_dirs(rig: &dyn Rig) {
    rig.driver().cleanup().unwrap();
}

/// TestCleanupWithDir.
pub fn cleanup_with_dir(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let m = d.get(&id("2"), "").unwrap();
    assert!(rig.is_mounted(&m));
    d.cleanup().unwrap();
    assert!(!rig.is_mounted(&m));
    assert_eq!(d.references(&id("2")).unwrap(), 0);
}

/// TestMountedFalseResponse.
pub fn mounted_false_response(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    let p = d.get(&id("1"), "").unwrap();
    assert!(!rig.is_mounted(&p));
    assert!(!rig.is_mounted(&rig.root().join("mnt/1")));
    d.put(&id("1")).unwrap();
}

/// TestMountedTrueResponse.
pub fn mounted_true_response(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let p = d.get(&id("2"), "").unwrap();
    assert!(rig.is_mounted(&p));
    d.put(&id("2")).unwrap();
    assert!(!rig.is_mounted(&p));
}

/// TestMountWithParent.
pub fn mount_with_parent(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let p = d.get(&id("2"), "").unwrap();
    assert_eq!(p, rig.root().join("mnt").join("2"));
    d.put(&id("2")).unwrap();
}

/// TestRemoveMountedDir.
pub fn remove_mounted_dir(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let p = d.get(&id("2"), "").unwrap();
    assert!(rig.is_mounted(&p));
    d.remove(&id("2")).unwrap();
    assert!(!rig.is_mounted(&p));
    assert!(!d.exists(&id("2")));
    assert!(!rig.path_exists(&p));
}

/// TestCreateWithInvalidParent.
pub fn create_with_invalid_parent(rig: &dyn Rig) {
    let d = rig.driver();
    let e = d
        .create(&id("1"), Some(&id("docker")), &opts())
        .unwrap_err();
    assert!(matches!(e, DriverError::ParentNotFound { .. }), "{e}");
    assert!(e.to_string().contains("docker"));
    assert!(!d.exists(&id("1")));
    assert!(
        !rig.path_exists(&rig.root().join("diff/1")),
        "half-created layer left"
    );
}

/// TestExists.
pub fn exists(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    assert!(!d.exists(&id("none")));
    assert!(d.exists(&id("1")));
}

/// TestStatus (plus our `Mount Backend` line).
pub fn status(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    let s = d.status().unwrap();
    let pairs = s.pairs();
    assert_eq!(pairs.len(), 7);
    assert_eq!(pairs[0], ("Root Dir", rig.root().to_string()));
    assert_eq!(pairs[1].0, "Backing Filesystem");
    assert_eq!(pairs[2], ("Dirs", "1".to_string()));
    assert_eq!(pairs[3].0, "Dirperm1 Supported");
    assert_eq!(pairs[4].0, "Mount Backend");
    assert_eq!(pairs[5], ("Supports d_type", "true".to_string()));
    assert_eq!(pairs[6], ("Supports xattrs", "true".to_string()));
}

/// TestInitStaleCleanup.
pub fn init_stale_cleanup(rig: &dyn Rig) {
    drop(rig.driver());
    for p in [
        "diff/123-removing",
        "mnt/123-removing",
        "diff/123-removing/deep/er",
    ] {
        rig.make_dir(&rig.root().join(p));
    }
    let _d = rig.driver();
    assert!(!rig.path_exists(&rig.root().join("diff/123-removing")));
    assert!(!rig.path_exists(&rig.root().join("mnt/123-removing")));
}

/// Unlike the Go driver (which truncates the layers file), an existing id is
/// refused and its chain is untouched.
pub fn create_existing_is_refused(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let e = d.create(&id("2"), None, &opts()).unwrap_err();
    assert!(matches!(e, DriverError::AlreadyExists(_)), "{e}");
    assert_eq!(d.parent_chain(&id("2")).unwrap().parent(), Some(&id("1")));
}

/// `--storage-opt` is refused as the Go driver does.
pub fn storage_opts_refused(rig: &dyn Rig) {
    let d = rig.driver();
    let mut o = opts();
    o.storage_opt.insert("size".into(), "50M".into());
    let e = d.create(&id("1"), None, &o).unwrap_err();
    assert_eq!(e.to_string(), "--storage-opt is not supported for aufs");
    assert!(!d.exists(&id("1")));
}

/// Reference counting: one mount for many gets; the last put unmounts.
pub fn two_gets_one_mount_two_puts(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create_read_write(&id("2"), Some(&id("1")), &opts())
        .unwrap();
    let a = d.get(&id("2"), "").unwrap();
    let b = d.get(&id("2"), "").unwrap();
    assert_eq!(a, b);
    assert_eq!(d.references(&id("2")).unwrap(), 2);
    d.put(&id("2")).unwrap();
    assert!(rig.is_mounted(&a), "unmounted while still referenced");
    d.put(&id("2")).unwrap();
    assert!(!rig.is_mounted(&a));
    assert_eq!(d.references(&id("2")).unwrap(), 0);
}

/// A put with no get neither fails nor underflows.
pub fn put_without_get_is_harmless(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.put(&id("1")).unwrap();
    assert_eq!(d.references(&id("1")).unwrap(), 0);
    d.get(&id("1"), "").unwrap();
    assert_eq!(d.references(&id("1")).unwrap(), 1);
}

/// A layer others are built on cannot be removed.
pub fn remove_with_children_refused(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    let e = d.remove(&id("1")).unwrap_err();
    assert!(matches!(e, DriverError::HasChildren { .. }), "{e}");
    assert!(d.exists(&id("1")));
    d.remove(&id("2")).unwrap();
    d.remove(&id("1")).unwrap();
}

/// Removing what does not exist says so.
pub fn remove_missing_is_not_found(rig: &dyn Rig) {
    let d = rig.driver();
    let e = d.remove(&id("ghost")).unwrap_err();
    assert!(matches!(e, DriverError::NotFound(_)), "{e}");
}

/// Getting what does not exist says so (the Go driver returns a path to
/// nothing).
pub fn get_missing_is_not_found(rig: &dyn Rig) {
    let d = rig.driver();
    let e = d.get(&id("ghost"), "").unwrap_err();
    assert!(matches!(e, DriverError::NotFound(_)), "{e}");
    assert_eq!(d.references(&id("ghost")).unwrap(), 0);
}

/// isParent.
pub fn is_parent(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("1"), None, &opts()).unwrap();
    d.create(&id("2"), Some(&id("1")), &opts()).unwrap();
    d.create(&id("3"), Some(&id("2")), &opts()).unwrap();
    assert!(d.is_parent(&id("1"), None));
    assert!(d.is_parent(&id("3"), Some(&id("2"))));
    assert!(!d.is_parent(&id("3"), Some(&id("1"))));
    assert!(!d.is_parent(&id("3"), None));
    assert_eq!(d.parent_chain(&id("3")).unwrap().render(), "2\n1\n");
}

/// `ls`: every layer with its parent.
pub fn list_layers(rig: &dyn Rig) {
    let d = rig.driver();
    d.create(&id("b"), None, &opts()).unwrap();
    d.create(&id("a"), Some(&id("b")), &opts()).unwrap();
    let l = d.list().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(
        (l[0].id.as_str(), l[0].parent.as_ref().map(|p| p.as_str())),
        ("a", Some("b"))
    );
    assert_eq!((l[1].id.as_str(), l[1].parent.as_ref()), ("b", None));
}

/// Of racing creates of one id (from separate driver instances, as separate
/// processes would be), exactly one wins.
pub fn racing_creates_exactly_one_wins(rig: &dyn Rig) {
    drop(rig.driver());
    for round in 0..5 {
        let layer = id(&format!("race{round}"));
        let wins = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let d = rig.driver();
                    match d.create(&layer, None, &opts()) {
                        Ok(()) => {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(DriverError::AlreadyExists(_)) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                });
            }
        });
        assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
    }
}

/// Threads hammering get/put/remove on shared ids: no leaked mount, no lost
/// layer, counts back to zero.
pub fn hammer_get_put_remove(rig: &dyn Rig) {
    let d = Arc::new(rig.driver());
    d.create(&id("base"), None, &opts()).unwrap();
    let shared: Vec<LayerId> = (0..3).map(|i| id(&format!("shared{i}"))).collect();
    for s in &shared {
        d.create_read_write(s, Some(&id("base")), &opts()).unwrap();
    }
    std::thread::scope(|scope| {
        for t in 0..6 {
            let d = Arc::clone(&d);
            let shared = &shared;
            scope.spawn(move || {
                for i in 0..40 {
                    let s = &shared[(t + i) % shared.len()];
                    let p = d.get(s, "").unwrap();
                    assert!(p.ends_with(s.as_str()));
                    d.put(s).unwrap();
                    // A private layer created and removed under contention.
                    let own = id(&format!("own-{t}-{i}"));
                    d.create_read_write(&own, Some(&id("base")), &opts())
                        .unwrap();
                    d.get(&own, "").unwrap();
                    d.remove(&own).unwrap();
                }
            });
        }
    });
    for s in &shared {
        assert_eq!(d.references(s).unwrap(), 0);
        assert!(
            !rig.is_mounted(&rig.root().join("mnt").join(s.as_str())),
            "leaked mount of {s}"
        );
        assert!(d.exists(s));
    }
    let ids: Vec<String> = d
        .layer_ids()
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(ids, vec!["base", "shared0", "shared1", "shared2"]);
}

/// A 130-layer chain: the union is mounted once and the chain is intact.
pub fn deep_chain_mounts_every_parent(rig: &dyn Rig) {
    let d = rig.driver();
    let mut parent: Option<LayerId> = None;
    for i in 0..130 {
        let l = id(&format!("{i:064x}"));
        d.create(&l, parent.as_ref(), &opts()).unwrap();
        parent = Some(l);
    }
    let top = parent.unwrap();
    assert_eq!(d.parent_chain(&top).unwrap().len(), 129);
    let m = d.get(&top, "").unwrap();
    assert!(rig.is_mounted(&m));
    d.put(&top).unwrap();
    assert!(!rig.is_mounted(&m));
}

/// A tarball of `entries`: a path ending in `/` is a directory, anything
/// else a file with the given content; fixed times and owners.
fn tarball(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        b.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

fn listed(changes: &[aufs_driver::Change]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

/// The base layer and, on it, one with a changed file, an added file, a
/// new directory, a whiteout and an opaque directory.
fn two_applied_layers(d: &aufs_driver::Driver) -> Vec<u8> {
    d.create(&id("base"), None, &opts()).unwrap();
    let base = tarball(&[
        ("etc/", ""),
        ("etc/passwd", "root\n"),
        ("etc/hosts", "h\n"),
        ("opt/", ""),
        ("opt/old", "old"),
        ("var/", ""),
        ("var/log", "x"),
    ]);
    let applied = d.apply_diff(&id("base"), None, base.as_slice()).unwrap();
    assert_eq!(applied.size, 5 + 2 + 3 + 1);
    d.create(&id("top"), Some(&id("base")), &opts()).unwrap();
    let top = tarball(&[
        ("etc/", ""),
        ("etc/passwd", "root\nuser\n"),
        ("etc/new", "n"),
        (".wh.var", ""),
        ("opt/", ""),
        ("opt/.wh..wh..opq", ""),
        ("opt/fresh", "f"),
        ("bin/", ""),
        ("bin/sh", "#!"),
    ]);
    let applied = d
        .apply_diff(&id("top"), Some(&id("base")), top.as_slice())
        .unwrap();
    assert_eq!(
        applied.size,
        10 + 1 + 1 + 2,
        "whiteouts count as empty files"
    );
    assert!(applied.diff_id.is_some_and(|s| s.starts_with("sha256:")));
    top
}

/// ApplyDiff, Diff, Changes and DiffSize against the direct parent: the
/// diff of an unchanged layer is the applied tarball byte for byte, and
/// it applies to the same tree.
pub fn apply_diff_changes_size(rig: &dyn Rig) {
    let d = rig.driver();
    let top = two_applied_layers(&d);
    let want = [
        "A /bin",
        "A /bin/sh",
        "C /etc",
        "A /etc/new",
        "C /etc/passwd",
        "C /opt",
        "A /opt/fresh",
        "D /var",
    ];
    let changes = d.changes(&id("top"), Some(&id("base"))).unwrap();
    assert_eq!(listed(&changes), want);
    assert_eq!(d.diff_size(&id("top"), Some(&id("base"))).unwrap(), 14);

    let mut out = Vec::new();
    let n = d.diff(&id("top"), Some(&id("base")), &mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    assert!(out == top, "the diff of an unchanged layer is its tarball");

    d.create(&id("copy"), Some(&id("base")), &opts()).unwrap();
    d.apply_diff(&id("copy"), Some(&id("base")), out.as_slice())
        .unwrap();
    let again = d.changes(&id("copy"), Some(&id("base"))).unwrap();
    assert_eq!(listed(&again), want);
    assert_eq!(d.diff_size(&id("copy"), Some(&id("base"))).unwrap(), 14);

    // The same while the union is mounted (a stacked mount has the diff
    // dir in overlay form meanwhile).
    d.get(&id("top"), "").unwrap();
    let mounted = d.changes(&id("top"), Some(&id("base")));
    let size = d.diff_size(&id("top"), Some(&id("base")));
    let e = d.apply_diff(&id("top"), None, top.as_slice()).unwrap_err();
    d.put(&id("top")).unwrap();
    assert_eq!(listed(&mounted.unwrap()), want);
    assert_eq!(size.unwrap(), 14);
    assert!(
        matches!(e, DriverError::Mounted(ref x) if *x == id("top")),
        "{e}"
    );

    let e = d
        .apply_diff(&id("top"), Some(&id("top")), top.as_slice())
        .unwrap_err();
    assert!(matches!(e, DriverError::NotDirectParent { .. }), "{e}");
    let e = d.changes(&id("base"), Some(&id("top"))).unwrap_err();
    assert!(matches!(e, DriverError::NotAnAncestor { .. }), "{e}");

    // Removal takes the exact-bytes record with the layer.
    let record = rig.root().join("tar-split/copy.tar-split.gz");
    assert!(rig.path_exists(&record));
    d.remove(&id("copy")).unwrap();
    assert!(!rig.path_exists(&record));
    assert!(!rig.path_exists(&rig.root().join("diff/copy")));
}

/// Diff, Changes and DiffSize against no parent for a layer that has one:
/// the whole union as computed changes (moby's `NaiveDiffDriver`), read
/// without mounting; that diff applies to a layer of its own with the
/// same tree.
pub fn diff_against_another_ancestor(rig: &dyn Rig) {
    let d = rig.driver();
    two_applied_layers(&d);
    let want = [
        "A /bin",
        "A /bin/sh",
        "A /etc",
        "A /etc/hosts",
        "A /etc/new",
        "A /etc/passwd",
        "A /opt",
        "A /opt/fresh",
    ];
    let changes = d.changes(&id("top"), None).unwrap();
    assert_eq!(listed(&changes), want);
    assert_eq!(d.diff_size(&id("top"), None).unwrap(), 2 + 2 + 1 + 10 + 1);
    let mut out = Vec::new();
    d.diff(&id("top"), None, &mut out).unwrap();

    d.create(&id("flat"), None, &opts()).unwrap();
    let applied = d.apply_diff(&id("flat"), None, out.as_slice()).unwrap();
    assert_eq!(applied.size, 16);
    assert_eq!(listed(&d.changes(&id("flat"), None).unwrap()), want);

    // Against the base: what top changed, as the two unions differ.
    let changes = d.changes(&id("top"), Some(&id("base"))).unwrap();
    assert!(listed(&changes).contains(&"D /var".to_owned()));
}
