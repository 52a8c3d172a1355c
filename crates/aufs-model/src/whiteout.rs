//! aufs whiteout and metadata names, as `pkg/archive/whiteouts.go` and the
//! aufs documentation define them.
//!
//! - `.wh.NAME` in a branch hides `NAME` in every lower branch.
//! - `.wh..wh..opq` in a directory hides everything below it in lower branches.
//! - `.wh..wh.*` names are aufs metadata (`.wh..wh.plnk` holds pseudo-links,
//!   `.wh..wh.aufs` is the xino/whiteout base); they never appear in a union.

/// Prefix of every whiteout name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of aufs metadata names.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// Directory where aufs keeps pseudo-links (hardlinks across branches).
pub const WHITEOUT_LINK_DIR: &str = ".wh..wh.plnk";
/// Marker making its directory opaque.
pub const WHITEOUT_OPAQUE_DIR: &str = ".wh..wh..opq";
/// aufs's own base file in a branch root.
pub const WHITEOUT_AUFS: &str = ".wh..wh.aufs";

/// The xattr namespaces overlayfs reads instructions from (redirects,
/// metacopy, opaque dirs): never part of a layer's content.
pub const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// Whether xattr `name` is one of overlayfs's own.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    OVERLAY_XATTR_PREFIXES
        .iter()
        .any(|p| name.starts_with(p.as_bytes()))
}

/// What a directory entry name means to aufs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind<'a> {
    /// An ordinary name, visible in the union.
    Plain,
    /// `.wh.NAME`: hides `NAME` (the payload) in lower branches.
    Whiteout(&'a str),
    /// `.wh..wh..opq`: the directory is opaque.
    Opaque,
    /// Another `.wh..wh.*` name: aufs metadata, never visible.
    Meta,
}

/// Classifies a single path component.
pub fn classify(name: &str) -> NameKind<'_> {
    if name == WHITEOUT_OPAQUE_DIR {
        NameKind::Opaque
    } else if name.starts_with(WHITEOUT_META_PREFIX) {
        NameKind::Meta
    } else if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        if target.is_empty() {
            // A bare `.wh.` hides nothing: aufs treats it as metadata.
            NameKind::Meta
        } else {
            NameKind::Whiteout(target)
        }
    } else {
        NameKind::Plain
    }
}

/// Same as [`classify`] on raw bytes (names need not be UTF-8).
pub fn classify_bytes(name: &[u8]) -> NameKind<'_> {
    match std::str::from_utf8(name) {
        Ok(s) => classify(s),
        Err(_) => {
            if name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
                NameKind::Meta
            } else if name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                // Non-UTF-8 payload: callers that need it use `whiteout_target_bytes`.
                NameKind::Whiteout("")
            } else {
                NameKind::Plain
            }
        }
    }
}

/// The name hidden by a whiteout name, on raw bytes; `None` if `name` is not
/// a plain whiteout (`.wh.X` with X not starting a metadata name).
pub fn whiteout_target_bytes(name: &[u8]) -> Option<&[u8]> {
    if name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
        return None;
    }
    let t = name.strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    (!t.is_empty()).then_some(t)
}

/// The whiteout name that hides `name`.
pub fn whiteout_for(name: &str) -> String {
    format!("{WHITEOUT_PREFIX}{name}")
}

/// True for any name starting with `.wh.`: such names cannot be created
/// through a union (aufs refuses them).
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_names() {
        assert_eq!(classify("etc"), NameKind::Plain);
        assert_eq!(classify(".wh.etc"), NameKind::Whiteout("etc"));
        assert_eq!(classify(".wh..wh..opq"), NameKind::Opaque);
        assert_eq!(classify(".wh..wh.plnk"), NameKind::Meta);
        assert_eq!(classify(".wh..wh.aufs"), NameKind::Meta);
        assert_eq!(classify(".wh."), NameKind::Meta);
        assert_eq!(classify(".wh..hidden"), NameKind::Whiteout(".hidden"));
        assert_eq!(classify("x.wh.y"), NameKind::Plain);
    }

    #[test]
    fn bytes_variants_agree() {
        assert_eq!(whiteout_target_bytes(b".wh.\xffz"), Some(&b"\xffz"[..]));
        assert_eq!(whiteout_target_bytes(b".wh..wh..opq"), None);
        assert_eq!(classify_bytes(b".wh..wh.\xff"), NameKind::Meta);
        assert!(is_reserved(b".wh.x"));
        assert!(!is_reserved(b"x"));
    }

    proptest! {
        #[test]
        fn whiteout_round_trip(name in "[^/\0]{1,50}") {
            let wh = whiteout_for(&name);
            match classify(&wh) {
                NameKind::Whiteout(t) => prop_assert_eq!(t, name.as_str()),
                NameKind::Meta | NameKind::Opaque => prop_assert!(name.starts_with(".wh.")),
                NameKind::Plain => prop_assert!(false, "whiteout classified plain"),
            }
        }
    }
}
