//! `aufsctl legacy ...`: a Docker install's images and containers, read in
//! place, exported, or handed to the graph driver plugin.

use super::output::{print_json, utf8};
use crate::cli::{Cli, LegacyCommand};
use crate::Failure;
use serde_json::json;
use std::io::Write;

/// Runs `aufsctl legacy COMMAND`.
pub(super) fn run(cli: &Cli, command: &LegacyCommand) -> Result<(), Failure> {
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
