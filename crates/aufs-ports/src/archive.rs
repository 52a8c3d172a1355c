//! Layer content: applying a layer tarball into a diff dir, exporting it
//! back (with the original bytes when it is unchanged), its changes and
//! its size.

use aufs_model::{Change, IdMappings};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::{self, Read, Write};

/// Where one apply puts its results.
#[derive(Debug, Clone, Copy)]
pub struct ApplyTarget<'a> {
    /// The layer's diff dir; replaced only when the apply succeeds.
    pub diff: &'a Utf8Path,
    /// The layer's exact-bytes record (see [`LayerArchive::record_paths`]).
    pub record: &'a Utf8Path,
    /// A private dir for the apply's work, on the diff dir's filesystem.
    pub staging: &'a Utf8Path,
    /// Container-to-host uid and gid maps.
    pub id_maps: &'a IdMappings,
    /// Set owners from the tarball.
    pub chown: bool,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The layer's diff size after the apply.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tarball (the layer's DiffID).
    pub diff_id: Option<String>,
    /// Tar entries applied.
    pub entries: u64,
}

/// Layer content operations on a layer store's diff dirs. A union is
/// given as its branches, top first.
///
/// Errors are [`io::Error`]s; an adapter may wrap its own error in one
/// (`io::Error::other`), keeping its OS error kind where it has one.
pub trait LayerArchive: Send + Sync + std::fmt::Debug {
    /// Applies a layer tarball (plain, or compressed as the adapter
    /// supports) into `target.diff`, keeping its `.wh.` whiteouts, and
    /// records its exact bytes in `target.record`. On error the diff dir
    /// is left as it was.
    fn apply(&self, target: &ApplyTarget<'_>, input: &mut dyn Read) -> io::Result<Applied>;

    /// [`LayerArchive::apply`] of a tarball in a file, from its current
    /// offset. An adapter may map a regular file instead of reading it.
    fn apply_file(&self, target: &ApplyTarget<'_>, input: &std::fs::File) -> io::Result<Applied> {
        self.apply(target, &mut &*input)
    }

    /// Writes the diff dir as an uncompressed tarball with aufs whiteouts:
    /// the original applied bytes when `record` exists and the layer is
    /// unchanged since, else the diff dir's content. Returns bytes written.
    fn export(&self, diff: &Utf8Path, record: &Utf8Path, out: &mut dyn Write) -> io::Result<u64>;

    /// What the diff dir `diff` changed against the union of `lowers`
    /// (its parents' diff dirs, nearest first), sorted by path.
    fn changes(&self, diff: &Utf8Path, lowers: &[Utf8PathBuf]) -> io::Result<Vec<Change>>;

    /// Docker's `directory.Size` of a diff dir: the apparent size of every
    /// entry but directories, hardlinks once.
    fn diff_size(&self, diff: &Utf8Path) -> io::Result<u64>;

    /// What the union `new` changed against the union `old` (`None`: an
    /// empty tree), as Docker's `ChangesDirs`; sorted by path.
    fn changes_between(
        &self,
        old: Option<&[Utf8PathBuf]>,
        new: &[Utf8PathBuf],
    ) -> io::Result<Vec<Change>>;

    /// The size of the files of `changes` in the union `new` (Docker's
    /// `ChangesSize`).
    fn changes_size(&self, new: &[Utf8PathBuf], changes: &[Change]) -> io::Result<u64>;

    /// Writes `changes` of the union `new` as a tarball with aufs
    /// whiteouts (Docker's `ExportChanges`). Returns bytes written.
    fn export_changes(
        &self,
        new: &[Utf8PathBuf],
        changes: &[Change],
        out: &mut dyn Write,
    ) -> io::Result<u64>;

    /// Every file and directory the exact-bytes record at `record` may
    /// occupy, for its removal through the filesystem port.
    fn record_paths(&self, record: &Utf8Path) -> Vec<Utf8PathBuf>;
}
