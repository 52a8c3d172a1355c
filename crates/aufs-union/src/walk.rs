//! A pre-order walk of the whole union tree.

use crate::entry::{DirEntry, Entry};
use crate::error::Result;
use crate::view::{DirState, UnionView};
use std::path::PathBuf;

/// One visited entry: its union path (relative, no leading `/`) and entry.
#[derive(Debug, Clone)]
pub struct WalkEntry {
    /// The union path.
    pub path: PathBuf,
    /// What the union shows there.
    pub entry: Entry,
}

/// Iterator over every entry of a union but the root, parents before their
/// children, names sorted within a directory. Built by [`UnionView::walk`].
#[derive(Debug)]
pub struct Walk<'a> {
    view: &'a UnionView,
    stack: Vec<(DirState, std::vec::IntoIter<DirEntry>)>,
    failed: Option<crate::UnionError>,
}

impl UnionView {
    /// Walks the whole union.
    pub fn walk(&self) -> Walk<'_> {
        let mut walk = Walk {
            view: self,
            stack: Vec::new(),
            failed: None,
        };
        match self
            .root_state()
            .and_then(|s| Ok((self.read_dir_state(&s)?, s)))
        {
            Ok((list, state)) => walk.stack.push((state, list.into_iter())),
            Err(e) => walk.failed = Some(e),
        }
        walk
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<WalkEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        loop {
            let (state, list) = self.stack.last_mut()?;
            let Some(de) = list.next() else {
                self.stack.pop();
                continue;
            };
            let path = state.path.join(&de.name);
            let found = match self.view.lookup_in(state, &de.name) {
                Ok(Some(f)) => f,
                // Vanished since listed (rw branch changed): skip it.
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            };
            if found.entry.is_dir() {
                let child = self
                    .view
                    .descend(path.clone(), &found)
                    .and_then(|s| Ok((self.view.read_dir_state(&s)?, s)));
                match child {
                    Ok((list, s)) => self.stack.push((s, list.into_iter())),
                    Err(e) => return Some(Err(e)),
                }
            }
            return Some(Ok(WalkEntry {
                path,
                entry: found.entry,
            }));
        }
    }
}
