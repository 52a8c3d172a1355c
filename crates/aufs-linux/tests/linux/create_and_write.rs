//! create_dir_all, write_new/write_replace, read_dir, kind, make_temp_dir.

use crate::util::{require_root, Tmp};
use aufs_linux::LinuxFilesystem;
use aufs_ports::{FileKind, Filesystem};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

fn mode_of(p: &camino::Utf8Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn create_dir_all_sets_exact_mode_only_on_new_dirs() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let existing = tmp.join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o700)).unwrap();

    // 0o777 survives only if the umask is bypassed.
    let deep = existing.join("a/b/c");
    fs.create_dir_all(&deep, 0o777, None).unwrap();
    assert_eq!(mode_of(&existing), 0o700, "existing dir untouched");
    for p in ["existing/a", "existing/a/b", "existing/a/b/c"] {
        assert_eq!(mode_of(&tmp.join(p)), 0o777, "{p}");
    }
    // Idempotent, and does not change existing modes.
    fs.create_dir_all(&deep, 0o700, None).unwrap();
    assert_eq!(mode_of(&deep), 0o777);
    // Sticky bit is kept.
    fs.create_dir_all(&tmp.join("sticky"), 0o1777, None)
        .unwrap();
    assert_eq!(mode_of(&tmp.join("sticky")), 0o1777);
}

#[test]
fn create_dir_all_chowns_only_what_it_creates() {
    require_root!();
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    std::fs::create_dir(tmp.join("mine")).unwrap();
    fs.create_dir_all(&tmp.join("mine/x/y"), 0o710, Some((1234, 5678)))
        .unwrap();
    let md = std::fs::metadata(tmp.join("mine")).unwrap();
    assert_eq!((md.uid(), md.gid()), (0, 0));
    for p in ["mine/x", "mine/x/y"] {
        let md = std::fs::metadata(tmp.join(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{p}");
        assert_eq!(md.permissions().mode() & 0o7777, 0o710, "{p}");
    }
}

#[test]
fn create_dir_all_follows_existing_symlinks_and_refuses_files() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    std::fs::create_dir(tmp.join("real")).unwrap();
    std::os::unix::fs::symlink(tmp.join("real"), tmp.join("link")).unwrap();
    fs.create_dir_all(&tmp.join("link/sub"), 0o755, None)
        .unwrap();
    assert!(tmp.join("real/sub").is_dir());

    std::fs::write(tmp.join("file"), b"x").unwrap();
    let err = fs
        .create_dir_all(&tmp.join("file/sub"), 0o755, None)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    let err = fs
        .create_dir_all(camino::Utf8Path::new("relative/x"), 0o755, None)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn write_new_race_has_exactly_one_winner() {
    let tmp = Tmp::new();
    let fs = Arc::new(LinuxFilesystem::new());
    for round in 0..20 {
        let target = tmp.join(&format!("layer-{round}"));
        let n = 16;
        let barrier = Arc::new(Barrier::new(n));
        let results: Vec<_> = (0..n)
            .map(|i| {
                let (fs, barrier, target) = (fs.clone(), barrier.clone(), target.clone());
                std::thread::spawn(move || {
                    let data = format!("writer {i}\n").repeat(1000);
                    barrier.wait();
                    fs.write_new(&target, data.as_bytes())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let winners: Vec<usize> = (0..n).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "round {round}");
            }
        }
        let content = fs.read_to_string(&target).unwrap();
        assert_eq!(content, format!("writer {}\n", winners[0]).repeat(1000));
        assert_eq!(mode_of(&target), 0o644);
    }
    // No temp file is left behind, hidden or not.
    let mut names: Vec<_> = fs
        .read_dir(tmp.path())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    let mut expected: Vec<_> = (0..20).map(|r| format!("layer-{r}")).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn write_new_fails_on_existing_and_leaves_it() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    let p = tmp.join("f");
    fs.write_new(&p, b"first").unwrap();
    let err = fs.write_new(&p, b"second").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    assert_eq!(fs.read_to_string(&p).unwrap(), "first");
    // A dangling symlink counts as existing, and is not followed.
    std::os::unix::fs::symlink(tmp.join("nowhere"), tmp.join("dangling")).unwrap();
    let err = fs.write_new(&tmp.join("dangling"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    assert!(!tmp.join("nowhere").exists());
}

#[test]
fn write_replace_is_atomic_for_readers() {
    let tmp = Tmp::new();
    let fs = Arc::new(LinuxFilesystem::new());
    let p = tmp.join("state");
    let size = 256 * 1024;
    fs.write_replace(&p, &vec![b'a'; size]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (p, stop) = (p.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let data = std::fs::read(&p).unwrap();
                assert_eq!(data.len(), size, "partial content seen");
                assert!(data.iter().all(|&b| b == data[0]), "mixed content seen");
                reads += 1;
            }
            reads
        })
    };
    for i in 0..100 {
        let byte = if i % 2 == 0 { b'b' } else { b'a' };
        fs.write_replace(&p, &vec![byte; size]).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(std::fs::read(&p).unwrap(), vec![b'a'; size]);
    assert_eq!(mode_of(&p), 0o644);
    let names: Vec<_> = fs.read_dir(tmp.path()).unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn kind_read_dir_rename_remove_file_and_temp_dirs() {
    let tmp = Tmp::new();
    let fs = LinuxFilesystem::new();
    std::fs::create_dir(tmp.join("d")).unwrap();
    std::fs::write(tmp.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("d", tmp.join("l")).unwrap();
    nix::unistd::mkfifo(tmp.join("p").as_std_path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_eq!(fs.kind(&tmp.join("d")).unwrap(), Some(FileKind::Dir));
    assert_eq!(fs.kind(&tmp.join("f")).unwrap(), Some(FileKind::File));
    assert_eq!(fs.kind(&tmp.join("l")).unwrap(), Some(FileKind::Symlink));
    assert_eq!(fs.kind(&tmp.join("p")).unwrap(), Some(FileKind::Other));
    assert_eq!(fs.kind(&tmp.join("missing")).unwrap(), None);

    let mut entries = fs.read_dir(tmp.path()).unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        got,
        vec![
            ("d", FileKind::Dir),
            ("f", FileKind::File),
            ("l", FileKind::Symlink),
            ("p", FileKind::Other)
        ]
    );

    fs.rename(&tmp.join("f"), &tmp.join("g")).unwrap();
    assert_eq!(fs.kind(&tmp.join("f")).unwrap(), None);
    fs.remove_file(&tmp.join("g")).unwrap();
    assert_eq!(fs.kind(&tmp.join("g")).unwrap(), None);
    std::fs::write(tmp.join("d/inside"), b"x").unwrap();
    std::fs::create_dir(tmp.join("e")).unwrap();
    let err = fs.rename(&tmp.join("e"), &tmp.join("d")).unwrap_err();
    assert!(matches!(
        err.raw_os_error(),
        Some(libc::ENOTEMPTY | libc::EEXIST)
    ));

    let t = fs.make_temp_dir("aufs-linux-mktemp-").unwrap();
    assert!(t.file_name().unwrap().starts_with("aufs-linux-mktemp-"));
    assert_eq!(mode_of(&t), 0o700);
    fs.remove_all(&t).unwrap();
    assert!(fs.make_temp_dir("a/b").is_err());
}
