//! Generic response packets: OK, ERR and EOF (built by airlock, read to
//! follow a response), and the AuthSwitchRequest.

use bytes::{BufMut, BytesMut};

use super::wire::{put_cstr, put_lenenc, Reader};

pub const OK: u8 = 0x00;
pub const EOF: u8 = 0xfe;
pub const ERR: u8 = 0xff;
/// LOCAL INFILE request (in reply to a query).
pub const LOCAL_INFILE: u8 = 0xfb;
/// AuthMoreData (during login).
pub const AUTH_MORE_DATA: u8 = 0x01;

/// An OK packet payload (protocol 4.1).
pub fn ok(out: &mut BytesMut, affected: u64, last_insert_id: u64, status: u16, warnings: u16) {
    out.put_u8(OK);
    put_lenenc(out, affected);
    put_lenenc(out, last_insert_id);
    out.put_u16_le(status);
    out.put_u16_le(warnings);
}

/// An ERR packet payload (protocol 4.1). `sqlstate` must be 5 bytes.
pub fn err(out: &mut BytesMut, code: u16, sqlstate: &str, message: &str) {
    out.put_u8(ERR);
    out.put_u16_le(code);
    out.put_u8(b'#');
    let mut state = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in state.iter_mut().zip(sqlstate.bytes()) {
        *d = s;
    }
    out.put_slice(&state);
    out.put_slice(message.as_bytes());
}

/// An EOF packet payload (protocol 4.1).
pub fn eof(out: &mut BytesMut, warnings: u16, status: u16) {
    out.put_u8(EOF);
    out.put_u16_le(warnings);
    out.put_u16_le(status);
}

/// An AuthSwitchRequest payload.
pub fn auth_switch(out: &mut BytesMut, plugin: &str, data: &[u8]) {
    out.put_u8(EOF);
    put_cstr(out, plugin.as_bytes());
    out.put_slice(data);
    out.put_u8(0);
}

/// True for an EOF packet (0xFE with a payload shorter than 9 bytes; a longer
/// one is a row or length that happens to start with 0xFE).
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&EOF) && payload.len() < 9
}

/// The server status flags of an OK or EOF payload, if it is one.
pub fn status_flags(payload: &[u8]) -> Option<u16> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        OK => {
            r.lenenc()?;
            r.lenenc()?;
            r.u16()
        }
        EOF if payload.len() < 9 => {
            r.u16()?;
            r.u16()
        }
        _ => None,
    }
}

/// Code, SQLSTATE and message of an ERR payload.
pub fn parse_err(payload: &[u8]) -> Option<(u16, String, String)> {
    let mut r = Reader::new(payload);
    if r.u8()? != ERR {
        return None;
    }
    let code = r.u16()?;
    let mut state = String::new();
    if r.remaining().first() == Some(&b'#') {
        r.u8()?;
        state = String::from_utf8_lossy(r.bytes(5)?).into_owned();
    }
    Some((
        code,
        state,
        String::from_utf8_lossy(r.remaining()).into_owned(),
    ))
}

/// Plugin name and data of an AuthSwitchRequest payload.
pub fn parse_auth_switch(payload: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut r = Reader::new(payload);
    if r.u8()? != EOF {
        return None;
    }
    let plugin = String::from_utf8_lossy(r.cstr()?).into_owned();
    Some((plugin, r.rest_str().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_eof_status() {
        let mut out = BytesMut::new();
        ok(&mut out, 300, 0, 0x000a, 1);
        assert_eq!(status_flags(&out), Some(0x000a));
        out.clear();
        eof(&mut out, 0, 0x0008);
        assert!(is_eof(&out));
        assert_eq!(status_flags(&out), Some(8));
        assert_eq!(status_flags(&[0xfe, 1, 2, 3, 4, 5, 6, 7, 8, 9]), None);
        assert_eq!(status_flags(&[]), None);
    }

    #[test]
    fn err_round_trip() {
        let mut out = BytesMut::new();
        err(&mut out, 1045, "28000", "Access denied");
        assert_eq!(
            parse_err(&out),
            Some((1045, "28000".into(), "Access denied".into()))
        );
    }

    #[test]
    fn auth_switch_round_trip() {
        let mut out = BytesMut::new();
        auth_switch(&mut out, "mysql_native_password", b"0123456789abcdefghij");
        assert_eq!(
            parse_auth_switch(&out),
            Some((
                "mysql_native_password".into(),
                b"0123456789abcdefghij".to_vec()
            ))
        );
    }
}
