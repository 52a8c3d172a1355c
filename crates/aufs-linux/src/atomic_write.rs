//! Publishing whole files atomically: readers see the old state or all of
//! the new content, never a partial file.
//!
//! `write_new` writes an anonymous `O_TMPFILE` (falling back to a hidden
//! temp name where the filesystem lacks it), syncs it, and `linkat`s it to
//! the final name: `link` never replaces, so of racing writers exactly one
//! wins and the others get `EEXIST`. `write_replace` writes a hidden temp
//! name and `rename`s it over the target.

use crate::at::{have_proc_fd, open_dir, proc_fd_path, split_parent};
use camino::Utf8Path;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of published files, whatever the umask.
pub const FILE_MODE: u32 = 0o644;

/// Creates `path` holding `data`; `EEXIST` if it exists.
pub fn write_new(path: &Utf8Path, data: &[u8]) -> io::Result<()> {
    let (dir, name) = split_parent(path)?;
    let dirfd = open_dir(dir)?;
    if have_proc_fd() {
        match write_tmpfile(dirfd.as_fd(), data) {
            Ok(file) => {
                nix::unistd::linkat(
                    AT_FDCWD,
                    &proc_fd_path(&file),
                    dirfd.as_fd(),
                    name,
                    AtFlags::AT_SYMLINK_FOLLOW,
                )?;
                return sync_dir(&dirfd);
            }
            Err(e) if tmpfile_unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    link_named_temp(dirfd.as_fd(), name, data)?;
    sync_dir(&dirfd)
}

/// The fallback of `write_new`: a hidden named temp file, hard-linked to
/// `name`, then unlinked.
fn link_named_temp(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = write_named_temp(dir, name, data)?;
    let linked = nix::unistd::linkat(dir, tmp.as_str(), dir, name, AtFlags::empty());
    let _ = nix::unistd::unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    Ok(linked?)
}

/// Creates or replaces `path` with `data`.
pub fn write_replace(path: &Utf8Path, data: &[u8]) -> io::Result<()> {
    let (dir, name) = split_parent(path)?;
    let dirfd = open_dir(dir)?;
    let tmp = write_named_temp(dirfd.as_fd(), name, data)?;
    if let Err(e) = nix::fcntl::renameat(dirfd.as_fd(), tmp.as_str(), dirfd.as_fd(), name) {
        let _ = nix::unistd::unlinkat(dirfd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        return Err(e.into());
    }
    sync_dir(&dirfd)
}

fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

/// An unnamed file in `dir` holding `data`, synced.
fn write_tmpfile(dir: BorrowedFd<'_>, data: &[u8]) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(FILE_MODE),
    )?;
    fill(fd, data)
}

/// A new hidden file `.<name>.<unique>.tmp` in `dir` holding `data`,
/// synced; returns its name.
fn write_named_temp(dir: BorrowedFd<'_>, name: &str, data: &[u8]) -> io::Result<String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = format!(".{name}.{}-{unique}-{nanos:x}.tmp", std::process::id());
        let fd = match nix::fcntl::openat(
            dir,
            tmp.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(FILE_MODE),
        ) {
            Ok(fd) => fd,
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = fill(fd, data) {
            let _ = nix::unistd::unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        return Ok(tmp);
    }
}

/// Sets the exact mode, writes `data`, and syncs it to disk.
fn fill(fd: OwnedFd, data: &[u8]) -> io::Result<OwnedFd> {
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(FILE_MODE))?;
    let mut file = File::from(fd);
    file.write_all(data)?;
    file.sync_all()?;
    Ok(OwnedFd::from(file))
}

fn sync_dir(dirfd: &OwnedFd) -> io::Result<()> {
    match nix::unistd::fsync(dirfd.as_fd()) {
        // Some filesystems cannot sync a directory; the data is synced.
        Ok(()) | Err(Errno::EINVAL) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn named_temp_fallback_has_one_winner_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let n = 12;
        let barrier = Arc::new(Barrier::new(n));
        let results: Vec<io::Result<()>> = (0..n)
            .map(|i| {
                let (dir, barrier) = (dir.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let fd = open_dir(&dir).unwrap();
                    barrier.wait();
                    link_named_temp(fd.as_fd(), "target", format!("writer {i}").as_bytes())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let winners: Vec<usize> = (0..n).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert_eq!(r.as_ref().unwrap_err().raw_os_error(), Some(libc::EEXIST));
        }
        let content = std::fs::read_to_string(dir.join("target")).unwrap();
        assert_eq!(content, format!("writer {}", winners[0]));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["target"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("target"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, FILE_MODE);
    }
}
