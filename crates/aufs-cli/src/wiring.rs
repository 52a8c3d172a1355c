//! The one place where real adapters are plugged into the driver.

use crate::cli::{Backend, Cli, Command};
use crate::Failure;
use aufs_archive::DiskArchive;
use aufs_driver::kernel::KernelAufs;
use aufs_driver::support::{self, BackendChoice};
use aufs_driver::{Driver, DriverConfig, Ports, RefStore};
use aufs_fuse::{FuseBackend, Launcher, StackMode, StackedBackend};
use aufs_linux::{FlockLocks, LinuxFilesystem, LinuxHost, LinuxMounter};
use aufs_model::IdMappings;
use aufs_ports::{BackendKind, Filesystem, Host, SystemClock, UnionBackend};
use camino::Utf8PathBuf;
use std::sync::Arc;

/// The hidden first argument that makes this binary a FUSE union server
/// (the backend starts one detached server per mount).
pub const UNION_SERVER_ARG: &str = "__union-server";

/// Opens the driver on `--root` with the chosen backend, as `Init` does.
pub fn open_driver(cli: &Cli) -> Result<Driver, Failure> {
    open_driver_at(
        &absolute_root(&cli.root)?,
        cli.backend,
        IdMappings::default(),
        matches!(cli.command, Command::Import { .. }),
    )
}

/// Opens the driver on `root` (absolute) with `backend` and user-namespace
/// `id_maps`; reference counts on disk, file locks under the root.
/// `for_import`: layers count only once applied, with the content their
/// chain id names (what `import` needs).
pub fn open_driver_at(
    root: &camino::Utf8Path,
    backend: Backend,
    id_maps: IdMappings,
    for_import: bool,
) -> Result<Driver, Failure> {
    let root = root.to_owned();
    let fs: Arc<dyn Filesystem> = Arc::new(LinuxFilesystem::new());
    let host: Arc<dyn Host> = Arc::new(LinuxHost::new());
    let kind = support::choose_backend(BackendChoice::from(backend), host.as_ref())?;
    let backend: Arc<dyn UnionBackend> = match kind {
        BackendKind::Kernel => Arc::new(KernelAufs::new(
            Arc::new(LinuxMounter::new()),
            fs.clone(),
            host.clone(),
            Arc::new(SystemClock),
        )),
        BackendKind::Fuse => match backend {
            Backend::Fuse => Arc::new(fuse_backend(&root)?),
            Backend::Stacked => Arc::new(stacked_backend(&root, StackMode::Stacked)?),
            _ => Arc::new(stacked_backend(&root, StackMode::Auto)?),
        },
    };
    // Layers a crash left in overlay form go back to aufs form before
    // anything reads them, whichever backend this command uses.
    if root.join("stack").is_dir() {
        stacked_backend(&root, StackMode::Auto)?
            .recover()
            .map_err(|e| Failure::Error(format!("recovering stacked mounts under {root}: {e}")))?;
    }
    // The root must exist before its lock and server state dirs; Init
    // creates the rest.
    for dir in [root.clone(), root.join("fuse")] {
        fs.create_dir_all(&dir, 0o700, None)
            .map_err(|e| Failure::Error(format!("create dir {dir}: {e}")))?;
    }
    let locks = FlockLocks::new(root.join("locks"))
        .map_err(|e| Failure::Error(format!("lock dir {root}/locks: {e}")))?;
    let mut config = DriverConfig::new(root);
    config.refs = RefStore::OnDisk;
    // An import's layer counts only once its content is in (cut off
    // between create and apply, importing again applies it),
    // and only with the content its chain id names.
    config.await_apply = for_import;
    config.chain_ids = config.await_apply;
    config.id_maps = id_maps;
    Ok(Driver::init(
        config,
        Ports {
            fs,
            host,
            backend,
            locks: Arc::new(locks),
            archive: Arc::new(DiskArchive::new()),
        },
    )?)
}

/// The FUSE backend: one union server per mount, state in `<root>/fuse`.
fn fuse_backend(root: &camino::Utf8Path) -> Result<FuseBackend, Failure> {
    let exe = std::env::current_exe().map_err(|e| {
        Failure::Error(format!(
            "cannot find this program to run the union server: {e}"
        ))
    })?;
    Ok(FuseBackend::new(
        Launcher::new(exe, vec![UNION_SERVER_ARG.into()]),
        root.join("fuse"),
    ))
}

/// The stacked backend (kernel overlayfs over a read-only FUSE view),
/// state in `<root>/stack`.
fn stacked_backend(root: &camino::Utf8Path, mode: StackMode) -> Result<StackedBackend, Failure> {
    Ok(StackedBackend::new(fuse_backend(root)?, root, mode))
}

fn absolute_root(root: &camino::Utf8Path) -> Result<Utf8PathBuf, Failure> {
    if root.is_absolute() {
        return Ok(root.to_owned());
    }
    let cwd = std::env::current_dir().map_err(|e| Failure::Error(format!("current dir: {e}")))?;
    let cwd = Utf8PathBuf::from_path_buf(cwd)
        .map_err(|p| Failure::Error(format!("current dir {} is not UTF-8", p.display())))?;
    Ok(cwd.join(root))
}
