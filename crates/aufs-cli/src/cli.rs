//! The command line, as `docs/CLI.md` specifies it.

use aufs_driver::support::BackendChoice;
use aufs_model::LayerId;
use camino::Utf8PathBuf;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Default driver home.
pub const DEFAULT_ROOT: &str = "/var/lib/aufsctl";

/// aufsctl: a layered container-image store in Docker's aufs layout.
#[derive(Debug, Parser)]
#[command(name = "aufsctl", version, about)]
pub struct Cli {
    /// The driver's home, laid out like /var/lib/docker/aufs.
    #[arg(long, global = true, env = "AUFSCTL_ROOT", default_value = DEFAULT_ROOT)]
    pub root: Utf8PathBuf,
    /// How unions are mounted.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Machine-readable output: one JSON document on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// More logging on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less logging on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Kernel aufs where /proc/filesystems lists it; else a layer with a
    /// writable top is kernel overlayfs over a read-only FUSE view of its
    /// parents where the kernel allows it, and a full FUSE union otherwise.
    Auto,
    /// Kernel aufs only.
    Kernel,
    /// The full FUSE union for every mount.
    Fuse,
    /// Kernel overlayfs over a read-only FUSE view (an error where the
    /// kernel refuses it).
    Stacked,
}

impl From<Backend> for BackendChoice {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => BackendChoice::Auto,
            Backend::Kernel => BackendChoice::Kernel,
            Backend::Fuse | Backend::Stacked => BackendChoice::Fuse,
        }
    }
}

fn layer_id(s: &str) -> Result<LayerId, String> {
    LayerId::new(s).map_err(|e| e.to_string())
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Driver status.
    Status,
    /// Create a read-only layer.
    Create {
        /// The new layer's id.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// Its parent layer.
        #[arg(long, value_parser = layer_id)]
        parent: Option<LayerId>,
    },
    /// Create a read-write layer (a container's).
    CreateRw {
        /// The new layer's id.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// Its parent layer.
        #[arg(long, value_parser = layer_id)]
        parent: Option<LayerId>,
    },
    /// Exit 0 if the layer exists, 1 if not.
    Exists {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// List all layers with their parents.
    Ls,
    /// Unmount if needed and remove a layer.
    Rm {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Take a reference and mount the union of a layer and its parents.
    Mount {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// SELinux mount label.
        #[arg(long, default_value = "")]
        mount_label: String,
    },
    /// Drop one reference; unmount when none is left.
    Unmount {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
    },
    /// Unmount everything under the root.
    Cleanup,
    /// Apply a layer tarball (plain, gzip or zstd) into an existing layer.
    Apply {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// Its direct parent (checked).
        #[arg(long, value_parser = layer_id)]
        parent: Option<LayerId>,
        /// The tarball; `-` or nothing for stdin.
        file: Option<PathBuf>,
    },
    /// The layer's changes as a tarball with aufs whiteouts.
    Diff {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// The ancestor to diff against (default: the direct parent).
        #[arg(long, value_parser = layer_id)]
        parent: Option<LayerId>,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// What changed against the parent, like `docker diff`.
    Changes {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// The ancestor to compare with (default: the direct parent).
        #[arg(long, value_parser = layer_id)]
        parent: Option<LayerId>,
    },
    /// Bytes of the layer's changes.
    DiffSize {
        /// The layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// The ancestor to measure against (default: the direct parent).
        #[arg(long, value_parser = layer_id)]
        parent: Option<LayerId>,
    },
    /// Import a `docker save` tarball or an OCI image layout (a directory
    /// or a tar): one layer per image layer, named by its chain id, every
    /// digest verified, layers already present skipped.
    Import {
        /// The image.
        image: PathBuf,
    },
    /// Write a layer and its parents as a `docker save` tarball (what
    /// `docker load` takes), or with `--oci` as an OCI image layout
    /// directory.
    Export {
        /// The top layer.
        #[arg(value_parser = layer_id)]
        id: LayerId,
        /// Where to write it (must not exist).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// An OCI image layout directory instead of a tarball.
        #[arg(long)]
        oci: bool,
    },
    /// Run a long-lived server.
    Serve {
        #[command(subcommand)]
        command: ServeCommand,
    },
    /// Read a Docker install that used the aufs driver, in place.
    Legacy {
        #[command(subcommand)]
        command: LegacyCommand,
    },
}

/// The graph driver names built into dockerd 20.10: dockerd takes its own
/// driver for these and never asks a plugin of that name.
pub const BUILTIN_DRIVERS: &[&str] = &[
    "aufs",
    "btrfs",
    "devicemapper",
    "fuse-overlayfs",
    "overlay",
    "overlay2",
    "vfs",
    "windowsfilter",
    "zfs",
];

fn plugin_name(s: &str) -> Result<String, String> {
    if BUILTIN_DRIVERS.contains(&s) {
        return Err(format!(
            "{s:?} is a graph driver built into dockerd, which would never ask the plugin; pick another name"
        ));
    }
    if s.is_empty() || s.starts_with('.') || s.contains(['/', '\0', ':', '@']) {
        return Err(format!("{s:?} is not a plugin name (a socket file stem)"));
    }
    Ok(s.to_owned())
}

/// The servers.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// A legacy (v1) Docker graph driver plugin for dockerd 20.10's
    /// `--experimental --storage-driver NAME`; the root is the `Home` that
    /// dockerd's `GraphDriver.Init` sends (`<data-root>/NAME`), not `--root`.
    Docker {
        /// The plugin's name, the one given to `--storage-driver`.
        #[arg(long, default_value = "aufs-rs", value_parser = plugin_name)]
        name: String,
        /// Listen here instead of /run/docker/plugins/NAME.sock (dockerd
        /// then needs a spec file naming it). The last Init is kept beside
        /// it, as STEM.init.json.
        #[arg(long)]
        socket: Option<Utf8PathBuf>,
        /// Tell dockerd that `Diff` of a layer gives back the bytes it was
        /// applied from (`ReproducesExactDiffs`), so it keeps no tar-split
        /// data of its own.
        #[arg(long)]
        exact_diffs: bool,
    },
}

/// What to read of a Docker install.
#[derive(Debug, Subcommand)]
pub enum LegacyCommand {
    /// Hand the install's aufs store to the graph driver plugin NAME, with
    /// dockerd stopped: `aufs` and `image/aufs` become `NAME` and
    /// `image/NAME`, containers' `Driver` becomes NAME. Then `dockerd
    /// --experimental --storage-driver NAME` finds the same images and
    /// containers.
    Adopt {
        /// The install's root (`/var/lib/docker`).
        #[arg(long)]
        docker_root: PathBuf,
        /// The plugin's name (`--storage-driver`).
        #[arg(long, default_value = "aufs-rs", value_parser = plugin_name)]
        name: String,
    },
    /// Its images: `REPO:TAG IMAGE-ID SIZE`, one line a name.
    Images {
        /// The install's root (`/var/lib/docker`).
        #[arg(long)]
        docker_root: PathBuf,
    },
    /// Its containers: `NAME CONTAINER-ID IMAGE RW-LAYER-ID`.
    Containers {
        /// The install's root (`/var/lib/docker`).
        #[arg(long)]
        docker_root: PathBuf,
    },
    /// An image (by `repo:tag` or id) as a `docker save` tarball with its
    /// original layer bytes.
    Export {
        /// `repo:tag`, or an image id or a prefix of one.
        image: String,
        /// The install's root (`/var/lib/docker`).
        #[arg(long)]
        docker_root: PathBuf,
        /// Where to write the tarball (must not exist).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}
