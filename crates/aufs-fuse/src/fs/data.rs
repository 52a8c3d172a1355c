//! File data through open handles: read, write, fsync, fallocate,
//! copy_file_range, lseek, and the close of a handle (flush, release).
//!
//! Each request acts on the branch descriptor that the open of its handle
//! registered: no lookup, no copy-up (a handle open for writing already
//! names the rw-branch file). Reads and writes reach us only for files the
//! kernel does not pass through (see [`crate::io_mode`]). No ioctl passes
//! through.

use super::convert::{caller, io_errno, rustix_errno};
use super::{lock, UnionFs};
use crate::killpriv::kill_setid;
use fuser::{Errno, FileHandle, Request, WriteFlags};
use std::io;
use std::os::unix::fs::FileExt;

impl UnionFs {
    /// READ: up to `size` bytes of handle `fh` at `offset` (fewer only at
    /// the end of the file).
    pub(super) fn read_file(
        &self,
        fh: FileHandle,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        self.file(fh).and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            let mut done = 0;
            while done < buf.len() {
                match f.file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_errno(e)),
                }
            }
            buf.truncate(done);
            Ok(buf)
        })
    }

    /// WRITE of all of `data` at `offset` through handle `fh`, by `req`'s
    /// caller.
    pub(super) fn write_file(
        &self,
        req: &Request,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
    ) -> Result<(), Errno> {
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.file(fh).and_then(|f| {
            if kill {
                kill_setid(&f.file, caller(req)).map_err(io_errno)?;
            }
            f.file.write_all_at(data, offset).map_err(io_errno)
        })
    }

    /// FLUSH, on every close of a descriptor.
    pub(super) fn flush_file(&self) -> Result<(), Errno> {
        // Nothing to flush: writes reach the branch file when they are made
        // and file locks stay with the kernel. `ENOSYS` makes the kernel
        // stop sending FLUSH, a round trip on every close.
        Err(Errno::ENOSYS)
    }

    /// RELEASE: the last close of handle `fh`.
    pub(super) fn release_file(&self, fh: FileHandle) {
        // The files table is unlocked before the I/O modes are taken (an
        // open takes them in the other order).
        let released = lock(&self.files).remove(&fh.0);
        if let Some(f) = released {
            lock(&self.io).release(f.ino);
        }
    }

    /// FSYNC of handle `fh`: its data only when `datasync`.
    pub(super) fn sync_file(&self, fh: FileHandle, datasync: bool) -> Result<(), Errno> {
        self.file(fh).and_then(|f| {
            if datasync {
                f.file.sync_data()
            } else {
                f.file.sync_all()
            }
            .map_err(io_errno)
        })
    }

    /// FALLOCATE on handle `fh`, `mode` as `fallocate(2)` takes it.
    pub(super) fn allocate(
        &self,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        self.file(fh).and_then(|f| {
            rustix::fs::fallocate(
                &f.file,
                rustix::fs::FallocateFlags::from_bits_retain(mode as u32),
                offset,
                length,
            )
            .map_err(rustix_errno)
        })
    }

    /// IOCTL on an open file.
    pub(super) fn ioctl_file(&self) -> Result<(i32, Vec<u8>), Errno> {
        // No ioctls (FS_IOC_GETFLAGS and the like) pass through the union.
        Err(Errno::from_i32(libc::ENOTTY))
    }

    /// COPY_FILE_RANGE between two handles: the number of bytes copied.
    pub(super) fn copy_range(
        &self,
        fh_in: FileHandle,
        offset_in: u64,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
    ) -> Result<usize, Errno> {
        self.file(fh_in).and_then(|src| {
            let dst = self.file(fh_out)?;
            let (mut off_in, mut off_out) = (offset_in, offset_out);
            let want = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 30);
            rustix::fs::copy_file_range(
                &src.file,
                Some(&mut off_in),
                &dst.file,
                Some(&mut off_out),
                want,
            )
            .map_err(rustix_errno)
        })
    }

    /// LSEEK on handle `fh`, `SEEK_DATA` and `SEEK_HOLE` included: the new
    /// offset.
    pub(super) fn seek_file(&self, fh: FileHandle, offset: i64, whence: i32) -> Result<u64, Errno> {
        self.file(fh).and_then(|f| {
            let off = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
            let pos = match whence {
                libc::SEEK_DATA => rustix::fs::SeekFrom::Data(off),
                libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(off),
                libc::SEEK_SET => rustix::fs::SeekFrom::Start(off),
                libc::SEEK_END => rustix::fs::SeekFrom::End(offset),
                _ => return Err(Errno::EINVAL),
            };
            rustix::fs::seek(&f.file, pos).map_err(rustix_errno)
        })
    }
}
