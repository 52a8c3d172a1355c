//! One entry of what a layer changed (`docker diff`).

use std::fmt;

/// The kind of a change, ordered as Docker's constants (Modify, Add, Delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// `C`: the entry existed below and differs.
    Modify,
    /// `A`: the entry is new.
    Add,
    /// `D`: the entry was deleted (a whiteout).
    Delete,
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Modify => "C",
            ChangeKind::Add => "A",
            ChangeKind::Delete => "D",
        })
    }
}

/// One changed path, as `docker diff` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// Absolute path in the union (`/etc/passwd`), lossy UTF-8.
    pub path: String,
    /// The exact path bytes (names need not be UTF-8).
    pub raw_path: Vec<u8>,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.path)
    }
}

impl Change {
    /// A change of the absolute path `raw_path`.
    pub fn new(raw_path: Vec<u8>, kind: ChangeKind) -> Self {
        Self {
            path: String::from_utf8_lossy(&raw_path).into_owned(),
            raw_path,
            kind,
        }
    }
}
