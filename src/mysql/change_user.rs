//! COM_CHANGE_USER: the client logs in again, as another (or the same)
//! airlock identity. airlock always answers with an AuthSwitchRequest and a
//! fresh scramble, then runs the usual password exchange
//! ([`super::password`]). On success the session starts over as the new
//! identity: its policy, masking and target apply, and the upstream
//! connection is replaced by a fresh login (see [`super::session`]). A
//! failed attempt ends the connection with ERR 1045, as MySQL does.

use airlock_protocol::mysql::auth;
use airlock_protocol::mysql::caps;
use airlock_protocol::mysql::change_user::ChangeUser;
use airlock_protocol::mysql::handshake::Response;
use airlock_protocol::mysql::CHARSET_UTF8MB4;

use super::client_auth::{
    access_denied, check_charset, exchange_failure, failure_reason, lookup, mock, Hello,
};
use super::conn::PacketConn;
use super::error::MyError;
use super::password::{exchange, Attempt};
use crate::proxy::Proxy;

/// Re-authenticates the client from its COM_CHANGE_USER `payload`.
pub async fn reauthenticate(
    proxy: &Proxy,
    client: &mut PacketConn,
    payload: &[u8],
) -> Result<Hello, MyError> {
    let capabilities = client.capabilities;
    let req = ChangeUser::parse(payload, capabilities)
        .ok_or_else(|| MyError::Protocol("malformed COM_CHANGE_USER".into()))?;
    if capabilities & caps::PLUGIN_AUTH == 0 {
        return Err(MyError::refused(
            1047,
            "08S01",
            "airlock: COM_CHANGE_USER needs a client with plugin authentication (CLIENT_PLUGIN_AUTH)",
        ));
    }
    if let Some(c) = req.charset {
        check_charset(c)?;
    }
    let user = String::from_utf8_lossy(&req.user).into_owned();
    let scramble = auth::new_scramble();
    let secret = lookup(proxy, &user);
    let known = secret.is_some();
    let ok = exchange(
        client,
        Attempt {
            plugin: "",
            greeted: "",
            token: Vec::new(),
            scramble: &scramble,
            can_switch: true,
            secret,
            mock: mock(proxy),
        },
    )
    .await
    .map_err(|e| exchange_failure(e, &user, Some(&req.database)))?;
    if !ok {
        tracing::info!(identity = %user, "MySQL COM_CHANGE_USER failed");
        let peer = client
            .peer_ip()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        return Err(access_denied(
            &user,
            peer,
            true,
            Some(&req.database),
            failure_reason(known),
        ));
    }
    tracing::info!(identity = %user, "COM_CHANGE_USER authenticated");
    let charset = req
        .charset
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(CHARSET_UTF8MB4);
    // (check_charset refused collations beyond one byte.)
    Ok(Hello {
        user,
        response: Response {
            capabilities,
            max_packet: client.max_packet,
            charset,
            user: req.user,
            auth_response: Vec::new(),
            database: Some(req.database),
            auth_plugin: None,
            attributes: Vec::new(),
        },
    })
}
