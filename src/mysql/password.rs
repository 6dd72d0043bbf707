//! The password exchange of a MySQL login (and of COM_CHANGE_USER), after
//! the client's first token: `mysql_native_password`, and
//! `caching_sha2_password` with its fast path (token checked against
//! `SHA256(SHA256(password))`) and full path (the password itself, accepted
//! only over TLS; RSA key exchange is refused with an ERR that says to use
//! TLS).
//!
//! Plugin choice: the client's plugin if it is the one airlock greeted with
//! and the identity has a verifier for it; otherwise one AuthSwitchRequest:
//! to caching_sha2 when the client asked for it and it can work (a sha2
//! verifier, or TLS for the full path), else to native when the identity
//! has a native verifier, else to caching_sha2. Unknown identities are
//! checked against a mock secret with the verifiers most identities have
//! ([`super::client_auth::mock`]), so they fail exactly like a wrong
//! password for such an identity. Where identities have different kinds,
//! the plugin asked for still tells the kinds apart.

use bytes::BytesMut;

use airlock_protocol::mysql::auth::{self, Secret};
use airlock_protocol::mysql::packets;

use super::conn::PacketConn;
use super::error::MyError;

/// AuthMoreData: fast authentication succeeded (an OK follows).
const FAST_AUTH_OK: [u8; 2] = [packets::AUTH_MORE_DATA, 3];
/// AuthMoreData: send the password itself.
const FULL_AUTH: [u8; 2] = [packets::AUTH_MORE_DATA, 4];

/// What the client asks to log in as.
pub struct Attempt<'a> {
    /// The plugin the client's first token was made for (`""`: none; the
    /// exchange starts with an AuthSwitchRequest).
    pub plugin: &'a str,
    /// The plugin airlock named with the scramble (greeting); a token made
    /// for another plugin is not checked but asked for again.
    pub greeted: &'a str,
    pub token: Vec<u8>,
    pub scramble: &'a [u8; 20],
    /// The client understands AuthSwitchRequest.
    pub can_switch: bool,
    /// The identity's verifiers; `None` for an unknown identity (or one
    /// without a valid `mysql_secret`).
    pub secret: Option<Secret>,
    /// Stands in for unknown identities.
    pub mock: Secret,
}

/// The ERR a client gets that needs the full path without TLS.
pub fn needs_tls() -> MyError {
    MyError::refused(
        1045,
        "28000",
        "airlock: caching_sha2_password full authentication (and RSA public-key retrieval) is only offered over TLS; connect with TLS (e.g. --ssl / ssl-mode=REQUIRED) or use mysql_native_password",
    )
}

/// Runs the exchange. `Ok(true)` when the password matched (the caller
/// sends the final OK or ERR); `Err` for a refusal that has its own ERR.
pub async fn exchange(client: &mut PacketConn, a: Attempt<'_>) -> Result<bool, MyError> {
    let known = a.secret.is_some();
    let s = a.secret.unwrap_or(a.mock);
    let mut plugin = a.plugin.to_owned();
    let mut token = a.token;
    let mut switched = false;
    if plugin != a.greeted && a.can_switch {
        // The token was not made for the plugin airlock greeted with (some
        // clients send none at all then): ask again, for the client's
        // plugin if it can work, as MySQL servers do.
        switched = true;
        let to = if plugin == auth::CACHING_SHA2 && (s.sha2.is_some() || client.is_tls()) {
            auth::CACHING_SHA2
        } else if s.native.is_some() {
            auth::NATIVE
        } else {
            auth::CACHING_SHA2
        };
        plugin = switch(client, to, a.scramble, &mut token).await?;
    }
    loop {
        match plugin.as_str() {
            auth::NATIVE if s.native.is_some() => {
                let ok = s
                    .native
                    .is_some_and(|h| auth::native_verify(a.scramble, &h, &token));
                return Ok(ok && known);
            }
            auth::CACHING_SHA2 => {
                if let Some(h) = s.sha2 {
                    if auth::caching_sha2_verify(a.scramble, &h, &token) {
                        client.send(&FAST_AUTH_OK).await?;
                        return Ok(known);
                    }
                }
                if client.is_tls() {
                    client.send(&FULL_AUTH).await?;
                    let reply = client.read().await?;
                    let p = &reply.payload;
                    let password = p.strip_suffix(&[0]).unwrap_or(p);
                    return Ok(s.check_password(password) && known);
                }
                if s.sha2.is_none() && a.can_switch && !switched {
                    // A native-only identity: switch rather than fail.
                    switched = true;
                    plugin = switch(client, auth::NATIVE, a.scramble, &mut token).await?;
                    continue;
                }
                // Let the client ask (public key request, RSA blob, or
                // nothing at all), then refuse.
                client.send(&FULL_AUTH).await?;
                client.read().await?;
                return Err(needs_tls());
            }
            _ if a.can_switch && !switched => {
                switched = true;
                let to = if s.native.is_some() {
                    auth::NATIVE
                } else {
                    auth::CACHING_SHA2
                };
                plugin = switch(client, to, a.scramble, &mut token).await?;
            }
            _ => return Ok(false),
        }
    }
}

/// Sends an AuthSwitchRequest and reads the client's new token.
async fn switch(
    client: &mut PacketConn,
    plugin: &str,
    scramble: &[u8; 20],
    token: &mut Vec<u8>,
) -> Result<String, MyError> {
    let mut out = BytesMut::new();
    packets::auth_switch(&mut out, plugin, scramble);
    client.send(&out).await?;
    *token = client.read().await?.payload.to_vec();
    Ok(plugin.to_owned())
}
