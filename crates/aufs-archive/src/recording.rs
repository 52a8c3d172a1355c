//! tar-split metadata written on a third thread, off the applying one.
//!
//! The applying thread only notes *what* each stretch of the stream is
//! ([`Deferred`], a [`TarEvents`] sink whose events carry lengths, not bytes) and,
//! once it has consumed a block, passes the block itself on instead of
//! handing it back to the reader. The recording thread ([`replay`]) lines the
//! events up with the blocks and feeds the real writer: copying segments,
//! the CRC-64 of file content and deflate all happen there, then the block
//! goes back to the reader for reuse. Every byte the parser read is
//! described by exactly one event, in stream order, so the replay sees the
//! same calls the writer would have seen on the applying thread; at the end
//! the stream length must match the recorded total.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender};

use crate::chunk::Chunk;
use crate::reader::TarEvents;

/// Messages in flight to the recording thread.
pub(crate) const IN_FLIGHT: usize = 8;
/// Events noted before they are sent on.
const BATCH: usize = 512;
/// Stream bytes covered by the noted events before they are sent on: the
/// recording thread holds the blocks until their events arrive, so this
/// bounds how many it keeps.
const BATCH_BYTES: usize = crate::chunk::BLOCK_SIZE / 2;

/// One [`TarEvents`] call, with the stream bytes it covers left out.
#[derive(Debug)]
pub(crate) enum Event {
    Segment(usize),
    Content {
        len: usize,
        inline: bool,
    },
    FileBegin {
        path: Vec<u8>,
        window: u64,
        real_size: u64,
    },
    Range {
        offset: u64,
        len: u64,
    },
    FileEnd,
    Shadow(u64),
}

impl Event {
    /// Stream bytes the event covers.
    fn bytes(&self) -> usize {
        match self {
            Event::Segment(n) | Event::Content { len: n, .. } => *n,
            _ => 0,
        }
    }
}

/// What the applying thread sends to the recording one.
#[derive(Debug)]
pub(crate) enum Msg<'m> {
    Events(Vec<Event>),
    /// A block of the stream, fully consumed by the parser.
    Block(Chunk<'m>),
    /// The stream ended after this many bytes.
    Finish(u64),
}

/// The applying thread's recorder: notes events and sends them in batches.
pub(crate) struct Deferred<'m> {
    tx: SyncSender<Msg<'m>>,
    batch: Vec<Event>,
    /// Stream bytes the batch covers.
    batch_bytes: usize,
    /// How the recording thread ended.
    result: Receiver<io::Result<()>>,
}

impl<'m> Deferred<'m> {
    pub(crate) fn new(tx: SyncSender<Msg<'m>>, result: Receiver<io::Result<()>>) -> Self {
        Self {
            tx,
            batch: Vec::with_capacity(BATCH),
            batch_bytes: 0,
            result,
        }
    }

    fn note(&mut self, ev: Event) -> io::Result<()> {
        self.batch_bytes += ev.bytes();
        // Adjacent stream stretches of the same kind merge into one event.
        match (self.batch.last_mut(), &ev) {
            (Some(Event::Segment(a)), Event::Segment(b)) => *a += b,
            (
                Some(Event::Content { len: a, inline: ia }),
                Event::Content { len: b, inline: ib },
            ) if ia == ib => *a += b,
            _ => self.batch.push(ev),
        }
        if self.batch.len() >= BATCH || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.send(Msg::Events(batch))
    }

    fn send(&mut self, msg: Msg<'m>) -> io::Result<()> {
        if self.tx.send(msg).is_ok() {
            return Ok(());
        }
        // The recording thread stopped: say why.
        Err(match self.result.recv() {
            Ok(Err(e)) => e,
            _ => io::Error::other("the tar-split recording thread stopped"),
        })
    }
}

impl TarEvents for Deferred<'_> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.note(Event::Segment(bytes.len()))
    }

    fn file_begin(&mut self, path: &[u8], window: u64, real_size: u64) -> io::Result<()> {
        self.note(Event::FileBegin {
            path: path.to_vec(),
            window,
            real_size,
        })
    }

    fn range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.note(Event::Range { offset, len })
    }

    fn content(&mut self, bytes: &[u8], inline: bool) -> io::Result<()> {
        self.note(Event::Content {
            len: bytes.len(),
            inline,
        })
    }

    fn file_end(&mut self) -> io::Result<()> {
        self.note(Event::FileEnd)
    }

    fn shadow(&mut self, id: u64) -> io::Result<()> {
        self.note(Event::Shadow(id))
    }

    fn finish(mut self: Box<Self>, total: u64) -> io::Result<()> {
        self.flush()?;
        self.send(Msg::Finish(total))?;
        match self.result.recv() {
            Ok(r) => r,
            Err(_) => Err(io::Error::other("the tar-split recording thread stopped")),
        }
    }
}

