//! Lexical rules for entry names, applied before anything touches the
//! filesystem: Docker's path cleaning and breakout check, and the whiteout
//! and overlay names an entry may not use as they are.

use aufs_model::whiteout::WHITEOUT_PREFIX;

/// `.wh..` and `.wh...`: whiteouts naming no entry but the directory itself
/// or its parent.
pub(crate) fn is_dot_whiteout(name: &[u8]) -> bool {
    name.strip_prefix(WHITEOUT_PREFIX.as_bytes())
        .is_some_and(|target| target == b"." || target == b"..")
}

/// Docker's `filepath.Clean` + breakout check: the path relative to the root,
/// or `None` when it climbs out of it.
pub(crate) fn clean_path(name: &[u8]) -> Option<Vec<u8>> {
    let abs = name.starts_with(b"/");
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() && !abs {
                    return None;
                }
            }
            c => parts.push(c),
        }
    }
    Some(parts.join(&b'/'))
}

pub(super) fn split_last(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&[], p),
    }
}
