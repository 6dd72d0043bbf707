//! The relay: moving frames between client and server once a session is up.
//!
//! [`pump`] runs one direction. It reads whatever the socket has, walks the
//! complete frames in the buffer, asks the direction's [`Side`] what to do with
//! each, and writes the result onward in a single write. Frames the side
//! passes are written straight from the read buffer: no copy into an output
//! buffer, no re-encode. Only when a side replaces or drops a frame is an
//! output buffer assembled.
//!
//! Writes are coalesced: one write per read, so a burst of small messages
//! leaves in one packet and the peer is never kept waiting for data airlock
//! already has. Back-pressure is natural: nothing more is read from one peer
//! until what was read has been written to the other.
//!
//! A frame larger than [`STREAM_THRESHOLD`] whose tag the side marks
//! streamable (DataRow, CopyData) is forwarded as it arrives instead of being
//! buffered whole, so memory stays bounded by the buffer size, not the value
//! size.
//!
//! A side may also [`Verdict::Hold`] a frame (a statement waiting for a
//! human's approval). The pump then writes everything before it, awaits
//! [`Side::resolve`] for the held frame's verdict, and only then goes on
//! with the frames after it, so nothing overtakes the held statement. While
//! it waits it keeps reading (up to [`HOLD_READ_LIMIT`] bytes) to notice a
//! client that hangs up.

use std::future::Future;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use airlock_protocol::pg::frame::{peek_header, FrameError};

use super::error::SessionError;
use crate::wake_gate::WakeGate;

/// Frames above this size that are streamable are not buffered whole.
pub const STREAM_THRESHOLD: usize = 256 * 1024;
/// How much a read buffer grows by when reads keep filling it.
const READ_BUF: usize = 64 * 1024;
/// A read buffer with less room than this is grown before reading. Buffers
/// start small (see `Conn`) so an idle session holds little memory; a large
/// message grows its buffer, which then stays.
const MIN_SPARE: usize = 512;
/// Most bytes buffered from the reader while a frame is held.
pub const HOLD_READ_LIMIT: usize = 1024 * 1024;

/// What to do with one complete frame.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the exact bytes received.
    Pass,
    /// Send these bytes instead.
    Replace(Bytes),
    /// Forward this frame, then stop this direction.
    PassAndStop,
    /// Wait: [`Side::resolve`] gives this frame's verdict later. Frames
    /// after it are not looked at until then.
    Hold,
}

/// Why a direction stopped without error.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The reading peer closed its end.
    PeerClosed,
    /// The side asked to stop (Terminate, shutdown at an idle point).
    BySide,
}

/// The per-direction logic.
pub trait Side {
    /// May a frame with this tag be forwarded before it has fully arrived?
    fn streamable(&self, tag: u8) -> bool;
    /// Judges one complete frame (header included).
    fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError>;
    /// Told about a frame that was streamed through without being seen whole.
    fn on_streamed(&mut self, _tag: u8) {}
    /// The verdict on the frame [`Side::on_frame`] held. Dropping the
    /// future (the reader closed) must leave the side consistent.
    fn resolve(&mut self) -> impl Future<Output = Result<Verdict, SessionError>> + Send {
        async {
            Err(SessionError::Protocol(
                "internal error: a frame was held by a side that cannot resolve it".into(),
            ))
        }
    }
    /// Waits until this direction should stop on its own accord, e.g. an idle
    /// timeout or shutdown. Created once per [`pump`] and polled alongside
    /// every read, so it must not borrow the side: it may hold clones and
    /// the side's shared references.
    fn interrupt(&self) -> impl Future<Output = Result<Stopped, SessionError>> + Send + use<Self> {
        std::future::pending()
    }
}

