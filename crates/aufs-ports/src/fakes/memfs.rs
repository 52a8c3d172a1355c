//! An in-memory directory tree implementing [`Filesystem`].

use super::{take_fault, Fault};
use crate::{errno, DirEntry, FileKind, Filesystem};
use camino::{Utf8Component, Utf8Path, Utf8PathBuf};
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::Mutex;

/// Operations of [`MemFs`] that faults can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsOp {
    /// `kind` (lstat).
    Kind,
    /// `create_dir_all`.
    CreateDir,
    /// `write_new` / `write_replace`.
    Write,
    /// `remove_file`.
    RemoveFile,
    /// `rename`.
    Rename,
    /// `remove_all`.
    RemoveAll,
    /// `read_to_string`.
    Read,
    /// `read_dir`.
    ReadDir,
}

#[derive(Debug, Clone)]
enum Node {
    Dir {
        mode: u32,
        owner: (u32, u32),
        children: BTreeMap<String, Node>,
    },
    File {
        data: Vec<u8>,
    },
}

#[derive(Debug)]
struct State {
    root: Node,
    faults: Vec<Fault<FsOp>>,
    busy: HashSet<Utf8PathBuf>,
    temp_seq: u64,
}

/// An in-memory filesystem. Paths must be absolute. Directories remember
/// their mode and owner so tests can check them. Paths marked busy (a mount
/// point in use) fail `rename` and `remove_all` with `EBUSY`.
#[derive(Debug)]
pub struct MemFs {
    state: Mutex<State>,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new()
    }
}

fn components(path: &Utf8Path) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Utf8Component::RootDir => {}
            Utf8Component::Normal(n) => out.push(n),
            Utf8Component::CurDir => {}
            Utf8Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(errno(libc::EINVAL));
                }
            }
            Utf8Component::Prefix(_) => return Err(errno(libc::EINVAL)),
        }
    }
    if !path.is_absolute() {
        return Err(errno(libc::EINVAL));
    }
    Ok(out)
}

impl Node {
    fn new_dir(mode: u32, owner: (u32, u32)) -> Node {
        Node::Dir {
            mode,
            owner,
            children: BTreeMap::new(),
        }
    }

    fn get(&self, parts: &[&str]) -> Option<&Node> {
        let mut n = self;
        for p in parts {
            match n {
                Node::Dir { children, .. } => n = children.get(*p)?,
                Node::File { .. } => return None,
            }
        }
        Some(n)
    }

    /// The children map of the directory at `parts`.
    fn dir_mut(&mut self, parts: &[&str]) -> io::Result<&mut BTreeMap<String, Node>> {
        let mut n = self;
        for p in parts {
            match n {
                Node::Dir { children, .. } => {
                    n = children.get_mut(*p).ok_or_else(|| errno(libc::ENOENT))?
                }
                Node::File { .. } => return Err(errno(libc::ENOTDIR)),
            }
        }
        match n {
            Node::Dir { children, .. } => Ok(children),
            Node::File { .. } => Err(errno(libc::ENOTDIR)),
        }
    }
}

