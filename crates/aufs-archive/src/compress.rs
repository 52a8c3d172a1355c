//! Compression detection by magic number, as Docker's `DecompressStream` does.

use std::io::{self, BufReader, Read};

use crate::error::{ArchiveError, Result};

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2: &[u8] = b"BZh";

/// Looks at the first bytes of a stream.
pub fn detect(head: &[u8]) -> Result<Compression> {
    if head.starts_with(GZIP) {
        Ok(Compression::Gzip)
    } else if head.starts_with(ZSTD) {
        Ok(Compression::Zstd)
    } else if head.starts_with(XZ) {
        Err(ArchiveError::UnsupportedCompression("xz"))
    } else if head.starts_with(BZIP2) {
        Err(ArchiveError::UnsupportedCompression("bzip2"))
    } else {
        Ok(Compression::None)
    }
}

/// Wraps `input` in the decompressor its magic number asks for.
pub fn decompress<'a, R: Read + 'a>(mut input: R) -> Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 6];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ArchiveError::Read { offset: 0, source }),
        }
    }
    let kind = detect(&head[..got])?;
    let stream = BufReader::with_capacity(
        128 * 1024,
        io::Cursor::new(head[..got].to_vec()).chain(input),
    );
    Ok(match kind {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(stream)
                .map_err(|source| ArchiveError::Read { offset: 0, source })?,
        ),
    })
}
