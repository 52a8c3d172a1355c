//! ApplyDiff, Diff, Changes and DiffSize through the driver on the real
//! filesystem (moby's `TestGetDiff`, `TestChanges`, `TestDiffSize`,
//! `TestChildDiffSize`, `TestApplyDiff`), plus exact original bytes. No
//! union is ever mounted (diffs against an older ancestor read the unions in
//! process) and no root is needed.

use aufs_driver::{ChangeKind, CreateOpts, Driver, DriverConfig, DriverError, Ports};
use aufs_linux::{LinuxFilesystem, LinuxHost};
use aufs_model::LayerId;
use aufs_ports::fakes::FakeUnionBackend;
use aufs_ports::{BackendKind, InProcessLocks};
use camino::Utf8PathBuf;
use std::sync::Arc;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: Utf8PathBuf,
    d: Driver,
    backend: Arc<FakeUnionBackend>,
}

fn id(s: &str) -> LayerId {
    LayerId::new(s).unwrap()
}

/// A driver on the real filesystem whose unions are only a table.
fn open(config: DriverConfig) -> Driver {
    open_with(config, Arc::new(FakeUnionBackend::new(BackendKind::Fuse)))
}

fn open_with(config: DriverConfig, backend: Arc<FakeUnionBackend>) -> Driver {
    Driver::init(
        config,
        Ports {
            archive: Arc::new(aufs_archive::DiskArchive),
            fs: Arc::new(LinuxFilesystem::new()),
            host: Arc::new(LinuxHost::new()),
            backend,
            locks: Arc::new(InProcessLocks::new()),
        },
    )
    .unwrap()
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().join("aufs")).unwrap();
    let backend = Arc::new(FakeUnionBackend::new(BackendKind::Fuse));
    let d = open_with(DriverConfig::new(root.clone()), backend.clone());
    Fixture {
        _tmp: tmp,
        root,
        d,
        backend,
    }
}

impl Fixture {
    fn diff(&self, l: &str) -> Utf8PathBuf {
        self.root.join("diff").join(l)
    }
    fn create(&self, l: &str, parent: Option<&str>) {
        self.d
            .create(&id(l), parent.map(id).as_ref(), &CreateOpts::default())
            .unwrap();
    }
}

