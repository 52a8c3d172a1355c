//! `/proc/self/mountinfo`: the parser, and the [`MountInfoSource`] seam that
//! lets tests feed it fixture text instead of the live table.
//!
//! Line format (proc(5)):
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
//! — mount id, parent id, `major:minor`, root, mount point, mount options,
//! zero or more optional fields, a lone `-`, filesystem type, source, super
//! options. The kernel escapes space, tab, newline and backslash in paths as
//! three-digit octal (`\040`, `\011`, `\012`, `\134`).

use crate::error::LinuxError;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

/// One mount of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount.
    pub mount_id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// Device major number of the filesystem.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// The directory of the filesystem that forms the root of this mount.
    pub root: PathBuf,
    /// Where it is mounted, unescaped.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub mount_options: String,
    /// Optional fields (`shared:1`, `master:2`, ...).
    pub optional_fields: Vec<String>,
    /// Filesystem type (`ext4`, `fuse.foo`, ...).
    pub fs_type: String,
    /// Filesystem-specific source (`/dev/sda1`, `none`, ...), unescaped.
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

/// Where the mount table comes from.
pub trait MountInfoSource: Send + Sync + std::fmt::Debug {
    /// The raw bytes of a mountinfo file.
    fn read_mountinfo(&self) -> io::Result<Vec<u8>>;

    /// The parsed table, in file order (parents before children).
    fn mounts(&self) -> io::Result<Vec<MountInfo>> {
        Ok(parse_mountinfo(&self.read_mountinfo()?)?)
    }
}

/// The live table of this process, `/proc/self/mountinfo`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSelfMountInfo;

impl MountInfoSource for ProcSelfMountInfo {
    fn read_mountinfo(&self) -> io::Result<Vec<u8>> {
        std::fs::read("/proc/self/mountinfo")
    }
}

/// A fixed table, for tests and embedders that already hold the text.
#[derive(Debug, Clone, Default)]
pub struct FixedMountInfo(pub Vec<u8>);

impl MountInfoSource for FixedMountInfo {
    fn read_mountinfo(&self) -> io::Result<Vec<u8>> {
        Ok(self.0.clone())
    }
}

/// Parses a whole mountinfo file. Blank lines are skipped; any other line
/// that does not have the documented shape is an error naming it.
pub fn parse_mountinfo(text: &[u8]) -> Result<Vec<MountInfo>, LinuxError> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| parse_line(line).map_err(|reason| bad_line(i + 1, line, reason)))
        .collect()
}

fn bad_line(line: usize, text: &[u8], reason: &'static str) -> LinuxError {
    LinuxError::MountInfo {
        line,
        reason,
        text: String::from_utf8_lossy(text).into_owned(),
    }
}

fn parse_line(line: &[u8]) -> Result<MountInfo, &'static str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = line.split(|&b| b == b' ');
    let mut next = |what: &'static str| fields.next().ok_or(what);

    let mount_id = parse_u32(next("missing mount id")?).ok_or("bad mount id")?;
    let parent_id = parse_u32(next("missing parent id")?).ok_or("bad parent id")?;
    let (major, minor) = parse_dev(next("missing major:minor")?).ok_or("bad major:minor")?;
    let root = unescape_path(next("missing root")?);
    let mount_point = unescape_path(next("missing mount point")?);
    let mount_options = text(next("missing mount options")?);

    let mut optional_fields = Vec::new();
    loop {
        match next("missing `-` separator")? {
            b"-" => break,
            b"" => return Err("empty optional field"),
            field => optional_fields.push(text(field)),
        }
    }
    let fs_type = unescape_text(next("missing filesystem type")?);
    if fs_type.is_empty() {
        return Err("empty filesystem type");
    }
    let source = fields.next().map(unescape_text).unwrap_or_default();
    let super_options = fields.next().map(text).unwrap_or_default();
    if fields.next().is_some() {
        return Err("extra fields after super options");
    }
    Ok(MountInfo {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        optional_fields,
        fs_type,
        source,
        super_options,
    })
}

