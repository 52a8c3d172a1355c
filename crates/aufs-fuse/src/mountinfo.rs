//! Reading `/proc/self/mountinfo`: which FUSE mounts exist and where.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One mount, as far as we need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    pub(crate) fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsString::from_vec(out)
}

pub(crate) fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let fstype = fields.get(sep + 1)?.to_string();
            let source = fields
                .get(sep + 2)
                .map(|s| s.to_string())
                .unwrap_or_default();
            Some(MountEntry {
                mount_point,
                fstype,
                source,
            })
        })
        .collect()
}

pub(crate) fn read() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fuse_and_escapes() {
        let text =
            "36 35 98:0 / /mnt/a\\040b rw,relatime shared:1 - fuse aufs-union rw,user_id=0\n\
                    37 35 98:0 / /var rw master:2 - ext4 /dev/sda1 rw\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert!(m[0].is_fuse());
        assert_eq!(m[0].source, "aufs-union");
        assert!(!m[1].is_fuse());
    }
}
