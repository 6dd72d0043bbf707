//! The untagged messages that open a connection.
//!
//! A client's first message has no tag: `len: i32`, then `code: i32`, then a
//! body. The code says which message it is:
//!
//! | code | message |
//! |------|---------|
//! | 80877103 | SSLRequest |
//! | 80877104 | GSSENCRequest |
//! | 80877102 | CancelRequest (pid, secret key) |
//! | 0x0003_xxxx | StartupMessage, protocol 3.x, then `name\0value\0 ... \0` |
//!
//! Protocol minor versions above 0 and `_pq_.` options are answered with a
//! NegotiateProtocolVersion message by the session (see
//! [`crate::pg::backend::negotiate_protocol_version`]).

use bytes::{BufMut, BytesMut};

use super::cstr::Reader;

pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;
/// The largest startup packet accepted, as in Postgres (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid startup packet length {0}")]
    BadLength(i64),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("malformed startup packet: {0}")]
    Malformed(&'static str),
}

/// One decoded opening message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    CancelRequest { pid: i32, secret_key: i32 },
    Startup(StartupMessage),
}

/// A StartupMessage: the protocol version the client asked for and its
/// parameters in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub major: u16,
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Protocol options (`_pq_.*`) the client asked for; airlock supports none.
    pub fn protocol_options(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("_pq_."))
    }

    /// Encodes a protocol 3.0 StartupMessage with the given parameters.
    pub fn encode(params: &[(&str, &str)], buf: &mut BytesMut) {
        let start = buf.len();
        buf.put_i32(0);
        buf.put_i32(PROTOCOL_3_0);
        for (k, v) in params {
            buf.put_slice(k.as_bytes());
            buf.put_u8(0);
            buf.put_slice(v.as_bytes());
            buf.put_u8(0);
        }
        buf.put_u8(0);
        let len = (buf.len() - start) as i32;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Decodes an opening message from the front of `buf` if it is complete.
pub fn split_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(StartupError::BadLength(i64::from(len)));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let packet = buf.split_to(len);
    parse_packet(&packet[4..]).map(Some)
}

fn parse_packet(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let mut r = Reader::new(body);
    let code = r.i32().ok_or(StartupError::Malformed("missing code"))?;
    match code {
        SSL_REQUEST_CODE => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE => {
            let pid = r.i32().ok_or(StartupError::Malformed("short cancel"))?;
            let secret_key = r.i32().ok_or(StartupError::Malformed("short cancel"))?;
            Ok(StartupPacket::CancelRequest { pid, secret_key })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedProtocol { major, minor });
            }
            let mut params = Vec::new();
            loop {
                let key = r.cstr().ok_or(StartupError::Malformed("unterminated"))?;
                if key.is_empty() {
                    break;
                }
                let value = r.cstr().ok_or(StartupError::Malformed("missing value"))?;
                let key = std::str::from_utf8(key)
                    .map_err(|_| StartupError::Malformed("parameter name is not UTF-8"))?;
                let value = std::str::from_utf8(value)
                    .map_err(|_| StartupError::Malformed("parameter value is not UTF-8"))?;
                params.push((key.to_owned(), value.to_owned()));
            }
            if !r.is_empty() {
                return Err(StartupError::Malformed("trailing bytes"));
            }
            Ok(StartupPacket::Startup(StartupMessage {
                major,
                minor,
                params,
            }))
        }
    }
}

/// Encodes a CancelRequest.
pub fn encode_cancel(pid: i32, secret_key: i32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&16i32.to_be_bytes());
    out[4..8].copy_from_slice(&CANCEL_REQUEST_CODE.to_be_bytes());
    out[8..12].copy_from_slice(&pid.to_be_bytes());
    out[12..].copy_from_slice(&secret_key.to_be_bytes());
    out
}

/// Encodes an SSLRequest.
pub fn encode_ssl_request() -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&8i32.to_be_bytes());
    out[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let mut buf = BytesMut::new();
        StartupMessage::encode(&[("user", "a"), ("options", "-c x=y")], &mut buf);
        let Some(StartupPacket::Startup(m)) = split_startup(&mut buf).unwrap() else {
            panic!("not a startup");
        };
        assert_eq!((m.major, m.minor), (3, 0));
        assert_eq!(m.param("options"), Some("-c x=y"));
        assert!(buf.is_empty());
    }

    #[test]
    fn special_requests() {
        let mut buf = BytesMut::from(&encode_ssl_request()[..]);
        assert_eq!(
            split_startup(&mut buf).unwrap(),
            Some(StartupPacket::SslRequest)
        );
        let mut buf = BytesMut::from(&encode_cancel(7, -9)[..]);
        assert_eq!(
            split_startup(&mut buf).unwrap(),
            Some(StartupPacket::CancelRequest {
                pid: 7,
                secret_key: -9
            })
        );
    }

    #[test]
    fn hostile_input_is_an_error() {
        for bad in [
            &b"\x00\x00\x00\x02"[..],
            &b"\x7f\x00\x00\x00"[..],
            &b"\x00\x00\x00\x08\x00\x02\x00\x00"[..],
            &b"\x00\x00\x00\x0b\x00\x03\x00\x00ab\0"[..],
            &b"\x00\x00\x00\x0a\x00\x03\x00\x00\xff\0"[..],
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(split_startup(&mut buf).is_err(), "{bad:?}");
        }
    }
}
