//! Framing: splitting a byte stream into tagged protocol messages.
//!
//! After startup every message in both directions is `tag: u8`, then
//! `len: i32` (big-endian, counting itself but not the tag), then `len - 4`
//! bytes of body. [`Frame`] holds the whole message, header included, as
//! [`Bytes`], so forwarding it is a reference-counted slice of the read buffer
//! and never a re-encode.
//!
//! [`peek_header`] lets a session walk the frames in its read buffer without
//! splitting them off, so that a run of messages policy does not change can be
//! written onward in one `write` straight from the buffer.

use bytes::{Bytes, BytesMut};

/// Length of the tag and the length word.
pub const HEADER_LEN: usize = 5;

/// The default cap on one message, in bytes (header included).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A framing failure. Either one is fatal for the connection: the stream can
/// no longer be split reliably.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("message '{}' declares length {len}, above the limit of {max} bytes (limits.max_message_size)", char::from(*.tag))]
    TooLarge { tag: u8, len: usize, max: usize },
    #[error("message '{}' declares an invalid length {len}", char::from(*.tag))]
    BadLength { tag: u8, len: i64 },
}

/// The header of the next message in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Total bytes of the message, header included.
    pub total_len: usize,
}

/// Reads the header at the start of `buf`, if five bytes are there, and checks
/// the declared length against `max`.
pub fn peek_header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let tag = head[0];
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag,
            len: i64::from(len),
        });
    }
    let total_len = len as usize + 1;
    if total_len > max {
        return Err(FrameError::TooLarge {
            tag,
            len: total_len,
            max,
        });
    }
    Ok(Some(Header { tag, total_len }))
}

/// One complete message: tag, length and body, exactly as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// Wraps a complete encoded message. The caller guarantees `bytes` holds
    /// a whole message (as [`split_frame`] does).
    pub fn from_bytes(bytes: Bytes) -> Option<Self> {
        let header = peek_header(&bytes, usize::MAX).ok()??;
        (header.total_len == bytes.len()).then_some(Frame { bytes })
    }

    pub fn tag(&self) -> u8 {
        self.bytes[0]
    }

    /// The body, after the tag and length.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

/// Splits one complete message off the front of `buf`, if one is there.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    match peek_header(buf, max)? {
        Some(h) if buf.len() >= h.total_len => Ok(Some(Frame {
            bytes: buf.split_to(h.total_len).freeze(),
        })),
        _ => Ok(None),
    }
}

/// Encodes a message with the given tag around a body written by `f`.
pub fn encode(tag: u8, buf: &mut BytesMut, f: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.extend_from_slice(&[tag, 0, 0, 0, 0]);
    f(buf);
    let len = (buf.len() - start - 1) as i32;
    buf[start + 1..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_frames_only() {
        let mut buf = BytesMut::from(&b"Q\x00\x00\x00\x0dSELECT 1\x00Q\x00\x00"[..]);
        let f = split_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"SELECT 1\0");
        assert_eq!(split_frame(&mut buf, 1024).unwrap(), None);
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn rejects_bad_and_oversized_lengths() {
        let mut buf = BytesMut::from(&b"Q\x00\x00\x00\x03"[..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(FrameError::BadLength { .. })
        ));
        let mut buf = BytesMut::from(&b"D\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&b"D\xff\xff\xff\xff"[..]);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(FrameError::BadLength { .. })
        ));
    }

    #[test]
    fn encode_round_trips() {
        let mut buf = BytesMut::new();
        encode(b'Z', &mut buf, |b| b.extend_from_slice(b"I"));
        assert_eq!(&buf[..], b"Z\x00\x00\x00\x05I");
        let f = Frame::from_bytes(buf.freeze()).unwrap();
        assert_eq!(f.body(), b"I");
    }
}
