//! [`UnionBackend`] over detached FUSE union servers.

use crate::server::{ServerArgs, READY};
use aufs_linux::mountinfo::{mounts_at_or_below, MountInfo, MountInfoSource, ProcSelfMountInfo};
use aufs_ports::{BackendKind, UnionBackend, UnionSpec};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::mount::UnmountFlags;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to start a union server: a program and the arguments that come before
/// the server's own (e.g. the CLI's `/proc/self/exe` and a hidden
/// subcommand, or the `aufs-union-server` binary and nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    /// The executable.
    pub program: PathBuf,
    /// Leading arguments.
    pub args: Vec<OsString>,
}

impl Launcher {
    /// A launcher running `program` with `args` before the server arguments.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Launcher {
            program: program.into(),
            args,
        }
    }
}

/// Mounts unions with the userspace union filesystem: one detached server
/// process per mount, logging under `state_dir`.
#[derive(Debug, Clone)]
pub struct FuseBackend {
    launcher: Launcher,
    state_dir: Utf8PathBuf,
    mount_timeout: Duration,
}

fn errno(code: i32, msg: String) -> io::Error {
    io::Error::new(io::Error::from_raw_os_error(code).kind(), msg)
}

/// A file name for per-target state: the path with `/` as `_`, or a hash
/// when that is too long.
fn state_name(target: &Utf8Path) -> String {
    let flat: String = target
        .as_str()
        .trim_start_matches('/')
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    if flat.len() <= 150 {
        flat
    } else {
        let h = target
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        format!("{}-{h:016x}", &flat[flat.len() - 100..])
    }
}

/// The path mountinfo shows for `target`: its parent resolved, so a stale
/// mount point (which cannot be stat'ed) still resolves.
fn mount_point_of(target: &Utf8Path) -> PathBuf {
    match (target.parent(), target.file_name()) {
        (Some(parent), Some(name)) => match std::fs::canonicalize(parent) {
            Ok(p) => p.join(name),
            Err(_) => target.as_std_path().to_path_buf(),
        },
        _ => target.as_std_path().to_path_buf(),
    }
}

/// A FUSE mount whose server died (see [`aufs_ports::is_server_gone`]).
fn is_stale(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| aufs_ports::is_server_gone(&e))
}

