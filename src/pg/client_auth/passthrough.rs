//! Passthrough login: the client's own database login, relayed to the
//! server (`credentials = "passthrough"`).
//!
//! airlock opens the upstream connection as the client's user first, then
//! answers whatever the server asks for:
//!
//! * **SCRAM-SHA-256**: relayed message by message. airlock advertises only
//!   `SCRAM-SHA-256`, never `-PLUS`, and refuses a client that insists on
//!   channel binding (`p=` in its GS2 header): the binding would be to
//!   airlock's TLS certificate, which the server cannot check. The proof is
//!   between client and server; airlock never learns the password.
//! * **md5**: relayed too (the salt is the server's and the user name is the
//!   same on both legs).
//! * **cleartext**: only when the client leg is TLS; the client's password
//!   message is forwarded as received. Over an unencrypted client leg the
//!   session is refused rather than asking the client for a cleartext password.
//! * **trust** (AuthenticationOk with no exchange): refused unless the
//!   target sets `passthrough.allow_trust`. The server's pg_hba rule
//!   matches airlock's address, not the client's, so it would let any
//!   client in as any database user (red-team finding: `user=postgres`
//!   with no password was a superuser session).
//!
//! A server authentication error (class 28) becomes airlock's own FATAL
//! 28P01 `password authentication failed for user "..."`, the same text a
//! server gives, with no server detail; the detail goes to airlock's log.

use bytes::BytesMut;

use airlock_protocol::pg::backend::{self, auth_code, error_code, error_fields};
use airlock_protocol::pg::cstr::Reader;
use airlock_protocol::pg::frame::Frame;
use airlock_protocol::pg::frontend::SaslInitialResponse;
use airlock_protocol::pg::scram::SCRAM_SHA_256;

use super::expect_password;
use crate::pg::conn::Conn;
use crate::pg::error::SessionError;
use crate::pg::upstream::{conn_err, startup_error, upstream_err};

/// Relays the login of `user` between the client and the server until the
/// server sends AuthenticationOk (not forwarded: the session sends it with
/// the server's greeting).
pub async fn relay_login(
    client: &mut Conn,
    server: &mut Conn,
    user: &str,
    target_name: &str,
    allow_trust: bool,
) -> Result<(), SessionError> {
    let mut sasl = false;
    // Whether the client answered any password request.
    let mut exchanged = false;
    loop {
        let frame = server.read_frame().await.map_err(conn_err)?;
        match frame.tag() {
            backend::AUTHENTICATION => {}
            backend::ERROR_RESPONSE => return Err(refusal(target_name, user, frame.body())),
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
        match code {
            auth_code::OK => {
                if !exchanged {
                    if !allow_trust {
                        tracing::warn!(
                            target = target_name,
                            user,
                            "passthrough login refused: the server let it in without a password (trust for airlock's address in pg_hba.conf); set targets.{target_name}.passthrough.allow_trust = true if that is intended"
                        );
                        return Err(SessionError::Refused(format!(
                            "the server lets \"{user}\" in without a password, and passthrough target \"{target_name}\" does not allow that (passthrough.allow_trust)"
                        )));
                    }
                    tracing::info!(
                        target = target_name,
                        user,
                        "server accepted the passthrough login without a password exchange (allow_trust)"
                    );
                }
                return Ok(());
            }
            auth_code::CLEARTEXT => {
                if !client.stream.is_tls() {
                    tracing::warn!(
                        target = target_name,
                        "server asks for a cleartext password; refused over an unencrypted client connection"
                    );
                    return Err(SessionError::Refused(
                        "the server asks for a cleartext password, which airlock relays only over TLS: connect with sslmode=require".into(),
                    ));
                }
                client.write_all(frame.as_bytes()).await?;
                let reply = expect_password(client).await?;
                server.write_all(reply.as_bytes()).await.map_err(conn_err)?;
                exchanged = true;
            }
            auth_code::MD5 => {
                client.write_all(frame.as_bytes()).await?;
                let reply = expect_password(client).await?;
                server.write_all(reply.as_bytes()).await.map_err(conn_err)?;
                exchanged = true;
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
                        "the server offers no SASL mechanism airlock can relay (SCRAM-SHA-256)",
                    ));
                }
                sasl = true;
                exchanged = true;
                let mut out = BytesMut::new();
                backend::authentication_sasl(&mut out, &[SCRAM_SHA_256]);
                client.write_all(&out).await?;
                let initial = expect_password(client).await?;
                check_initial(&initial)?;
                server
                    .write_all(initial.as_bytes())
                    .await
                    .map_err(conn_err)?;
            }
            auth_code::SASL_CONTINUE if sasl => {
                client.write_all(frame.as_bytes()).await?;
                let reply = expect_password(client).await?;
                server.write_all(reply.as_bytes()).await.map_err(conn_err)?;
            }
            auth_code::SASL_FINAL if sasl => {
                client.write_all(frame.as_bytes()).await?;
            }
            other => {
                return Err(upstream_err(format!(
                    "the server asked for an authentication method airlock cannot relay ({other})"
                )))
            }
        }
    }
}

/// The client's SASLInitialResponse must pick SCRAM-SHA-256 without
/// channel binding (`n,` or `y,`: we offered no `-PLUS`).
fn check_initial(frame: &Frame) -> Result<(), SessionError> {
    let initial = SaslInitialResponse::decode(frame.body())
        .map_err(|e| SessionError::Protocol(e.to_string()))?;
    if initial.mechanism != SCRAM_SHA_256.as_bytes() {
        return Err(SessionError::Protocol(
            "client selected an invalid SASL authentication mechanism".into(),
        ));
    }
    if !(initial.data.starts_with(b"n,") || initial.data.starts_with(b"y,")) {
        return Err(SessionError::Protocol(
            "SCRAM channel binding is not available through airlock (connect with channel_binding=disable)".into(),
        ));
    }
    Ok(())
}

/// The server refused the login: a class-28 error is a failed password as
/// far as the client is told; anything else is mapped as at any startup.
fn refusal(target_name: &str, user: &str, body: &[u8]) -> SessionError {
    let code = error_code(body).unwrap_or(b"08006");
    if code.starts_with(b"28") {
        let message = error_fields(body)
            .find(|(c, _)| *c == b'M')
            .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        tracing::info!(
            target = target_name,
            user,
            sqlstate = %String::from_utf8_lossy(code),
            %message,
            "server refused the passthrough login"
        );
        return SessionError::AuthFailed(user.to_owned());
    }
    // The client's own user: nothing to hide.
    startup_error(target_name, body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initial(data: &[u8]) -> Frame {
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::sasl_initial_response(SCRAM_SHA_256, data, &mut out)
            .expect("encode");
        Frame::from_bytes(out.freeze()).expect("a whole frame")
    }

    #[test]
    fn channel_binding_is_refused() {
        assert!(check_initial(&initial(b"n,,n=,r=abc")).is_ok());
        assert!(check_initial(&initial(b"y,,n=,r=abc")).is_ok());
        assert!(check_initial(&initial(b"p=tls-server-end-point,,n=,r=abc")).is_err());
    }
}
