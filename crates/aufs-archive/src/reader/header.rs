//! One header block's own fields: the numeric fields read as Go's
//! `archive/tar` reads them (see [`crate::numeric`]), the checksum, and the
//! kind of entry its type flag makes. Extension headers are applied on top
//! of these elsewhere ([`super::pax`], [`super::framing`]).

use super::{Kind, Time};
use crate::error::{ArchiveError, Result};

/// The fields of an entry that its header block (and GNU long names) give,
/// before PAX records override them.
pub(super) struct Fields {
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Time,
    pub atime: Option<Time>,
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
}

impl Fields {
    /// Reads the fields of `header` (type `typeflag`, its size field `size`, already
    /// read); `long_name` and `long_link` are GNU long names that replace the
    /// header's own.
    pub(super) fn decode(
        header: &tar::Header,
        typeflag: u8,
        size: u64,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        raw_name: &[u8],
    ) -> Result<Self> {
        let name = long_name.unwrap_or_else(|| raw_name.to_vec());
        let link = long_link.unwrap_or_else(|| {
            header
                .link_name_bytes()
                .map(|c| c.into_owned())
                .unwrap_or_default()
        });
        let block = header.as_bytes();
        let mode = u32::try_from(unsigned_field(block, MODE, "mode", raw_name)?)
            .map_err(|_| ArchiveError::bad_entry(raw_name, "bad mode field: out of range"))?;
        let uid = unsigned_field(block, UID, "uid", raw_name)?;
        let gid = unsigned_field(block, GID, "gid", raw_name)?;
        let mtime = Time {
            secs: signed_field(block, MTIME, "mtime", raw_name)?,
            nsec: 0,
        };
        let (mut dev_major, mut dev_minor) = (0, 0);
        if matches!(typeflag, b'3' | b'4')
            && (header.as_ustar().is_some() || header.as_gnu().is_some())
        {
            let dev = |range, field| {
                u32::try_from(unsigned_field(block, range, field, raw_name)?).map_err(|_| {
                    ArchiveError::bad_entry(raw_name, format!("bad {field} field: out of range"))
                })
            };
            dev_major = dev(DEV_MAJOR, "devmajor")?;
            dev_minor = dev(DEV_MINOR, "devminor")?;
        }
        Ok(Self {
            name,
            link,
            mode,
            uid,
            gid,
            mtime,
            atime: None,
            size,
            dev_major,
            dev_minor,
        })
    }
}

/// What an entry of type `typeflag` named `name` creates (`sparse`: it has a
/// sparse map).
pub(super) fn kind(typeflag: u8, name: &[u8], sparse: bool) -> Result<Kind> {
    Ok(match typeflag {
        b'0' | b'\0' | b'7' | b'S' => {
            if matches!(typeflag, b'0' | b'\0') && name.ends_with(b"/") && !sparse {
                Kind::Dir
            } else {
                Kind::File
            }
        }
        b'1' => Kind::HardLink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' | b'D' => Kind::Dir,
        b'6' => Kind::Fifo,
        other => {
            return Err(ArchiveError::bad_entry(
                name,
                format!("unhandled tar header type {:?}", other as char),
            ))
        }
    })
}

pub(super) fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Byte ranges of the numeric fields of a header block.
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
pub(super) const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const DEV_MAJOR: std::ops::Range<usize> = 329..337;
const DEV_MINOR: std::ops::Range<usize> = 337..345;

/// A numeric header field as Go reads it (see [`crate::numeric`]).
fn signed_field(
    block: &[u8],
    range: std::ops::Range<usize>,
    field: &str,
    name: &[u8],
) -> Result<i64> {
    crate::numeric::parse(&block[range.clone()]).ok_or_else(|| {
        ArchiveError::bad_entry(
            name,
            format!(
                "bad {field} field: {:?} is not a number",
                String::from_utf8_lossy(&block[range])
            ),
        )
    })
}

/// A numeric header field that may not be negative.
pub(super) fn unsigned_field(
    block: &[u8],
    range: std::ops::Range<usize>,
    field: &str,
    name: &[u8],
) -> Result<u64> {
    u64::try_from(signed_field(block, range, field, name)?)
        .map_err(|_| ArchiveError::bad_entry(name, format!("bad {field} field: negative")))
}

/// Verifies a header checksum (unsigned sum, or the signed sum some old tars wrote).
pub(super) fn check_checksum(block: &[u8; 512], name: &[u8]) -> Result<()> {
    let field = &block[148..156];
    let text: Vec<u8> = field
        .iter()
        .copied()
        .filter(|&b| b != 0 && b != b' ')
        .collect();
    let stored = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 8).ok())
        .ok_or_else(|| ArchiveError::bad_entry(name, "unreadable header checksum"))?;
    let mut unsigned: u32 = 0;
    let mut signed: i32 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    if stored == unsigned || i64::from(stored) == i64::from(signed) {
        Ok(())
    } else {
        Err(ArchiveError::bad_entry(
            name,
            format!("header checksum mismatch (stored {stored:o}, computed {unsigned:o})"),
        ))
    }
}
