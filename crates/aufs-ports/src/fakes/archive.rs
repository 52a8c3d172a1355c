//! A [`LayerArchive`] over [`MemFs`]: plain tarballs of files and
//! directories, read and written with the `tar` crate, with aufs `.wh.`
//! whiteouts in the diff dirs as they come in the tarball.

use super::MemFs;
use crate::{Applied, ApplyTarget, FileKind, Filesystem, LayerArchive};
use aufs_model::whiteout::{WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE_DIR, WHITEOUT_PREFIX};
use aufs_model::{Change, ChangeKind};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// One entry of a tree, by its path relative to the tree's root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir { mode: u32 },
    File { data: Vec<u8> },
}

type Tree = BTreeMap<String, Item>;

/// Layer content on a [`MemFs`]. Takes uncompressed tarballs of regular
/// files and directories (anything else is refused with `EINVAL`); the
/// exact-bytes record is the tarball itself, next to the tarball this
/// fake exports for the diff dir right after the apply (`<record>.tree`):
/// the record is given back while the diff dir still exports to that.
///
/// Its trees keep directory modes but no times, owners or file modes: a
/// directory present below is a change only when it is opaque or its mode
/// differs (between unions), a file when its content differs, and the
/// parent of an added or deleted entry is listed as changed, as Docker
/// does.
#[derive(Debug, Clone)]
pub struct MemArchive {
    fs: Arc<MemFs>,
}

impl MemArchive {
    /// Layer content on `fs`.
    pub fn new(fs: Arc<MemFs>) -> Self {
        MemArchive { fs }
    }

    fn tree(&self, root: &Utf8Path) -> io::Result<Tree> {
        let mut out = Tree::new();
        self.walk(root, "", &mut out)?;
        Ok(out)
    }

    fn walk(&self, root: &Utf8Path, rel: &str, out: &mut Tree) -> io::Result<()> {
        let dir = if rel.is_empty() {
            root.to_owned()
        } else {
            root.join(rel)
        };
        for e in self.fs.read_dir(&dir)? {
            let child = join(rel, &e.name);
            match e.kind {
                FileKind::Dir => {
                    let mode = self.fs.dir_meta(&dir.join(&e.name)).map_or(0o755, |m| m.0);
                    out.insert(child.clone(), Item::Dir { mode });
                    self.walk(root, &child, out)?;
                }
                _ => {
                    let data = self.fs.read_bytes(&dir.join(&e.name))?;
                    out.insert(child, Item::File { data });
                }
            }
        }
        Ok(())
    }

    /// The union of `branches` (top first) with aufs whiteout rules.
    fn union(&self, branches: &[Utf8PathBuf]) -> io::Result<Tree> {
        let mut out = Tree::new();
        for b in branches.iter().rev() {
            let layer = self.tree(b)?;
            for (p, item) in &layer {
                let (dir, name) = split(p);
                if name == WHITEOUT_OPAQUE_DIR {
                    remove_below(&mut out, dir);
                } else if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                    if !name.starts_with(WHITEOUT_META_PREFIX) && !target.is_empty() {
                        let gone = join(dir, target);
                        out.remove(&gone);
                        remove_below(&mut out, &gone);
                    }
                } else {
                    if matches!(item, Item::File { .. }) {
                        remove_below(&mut out, p);
                    }
                    out.insert(p.clone(), item.clone());
                }
            }
            // Names the layer itself shows beat its own whiteouts' targets.
            for (p, item) in layer {
                if !split(&p).1.starts_with(WHITEOUT_PREFIX) {
                    out.insert(p, item);
                }
            }
        }
        Ok(out)
    }

    fn write_tree(&self, root: &Utf8Path, tree: &Tree) -> io::Result<()> {
        self.fs.create_dir_all(root, 0o755, None)?;
        for (p, item) in tree {
            match item {
                Item::Dir { mode } => self.fs.create_dir_all(&root.join(p), *mode, None)?,
                Item::File { data } => self.fs.write_replace(&root.join(p), data)?,
            }
        }
        Ok(())
    }

    fn tree_record(record: &Utf8Path) -> Utf8PathBuf {
        Utf8PathBuf::from(format!("{record}.tree"))
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn split(p: &str) -> (&str, &str) {
    p.rsplit_once('/').unwrap_or(("", p))
}

fn remove_below(tree: &mut Tree, dir: &str) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    tree.retain(|p, _| !p.starts_with(&prefix) || p.as_str() == dir);
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// The entries of a tarball, in order, with clean relative paths.
fn parse(bytes: &[u8]) -> io::Result<Vec<(String, Item)>> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries()? {
        let mut e = e?;
        let raw = e.path_bytes().into_owned();
        let path = String::from_utf8(raw).map_err(|_| invalid("non-UTF-8 tar path"))?;
        let mut parts = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => return Err(invalid(format!("tar path {path:?} leaves the layer"))),
                c => parts.push(c),
            }
        }
        if parts.is_empty() {
            continue;
        }
        let rel = parts.join("/");
        let mode = e.header().mode()? & 0o7777;
        let item = match e.header().entry_type() {
            tar::EntryType::Directory => Item::Dir { mode },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                e.read_to_end(&mut data)?;
                Item::File { data }
            }
            t => {
                return Err(invalid(format!(
                    "{rel}: tar entry type {t:?} not supported"
                )))
            }
        };
        out.push((rel, item));
    }
    Ok(out)
}

