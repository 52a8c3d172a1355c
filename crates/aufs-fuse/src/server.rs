//! The union server process: mounts one union and serves it until it is
//! unmounted.
//!
//! Launched without `--foreground` it starts itself again (same executable,
//! same command line plus `--foreground`) and exits at once, so the server
//! is re-parented to init and survives whoever launched it, and nobody has to
//! reap it. The foreground server leaves its session, mounts, then prints
//! one line on stdout — `ready` or `error: ERRNO MESSAGE` — and closes stdout:
//! the launcher waits for that line, which only comes once the mount is live.

use crate::error::FuseError;
use crate::fs::UnionFs;
use aufs_union::UnionView;
use camino::{Utf8Path, Utf8PathBuf};
use fuser::{Config, MountOption, Session, SessionACL};
use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

/// The `fsname` of our mounts (the source column of mountinfo).
pub const FS_NAME: &str = "aufs-union";

/// Line the server prints once the mount is live.
pub(crate) const READY: &str = "ready";

/// What one server mounts, and where it logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerArgs {
    /// The read-write branch.
    pub rw: Option<Utf8PathBuf>,
    /// The read-only branches, nearest first.
    pub ro: Vec<Utf8PathBuf>,
    /// The mount point.
    pub target: Utf8PathBuf,
    /// Log file (appended to); stderr when absent.
    pub log: Option<Utf8PathBuf>,
    /// File that receives the server's pid while it runs.
    pub pid_file: Option<Utf8PathBuf>,
    /// aufs's xino file: keeps the inode numbers of copied-up files across
    /// remounts.
    pub xino: Option<Utf8PathBuf>,
    /// SELinux label, passed as `context=`; empty for none.
    pub label: String,
    /// Serve in this process (else detach first).
    pub foreground: bool,
}

impl ServerArgs {
    /// The command line that [`ServerArgs::parse`] reads back.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |k: &str, v: &str| {
            a.push(k.into());
            a.push(v.into());
        };
        if let Some(rw) = &self.rw {
            push("--rw", rw.as_str());
        }
        for ro in &self.ro {
            push("--ro", ro.as_str());
        }
        push("--target", self.target.as_str());
        if let Some(l) = &self.log {
            push("--log", l.as_str());
        }
        if let Some(p) = &self.pid_file {
            push("--pid-file", p.as_str());
        }
        if let Some(x) = &self.xino {
            push("--xino", x.as_str());
        }
        if !self.label.is_empty() {
            push("--label", &self.label);
        }
        if self.foreground {
            a.push("--foreground".into());
        }
        a
    }

    /// Parses the server's command line (without the program name).
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Self, FuseError> {
        let mut out = ServerArgs::default();
        let mut target = None;
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let flag = flag
                .into_string()
                .map_err(|f| FuseError::Args(format!("unexpected argument {f:?}")))?;
            if flag == "--foreground" {
                out.foreground = true;
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| FuseError::Args(format!("{flag} needs a value")))?
                .into_string()
                .map_err(|v| FuseError::Args(format!("{flag}: {v:?} is not UTF-8")))?;
            match flag.as_str() {
                "--rw" => out.rw = Some(value.into()),
                "--ro" => out.ro.push(value.into()),
                "--target" => target = Some(value.into()),
                "--log" => out.log = Some(value.into()),
                "--pid-file" => out.pid_file = Some(value.into()),
                "--xino" => out.xino = Some(value.into()),
                "--label" => out.label = value,
                other => return Err(FuseError::Args(format!("unknown option {other}"))),
            }
        }
        out.target = target.ok_or_else(|| FuseError::Args("--target is required".into()))?;
        if out.rw.is_none() && out.ro.is_empty() {
            return Err(FuseError::Args("no branch given (--rw / --ro)".into()));
        }
        Ok(out)
    }
}

/// Entry point for a binary or hidden subcommand: parses `args` (without the
/// program name), runs the server, returns the process exit code.
pub fn run_from_args<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    match ServerArgs::parse(args).and_then(|a| run(&a)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("aufs-union-server: error: {e}");
            1
        }
    }
}

/// Runs the server (see the module docs for the protocol).
pub fn run(args: &ServerArgs) -> Result<(), FuseError> {
    if !args.foreground {
        return detach(args);
    }
    let result = serve(args);
    if let Err(e) = &result {
        // The launcher reads this line; it may already be gone.
        let _ = writeln!(std::io::stdout(), "error: {} {e}", e.errno());
        let _ = std::io::stdout().flush();
        tracing::error!(storage_driver = "aufs", target = %args.target, error = %e, "union server failed");
    }
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn open_log(path: &Utf8Path) -> Result<std::fs::File, FuseError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| FuseError::State {
            path: path.to_owned(),
            source,
        })
}

