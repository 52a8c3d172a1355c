//! Layer tarballs between HTTP bodies and the driver's blocking readers and
//! writers, through bounded channels: a tarball of any size passes through
//! a few chunks of memory, and a slow side holds the other back.

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Chunks in flight between the two sides.
pub const CHANNEL_DEPTH: usize = 8;

/// How much a [`ChannelWriter`] gathers before it sends a chunk.
pub const CHUNK: usize = 256 * 1024;

/// One chunk, or the error that ended the stream (its message).
pub type Chunk = Result<Bytes, String>;

/// A blocking [`Write`] that sends its bytes, in chunks of [`CHUNK`], to a
/// channel read by an HTTP body. Use it on the blocking pool only; call
/// `flush` there when done.
#[derive(Debug)]
pub struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: BytesMut,
}

impl ChannelWriter {
    /// A writer into `tx`.
    pub fn new(tx: mpsc::Sender<Chunk>) -> Self {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// An HTTP body made of the chunks a [`ChannelWriter`] sends; an error
/// chunk ends it with an error, which cuts the connection, so the client
/// never takes a cut tarball for a whole one.
#[derive(Debug)]
pub struct ChannelBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Chunk>,
}

impl ChannelBody {
    /// `first` (already received), then whatever `rx` brings.
    pub fn new(first: Option<Bytes>, rx: mpsc::Receiver<Chunk>) -> Self {
        ChannelBody { first, rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A blocking [`Read`] over the chunks of a request body that a task
/// forwards (see [`forward_body`]). Use it on the blocking pool only.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    cur: Bytes,
}

impl ChannelReader {
    /// A reader of what arrives on `rx`.
    pub fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Sends the data frames of `body` to `tx` until the body ends, the body
/// fails (its error is sent) or the reader is gone; in that last case the
/// rest of the body is handed back, to be drained.
pub async fn forward_body<B>(mut body: B, tx: mpsc::Sender<Chunk>) -> Option<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        let item = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => Ok(data),
                Err(_trailers) => continue,
            },
            Err(e) => Err(format!("reading the request body: {e}")),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() {
            return Some(body);
        }
        if failed {
            return None;
        }
    }
    None
}

/// Reads what is left of a request body and throws it away. A reply sent
/// while the client still writes its body would otherwise end in a closed
/// connection (a reset on a Unix socket) instead of the reply: the client
/// is told why the call failed, and a tarball's trailing padding after its
/// end-of-archive blocks is taken as a well-behaved client sends it.
pub async fn drain<B>(mut body: B)
where
    B: Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            return;
        }
    }
}
