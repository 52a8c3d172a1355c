//! In-memory fakes of every port, for tests of the driver and of embedders'
//! own code. They keep state (a file tree, a mount table) and record calls,
//! and can be told to fail a call with a chosen errno.

mod archive;
mod backend;
mod clock;
mod host;
mod memfs;
mod mounter;

pub use archive::MemArchive;
pub use backend::{targets as mounted_targets, FakeUnionBackend};
pub use clock::FakeClock;
pub use host::FakeHost;
pub use memfs::{FsOp, MemFs};
pub use mounter::{MountCall, RecordingMounter};

/// A fault to inject: fail `op` on `path` with `errno`, `times` times.
#[derive(Debug, Clone)]
pub(crate) struct Fault<Op> {
    pub op: Op,
    pub path: Option<camino::Utf8PathBuf>,
    pub errno: i32,
    pub times: usize,
}

/// Takes the first matching fault, if any, decrementing its count.
pub(crate) fn take_fault<Op: PartialEq + Copy>(
    faults: &mut Vec<Fault<Op>>,
    op: Op,
    path: &camino::Utf8Path,
) -> Option<std::io::Error> {
    let pos = faults
        .iter()
        .position(|f| f.op == op && f.path.as_deref().is_none_or(|p| p == path))?;
    let errno = faults[pos].errno;
    faults[pos].times -= 1;
    if faults[pos].times == 0 {
        faults.remove(pos);
    }
    Some(crate::errno(errno))
}
