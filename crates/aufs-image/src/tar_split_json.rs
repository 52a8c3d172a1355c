//! Docker's own exact-bytes metadata: upstream tar-split's
//! `tar-split.json.gz` (gzip'd JSON lines), as moby's layer store keeps it
//! beside each layer. Segments carry raw header and padding bytes; file
//! entries name a file of the layer's diff dir, its size and the CRC-64
//! (Go's ISO table) of its content. Replaying them gives the layer's
//! original tar byte for byte.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use camino::Utf8Path;
use crc_fast::{CrcAlgorithm, Digest as Crc};
use rustix::fs::{Mode, OFlags, ResolveFlags};

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
/// tar-split metadata `meta`; returns the bytes written. Files are opened
/// inside `diff_dir` only (`openat2` with `RESOLVE_IN_ROOT`), and a file
/// whose size or CRC-64 differs from the record fails the replay.
pub(crate) fn assemble(
    meta: impl Read,
    diff_dir: &Utf8Path,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let root = rustix::fs::open(
        diff_dir.as_std_path(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let lines = BufReader::new(flate2::read::GzDecoder::new(meta));
    let mut written = 0u64;
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    for (n, line) in lines.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Entry = serde_json::from_str(&line)
            .map_err(|err| bad(format!("tar-split line {}: {err}", n + 1)))?;
        let payload = match &e.payload {
            Some(p) => STANDARD
                .decode(p)
                .map_err(|err| bad(format!("tar-split line {}: payload: {err}", n + 1)))?,
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
                        .map_err(|err| bad(format!("tar-split line {}: name: {err}", n + 1)))?,
                    (Some(name), None) => name.as_bytes().to_vec(),
                    (None, None) => {
                        return Err(bad(format!(
                            "tar-split line {}: file without a name",
                            n + 1
                        )))
                    }
                };
                written += copy_file(&root, &name, e.size, &payload, out).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("{}: {err}", String::from_utf8_lossy(&name)),
                    )
                })?;
            }
            FILE => {}
            other => {
                return Err(bad(format!(
                    "tar-split line {}: unknown entry type {other}",
                    n + 1
                )))
            }
        }
    }
    Ok(written)
}

/// Copies `size` bytes of file `name` (inside `root`) to `out`, checking
/// its CRC-64 against `crc` (8 bytes, big-endian, as Go's `Sum` gives it).
fn copy_file(
    root: &OwnedFd,
    name: &[u8],
    size: u64,
    crc: &[u8],
    out: &mut dyn Write,
) -> io::Result<u64> {
    let fd = rustix::fs::openat2(
        root,
        name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?;
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
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{copied} bytes where the layer had {size}"),
        ));
    }
    if crc.len() == 8 && sum.finalize().to_be_bytes() != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "content differs from the layer's (CRC-64)",
        ));
    }
    Ok(copied)
}