/// A tarball of a few entries, PAX extended header included.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o755);
    h.set_mtime(1_600_000_000);
    h.set_size(0);
    b.append_data(&mut h, "etc/", &[][..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(12);
    b.append_data(&mut h, "etc/hostname", &b"hello world\n"[..])
        .unwrap();
    b.append_pax_extensions([("user.note", &b"x"[..])]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(3);
    b.append_data(&mut h, "etc/secret", &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(0);
    b.append_data(&mut h, ".wh.gone", &[][..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn get_diff_of_a_layer_holds_its_file() {
    let f = fixture();
    f.create("1", None);
    std::fs::write(f.diff("1").join("test_file"), vec![0u8; 1024]).unwrap();
    let mut out = Vec::new();
    f.d.diff(&id("1"), None, &mut out).unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "test_file"),
        "{names:?}"
    );
}

#[test]
fn diff_size_and_child_diff_size() {
    let f = fixture();
    f.create("1", None);
    std::fs::write(f.diff("1").join("test_file"), vec![7u8; 1024]).unwrap();
    assert_eq!(f.d.diff_size(&id("1"), None).unwrap(), 1024);
    f.create("2", Some("1"));
    assert_eq!(f.d.diff_size(&id("2"), Some(&id("1"))).unwrap(), 0);
}

#[test]
fn changes_do_not_repeat_the_parents() {
    let f = fixture();
    f.create("1", None);
    f.create("2", Some("1"));
    std::fs::write(f.diff("2").join("test.txt"), "x").unwrap();
    let c = f.d.changes(&id("2"), Some(&id("1"))).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].path.as_str(), c[0].kind),
        ("/test.txt", ChangeKind::Add)
    );
    f.create("3", Some("2"));
    std::fs::write(f.diff("3").join("test2.txt"), "y").unwrap();
    let c = f.d.changes(&id("3"), Some(&id("2"))).unwrap();
    assert_eq!(
        c.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        vec!["A /test2.txt"]
    );
}

#[test]
fn diffs_against_an_older_ancestor_compare_unions_without_mounting() {
    let f = fixture();
    f.create("1", None);
    std::fs::create_dir(f.diff("1").join("etc")).unwrap();
    std::fs::write(f.diff("1").join("etc/passwd"), "root\n").unwrap();
    std::fs::write(f.diff("1").join("etc/gone"), "g").unwrap();
    f.create("2", Some("1"));
    std::fs::create_dir(f.diff("2").join("etc")).unwrap();
    std::fs::write(f.diff("2").join("etc/.wh.gone"), "").unwrap();
    std::fs::write(f.diff("2").join("etc/added"), "abc").unwrap();
    f.create("3", Some("2"));
    std::fs::create_dir(f.diff("3").join("etc")).unwrap();
    std::fs::write(f.diff("3").join("etc/passwd"), "root\nuser\n").unwrap();

    let c = f.d.changes(&id("3"), Some(&id("1"))).unwrap();
    assert_eq!(
        c.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        vec!["C /etc", "A /etc/added", "D /etc/gone", "C /etc/passwd"]
    );
    assert_eq!(f.d.diff_size(&id("3"), Some(&id("1"))).unwrap(), 3 + 10);
    let mut tarball = Vec::new();
    f.d.diff(&id("3"), Some(&id("1")), &mut tarball).unwrap();
    let names = tar_names(&tarball);
    assert_eq!(
        names,
        vec!["etc/", "etc/added", "etc/.wh.gone", "etc/passwd"]
    );
    // Without a parent: the whole union of the layer, whiteouts applied.
    let all = f.d.changes(&id("3"), None).unwrap();
    assert_eq!(
        all.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        vec!["A /etc", "A /etc/added", "A /etc/passwd"]
    );
    assert!(f.backend.history().is_empty(), "a union was mounted");
}

#[test]
fn apply_diff_of_one_layer_onto_another() {
    let f = fixture();
    f.create("1", None);
    std::fs::write(f.diff("1").join("test_file"), "data").unwrap();
    f.create("2", Some("1"));
    f.create("3", Some("2"));
    let mut tarball = Vec::new();
    f.d.diff(&id("1"), None, &mut tarball).unwrap();
    let out =
        f.d.apply_diff(&id("3"), Some(&id("2")), &tarball[..])
            .unwrap();
    assert_eq!(out.size, 4);
    assert_eq!(
        std::fs::read_to_string(f.diff("3").join("test_file")).unwrap(),
        "data"
    );
}

/// The entry names of a tarball, in order.
fn tar_names(tarball: &[u8]) -> Vec<String> {
    tar::Archive::new(tarball)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

#[test]
fn applied_layer_diffs_to_the_exact_input_until_changed() {
    let f = fixture();
    f.create("l", None);
    let input = sample_tar();
    let out = f.d.apply_diff(&id("l"), None, &input[..]).unwrap();
    assert_eq!(out.size, 15);
    assert!(
        f.diff("l").join(".wh.gone").exists(),
        "whiteouts stay aufs files"
    );
    let mut again = Vec::new();
    f.d.diff(&id("l"), None, &mut again).unwrap();
    assert!(
        again == input,
        "diff of an unchanged applied layer must be byte-identical"
    );
    // A file added to the layer (every recorded file unchanged) is noticed.
    std::fs::write(f.diff("l").join("etc/added"), "new\n").unwrap();
    let mut added = Vec::new();
    f.d.diff(&id("l"), None, &mut added).unwrap();
    let names = tar_names(&added);
    assert!(names.iter().any(|n| n.ends_with("etc/added")), "{names:?}");
    // Change the layer: the diff is generated from the diff dir instead.
    std::fs::write(f.diff("l").join("etc/hostname"), "changed!!!!\n").unwrap();
    let mut changed = Vec::new();
    f.d.diff(&id("l"), None, &mut changed).unwrap();
    assert_ne!(changed, input);
    let mut ar = tar::Archive::new(&changed[..]);
    let mut found = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("hostname") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            assert_eq!(s, "changed!!!!\n");
            found = true;
        }
    }
    assert!(found);
    // Removing the layer removes its exact-bytes metadata and its seal.
    let meta_dir = f.root.join("tar-split");
    let mut names: Vec<String> = std::fs::read_dir(&meta_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["l.tar-split.gz", "l.tar-split.gz.seal"]);
    f.d.remove(&id("l")).unwrap();
    assert_eq!(std::fs::read_dir(&meta_dir).unwrap().count(), 0);
}

#[test]
fn gzip_input_diffs_to_the_uncompressed_bytes() {
    use std::io::Write;
    let f = fixture();
    f.create("g", None);
    let input = sample_tar();
    let mut gz = flate2_encode(&input);
    gz.flush().unwrap();
    f.d.apply_diff(&id("g"), None, &gz.get_ref()[..]).unwrap();
    let mut out = Vec::new();
    f.d.diff(&id("g"), None, &mut out).unwrap();
    assert!(out == input);
}