impl MemFs {
    /// An empty tree holding only `/` (mode 0755, owned by root) and `/tmp`.
    pub fn new() -> Self {
        let mut root = Node::new_dir(0o755, (0, 0));
        if let Node::Dir { children, .. } = &mut root {
            children.insert("tmp".into(), Node::new_dir(0o1777, (0, 0)));
        }
        MemFs {
            state: Mutex::new(State {
                root,
                faults: Vec::new(),
                busy: HashSet::new(),
                temp_seq: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `times` calls of `op` (on `path`, or on any path when
    /// `None`) fail with `errno`.
    pub fn fail(&self, op: FsOp, path: Option<&Utf8Path>, errno: i32, times: usize) {
        self.lock().faults.push(Fault {
            op,
            path: path.map(Utf8Path::to_owned),
            errno,
            times,
        });
    }

    /// Marks `path` busy (a mount point in use) or not.
    pub fn set_busy(&self, path: &Utf8Path, busy: bool) {
        let mut s = self.lock();
        if busy {
            s.busy.insert(path.to_owned());
        } else {
            s.busy.remove(path);
        }
    }

    /// Mode and owner of a directory, `None` if it is not one.
    pub fn dir_meta(&self, path: &Utf8Path) -> Option<(u32, (u32, u32))> {
        let s = self.lock();
        match s.root.get(&components(path).ok()?)? {
            Node::Dir { mode, owner, .. } => Some((*mode, *owner)),
            Node::File { .. } => None,
        }
    }

    /// Every path in the tree, sorted, for whole-tree assertions.
    pub fn all_paths(&self) -> Vec<Utf8PathBuf> {
        fn walk(n: &Node, at: &Utf8Path, out: &mut Vec<Utf8PathBuf>) {
            if let Node::Dir { children, .. } = n {
                for (name, c) in children {
                    let p = at.join(name);
                    out.push(p.clone());
                    walk(c, &p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.lock().root, Utf8Path::new("/"), &mut out);
        out
    }

    /// The whole content of a file.
    pub fn read_bytes(&self, path: &Utf8Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::Read, path) {
            return Err(e);
        }
        match s.root.get(&components(path)?) {
            Some(Node::File { data }) => Ok(data.clone()),
            Some(Node::Dir { .. }) => Err(errno(libc::EISDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    fn split(path: &Utf8Path) -> io::Result<(Vec<&str>, &str)> {
        let mut parts = components(path)?;
        let name = parts.pop().ok_or_else(|| errno(libc::EBUSY))?;
        Ok((parts, name))
    }

    fn is_busy_under(s: &State, path: &Utf8Path) -> bool {
        s.busy.iter().any(|b| b.starts_with(path))
    }
}

impl Filesystem for MemFs {
    fn kind(&self, path: &Utf8Path) -> io::Result<Option<FileKind>> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::Kind, path) {
            return Err(e);
        }
        Ok(s.root.get(&components(path)?).map(|n| match n {
            Node::Dir { .. } => FileKind::Dir,
            Node::File { .. } => FileKind::File,
        }))
    }

    fn create_dir_all(
        &self,
        path: &Utf8Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::CreateDir, path) {
            return Err(e);
        }
        let parts = components(path)?;
        let mut n = &mut s.root;
        for p in parts {
            let Node::Dir { children, .. } = n else {
                return Err(errno(libc::ENOTDIR));
            };
            n = children
                .entry(p.to_owned())
                .or_insert_with(|| Node::new_dir(mode, owner.unwrap_or((0, 0))));
        }
        match n {
            Node::Dir { .. } => Ok(()),
            Node::File { .. } => Err(errno(libc::EEXIST)),
        }
    }

    fn read_to_string(&self, path: &Utf8Path) -> io::Result<String> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::Read, path) {
            return Err(e);
        }
        match s.root.get(&components(path)?) {
            Some(Node::File { data }) => String::from_utf8(data.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Some(Node::Dir { .. }) => Err(errno(libc::EISDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    fn write_new(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::Write, path) {
            return Err(e);
        }
        let (parent, name) = Self::split(path)?;
        let dir = s.root.dir_mut(&parent)?;
        if dir.contains_key(name) {
            return Err(errno(libc::EEXIST));
        }
        dir.insert(
            name.to_owned(),
            Node::File {
                data: data.to_vec(),
            },
        );
        Ok(())
    }

    fn write_replace(&self, path: &Utf8Path, data: &[u8]) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::Write, path) {
            return Err(e);
        }
        let (parent, name) = Self::split(path)?;
        let dir = s.root.dir_mut(&parent)?;
        if let Some(Node::Dir { .. }) = dir.get(name) {
            return Err(errno(libc::EISDIR));
        }
        dir.insert(
            name.to_owned(),
            Node::File {
                data: data.to_vec(),
            },
        );
        Ok(())
    }

    fn remove_file(&self, path: &Utf8Path) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::RemoveFile, path) {
            return Err(e);
        }
        let (parent, name) = Self::split(path)?;
        let dir = s.root.dir_mut(&parent)?;
        match dir.get(name) {
            Some(Node::File { .. }) => {
                dir.remove(name);
                Ok(())
            }
            Some(Node::Dir { .. }) => Err(errno(libc::EISDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    fn rename(&self, from: &Utf8Path, to: &Utf8Path) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::Rename, from) {
            return Err(e);
        }
        if s.busy.contains(from) || s.busy.contains(to) {
            return Err(errno(libc::EBUSY));
        }
        let (fp, fname) = Self::split(from)?;
        let (tp, tname) = Self::split(to)?;
        if s.root.get(&tp).is_none() {
            return Err(errno(libc::ENOENT));
        }
        let src_is_dir = match s.root.get(&fp).and_then(|d| d.get(&[fname])) {
            None => return Err(errno(libc::ENOENT)),
            Some(n) => matches!(n, Node::Dir { .. }),
        };
        if let Some(existing) = s.root.get(&tp).and_then(|d| d.get(&[tname])) {
            match (existing, src_is_dir) {
                (Node::Dir { children, .. }, true) if !children.is_empty() => {
                    return Err(errno(libc::ENOTEMPTY))
                }
                (Node::Dir { .. }, false) => return Err(errno(libc::EISDIR)),
                (Node::File { .. }, true) => return Err(errno(libc::ENOTDIR)),
                _ => {}
            }
        }
        let node = s
            .root
            .dir_mut(&fp)?
            .remove(fname)
            .ok_or_else(|| errno(libc::ENOENT))?;
        s.root.dir_mut(&tp)?.insert(tname.to_owned(), node);
        Ok(())
    }

    fn remove_all(&self, path: &Utf8Path) -> io::Result<()> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::RemoveAll, path) {
            return Err(e);
        }
        if Self::is_busy_under(&s, path) {
            return Err(errno(libc::EBUSY));
        }
        let (parent, name) = Self::split(path)?;
        match s.root.dir_mut(&parent) {
            Ok(dir) => {
                dir.remove(name);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn read_dir(&self, path: &Utf8Path) -> io::Result<Vec<DirEntry>> {
        let mut s = self.lock();
        if let Some(e) = take_fault(&mut s.faults, FsOp::ReadDir, path) {
            return Err(e);
        }
        match s.root.get(&components(path)?) {
            Some(Node::Dir { children, .. }) => Ok(children
                .iter()
                .map(|(name, n)| DirEntry {
                    name: name.clone(),
                    kind: match n {
                        Node::Dir { .. } => FileKind::Dir,
                        Node::File { .. } => FileKind::File,
                    },
                })
                .collect()),
            Some(Node::File { .. }) => Err(errno(libc::ENOTDIR)),
            None => Err(errno(libc::ENOENT)),
        }
    }

    fn make_temp_dir(&self, prefix: &str) -> io::Result<Utf8PathBuf> {
        let seq = {
            let mut s = self.lock();
            s.temp_seq += 1;
            s.temp_seq
        };
        let p = Utf8PathBuf::from(format!("/tmp/{prefix}{seq}"));
        self.create_dir_all(&p, 0o700, None)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> &Utf8Path {
        Utf8Path::new(s)
    }

    #[test]
    fn dirs_files_and_errors() {
        let fs = MemFs::new();
        fs.create_dir_all(p("/r/a/b"), 0o700, Some((5, 6))).unwrap();
        assert_eq!(fs.dir_meta(p("/r/a")), Some((0o700, (5, 6))));
        fs.write_new(p("/r/a/f"), b"x").unwrap();
        assert_eq!(
            fs.write_new(p("/r/a/f"), b"y").unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert_eq!(fs.read_to_string(p("/r/a/f")).unwrap(), "x");
        assert_eq!(fs.kind(p("/r/a/b")).unwrap(), Some(FileKind::Dir));
        assert_eq!(fs.kind(p("/r/nope")).unwrap(), None);
        fs.rename(p("/r/a"), p("/r/a-removing")).unwrap();
        assert_eq!(fs.kind(p("/r/a")).unwrap(), None);
        fs.remove_all(p("/r/a-removing")).unwrap();
        fs.remove_all(p("/r/a-removing")).unwrap();
        assert_eq!(
            fs.all_paths(),
            vec![p("/r").to_owned(), p("/tmp").to_owned()]
        );
    }

    #[test]
    fn faults_and_busy() {
        let fs = MemFs::new();
        fs.create_dir_all(p("/m/x"), 0o755, None).unwrap();
        fs.fail(FsOp::Write, None, libc::ENOSPC, 1);
        assert_eq!(
            fs.write_new(p("/m/f"), b"").unwrap_err().raw_os_error(),
            Some(libc::ENOSPC)
        );
        fs.write_new(p("/m/f"), b"").unwrap();
        fs.set_busy(p("/m/x"), true);
        assert_eq!(
            fs.remove_all(p("/m")).unwrap_err().raw_os_error(),
            Some(libc::EBUSY)
        );
        assert_eq!(
            fs.rename(p("/m/x"), p("/m/y")).unwrap_err().raw_os_error(),
            Some(libc::EBUSY)
        );
    }
}
