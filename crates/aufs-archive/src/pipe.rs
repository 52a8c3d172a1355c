//! Two-stage apply: one thread reads, decompresses and hashes the layer
//! stream, the other parses it and writes the tree.
//!
//! Decompression and the sha256 DiffID are pure CPU work, the tree is mostly
//! syscalls; on separate cores they overlap instead of adding up. Blocks of
//! [`BLOCK_SIZE`] bytes go over a bounded channel (so a slow filesystem holds
//! back reading, and memory stays bounded whatever the layer's size) and come
//! back empty over a second one to be reused.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use sha2::{Digest as _, Sha256};

use crate::chunk::{Chunk, BLOCK_SIZE};
use crate::recording::Msg;

/// Blocks in flight between the two threads (at most 48 MiB).
///
/// Hashing runs at ~1.8 GB/s with SHA extensions, slower than the applying
/// thread writes big files but faster than it creates small ones: a deep
/// channel lets the reader run ahead through stretches of small files and
/// the applier catch up through big ones. On the rootfs benchmark, with 4
/// blocks an apply with a digest took 0.26 s where one without took 0.20 s;
/// with 48, 0.23 s.
pub(crate) const IN_FLIGHT: usize = 48;

/// A filled block, or the read error that ended the stream.
pub(crate) type Block<'m> = io::Result<Chunk<'m>>;

/// What the reading side saw of the whole stream.
#[derive(Debug)]
pub(crate) struct Pumped {
    /// sha256 of every byte read, when asked for.
    pub digest: Option<[u8; 32]>,
}

/// Reads `src` to its end in blocks, hashing them, and sends them to `tx`.
/// Stops early (without error) when the receiving side is gone: it failed and
/// reports why itself. A read error is sent on, to fail there with the
/// entry being read.
pub(crate) fn pump(
    mut src: impl Read,
    digest: bool,
    tx: SyncSender<Block<'_>>,
    empty: Receiver<Vec<u8>>,
) -> Pumped {
    let mut sha = digest.then(Sha256::new);
    loop {
        let mut buf = match empty.try_recv() {
            Ok(b) => b,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0u8; BLOCK_SIZE],
        };
        buf.resize(BLOCK_SIZE, 0);
        let mut got = 0;
        let mut failed = None;
        while got < buf.len() {
            match src.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        buf.truncate(got);
        if let Some(sha) = &mut sha {
            sha.update(&buf);
        }
        let last = got == 0 || failed.is_some();
        if got > 0 && tx.send(Ok(Chunk::Owned(buf))).is_err() {
            break;
        }
        if let Some(e) = failed {
            let _ = tx.send(Err(e));
            break;
        }
        if last {
            break;
        }
    }
    Pumped {
        digest: sha.map(|s| s.finalize().into()),
    }
}

/// [`pump`] for an input already in memory (a mapped file): the blocks are
/// slices of it, so nothing is copied and the reader may run far ahead of the
/// applier without touching more memory.
pub(crate) fn pump_mapped<'m>(data: &'m [u8], digest: bool, tx: SyncSender<Block<'m>>) -> Pumped {
    let mut sha = digest.then(Sha256::new);
    for block in data.chunks(BLOCK_SIZE) {
        if let Some(sha) = &mut sha {
            sha.update(block);
        }
        if tx.send(Ok(Chunk::Mapped(block))).is_err() {
            break;
        }
    }
    Pumped {
        digest: sha.map(|s| s.finalize().into()),
    }
}

/// The receiving end: the stream again, as a [`Read`].
pub(crate) struct BlockReader<'m> {
    rx: Receiver<Block<'m>>,
    back: SyncSender<Vec<u8>>,
    /// Consumed blocks go here (the recording thread) instead of `back`.
    tap: Option<SyncSender<Msg<'m>>>,
    cur: Chunk<'m>,
    pos: usize,
    /// The stream ended with this error: it is returned again on every read.
    failed: Option<(io::ErrorKind, String)>,
}

impl<'m> BlockReader<'m> {
    pub(crate) fn new(
        rx: Receiver<Block<'m>>,
        back: SyncSender<Vec<u8>>,
        tap: Option<SyncSender<Msg<'m>>>,
    ) -> Self {
        Self {
            rx,
            back,
            tap,
            cur: Chunk::Owned(Vec::new()),
            pos: 0,
            failed: None,
        }
    }
}

impl<'m> BlockReader<'m> {
    /// A consumed block goes to the recording thread, or back to be reused.
    fn pass_on(&mut self, done: Chunk<'m>) {
        if done.is_empty() {
            return;
        }
        let done = match &self.tap {
            Some(tap) => match tap.send(Msg::Block(done)) {
                Ok(()) => return,
                // The recording thread stopped; its error is reported by the recorder.
                Err(e) => {
                    self.tap = None;
                    match e.0 {
                        Msg::Block(b) => b,
                        _ => return,
                    }
                }
            },
            None => done,
        };
        done.recycle(&self.back);
    }
}

impl BufRead for BlockReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.cur.len() {
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let done = std::mem::replace(&mut self.cur, next);
                    self.pos = 0;
                    self.pass_on(done);
                }
                Ok(Err(e)) => {
                    self.failed = Some((e.kind(), e.to_string()));
                    return Err(e);
                }
                // The sender is gone only after the last block: end of stream.
                Err(_) => {
                    let last = std::mem::replace(&mut self.cur, Chunk::Owned(Vec::new()));
                    self.pos = 0;
                    self.pass_on(last);
                    return Ok(&[]);
                }
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.cur.len());
    }
}

impl Read for BlockReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    fn through(data: &[u8], digest: bool) -> (Vec<u8>, Pumped) {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (back_tx, back_rx) = sync_channel(IN_FLIGHT);
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut r = BlockReader::new(rx, back_tx, None);
                let mut out = Vec::new();
                let mut small = [0u8; 777];
                loop {
                    let n = r.read(&mut small).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&small[..n]);
                }
                out
            });
            let p = pump(data, digest, tx, back_rx);
            (h.join().unwrap(), p)
        })
    }

    #[test]
    fn passes_every_byte_and_hashes_them() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 3 + 12345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let (out, p) = through(&data, true);
        assert_eq!(out, data);
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(p.digest, Some(want));
        let (out, p) = through(b"", false);
        assert!(out.is_empty());
        assert_eq!(p.digest, None);
    }

    #[test]
    fn read_error_reaches_the_reader() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = b.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (back_tx, back_rx) = sync_channel(IN_FLIGHT);
        let got = std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut r = BlockReader::new(rx, back_tx, None);
                let mut sink = Vec::new();
                r.read_to_end(&mut sink).map(|_| sink.len())
            });
            pump(Failing(5000), false, tx, back_rx);
            h.join().unwrap()
        });
        let err = got.unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn pump_stops_when_the_reader_is_gone() {
        let (tx, rx) = sync_channel(1);
        let (_back_tx, back_rx) = sync_channel(1);
        drop(rx);
        let endless = io::repeat(7);
        let p = pump(endless, true, tx, back_rx);
        assert!(p.digest.is_some());
    }
}
