//! Union paths: relative, made of plain components only.

use crate::error::{Result, UnionError};
use std::ffi::OsStr;
use std::path::{Component, Path};

/// Splits a union path into its names. `""`, `"/"` and `"."` are the root;
/// `..` and `.` inside are refused.
pub(crate) fn components(path: &Path) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnionError::InvalidPath {
                    path: path.to_path_buf(),
                })
            }
        }
    }
    Ok(out)
}

/// The parent and last name of a non-root union path.
pub(crate) fn split_parent(path: &Path) -> Result<(std::path::PathBuf, &OsStr)> {
    let comps = components(path)?;
    let (last, parent) = comps.split_last().ok_or_else(|| UnionError::InvalidPath {
        path: path.to_path_buf(),
    })?;
    Ok((parent.iter().collect(), last))
}
