//! The broker's side of the wire: quoting, and running one simple Query on
//! an upstream connection airlock logged in itself.
//!
//! Everything here builds SQL text from values airlock generated or read
//! from its own config; nothing comes from an agent. Identifiers and
//! literals are still quoted the way Postgres's `quote_ident` and
//! `quote_literal` do, so an odd template role name cannot break a statement.

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use airlock_protocol::pg::backend::{self, error_code, error_fields};

use crate::pg::catalog::text_fields;
use crate::pg::conn::{Conn, ConnError};

/// `"name"`, with embedded double quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with quotes doubled; `E'...'` with doubled backslashes when the
/// text has a backslash (correct whatever `standard_conforming_strings` is).
pub fn quote_literal(text: &str) -> String {
    let body = text.replace('\'', "''");
    if text.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// An ErrorResponse from the server.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub sqlstate: String,
    pub message: String,
}

/// What one simple Query returned.
#[derive(Debug, Default)]
pub struct Reply {
    /// DataRows of every statement, as text.
    pub rows: Vec<Vec<Option<String>>>,
    /// The first error; the statements after it did not run, and the
    /// implicit transaction of a multi-statement query was rolled back.
    pub error: Option<ServerError>,
}

/// Sends `sql` as one simple Query and reads up to ReadyForQuery. A
/// transport failure is an `Err`; a server error is in [`Reply::error`] and
/// leaves the connection usable.
pub async fn simple_query(conn: &mut Conn, sql: &str) -> Result<Reply, ConnError> {
    let mut out = BytesMut::new();
    frontend::query(sql, &mut out).map_err(ConnError::Io)?;
    conn.write_all(&out).await?;
    let mut reply = Reply::default();
    loop {
        let frame = conn.read_frame().await?;
        match frame.tag() {
            backend::DATA_ROW => reply.rows.push(text_fields(frame.body())),
            backend::ERROR_RESPONSE if reply.error.is_none() => {
                let body = frame.body();
                reply.error = Some(ServerError {
                    sqlstate: String::from_utf8_lossy(error_code(body).unwrap_or(b"XX000"))
                        .into_owned(),
                    message: error_fields(body)
                        .find(|(c, _)| *c == b'M')
                        .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
                        .unwrap_or_default(),
                });
            }
            backend::READY_FOR_QUERY => return Ok(reply),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("agent_ro"), "\"agent_ro\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("x"), "'x'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\'b"), "E'a\\\\''b'");
    }
}
