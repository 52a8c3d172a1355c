//! Helpers shared by the `aufsctl` end-to-end tests.

#![allow(dead_code)]

pub mod image;

use std::path::PathBuf;
use std::process::{Command, Output};

/// A temp root and the `aufsctl` binary under test.
pub struct Ctl {
    _tmp: tempfile::TempDir,
    /// The `--root` passed to every command.
    pub root: PathBuf,
    /// The `--backend` passed to every command, if any.
    backend: Option<&'static str>,
}

impl Ctl {
    /// A fresh temp root (not created yet: aufsctl creates it).
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("aufs");
        Ctl {
            _tmp: tmp,
            root,
            backend: None,
        }
    }

    /// Every command with `--backend BACKEND`.
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.backend = Some(backend);
        self
    }

    /// `aufsctl --root ROOT`, with no environment that changes its behaviour.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_aufsctl"));
        c.arg("--root")
            .arg(&self.root)
            .env_remove("AUFSCTL_ROOT")
            .env_remove("AUFSCTL_LOG");
        if let Some(b) = self.backend {
            c.arg("--backend").arg(b);
        }
        c
    }

    /// Runs a command line.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and expects success with an empty stderr; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.stderr.is_empty(),
            "{args:?} wrote to stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs and expects exit `code` with one `aufsctl: error:` line.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("aufsctl: error: "), "{err}");
        assert!(o.stdout.is_empty());
        err
    }

    /// `diff/<id>` under the root.
    pub fn diff(&self, id: &str) -> PathBuf {
        self.root.join("diff").join(id)
    }
}
