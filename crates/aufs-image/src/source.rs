//! Where an image's files come from: a directory (an OCI layout) or a tar
//! (a `docker save` tarball, or an OCI layout in a tar), indexed once so
//! each file can be opened on its own.
//!
//! A file is never read past the size its descriptor declares, and in a
//! directory only regular files inside it are read (a blob that is a FIFO,
//! a device, or a symlink out of the layout is refused).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use camino::{Utf8Path, Utf8PathBuf};

use crate::beneath::{Beneath, Symlinks, MAX_META};
use crate::error::{ImageError, Result};

/// Symlinks followed inside a tarball before giving up.
const MAX_LINKS: usize = 8;

/// An image's files by their path in the image.
pub(crate) enum Source {
    Dir(Beneath),
    Tar {
        path: Utf8PathBuf,
        /// Regular files: data offset and size in the tarball.
        files: HashMap<String, (u64, u64)>,
        /// Symlinks (docker save links repeated layers): their targets.
        links: HashMap<String, String>,
    },
}

impl Source {
    pub(crate) fn open(path: &Utf8Path) -> Result<Self> {
        let io_err = |op| {
            move |source| ImageError::Io {
                path: path.to_owned(),
                op,
                source,
            }
        };
        if path.is_dir() {
            return Ok(Source::Dir(Beneath::open(path, Symlinks::Inside)?));
        }
        let file = File::open(path).map_err(io_err("opening image"))?;
        let mut archive = tar::Archive::new(file);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        // With seeks, layer data is skipped, not read, while indexing.
        for entry in archive
            .entries_with_seek()
            .map_err(io_err("reading image tarball"))?
        {
            let entry = entry.map_err(io_err("reading image tarball"))?;
            let Some(name) = normalize(&String::from_utf8_lossy(&entry.path_bytes())) else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    files.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = String::from_utf8_lossy(&target).into_owned();
                        let base = name.rsplit_once('/').map_or("", |(d, _)| d);
                        if let Some(t) = normalize(&format!("{base}/{target}")) {
                            links.insert(name, t);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Source::Tar {
            path: path.to_owned(),
            files,
            links,
        })
    }

    pub(crate) fn path(&self) -> &Utf8Path {
        match self {
            Source::Dir(d) => d.path(),
            Source::Tar { path: p, .. } => p,
        }
    }

    /// Whether the image has a file `name` (in a directory: anything by
    /// that name, so that what is not a readable file is refused when read).
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => {
                normalize(name).is_some_and(|n| !matches!(d.file(Utf8Path::new(&n)), Ok(None)))
            }
            Source::Tar { .. } => self.locate(name).is_some(),
        }
    }

    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let Source::Tar { files, links, .. } = self else {
            return None;
        };
        let mut name = normalize(name)?;
        for _ in 0..MAX_LINKS {
            if let Some(f) = files.get(&name) {
                return Some(*f);
            }
            name = links.get(&name)?.clone();
        }
        None
    }

    /// File `name` of the image, streamed; with `declared`, the size its
    /// descriptor gives, which the file must have.
    pub(crate) fn open_file(
        &self,
        name: &str,
        declared: Option<u64>,
    ) -> Result<Box<dyn Read + Send>> {
        let missing = || ImageError::Malformed {
            path: self.path().to_owned(),
            what: name.to_owned(),
            why: "no such file in the image".into(),
        };
        let check = |size: u64| match declared {
            Some(want) if want != size => Err(ImageError::Malformed {
                path: self.path().to_owned(),
                what: name.to_owned(),
                why: format!("{size} bytes, but its descriptor says {want}"),
            }),
            _ => Ok(()),
        };
        match self {
            Source::Dir(d) => {
                let rel = normalize(name).ok_or_else(missing)?;
                let f = d.file(Utf8Path::new(&rel))?.ok_or_else(missing)?;
                let size = f.metadata().map_err(|source| ImageError::Io {
                    path: d.path().join(&rel),
                    op: "opening image file",
                    source,
                })?;
                check(size.len())?;
                // A regular file may still grow while it is read.
                Ok(Box::new(f.take(size.len())))
            }
            Source::Tar { path, .. } => {
                let (offset, size) = self.locate(name).ok_or_else(missing)?;
                check(size)?;
                let mut f = File::open(path).map_err(|source| ImageError::Io {
                    path: path.clone(),
                    op: "opening image",
                    source,
                })?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|source| ImageError::Io {
                        path: path.clone(),
                        op: "seeking in image",
                        source,
                    })?;
                Ok(Box::new(f.take(size)))
            }
        }
    }

    /// A small file (JSON) of the image, whole, at most 16 MiB; with
    /// `declared` as for [`Self::open_file`].
    pub(crate) fn read(&self, name: &str, declared: Option<u64>) -> Result<Vec<u8>> {
        let too_large = || ImageError::Malformed {
            path: self.path().to_owned(),
            what: name.to_owned(),
            why: format!("larger than {MAX_META} bytes"),
        };
        if declared.is_some_and(|d| d > MAX_META) {
            return Err(too_large());
        }
        let mut data = Vec::new();
        self.open_file(name, declared)?
            .take(MAX_META + 1)
            .read_to_end(&mut data)
            .map_err(|source| ImageError::Io {
                path: self.path().join(name),
                op: "reading image file",
                source,
            })?;
        if data.len() as u64 > MAX_META {
            return Err(too_large());
        }
        Ok(data)
    }
}

/// `name` as a relative path of plain components (`./` and empty parts
/// dropped); `None` for anything reaching out (`..`, absolute).
fn normalize(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    if name.starts_with('/') {
        return None;
    }
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn names_stay_inside_the_image() {
        assert_eq!(normalize("./a//b/"), Some("a/b".into()));
        assert_eq!(normalize("a/../b"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize("."), None);
    }
}
