//! Reads beneath a directory that may be hostile (a Docker root, an OCI
//! layout): every path is resolved by the kernel inside it
//! (`openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, and
//! `RESOLVE_NO_SYMLINKS` where no symlink belongs), files must be regular
//! (a FIFO or a device is refused, never read), and metadata reads are
//! capped.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::{ImageError, Result};

/// Metadata files (configs, ids, sizes, JSON) larger than this are refused.
pub(crate) const MAX_META: u64 = 16 << 20;

/// Which symlinks beneath the directory are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Symlinks {
    /// None: a Docker root has none where it is read.
    Refused,
    /// Those that stay inside (`docker save` links repeated layers); one
    /// reaching out is refused.
    Inside,
}

/// A directory handle every read goes through.
#[derive(Debug)]
pub(crate) struct Beneath {
    dir: Utf8PathBuf,
    fd: OwnedFd,
    resolve: ResolveFlags,
}

impl Beneath {
    /// The directory at `dir` (the one path that is followed as given).
    pub(crate) fn open(dir: &Utf8Path, symlinks: Symlinks) -> Result<Self> {
        let fd = rustix::fs::open(
            dir.as_std_path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(dir.to_owned(), "opening", e.into()))?;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        Ok(Self {
            dir: dir.to_owned(),
            fd,
            resolve: match symlinks {
                Symlinks::Refused => resolve | ResolveFlags::NO_SYMLINKS,
                Symlinks::Inside => resolve,
            },
        })
    }

    /// `rel` resolved beneath the root, or the kernel's refusal.
    fn at(&self, rel: &Utf8Path, flags: OFlags) -> io::Result<OwnedFd> {
        // openat2 refuses O_PATH with any flag but these few.
        let extra = if flags.contains(OFlags::PATH) {
            OFlags::CLOEXEC
        } else {
            OFlags::CLOEXEC | OFlags::NOCTTY
        };
        rustix::fs::openat2(
            &self.fd,
            rel.as_std_path(),
            flags | extra,
            Mode::empty(),
            self.resolve,
        )
        .map_err(|e| match e {
            rustix::io::Errno::XDEV => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a symlink or `..` reaching out of the directory",
            ),
            rustix::io::Errno::LOOP if self.resolve.contains(ResolveFlags::NO_SYMLINKS) => {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "a symlink, which is not followed here",
                )
            }
            e => e.into(),
        })
    }

    /// Directory `rel` as a handle to resolve paths in (`O_PATH`).
    pub(crate) fn dir(&self, rel: &Utf8Path) -> Result<OwnedFd> {
        self.at(rel, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| io_err(self.dir.join(rel), "opening", e))
    }

    /// The directory, as named in messages.
    pub(crate) fn path(&self) -> &Utf8Path {
        &self.dir
    }

    /// Regular file `rel`, opened for reading; `None` when it is missing.
    pub(crate) fn file(&self, rel: &Utf8Path) -> Result<Option<File>> {
        let path = || self.dir.join(rel);
        // Non-blocking, so a FIFO is refused below instead of waited on.
        let fd = match self.at(rel, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path(), "opening", e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(path(), "opening", e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io_err(
                path(),
                "opening",
                io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
            ));
        }
        Ok(Some(File::from(fd)))
    }

    /// Regular file `rel`, whole, at most [`MAX_META`] bytes; `None` when
    /// it is missing.
    pub(crate) fn read_if_present(&self, rel: &Utf8Path) -> Result<Option<Vec<u8>>> {
        let Some(file) = self.file(rel)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        file.take(MAX_META + 1)
            .read_to_end(&mut data)
            .map_err(|e| io_err(self.dir.join(rel), "reading", e))?;
        if data.len() as u64 > MAX_META {
            return Err(io_err(
                self.dir.join(rel),
                "reading",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {MAX_META} bytes"),
                ),
            ));
        }
        Ok(Some(data))
    }

    /// [`Self::read_if_present`] of a file that must be there.
    pub(crate) fn read(&self, rel: &Utf8Path) -> Result<Vec<u8>> {
        self.read_if_present(rel)?.ok_or_else(|| {
            io_err(
                self.dir.join(rel),
                "reading",
                io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// Names in directory `rel` that are UTF-8; `None` when it is missing.
    pub(crate) fn list(&self, rel: &Utf8Path) -> Result<Option<Vec<String>>> {
        let err = |e: io::Error| io_err(self.dir.join(rel), "listing", e);
        let fd = match self.at(rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::new(fd).map_err(|e| err(e.into()))? {
            let entry = entry.map_err(|e| err(e.into()))?;
            match entry.file_name().to_str() {
                Ok("." | "..") => {}
                Ok(name) => names.push(name.to_owned()),
                Err(_) => {
                    tracing::debug!(dir = %self.dir.join(rel), "skipping a name that is not UTF-8")
                }
            }
        }
        Ok(Some(names))
    }
}

fn io_err(path: Utf8PathBuf, op: &'static str, source: io::Error) -> ImageError {
    ImageError::Io { path, op, source }
}