/// The recording thread: replays the events against the blocks into `out`,
/// returns consumed blocks on `back`, and reports on `result`. Ends quietly
/// when the applying side is gone without finishing (it reports its own
/// error).
pub(crate) fn replay(
    rx: Receiver<Msg<'_>>,
    out: Box<dyn TarEvents + '_>,
    back: SyncSender<Vec<u8>>,
    result: SyncSender<io::Result<()>>,
) {
    let mut r = Replay {
        out: Some(out),
        back,
        blocks: VecDeque::new(),
        pos: 0,
        avail: 0,
        consumed: 0,
        pending: VecDeque::new(),
    };
    let outcome = (|| loop {
        match rx.recv() {
            Ok(Msg::Events(evs)) => r.pending.extend(evs),
            Ok(Msg::Block(b)) => {
                r.avail += b.len();
                r.blocks.push_back(b);
            }
            Ok(Msg::Finish(total)) => return Some(r.finish(total)),
            Err(_) => return None,
        }
        if let Err(e) = r.drain() {
            return Some(Err(e));
        }
    })();
    if let Some(res) = outcome {
        let _ = result.send(res);
    }
}

struct Replay<'m> {
    out: Option<Box<dyn TarEvents + 'm>>,
    back: SyncSender<Vec<u8>>,
    /// Stream blocks not yet fully replayed; `pos` into the first.
    blocks: VecDeque<Chunk<'m>>,
    pos: usize,
    /// Bytes in `blocks` not yet replayed.
    avail: usize,
    /// Stream bytes replayed.
    consumed: u64,
    /// Events waiting for their bytes.
    pending: VecDeque<Event>,
}

impl<'m> Replay<'m> {
    fn out(&mut self) -> &mut (dyn TarEvents + 'm) {
        self.out
            .as_deref_mut()
            .expect("writer present until finish")
    }

    /// Replays every pending event whose bytes have arrived.
    fn drain(&mut self) -> io::Result<()> {
        while let Some(ev) = self.pending.front() {
            if ev.bytes() > self.avail {
                return Ok(());
            }
            let ev = self.pending.pop_front().expect("front exists");
            match ev {
                Event::Segment(n) => self.bytes(n, None)?,
                Event::Content { len, inline } => self.bytes(len, Some(inline))?,
                Event::FileBegin {
                    path,
                    window,
                    real_size,
                } => self.out().file_begin(&path, window, real_size)?,
                Event::Range { offset, len } => self.out().range(offset, len)?,
                Event::FileEnd => self.out().file_end()?,
                Event::Shadow(id) => self.out().shadow(id)?,
            }
        }
        Ok(())
    }

    /// Hands the next `n` stream bytes to the writer, as a segment (`None`)
    /// or as content.
    fn bytes(&mut self, mut n: usize, content: Option<bool>) -> io::Result<()> {
        self.avail -= n;
        self.consumed += n as u64;
        while n > 0 {
            let block = self.blocks.front().expect("bytes counted in avail");
            let take = n.min(block.len() - self.pos);
            let slice = &block[self.pos..self.pos + take];
            let out = self
                .out
                .as_deref_mut()
                .expect("writer present until finish");
            match content {
                None => out.raw(slice)?,
                Some(inline) => out.content(slice, inline)?,
            }
            self.pos += take;
            n -= take;
            if self.pos == block.len() {
                let done = self.blocks.pop_front().expect("front exists");
                self.pos = 0;
                done.recycle(&self.back);
            }
        }
        Ok(())
    }

