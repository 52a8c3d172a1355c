//! Each command: drive the driver, print plain or JSON output.

use crate::cli::{Cli, Command};
use crate::wiring::open_driver;
use crate::Failure;
use aufs_driver::CreateOpts;
use serde_json::json;

/// Runs the parsed command line.
pub fn run(cli: &Cli) -> Result<(), Failure> {
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
                }));
            } else {
                for (k, v) in s.pairs() {
                    println!("{k}: {v}");
                }
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
    }
    Ok(())
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}
