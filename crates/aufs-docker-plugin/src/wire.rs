//! The JSON bodies of the graph driver protocol, shaped exactly as moby
//! 20.10's `daemon/graphdriver/proxy.go` encodes and decodes them.
//!
//! Go's `encoding/json` matches field names case-insensitively and leaves a
//! missing field at its zero value; `omitempty` fields of the reply are left
//! out when empty. The types here do the same, so a request from the Go
//! proxy always decodes and every reply decodes on its side.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `graphDriverRequest`: the body of every call but `Init` and `ApplyDiff`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DriverRequest {
    /// `ID`.
    #[serde(rename = "ID", alias = "Id", alias = "id")]
    pub id: String,
    /// `Parent` (empty: none).
    #[serde(rename = "Parent", alias = "parent")]
    pub parent: String,
    /// `MountLabel` (SELinux context).
    #[serde(rename = "MountLabel", alias = "mountLabel")]
    pub mount_label: String,
    /// `StorageOpt`: `--storage-opt` pairs of `Create`.
    #[serde(rename = "StorageOpt", alias = "storageOpt")]
    pub storage_opt: Option<BTreeMap<String, String>>,
}

/// `idtools.IDMap` as it travels (snake-case tags in Go).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WireIdMap {
    /// First id inside the container.
    pub container_id: i64,
    /// First id on the host.
    pub host_id: i64,
    /// Number of ids.
    pub size: i64,
}

/// `graphDriverInitRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitRequest {
    /// `Home`: `<data-root>/<plugin name>`, the driver's root.
    #[serde(rename = "Home", alias = "home")]
    pub home: String,
    /// `Opts`: the daemon's `--storage-opt` values (`null` when none).
    #[serde(rename = "Opts", alias = "opts")]
    pub opts: Option<Vec<String>>,
    /// `UIDMaps` (`null` when none).
    #[serde(rename = "UIDMaps", alias = "uidMaps")]
    pub uid_maps: Option<Vec<WireIdMap>>,
    /// `GIDMaps` (`null` when none).
    #[serde(rename = "GIDMaps", alias = "gidMaps")]
    pub gid_maps: Option<Vec<WireIdMap>>,
}

/// `archive.Change`: `Kind` is Go's `ChangeType` (0 modify, 1 add, 2 delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChange {
    /// The path in the union, absolute.
    #[serde(rename = "Path")]
    pub path: String,
    /// 0 `ChangeModify`, 1 `ChangeAdd`, 2 `ChangeDelete`.
    #[serde(rename = "Kind")]
    pub kind: u8,
}

/// `graphdriver.Capabilities`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCapabilities {
    /// Whether `Diff` of a read-only layer gives back the bytes it was
    /// applied from, so dockerd keeps no tar-split data of its own.
    #[serde(rename = "ReproducesExactDiffs")]
    pub reproduces_exact_diffs: bool,
}

/// `graphDriverResponse`, every field `omitempty` as in Go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverResponse {
    /// An error; the proxy turns a non-empty one into the call's error.
    #[serde(rename = "Err", skip_serializing_if = "String::is_empty", default)]
    pub err: String,
    /// `Get`'s mount path.
    #[serde(rename = "Dir", skip_serializing_if = "String::is_empty", default)]
    pub dir: String,
    /// `Exists`.
    #[serde(rename = "Exists", skip_serializing_if = "is_false", default)]
    pub exists: bool,
    /// `Status`: `[key, value]` pairs for `docker info`.
    #[serde(rename = "Status", skip_serializing_if = "Vec::is_empty", default)]
    pub status: Vec<[String; 2]>,
    /// `Changes`.
    #[serde(rename = "Changes", skip_serializing_if = "Vec::is_empty", default)]
    pub changes: Vec<WireChange>,
    /// `ApplyDiff` and `DiffSize`.
    #[serde(rename = "Size", skip_serializing_if = "is_zero", default)]
    pub size: i64,
    /// `GetMetadata`.
    #[serde(rename = "Metadata", skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// `Capabilities`. Go's `omitempty` never drops a struct, so it is
    /// always there, as the Go proxy would encode it.
    #[serde(rename = "Capabilities", default)]
    pub capabilities: WireCapabilities,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `Plugin.Activate`'s reply: the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The subsystems served: `GraphDriver`.
    #[serde(rename = "Implements")]
    pub implements: Vec<String>,
}

/// The content type of every JSON reply (moby's `transport.VersionMimetype`).
pub const MIME_TYPE: &str = "application/vnd.docker.plugins.v1.2+json";

/// The subsystem a graph driver plugin implements.
pub const GRAPH_DRIVER: &str = "GraphDriver";