    fn finish(&mut self, total: u64) -> io::Result<()> {
        self.drain()?;
        if !self.pending.is_empty() || self.avail != 0 || self.consumed != total {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "tar-split events cover {} of {total} stream bytes",
                    self.consumed
                ),
            ));
        }
        self.out.take().expect("finished once").finish(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;
    use std::sync::{Arc, Mutex};

    /// Logs calls, merging adjacent stretches of bytes of the same kind
    /// (how they are cut is not part of the record).
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<Call>>>);

    /// A call's kind and arguments, and the bytes it carried.
    type Call = (String, Vec<u8>);

    impl Log {
        fn put(&self, what: &str, bytes: &[u8]) {
            let mut v = self.0.lock().unwrap();
            match v.last_mut() {
                Some((w, b)) if w == what && (what == "seg" || what.starts_with("content")) => {
                    b.extend_from_slice(bytes)
                }
                _ => v.push((what.to_owned(), bytes.to_vec())),
            }
        }
    }

    impl TarEvents for Log {
        fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.put("seg", bytes);
            Ok(())
        }
        fn file_begin(&mut self, path: &[u8], window: u64, real_size: u64) -> io::Result<()> {
            self.put(&format!("file {window} {real_size}"), path);
            Ok(())
        }
        fn range(&mut self, offset: u64, len: u64) -> io::Result<()> {
            self.put(&format!("range {offset} {len}"), b"");
            Ok(())
        }
        fn content(&mut self, bytes: &[u8], inline: bool) -> io::Result<()> {
            self.put(&format!("content {inline}"), bytes);
            Ok(())
        }
        fn file_end(&mut self) -> io::Result<()> {
            self.put("end", b"");
            Ok(())
        }
        fn shadow(&mut self, id: u64) -> io::Result<()> {
            if id == 99 {
                return Err(io::Error::other("disk full"));
            }
            self.put(&format!("shadow {id}"), b"");
            Ok(())
        }
        fn finish(self: Box<Self>, total: u64) -> io::Result<()> {
            self.put(&format!("finish {total}"), b"");
            Ok(())
        }
    }

    /// Calls `rec` as the parser would over `stream`, with `shadow_id` as the shadow record.
    fn drive(rec: &mut dyn TarEvents, stream: &[u8], shadow_id: u64) -> io::Result<()> {
        rec.raw(&stream[..512])?;
        rec.file_begin(b"a/b", 2000, 2000)?;
        rec.range(0, 1500)?;
        rec.content(&stream[512..1212], false)?;
        rec.content(&stream[1212..2012], false)?;
        rec.content(&stream[2012..2512], true)?;
        rec.file_end()?;
        rec.raw(&stream[2512..2560])?;
        rec.shadow(shadow_id)?;
        for c in stream[2560..].chunks(512) {
            rec.raw(c)?;
        }
        Ok(())
    }

    /// Runs `drive` through a [`Deferred`] and [`replay`], the stream cut into `cut`-byte blocks.
    fn deferred(stream: &[u8], cut: usize, shadow_id: u64, total: u64) -> (Log, io::Result<()>) {
        let log = Log::default();
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (res_tx, res_rx) = sync_channel(1);
        let (back_tx, _back_rx) = sync_channel(16);
        let out = Box::new(log.clone());
        let res = std::thread::scope(|s| {
            s.spawn(move || replay(rx, out, back_tx, res_tx));
            let mut d = Box::new(Deferred::new(tx.clone(), res_rx));
            drive(d.as_mut(), stream, shadow_id)?;
            for b in stream.chunks(cut) {
                let _ = tx.send(Msg::Block(Chunk::Owned(b.to_vec())));
            }
            drop(tx);
            d.finish(total)
        });
        (log, res)
    }

    #[test]
    fn replay_makes_the_same_calls_as_recording_directly() {
        let stream: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 253) as u8).collect();
        let direct = Log::default();
        let mut d = Box::new(direct.clone());
        drive(d.as_mut(), &stream, 3).unwrap();
        d.finish(stream.len() as u64).unwrap();
        let want = direct.0.lock().unwrap().clone();
        assert!(want
            .iter()
            .any(|(w, b)| w == "content true" && b.len() == 500));
        for cut in [1, 100, 511, 1000, 5000] {
            let (log, res) = deferred(&stream, cut, 3, stream.len() as u64);
            res.unwrap();
            assert_eq!(*log.0.lock().unwrap(), want, "blocks of {cut} bytes");
        }
    }

    #[test]
    fn a_length_mismatch_or_writer_error_is_reported() {
        let stream: Vec<u8> = vec![1; 3000];
        let (_, res) = deferred(&stream, 1000, 3, 3001);
        let err = res.unwrap_err();
        assert!(err.to_string().contains("3000 of 3001"), "{err}");
        let (log, res) = deferred(&stream, 1000, 99, 3000);
        let err = res.unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(!log
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(w, _)| w.starts_with("finish")));
    }
}
