//! FlockLocks: exclusion across threads and across processes.

use crate::util::Tmp;
use aufs_linux::FlockLocks;
use aufs_ports::LayerLocks;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn threads_of_one_process_exclude_each_other() {
    let tmp = Tmp::new();
    let locks = Arc::new(FlockLocks::new(tmp.join("locks")).unwrap());
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let (locks, inside, max) = (locks.clone(), inside.clone(), max.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let _g = locks.lock("layer").unwrap();
                    let _other = locks.lock("unrelated").unwrap_or_else(|e| panic!("{e}"));
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    std::thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(max.load(Ordering::SeqCst), 1);
    // Lock files stay, with mode 0600; the dir was made 0700.
    let md = std::fs::metadata(tmp.join("locks/layer.lock")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let md = std::fs::metadata(tmp.join("locks")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o700);
}

#[test]
fn try_lock_sees_a_holder_and_release() {
    let tmp = Tmp::new();
    let locks = FlockLocks::new(tmp.join("locks")).unwrap();
    let held = locks.lock("a").unwrap();
    assert!(locks.try_lock("a").unwrap().is_none());
    assert!(locks.try_lock("b").unwrap().is_some());
    drop(held);
    assert!(locks.try_lock("a").unwrap().is_some());
}

#[test]
fn bad_keys_are_refused() {
    let tmp = Tmp::new();
    let locks = FlockLocks::new(tmp.join("locks")).unwrap();
    for key in ["", ".", "..", "a/b/c", "../escape", "a/..", "/a", "a/"] {
        let err = locks.lock(key).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{key:?}");
    }
    assert!(!tmp.join("escape.lock").exists());
}

/// `space/name` keys live in a subdirectory and never collide with a plain
/// key of the same name.
#[test]
fn spaced_keys_are_their_own_locks() {
    let tmp = Tmp::new();
    let locks = FlockLocks::new(tmp.join("locks")).unwrap();
    let plain = locks.lock("a").unwrap();
    let spaced = locks.try_lock("claim/a").unwrap().expect("another key");
    assert!(locks.try_lock("claim/a").unwrap().is_none());
    assert_eq!(
        locks.lock_path("claim/a").unwrap(),
        tmp.join("locks/claim/a.lock")
    );
    drop((plain, spaced));
}

fn have_flock_tool() -> bool {
    Command::new("flock")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn another_process_holding_the_lock_blocks_us() {
    if !have_flock_tool() {
        eprintln!("skipping: flock(1) is not installed");
        return;
    }
    let tmp = Tmp::new();
    let locks = Arc::new(FlockLocks::new(tmp.join("locks")).unwrap());
    let lock_file = locks.lock_path("layer").unwrap();
    let (held, release) = (tmp.join("held"), tmp.join("release"));
    let mut child = Command::new("flock")
        .arg(lock_file.as_str())
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "touch '{held}'; while [ ! -e '{release}' ]; do sleep 0.02; done"
        ))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !held.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child never locked"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(locks.try_lock("layer").unwrap().is_none());
    let acquired = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (locks, acquired) = (locks.clone(), acquired.clone());
        std::thread::spawn(move || {
            let _g = locks.lock("layer").unwrap();
            acquired.store(1, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        acquired.load(Ordering::SeqCst),
        0,
        "locked while child holds it"
    );
    std::fs::write(&release, b"").unwrap();
    waiter.join().unwrap();
    assert_eq!(acquired.load(Ordering::SeqCst), 1);
    assert!(child.wait().unwrap().success());
}

#[test]
fn we_holding_the_lock_blocks_another_process() {
    if !have_flock_tool() {
        eprintln!("skipping: flock(1) is not installed");
        return;
    }
    let tmp = Tmp::new();
    let locks = FlockLocks::new(tmp.join("locks")).unwrap();
    let lock_file = locks.lock_path("layer").unwrap();
    let try_from_child = || {
        Command::new("flock")
            .args(["-n", "-E", "42"])
            .arg(lock_file.as_str())
            .arg("true")
            .status()
            .unwrap()
            .code()
    };
    let guard = locks.lock("layer").unwrap();
    assert_eq!(try_from_child(), Some(42), "child got a held lock");
    drop(guard);
    assert_eq!(try_from_child(), Some(0));
}