/// Runs one direction until the peer closes, the side stops it, or an error.
pub async fn pump<R, W, S>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut BytesMut,
    max_message: usize,
    side: &mut S,
) -> Result<Stopped, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: Side,
{
    let mut out = BytesMut::new();
    // One interrupt for the whole run: creating it per read would register
    // and drop a timer and a shutdown waiter at every message.
    // Gated: polled only when its own timer or channel woke it, not at
    // every read (see `wake_gate`).
    let interrupt = WakeGate::new(side.interrupt());
    tokio::pin!(interrupt);
    // Bytes of a streamed frame still to forward as they arrive.
    let mut streaming: usize = 0;
    // The last read filled all the room the buffer had.
    let mut filled = false;
    loop {
        // Forward whatever is buffered and complete.
        if !buf.is_empty() {
            if streaming > 0 {
                let n = streaming.min(buf.len());
                writer.write_all(&buf[..n]).await?;
                buf.advance(n);
                streaming -= n;
                continue;
            }
            match process(buf, max_message, side, &mut out)? {
                Processed::Ready { consumed, stop } => {
                    if !out.is_empty() {
                        writer.write_all(&out).await?;
                        out.clear();
                    }
                    if consumed > 0 {
                        writer.write_all(&buf[..consumed]).await?;
                        buf.advance(consumed);
                    }
                    if stop {
                        writer.flush().await?;
                        return Ok(Stopped::BySide);
                    }
                }
                Processed::Held { consumed, len } => {
                    if !out.is_empty() {
                        writer.write_all(&out).await?;
                        out.clear();
                    }
                    writer.write_all(&buf[..consumed]).await?;
                    buf.advance(consumed);
                    writer.flush().await?;
                    // Boxed: holds are rare, and inline the wait's state
                    // would enlarge every session for its whole life.
                    let Some(verdict) = Box::pin(hold(reader, buf, side)).await? else {
                        return Ok(Stopped::PeerClosed);
                    };
                    let stop = matches!(verdict, Verdict::PassAndStop);
                    match verdict {
                        Verdict::Pass | Verdict::PassAndStop => {
                            writer.write_all(&buf[..len]).await?
                        }
                        Verdict::Replace(bytes) => writer.write_all(&bytes).await?,
                        Verdict::Hold => {
                            return Err(SessionError::Protocol(
                                "internal error: a resolved frame was held again".into(),
                            ))
                        }
                    }
                    buf.advance(len);
                    if stop {
                        writer.flush().await?;
                        return Ok(Stopped::BySide);
                    }
                    continue;
                }
                Processed::StartStream { tag, total_len } => {
                    side.on_streamed(tag);
                    let n = buf.len();
                    writer.write_all(&buf[..n]).await?;
                    buf.advance(n);
                    streaming = total_len - n;
                    continue;
                }
            }
        }
        writer.flush().await?;
        if buf.capacity() - buf.len() < MIN_SPARE {
            // Reclaims the space of bytes already forwarded when it can; a
            // buffer grows by a lot only while reads keep filling it (a
            // large result streaming), not because small messages went by.
            buf.reserve(if filled { READ_BUF } else { MIN_SPARE });
        }
        let room = buf.capacity() - buf.len();
        let n = tokio::select! {
            biased;
            r = reader.read_buf(buf) => r?,
            stop = &mut interrupt => return stop,
        };
        if n == 0 {
            return Ok(Stopped::PeerClosed);
        }
        filled = n == room;
    }
}

/// Awaits the verdict on a held frame, reading on meanwhile (into `buf`,
/// behind the held frame) so that a client hanging up is noticed. `None`:
/// the reader closed; the resolve future is dropped.
async fn hold<R, S>(
    reader: &mut R,
    buf: &mut BytesMut,
    side: &mut S,
) -> Result<Option<Verdict>, SessionError>
where
    R: AsyncRead + Unpin,
    S: Side,
{
    let resolve = side.resolve();
    tokio::pin!(resolve);
    loop {
        tokio::select! {
            biased;
            verdict = &mut resolve => return verdict.map(Some),
            n = reader.read_buf(buf), if buf.len() < HOLD_READ_LIMIT => {
                if n? == 0 {
                    return Ok(None);
                }
            }
        }
    }
}

enum Processed {
    /// Frames were handled; see [`process`] for what to write.
    Ready { consumed: usize, stop: bool },
    /// As `Ready` for the frames before it; then the frame of `len` bytes at
    /// `buf[consumed..]` is held (see [`Side::resolve`]).
    Held { consumed: usize, len: usize },
    /// The frame at the front is large and streamable: forward as it comes.
    StartStream { tag: u8, total_len: usize },
}

/// Walks the complete frames at the front of `buf`.
///
/// On return either `out` is empty and `buf[..consumed]` is to be written
/// as is, or `out` holds everything to write for `buf[..consumed]`.
fn process<S: Side>(
    buf: &mut BytesMut,
    max: usize,
    side: &mut S,
    out: &mut BytesMut,
) -> Result<Processed, SessionError> {
    let mut pos = 0;
    // Start of the run of passed frames not yet copied to `out`.
    let mut run = 0;
    let mut rewritten = false;
    let mut stop = false;
    while let Some(h) = peek_header(&buf[pos..], max).map_err(frame_err)? {
        let available = buf.len() - pos;
        if available < h.total_len {
            if pos == 0 && h.total_len > STREAM_THRESHOLD && side.streamable(h.tag) {
                return Ok(Processed::StartStream {
                    tag: h.tag,
                    total_len: h.total_len,
                });
            }
            if pos == 0 {
                buf.reserve(h.total_len - available);
            }
            break;
        }
        let frame = &buf[pos..pos + h.total_len];
        match side.on_frame(frame)? {
            Verdict::Pass => {}
            Verdict::PassAndStop => stop = true,
            Verdict::Hold => {
                if rewritten {
                    out.extend_from_slice(&buf[run..pos]);
                    buf.advance(pos);
                    return Ok(Processed::Held {
                        consumed: 0,
                        len: h.total_len,
                    });
                }
                return Ok(Processed::Held {
                    consumed: pos,
                    len: h.total_len,
                });
            }
            Verdict::Replace(bytes) => {
                out.extend_from_slice(&buf[run..pos]);
                out.extend_from_slice(&bytes);
                run = pos + h.total_len;
                rewritten = true;
            }
        }
        pos += h.total_len;
        if stop {
            break;
        }
    }
    if rewritten {
        out.extend_from_slice(&buf[run..pos]);
        buf.advance(pos);
        return Ok(Processed::Ready { consumed: 0, stop });
    }
    Ok(Processed::Ready {
        consumed: pos,
        stop,
    })
}

fn frame_err(e: FrameError) -> SessionError {
    SessionError::Protocol(e.to_string())
}
