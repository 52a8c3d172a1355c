//! Test helpers: temp dirs, a "dumpfile" rendering of trees, tar building.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (returns true) with a printed reason when not root.
pub fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: skipped: needs root (chown, devices, trusted xattrs)");
        return true;
    }
    false
}

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, p: &str) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.dir.path().join(p)).unwrap()
    }
    pub fn mkdir(&self, p: &str) -> Utf8PathBuf {
        let d = self.path(p);
        fs::create_dir_all(&d).unwrap();
        d
    }
}

fn xattrs(p: &Path) -> Vec<String> {
    let mut names = vec![0u8; 65536];
    let Ok(n) = rustix::fs::llistxattr(p, &mut names[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for k in names[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        if k.starts_with(b"security.selinux") || k.starts_with(b"system.") {
            continue;
        }
        let mut v = vec![0u8; 65536];
        if let Ok(l) = rustix::fs::lgetxattr(p, k, &mut v[..]) {
            out.push(format!("{}={}", String::from_utf8_lossy(k), hex(&v[..l])));
        }
    }
    out.sort();
    out
}

/// The access and modification times of `md`, for `utimensat`.
pub fn times_of(md: &fs::Metadata) -> rustix::fs::Timestamps {
    rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// One line an entry: path type mode owner size digest link mtime xattrs, and
/// a hardlink-group id so identical link structure compares equal.
pub fn dump(root: &Utf8Path) -> String {
    let mut lines = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    walk(
        root.as_std_path(),
        root.as_std_path(),
        &mut lines,
        &mut inodes,
    );
    lines.into_values().collect::<Vec<_>>().join("\n")
}

fn walk(
    root: &Path,
    dir: &Path,
    lines: &mut BTreeMap<Vec<u8>, String>,
    inodes: &mut BTreeMap<u64, String>,
) {
    let mut ents: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ents.sort();
    for p in ents {
        let md = fs::symlink_metadata(&p).unwrap();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let name = String::from_utf8_lossy(&rel).into_owned() + &format!("[{}]", hex(&rel));
        let ft = md.file_type();
        let (kind, extra) = if ft.is_dir() {
            ("d", String::new())
        } else if ft.is_symlink() {
            (
                "l",
                format!(
                    "-> {}",
                    hex(fs::read_link(&p).unwrap().as_os_str().as_bytes())
                ),
            )
        } else if ft.is_file() {
            let mut data = Vec::new();
            fs::File::open(&p).unwrap().read_to_end(&mut data).unwrap();
            ("f", format!("size={} sha={}", md.len(), &sha(&data)[..16]))
        } else {
            ("s", format!("rdev={:x}", md.rdev()))
        };
        let link = if !ft.is_dir() && md.nlink() > 1 {
            let first = inodes
                .entry(md.ino())
                .or_insert_with(|| name.clone())
                .clone();
            format!(" link={first}")
        } else {
            String::new()
        };
        let mtime = format!(" mtime={}", md.mtime());
        lines.insert(
            rel.clone(),
            format!(
                "{name} {kind} {:o} {}:{} {extra}{link}{mtime} {}",
                md.permissions().mode() & 0o7777,
                md.uid(),
                md.gid(),
                xattrs(&p).join(",")
            ),
        );
        if ft.is_dir() {
            walk(root, &p, lines, inodes);
        }
    }
}

/// Snapshot of a whole tree (including dir mtimes), to prove nothing changed.
pub fn snapshot(root: &Utf8Path) -> String {
    let mut s = dump(root);
    for e in walkdir(root.as_std_path()) {
        let md = fs::symlink_metadata(&e).unwrap();
        if md.is_dir() {
            s.push_str(&format!(
                "\n{} dirmtime={}.{}",
                e.display(),
                md.mtime(),
                md.mtime_nsec()
            ));
        }
    }
    s
}

fn walkdir(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd {
            let e = e.unwrap().path();
            if fs::symlink_metadata(&e).unwrap().is_dir() {
                out.extend(walkdir(&e));
            }
        }
    }
    out
}

/// Builds a tar in memory, header by header, to make exactly the bytes a test wants.
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    pub fn header(kind: u8, name: &[u8], size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            let n = name.len().min(100);
            old.name[..n].copy_from_slice(&name[..n]);
        }
        h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h
    }

    pub fn raw(&mut self, h: &tar::Header, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let h = Self::header(b'0', name.as_bytes(), data.len() as u64);
        self.raw(&h, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        let h = Self::header(b'5', name.as_bytes(), 0);
        self.raw(&h, &[])
    }

    pub fn link(&mut self, kind: u8, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, name.as_bytes(), 0);
        h.set_link_name_literal(target.as_bytes()).unwrap();
        h.set_cksum();
        self.raw(&h, &[])
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 2;
            let mut len = body_len + 2;
            while format!("{len} ").len() + body_len != len {
                len = format!("{len} ").len() + body_len;
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let h = Self::header(b'x', b"PaxHeader", data.len() as u64);
        self.raw(&h, &data)
    }

    pub fn end(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes.clone()
    }
}

pub fn write_file(p: &Utf8Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, data).unwrap();
}

pub fn run(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Options for tests: no syncfs, and owners set only when root can set them.
pub fn base_opts() -> aufs_archive::ApplyOptions {
    aufs_archive::ApplyOptions {
        sync: false,
        chown: is_root(),
        ..aufs_archive::ApplyOptions::default()
    }
}

/// `data` gzip-compressed (what the level is does not matter to the tests).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, data).unwrap();
    gz.finish().unwrap()
}
