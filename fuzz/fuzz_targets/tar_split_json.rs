//! Upstream tar-split JSON lines replayed against a small layer: any
//! input is replayed within its limits or refused, and what a replay
//! reports writing is what it wrote.
#![no_main]

use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A diff dir with the files the seed metadata names, made once.
fn layer() -> &'static OwnedFd {
    static LAYER: OnceLock<(tempfile::TempDir, OwnedFd)> = OnceLock::new();
    &LAYER
        .get_or_init(|| {
            let tmp = tempfile::tempdir().expect("a temp dir");
            for (name, body) in [("etc/os-release", "app\n"), ("app/run", "go\n")] {
                let p = tmp.path().join(name);
                std::fs::create_dir_all(p.parent().expect("a parent")).expect("dirs");
                std::fs::write(p, body).expect("a file");
            }
            std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("escape"))
                .expect("a symlink");
            let fd = std::fs::File::open(tmp.path()).expect("the layer").into();
            (tmp, fd)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if let Ok(n) = aufs_image::fuzzing::tar_split_replay(data, layer(), &mut out, 1024, 8192) {
        assert_eq!(n, out.len() as u64);
    }
});
