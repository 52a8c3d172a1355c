//! [`Host`] over `/proc`, `statfs(2)`, `sysconf(3)` and `modprobe(8)`.

use crate::error::LinuxError;
use aufs_ports::{BackingFeatures, Host};
use camino::Utf8Path;
use std::collections::HashMap;
use std::io;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The real host.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxHost;

impl LinuxHost {
    /// The host this process runs on.
    pub fn new() -> Self {
        LinuxHost
    }
}

/// Docker's name for a backing filesystem magic (`extfs`, `xfs`,
/// `overlayfs`, ...), `<unknown>` when Docker has none. The table is
/// moby's graphdriver `FsNames`, kept in `aufs_model::fs_magic`.
pub fn fs_name(magic: u64) -> &'static str {
    aufs_model::fs_magic::fs_display_name(magic)
}

/// `statfs(2)` `f_type` of the filesystem holding `path`, as the unsigned
/// 32-bit value the kernel's magic constants are.
pub fn statfs_magic(path: &std::path::Path) -> io::Result<u64> {
    let st = nix::sys::statfs::statfs(path)?;
    // f_type is a signed word; magics are 32-bit, so drop sign extension.
    Ok(st.filesystem_type().0 as u64 & 0xffff_ffff)
}

/// True unless `uid_map` is the initial namespace's full identity map
/// `0 0 4294967295` (moby's `RunningInUserNS`).
pub fn uid_map_is_nested(uid_map: &str) -> bool {
    let lines: Vec<&str> = uid_map.lines().filter(|l| !l.trim().is_empty()).collect();
    let [only] = lines.as_slice() else {
        return true;
    };
    let fields: Vec<&str> = only.split_whitespace().collect();
    fields != ["0", "0", "4294967295"]
}

/// The outcome of loading one module, kept so it can be reported again.
#[derive(Debug, Clone)]
enum Loaded {
    Ok,
    Failed {
        kind: io::ErrorKind,
        errno: Option<i32>,
        message: String,
    },
}

impl Loaded {
    fn of(result: &io::Result<()>) -> Self {
        match result {
            Ok(()) => Loaded::Ok,
            Err(e) => Loaded::Failed {
                kind: e.kind(),
                errno: e.raw_os_error(),
                message: e.to_string(),
            },
        }
    }

    fn to_result(&self) -> io::Result<()> {
        match self {
            Loaded::Ok => Ok(()),
            Loaded::Failed {
                errno: Some(code), ..
            } => Err(io::Error::from_raw_os_error(*code)),
            Loaded::Failed { kind, message, .. } => Err(io::Error::new(*kind, message.clone())),
        }
    }
}

/// Remembers which modules were tried, so each is tried at most once; later
/// calls get the first outcome again. Concurrent callers for one name wait
/// for the single attempt.
#[derive(Debug, Default)]
pub struct ModuleLoader {
    tried: Mutex<HashMap<String, Loaded>>,
}

impl ModuleLoader {
    /// Runs `attempt(name)` unless `name` was tried before.
    pub fn load_once(
        &self,
        name: &str,
        attempt: impl FnOnce(&str) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut tried = self.tried.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(outcome) = tried.get(name) {
            return outcome.to_result();
        }
        let result = attempt(name);
        tried.insert(name.to_owned(), Loaded::of(&result));
        result
    }
}

fn process_module_loader() -> &'static ModuleLoader {
    static LOADER: OnceLock<ModuleLoader> = OnceLock::new();
    LOADER.get_or_init(ModuleLoader::default)
}

/// Runs `modprobe NAME` with its output captured, never printed.
fn modprobe(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.starts_with('-')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a module name: {name:?}"),
        ));
    }
    let out = Command::new("modprobe")
        .arg(name)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        tracing::debug!("storage-driver" = "aufs", module = name, "module loaded");
        return Ok(());
    }
    let err = LinuxError::Modprobe {
        module: name.to_owned(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    };
    tracing::debug!("storage-driver" = "aufs", error = %err, "modprobe failed");
    Err(err.into())
}

impl Host for LinuxHost {
    fn proc_filesystems(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/filesystems")
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        process_module_loader().load_once(name, modprobe)
    }

