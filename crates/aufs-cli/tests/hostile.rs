//! Hostile ids, hand-made whiteouts, and input that changes under an apply.

mod common;

use common::image::layer_tar;
use common::Ctl;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

#[test]
fn ids_ending_in_removing_or_holding_control_characters_are_refused() {
    let c = Ctl::new();
    c.ok(&["create", "base"]);
    for bad in [
        "base-removing",
        "x-removing",
        "a\nb -",
        "a\rb",
        "esc\u{1b}[2J",
        "tab\tid",
    ] {
        for args in [
            vec!["create", bad],
            vec!["create-rw", bad, "--parent", "base"],
            vec!["create", "ok", "--parent", bad],
        ] {
            let e = c.fails(2, &args);
            assert!(e.contains("invalid layer id"), "{args:?}: {e}");
        }
    }
    assert_eq!(c.ok(&["ls"]), "base -\n");
}

/// A layer named `*-removing` made before such ids were refused is a
/// layer, not the trash of a removal: no start deletes its diff dir.
#[test]
fn a_start_never_deletes_a_layer_named_like_a_removal() {
    let c = Ctl::new();
    c.ok(&["ls"]);
    for dir in ["diff", "mnt"] {
        std::fs::create_dir_all(c.root.join(dir).join("old-removing")).unwrap();
    }
    std::fs::write(c.diff("old-removing").join("data"), "precious").unwrap();
    std::fs::write(c.root.join("layers/old-removing"), "").unwrap();
    c.ok(&["ls"]);
    c.ok(&["cleanup"]);
    assert_eq!(
        std::fs::read_to_string(c.diff("old-removing").join("data")).unwrap(),
        "precious"
    );
}

/// `rm X` moves X's dirs to the store's own trash: an `X-removing` beside
/// them is not its to delete.
#[test]
fn rm_leaves_an_unrelated_removing_dir_alone() {
    let c = Ctl::new();
    c.ok(&["create", "x"]);
    let other = c.root.join("diff/x-removing");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("data"), "not x's").unwrap();
    std::fs::write(c.root.join("layers/x-removing"), "").unwrap();
    c.ok(&["rm", "x"]);
    assert!(!c.diff("x").exists());
    assert_eq!(
        std::fs::read_to_string(other.join("data")).unwrap(),
        "not x's"
    );
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused_and_never_listed() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    c.ok(&["create", "base"]);
    for name in [".wh..", ".wh...", "etc/.wh..", "etc/.wh..."] {
        let tar = tmp.path().join("dot.tar");
        std::fs::write(&tar, layer_tar(&[(name.to_owned(), Vec::new())])).unwrap();
        c.ok(&["create", "l"]);
        let e = c.fails(1, &["apply", "l", tar.to_str().unwrap()]);
        assert!(e.contains("whiteout of `.` or `..`"), "{name}: {e}");
        assert_eq!(std::fs::read_dir(c.diff("l")).unwrap().count(), 0, "{name}");
        c.ok(&["rm", "l"]);
    }
    // Made by hand in a container's layer: `changes` ignores them.
    c.ok(&["create-rw", "top", "--parent", "base"]);
    std::fs::create_dir(c.diff("top").join("etc")).unwrap();
    for name in [".wh..", ".wh...", "etc/.wh..", "etc/.wh..."] {
        std::fs::write(c.diff("top").join(name), "").unwrap();
    }
    let out = c.ok(&["changes", "top"]);
    assert_eq!(out, "A /etc\n");
}

#[test]
fn a_top_level_symlink_climbing_out_is_refused_like_a_nested_one() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    c.ok(&["create", "l"]);
    for (name, target) in [
        ("evil", "../../x"),
        ("a/evil", "../../x"),
        ("evil", "a/../../x"),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, name, target).unwrap();
        let file = tmp.path().join("link.tar");
        std::fs::write(&file, b.into_inner().unwrap()).unwrap();
        let e = c.fails(1, &["apply", "l", file.to_str().unwrap()]);
        assert!(
            e.contains("invalid symlink target"),
            "{name} -> {target}: {e}"
        );
    }
    assert_eq!(std::fs::read_dir(c.diff("l")).unwrap().count(), 0);
}

/// A layer file truncated while it is applied: one error line and exit 1,
/// never a death by SIGBUS. The truncation races the apply, so the file is
/// made bigger until the apply is caught in the middle.
#[test]
fn an_input_truncated_during_apply_is_a_clean_error() {
    let c = Ctl::new();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.tar");
    let mut caught = false;
    for round in 0..4 {
        let files: Vec<(String, Vec<u8>)> = (0..(64usize << round))
            .map(|i| (format!("d/f{i}"), vec![(i % 251) as u8; 256 * 1024]))
            .collect();
        std::fs::write(&file, layer_tar(&files)).unwrap();
        let id = format!("l{round}");
        c.ok(&["create", &id]);
        let mut child = c
            .cmd()
            .args(["apply", &id, file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Truncate once the apply is writing files into its staging tree.
        let staging = c.root.join("staging").join(&id);
        let start = Instant::now();
        while !writing_files(&staging)
            && child.try_wait().unwrap().is_none()
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_ne!(out.status.signal(), Some(libc::SIGBUS), "killed by SIGBUS");
        if out.status.success() {
            continue; // finished before the truncation: try a bigger file
        }
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("aufsctl: error: layer l"), "{err}");
        assert_eq!(std::fs::read_dir(c.diff(&id)).unwrap().count(), 0);
        caught = true;
        break;
    }
    assert!(caught, "no apply was caught by the truncation");
    assert!(std::fs::read_dir(c.root.join("staging"))
        .unwrap()
        .next()
        .is_none());
}

/// True once an apply staging in `staging` has written a file under `d/`.
fn writing_files(staging: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(staging) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| std::fs::read_dir(e.path().join("tree/d")).is_ok_and(|mut d| d.next().is_some()))
}
