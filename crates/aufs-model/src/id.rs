//! Layer ids: the names of `layers/<id>`, `diff/<id>` and `mnt/<id>`.

use std::fmt;
use std::str::FromStr;

/// Longest accepted id: 255 (NAME_MAX) minus the 9 bytes of the `-removing`
/// suffix that atomic removal appends to a layer's directories.
pub const MAX_ID_LEN: usize = 246;

/// The suffix of a directory being removed (Docker's `<dir>-removing`),
/// which every start deletes: no id may end with it, or its own layer would
/// be taken for a removal.
pub const REMOVING_SUFFIX: &str = "-removing";

/// Why a string is not a valid layer id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("invalid layer id: empty")]
    Empty,
    /// `.` and `..` would name the directories themselves or their parent.
    #[error("invalid layer id {0:?}: `.` and `..` are not allowed")]
    Dot(String),
    /// A `/` would escape `layers/`, `diff/` or `mnt/`.
    #[error("invalid layer id {0:?}: contains `/`")]
    Slash(String),
    /// NUL cannot appear in a path.
    #[error("invalid layer id {0:?}: contains NUL")]
    Nul(String),
    /// A control character (newline, escape, ...) would forge lines and
    /// terminal output wherever the id is printed.
    #[error("invalid layer id {0:?}: contains a control character")]
    Control(String),
    /// Ends in [`REMOVING_SUFFIX`], the name of a removal in progress.
    #[error("invalid layer id {0:?}: ends in `-removing`, the suffix of layers being removed")]
    Removing(String),
    /// Longer than [`MAX_ID_LEN`] bytes.
    #[error("invalid layer id {id:?}: {len} bytes, at most {max} allowed", max = MAX_ID_LEN)]
    TooLong {
        /// The offending id, cut to a readable prefix.
        id: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// A validated layer id: 1 to 246 bytes, not `.`/`..`, no `/` or control
/// character (NUL included), not ending in `-removing`.
///
/// Real Docker ids (`<64 hex>` or `<64 hex>-init`) are valid, but any other
/// name obeying the rules is too, as the Go driver accepts them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(String);

impl LayerId {
    /// Validates `s` as a layer id.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        validate(&s)?;
        Ok(LayerId(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the id, returning the string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks the id rules without allocating.
pub fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s == "." || s == ".." {
        return Err(IdError::Dot(s.to_owned()));
    }
    if s.contains('/') {
        return Err(IdError::Slash(s.to_owned()));
    }
    if s.contains('\0') {
        return Err(IdError::Nul(s.replace('\0', "\\0")));
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::Control(s.to_owned()));
    }
    if s.ends_with(REMOVING_SUFFIX) {
        return Err(IdError::Removing(s.to_owned()));
    }
    if s.len() > MAX_ID_LEN {
        let mut cut = 32;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(IdError::TooLong {
            id: format!("{}...", &s[..cut]),
            len: s.len(),
        });
    }
    Ok(())
}

impl FromStr for LayerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayerId::new(s)
    }
}

impl TryFrom<&str> for LayerId {
    type Error = IdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        LayerId::new(s)
    }
}

impl TryFrom<String> for LayerId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        LayerId::new(s)
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for LayerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn docker_ids_are_valid() {
        let hex = "a".repeat(64);
        assert!(LayerId::new(hex.clone()).is_ok());
        assert!(LayerId::new(format!("{hex}-init")).is_ok());
        assert!(LayerId::new("1").is_ok());
        assert!(LayerId::new("...").is_ok());
    }

    #[test]
    fn bad_ids_are_rejected_with_cause() {
        assert_eq!(LayerId::new(""), Err(IdError::Empty));
        assert!(matches!(LayerId::new("."), Err(IdError::Dot(_))));
        assert!(matches!(LayerId::new(".."), Err(IdError::Dot(_))));
        assert!(matches!(LayerId::new("a/b"), Err(IdError::Slash(_))));
        assert!(matches!(LayerId::new("a\0b"), Err(IdError::Nul(_))));
        for forged in ["a\nb -", "a\rb", "\u{1b}[2J", "a\u{7f}", "a\u{85}"] {
            assert!(
                matches!(LayerId::new(forged), Err(IdError::Control(_))),
                "{forged:?}"
            );
        }
        assert!(matches!(
            LayerId::new("base-removing"),
            Err(IdError::Removing(_))
        ));
        assert!(matches!(
            LayerId::new("-removing"),
            Err(IdError::Removing(_))
        ));
        assert!(LayerId::new("base-removing-not").is_ok());
        let e = LayerId::new("x".repeat(247)).unwrap_err();
        assert!(matches!(e, IdError::TooLong { len: 247, .. }));
        assert!(e.to_string().contains("247 bytes"));
        assert!(LayerId::new("x".repeat(246)).is_ok());
    }

    #[test]
    fn too_long_multibyte_id_is_cut_on_char_boundary() {
        let e = LayerId::new("é".repeat(200)).unwrap_err();
        assert!(e.to_string().contains("400 bytes"));
    }

    /// Ids drawn mostly from the characters that matter to a path: `/`,
    /// NUL, `.`, a newline, the `-removing` suffix, and some plain ones.
    fn risky_id() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just("\0".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("\n".to_string()),
            Just("-removing".to_string()),
            "[a-f0-9]{1,8}",
        ];
        prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn valid_iff_rules_hold(s in "\\PC{0,260}") {
            let ok = !s.is_empty() && s != "." && s != ".." && !s.contains('/')
                && !s.chars().any(char::is_control) && !s.ends_with(REMOVING_SUFFIX)
                && s.len() <= MAX_ID_LEN;
            prop_assert_eq!(LayerId::new(s.clone()).is_ok(), ok);
        }

        /// What matters of an accepted id, however it was made: joined to a
        /// store dir it names a direct child of that dir, and no other
        /// accepted id's removal name.
        #[test]
        fn accepted_ids_stay_one_level_below_the_root(s in risky_id()) {
            if let Ok(id) = LayerId::new(s) {
                let root = std::path::Path::new("/store/diff");
                let p = root.join(id.as_str());
                prop_assert_eq!(p.parent(), Some(root));
                let comps: Vec<_> = p.strip_prefix(root).unwrap().components().collect();
                prop_assert_eq!(comps.len(), 1);
                prop_assert!(matches!(comps[0], std::path::Component::Normal(_)));
                prop_assert!(!id.as_str().contains('\0'));
                prop_assert!(!id.as_str().ends_with(REMOVING_SUFFIX));
            }
        }
    }
}
