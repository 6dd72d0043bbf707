//! Packet framing.
//!
//! Every packet is a 3-byte little-endian payload length, a 1-byte sequence
//! id and the payload. A payload of exactly `0xFFFFFF` bytes means the
//! logical packet continues in the next one (which may be empty). Sequence
//! ids start at 0 with each command (and with the server greeting) and go up
//! by one per packet, wrapping at 255.

use std::borrow::Cow;

use bytes::BytesMut;

/// Largest payload of one physical packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("packet of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// Where one logical packet lies in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logical {
    /// Bytes from the buffer start through the last physical packet.
    pub raw_len: usize,
    /// Sequence id of the first physical packet.
    pub first_seq: u8,
    /// Sequence id of the last physical packet.
    pub last_seq: u8,
    /// Number of physical packets.
    pub packets: usize,
    /// Total payload length.
    pub payload_len: usize,
}

/// Finds the logical packet at the start of `buf`; `None` if it is not
/// complete yet. `max` bounds the payload.
pub fn locate(buf: &[u8], max: usize) -> Result<Option<Logical>, FrameError> {
    let mut at = 0;
    let mut payload_len = 0;
    let mut packets = 0;
    let mut first_seq = 0;
    loop {
        let Some(h) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let seq = h[3];
        if packets == 0 {
            first_seq = seq;
        }
        payload_len += len;
        if payload_len > max {
            return Err(FrameError::TooLarge {
                size: payload_len,
                max,
            });
        }
        if buf.len() < at + 4 + len {
            return Ok(None);
        }
        at += 4 + len;
        packets += 1;
        if len < MAX_PAYLOAD {
            return Ok(Some(Logical {
                raw_len: at,
                first_seq,
                last_seq: seq,
                packets,
                payload_len,
            }));
        }
    }
}

/// The payload of a located logical packet: borrowed when it is one physical
/// packet, joined otherwise.
pub fn payload<'a>(buf: &'a [u8], l: &Logical) -> Cow<'a, [u8]> {
    if l.packets == 1 {
        return Cow::Borrowed(&buf[4..l.raw_len]);
    }
    let mut out = Vec::with_capacity(l.payload_len);
    let mut at = 0;
    while at < l.raw_len {
        let len =
            usize::from(buf[at]) | usize::from(buf[at + 1]) << 8 | usize::from(buf[at + 2]) << 16;
        out.extend_from_slice(&buf[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    Cow::Owned(out)
}

/// Appends `payload` as packets starting at sequence id `seq`, splitting at
/// 16 MiB; returns the next sequence id.
pub fn write_packet(out: &mut BytesMut, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_packet_round_trip() {
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 7, b"\x03SELECT 1"), 8);
        assert_eq!(&out[..4], &[9, 0, 0, 7]);
        let l = locate(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (l.raw_len, l.first_seq, l.last_seq, l.packets),
            (13, 7, 7, 1)
        );
        assert_eq!(&*payload(&out, &l), b"\x03SELECT 1");
        assert_eq!(locate(&out[..12], 1 << 20).unwrap(), None);
        assert_eq!(locate(&out[..3], 1 << 20).unwrap(), None);
    }

    #[test]
    fn exactly_16mib_gets_an_empty_tail_and_wraps_seq() {
        let big = vec![b'x'; MAX_PAYLOAD];
        let mut out = BytesMut::new();
        assert_eq!(write_packet(&mut out, 255, &big), 1);
        assert_eq!(out.len(), MAX_PAYLOAD + 8);
        assert_eq!(&out[MAX_PAYLOAD + 4..], &[0, 0, 0, 0]);
        let l = locate(&out, 64 << 20).unwrap().unwrap();
        assert_eq!((l.packets, l.first_seq, l.last_seq), (2, 255, 0));
        assert_eq!(payload(&out, &l).len(), MAX_PAYLOAD);
    }

    #[test]
    fn continuation_joins_and_limit_applies() {
        let big = vec![7u8; MAX_PAYLOAD + 10];
        let mut out = BytesMut::new();
        write_packet(&mut out, 0, &big);
        let l = locate(&out, 64 << 20).unwrap().unwrap();
        assert_eq!(l.payload_len, MAX_PAYLOAD + 10);
        assert_eq!(&*payload(&out, &l), &big[..]);
        assert!(matches!(
            locate(&out, 1000),
            Err(FrameError::TooLarge { .. })
        ));
        // Incomplete second packet.
        assert_eq!(locate(&out[..out.len() - 1], 64 << 20).unwrap(), None);
    }
}
