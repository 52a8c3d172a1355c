//! The ports of the aufs driver: every effect it has on the system goes
//! through one of these traits, so the whole driver runs against in-memory
//! fakes (feature `fakes`) in tests, and against `aufs-linux` / `aufs-fuse`
//! adapters for real.
//!
//! Errors are plain [`std::io::Error`]s: adapters keep the OS error code
//! (`EBUSY`, `EEXIST`, `ENOSPC`, ...) so the driver can react to it exactly as
//! the Go driver does, and fakes build the same errors with
//! [`std::io::Error::from_raw_os_error`].
//!
//! # Example
//!
//! The in-memory filesystem (feature `fakes`) behaves as the real one
//! does, errors included:
//!
//! ```
//! # #[cfg(feature = "fakes")] {
//! use aufs_ports::fakes::MemFs;
//! use aufs_ports::{FileKind, Filesystem};
//!
//! let fs = MemFs::new();
//! fs.create_dir_all("/srv/aufs/layers".into(), 0o700, None).unwrap();
//! fs.write_new("/srv/aufs/layers/base".into(), b"").unwrap();
//! assert_eq!(fs.kind("/srv/aufs/layers/base".into()).unwrap(), Some(FileKind::File));
//! // Publishing never replaces: of racing writers exactly one wins.
//! let again = fs.write_new("/srv/aufs/layers/base".into(), b"x").unwrap_err();
//! assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
//! # }
//! ```

mod archive;
mod backend;
mod clock;
mod fs;
mod host;
mod locks;
mod mounter;

pub use archive::{Applied, ApplyTarget, LayerArchive};
pub use backend::{is_server_gone, BackendKind, UnionBackend, UnionSpec};
pub use clock::{Clock, SystemClock};
pub use fs::{DirEntry, FileKind, Filesystem};
pub use host::{
    BackingFeatures, Host, FS_MAGIC_AUFS, FS_MAGIC_BTRFS, FS_MAGIC_ECRYPTFS, FS_MAGIC_FUSE,
};
pub use locks::{InProcessLocks, LayerLocks, LockGuard};
pub use mounter::{MountFlags, MountRequest, Mounter, UnmountFlags};

#[cfg(feature = "fakes")]
pub mod fakes;

#[cfg(feature = "mock")]
pub use backend::MockUnionBackend;

/// Builds the `io::Error` of an errno, as the fakes and adapters report them.
pub fn errno(code: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(code)
}
