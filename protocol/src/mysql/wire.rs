//! Primitive field encodings: length-encoded integers and strings,
//! NUL-terminated strings, and a cursor to read them.

use bytes::{BufMut, BytesMut};

/// NULL in a text-protocol row.
pub const NULL: u8 = 0xfb;

/// Reads fields from a payload; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A NUL-terminated string (without the NUL).
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.remaining();
        let end = rest.iter().position(|&b| b == 0)?;
        self.pos += end + 1;
        Some(&rest[..end])
    }
    /// Everything left, up to an optional trailing NUL (`string<EOF>` that
    /// some servers terminate anyway).
    pub fn rest_str(&mut self) -> &'a [u8] {
        let rest = self.remaining();
        self.pos = self.buf.len();
        rest.strip_suffix(&[0]).unwrap_or(rest)
    }
    /// A length-encoded integer; `None` for the NULL marker 0xFB or 0xFF.
    pub fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            b @ 0..=0xfa => Some(u64::from(b)),
            0xfc => self.u16().map(u64::from),
            0xfd => self
                .bytes(3)
                .map(|b| u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16),
            0xfe => self
                .bytes(8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
            _ => None,
        }
    }
    /// A length-encoded string.
    pub fn lenenc_str(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.bytes(n)
    }
}

pub fn put_lenenc(out: &mut BytesMut, v: u64) {
    match v {
        0..=0xfa => out.put_u8(v as u8),
        0xfb..=0xffff => {
            out.put_u8(0xfc);
            out.put_u16_le(v as u16);
        }
        0x1_0000..=0xff_ffff => {
            out.put_u8(0xfd);
            out.put_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.put_u8(0xfe);
            out.put_u64_le(v);
        }
    }
}

pub fn put_lenenc_str(out: &mut BytesMut, s: &[u8]) {
    put_lenenc(out, s.len() as u64);
    out.put_slice(s);
}

pub fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trip() {
        for v in [
            0u64,
            250,
            251,
            0xffff,
            0x10000,
            0xffffff,
            0x1000000,
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_lenenc(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc(), Some(v), "{v}");
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&[0xfb]).lenenc(), None);
        assert_eq!(Reader::new(&[0xfc, 1]).lenenc(), None);
    }

    #[test]
    fn strings() {
        let mut out = BytesMut::new();
        put_cstr(&mut out, b"abc");
        put_lenenc_str(&mut out, b"hello");
        out.put_slice(b"tail\0");
        let mut r = Reader::new(&out);
        assert_eq!(r.cstr(), Some(&b"abc"[..]));
        assert_eq!(r.lenenc_str(), Some(&b"hello"[..]));
        assert_eq!(r.rest_str(), b"tail");
        assert_eq!(Reader::new(b"no nul").cstr(), None);
        assert_eq!(Reader::new(&[5, b'a']).lenenc_str(), None);
    }
}