fn parse_u32(field: &[u8]) -> Option<u32> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn parse_dev(field: &[u8]) -> Option<(u32, u32)> {
    let colon = field.iter().position(|&b| b == b':')?;
    Some((parse_u32(&field[..colon])?, parse_u32(&field[colon + 1..])?))
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

fn unescape_text(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

fn unescape_path(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

/// Decodes the kernel's `\ooo` escapes. A backslash not followed by three
/// octal digits (a value that fits a byte) is kept as it is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            if let Some(byte) = octal_byte(field.get(i + 1..i + 4)) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

fn octal_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digits = digits?;
    if digits.len() != 3 || !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
    u8::try_from(value).ok()
}

/// `path` with `.` components and trailing slashes dropped, and `..` applied
/// lexically — the shape the kernel prints mount points in.
pub fn lexical_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The mounts whose mount point is `root` or below it, deepest first; among
/// equally deep ones the most recent mount comes first, so a mount point
/// with stacked mounts appears once per mount, top one first.
pub fn mounts_at_or_below(mounts: &[MountInfo], root: &Path) -> Vec<MountInfo> {
    let mut found: Vec<MountInfo> = mounts
        .iter()
        .rev()
        .filter(|m| m.mount_point.starts_with(root))
        .cloned()
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
30 25 0:26 / /var/lib/aufs/mnt/a\\040b rw,relatime - tmpfs tmp\\040fs rw,size=1024k
31 30 0:27 / /var/lib/aufs/mnt/a\\040b/deep\\011tab\\012nl\\134bs rw shared:5 master:7 - overlay overlay rw,lowerdir=/l
32 25 0:28 /sub /var/lib/aufs/mnt/c rw - fuse.my\\040fs dev rw
33 25 0:29 / /var/lib/aufs/mnt/c rw - tmpfs none rw
34 25 0:30 / /var/lib/aufsx rw - tmpfs none rw
";

    fn fixture() -> Vec<MountInfo> {
        FixedMountInfo(FIXTURE.as_bytes().to_vec())
            .mounts()
            .unwrap()
    }

    #[test]
    fn parses_every_field() {
        let m = fixture();
        assert_eq!(m.len(), 7);
        let proc = &m[0];
        assert_eq!((proc.mount_id, proc.parent_id), (22, 1));
        assert_eq!((proc.major, proc.minor), (0, 21));
        assert_eq!(proc.root, PathBuf::from("/"));
        assert_eq!(proc.mount_point, PathBuf::from("/proc"));
        assert_eq!(proc.mount_options, "rw,nosuid,nodev,noexec,relatime");
        assert_eq!(proc.optional_fields, vec!["shared:12"]);
        assert_eq!(proc.fs_type, "proc");
        assert_eq!(proc.source, "proc");
        assert_eq!(proc.super_options, "rw");
    }

    #[test]
    fn decodes_octal_escapes_in_paths_source_and_type() {
        let m = fixture();
        assert_eq!(m[2].mount_point, PathBuf::from("/var/lib/aufs/mnt/a b"));
        assert_eq!(m[2].source, "tmp fs");
        assert!(m[2].optional_fields.is_empty());
        assert_eq!(
            m[3].mount_point,
            PathBuf::from("/var/lib/aufs/mnt/a b/deep\ttab\nnl\\bs")
        );
        assert_eq!(m[3].optional_fields, vec!["shared:5", "master:7"]);
        assert_eq!(m[3].super_options, "rw,lowerdir=/l");
        assert_eq!(m[4].fs_type, "fuse.my fs");
        assert_eq!(m[4].root, PathBuf::from("/sub"));
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape(b"a\\040b"), b"a b");
        assert_eq!(unescape(b"\\134040"), b"\\040");
        assert_eq!(unescape(b"end\\"), b"end\\");
        assert_eq!(unescape(b"\\08x"), b"\\08x");
        assert_eq!(unescape(b"\\04"), b"\\04");
        assert_eq!(unescape(b"\\777"), b"\\777");
        assert_eq!(unescape(b"\\377"), [0xff]);
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        for (bad, reason) in [
            ("x 1 0:1 / /a rw - tmpfs none rw", "bad mount id"),
            ("1 1 01 / /a rw - tmpfs none rw", "bad major:minor"),
            (
                "1 1 0:1 / /a rw shared:1 tmpfs none rw",
                "missing `-` separator",
            ),
            ("1 1 0:1 / /a", "missing mount options"),
            ("1 1 0:1 / /a rw -", "missing filesystem type"),
            (
                "1 1 0:1 / /a rw - tmpfs none rw extra",
                "extra fields after super options",
            ),
        ] {
            let text = format!("25 1 8:1 / / rw - ext4 /dev/sda1 rw\n\n{bad}\n");
            match parse_mountinfo(text.as_bytes()) {
                Err(LinuxError::MountInfo {
                    line, reason: r, ..
                }) => {
                    assert_eq!((line, r), (3, reason), "{bad}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_source_and_super_options_are_empty() {
        let m = parse_mountinfo(b"1 0 0:1 / / rw - rootfs\n").unwrap();
        assert_eq!(m[0].fs_type, "rootfs");
        assert_eq!(m[0].source, "");
        assert_eq!(m[0].super_options, "");
    }

    #[test]
    fn below_is_by_component_deepest_and_newest_first() {
        let m = fixture();
        let points: Vec<_> = mounts_at_or_below(&m, Path::new("/var/lib/aufs/mnt"))
            .into_iter()
            .map(|m| (m.mount_id, m.mount_point))
            .collect();
        assert_eq!(
            points,
            vec![
                (31, PathBuf::from("/var/lib/aufs/mnt/a b/deep\ttab\nnl\\bs")),
                (33, PathBuf::from("/var/lib/aufs/mnt/c")),
                (32, PathBuf::from("/var/lib/aufs/mnt/c")),
                (30, PathBuf::from("/var/lib/aufs/mnt/a b")),
            ]
        );
        let at = mounts_at_or_below(&m, Path::new("/var/lib/aufs/mnt/c"));
        assert_eq!(at.len(), 2);
        assert!(mounts_at_or_below(&m, Path::new("/var/lib/aufs/mn")).is_empty());
    }

    #[test]
    fn lexical_clean_matches_kernel_shape() {
        assert_eq!(lexical_clean(Path::new("/a/./b/")), PathBuf::from("/a/b"));
        assert_eq!(lexical_clean(Path::new("/a/b/../c")), PathBuf::from("/a/c"));
        assert_eq!(lexical_clean(Path::new("/..")), PathBuf::from("/"));
        assert_eq!(lexical_clean(Path::new("/")), PathBuf::from("/"));
    }
}
