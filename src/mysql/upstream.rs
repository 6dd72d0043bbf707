//! The upstream leg: connect to the target, optionally start TLS (the
//! target's `tls` mode, as on the Postgres path), log in with airlock's
//! credential (`mysql_native_password`, or `caching_sha2_password` by the
//! fast path, or by the full path over TLS; airlock does no RSA), check
//! the session's `sql_mode` ([`super::sql_mode`]) and apply the policy's
//! session settings.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::net::TcpStream;

use airlock_protocol::mysql::handshake::{Greeting, Response};
use airlock_protocol::mysql::wire::Reader;
use airlock_protocol::mysql::{auth, caps, com, packets};

use super::conn::{Leg, PacketConn};
use super::error::MyError;
use super::server_info::ServerInfo;
use crate::config::{Target, UpstreamTlsMode};
use crate::policy::SessionSettings;

/// Capabilities that only matter during login; the rest of the client's
/// set must be supported by the server.
const LOGIN_ONLY: u32 = caps::LONG_PASSWORD
    | caps::CONNECT_WITH_DB
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::INTERACTIVE;

/// Always sent upstream (when the server has them).
const REQUIRED: u32 =
    caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH | caps::CONNECT_WITH_DB;

pub struct Upstream {
    pub conn: PacketConn,
    pub server_version: String,
    pub connection_id: u32,
    /// Flavour and version, for executable comments.
    pub info: ServerInfo,
}

/// Connects and logs in, within `timeout`. `tls` is the target's client
/// config (`None`: plain TCP).
pub async fn connect(
    target: &Target,
    client: &Response,
    settings: &SessionSettings,
    timeout: Duration,
    max: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Upstream, MyError> {
    match crate::timer_thread::timeout(timeout, connect_inner(target, client, settings, max, tls))
        .await
    {
        Ok(r) => r,
        Err(_) => Err(MyError::Upstream(format!(
            "connect/login to {}:{} timed out (limits.connect_timeout)",
            target.host, target.port
        ))),
    }
}

async fn connect_inner(
    target: &Target,
    client: &Response,
    settings: &SessionSettings,
    max: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Upstream, MyError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            MyError::Upstream(format!("connect to {}:{}: {e}", target.host, target.port))
        })?;
    let _ = tcp.set_nodelay(true);
    let mut conn = PacketConn::new(tcp, max, Leg::Server);
    let greeting = Greeting::parse(&conn.read().await?.payload)
        .map_err(|e| MyError::Upstream(e.to_string()))?;
    let server = greeting.capabilities;
    if server & REQUIRED != REQUIRED {
        return Err(MyError::Upstream(format!(
            "server {} lacks protocol 4.1 / plugin auth",
            greeting.server_version
        )));
    }
    let wanted = client.capabilities & !(caps::LOCAL_FILES | caps::SSL | caps::COMPRESS);
    let missing = wanted & !LOGIN_ONLY & !server;
    if missing != 0 {
        return Err(MyError::Upstream(format!(
            "server {} lacks capabilities {missing:#x} the client negotiated",
            greeting.server_version
        )));
    }
    let mut capabilities =
        ((wanted & !caps::CONNECT_ATTRS) | REQUIRED | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA)
            & server;
    if let Some(config) = tls {
        if server & caps::SSL == 0 {
            return Err(MyError::Upstream(format!(
                "server {}:{} does not offer TLS, which the target's tls setting requires",
                target.host, target.port
            )));
        }
        capabilities |= caps::SSL;
        let mut out = BytesMut::new();
        Response::encode_ssl_request(capabilities, client.max_packet, client.charset, &mut out);
        conn.send(&out).await?;
        conn.connect_tls(config, &target.host).await?;
    }
    let password = target
        .password
        .as_ref()
        .map(|p| p.expose().as_bytes().to_vec())
        .unwrap_or_default();
    let mut plugin = if greeting.auth_plugin.is_empty() {
        auth::NATIVE.to_owned()
    } else {
        greeting.auth_plugin.clone()
    };
    let token = auth::token_for(&plugin, &greeting.scramble, &password).unwrap_or_else(|| {
        // An unknown default plugin: offer native; the server may switch.
        plugin = auth::NATIVE.to_owned();
        auth::native_token(&greeting.scramble, &password)
    });
    let login = Response {
        capabilities,
        max_packet: client.max_packet,
        charset: client.charset,
        user: target.user.as_bytes().to_vec(),
        auth_response: token,
        database: Some(target.database.as_bytes().to_vec()),
        auth_plugin: Some(plugin.clone()),
        attributes: Vec::new(),
    };
    let mut out = BytesMut::new();
    login.encode(&mut out);
    conn.send(&out).await?;

    loop {
        let reply = conn.read().await?;
        let p = &reply.payload;
        match p.first() {
            Some(&packets::OK) => break,
            Some(&packets::ERR) => {
                let (code, _, message) = packets::parse_err(p).unwrap_or_default();
                return Err(MyError::Upstream(format!("login refused ({code}): {message}")));
            }
            Some(&packets::EOF) => {
                let (name, data) = packets::parse_auth_switch(p)
                    .ok_or_else(|| MyError::Upstream("malformed auth switch".into()))?;
                let token = auth::token_for(&name, &data, &password).ok_or_else(|| {
                    MyError::Upstream(format!("server asks for unsupported auth plugin {name}"))
                })?;
                plugin = name;
                conn.send(&token).await?;
            }
            Some(&packets::AUTH_MORE_DATA) if plugin == auth::CACHING_SHA2 => match p.get(1) {
                Some(3) => {} // fast auth succeeded; OK follows
                // Full authentication: the password itself, over TLS to a
                // server whose certificate was checked, or where the target
                // allows it (as for Postgres's cleartext password).
                Some(4)
                    if conn.is_tls()
                        && (target.tls == UpstreamTlsMode::VerifyFull
                            || target.allow_cleartext_password) =>
                {
                    let mut clear = password.clone();
                    clear.push(0);
                    conn.send(&clear).await?;
                }
                Some(4) if conn.is_tls() => {
                    return Err(MyError::Upstream(
                        "caching_sha2_password full authentication sends the password itself, which airlock does only to a server whose certificate it verified (tls = \"verify-full\") or with the target's allow_cleartext_password = true".into(),
                    ))
                }
                _ => {
                    return Err(MyError::Upstream(
                        "caching_sha2_password full authentication needs TLS (set the target's tls = \"require\" or \"verify-full\"); airlock does not do RSA key exchange".into(),
                    ))
                }
            },
            _ => return Err(MyError::Upstream("unexpected packet during login".into())),
        }
    }

    let mut up = Upstream {
        conn,
        info: ServerInfo::from_version(&greeting.server_version),
        server_version: greeting.server_version,
        connection_id: greeting.connection_id,
    };
    prepare_session(&mut up, settings).await?;
    Ok(up)
}

