//! Hands a Docker install that used the built-in aufs driver to the graph
//! driver plugin: dockerd on `--storage-driver NAME` then finds the same
//! images and containers. The plugin keeps Docker's aufs layout, so nothing
//! of the layers changes; only three names do, with dockerd stopped:
//!
//! - `DIR/aufs` becomes `DIR/NAME` (the plugin's `Init` home);
//! - `DIR/image/aufs` becomes `DIR/image/NAME` (the layer and image store
//!   dockerd keeps per driver);
//! - each container's `config.v2.json` says `"Driver": "NAME"` (dockerd
//!   skips, at start, every container made by another driver).
//!
//! Each step is skipped when already done, so an adoption cut off part way
//! is finished by running it again; moving the two dirs back and setting
//! `Driver` back to `aufs` undoes it.

use crate::error::{ImageError, Result};
use camino::{Utf8Path, Utf8PathBuf};
use std::fs;

/// What an adoption changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Whether `aufs` was renamed (false: it already had been).
    pub moved_store: bool,
    /// Whether `image/aufs` was renamed.
    pub moved_image_store: bool,
    /// Ids of the containers whose config now names the plugin.
    pub containers: Vec<String>,
}

fn io(path: &Utf8Path, op: &'static str) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io { path, op, source }
}

fn refuse(path: &Utf8Path, why: String) -> ImageError {
    ImageError::Malformed {
        path: path.to_owned(),
        what: "adopting the aufs store".into(),
        why,
    }
}

/// Mount points at or under `dir` (a running dockerd's, or its containers').
fn mounts_under(dir: &Utf8Path) -> Result<Vec<String>> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io(Utf8Path::new("/proc/self/mountinfo"), "reading"))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Utf8Path::new(p).starts_with(dir))
        .map(str::to_owned)
        .collect())
}

/// Renames `from` to `to` unless that was done already; true when done now.
fn move_dir(from: &Utf8Path, to: &Utf8Path) -> Result<bool> {
    match (from.symlink_metadata(), to.symlink_metadata()) {
        (Ok(m), Err(_)) if m.is_dir() => {
            fs::rename(from, to).map_err(io(from, "renaming"))?;
            Ok(true)
        }
        (Err(_), Ok(m)) if m.is_dir() => Ok(false),
        (Ok(_), Ok(_)) => Err(refuse(
            to,
            format!("both {from} and {to} exist; the plugin's name is taken"),
        )),
        _ => Err(refuse(from, "not a directory".into())),
    }
}

/// Adopts the aufs store of the Docker install at `dir` (`/var/lib/docker`)
/// for the plugin `name`. dockerd must be stopped: a mount under the store
/// is refused.
pub fn adopt(dir: &Utf8Path, name: &str) -> Result<Adopted> {
    if name == "aufs" || name.is_empty() || name.contains('/') {
        return Err(refuse(dir, format!("{name:?} cannot name the plugin")));
    }
    let (store, new_store) = (dir.join("aufs"), dir.join(name));
    let (images, new_images) = (dir.join("image/aufs"), dir.join("image").join(name));
    if !store.is_dir() && !new_store.is_dir() {
        return Err(refuse(
            dir,
            "no aufs/: not a Docker install that used the aufs driver".into(),
        ));
    }
    for d in [&store, &new_store] {
        let busy = mounts_under(d)?;
        if !busy.is_empty() {
            return Err(refuse(
                d,
                format!("still mounted ({}): stop dockerd first", busy.join(", ")),
            ));
        }
    }
    let mut done = Adopted {
        moved_image_store: move_dir(&images, &new_images)?,
        moved_store: move_dir(&store, &new_store)?,
        ..Adopted::default()
    };
    let containers = dir.join("containers");
    let entries = match fs::read_dir(&containers) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(io(&containers, "listing")(e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    ids.sort();
    for id in ids {
        let config = containers.join(&id).join("config.v2.json");
        let Ok(bytes) = fs::read(&config) else {
            continue;
        };
        let mut v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| refuse(&config, e.to_string()))?;
        if v.get("Driver").and_then(|d| d.as_str()) != Some("aufs") {
            continue;
        }
        v["Driver"] = serde_json::Value::String(name.to_owned());
        let tmp = Utf8PathBuf::from(format!("{config}.adopt"));
        let out = serde_json::to_vec(&v).map_err(|e| refuse(&config, e.to_string()))?;
        fs::write(&tmp, out).map_err(io(&tmp, "writing"))?;
        // dockerd keeps it 0600 (it holds the container's environment).
        let perms = fs::metadata(&config)
            .map_err(io(&config, "stat"))?
            .permissions();
        fs::set_permissions(&tmp, perms).map_err(io(&tmp, "chmod"))?;
        fs::rename(&tmp, &config).map_err(io(&config, "replacing"))?;
        done.containers.push(id);
    }
    Ok(done)
}
