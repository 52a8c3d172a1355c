//! The layer commands: the driver's own operations on one store (status,
//! create, ls, rm, mount, apply, diff, changes, diff-size, cleanup).

use super::output::{print_json, stdin_file, write_atomically};
use crate::cli::{Cli, Command};
use crate::Failure;
use aufs_driver::{CreateOpts, Driver};
use aufs_model::LayerId;
use serde_json::json;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Runs layer command `command` on `driver`.
pub(super) fn run(cli: &Cli, driver: &Driver, command: &Command) -> Result<(), Failure> {
    match command {
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
            let parent = parent.clone().or_else(|| direct_parent(driver, id));
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
            let parent = parent.clone().or_else(|| direct_parent(driver, id));
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
        Command::Legacy { .. }
        | Command::Serve { .. }
        | Command::Import { .. }
        | Command::Export { .. } => unreachable!("dispatched to their own group"),
        Command::DiffSize { id, parent } => {
            let parent = parent.clone().or_else(|| direct_parent(driver, id));
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

/// How a layer with a writable top is mounted, for `status`.
fn union_mode(cli: &Cli, backend: aufs_ports::BackendKind) -> &'static str {
    match (backend, cli.backend) {
        (aufs_ports::BackendKind::Kernel, _) => "kernel aufs",
        (_, crate::cli::Backend::Fuse) => "fuse",
        (_, crate::cli::Backend::Stacked) => "stacked (kernel overlayfs over a read-only FUSE view)",
        _ => "stacked (kernel overlayfs over a read-only FUSE view) where the kernel allows it, else fuse",
    }
}