/// Checks the session's sql_mode and applies the policy's session settings
/// (after login, and again after COM_RESET_CONNECTION / COM_CHANGE_USER).
pub async fn prepare_session(up: &mut Upstream, settings: &SessionSettings) -> Result<(), MyError> {
    let mode = query_value(&mut up.conn, "SELECT @@SESSION.sql_mode").await?;
    super::sql_mode::check_session(&String::from_utf8_lossy(&mode.unwrap_or_default()))?;
    apply_settings(up, settings).await
}

/// Applies the policy's session settings.
pub async fn apply_settings(up: &mut Upstream, settings: &SessionSettings) -> Result<(), MyError> {
    if settings.read_only {
        simple_query(&mut up.conn, "SET SESSION TRANSACTION READ ONLY").await?;
    }
    if let Some(t) = settings.statement_timeout {
        let sql = if up.server_version.contains("MariaDB") {
            format!("SET SESSION max_statement_time = {:.3}", t.as_secs_f64())
        } else {
            format!("SET SESSION max_execution_time = {}", t.as_millis())
        };
        simple_query(&mut up.conn, &sql).await?;
    }
    if let Some(t) = settings.idle_in_transaction_timeout {
        // Whole seconds, rounded up (the policy asks for at least one).
        // MySQL has no such setting: the session is refused rather than
        // run without the limit its policy sets.
        if !up.server_version.contains("MariaDB") {
            return Err(MyError::Upstream(
                "the policy sets idle_in_transaction_timeout, which only MariaDB servers apply (idle_transaction_timeout)".into(),
            ));
        }
        let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
        simple_query(
            &mut up.conn,
            &format!("SET SESSION idle_transaction_timeout = {secs}"),
        )
        .await?;
    }
    Ok(())
}

fn send_query(out: &mut BytesMut, sql: &str) {
    out.put_u8(com::QUERY);
    out.put_slice(sql.as_bytes());
}

fn query_failed(sql: &str, payload: &[u8]) -> MyError {
    let (code, _, message) = packets::parse_err(payload).unwrap_or_default();
    MyError::Upstream(format!("{sql}: failed ({code}): {message}"))
}

/// Runs a statement that returns OK or ERR (no result set).
async fn simple_query(conn: &mut PacketConn, sql: &str) -> Result<(), MyError> {
    let mut out = BytesMut::new();
    send_query(&mut out, sql);
    conn.next_seq = 0;
    conn.send(&out).await?;
    let reply = conn.read().await?;
    match reply.payload.first() {
        Some(&packets::OK) => Ok(()),
        _ => Err(query_failed(sql, &reply.payload)),
    }
}

/// Runs a query returning one row of one column (classic EOF framing, as
/// airlock never negotiates DEPRECATE_EOF) and returns that value (`None`
/// for NULL or no row).
async fn query_value(conn: &mut PacketConn, sql: &str) -> Result<Option<Vec<u8>>, MyError> {
    let mut out = BytesMut::new();
    send_query(&mut out, sql);
    conn.next_seq = 0;
    conn.send(&out).await?;
    let first = conn.read().await?;
    match first.payload.first() {
        Some(&packets::ERR) => return Err(query_failed(sql, &first.payload)),
        Some(&packets::OK) => return Ok(None),
        _ => {}
    }
    // Column definitions up to EOF.
    loop {
        let p = conn.read().await?;
        if packets::is_eof(&p.payload) {
            break;
        }
    }
    let mut value = None;
    let mut first_row = true;
    loop {
        let p = conn.read().await?;
        let payload = &p.payload;
        if packets::is_eof(payload) {
            return Ok(value);
        }
        if payload.first() == Some(&packets::ERR) {
            return Err(query_failed(sql, payload));
        }
        if first_row {
            first_row = false;
            if payload.first() != Some(&0xfb) {
                value = Reader::new(payload).lenenc_str().map(<[u8]>::to_vec);
            }
        }
    }
}
