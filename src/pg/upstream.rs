//! The upstream leg: connecting and logging in to the target server with
//! airlock's own credential (or, for a passthrough target, opening the
//! connection whose login [`crate::pg::client_auth`] relays).
//!
//! Steps: TCP connect (with the configured timeout, TCP_NODELAY), optional
//! TLS (SSLRequest, then rustls), a StartupMessage carrying the target's user
//! and database plus the client's other parameters, then whichever password
//! exchange the server asks for (SCRAM-SHA-256, md5 or cleartext). After
//! AuthenticationOk the server's ParameterStatus, NoticeResponse and
//! BackendKeyData messages are collected up to the first ReadyForQuery.
//!
//! The upstream password and user name never go to the client: an upstream
//! authentication failure is reported to the client as a generic error and
//! in detail only to airlock's log.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use airlock_protocol::pg::backend::{self, auth_code, error_code, error_fields};
use airlock_protocol::pg::cstr::Reader;
use airlock_protocol::pg::startup::{encode_ssl_request, StartupMessage};

use super::conn::{Conn, ConnError};
use super::error::SessionError;
use crate::config::{Target, UpstreamTlsMode};
use crate::net::Stream;
use crate::tls;

/// A logged-in upstream connection, ready for queries.
pub struct Upstream {
    pub conn: Conn,
    pub pid: i32,
    pub secret_key: i32,
    /// ParameterStatus and NoticeResponse messages, as received, to pass on.
    pub greeting: BytesMut,
    /// Transaction status from the first ReadyForQuery.
    pub status: u8,
}

/// Startup parameters never copied from the client: airlock sets the user
/// and database itself, refuses replication, and speaks plain protocol 3.0.
fn forwardable(name: &str) -> bool {
    !matches!(name, "user" | "database" | "replication") && !name.starts_with("_pq_.")
}

/// Startup parameters of airlock's own connections (the masking catalog,
/// foreign keys, the credential broker): `application_name` only, which
/// poolers such as PgBouncer accept (they refuse `options`).
pub fn own_params(application_name: &str) -> [(String, String); 1] {
    [("application_name".to_owned(), application_name.to_owned())]
}

/// Put first in every query of airlock's own connections: within the
/// query's (implicit) transaction, the server's own schemas only are
/// searched, so an unqualified function or operator there is never one an
/// agent made (audit finding: a `public.shobj_description(oid, text)`
/// made by an agent beat the built-in `(oid, name)` for the janitor's
/// `'pg_authid'` literal and ran as the broker, which can create roles).
pub const OWN_SEARCH_PATH: &str = "SET LOCAL search_path = pg_catalog, pg_temp; ";

pub fn upstream_err(message: impl Into<String>) -> SessionError {
    SessionError::Upstream {
        code: "08006",
        message: message.into(),
    }
}

/// Connects and logs in. `client_params` are the client's startup parameters.
pub async fn connect(
    target_name: &str,
    target: &Target,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    client_params: &[(String, String)],
    timeout: Duration,
    max_message: usize,
) -> Result<Upstream, SessionError> {
    within(timeout, target_name, async {
        let mut conn = open(
            target_name,
            target,
            tls_config,
            &target.user,
            client_params,
            max_message,
        )
        .await?;
        login(&mut conn, target_name, target).await?;
        finish_startup(conn, Some(&target.user)).await
    })
    .await
}

/// Runs `work` (a connect and login) within `timeout`.
pub async fn within<T>(
    timeout: Duration,
    target_name: &str,
    work: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    match crate::timer_thread::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(target = target_name, "upstream connect timed out");
            Err(upstream_err(format!(
                "airlock timed out connecting to the server for \"{target_name}\""
            )))
        }
    }
}

/// Connects (TCP, optional TLS) and sends the StartupMessage for `user` and
/// the target's database; the server's authentication request is next.
pub async fn open(
    target_name: &str,
    target: &Target,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    user: &str,
    client_params: &[(String, String)],
    max_message: usize,
) -> Result<Conn, SessionError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            tracing::error!(target = target_name, error = %e, "upstream connect failed");
            upstream_err(format!(
                "airlock could not connect to the server for \"{target_name}\""
            ))
        })?;
    tcp.set_nodelay(true)?;
    let stream = match tls_config {
        None => Stream::Plain(tcp),
        Some(config) => start_tls(tcp, config, &target.host, target_name).await?,
    };
    let mut conn = Conn::new(stream, max_message);
    let mut params: Vec<(&str, &str)> =
        vec![("user", user), ("database", target.database.as_str())];
    params.extend(
        client_params
            .iter()
            .filter(|(k, _)| forwardable(k))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let mut out = BytesMut::new();
    StartupMessage::encode(&params, &mut out);
    conn.write_all(&out).await.map_err(conn_err)?;
    Ok(conn)
}

