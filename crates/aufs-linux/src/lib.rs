//! Real Linux adapters of the aufs ports.
//!
//! - [`LinuxFilesystem`]: [`aufs_ports::Filesystem`] with atomic publishing
//!   (`O_TMPFILE` + `linkat`), exact-mode `create_dir_all`, and a
//!   `remove_all` that unmounts, clears immutable flags and never follows a
//!   symlink out of the tree.
//! - [`LinuxMounter`]: [`aufs_ports::Mounter`] over `mount(2)`/`umount2(2)`
//!   and `/proc/self/mountinfo` ([`mountinfo`], behind [`MountInfoSource`]).
//! - [`LinuxHost`]: [`aufs_ports::Host`] over `/proc`, `statfs(2)`,
//!   `sysconf(3)`, `modprobe(8)`; [`fs_name`] gives Docker's backing
//!   filesystem names.
//! - [`FlockLocks`]: [`aufs_ports::LayerLocks`] across processes.
//!
//! OS failures come back as `io::Error`s carrying their errno; other
//! failures carry a [`LinuxError`].
//!
//! # Example
//!
//! ```
//! use aufs_linux::LinuxFilesystem;
//! use aufs_ports::Filesystem;
//! use camino::Utf8Path;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let root = Utf8Path::from_path(dir.path()).unwrap();
//! let fs = LinuxFilesystem::new();
//! fs.create_dir_all(&root.join("layers"), 0o700, None).unwrap();
//! // Published whole (O_TMPFILE + linkat): never seen half written.
//! fs.write_new(&root.join("layers/top"), b"base\n").unwrap();
//! assert_eq!(fs.read_to_string(&root.join("layers/top")).unwrap(), "base\n");
//! assert!(fs.write_new(&root.join("layers/top"), b"other\n").is_err());
//! ```

mod at;
mod atomic_write;
mod error;
mod flock;
mod fs;
mod host;
mod mounter;
pub mod mountinfo;
mod remove;

pub use at::proc_fd_path;
pub use error::LinuxError;
pub use flock::{FlockLocks, LOCK_DIR_MODE, LOCK_FILE_MODE};
pub use fs::LinuxFilesystem;
pub use host::{fs_name, statfs_magic, uid_map_is_nested, LinuxHost, ModuleLoader};
pub use mounter::{mnt_flags, ms_flags, LinuxMounter};
pub use mountinfo::{FixedMountInfo, MountInfo, MountInfoSource, ProcSelfMountInfo};
pub use remove::MAX_OPEN_DIRS;
