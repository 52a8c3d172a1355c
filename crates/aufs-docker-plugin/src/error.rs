//! The plugin's errors. Each becomes `{"Err":"…"}` in a non-200 reply, which
//! moby's plugin client turns into the call's error with this text.

use aufs_driver::DriverError;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A call before `GraphDriver.Init` opened a root.
    #[error("the plugin has no root yet: dockerd calls GraphDriver.Init first")]
    NotInitialised,
    /// A request body that is not the protocol's JSON.
    #[error("bad {method} request: {source}")]
    BadRequest {
        /// The endpoint.
        method: String,
        /// The decoder's complaint.
        source: serde_json::Error,
    },
    /// A request whose fields are not acceptable (an id, a home, a map).
    #[error("bad {method} request: {reason}")]
    Invalid {
        /// The endpoint.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// Daemon storage options: this driver takes none, as moby's aufs.
    #[error("{name} takes no storage options (--storage-opt), got: {options}")]
    StorageOptions {
        /// The plugin's name.
        name: String,
        /// The options given.
        options: String,
    },
    /// Opening the root at `Init` failed.
    #[error("init {home}: {reason}")]
    Open {
        /// The root asked for.
        home: String,
        /// Why it could not be opened.
        reason: String,
    },
    /// An endpoint this plugin does not serve.
    #[error("{0} is not a graph driver plugin endpoint")]
    UnknownMethod(String),
    /// Writing a tarball out failed before its first byte went out.
    #[error("{method}: {reason}")]
    Stream {
        /// The endpoint.
        method: String,
        /// What failed.
        reason: String,
    },
    /// The driver refused or failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl PluginError {
    /// The HTTP status of the reply: 404 for an unknown endpoint (the
    /// plugin client's `IsNotFound`), 400 for a malformed request, 500
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self {
            PluginError::UnknownMethod(_) => 404,
            PluginError::BadRequest { .. } | PluginError::Invalid { .. } => 400,
            _ => 500,
        }
    }
}
