//! Sparse file maps: validation and the PAX 1.0 in-data map.

use std::io::BufRead;

use crate::error::{ArchiveError, Result};
use crate::reader::{TarReader, BLOCK, MAX_SPARSE_ENTRIES};

/// Checks that `map` is ascending, non-overlapping, inside `real_size`, and that
/// its lengths add up to `data_len` (the bytes stored in the archive).
pub(crate) fn validate(
    map: &[(u64, u64)],
    real_size: u64,
    data_len: u64,
    entry: &[u8],
) -> Result<()> {
    let bad = |why: &str| ArchiveError::bad_entry(entry, format!("invalid sparse map: {why}"));
    let mut end = 0u64;
    let mut sum = 0u64;
    for &(off, len) in map {
        if off < end {
            return Err(bad("regions overlap or are out of order"));
        }
        end = off
            .checked_add(len)
            .ok_or_else(|| bad("region overflows"))?;
        if end > real_size {
            return Err(bad("region beyond the file size"));
        }
        sum = sum.checked_add(len).ok_or_else(|| bad("sizes overflow"))?;
    }
    if sum != data_len {
        return Err(bad("regions do not add up to the stored data"));
    }
    Ok(())
}

/// Reads the PAX 1.0 sparse map at the start of an entry's content: decimal
/// numbers, one a line (count, then offset/length pairs), padded to a block.
/// Returns the map and the number of content bytes it took.
pub(crate) fn read_data_map<R: BufRead>(
    rd: &mut TarReader<'_, R>,
    entry: &[u8],
) -> Result<(Vec<(u64, u64)>, u64)> {
    let bad =
        |why: &str| ArchiveError::bad_entry(entry, format!("invalid PAX 1.0 sparse map: {why}"));
    let mut block = [0u8; BLOCK as usize];
    let mut used = 0u64;
    let mut pos = block.len();
    let mut next_number =
        |rd: &mut TarReader<'_, R>, used: &mut u64, pos: &mut usize| -> Result<u64> {
            let mut v: u64 = 0;
            let mut digits = 0;
            loop {
                if *pos == block.len() {
                    if rd.remaining() < BLOCK {
                        return Err(bad("truncated"));
                    }
                    rd.read_content_exact(&mut block)?;
                    *used += BLOCK;
                    *pos = 0;
                }
                let b = block[*pos];
                *pos += 1;
                match b {
                    b'0'..=b'9' if digits < 20 => {
                        v = v
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(u64::from(b - b'0')))
                            .ok_or_else(|| bad("number overflows"))?;
                        digits += 1;
                    }
                    b'\n' if digits > 0 => return Ok(v),
                    _ => return Err(bad("unexpected byte")),
                }
            }
        };
    let count = next_number(rd, &mut used, &mut pos)?;
    if count > MAX_SPARSE_ENTRIES as u64 {
        return Err(bad("too many entries"));
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let off = next_number(rd, &mut used, &mut pos)?;
        let len = next_number(rd, &mut used, &mut pos)?;
        map.push((off, len));
    }
    Ok((map, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_maps() {
        assert!(validate(&[(0, 10), (20, 5)], 30, 15, b"f").is_ok());
        assert!(validate(&[(0, 10), (5, 5)], 30, 15, b"f").is_err());
        assert!(validate(&[(0, 10), (25, 10)], 30, 20, b"f").is_err());
        assert!(validate(&[(0, 10)], 30, 11, b"f").is_err());
        assert!(validate(&[(u64::MAX, 2)], u64::MAX, 2, b"f").is_err());
    }
}