fn umount(path: &Path) -> io::Result<()> {
    match rustix::mount::unmount(path, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            tracing::warn!(
                storage_driver = "aufs",
                ?path,
                "union busy, detaching it lazily"
            );
            rustix::mount::unmount(path, UnmountFlags::DETACH).map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// True for FUSE mounts (`fuse`, `fuse.NAME`).
fn is_fuse(m: &MountInfo) -> bool {
    m.fs_type == "fuse" || m.fs_type.starts_with("fuse.")
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; its parent just has not reaped it yet.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

impl FuseBackend {
    /// A backend starting servers with `launcher`, keeping logs and pid
    /// files in `state_dir` (created when missing).
    pub fn new(launcher: Launcher, state_dir: impl Into<Utf8PathBuf>) -> Self {
        FuseBackend {
            launcher,
            state_dir: state_dir.into(),
            mount_timeout: Duration::from_secs(30),
        }
    }

    /// The log file of the server of `target`.
    pub fn log_path(&self, target: &Utf8Path) -> Utf8PathBuf {
        self.state_dir.join(format!("{}.log", state_name(target)))
    }

    /// The xino file of the union at `target` (inode numbers of copied-up
    /// files, kept across remounts).
    pub fn xino_path(&self, target: &Utf8Path) -> Utf8PathBuf {
        self.state_dir.join(format!("{}.xino", state_name(target)))
    }

    fn pid_path(&self, target: &Utf8Path) -> Utf8PathBuf {
        self.state_dir.join(format!("{}.pid", state_name(target)))
    }

    /// The pid of the running server of `target`, if known.
    pub fn server_pid(&self, target: &Utf8Path) -> Option<i32> {
        std::fs::read_to_string(self.pid_path(target))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// True when the server of `target` is running (its pid file names a
    /// live process). A mount whose server died answers from the kernel's
    /// caches for a while, so this, not a `stat`, tells.
    pub fn server_alive(&self, target: &Utf8Path) -> bool {
        self.server_pid(target).is_some_and(pid_alive)
    }

    fn fuse_mounts(&self) -> io::Result<Vec<MountInfo>> {
        Ok(ProcSelfMountInfo
            .mounts()?
            .into_iter()
            .filter(is_fuse)
            .collect())
    }

    fn log_tail(&self, target: &Utf8Path) -> String {
        let text = std::fs::read_to_string(self.log_path(target)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Waits for the server of `target` (`pid`, read before the unmount:
    /// the server removes its pid file just before it exits) to exit.
    fn wait_server_exit(&self, target: &Utf8Path, pid: Option<i32>) {
        let Some(pid) = pid else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if pid_alive(pid) {
            tracing::warn!(storage_driver = "aufs", %target, pid, "union server still running after unmount");
        } else {
            let _ = std::fs::remove_file(self.pid_path(target));
        }
    }

    /// Reads the server's one status line, waiting at most the mount
    /// timeout.
    fn read_status(&self, stdout: &mut std::process::ChildStdout) -> io::Result<String> {
        let deadline = Instant::now() + self.mount_timeout;
        let mut buf = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "union server did not report within the mount timeout",
                ));
            }
            let fd = stdout.as_fd();
            let mut pfd = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let ts = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos().into(),
            };
            match rustix::event::poll(&mut pfd, Some(&ts)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let mut chunk = [0u8; 512];
            let n = stdout.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.contains(&b'\n') {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_string())
    }

    /// Mounts a union of `rw` (none: a read-only union, mounted read-only)
    /// over `ro` at `target`; returns once the server reports it live.
    fn start(
        &self,
        rw: Option<Utf8PathBuf>,
        ro: &[Utf8PathBuf],
        target: &Utf8Path,
        label: &str,
    ) -> io::Result<()> {
        let target = &target.to_owned();
        std::fs::create_dir_all(&self.state_dir)?;
        self.recover_stale(target)?;
        if self.is_mounted(target)? {
            return Err(errno(
                libc::EBUSY,
                format!("a union is already mounted at {target}"),
            ));
        }
        let args = ServerArgs {
            xino: rw.as_ref().map(|_| self.xino_path(target)),
            rw,
            ro: ro.to_vec(),
            target: target.clone(),
            log: Some(self.log_path(target)),
            pid_file: Some(self.pid_path(target)),
            label: label.to_owned(),
            foreground: false,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(target))?;
        let mut child = Command::new(&self.launcher.program)
            .args(&self.launcher.args)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let status = self.read_status(&mut stdout);
        // The launched process only starts the server and exits.
        let _ = child.wait();
        let line = match status {
            Ok(l) => l,
            Err(e) => {
                if let Some(pid) = self.server_pid(target) {
                    let _ = rustix::process::kill_process(
                        rustix::process::Pid::from_raw(pid)
                            .ok_or_else(|| io::Error::other("pid"))?,
                        rustix::process::Signal::KILL,
                    );
                }
                let _ = rustix::mount::unmount(target.as_std_path(), UnmountFlags::DETACH);
                return Err(e);
            }
        };
        if line == READY {
            tracing::info!(storage_driver = "aufs", %target, "fuse union mounted");
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("error: ") {
            let (code, msg) = rest.split_once(' ').unwrap_or(("5", rest));
            return Err(errno(code.parse().unwrap_or(libc::EIO), msg.to_string()));
        }
        Err(io::Error::other(format!(
            "union server for {target} exited before mounting (log {}): {}",
            self.log_path(target),
            self.log_tail(target)
        )))
    }

    /// Mounts the read-only union of `ro` (nearest first) at `target`,
    /// read-only and `noatime`: the lower part of a stacked mount.
    pub fn mount_read_only(&self, ro: &[Utf8PathBuf], target: &Utf8Path) -> io::Result<()> {
        self.start(None, ro, target, "")
    }

    fn recover_stale(&self, target: &Utf8Path) -> io::Result<()> {
        let mp = mount_point_of(target);
        if is_stale(&mp) {
            tracing::warn!(storage_driver = "aufs", %target, "union server gone, detaching its mount");
            rustix::mount::unmount(&mp, UnmountFlags::DETACH)?;
            let _ = std::fs::remove_file(self.pid_path(target));
        }
        Ok(())
    }
}

impl UnionBackend for FuseBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Fuse
    }

    fn mount(&self, spec: &UnionSpec) -> io::Result<()> {
        self.start(
            Some(spec.rw.clone()),
            &spec.ro,
            &spec.target,
            &spec.mount_label,
        )
    }

    fn unmount(&self, target: &Utf8Path) -> io::Result<()> {
        if !self.is_mounted(target)? {
            return Err(errno(libc::EINVAL, format!("no union mounted at {target}")));
        }
        let pid = self.server_pid(target);
        umount(&mount_point_of(target))?;
        self.wait_server_exit(target, pid);
        Ok(())
    }

    fn is_mounted(&self, target: &Utf8Path) -> io::Result<bool> {
        let mp = mount_point_of(target);
        Ok(self.fuse_mounts()?.iter().any(|m| m.mount_point == mp))
    }

    fn dirperm1_supported(&self) -> bool {
        false
    }

    fn unmount_all_under(&self, root: &Utf8Path) -> io::Result<()> {
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.as_std_path().to_path_buf());
        // Deepest first, so nested mounts go before their parents.
        let mut seen = std::collections::HashSet::new();
        let under: Vec<PathBuf> = mounts_at_or_below(&self.fuse_mounts()?, &root)
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| seen.insert(p.clone()))
            .collect();
        for mp in under {
            let pid = Utf8Path::from_path(&mp).and_then(|t| self.server_pid(t));
            let res = if is_stale(&mp) {
                rustix::mount::unmount(&mp, UnmountFlags::DETACH).map_err(io::Error::from)
            } else {
                umount(&mp)
            };
            match res {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
            if let Some(t) = Utf8Path::from_path(&mp) {
                self.wait_server_exit(t, pid);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_are_flat_and_bounded() {
        assert_eq!(
            state_name(Utf8Path::new("/var/lib/x/mnt/abc")),
            "var_lib_x_mnt_abc"
        );
        let long = format!("/{}", "a/".repeat(200));
        let n = state_name(Utf8Path::new(&long));
        assert!(n.len() < 130 && !n.contains('/'));
    }
}