fn flate2_encode(data: &[u8]) -> std::io::Cursor<Vec<u8>> {
    // A gzip stream made by the system's gzip, so the test does not share
    // code with the decoder under test.
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    std::io::Cursor::new(out.stdout)
}

#[test]
fn refusals_name_their_cause_and_change_nothing() {
    let f = fixture();
    f.create("a", None);
    f.create("b", Some("a"));
    f.create("c", Some("b"));
    std::fs::write(f.diff("c").join("keep"), "k").unwrap();
    let e =
        f.d.apply_diff(&id("c"), Some(&id("a")), &sample_tar()[..])
            .unwrap_err();
    assert!(matches!(e, DriverError::NotDirectParent { .. }), "{e}");
    let e =
        f.d.apply_diff(&id("ghost"), None, &sample_tar()[..])
            .unwrap_err();
    assert!(matches!(e, DriverError::NotFound(_)), "{e}");
    let e = f.d.changes(&id("c"), Some(&id("zz"))).unwrap_err();
    assert!(matches!(e, DriverError::NotAnAncestor { .. }), "{e}");
    // A hostile entry: the error names it, the layer is as before.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../escape.txt");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let evil = b.into_inner().unwrap();
    let e =
        f.d.apply_diff(&id("c"), None.or(Some(&id("b"))), &evil[..])
            .unwrap_err();
    // The cause names it, and only the cause: the message does not repeat it.
    let cause = std::error::Error::source(&e).expect("a cause").to_string();
    assert!(cause.contains("escape.txt"), "{e}: {cause}");
    assert!(!e.to_string().contains("escape.txt"), "{e}");
    assert_eq!(
        std::fs::read_to_string(f.diff("c").join("keep")).unwrap(),
        "k"
    );
    assert!(!f.root.join("diff/escape.txt").exists());
    assert!(!f.root.join("escape.txt").exists());
    // A mounted layer cannot be replaced under its union.
    f.d.get(&id("c"), "").unwrap();
    let e =
        f.d.apply_diff(&id("c"), Some(&id("b")), &sample_tar()[..])
            .unwrap_err();
    assert!(matches!(e, DriverError::Mounted(_)), "{e}");
}

/// With user-namespace id maps, the driver's dirs belong to the mapped
/// root and applied entries to their mapped owners (root needed to chown).
#[test]
fn id_maps_apply_to_dirs_and_entries() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: chown to mapped ids needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().join("aufs")).unwrap();
    let mut config = DriverConfig::new(root.clone());
    config.id_maps = aufs_model::IdMappings {
        uids: vec![aufs_model::IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }],
        gids: vec![aufs_model::IdMap {
            container_id: 0,
            host_id: 200_000,
            size: 65_536,
        }],
    };
    let d = open(config);
    for dir in ["", "layers", "diff", "mnt"] {
        let md = std::fs::metadata(root.join(dir)).unwrap();
        assert_eq!((md.uid(), md.gid()), (100_000, 200_000), "{dir}");
    }
    d.create(&id("m"), None, &CreateOpts::default()).unwrap();
    let md = std::fs::metadata(root.join("diff/m")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (100_000, 200_000, 0o755)
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o640);
    h.set_uid(33);
    h.set_gid(44);
    h.set_mtime(1);
    h.set_size(2);
    b.append_data(&mut h, "www", &b"hi"[..]).unwrap();
    d.apply_diff(&id("m"), None, &b.into_inner().unwrap()[..])
        .unwrap();
    let md = std::fs::symlink_metadata(root.join("diff/m/www")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100_033, 200_044));
}

/// Applies stage outside `diff/`, per layer; what an interrupted apply left
/// is removed by the next apply of that layer and by its removal.
#[test]
fn staging_stays_out_of_diff_and_is_cleaned() {
    let f = fixture();
    f.create("s", None);
    let leftover = f.root.join("staging/s/.aufs-apply-crashed/tree");
    std::fs::create_dir_all(&leftover).unwrap();
    f.d.apply_diff(&id("s"), None, &sample_tar()[..]).unwrap();
    assert!(!leftover.exists());
    // A failed apply leaves nothing behind either.
    let _ =
        f.d.apply_diff(&id("s"), None, &b"garbage that is no tarball"[..])
            .unwrap_err();
    let names: Vec<String> = std::fs::read_dir(f.root.join("diff"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["s"]);
    assert_eq!(
        std::fs::read_dir(f.root.join("staging")).unwrap().count(),
        0
    );
    std::fs::create_dir_all(&leftover).unwrap();
    f.d.remove(&id("s")).unwrap();
    assert!(!f.root.join("staging/s").exists());
}
