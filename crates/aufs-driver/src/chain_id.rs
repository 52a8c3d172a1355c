//! Layers named by their content: Docker's chain ids.
//!
//! An image layer's id is the hex of its chain id: its DiffID for a layer
//! with no parent, else `sha256("<parent chain id> <DiffID>")`. A layer so
//! named is complete only with the content its name says.

use aufs_model::LayerId;
use sha2::{Digest as _, Sha256};

/// True when `id` is the chain id of content with `diff_id`
/// (`sha256:<hex>`) on `parent`.
pub(crate) fn is_chain_id(id: &LayerId, parent: Option<&LayerId>, diff_id: Option<&str>) -> bool {
    let Some(diff_id) = diff_id.filter(|d| d.strip_prefix("sha256:").is_some_and(is_hex64)) else {
        return false;
    };
    let want = match parent {
        None => diff_id["sha256:".len()..].to_owned(),
        Some(p) => {
            let sum = Sha256::digest(format!("sha256:{p} {diff_id}").as_bytes());
            sum.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    id.as_str() == want
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn chain_ids_follow_dockers_rule() {
        let (a, b) = (sha(b"a"), sha(b"b"));
        let base = LayerId::new(a.clone()).unwrap();
        assert!(is_chain_id(&base, None, Some(&format!("sha256:{a}"))));
        let top = LayerId::new(sha(format!("sha256:{a} sha256:{b}").as_bytes())).unwrap();
        assert!(is_chain_id(&top, Some(&base), Some(&format!("sha256:{b}"))));
        assert!(!is_chain_id(
            &top,
            Some(&base),
            Some(&format!("sha256:{a}"))
        ));
        assert!(!is_chain_id(&top, None, Some(&format!("sha256:{b}"))));
        assert!(!is_chain_id(&base, None, None));
        assert!(!is_chain_id(&base, None, Some(&format!("sha512:{a}"))));
    }
}
