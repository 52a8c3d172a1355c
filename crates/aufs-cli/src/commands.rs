//! Each command: drive the driver, print plain or JSON output.

use crate::cli::{Cli, Command, LegacyCommand};
use crate::wiring::open_driver;
use crate::Failure;
use aufs_driver::{CreateOpts, Driver};
use aufs_model::LayerId;
use serde_json::json;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> Result<(), Failure> {
    // A Docker install is read in place: no store of ours is opened.
    if let Command::Legacy { command } = &cli.command {
        return legacy(cli, command);
    }
    // A server opens the roots its clients name.
    if let Command::Serve { command } = &cli.command {
        return crate::serve::run(cli, command);
    }
    let driver = open_driver(cli)?;
    match &cli.command {
        Command::Status => {
            let s = driver.status()?;
            if cli.json {
                print_json(&json!({
                    "root_dir": s.root_dir.as_str(),
                    "backing_filesystem": s.backing_filesystem,
                    "dirs": s.dirs,
                    "dirperm1_supported": s.dirperm1_supported,
                    "mount_backend": s.mount_backend.as_str(),
                    "supports_d_type": s.supports_d_type,
                    "supports_xattrs": s.supports_xattrs,
                    "union_mode": union_mode(cli, s.mount_backend),
                }));
            } else {
                for (k, v) in s.pairs() {
                    println!("{k}: {v}");
                }
                println!("Union Mode: {}", union_mode(cli, s.mount_backend));
            }
        }
        Command::Create { id, parent } => {
            driver.create(id, parent.as_ref(), &CreateOpts::default())?
        }
        Command::CreateRw { id, parent } => {
            driver.create_read_write(id, parent.as_ref(), &CreateOpts::default())?
        }
        Command::Exists { id } => {
            if !driver.exists(id) {
                return Err(Failure::No);
            }
        }
        Command::Ls => {
            let layers = driver.list()?;
            if cli.json {
                let v: Vec<_> = layers
                    .iter()
                    .map(|l| json!({"id": l.id.as_str(), "parent": l.parent.as_ref().map(|p| p.as_str())}))
                    .collect();
                print_json(&serde_json::Value::Array(v));
            } else {
                for l in layers {
                    println!("{} {}", l.id, l.parent.as_ref().map_or("-", |p| p.as_str()));
                }
            }
        }
        Command::Rm { id } => driver.remove(id)?,
        Command::Mount { id, mount_label } => {
            let path = driver.get(id, mount_label)?;
            let canonical =
                std::fs::canonicalize(&path).map_err(|e| Failure::Error(format!("{path}: {e}")))?;
            if cli.json {
                print_json(&json!({"path": canonical.to_string_lossy()}));
            } else {
                println!("{}", canonical.display());
            }
        }
        Command::Unmount { id } => driver.put(id)?,
        Command::Cleanup => driver.cleanup()?,
        Command::Apply { id, parent, file } => {
            // Files (a path, or stdin redirected from one) go to the driver
            // as files, so it can map them; pipes are streamed.
            let input = match file.as_deref() {
                None => stdin_file(),
                Some(p) if p == Path::new("-") => stdin_file(),
                Some(p) => Some(
                    File::open(p).map_err(|e| Failure::Error(format!("{}: {e}", p.display())))?,
                ),
            };
            let outcome = match &input {
                Some(f) => driver.apply_diff_file(id, parent.as_ref(), f)?,
                None => driver.apply_diff(id, parent.as_ref(), std::io::stdin().lock())?,
            };
            if cli.json {
                print_json(&json!({"size": outcome.size, "diff_id": outcome.diff_id}));
            } else {
                println!("{}", outcome.size);
            }
        }
        Command::Diff { id, parent, output } => {
            let parent = parent.clone().or_else(|| direct_parent(&driver, id));
            match output {
                None => {
                    // Straight to fd 1 (no line buffering of binary data), in
                    // writes of half a default pipe: a larger write into a
                    // pipe blocks until the reader drained all of it.
                    let _lock = std::io::stdout().lock();
                    let stdout = {
                        use std::os::fd::AsFd;
                        File::from(std::io::stdout().as_fd().try_clone_to_owned()?)
                    };
                    let mut out = std::io::BufWriter::with_capacity(32 * 1024, stdout);
                    driver.diff(id, parent.as_ref(), &mut out)?;
                    out.flush()?;
                }
                Some(path) => {
                    write_atomically(path, |f| driver.diff(id, parent.as_ref(), f).map(|_| ()))?
                }
            }
        }
        Command::Changes { id, parent } => {
            let parent = parent.clone().or_else(|| direct_parent(&driver, id));
            let changes = driver.changes(id, parent.as_ref())?;
            if cli.json {
                let v: Vec<_> = changes
                    .iter()
                    .map(|c| json!({"path": c.path, "kind": c.kind.to_string()}))
                    .collect();
                print_json(&serde_json::Value::Array(v));
            } else {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for c in &changes {
                    writeln!(out, "{c}")?;
                }
                out.flush()?;
            }
        }
        Command::Import { image } => {
            let image = utf8(image)?;
            let mut bar = ImportBar::for_stderr();
            let report = aufs_image::import(&driver, image, &mut bar)?;
            bar.finish();
            if cli.json {
                let layers: Vec<_> = report
                    .layers
                    .iter()
                    .map(|(id, created)| json!({"id": id.as_str(), "created": created}))
                    .collect();
                print_json(&json!({"id": report.top.as_str(), "layers": layers}));
            } else {
                println!("{}", report.top);
            }
        }
        Command::Export { id, output, oci } => {
            let output = utf8(output)?;
            let format = if *oci {
                aufs_image::ExportFormat::OciLayout
            } else {
                aufs_image::ExportFormat::DockerSave
            };
            aufs_image::export(&driver, id, output, format)?;
        }
        Command::Legacy { .. } | Command::Serve { .. } => {
            unreachable!("handled before the store is opened")
        }
        Command::DiffSize { id, parent } => {
            let parent = parent.clone().or_else(|| direct_parent(&driver, id));
            let size = driver.diff_size(id, parent.as_ref())?;
            if cli.json {
                print_json(&json!({"size": size}));
            } else {
                println!("{size}");
            }
        }
    }
    Ok(())
}

