//! Zero-copy views of the client messages that policy and session state need.
//!
//! Each view borrows the body of a [`Frame`](super::frame::Frame); nothing is
//! copied or re-encoded, so a message that policy allows is forwarded as the
//! exact bytes the client sent. SQL text is exposed as bytes: the session
//! decides what to do with text that is not valid UTF-8 (airlock refuses it).
//!
//! Message tags (client to server):
//!
//! | tag | message | | tag | message |
//! |-----|---------|-|-----|---------|
//! | `Q` | Query | | `S` | Sync |
//! | `P` | Parse | | `H` | Flush |
//! | `B` | Bind | | `F` | FunctionCall |
//! | `D` | Describe | | `d` | CopyData |
//! | `E` | Execute | | `c` | CopyDone |
//! | `C` | Close | | `f` | CopyFail |
//! | `X` | Terminate | | `p` | Password / SASL responses |

use super::cstr::Reader;

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const DESCRIBE: u8 = b'D';
pub const EXECUTE: u8 = b'E';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const FUNCTION_CALL: u8 = b'F';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const TERMINATE: u8 = b'X';
pub const PASSWORD: u8 = b'p';

/// A malformed client message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed {0} message")]
pub struct Malformed(pub &'static str);

/// How many leading bytes of a statement or portal name the server keys it
/// by (`NAMEDATALEN - 1`). Postgres keeps prepared statements and portals
/// in hash tables whose keys are the names cut to this length, so two
/// names that agree on their first 63 bytes are one statement or portal,
/// however they go on. The views below give names cut so, to be compared
/// as the server compares them.
pub const NAME_KEY_LEN: usize = 63;

/// `name` as the server keys a statement or portal (see [`NAME_KEY_LEN`]).
pub fn name_key(name: &[u8]) -> &[u8] {
    name.get(..NAME_KEY_LEN).unwrap_or(name)
}

/// Query: one string that may hold several statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub sql: &'a [u8],
}

impl<'a> Query<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let sql = r.cstr().ok_or(Malformed("Query"))?;
        Ok(Query { sql })
    }
}

/// Parse: creates a prepared statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Empty for the unnamed statement; keyed as the server keys it
    /// ([`name_key`]).
    pub name: &'a [u8],
    pub sql: &'a [u8],
}

impl<'a> Parse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let name = r.cstr().ok_or(Malformed("Parse"))?;
        let sql = r.cstr().ok_or(Malformed("Parse"))?;
        let n = r.i16().ok_or(Malformed("Parse"))?;
        if n < 0 || r.rest().len() != n as usize * 4 {
            return Err(Malformed("Parse"));
        }
        Ok(Parse {
            name: name_key(name),
            sql,
        })
    }
}

/// Bind: creates a portal from a prepared statement. Both names keyed as
/// the server keys them ([`name_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let portal = r.cstr().ok_or(Malformed("Bind"))?;
        let statement = r.cstr().ok_or(Malformed("Bind"))?;
        Ok(Bind {
            portal: name_key(portal),
            statement: name_key(statement),
        })
    }
}

impl Bind<'_> {
    /// The result-column format codes of a Bind body (0 text, 1 binary):
    /// none means all text, one applies to every column. Borrowed from the
    /// body: a client that binds with the same codes every time costs no
    /// allocation.
    pub fn result_formats(body: &[u8]) -> Result<FormatCodes<'_>, Malformed> {
        let err = || Malformed("Bind");
        let mut r = Reader::new(body);
        r.cstr().ok_or_else(err)?;
        r.cstr().ok_or_else(err)?;
        let n = r.i16().ok_or_else(err)?;
        r.take(n.max(0) as usize * 2).ok_or_else(err)?;
        let params = r.i16().ok_or_else(err)?;
        for _ in 0..params.max(0) {
            let len = r.i32().ok_or_else(err)?;
            if len > 0 {
                r.take(len as usize).ok_or_else(err)?;
            }
        }
        let n = r.i16().ok_or_else(err)?;
        let raw = r.take(n.max(0) as usize * 2).ok_or_else(err)?;
        Ok(FormatCodes(raw))
    }
}

/// Format codes as they stand in a message: big-endian `i16`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatCodes<'a>(&'a [u8]);

impl FormatCodes<'_> {
    /// The codes in order.
    pub fn iter(&self) -> impl Iterator<Item = i16> + '_ {
        self.0
            .chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
    }

    /// Whether these are exactly `codes`.
    pub fn equals(&self, codes: &[i16]) -> bool {
        self.0.len() == codes.len() * 2 && self.iter().eq(codes.iter().copied())
    }

    pub fn to_vec(&self) -> Vec<i16> {
        self.iter().collect()
    }
}

/// What a Describe or Close names, keyed as the server keys it
/// ([`name_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Statement(&'a [u8]),
    Portal(&'a [u8]),
}