    fn in_user_namespace(&self) -> io::Result<bool> {
        match std::fs::read_to_string("/proc/self/uid_map") {
            Ok(map) => Ok(uid_map_is_nested(&map)),
            // A kernel without user namespaces has no uid_map.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn fs_magic(&self, path: &Utf8Path) -> io::Result<u64> {
        statfs_magic(path.as_std_path())
    }

    fn page_size(&self) -> usize {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(4096)
    }

    fn effective_ids(&self) -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    fn backing_features(&self, dir: &Utf8Path) -> io::Result<BackingFeatures> {
        probe_backing(dir.as_std_path())
    }
}

/// Makes a scratch dir in `dir` holding one file, then checks that
/// `readdir` reports the file's type (Docker's `SupportsDType`) and that an
/// xattr can be set on it (`trusted.` as root, else `user.`).
pub fn probe_backing(dir: &std::path::Path) -> io::Result<BackingFeatures> {
    let scratch = tempfile_in(dir)?;
    let result = (|| {
        let file = scratch.join("probe");
        std::fs::write(&file, b"")?;
        let mut d = nix::dir::Dir::open(
            &scratch,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )?;
        let d_type = d
            .iter()
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_bytes() == b"probe")
            .map(|e| e.file_type().is_some())
            .unwrap_or(false);
        let name = if nix::unistd::geteuid().is_root() {
            "trusted.aufs-rs.probe"
        } else {
            "user.aufs-rs.probe"
        };
        let xattrs =
            rustix::fs::setxattr(&file, name, b"1", rustix::fs::XattrFlags::empty()).is_ok();
        Ok(BackingFeatures { d_type, xattrs })
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn tempfile_in(dir: &std::path::Path) -> io::Result<std::path::PathBuf> {
    let base = format!(".aufs-probe-{}", std::process::id());
    for n in 0..100u32 {
        let p = dir.join(format!("{base}-{n}"));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::EEXIST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn probe_finds_d_type_and_xattrs_on_the_test_filesystem_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let f = probe_backing(dir.path()).unwrap();
        // ext4, xfs, btrfs and tmpfs (where tests run) all report d_type.
        assert!(f.d_type);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch dir left"
        );
        let e = probe_backing(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn fs_names_as_docker_reports_them() {
        assert_eq!(fs_name(0xEF53), "extfs");
        assert_eq!(fs_name(0x5846_5342), "xfs");
        assert_eq!(fs_name(0x9123_683E), "btrfs");
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
        assert_eq!(fs_name(0x794C_7630), "overlayfs");
        assert_eq!(fs_name(0x2fc1_2fc1), "zfs");
        assert_eq!(fs_name(0x6969), "nfs");
        assert_eq!(fs_name(0xf15f), "ecryptfs");
        assert_eq!(fs_name(0x6175_6673), "aufs");
        assert_eq!(fs_name(0x6573_5546), "fuse");
        assert_eq!(fs_name(0), "unsupported");
        assert_eq!(fs_name(0xdead_beef), "<unknown>");
    }

    #[test]
    fn uid_map_detection() {
        assert!(!uid_map_is_nested("         0          0 4294967295\n"));
        assert!(uid_map_is_nested("         0       1000          1\n"));
        assert!(uid_map_is_nested("0 0 4294967294\n"));
        assert!(uid_map_is_nested("0 0 1000\n1000 1000 4294966295\n"));
        assert!(uid_map_is_nested(""));
    }

    #[test]
    fn a_module_is_tried_once_and_its_outcome_repeated() {
        let loader = ModuleLoader::default();
        let runs = AtomicUsize::new(0);
        let fail = |_: &str| {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        };
        for _ in 0..3 {
            let err = loader.load_once("aufs", fail).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        loader
            .load_once("overlay", |_| {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        loader
            .load_once("overlay", |_| panic!("tried twice"))
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn concurrent_loads_share_one_attempt() {
        let loader = Arc::new(ModuleLoader::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (loader, runs) = (loader.clone(), runs.clone());
                std::thread::spawn(move || {
                    loader.load_once("m", |_| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Err(io::Error::other("no"))
                    })
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().is_err());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn modprobe_refuses_option_like_names() {
        let err = modprobe("-r").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(modprobe("a b").is_err());
        assert!(modprobe("../x").is_err());
    }

    #[test]
    fn live_host_answers() {
        let host = LinuxHost::new();
        assert!(host.proc_filesystems().unwrap().contains("proc"));
        let ps = host.page_size();
        assert!(ps >= 4096 && ps.is_power_of_two());
        let (uid, gid) = host.effective_ids();
        assert_eq!(uid, nix::unistd::geteuid().as_raw());
        assert_eq!(gid, nix::unistd::getegid().as_raw());
        let expected = std::fs::read_to_string("/proc/self/uid_map")
            .map(|m| uid_map_is_nested(&m))
            .unwrap_or(false);
        assert_eq!(host.in_user_namespace().unwrap(), expected);
        assert_eq!(
            host.fs_magic(Utf8Path::new("/proc")).unwrap(),
            0x9fa0,
            "procfs magic"
        );
    }
}
