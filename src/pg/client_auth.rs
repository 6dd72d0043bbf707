//! The client leg's authentication: the agent proves its identity to airlock.
//!
//! airlock offers SCRAM-SHA-256 against the identity's stored verifier. When
//! `tls.allow_cleartext_password` is set and the connection is encrypted, it
//! asks for a cleartext password instead and checks it against the same
//! verifier. An unknown identity runs the same exchange against a mock
//! verifier derived from a per-process secret, so it fails exactly like a
//! wrong secret, in the same time: FATAL 28P01 with the same message, no
//! user enumeration. The cleartext check derives a key from the mock
//! verifier too.
//!
//! With `[jwt]` configured, a cleartext password that looks like a JWT is
//! verified as one instead (see [`crate::identity::jwt`]); its user claim
//! must equal the startup user name. Never without TLS: the cleartext
//! exchange is only offered over TLS, and SCRAM cannot carry a token.
//!
//! A `credentials = "passthrough"` target skips all of this: the client's
//! database login is relayed to the server instead ([`passthrough`]).

pub mod passthrough;

use bytes::BytesMut;

use airlock_protocol::pg::backend;
use airlock_protocol::pg::frontend::{cleartext_password, SaslInitialResponse, PASSWORD};
use airlock_protocol::pg::scram::{ScramServer, ScramVerifier, SCRAM_SHA_256};

use super::conn::Conn;
use super::error::SessionError;
use crate::config::JwtConfig;
use crate::identity::jwt::{self, JwtClaims};

/// What the listener knows for checking one login.
pub struct Login<'a> {
    pub user: &'a str,
    /// The identity's verifier, `None` for an unknown identity.
    pub verifier: Option<&'a ScramVerifier>,
    pub allow_cleartext: bool,
    /// Per-process secret for mock verifiers.
    pub mock_secret: &'a [u8],
    /// The iteration count of mock verifiers: the one most identities'
    /// verifiers have ([`crate::proxy::Proxy::scram_mock_iterations`]).
    pub mock_iterations: u32,
    /// `[jwt]`, when tokens are accepted as passwords.
    pub jwt: Option<&'a JwtConfig>,
}

/// How the agent proved itself.
#[derive(Debug)]
pub enum Authenticated {
    /// The identity's secret (SCRAM or cleartext).
    Secret,
    /// A verified JWT.
    Jwt(JwtClaims),
}

/// Runs the exchange. Does not send AuthenticationOk: the session sends it
/// once the upstream connection is up, together with the server's greeting.
pub async fn authenticate(
    conn: &mut Conn,
    login: &Login<'_>,
) -> Result<Authenticated, SessionError> {
    let failed = || SessionError::AuthFailed(login.user.to_owned());
    let mut out = BytesMut::new();
    if login.allow_cleartext && conn.stream.is_tls() {
        backend::authentication_cleartext(&mut out);
        conn.write_all(&out).await?;
        let frame = expect_password(conn).await?;
        let password =
            cleartext_password(frame.body()).map_err(|e| SessionError::Protocol(e.to_string()))?;
        let password = std::str::from_utf8(password).map_err(|_| failed())?;
        if let Some(config) = login.jwt.filter(|_| jwt::looks_like_jwt(password)) {
            return match jwt::verify(config, password) {
                Ok(claims) if claims.name == login.user => Ok(Authenticated::Jwt(claims)),
                Ok(claims) => {
                    tracing::info!(
                        user = login.user,
                        claim = %claims.name,
                        "JWT refused: its user claim names another identity"
                    );
                    Err(failed())
                }
                Err(e) => {
                    tracing::info!(user = login.user, error = %e, "JWT refused");
                    Err(failed())
                }
            };
        }
        return match login.verifier {
            Some(v) if password_matches(v, password) => Ok(Authenticated::Secret),
            Some(_) => Err(failed()),
            None => {
                // The same key derivation as for an identity that exists,
                // so that the time a refusal takes does not tell (red-team
                // finding: 0.06 ms against 0.83 ms told them apart).
                let mock =
                    ScramVerifier::mock(login.mock_secret, login.user, login.mock_iterations);
                std::hint::black_box(password_matches(&mock, password));
                Err(failed())
            }
        };
    }

    backend::authentication_sasl(&mut out, &[SCRAM_SHA_256]);
    conn.write_all(&out).await?;
    let frame = expect_password(conn).await?;
    let initial = SaslInitialResponse::decode(frame.body())
        .map_err(|e| SessionError::Protocol(e.to_string()))?;
    if initial.mechanism != SCRAM_SHA_256.as_bytes() {
        return Err(SessionError::Protocol(
            "client selected an invalid SASL authentication mechanism".into(),
        ));
    }
    let mut server = match login.verifier {
        Some(v) => ScramServer::new(v.clone()),
        None => ScramServer::new_mock(login.mock_secret, login.user, login.mock_iterations),
    };
    let server_first = server.client_first(initial.data).map_err(|e| {
        tracing::info!(user = login.user, error = %e, "SCRAM exchange refused");
        failed()
    })?;
    out.clear();
    backend::authentication_sasl_continue(&mut out, &server_first);
    conn.write_all(&out).await?;

    let frame = expect_password(conn).await?;
    let server_final = server.client_final(frame.body()).map_err(|e| {
        tracing::info!(user = login.user, error = %e, "SCRAM proof rejected");
        failed()
    })?;
    if login.verifier.is_none() {
        // Unreachable in practice (the mock proof cannot match), but never
        // let an unknown identity in.
        return Err(failed());
    }
    out.clear();
    backend::authentication_sasl_final(&mut out, &server_final);
    conn.write_all(&out).await?;
    Ok(Authenticated::Secret)
}

async fn expect_password(
    conn: &mut Conn,
) -> Result<airlock_protocol::pg::frame::Frame, SessionError> {
    let frame = conn.read_frame().await?;
    if frame.tag() != PASSWORD {
        return Err(SessionError::Protocol(format!(
            "expected a password message, got '{}'",
            char::from(frame.tag())
        )));
    }
    Ok(frame)
}

/// Checks a cleartext password against a verifier.
fn password_matches(v: &ScramVerifier, password: &str) -> bool {
    let derived = ScramVerifier::derive(password, &v.salt, v.iterations);
    // Compare in constant time: the keys are secret-derived.
    derived
        .stored_key
        .iter()
        .zip(v.stored_key.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}
