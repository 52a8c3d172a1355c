//! PAX extended headers: the `LEN KEY=VALUE\n` records, the keys that
//! override a header's fields (path, linkpath, size, ids, times), the
//! `SCHILY.xattr.*` keys, and GNU's sparse keys (formats 0.0, 0.1 and 1.0).

use super::header::Fields;
use super::{Sparse, Time, MAX_SPARSE_ENTRIES};
use crate::error::{lossy, ArchiveError, Result};

/// Folds the PAX records of an entry into its header `fields` and `xattrs`;
/// returns the GNU sparse keys, to be resolved once all are known.
pub(super) fn apply_records(
    records: Vec<(Vec<u8>, Vec<u8>)>,
    fields: &mut Fields,
    xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>,
    raw_name: &[u8],
) -> Result<PaxSparse> {
    let mut pax_sparse = PaxSparse::default();
    for (key, value) in records {
        let num = |v: &[u8]| -> Result<u64> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ArchiveError::bad_entry(raw_name, format!("bad PAX value for {}", lossy(&key)))
                })
        };
        match key.as_slice() {
            b"path" => fields.name = value,
            b"linkpath" => fields.link = value,
            b"size" => fields.size = num(&value)?,
            b"uid" => fields.uid = num(&value)?,
            b"gid" => fields.gid = num(&value)?,
            b"mtime" => fields.mtime = parse_pax_time(&value, raw_name)?,
            b"atime" => fields.atime = Some(parse_pax_time(&value, raw_name)?),
            b"GNU.sparse.major" => pax_sparse.major = Some(value),
            b"GNU.sparse.minor" => pax_sparse.minor = Some(value),
            b"GNU.sparse.name" => pax_sparse.name = Some(value),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                pax_sparse.real_size = Some(num(&value)?)
            }
            b"GNU.sparse.map" => pax_sparse.map01 = Some(value),
            b"GNU.sparse.numblocks" => pax_sparse.num_blocks = Some(num(&value)?),
            b"GNU.sparse.offset" => pax_sparse.pending_offset = Some(num(&value)?),
            b"GNU.sparse.numbytes" => {
                let len = num(&value)?;
                let off = pax_sparse.pending_offset.take().ok_or_else(|| {
                    ArchiveError::bad_entry(
                        raw_name,
                        "GNU.sparse.numbytes without GNU.sparse.offset",
                    )
                })?;
                if pax_sparse.map00.len() >= MAX_SPARSE_ENTRIES {
                    return Err(ArchiveError::bad_entry(
                        raw_name,
                        "sparse map has too many entries",
                    ));
                }
                pax_sparse.map00.push((off, len));
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), value));
            }
            _ => {}
        }
    }
    Ok(pax_sparse)
}

#[derive(Default)]
pub(super) struct PaxSparse {
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
    pub(super) name: Option<Vec<u8>>,
    real_size: Option<u64>,
    map01: Option<Vec<u8>>,
    map00: Vec<(u64, u64)>,
    pending_offset: Option<u64>,
    num_blocks: Option<u64>,
}

impl PaxSparse {
    pub(super) fn resolve(&self, entry: &[u8]) -> Result<Option<Sparse>> {
        let is_v1 = self.major.as_deref() == Some(b"1") && self.minor.as_deref() == Some(b"0");
        if is_v1 {
            let real_size = self.real_size.ok_or_else(|| {
                ArchiveError::bad_entry(entry, "PAX sparse 1.0 entry without GNU.sparse.realsize")
            })?;
            return Ok(Some(Sparse::InData { real_size }));
        }
        if self.major.is_some() {
            return Err(ArchiveError::bad_entry(
                entry,
                "unsupported GNU sparse format version",
            ));
        }
        let map = if let Some(m) = &self.map01 {
            if m.is_empty() && self.major.is_none() {
                return Ok(None); // Go: no version and no map is no sparse file
            }
            parse_map01(m, entry)?
        } else if !self.map00.is_empty() {
            self.map00.clone()
        } else {
            return Ok(None);
        };
        // As Go's archive/tar: the 0.x formats state their number of
        // regions, and a map that disagrees (or no number) is malformed.
        if self.num_blocks != Some(map.len() as u64) {
            return Err(ArchiveError::bad_entry(
                entry,
                format!(
                    "GNU.sparse.numblocks {} does not match the {} regions of the sparse map",
                    self.num_blocks
                        .map_or_else(|| "missing".to_owned(), |n| n.to_string()),
                    map.len()
                ),
            ));
        }
        let real_size = self.real_size.ok_or_else(|| {
            ArchiveError::bad_entry(entry, "PAX sparse entry without GNU.sparse.size")
        })?;
        Ok(Some(Sparse::Map { map, real_size }))
    }
}

fn parse_map01(m: &[u8], entry: &[u8]) -> Result<Vec<(u64, u64)>> {
    if m.is_empty() {
        return Ok(Vec::new());
    }
    let nums: Vec<u64> = m
        .split(|&b| b == b',')
        .map(|s| std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| ArchiveError::bad_entry(entry, "bad GNU.sparse.map"))?;
    if nums.len() % 2 != 0 || nums.len() / 2 > MAX_SPARSE_ENTRIES {
        return Err(ArchiveError::bad_entry(entry, "bad GNU.sparse.map length"));
    }
    Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// Parses PAX records `"LEN KEY=VALUE\n"`.
pub(super) fn parse_pax(data: &[u8], entry: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| ArchiveError::bad_entry(entry, "malformed PAX record"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > sp + 1 && l <= rest.len())
            .ok_or_else(|| ArchiveError::bad_entry(entry, "malformed PAX record length"))?;
        let record = &rest[sp + 1..len];
        if record.last() != Some(&b'\n') {
            return Err(ArchiveError::bad_entry(
                entry,
                "PAX record not terminated by a newline",
            ));
        }
        let record = &record[..record.len() - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| ArchiveError::bad_entry(entry, "PAX record without '='"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Parses a PAX time `SECS[.FRACTION]` (SECS may be negative).
fn parse_pax_time(v: &[u8], entry: &[u8]) -> Result<Time> {
    let bad = || ArchiveError::bad_entry(entry, format!("bad PAX time {:?}", lossy(v)));
    let s = std::str::from_utf8(v).map_err(|_| bad())?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let neg = int.starts_with('-');
    let secs: i64 = int.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: u32 = digits.parse().map_err(|_| bad())?;
    if neg && nsec > 0 {
        Ok(Time {
            secs: secs - 1,
            nsec: 1_000_000_000 - nsec,
        })
    } else {
        Ok(Time { secs, nsec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_parse() {
        let data = b"30 mtime=1350244992.023960108\n20 path=hello/world\n";
        let r = parse_pax(data, b"x").unwrap();
        assert_eq!(r[0].0, b"mtime");
        assert_eq!(r[1].1, b"hello/world");
        assert!(parse_pax(b"99 path=x\n", b"x").is_err());
        assert!(parse_pax(b"9 path=x\t", b"x").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"12.5", b"").unwrap(),
            Time {
                secs: 12,
                nsec: 500_000_000
            }
        );
        assert_eq!(
            parse_pax_time(b"-1.25", b"").unwrap(),
            Time {
                secs: -2,
                nsec: 750_000_000
            }
        );
        assert!(parse_pax_time(b"1.x", b"").is_err());
    }
}
