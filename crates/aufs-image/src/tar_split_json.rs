//! Docker's own exact-bytes metadata: upstream tar-split's
//! `tar-split.json.gz` (gzip'd JSON lines), as moby's layer store keeps it
//! beside each layer. Segments carry raw header and padding bytes; file
//! entries name a file of the layer's diff dir, its size and the CRC-64
//! (Go's ISO table) of its content. Replaying them gives the layer's
//! original tar byte for byte.
//!
//! The metadata comes from a Docker root that may be hostile, so every
//! record is bounded: a line may not exceed [`Limits::line`] bytes, the
//! decompressed metadata [`Limits::total`], and a file record is replayed
//! only when the diff dir's file has exactly its size and its CRC-64.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crc_fast::{CrcAlgorithm, Digest as Crc};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// Bounds on what one replay reads from the metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of one JSON line: a segment holds one entry's headers (PAX
    /// data included, which tar readers cap at 1 MiB), base64'd.
    pub(crate) line: usize,
    /// Bytes of the whole decompressed metadata.
    pub(crate) total: u64,
}

impl Limits {
    /// What a real layer's metadata fits in with room to spare.
    pub(crate) const DEFAULT: Limits = Limits {
        line: 4 << 20,
        total: 1 << 30,
    };
}

/// One line of the metadata.
#[derive(serde::Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    /// The name's bytes (base64) when they are not UTF-8.
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: u64,
    /// Segment bytes, or a file's CRC-64 (base64).
    #[serde(default)]
    payload: Option<String>,
}

const FILE: u8 = 1;
const SEGMENT: u8 = 2;

/// Writes the original tar of the layer in `diff_dir` to `out` from its
/// gzip'd tar-split metadata `meta`; returns the bytes written.
pub(crate) fn assemble(
    meta: impl Read,
    diff_dir: &OwnedFd,
    out: &mut dyn Write,
) -> io::Result<u64> {
    replay(
        BufReader::new(flate2::read::GzDecoder::new(meta)),
        diff_dir,
        out,
        Limits::DEFAULT,
    )
}

/// [`assemble`] over the decompressed JSON lines, within `limits`. Files
/// are opened inside `diff_dir` only (`openat2` with `RESOLVE_IN_ROOT`);
/// a file record without a CRC-64, or whose file differs in type, size or
/// CRC-64, fails the replay.
pub(crate) fn replay(
    mut lines: impl BufRead,
    diff_dir: &OwnedFd,
    out: &mut dyn Write,
    limits: Limits,
) -> io::Result<u64> {
    let mut written = 0u64;
    let mut read = 0u64;
    let mut line = Vec::new();
    let mut n = 0usize;
    let bad = |n: usize, why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tar-split line {n}: {why}"),
        )
    };
    loop {
        n += 1;
        line.clear();
        let got = (&mut lines)
            .take(limits.line as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if got == 0 {
            break;
        }
        read += got as u64;
        if read > limits.total {
            return Err(bad(
                n,
                format!("the metadata is larger than {} bytes", limits.total),
            ));
        }
        if line.last() != Some(&b'\n') && got > limits.line {
            return Err(bad(n, format!("longer than {} bytes", limits.line)));
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_slice(&line).map_err(|err| bad(n, err.to_string()))?;
        let payload = match &e.payload {
            Some(p) => STANDARD
                .decode(p)
                .map_err(|err| bad(n, format!("payload: {err}")))?,
            None => Vec::new(),
        };
        match e.kind {
            SEGMENT => {
                out.write_all(&payload)?;
                written += payload.len() as u64;
            }
            FILE if e.size > 0 => {
                let name = match (&e.name, &e.name_raw) {
                    (_, Some(raw)) => STANDARD
                        .decode(raw)
                        .map_err(|err| bad(n, format!("name: {err}")))?,
                    (Some(name), None) => name.as_bytes().to_vec(),
                    (None, None) => return Err(bad(n, "file without a name".into())),
                };
                let crc: [u8; 8] = payload.as_slice().try_into().map_err(|_| {
                    bad(
                        n,
                        format!("{}: file record without its CRC-64", shown(&name)),
                    )
                })?;
                written += copy_file(diff_dir, &name, e.size, crc, out).map_err(|err| {
                    io::Error::new(err.kind(), format!("{}: {err}", shown(&name)))
                })?;
            }
            FILE => {}
            other => return Err(bad(n, format!("unknown entry type {other}"))),
        }
    }
    Ok(written)
}

/// A name from the metadata as it may be printed: escaped, so control
/// characters in a hostile name never reach a terminal.
fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}

