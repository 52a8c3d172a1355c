//! Digests and chain ids, as Docker's layer store computes them.

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; other algorithms are refused.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        (hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(s.to_owned()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_sha(Sha256::digest(data).into())
    }

    pub(crate) fn from_sha(sum: [u8; 32]) -> Self {
        Self(format!("sha256:{}", hex(&sum)))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `rootfs.diff_ids` of an image config (Docker's and OCI's are alike),
/// or why they cannot be read.
pub(crate) fn config_diff_ids(config: &[u8]) -> Result<Vec<Digest>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| format!("not JSON: {e}"))?;
    v.pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .ok_or("no rootfs.diff_ids")?
        .iter()
        .map(|d| {
            d.as_str()
                .and_then(Digest::parse)
                .ok_or_else(|| format!("diff id {d} is not sha256:<64 hex>"))
        })
        .collect()
}

/// Chain ids of a stack of layers given bottom first by their DiffIDs: the
/// first is its DiffID, each next `sha256(parent_chain + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_dockers_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn digests_parse_strictly() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(d.as_str()), Some(d.clone()));
        assert_eq!(d.hex().len(), 64);
        assert!(Digest::parse("sha512:00").is_none());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_none());
        assert!(Digest::parse("sha256:../../etc").is_none());
    }
}
