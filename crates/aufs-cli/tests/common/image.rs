//! Small `docker save` images built in memory, and what their layers hold.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A layer tarball holding `files` (path, content), parents made as dirs.
pub fn layer_tar(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, body) in files {
        let mut parent = Path::new(path).parent();
        let mut missing = Vec::new();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            if dirs.insert(d.to_path_buf()) {
                missing.push(d.to_path_buf());
            }
            parent = d.parent();
        }
        for d in missing.into_iter().rev() {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(1_600_000_000);
            h.set_size(0);
            b.append_data(&mut h, format!("{}/", d.display()), &[][..])
                .unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, path, &body[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// A `docker save` tarball of `layers` (bottom first), and the id of each
/// layer in the store (the chain id's hex).
pub struct Image {
    /// The tarball.
    pub bytes: Vec<u8>,
    /// Layer ids, bottom first.
    pub ids: Vec<String>,
    /// Each layer's tarball, bottom first.
    pub layers: Vec<Vec<u8>>,
}

impl Image {
    /// Builds the image.
    pub fn new(layers: Vec<Vec<u8>>) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
        let mut ids = Vec::new();
        let mut chain: Option<String> = None;
        for d in &diff_ids {
            let next = match &chain {
                None => d.clone(),
                Some(c) => digest(format!("{c} {d}").as_bytes()),
            };
            ids.push(next.trim_start_matches("sha256:").to_owned());
            chain = Some(next);
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_name = format!("{}.json", digest(&config).trim_start_matches("sha256:"));
        let names: Vec<String> = (0..layers.len())
            .map(|i| format!("l{i}/layer.tar"))
            .collect();
        let manifest =
            serde_json::json!([{"Config": config_name, "RepoTags": ["t:1"], "Layers": names}]);
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        };
        add(&config_name, &config);
        for (name, layer) in names.iter().zip(&layers) {
            add(name, layer);
        }
        add("manifest.json", manifest.to_string().as_bytes());
        Image {
            bytes: b.into_inner().unwrap(),
            ids,
            layers,
        }
    }
}

/// What a directory tree holds: every entry's relative path with its type,
/// permission bits and (for files and symlinks) content.
pub fn dump(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let p = dir.join(&name);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mode = md.permissions().mode() & 0o7777;
            let what = if md.is_dir() {
                walk(root, &p, out);
                format!("dir {mode:o}")
            } else if md.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else {
                let body = std::fs::read(&p).unwrap();
                format!("file {mode:o} {} {}", md.size(), digest(&body))
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