pub fn conn_err(e: ConnError) -> SessionError {
    upstream_err(format!("upstream connection lost during startup: {e}"))
}

async fn start_tls(
    mut tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    host: &str,
    target_name: &str,
) -> Result<Stream, SessionError> {
    tcp.write_all(&encode_ssl_request()).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        tracing::error!(target = target_name, "upstream server refused TLS");
        return Err(upstream_err(format!(
            "the server for \"{target_name}\" does not accept TLS, which airlock is configured to require"
        )));
    }
    let name = tls::server_name(host).map_err(|e| upstream_err(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            tracing::error!(target = target_name, error = %e, "upstream TLS handshake failed");
            upstream_err(format!(
                "airlock could not establish TLS to the server for \"{target_name}\""
            ))
        })?;
    Ok(Stream::ClientTls(Box::new(tls)))
}

/// Runs the password exchange until AuthenticationOk.
async fn login(conn: &mut Conn, target_name: &str, target: &Target) -> Result<(), SessionError> {
    let password = || {
        target.password.as_ref().ok_or_else(|| {
            tracing::error!(
                target = target_name,
                "server asked for a password but the target has none configured"
            );
            upstream_err(format!(
                "airlock could not log in to the server for \"{target_name}\""
            ))
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let frame = conn.read_frame().await.map_err(conn_err)?;
        match frame.tag() {
            backend::AUTHENTICATION => {}
            backend::ERROR_RESPONSE => {
                return Err(startup_error(target_name, frame.body(), Some(&target.user)))
            }
            backend::NEGOTIATE_PROTOCOL_VERSION => continue,
            other => {
                return Err(upstream_err(format!(
                    "unexpected message '{}' from the server during login",
                    char::from(other)
                )))
            }
        }
        let mut r = Reader::new(frame.body());
        let code = r
            .i32()
            .ok_or_else(|| upstream_err("malformed authentication request"))?;
        let mut out = BytesMut::new();
        match code {
            auth_code::OK => return Ok(()),
            auth_code::CLEARTEXT => {
                // Only to a server whose certificate was checked, unless
                // the target says otherwise (red-team finding: any server,
                // or anyone answering in its place, was sent the password).
                let verified = target.tls == UpstreamTlsMode::VerifyFull && conn.stream.is_tls();
                if !verified && !target.allow_cleartext_password {
                    tracing::error!(
                        target = target_name,
                        "server asked for a cleartext password, and its certificate is not verified (tls = \"verify-full\"): refused; set allow_cleartext_password = true on the target to send it anyway"
                    );
                    return Err(upstream_err(format!(
                        "airlock could not log in to the server for \"{target_name}\" (see airlock's log)"
                    )));
                }
                if !conn.stream.is_tls() {
                    tracing::warn!(
                        target = target_name,
                        "server asked for a cleartext password over an unencrypted connection"
                    );
                }
                frontend::password_message(password()?.expose().as_bytes(), &mut out)?;
            }
            auth_code::MD5 => {
                let salt: [u8; 4] = r
                    .take(4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| upstream_err("malformed md5 request"))?;
                let hash = postgres_protocol::authentication::md5_hash(
                    target.user.as_bytes(),
                    password()?.expose().as_bytes(),
                    salt,
                );
                frontend::password_message(hash.as_bytes(), &mut out)?;
            }
            auth_code::SASL => {
                let mut offered = false;
                while let Some(m) = r.cstr() {
                    if m.is_empty() {
                        break;
                    }
                    offered |= m == SCRAM_SHA_256.as_bytes();
                }
                if !offered {
                    return Err(upstream_err(
                        "the server offers no SASL mechanism airlock supports",
                    ));
                }
                let s = ScramSha256::new(
                    password()?.expose().as_bytes(),
                    ChannelBinding::unsupported(),
                );
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                scram = Some(s);
            }
            auth_code::SASL_CONTINUE => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| upstream_err("SASL continue without a SASL start"))?;
                s.update(r.rest())
                    .map_err(|e| upstream_err(format!("SCRAM exchange failed: {e}")))?;
                frontend::sasl_response(s.message(), &mut out)?;
            }
            auth_code::SASL_FINAL => {
                let mut s = scram
                    .take()
                    .ok_or_else(|| upstream_err("SASL final without a SASL start"))?;
                s.finish(r.rest()).map_err(|e| {
                    tracing::error!(target = target_name, error = %e, "upstream SCRAM server signature invalid");
                    upstream_err("the server failed to prove it knows airlock's password")
                })?;
                continue;
            }
            other => {
                return Err(upstream_err(format!(
                "the server asked for an authentication method airlock does not support ({other})"
            )))
            }
        }
        conn.write_all(&out).await.map_err(conn_err)?;
    }
}

