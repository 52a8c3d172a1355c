//! The `layers/<id>` file: a layer's parent chain, nearest parent first, one
//! id a line. A layer with no parent has an empty file.

use crate::id::{IdError, LayerId};
use std::collections::HashSet;

/// A layer's ancestors, nearest first (`[parent, grandparent, ...]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentChain(Vec<LayerId>);

/// Why a layers file could not be read as a parent chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayersFileError {
    /// A line is not a valid layer id.
    #[error("layers file {file}: line {line}: {source}")]
    BadLine {
        /// The file's name (usually the layer id or its path).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        source: IdError,
    },
    /// An id appears twice: the chain would be a cycle.
    #[error("layers file {file}: line {line}: {id} appears twice in the parent chain")]
    Repeated {
        /// The file's name.
        file: String,
        /// 1-based line number of the second appearance.
        line: usize,
        /// The repeated id.
        id: LayerId,
    },
}

impl ParentChain {
    /// The chain of a layer with no parent.
    pub fn empty() -> Self {
        ParentChain(Vec::new())
    }

    /// The chain of a new layer whose direct parent is `parent`, whose own
    /// chain is `parent_chain`.
    pub fn with_parent(parent: LayerId, parent_chain: &ParentChain) -> Self {
        let mut v = Vec::with_capacity(parent_chain.0.len() + 1);
        v.push(parent);
        v.extend(parent_chain.0.iter().cloned());
        ParentChain(v)
    }

    /// Builds a chain from ids, nearest first; rejects repeats.
    pub fn from_ids(ids: Vec<LayerId>) -> Result<Self, LayersFileError> {
        let mut seen = HashSet::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if !seen.insert(id) {
                return Err(LayersFileError::Repeated {
                    file: String::from("<chain>"),
                    line: i + 1,
                    id: id.clone(),
                });
            }
        }
        Ok(ParentChain(ids))
    }

    /// Parses the content of a layers file. `file` names it in errors.
    ///
    /// Blank lines are skipped (the Go driver's scanner does the same), so a
    /// trailing newline or a missing one are both fine. Any other line must be
    /// a valid id, and no id may repeat.
    pub fn parse(file: &str, content: &str) -> Result<Self, LayersFileError> {
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        for (i, raw) in content.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let id = LayerId::new(line).map_err(|source| LayersFileError::BadLine {
                file: file.to_owned(),
                line: i + 1,
                source,
            })?;
            if !seen.insert(id.clone()) {
                return Err(LayersFileError::Repeated {
                    file: file.to_owned(),
                    line: i + 1,
                    id,
                });
            }
            ids.push(id);
        }
        Ok(ParentChain(ids))
    }

    /// The file content: each id followed by a newline, as the Go driver's
    /// `fmt.Fprintln` writes it.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(self.0.iter().map(|i| i.as_str().len() + 1).sum());
        for id in &self.0 {
            s.push_str(id.as_str());
            s.push('\n');
        }
        s
    }

    /// The direct parent, if any.
    pub fn parent(&self) -> Option<&LayerId> {
        self.0.first()
    }

    /// Ancestors nearest first.
    pub fn ids(&self) -> &[LayerId] {
        &self.0
    }

    /// Number of ancestors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a layer with no parent.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True if `id` is an ancestor.
    pub fn contains(&self, id: &LayerId) -> bool {
        self.0.contains(id)
    }

    /// The part of the chain strictly below `ancestor` (its own chain), if
    /// `ancestor` is in this chain.
    pub fn below(&self, ancestor: &LayerId) -> Option<&[LayerId]> {
        let pos = self.0.iter().position(|i| i == ancestor)?;
        Some(&self.0[pos + 1..])
    }

    /// The part of the chain strictly above `ancestor`: the layers between
    /// the owner of the chain and `ancestor`, nearest first.
    pub fn above(&self, ancestor: &LayerId) -> Option<&[LayerId]> {
        let pos = self.0.iter().position(|i| i == ancestor)?;
        Some(&self.0[..pos])
    }
}

impl IntoIterator for ParentChain {
    type Item = LayerId;
    type IntoIter = std::vec::IntoIter<LayerId>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ParentChain {
    type Item = &'a LayerId;
    type IntoIter = std::slice::Iter<'a, LayerId>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> LayerId {
        LayerId::new(s).unwrap()
    }

    #[test]
    fn parses_go_driver_output() {
        let c = ParentChain::parse("3", "2\n1\n").unwrap();
        assert_eq!(c.ids(), &[id("2"), id("1")]);
        assert_eq!(c.parent(), Some(&id("2")));
        assert_eq!(ParentChain::parse("3", "2\n1").unwrap(), c);
        assert!(ParentChain::parse("1", "").unwrap().is_empty());
        assert_eq!(ParentChain::parse("3", "2\r\n1\r\n").unwrap(), c);
    }

    #[test]
    fn garbage_names_file_and_line() {
        let e = ParentChain::parse("layers/abc", "good\nbad/line\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("layers/abc"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        let e = ParentChain::parse("f", "a\nb\na\n").unwrap_err();
        assert!(matches!(e, LayersFileError::Repeated { line: 3, .. }));
        let e = ParentChain::parse("f", &"x".repeat(300)).unwrap_err();
        assert!(matches!(e, LayersFileError::BadLine { line: 1, .. }));
    }

    #[test]
    fn with_parent_prepends() {
        let base = ParentChain::parse("2", "1\n").unwrap();
        let c = ParentChain::with_parent(id("2"), &base);
        assert_eq!(c.render(), "2\n1\n");
        assert_eq!(c.below(&id("2")).unwrap(), &[id("1")]);
        assert_eq!(c.above(&id("1")).unwrap(), &[id("2")]);
        assert!(c.below(&id("9")).is_none());
    }

    /// Found by the `layers_file` fuzz target: a line `&\r\r` lost one CR
    /// to the CRLF rule and kept the other as part of the id, which then
    /// rendered as `&\r\n` and read back as `&`: another layer.
    #[test]
    fn every_chain_read_renders_back_to_itself() {
        for text in ["&\r\r", "a\r\r\nb\n", "a\r\x0b\n"] {
            match ParentChain::parse("f", text) {
                Ok(chain) => {
                    assert_eq!(ParentChain::parse("f", &chain.render()).unwrap(), chain)
                }
                Err(e) => assert!(matches!(e, LayersFileError::BadLine { .. }), "{e}"),
            }
        }
        assert!(ParentChain::parse("f", "&\r\r").is_err());
        assert_eq!(
            ParentChain::parse("f", "a\r\nb\r\n").unwrap().ids(),
            &[id("a"), id("b")]
        );
    }

    fn arb_id() -> impl Strategy<Value = LayerId> {
        "[a-zA-Z0-9_.-]{1,70}"
            .prop_filter("not . or ..", |s| s != "." && s != "..")
            .prop_map(|s| LayerId::new(s).unwrap())
    }

    proptest! {
        #[test]
        fn render_parse_round_trip(ids in proptest::collection::hash_set(arb_id(), 0..40)) {
            let chain = ParentChain::from_ids(ids.into_iter().collect()).unwrap();
            let text = chain.render();
            prop_assert_eq!(ParentChain::parse("f", &text).unwrap(), chain.clone());
            // Without the trailing newline too.
            prop_assert_eq!(ParentChain::parse("f", text.trim_end_matches('\n')).unwrap(), chain);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = ParentChain::parse("f", &s);
        }
    }
}