/// A tarball of `entries` (in order), as Docker writes one: directories
/// with a trailing slash, times and owners zero.
fn build<'a>(entries: impl IntoIterator<Item = (String, Option<&'a Item>)>) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, item) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        match item {
            Some(Item::Dir { mode }) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, format!("{p}/"), io::empty())?;
            }
            Some(Item::File { data }) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_slice())?;
            }
            None => {
                // A deletion: its aufs whiteout.
                let (dir, name) = split(&p);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(
                    &mut h,
                    join(dir, &format!("{WHITEOUT_PREFIX}{name}")),
                    io::empty(),
                )?;
            }
        }
    }
    b.into_inner()
}

fn export_tree(tree: &Tree) -> io::Result<Vec<u8>> {
    build(tree.iter().map(|(p, i)| (p.clone(), Some(i))))
}

fn size_of(tree: &Tree) -> u64 {
    tree.values()
        .map(|i| match i {
            Item::File { data } => data.len() as u64,
            Item::Dir { .. } => 0,
        })
        .sum()
}

fn slash(rel: &str) -> String {
    format!("/{rel}")
}

fn sort(mut v: Vec<Change>) -> Vec<Change> {
    v.sort_by(|a, b| a.raw_path.cmp(&b.raw_path).then(a.kind.cmp(&b.kind)));
    v.dedup();
    v
}

fn change(rel: &str, kind: ChangeKind) -> Change {
    Change::new(slash(rel).into_bytes(), kind)
}

