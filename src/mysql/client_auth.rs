//! The client leg of the connection phase: airlock's greeting, the client's
//! HandshakeResponse41 and `mysql_native_password` verification.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::BytesMut;

use airlock_protocol::mysql::handshake::{Greeting, Response};
use airlock_protocol::mysql::{auth, caps, packets, status, CHARSET_UTF8MB4};

use super::conn::PacketConn;
use super::error::MyError;
use crate::proxy::Proxy;

/// What airlock tells clients it is.
pub const SERVER_VERSION: &str = "5.5.5-10.11.0-airlock";

/// The capabilities airlock offers clients. Not offered: LOCAL_FILES (no
/// LOAD DATA LOCAL), SSL (not yet), COMPRESS, DEPRECATE_EOF and
/// SESSION_TRACK (airlock follows responses in the classic EOF format),
/// NO_SCHEMA.
pub const ADVERTISED: u32 = caps::LONG_PASSWORD
    | caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::IGNORE_SPACE
    | caps::PROTOCOL_41
    | caps::INTERACTIVE
    | caps::TRANSACTIONS
    | caps::RESERVED2
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA;

static NEXT_CONNECTION_ID: AtomicU32 = AtomicU32::new(1);

/// An authenticated client.
#[derive(Debug)]
pub struct Hello {
    /// The identity name.
    pub user: String,
    /// The client's login packet; `capabilities` already masked to
    /// [`ADVERTISED`].
    pub response: Response,
}

/// The ERR every failed login gets, whatever the reason.
pub fn access_denied(user: &str, peer: IpAddr, with_password: bool) -> MyError {
    MyError::refused(
        1045,
        "28000",
        format!(
            "Access denied for user '{user}'@'{peer}' (using password: {})",
            if with_password { "YES" } else { "NO" }
        ),
    )
}

/// Greets the client and checks its password.
pub async fn authenticate(
    proxy: &Proxy,
    client: &mut PacketConn,
    peer: IpAddr,
) -> Result<Hello, MyError> {
    let scramble = auth::new_scramble();
    let greeting = Greeting {
        server_version: SERVER_VERSION.into(),
        connection_id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        scramble: scramble.to_vec(),
        capabilities: ADVERTISED,
        charset: CHARSET_UTF8MB4,
        status: status::AUTOCOMMIT,
        auth_plugin: auth::NATIVE.into(),
    };
    let mut out = BytesMut::new();
    greeting.encode(&mut out);
    client.next_seq = 0;
    client.send(&out).await?;

    let packet = client.read().await?;
    if Response::is_ssl_request(&packet.payload) {
        return Err(MyError::refused(
            1045,
            "28000",
            "airlock does not offer TLS on the MySQL listener yet; connect without TLS (e.g. --ssl=0 / ssl-mode=DISABLED)",
        ));
    }
    let mut response =
        Response::parse(&packet.payload).map_err(|e| MyError::Protocol(e.to_string()))?;
    response.capabilities &= ADVERTISED;
    let user = String::from_utf8_lossy(&response.user).into_owned();

    // A client that starts with another plugin (caching_sha2_password from
    // MySQL 8 clients) is asked to switch.
    let mut token = response.auth_response.clone();
    let plugin = response.auth_plugin.as_deref().unwrap_or(auth::NATIVE);
    if plugin != auth::NATIVE {
        if response.capabilities & caps::PLUGIN_AUTH == 0 {
            return Err(access_denied(&user, peer, !token.is_empty()));
        }
        let mut switch = BytesMut::new();
        packets::auth_switch(&mut switch, auth::NATIVE, &scramble);
        client.send(&switch).await?;
        token = client.read().await?.payload.to_vec();
    }

    let config = proxy.config();
    let stored = config.identities.get(&user).and_then(|i| {
        let v = super::native_verifier(i);
        if v.is_none() {
            tracing::warn!(identity = %user, "identity has no valid mysql_secret; it cannot log in over MySQL");
        }
        v
    });
    // Unknown identities are checked against a hash no password matches, so
    // both failures take the same path.
    let mock = auth::native_hash(&proxy.mock_secret);
    let ok = auth::native_verify(&scramble, stored.as_ref().unwrap_or(&mock), &token)
        && stored.is_some();
    if !ok {
        tracing::info!(identity = %user, "MySQL login failed");
        return Err(access_denied(&user, peer, !token.is_empty()));
    }
    response.auth_response = token;
    Ok(Hello { user, response })
}