impl<'a> Target<'a> {
    /// Body of Describe and Close: `'S'|'P'` then a name.
    pub fn decode(body: &'a [u8], what: &'static str) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let kind = r.u8().ok_or(Malformed(what))?;
        let name = name_key(r.cstr().ok_or(Malformed(what))?);
        // The server refuses trailing bytes (and then does not carry the
        // message out): airlock must not take it as done.
        if !r.is_empty() {
            return Err(Malformed(what));
        }
        match kind {
            b'S' => Ok(Target::Statement(name)),
            b'P' => Ok(Target::Portal(name)),
            _ => Err(Malformed(what)),
        }
    }
}

/// Execute: runs a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Keyed as the server keys it ([`name_key`]).
    pub portal: &'a [u8],
    /// 0 means no limit.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let portal = r.cstr().ok_or(Malformed("Execute"))?;
        let max_rows = r.i32().ok_or(Malformed("Execute"))?;
        if !r.is_empty() {
            return Err(Malformed("Execute"));
        }
        Ok(Execute {
            portal: name_key(portal),
            max_rows,
        })
    }
}

/// FunctionCall: calls a function by OID, bypassing SQL entirely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall {
    pub function_oid: u32,
}

impl FunctionCall {
    pub fn decode(body: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let oid = r.i32().ok_or(Malformed("FunctionCall"))?;
        Ok(FunctionCall {
            function_oid: oid as u32,
        })
    }
}

/// SASLInitialResponse: the mechanism, then the client-first-message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> SaslInitialResponse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let mechanism = r.cstr().ok_or(Malformed("SASLInitialResponse"))?;
        let len = r.i32().ok_or(Malformed("SASLInitialResponse"))?;
        let data = if len < 0 {
            &[][..]
        } else {
            r.take(len as usize)
                .ok_or(Malformed("SASLInitialResponse"))?
        };
        if !r.is_empty() {
            return Err(Malformed("SASLInitialResponse"));
        }
        Ok(SaslInitialResponse { mechanism, data })
    }
}

/// PasswordMessage with a cleartext password.
pub fn cleartext_password(body: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Reader::new(body);
    let pw = r.cstr().ok_or(Malformed("PasswordMessage"))?;
    if !r.is_empty() {
        return Err(Malformed("PasswordMessage"));
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_keyed_by_their_first_63_bytes() {
        let long = [b'a'; 70];
        let mut body = long.to_vec();
        body.push(0);
        body.extend_from_slice(&long[..64]);
        body.extend_from_slice(b"\0\x00\x00\x00\x00\x00\x00");
        let b = Bind::decode(&body).unwrap();
        assert_eq!((b.portal, b.statement), (&long[..63], &long[..63]));
        assert_eq!(name_key(b"s1"), b"s1");
        let mut close = vec![b'S'];
        close.extend_from_slice(&long);
        close.push(0);
        assert_eq!(
            Target::decode(&close, "Close"),
            Ok(Target::Statement(&long[..63]))
        );
    }

    #[test]
    fn views_borrow_fields() {
        let p = Parse::decode(b"s1\0SELECT $1\0\x00\x01\x00\x00\x00\x17").unwrap();
        assert_eq!((p.name, p.sql), (&b"s1"[..], &b"SELECT $1"[..]));
        assert!(Parse::decode(b"s1\0SELECT\0\x00\x02\x00\x00\x00\x17").is_err());
        let b = Bind::decode(b"p\0s1\0\x00\x00\x00\x00\x00\x00").unwrap();
        let none = Bind::result_formats(b"p\0s1\0\x00\x00\x00\x00\x00\x00").unwrap();
        assert_eq!(none.to_vec(), Vec::<i16>::new());
        assert!(none.equals(&[]) && !none.equals(&[0]));
        let with = b"\0\0\x00\x01\x00\x01\x00\x01\x00\x00\x00\x02ab\x00\x02\x00\x01\xff\xfe";
        let codes = Bind::result_formats(with).unwrap();
        assert_eq!(codes.to_vec(), vec![1, -2]);
        assert!(codes.equals(&[1, -2]) && !codes.equals(&[1]) && !codes.equals(&[1, -2, 0]));
        assert!(Bind::result_formats(b"\0\0\x00\x01").is_err());
        // Fewer codes than announced.
        assert!(Bind::result_formats(b"\0\0\x00\x00\x00\x00\x00\x02\x00\x01").is_err());
        assert_eq!((b.portal, b.statement), (&b"p"[..], &b"s1"[..]));
        assert_eq!(
            Target::decode(b"Sx\0", "Describe").unwrap(),
            Target::Statement(b"x")
        );
        assert!(Target::decode(b"Qx\0", "Describe").is_err());
        let e = Execute::decode(b"\0\x00\x00\x00\x05").unwrap();
        assert_eq!(e.max_rows, 5);
        assert!(Query::decode(b"no terminator").is_err());
        let s = SaslInitialResponse::decode(b"SCRAM-SHA-256\0\x00\x00\x00\x03abc").unwrap();
        assert_eq!(s.data, b"abc");
        assert!(SaslInitialResponse::decode(b"SCRAM-SHA-256\0\x00\x00\x00\x09abc").is_err());
    }
}