impl LayerArchive for MemArchive {
    fn apply(&self, target: &ApplyTarget<'_>, input: &mut dyn Read) -> io::Result<Applied> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        let entries = parse(&bytes)?;
        let mut tree = self.tree(target.diff)?;
        let count = entries.len() as u64;
        for (p, item) in entries {
            // Parents a file stood in for become directories.
            let mut at = p.as_str();
            while let Some((parent, _)) = at.rsplit_once('/') {
                if !matches!(tree.get(parent), Some(Item::Dir { .. })) {
                    tree.insert(parent.to_owned(), Item::Dir { mode: 0o755 });
                }
                at = parent;
            }
            match (&item, tree.get(&p)) {
                (Item::Dir { .. }, Some(Item::Dir { .. })) => {}
                _ => remove_below(&mut tree, &p),
            }
            tree.insert(p, item);
        }
        // Built aside, then swapped in: a failed apply leaves the layer.
        let built = target.staging.join("tree");
        let old = target.staging.join("old");
        self.fs.remove_all(target.staging)?;
        self.fs.create_dir_all(target.staging, 0o700, None)?;
        self.write_tree(&built, &tree)?;
        self.fs.rename(target.diff, &old)?;
        self.fs.rename(&built, target.diff)?;
        self.fs.remove_all(target.staging)?;
        self.fs.write_replace(target.record, &bytes)?;
        self.fs
            .write_replace(&Self::tree_record(target.record), &export_tree(&tree)?)?;
        let sum = Sha256::digest(&bytes);
        let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Applied {
            size: size_of(&tree),
            diff_id: Some(format!("sha256:{hex}")),
            entries: count,
        })
    }

    fn export(&self, diff: &Utf8Path, record: &Utf8Path, out: &mut dyn Write) -> io::Result<u64> {
        let now = export_tree(&self.tree(diff)?)?;
        let bytes = match self.fs.read_bytes(&Self::tree_record(record)) {
            Ok(then) if then == now => self.fs.read_bytes(record)?,
            Ok(_) => now,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => now,
            Err(e) => return Err(e),
        };
        out.write_all(&bytes)?;
        Ok(bytes.len() as u64)
    }

    fn changes(&self, diff: &Utf8Path, lowers: &[Utf8PathBuf]) -> io::Result<Vec<Change>> {
        let upper = self.tree(diff)?;
        let lower = self.union(lowers)?;
        let mut out = Vec::new();
        // Directories whose lower content is hidden (opaque, or new).
        let mut hidden: Vec<String> = Vec::new();
        for (p, item) in &upper {
            let (dir, name) = split(p);
            if name.starts_with(WHITEOUT_META_PREFIX) || name == WHITEOUT_PREFIX {
                continue;
            }
            let parent_listed = |out: &Vec<Change>| {
                out.iter()
                    .any(|c: &Change| c.path == slash(dir) && c.kind != ChangeKind::Delete)
            };
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                if !dir.is_empty() && !parent_listed(&out) {
                    out.push(change(dir, ChangeKind::Modify));
                }
                out.push(change(&join(dir, target), ChangeKind::Delete));
                continue;
            }
            let under_hidden = hidden
                .iter()
                .any(|h| p.starts_with(h.as_str()) && p.as_bytes().get(h.len()) == Some(&b'/'));
            let below = if under_hidden { None } else { lower.get(p) };
            let is_dir = matches!(item, Item::Dir { .. });
            let opaque = is_dir && upper.contains_key(&join(p, WHITEOUT_OPAQUE_DIR));
            let kind = match below {
                None => Some(ChangeKind::Add),
                Some(Item::Dir { .. }) if is_dir && !opaque => None,
                Some(_) => Some(ChangeKind::Modify),
            };
            if kind == Some(ChangeKind::Add) && !dir.is_empty() && !parent_listed(&out) {
                out.push(change(dir, ChangeKind::Modify));
            }
            if let Some(kind) = kind {
                out.push(change(p, kind));
            }
            if is_dir && (opaque || below.is_none()) {
                hidden.push(p.clone());
            }
        }
        Ok(sort(out))
    }

    fn diff_size(&self, diff: &Utf8Path) -> io::Result<u64> {
        Ok(size_of(&self.tree(diff)?))
    }

    fn changes_between(
        &self,
        old: Option<&[Utf8PathBuf]>,
        new: &[Utf8PathBuf],
    ) -> io::Result<Vec<Change>> {
        let new = self.union(new)?;
        let old = match old {
            Some(o) => self.union(o)?,
            None => Tree::new(),
        };
        let mut out = Vec::new();
        for (p, item) in &new {
            let changed = match (old.get(p), item) {
                (None, _) => Some(ChangeKind::Add),
                (Some(Item::Dir { mode: a }), Item::Dir { mode: b }) if a == b => None,
                (Some(o), n) if o == n => None,
                _ => Some(ChangeKind::Modify),
            };
            if let Some(k) = changed {
                out.push(change(p, k));
            }
        }
        for p in old.keys() {
            let (dir, _) = split(p);
            // Only the top of a deleted subtree.
            if !new.contains_key(p) && (dir.is_empty() || new.contains_key(dir)) {
                out.push(change(p, ChangeKind::Delete));
            }
        }
        // Every directory with a change inside that is not itself listed.
        let mut parents = Vec::new();
        for c in &out {
            let mut at = c.path.trim_start_matches('/');
            while let Some((parent, _)) = at.rsplit_once('/') {
                parents.push(parent.to_owned());
                at = parent;
            }
        }
        for p in parents {
            if !out.iter().any(|c| c.path == slash(&p)) {
                out.push(change(&p, ChangeKind::Modify));
            }
        }
        Ok(sort(out))
    }

    fn changes_size(&self, new: &[Utf8PathBuf], changes: &[Change]) -> io::Result<u64> {
        let new = self.union(new)?;
        Ok(changes
            .iter()
            .filter(|c| c.kind != ChangeKind::Delete)
            .filter_map(|c| match new.get(c.path.trim_start_matches('/')) {
                Some(Item::File { data }) => Some(data.len() as u64),
                _ => None,
            })
            .sum())
    }

    fn export_changes(
        &self,
        new: &[Utf8PathBuf],
        changes: &[Change],
        out: &mut dyn Write,
    ) -> io::Result<u64> {
        let new = self.union(new)?;
        let mut entries = Vec::new();
        for c in changes {
            let rel = c.path.trim_start_matches('/').to_owned();
            match c.kind {
                ChangeKind::Delete => entries.push((rel, None)),
                _ => {
                    if let Some(item) = new.get(&rel) {
                        entries.push((rel, Some(item)));
                    }
                }
            }
        }
        let bytes = build(entries)?;
        out.write_all(&bytes)?;
        Ok(bytes.len() as u64)
    }

    fn record_paths(&self, record: &Utf8Path) -> Vec<Utf8PathBuf> {
        vec![record.to_owned(), Self::tree_record(record)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aufs_model::IdMappings;

    #[test]
    fn union_hides_whiteouts_and_opaque_dirs() {
        let fs = Arc::new(MemFs::new());
        for (p, d) in [
            ("/l1/a/x", "1"),
            ("/l1/b/y", "2"),
            ("/l1/c", "3"),
            ("/l2/.wh.c", ""),
            ("/l2/b/.wh..wh..opq", ""),
            ("/l2/b/z", "4"),
        ] {
            let p = Utf8Path::new(p);
            fs.create_dir_all(p.parent().unwrap(), 0o755, None).unwrap();
            fs.write_replace(p, d.as_bytes()).unwrap();
        }
        let a = MemArchive::new(fs);
        let u = a.union(&["/l2".into(), "/l1".into()]).unwrap();
        let keys: Vec<&str> = u.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "a/x", "b", "b/z"]);
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, t, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if *t == tar::EntryType::Symlink {
                h.set_link_name("x").unwrap();
            }
            h.as_gnu_mut().unwrap().name[..p.len()].copy_from_slice(p.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn refused_entries_change_nothing_and_records_follow_the_diff_dir() {
        let fs = Arc::new(MemFs::new());
        fs.create_dir_all(Utf8Path::new("/r/diff/l"), 0o755, None)
            .unwrap();
        fs.write_replace(Utf8Path::new("/r/diff/l/keep"), b"k")
            .unwrap();
        let a = MemArchive::new(fs.clone());
        let maps = IdMappings::default();
        let target = ApplyTarget {
            diff: Utf8Path::new("/r/diff/l"),
            record: Utf8Path::new("/r/rec"),
            staging: Utf8Path::new("/r/staging/l"),
            id_maps: &maps,
            chown: false,
        };
        for evil in [
            tar_of(&[("../escape", tar::EntryType::Regular, b"x")]),
            tar_of(&[("link", tar::EntryType::Symlink, b"")]),
        ] {
            let e = a.apply(&target, &mut evil.as_slice()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            assert_eq!(a.tree(target.diff).unwrap().len(), 1);
        }
        let good = tar_of(&[("f", tar::EntryType::Regular, b"abc")]);
        let applied = a.apply(&target, &mut good.as_slice()).unwrap();
        assert_eq!(applied.size, 4);
        let mut out = Vec::new();
        a.export(target.diff, target.record, &mut out).unwrap();
        assert_eq!(out, good, "unchanged: the applied bytes");
        fs.write_replace(Utf8Path::new("/r/diff/l/keep"), b"changed")
            .unwrap();
        let mut out = Vec::new();
        a.export(target.diff, target.record, &mut out).unwrap();
        assert_ne!(out, good, "changed: the diff dir");
        let names: Vec<String> = parse(&out).unwrap().into_iter().map(|e| e.0).collect();
        assert_eq!(names, ["f", "keep"]);
    }
}