/// The layer's direct parent: what "no --parent" means for diff commands.
fn direct_parent(driver: &Driver, id: &LayerId) -> Option<LayerId> {
    driver
        .parent_chain(id)
        .ok()
        .and_then(|c| c.parent().cloned())
}

/// Writes `path` through a temp file in the same dir, renamed into place
/// only when `write` succeeds: a failed diff leaves no half-written file.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<File>) -> Result<(), aufs_driver::DriverError>,
) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Failure::Error(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let f =
            File::create(&tmp).map_err(|e| Failure::Error(format!("{}: {e}", tmp.display())))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut w)?;
        let f = w
            .into_inner()
            .map_err(|e| Failure::Error(format!("{}: {}", tmp.display(), e.error())))?;
        f.sync_all()
            .map_err(|e| Failure::Error(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(|e| Failure::Error(format!("{}: {e}", path.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Standard input as a file, when it is one (`aufsctl apply ID < layer.tar`);
/// `None` for a pipe or a terminal, which are read as streams.
fn stdin_file() -> Option<File> {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd().try_clone_to_owned().ok()?;
    let f = File::from(fd);
    f.metadata().ok()?.file_type().is_file().then_some(f)
}

/// A progress bar of an import on stderr, when stderr is a terminal.
struct ImportBar(Option<indicatif::ProgressBar>);

impl ImportBar {
    fn for_stderr() -> Self {
        use std::io::IsTerminal;
        Self(std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} layers {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }))
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl aufs_image::Progress for ImportBar {
    fn layer(&mut self, index: usize, total: usize, id: &LayerId, skipped: bool) {
        if let Some(bar) = &self.0 {
            bar.set_length(total as u64);
            bar.set_position(index as u64);
            let short = &id.as_str()[..id.as_str().len().min(12)];
            bar.set_message(if skipped {
                format!("{short} (present)")
            } else {
                short.to_string()
            });
        }
    }
}

/// A path argument the image code takes, which must be UTF-8.
fn utf8(p: &Path) -> Result<&camino::Utf8Path, Failure> {
    camino::Utf8Path::from_path(p)
        .ok_or_else(|| Failure::Error(format!("{}: not a UTF-8 path", p.display())))
}

/// `aufsctl legacy ...`: a Docker install's images and containers.
fn legacy(cli: &Cli, command: &LegacyCommand) -> Result<(), Failure> {
    match command {
        LegacyCommand::Adopt { docker_root, name } => {
            let done = aufs_image::adopt(utf8(docker_root)?, name)?;
            if cli.json {
                print_json(&json!({
                    "moved_store": done.moved_store,
                    "moved_image_store": done.moved_image_store,
                    "containers": done.containers,
                }));
            }
        }
        LegacyCommand::Images { docker_root } => {
            let images = aufs_image::DockerRoot::open(utf8(docker_root)?)?.images()?;
            if cli.json {
                let v: Vec<_> = images
                    .iter()
                    .map(|i| json!({"repo_tags": i.repo_tags, "id": i.id.as_str(), "size": i.size}))
                    .collect();
                print_json(&serde_json::Value::Array(v));
            } else {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for i in &images {
                    let short = &i.id.hex()[..12];
                    if i.repo_tags.is_empty() {
                        writeln!(out, "<none>:<none> {short} {}", i.size)?;
                    }
                    for t in &i.repo_tags {
                        writeln!(out, "{t} {short} {}", i.size)?;
                    }
                }
                out.flush()?;
            }
        }
        LegacyCommand::Containers { docker_root } => {
            let containers = aufs_image::DockerRoot::open(utf8(docker_root)?)?.containers()?;
            if cli.json {
                let v: Vec<_> = containers
                    .iter()
                    .map(|c| json!({"name": c.name, "id": c.id, "image": c.image, "rw_layer": c.rw_layer}))
                    .collect();
                print_json(&serde_json::Value::Array(v));
            } else {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for c in &containers {
                    writeln!(out, "{} {} {} {}", c.name, c.id, c.image, c.rw_layer)?;
                }
                out.flush()?;
            }
        }
        LegacyCommand::Export {
            image,
            docker_root,
            output,
        } => aufs_image::DockerRoot::open(utf8(docker_root)?)?.export(image, utf8(output)?)?,
    }
    Ok(())
}

/// How a layer with a writable top is mounted, for `status`.
fn union_mode(cli: &Cli, backend: aufs_ports::BackendKind) -> &'static str {
    match (backend, cli.backend) {
        (aufs_ports::BackendKind::Kernel, _) => "kernel aufs",
        (_, crate::cli::Backend::Fuse) => "fuse",
        (_, crate::cli::Backend::Stacked) => "stacked (kernel overlayfs over a read-only FUSE view)",
        _ => "stacked (kernel overlayfs over a read-only FUSE view) where the kernel allows it, else fuse",
    }
}
