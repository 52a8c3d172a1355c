//! [`LayerLocks`] across processes: `flock(2)` on `<dir>/<key>.lock`
//! (`<dir>/<space>/<name>.lock` for a key `space/name`).
//!
//! Every `lock` call opens its own descriptor, and flock locks belong to
//! the open file description, so two threads of one process exclude each
//! other exactly as two processes do. Lock files are left in place:
//! removing one while another process has it open would let a third lock a
//! fresh file of the same name, and two holders would coexist.

use crate::error::LinuxError;
use crate::fs::create_dir_all;
use aufs_ports::{LayerLocks, LockGuard};
use camino::{Utf8Path, Utf8PathBuf};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io;

/// Mode of the lock directory when this type creates it.
pub const LOCK_DIR_MODE: u32 = 0o700;
/// Mode of lock files.
pub const LOCK_FILE_MODE: u32 = 0o600;

/// Cross-process keyed locks on files in one directory.
#[derive(Debug, Clone)]
pub struct FlockLocks {
    dir: Utf8PathBuf,
}

impl FlockLocks {
    /// Locks in `dir`, created (mode 0700) when missing.
    pub fn new(dir: impl Into<Utf8PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        create_dir_all(&dir, LOCK_DIR_MODE, None)?;
        Ok(FlockLocks { dir })
    }

    /// The directory holding the lock files.
    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// The lock file of `key`: a plain name, or `space/name` with both
    /// parts plain names.
    pub fn lock_path(&self, key: &str) -> io::Result<Utf8PathBuf> {
        let plain = |part: &str| {
            !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\0'])
        };
        let bad = || LinuxError::BadLockKey {
            key: key.to_owned(),
        };
        match key.split_once('/') {
            None if plain(key) => Ok(self.dir.join(format!("{key}.lock"))),
            Some((space, name)) if plain(space) && plain(name) => {
                Ok(self.dir.join(space).join(format!("{name}.lock")))
            }
            _ => Err(bad().into()),
        }
    }

    fn open(&self, key: &str) -> io::Result<File> {
        let path = self.lock_path(key)?;
        if let Some(space) = path.parent().filter(|p| *p != self.dir) {
            create_dir_all(space, LOCK_DIR_MODE, None)?;
        }
        let fd = nix::fcntl::open(
            path.as_std_path(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(LOCK_FILE_MODE),
        )?;
        Ok(File::from(fd))
    }

    fn take(&self, key: &str, how: FlockArg) -> io::Result<Option<LockGuard>> {
        let mut file = self.open(key)?;
        loop {
            match Flock::lock(file, how) {
                Ok(held) => return Ok(Some(LockGuard::new(held))),
                Err((back, Errno::EINTR)) => file = back,
                Err((_, Errno::EWOULDBLOCK)) if how == FlockArg::LockExclusiveNonblock => {
                    return Ok(None)
                }
                Err((_, e)) => return Err(e.into()),
            }
        }
    }
}

impl LayerLocks for FlockLocks {
    fn lock(&self, key: &str) -> io::Result<LockGuard> {
        let guard = self.take(key, FlockArg::LockExclusive)?;
        Ok(guard.expect("a blocking flock either locks or fails"))
    }

    fn try_lock(&self, key: &str) -> io::Result<Option<LockGuard>> {
        self.take(key, FlockArg::LockExclusiveNonblock)
    }
}
