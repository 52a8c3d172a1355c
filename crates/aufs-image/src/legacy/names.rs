//! What a Docker install's ids and names may be. Anything else, read from a
//! root that may be hostile, is refused before it is printed: a name with
//! control characters would reach the terminal of whoever lists it.

/// A Docker id: 64 lowercase hex digits (container ids, layer cache and
/// mount ids are all `stringid.GenerateRandomID`).
pub(crate) fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A container name as Docker validates it
/// (`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`), given without the leading `/`.
pub(crate) fn is_container_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An image reference (`repo:tag`, `host:port/repo`, `repo@sha256:hex`,
/// an image id): the characters Docker's reference grammar allows, at most
/// 1024 of them.
pub(crate) fn is_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/' | b'@' | b'+')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dockers_shapes_pass() {
        assert!(is_hex_id(&"ab".repeat(32)));
        assert!(!is_hex_id(&"AB".repeat(32)));
        assert!(!is_hex_id("c0ffee"));
        assert!(is_container_name("web_1.a-b"));
        assert!(!is_container_name("w"));
        assert!(!is_container_name("-web"));
        assert!(!is_container_name("web\u{1b}[2J"));
        assert!(is_reference("registry:5000/org/app:v1.2"));
        assert!(is_reference("app@sha256:0123"));
        assert!(!is_reference("app\nlatest"));
        assert!(!is_reference("app latest"));
        assert!(!is_reference(""));
    }
}
