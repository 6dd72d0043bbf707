//! Server messages: builders for the ones airlock originates, and small views
//! of the ones the session tracks.
//!
//! airlock speaks as a server to the client only during startup and
//! authentication, and when it refuses something (an ErrorResponse and, at a
//! sync point, a ReadyForQuery). Everything else the client receives is the
//! upstream server's bytes, forwarded as they came.
//!
//! Message tags (server to client) that sessions look at:
//!
//! | tag | message | | tag | message |
//! |-----|---------|-|-----|---------|
//! | `R` | Authentication* | | `E` | ErrorResponse |
//! | `K` | BackendKeyData | | `N` | NoticeResponse |
//! | `S` | ParameterStatus | | `A` | NotificationResponse |
//! | `Z` | ReadyForQuery | | `T` | RowDescription |
//! | `C` | CommandComplete | | `D` | DataRow |
//! | `G`/`H`/`W` | CopyIn/Out/Both | | `v` | NegotiateProtocolVersion |

use bytes::{BufMut, BytesMut};

use super::cstr::Reader;
use super::frame::encode;

pub const AUTHENTICATION: u8 = b'R';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const PARAMETER_STATUS: u8 = b'S';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const NOTIFICATION_RESPONSE: u8 = b'A';
pub const ROW_DESCRIPTION: u8 = b'T';
pub const DATA_ROW: u8 = b'D';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const COPY_IN_RESPONSE: u8 = b'G';
pub const COPY_OUT_RESPONSE: u8 = b'H';
pub const COPY_BOTH_RESPONSE: u8 = b'W';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';

/// Authentication request codes.
pub mod auth_code {
    pub const OK: i32 = 0;
    pub const CLEARTEXT: i32 = 3;
    pub const MD5: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

/// Severity of an error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// ErrorResponse with severity, SQLSTATE and message.
pub fn error_response(buf: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    encode(ERROR_RESPONSE, buf, |b| {
        for (field, value) in [
            (b'S', severity.as_str()),
            (b'V', severity.as_str()),
            (b'C', code),
            (b'M', message),
        ] {
            b.put_u8(field);
            put_cstr(b, value);
        }
        b.put_u8(0);
    });
}

/// ReadyForQuery with a transaction status (`I`, `T` or `E`).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    encode(READY_FOR_QUERY, buf, |b| b.put_u8(status));
}

pub fn authentication_ok(buf: &mut BytesMut) {
    auth(buf, auth_code::OK, &[]);
}

pub fn authentication_cleartext(buf: &mut BytesMut) {
    auth(buf, auth_code::CLEARTEXT, &[]);
}

/// AuthenticationSASL offering the given mechanisms.
pub fn authentication_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    encode(AUTHENTICATION, buf, |b| {
        b.put_i32(auth_code::SASL);
        for m in mechanisms {
            put_cstr(b, m);
        }
        b.put_u8(0);
    });
}

pub fn authentication_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, auth_code::SASL_CONTINUE, data);
}

pub fn authentication_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, auth_code::SASL_FINAL, data);
}

fn auth(buf: &mut BytesMut, code: i32, data: &[u8]) {
    encode(AUTHENTICATION, buf, |b| {
        b.put_i32(code);
        b.put_slice(data);
    });
}

pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret_key: i32) {
    encode(BACKEND_KEY_DATA, buf, |b| {
        b.put_i32(pid);
        b.put_i32(secret_key);
    });
}

pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    encode(PARAMETER_STATUS, buf, |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

/// NegotiateProtocolVersion: the newest minor version supported and the
/// protocol options not recognised.
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: i32, unrecognized: &[&str]) {
    encode(NEGOTIATE_PROTOCOL_VERSION, buf, |b| {
        b.put_i32(newest_minor);
        b.put_i32(unrecognized.len() as i32);
        for o in unrecognized {
            put_cstr(b, o);
        }
    });
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    // A NUL inside would end the field early; no caller passes one, but be safe.
    b.put_slice(s.replace('\0', " ").as_bytes());
    b.put_u8(0);
}

/// BackendKeyData body: pid and secret key.
pub fn parse_backend_key_data(body: &[u8]) -> Option<(i32, i32)> {
    let mut r = Reader::new(body);
    Some((r.i32()?, r.i32()?))
}

/// ReadyForQuery body: the transaction status byte.
pub fn parse_ready_for_query(body: &[u8]) -> Option<u8> {
    match body {
        [s @ (b'I' | b'T' | b'E')] => Some(*s),
        _ => None,
    }
}

/// The fields of an ErrorResponse or NoticeResponse body, as (code, value).
pub fn error_fields(body: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut r = Reader::new(body);
    std::iter::from_fn(move || {
        let code = r.u8()?;
        if code == 0 {
            return None;
        }
        Some((code, r.cstr()?))
    })
}

/// The SQLSTATE of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> Option<&[u8]> {
    error_fields(body).find(|(c, _)| *c == b'C').map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::frame::split_frame;

    #[test]
    fn error_response_fields() {
        let mut buf = BytesMut::new();
        error_response(&mut buf, Severity::Error, "42501", "no");
        let f = split_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(f.tag(), ERROR_RESPONSE);
        assert_eq!(error_code(f.body()), Some(&b"42501"[..]));
        let fields: Vec<_> = error_fields(f.body()).collect();
        assert_eq!(fields.len(), 4);
    }

    #[test]
    fn small_views() {
        assert_eq!(parse_ready_for_query(b"T"), Some(b'T'));
        assert_eq!(parse_ready_for_query(b"X"), None);
        assert_eq!(
            parse_backend_key_data(b"\0\0\0\x01\0\0\0\x02"),
            Some((1, 2))
        );
        assert_eq!(parse_backend_key_data(b"\0\0"), None);
    }
}
