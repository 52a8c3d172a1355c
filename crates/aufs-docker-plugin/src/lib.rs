//! A legacy (v1) Docker graph driver plugin over the aufs driver.
//!
//! dockerd 20.10 started with `--experimental --storage-driver NAME` finds
//! `/run/docker/plugins/NAME.sock` and speaks moby's graph driver protocol
//! to it (`daemon/graphdriver/proxy.go`): JSON requests over HTTP/1.1 POST,
//! a tarball as the body of `ApplyDiff` and as the reply of `Diff`. This
//! crate is that protocol over the driver's async facade:
//!
//! - [`wire`]: the request and reply bodies, as Go encodes them;
//! - [`plugin`]: what each endpoint does (pure mapping onto the driver);
//! - [`stream`]: tarballs streamed between HTTP bodies and the driver's
//!   blocking readers and writers through bounded channels;
//! - [`router`]: paths to endpoints, results to replies;
//! - [`server`]: the socket and the HTTP/1.1 server.
//!
//! Opening a root is a port ([`DriverOpener`]): the CLI wires the real
//! adapters, tests can wire fakes.
//!
//! # Example
//!
//! Where dockerd looks for the plugin, and where the plugin keeps the
//! `Init` it must reopen after a restart:
//!
//! ```
//! use aufs_docker_plugin::{default_socket, init_file_for};
//!
//! let socket = default_socket("aufs-rs");
//! assert_eq!(socket.as_str(), "/run/docker/plugins/aufs-rs.sock");
//! assert_eq!(init_file_for(&socket).as_str(), "/run/docker/plugins/aufs-rs.init.json");
//! ```

pub mod error;
pub mod plugin;
pub mod router;
pub mod server;
pub mod stream;
pub mod wire;

pub use error::PluginError;
pub use plugin::{DriverOpener, Plugin, PluginConfig};
pub use server::{bind, default_socket, init_file_for, serve};
