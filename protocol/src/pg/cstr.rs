//! Reading the primitive field types of the protocol from a byte slice:
//! NUL-terminated strings and big-endian integers.
//!
//! Every reader returns `None` on truncated input instead of panicking, so a
//! malformed message from either peer can only ever become a protocol error.

/// A cursor over a message body.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// A NUL-terminated string, without its terminator.
    pub fn cstr(&mut self) -> Option<&'a [u8]> {
        // Names are mostly empty (the unnamed statement and portal of
        // every driver's Parse and Bind): one look at the first byte
        // costs less than memchr's vector set-up.
        let end = match self.buf.first() {
            Some(0) => 0,
            _ => memchr::memchr(0, self.buf)?,
        };
        let (s, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..)?;
        Some(s)
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub fn i16(&mut self) -> Option<i16> {
        let bytes = self.take(2)?;
        Some(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        let bytes = self.take(4)?;
        Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_stops_on_truncation() {
        let mut r = Reader::new(b"abc\0\x00\x01\x00\x00\x00\x02x");
        assert_eq!(r.cstr(), Some(&b"abc"[..]));
        assert_eq!(r.i16(), Some(1));
        assert_eq!(r.i32(), Some(2));
        assert_eq!(r.i32(), None);
        assert_eq!(r.cstr(), None);
        assert_eq!(r.u8(), Some(b'x'));
        assert_eq!(r.u8(), None);
    }

    #[test]
    fn strings_of_every_length() {
        for len in 0..48 {
            let s = vec![b'a'; len];
            let mut msg = s.clone();
            msg.extend_from_slice(b"\0rest");
            let mut r = Reader::new(&msg);
            assert_eq!(r.cstr(), Some(&s[..]), "{len}");
            assert_eq!(r.rest(), b"rest", "{len}");
            // Without a terminator: nothing, whatever the length.
            assert_eq!(Reader::new(&s).cstr(), None, "{len}");
        }
    }
}
