//! The MySQL broker's side of the wire: logging in with the broker
//! credential, quoting, and running one text-protocol statement.
//!
//! Everything here builds SQL from values airlock generated or read from
//! its own config; nothing comes from an agent. Literals and identifiers
//! are still quoted, so an odd template role name cannot break a statement.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use airlock_protocol::mysql::handshake::Response;
use airlock_protocol::mysql::wire::{Reader, NULL};
use airlock_protocol::mysql::{caps, com, packets};

use crate::config::Target;
use crate::mysql::conn::PacketConn;
use crate::mysql::error::MyError;
use crate::mysql::upstream;
use crate::policy::SessionSettings;

/// The capabilities the broker asks for: protocol 4.1 and plugin auth, no
/// multi-statements, classic EOF packets.
const BROKER_CAPS: u32 = caps::LONG_PASSWORD
    | caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::TRANSACTIONS;

/// A logged-in broker connection.
pub struct BrokerConn {
    conn: PacketConn,
    /// The server is MariaDB (else MySQL, whose syntax differs slightly).
    pub mariadb: bool,
}

/// What one statement returned.
#[derive(Debug, Default)]
pub struct Reply {
    pub rows: Vec<Vec<Option<String>>>,
    /// (error code, message) of an ERR reply.
    pub error: Option<(u16, String)>,
}

/// Logs in as the target's user, without selecting a database.
pub async fn connect(
    target: &Target,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<BrokerConn, MyError> {
    let mut t = target.clone();
    t.database = String::new();
    let hello = Response {
        capabilities: BROKER_CAPS,
        max_packet: 16 * 1024 * 1024,
        charset: 45, // utf8mb4_general_ci
        ..Default::default()
    };
    let up = upstream::connect(
        &t,
        &hello,
        &SessionSettings::default(),
        timeout,
        airlock_protocol::pg::frame::DEFAULT_MAX_MESSAGE,
        tls,
    )
    .await?;
    Ok(BrokerConn {
        mariadb: up.server_version.contains("MariaDB"),
        conn: up.conn,
    })
}

impl BrokerConn {
    /// Ends the connection politely (COM_QUIT), ignoring errors.
    pub async fn quit(mut self) {
        self.conn.next_seq = 0;
        let _ = self.conn.send(&[com::QUIT]).await;
    }

    /// Runs one statement (COM_QUERY) and reads its whole reply. A server
    /// error is in [`Reply::error`] and leaves the connection usable.
    pub async fn query(&mut self, sql: &str) -> Result<Reply, MyError> {
        let mut out = BytesMut::new();
        out.put_u8(com::QUERY);
        out.put_slice(sql.as_bytes());
        self.conn.next_seq = 0;
        self.conn.send(&out).await?;
        let first = self.conn.read().await?;
        let mut reply = Reply::default();
        match first.payload.first() {
            Some(&packets::OK) => return Ok(reply),
            Some(&packets::ERR) => {
                let (code, _, message) = packets::parse_err(&first.payload).unwrap_or_default();
                reply.error = Some((code, message));
                return Ok(reply);
            }
            _ => {}
        }
        let columns = Reader::new(&first.payload)
            .lenenc()
            .ok_or_else(|| MyError::Upstream("malformed column count".into()))?;
        for _ in 0..columns {
            self.conn.read().await?;
        }
        let eof = self.conn.read().await?;
        if !packets::is_eof(&eof.payload) {
            return Err(MyError::Upstream(
                "expected EOF after column definitions".into(),
            ));
        }
        loop {
            let p = self.conn.read().await?;
            if packets::is_eof(&p.payload) {
                return Ok(reply);
            }
            if p.payload.first() == Some(&packets::ERR) {
                let (code, _, message) = packets::parse_err(&p.payload).unwrap_or_default();
                reply.error = Some((code, message));
                return Ok(reply);
            }
            reply.rows.push(text_row(&p.payload, columns)?);
        }
    }
}

fn text_row(payload: &[u8], columns: u64) -> Result<Vec<Option<String>>, MyError> {
    let mut r = Reader::new(payload);
    (0..columns)
        .map(|_| {
            if r.remaining().first() == Some(&NULL) {
                r.u8();
                return Ok(None);
            }
            r.lenenc_str()
                .map(|v| Some(String::from_utf8_lossy(v).into_owned()))
                .ok_or_else(|| MyError::Upstream("malformed row".into()))
        })
        .collect()
}

/// `'text'`, with quotes and backslashes escaped (whatever `sql_mode` is,
/// doubling a quote works; a backslash is escaped unless
/// NO_BACKSLASH_ESCAPES, and generated values contain none).
pub fn quote_literal(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('\'');
    for c in text.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// `` `name` ``, with embedded backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'user'@'%'`.
pub fn account(user: &str) -> String {
    format!("{}@'%'", quote_literal(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "'a\\\\b'");
        assert_eq!(quote_ident("agent`ro"), "`agent``ro`");
        assert_eq!(account("airlock_eph_x"), "'airlock_eph_x'@'%'");
    }

    #[test]
    fn rows_with_nulls() {
        let mut p = BytesMut::new();
        airlock_protocol::mysql::wire::put_lenenc_str(&mut p, b"42");
        p.put_u8(NULL);
        assert_eq!(
            text_row(&p, 2).expect("row"),
            vec![Some("42".to_owned()), None]
        );
        assert!(text_row(&p, 3).is_err());
    }
}
