//! The upstream leg: connect to the target, log in with airlock's
//! credential, apply the policy's session settings.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::net::TcpStream;

use airlock_protocol::mysql::handshake::{Greeting, Response};
use airlock_protocol::mysql::{auth, caps, com, packets};

use super::conn::{Leg, PacketConn};
use super::error::MyError;
use crate::config::Target;
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
}

/// Connects and logs in, within `timeout`.
pub async fn connect(
    target: &Target,
    client: &Response,
    settings: &SessionSettings,
    timeout: Duration,
    max: usize,
) -> Result<Upstream, MyError> {
    match tokio::time::timeout(timeout, connect_inner(target, client, settings, max)).await {
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
    let capabilities =
        ((wanted & !caps::CONNECT_ATTRS) | REQUIRED | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA)
            & server;
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
                _ => {
                    return Err(MyError::Upstream(
                        "caching_sha2_password full authentication needs TLS or RSA, which airlock does not do yet; use mysql_native_password for the target user".into(),
                    ))
                }
            },
            _ => return Err(MyError::Upstream("unexpected packet during login".into())),
        }
    }

    let mut up = Upstream {
        conn,
        server_version: greeting.server_version,
        connection_id: greeting.connection_id,
    };
    apply_settings(&mut up, settings).await?;
    Ok(up)
}

/// Applies the policy's session settings (again after COM_RESET_CONNECTION).
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
    Ok(())
}

/// Runs a statement that returns OK or ERR (no result set).
async fn simple_query(conn: &mut PacketConn, sql: &str) -> Result<(), MyError> {
    let mut out = BytesMut::new();
    out.put_u8(com::QUERY);
    out.put_slice(sql.as_bytes());
    conn.next_seq = 0;
    conn.send(&out).await?;
    let reply = conn.read().await?;
    match reply.payload.first() {
        Some(&packets::OK) => Ok(()),
        _ => {
            let (code, _, message) = packets::parse_err(&reply.payload).unwrap_or_default();
            Err(MyError::Upstream(format!(
                "{sql}: failed ({code}): {message}"
            )))
        }
    }
}