/// Copies file `name` (inside `root`), which must be a regular file of
/// exactly `size` bytes, to `out`, checking its CRC-64 against `crc`
/// (big-endian, as Go's `Sum` gives it).
fn copy_file(
    root: &OwnedFd,
    name: &[u8],
    size: u64,
    crc: [u8; 8],
    out: &mut dyn Write,
) -> io::Result<u64> {
    let fd = rustix::fs::openat2(
        root,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(invalid("not a regular file".into()));
    }
    if st.st_size as u64 != size {
        return Err(invalid(format!(
            "{} bytes where the layer had {size}",
            st.st_size
        )));
    }
    let mut file = std::fs::File::from(fd).take(size);
    let mut sum = Crc::new(CrcAlgorithm::Crc64GoIso);
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let k = file.read(&mut buf)?;
        if k == 0 {
            break;
        }
        sum.update(&buf[..k]);
        out.write_all(&buf[..k])?;
        copied += k as u64;
    }
    if copied != size {
        return Err(invalid(format!(
            "{copied} bytes where the layer had {size}"
        )));
    }
    if sum.finalize().to_be_bytes() != crc {
        return Err(invalid("content differs from the layer's (CRC-64)".into()));
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, OwnedFd) {
        let tmp = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(tmp.path().join(name), body).unwrap();
        }
        let fd = rustix::fs::open(
            tmp.path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (tmp, fd)
    }

    fn crc(data: &[u8]) -> String {
        let mut c = Crc::new(CrcAlgorithm::Crc64GoIso);
        c.update(data);
        STANDARD.encode(c.finalize().to_be_bytes())
    }

    fn run(meta: &str, root: &OwnedFd, limits: Limits) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        replay(meta.as_bytes(), root, &mut out, limits)?;
        Ok(out)
    }

    #[test]
    fn segments_and_files_replay_in_order() {
        let (_t, root) = dir_with(&[("f", b"hello")]);
        let meta = format!(
            "{{\"type\":2,\"payload\":\"{}\"}}\n{{\"type\":1,\"name\":\"f\",\"size\":5,\"payload\":\"{}\"}}\n",
            STANDARD.encode(b"HDR"),
            crc(b"hello")
        );
        assert_eq!(run(&meta, &root, Limits::DEFAULT).unwrap(), b"HDRhello");
    }

    #[test]
    fn lines_and_totals_past_their_limits_are_refused() {
        let (_t, root) = dir_with(&[]);
        let line = format!(
            "{{\"type\":2,\"payload\":\"{}\"}}\n",
            STANDARD.encode([0u8; 300])
        );
        let small = Limits {
            line: 100,
            total: 1 << 20,
        };
        let err = run(&line, &root, small).unwrap_err();
        assert!(err.to_string().contains("longer than 100 bytes"), "{err}");
        let few = Limits {
            line: 1 << 20,
            total: line.len() as u64 * 3,
        };
        assert_eq!(run(&line.repeat(3), &root, few).unwrap().len(), 900);
        let err = run(&line.repeat(4), &root, few).unwrap_err();
        assert!(
            err.to_string().contains("line 4: the metadata is larger"),
            "{err}"
        );
    }

    #[test]
    fn a_file_must_match_its_record_whole() {
        let (_t, root) = dir_with(&[("secret", b"abcdef")]);
        // No CRC: refused before the file is opened, the name escaped.
        let meta = "{\"type\":1,\"name\":\"x\\u001b[2J\",\"size\":1}\n";
        let err = run(meta, &root, Limits::DEFAULT).unwrap_err();
        assert!(err.to_string().contains("without its CRC-64"), "{err}");
        assert!(!err.to_string().chars().any(char::is_control), "{err:?}");
        // A prefix of the file, even with the prefix's CRC.
        let meta = format!(
            "{{\"type\":1,\"name\":\"secret\",\"size\":1,\"payload\":\"{}\"}}\n",
            crc(b"a")
        );
        let err = run(&meta, &root, Limits::DEFAULT).unwrap_err();
        assert!(
            err.to_string().contains("6 bytes where the layer had 1"),
            "{err}"
        );
    }
}