fn detach(args: &ServerArgs) -> Result<(), FuseError> {
    let exe = std::env::current_exe().map_err(|source| FuseError::State {
        path: "/proc/self/exe".into(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit());
    match &args.log {
        Some(l) => cmd.stderr(open_log(l)?),
        None => cmd.stderr(Stdio::inherit()),
    };
    // Not waited for: this process exits now and init adopts the server.
    cmd.spawn().map_err(|source| FuseError::Mount {
        target: args.target.clone(),
        source,
    })?;
    Ok(())
}

fn init_logging(args: &ServerArgs) -> Result<(), FuseError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUFS_UNION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let done = match &args.log {
        Some(l) => {
            let file = open_log(l)?;
            // Panics and stray prints land in the log too.
            let _ = rustix::stdio::dup2_stderr(&file);
            builder.with_writer(std::sync::Mutex::new(file)).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    drop(done);
    Ok(())
}

/// The mount options of a union mount.
///
/// A union with no rw branch is mounted read-only and `noatime`: on a
/// read-only superblock the kernel keeps the attributes it has after a read
/// instead of asking again (it drops a FUSE file's atime after every read
/// otherwise), which is what a read-only view stacked under overlayfs needs.
pub(crate) fn mount_config(label: &str, read_only: bool) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(FS_NAME.into()),
        MountOption::Subtype("aufs".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
    ];
    if read_only {
        config.mount_options.push(MountOption::RO);
        config.mount_options.push(MountOption::NoAtime);
    } else {
        config.mount_options.push(MountOption::RW);
    }
    if !label.is_empty() {
        config
            .mount_options
            .push(MountOption::CUSTOM(format!("context=\"{label}\"")));
    }
    config.acl = SessionACL::All;
    config.n_threads = Some(
        std::env::var("AUFS_FUSE_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(4),
    );
    config.clone_fd = true;
    config
}

/// Raises the soft limit of open files to the hard one: the union keeps
/// resolved directories open (see `aufs_union::UnionView`), and sizes that
/// cache by this limit.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(storage_driver = "aufs", error = %e, "open file limit not raised");
        }
    }
}

fn serve(args: &ServerArgs) -> Result<(), FuseError> {
    // Leave the launcher's session and process group: its end is not ours.
    let _ = rustix::process::setsid();
    // Modes come from the kernel already masked.
    rustix::process::umask(rustix::fs::Mode::empty());
    init_logging(args)?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id())).map_err(|source| {
            FuseError::State {
                path: p.clone(),
                source,
            }
        })?;
    }
    raise_open_file_limit();
    let ro: Vec<&Utf8Path> = args.ro.iter().map(|p| p.as_path()).collect();
    let union_err = |source| FuseError::Union {
        target: args.target.clone(),
        source,
    };
    let mut view = UnionView::open(args.rw.as_deref(), &ro).map_err(union_err)?;
    if let Some(x) = &args.xino {
        view = view.with_xino_file(x.as_std_path()).map_err(union_err)?;
    }
    let session = Session::new(
        UnionFs::new(view).with_stats(crate::stats::Stats::enabled_by_env()),
        args.target.as_std_path(),
        &mount_config(&args.label, args.rw.is_none()),
    )
    .map_err(|source| FuseError::Mount {
        target: args.target.clone(),
        source: if args.label.is_empty() {
            source
        } else {
            std::io::Error::new(
                source.kind(),
                format!(
                    "the kernel refused mount label {:?} (context= option): {source}",
                    args.label
                ),
            )
        },
    })?;
    tracing::info!(storage_driver = "aufs", target = %args.target, branches = args.ro.len() + usize::from(args.rw.is_some()), "union mounted");
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{READY}");
    let _ = out.flush();
    // Close the launcher's pipe: it stops waiting once it has the line.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    session.run().map_err(|source| FuseError::Mount {
        target: args.target.clone(),
        source,
    })?;
    tracing::info!(storage_driver = "aufs", target = %args.target, "union unmounted, server exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ServerArgs {
            rw: Some("/d/rw".into()),
            ro: vec!["/d/1".into(), "/d/2".into()],
            target: "/m".into(),
            log: Some("/s/log".into()),
            pid_file: Some("/s/pid".into()),
            xino: Some("/s/xino".into()),
            label: "system_u:object_r:x:s0".into(),
            foreground: true,
        };
        assert_eq!(ServerArgs::parse(a.to_args()).unwrap(), a);
        assert!(ServerArgs::parse(vec!["--rw".into(), "/x".into()]).is_err());
        assert!(ServerArgs::parse(vec!["--bogus".into(), "1".into()]).is_err());
    }
}
