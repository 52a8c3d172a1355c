//! Numeric header fields read as Go's `archive/tar` reads them, the reader
//! behind Docker's own layers: base-256 when the first byte has its high bit
//! set, else octal with leading and trailing NULs and spaces trimmed, and a
//! field left empty (all NULs or all spaces, as some writers leave uid, gid or
//! mtime) is 0. The `tar` crate refuses such empty fields; anything else that
//! is not a number is refused here too.

/// The value of a numeric field, or `None` when it is not a number.
pub(crate) fn parse(field: &[u8]) -> Option<i64> {
    match field.first() {
        Some(b) if b & 0x80 != 0 => base256(field),
        _ => octal(field),
    }
}

/// Two's complement big-endian, sign in bit 6 of the first byte (Go's
/// `parseNumeric`); `None` past 63 bits.
fn base256(field: &[u8]) -> Option<i64> {
    let inv = if field[0] & 0x40 != 0 { 0xff } else { 0x00 };
    let mut x: u64 = 0;
    for (i, &c) in field.iter().enumerate() {
        let mut c = c ^ inv;
        if i == 0 {
            c &= 0x7f;
        }
        if x >> 56 != 0 {
            return None;
        }
        x = (x << 8) | u64::from(c);
    }
    let x = i64::try_from(x).ok()?;
    Some(if inv == 0xff { !x } else { x })
}

fn octal(field: &[u8]) -> Option<i64> {
    let pad = |b: &u8| *b == 0 || *b == b' ';
    let start = field.iter().position(|b| !pad(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !pad(b)).map_or(start, |i| i + 1);
    let trimmed = &field[start..end];
    // What follows an inner NUL is ignored, as Go's parseString does.
    let digits = match trimmed.iter().position(|&b| b == 0) {
        Some(i) => &trimmed[..i],
        None => trimmed,
    };
    if digits.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(digits).ok()?;
    if !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    i64::try_from(u64::from_str_radix(s, 8).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn empty_fields_are_zero_as_in_go() {
        assert_eq!(parse(&[0u8; 8]), Some(0));
        assert_eq!(parse(b"        "), Some(0));
        assert_eq!(parse(b" \0 \0 \0 \0"), Some(0));
        assert_eq!(parse(b""), Some(0));
    }

    #[test]
    fn octal_with_any_padding() {
        assert_eq!(parse(b"0000644\0"), Some(0o644));
        assert_eq!(parse(b"   644 \0"), Some(0o644));
        assert_eq!(parse(b"\0\0 0755 "), Some(0o755));
        assert_eq!(parse(b"00001750\0junk"), Some(0o1750));
        assert_eq!(parse(b"14164067135\0"), Some(0o14164067135));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse(b"12x4\0\0\0\0"), None);
        assert_eq!(parse(b"0008\0"), None);
        assert_eq!(parse(b" 1 2 \0"), None);
        assert_eq!(parse(b"-1\0"), None);
        assert_eq!(parse(b"+7\0"), None);
    }

    #[test]
    fn base256_both_signs() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[8..].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert_eq!(parse(&f), Some(0x1234_5678));
        // -1 in 12 bytes: all ones.
        assert_eq!(parse(&[0xff; 12]), Some(-1));
        // More than 63 bits.
        let mut big = [0xffu8; 12];
        big[0] = 0x80;
        assert_eq!(parse(&big), None);
    }
}