/// Collects what the server sends between AuthenticationOk and ReadyForQuery.
/// `hidden_user`: airlock's own database user, which an error at this
/// point (a role's connection limit, say) must not show the client.
pub async fn finish_startup(
    mut conn: Conn,
    hidden_user: Option<&str>,
) -> Result<Upstream, SessionError> {
    let mut greeting = BytesMut::new();
    let mut key = None;
    loop {
        let frame = conn.read_frame().await.map_err(conn_err)?;
        match frame.tag() {
            backend::PARAMETER_STATUS | backend::NOTICE_RESPONSE => {
                if frame.tag() == backend::PARAMETER_STATUS {
                    if let Some(hazard) = super::lexer_guard::hazard(frame.body()) {
                        // Set for the role or database (ALTER ROLE/DATABASE
                        // ... SET): no statement could be judged safely.
                        return Err(upstream_err(format!(
                            "{hazard}, under which airlock cannot read SQL as the server does; \
                             remove the setting from the role or database"
                        )));
                    }
                }
                greeting.extend_from_slice(frame.as_bytes())
            }
            backend::BACKEND_KEY_DATA => {
                key = backend::parse_backend_key_data(frame.body());
            }
            backend::READY_FOR_QUERY => {
                let status = backend::parse_ready_for_query(frame.body())
                    .ok_or_else(|| upstream_err("malformed ReadyForQuery"))?;
                let (pid, secret_key) =
                    key.ok_or_else(|| upstream_err("the server sent no BackendKeyData"))?;
                return Ok(Upstream {
                    conn,
                    pid,
                    secret_key,
                    greeting,
                    status,
                });
            }
            backend::ERROR_RESPONSE => return Err(startup_error("", frame.body(), hidden_user)),
            other => {
                return Err(upstream_err(format!(
                    "unexpected message '{}' from the server during startup",
                    char::from(other)
                )))
            }
        }
    }
}

/// Turns a server ErrorResponse during startup into the client's error.
/// Authentication failures (class 28) are logged in full but shown to the
/// client only generically: their text names airlock's upstream user.
/// Other errors keep their text, with `hidden_user` (airlock's upstream
/// user, not the client's own) taken out of it (red-team finding: `too
/// many connections for role "airlock_svc"` named the service account).
pub fn startup_error(target_name: &str, body: &[u8], hidden_user: Option<&str>) -> SessionError {
    let code = error_code(body).unwrap_or(b"08006");
    let message = error_fields(body)
        .find(|(c, _)| *c == b'M')
        .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    tracing::error!(target = target_name, sqlstate = %String::from_utf8_lossy(code), %message, "upstream refused the connection");
    if code.starts_with(b"28") {
        return upstream_err("airlock could not log in to the upstream server (see airlock's log)");
    }
    let message = match hidden_user.filter(|u| !u.is_empty()) {
        // As the server quotes role names.
        Some(user) => message.replace(&format!("\"{user}\""), "(airlock's database user)"),
        None => message,
    };
    SessionError::Upstream {
        code: static_sqlstate(code),
        message,
    }
}

/// Maps common startup SQLSTATEs to static strings; others become 08006.
fn static_sqlstate(code: &[u8]) -> &'static str {
    match code {
        b"3D000" => "3D000",
        b"53300" => "53300",
        b"57P03" => "57P03",
        b"42704" => "42704",
        b"22023" => "22023",
        b"42501" => "42501",
        _ => "08006",
    }
}
