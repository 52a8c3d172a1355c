//! The POSIX conformance suite pjdfstest (`cargo install pjdfstest`) on a
//! mounted three-branch union. Needs root, /dev/fuse and `pjdfstest` on
//! PATH; skips, saying why, without them. Every failure must be one of the
//! exceptions documented in the crate README.

mod common;

use aufs_ports::UnionBackend;
use common::{can_mount, write, Fixture};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// Test-name suffixes that may fail, with the reason (see README.md,
/// "POSIX conformance"): none at present.
const EXCEPTIONS: &[(&str, &str)] = &[];

const CONFIG: &str = r#"
[features]
posix_fallocate = {}
rename_ctime = {}
utimensat = {}
utime_now = {}

[settings]
naptime = 0.001
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["daemon", "daemon"],
  ["bin", "bin"],
]
"#;

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

#[test]
fn pjdfstest_passes_on_a_union_but_for_documented_exceptions() {
    if !can_mount() {
        return;
    }
    if Command::new("pjdfstest").arg("--version").output().is_err() {
        eprintln!("skipping: pjdfstest is not on PATH (cargo install pjdfstest --locked)");
        return;
    }
    if !["nobody", "daemon", "bin"].iter().all(|u| user_exists(u)) {
        eprintln!("skipping: pjdfstest needs the users nobody, daemon and bin");
        return;
    }
    let f = Fixture::new();
    let spec = f.spec(2);
    write(&spec.ro[1].join("base/f"), "x");
    write(&spec.ro[0].join("base/g"), "y");
    f.mount(&spec);
    let dir = spec.target.join("t");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o777)).unwrap();
    let config = f.root.join("pjdfstest.toml");
    std::fs::write(&config, CONFIG).unwrap();

    let out = Command::new("pjdfstest")
        .args(["-c", config.as_str(), "-p", dir.as_str()])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no pjdfstest summary:\n{text}"));
    eprintln!("pjdfstest: {summary}");
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let unexpected: Vec<&&str> = failed
        .iter()
        .filter(|name| !EXCEPTIONS.iter().any(|(suffix, _)| name.ends_with(suffix)))
        .collect();
    for (suffix, why) in EXCEPTIONS {
        let n = failed.iter().filter(|t| t.ends_with(suffix)).count();
        if n > 0 {
            eprintln!("pjdfstest: {n} documented failures *{suffix}: {why}");
        }
    }
    assert!(
        unexpected.is_empty(),
        "undocumented pjdfstest failures: {unexpected:?}\n{text}"
    );
    assert!(
        summary.contains(" passed"),
        "pjdfstest ran no test: {summary}"
    );
    f.backend.unmount(&spec.target).unwrap();
}
