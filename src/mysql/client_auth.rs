//! The client leg of the connection phase: airlock's greeting, the optional
//! TLS upgrade (SSLRequest, then rustls with the `[tls]` server config the
//! Postgres listener uses), the client's HandshakeResponse41 and the
//! password exchange ([`super::password`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::BytesMut;

use airlock_protocol::mysql::auth::{self, Secret};
use airlock_protocol::mysql::handshake::{Greeting, Response};
use airlock_protocol::mysql::{caps, status, CHARSET_UTF8MB4};

use super::conn::PacketConn;
use super::error::MyError;
use super::password::{exchange, Attempt};
use crate::proxy::Proxy;

/// What airlock tells clients it is.
pub const SERVER_VERSION: &str = "5.5.5-10.11.0-airlock";

/// The capabilities airlock offers clients (plus `CLIENT_SSL` when `[tls]`
/// is configured). Not offered: LOCAL_FILES (no LOAD DATA LOCAL),
/// COMPRESS, DEPRECATE_EOF and SESSION_TRACK (airlock follows responses in
/// the classic EOF format), NO_SCHEMA.
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

/// Collation ids (the handshake's one-byte charset) of character sets whose
/// multi-byte characters can end in `\` (0x5C): big5, sjis, gbk, cp932,
/// gb18030. Under them the server would read a backslash where airlock's
/// UTF-8 view sees part of a character, so string literals could end in
/// different places. None is among [`RESULT_SAFE_COLLATIONS`] (a test
/// checks it).
#[cfg(test)]
const UNSAFE_COLLATIONS: &[u8] = &[1, 84, 13, 88, 28, 87, 95, 96, 248, 249, 250];

/// An authenticated client.
#[derive(Debug)]
pub struct Hello {
    /// The identity name.
    pub user: String,
    /// The client's login packet; `capabilities` already masked to
    /// [`ADVERTISED`] (so without `CLIENT_SSL`).
    pub response: Response,
}

/// The ERR every failed login gets, whatever the reason.
pub fn access_denied(
    user: &str,
    peer: IpAddr,
    with_password: bool,
    database: Option<&[u8]>,
    why: &'static str,
) -> MyError {
    MyError::LoginFailed {
        identity: user.to_owned(),
        database: database
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default(),
        why,
        message: format!(
            "Access denied for user '{user}'@'{peer}' (using password: {})",
            if with_password { "YES" } else { "NO" }
        ),
    }
}

/// `e` as a failed login of `user` when it is a 1045 refusal from the
/// exchange (caching_sha2_password's full authentication refused without
/// TLS: a wrong password, or a cache miss, over plain TCP); other errors
/// as they are. Review finding: those refusals were neither audited nor
/// counted once failed logins became [`MyError::LoginFailed`].
pub fn exchange_failure(e: MyError, user: &str, database: Option<&[u8]>) -> MyError {
    match e {
        MyError::Refused {
            code: 1045,
            message,
            ..
        } => MyError::LoginFailed {
            identity: user.to_owned(),
            database: database
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .unwrap_or_default(),
            why: "caching_sha2_password full authentication asked for over plain TCP (a wrong password, or a cache miss)",
            message,
        },
        other => other,
    }
}

/// Why a login failed, for the audit log (never for the client).
pub fn failure_reason(known: bool) -> &'static str {
    if known {
        "wrong password"
    } else {
        "no identity of that name may log in over MySQL"
    }
}

/// The verifiers of identity `user`, if it exists and may log in over MySQL.
pub fn lookup(proxy: &Proxy, user: &str) -> Option<Secret> {
    let config = proxy.config();
    let identity = config.identities.get(user)?;
    let secret = super::secret(identity);
    if secret.is_none() {
        tracing::warn!(identity = %user, "identity has no valid mysql_secret; it cannot log in over MySQL");
    }
    secret
}

/// The secret unknown identities are checked against: verifiers of the
/// kinds most configured identities have ([`mock_kinds`], counted once per
/// config load), so that the plugin airlock asks an unknown name for is the
/// one most real names get. Red-team finding: the mock always had both, so
/// a client asking for caching_sha2 was switched to native for a
/// native-only identity (the README's `*…` form) but not for an unknown
/// name.
pub fn mock(proxy: &Proxy) -> Secret {
    let kinds = proxy.mysql_mock_kinds();
    let mut mock = Secret::of(&proxy.mock_secret);
    if !kinds.native {
        mock.native = None;
    }
    if !kinds.sha2 {
        mock.sha2 = None;
    }
    mock
}

/// Which verifiers the mock secret of unknown MySQL identities has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockKinds {
    pub native: bool,
    pub sha2: bool,
}

/// The verifier kinds most of `identities` have: native only, caching_sha2
/// only, or both (also when no kind is most, or there are none). Counted
/// when a config is loaded, not at each login, where it would walk and
/// parse every identity's secret.
pub fn mock_kinds<'a>(
    identities: impl IntoIterator<Item = &'a crate::config::Identity>,
) -> MockKinds {
    let (mut native_only, mut sha2_only, mut both) = (0usize, 0usize, 0usize);
    for identity in identities {
        match super::secret(identity) {
            Some(Secret {
                native: Some(_),
                sha2: None,
            }) => native_only += 1,
            Some(Secret {
                native: None,
                sha2: Some(_),
            }) => sha2_only += 1,
            Some(_) => both += 1,
            None => {}
        }
    }
    let native_most = native_only > both.max(sha2_only);
    let sha2_most = sha2_only > both.max(native_only);
    MockKinds {
        native: !sha2_most,
        sha2: !native_most,
    }
}

/// Collations a client may log in with: those of utf8mb4 (MySQL 8's
/// default 255 included), utf8mb3, latin1 and ascii. The login collation
/// sets the character set results come in too, and masking reads column
/// names and values as ASCII-compatible text: `binary` (63) or utf16
/// would send them undecoded, past the value detectors and name-based
/// masks. Character sets whose multi-byte characters can hold a backslash
/// ([`UNSAFE_COLLATIONS`]) are not among them either.
const RESULT_SAFE_COLLATIONS: &[std::ops::RangeInclusive<u8>] = &[
    5..=5,
    8..=8,
    11..=11,
    15..=15,
    31..=31,
    33..=33,
    45..=49,
    65..=65,
    83..=83,
    94..=94,
    192..=215,
    223..=247,
    255..=255,
];

/// Refuses a client collation outside [`RESULT_SAFE_COLLATIONS`].
pub fn check_charset(collation: u16) -> Result<(), MyError> {
    if u8::try_from(collation).is_ok_and(|c| RESULT_SAFE_COLLATIONS.iter().any(|r| r.contains(&c)))
    {
        return Ok(());
    }
    Err(MyError::refused(
        1115,
        "42000",
        format!(
            "airlock: client character set (collation {collation}) is not allowed: airlock reads statements and results in utf8mb4, utf8mb3, latin1 or ascii; use utf8mb4"
        ),
    ))
}

/// Greets the client, upgrades to TLS if asked, and checks its password.
pub async fn authenticate(
    proxy: &Proxy,
    client: &mut PacketConn,
    peer: IpAddr,
) -> Result<Hello, MyError> {
    let scramble = auth::new_scramble();
    let tls = proxy.client_tls.as_ref();
    let greeting = Greeting {
        server_version: SERVER_VERSION.into(),
        connection_id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        scramble: scramble.to_vec(),
        capabilities: ADVERTISED | if tls.is_some() { caps::SSL } else { 0 },
        charset: CHARSET_UTF8MB4,
        status: status::AUTOCOMMIT,
        auth_plugin: auth::NATIVE.into(),
    };
    let mut out = BytesMut::new();
    greeting.encode(&mut out);
    client.next_seq = 0;
    client.send(&out).await?;

    // Not a buffered read: after an SSLRequest the client's ClientHello
    // follows at once and must stay on the socket for the TLS handshake.
    let mut packet = client.read_exact_packet().await?;
    if Response::is_ssl_request(&packet.payload) {
        let Some(tls) = tls else {
            return Err(MyError::refused(
                1045,
                "28000",
                "airlock has no TLS configured for this listener ([tls]); connect without TLS",
            ));
        };
        client.accept_tls(&tls.acceptor).await?;
        packet = client.read().await?;
    } else if tls.is_some_and(|t| t.require) {
        return Err(MyError::refused(
            1045,
            "28000",
            "airlock requires TLS on this listener; connect with TLS (e.g. --ssl / ssl-mode=REQUIRED)",
        ));
    }
    let mut response =
        Response::parse(&packet.payload).map_err(|e| MyError::Protocol(e.to_string()))?;
    response.capabilities &= ADVERTISED;
    check_charset(u16::from(response.charset))?;
    client.capabilities = response.capabilities;
    client.max_packet = response.max_packet;
    let user = String::from_utf8_lossy(&response.user).into_owned();
    let with_password = !response.auth_response.is_empty();
    let secret = lookup(proxy, &user);
    let known = secret.is_some();
    let ok = exchange(
        client,
        Attempt {
            plugin: response.auth_plugin.as_deref().unwrap_or(auth::NATIVE),
            token: std::mem::take(&mut response.auth_response),
            greeted: auth::NATIVE,
            scramble: &scramble,
            can_switch: response.capabilities & caps::PLUGIN_AUTH != 0,
            secret,
            mock: mock(proxy),
        },
    )
    .await
    .map_err(|e| exchange_failure(e, &user, response.database.as_deref()))?;
    if !ok {
        tracing::info!(identity = %user, "MySQL login failed");
        return Err(access_denied(
            &user,
            peer,
            with_password,
            response.database.as_deref(),
            failure_reason(known),
        ));
    }
    Ok(Hello { user, response })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identities(secrets: &[&str]) -> Vec<crate::config::Identity> {
        secrets
            .iter()
            .map(|m| {
                let doc = format!("secret = \"x\"\ntargets = [\"app\"]\nmysql_secret = \"{m}\"\n");
                toml::from_str(&doc).expect("identity")
            })
            .collect()
    }

    #[test]
    fn the_mock_has_the_verifier_kinds_most_identities_have() {
        let native = "*6BB4837EB74329105EE4568DDA7DC67ED2CA2AD9";
        let sha2 = "sha2:0000000000000000000000000000000000000000000000000000000000000000";
        let both = format!("{native} {sha2}");
        let kinds = |s: &[&str]| mock_kinds(identities(s).iter());
        let (n, s2, b) = (
            MockKinds {
                native: true,
                sha2: false,
            },
            MockKinds {
                native: false,
                sha2: true,
            },
            MockKinds {
                native: true,
                sha2: true,
            },
        );
        assert_eq!(kinds(&[native, native, &both]), n);
        assert_eq!(kinds(&[sha2, sha2, native]), s2);
        assert_eq!(kinds(&[&both, &both, native]), b);
        // A tie, no identity, or only unusable secrets: both kinds.
        assert_eq!(kinds(&[native, sha2]), b);
        assert_eq!(kinds(&[]), b);
        assert_eq!(kinds(&["not a secret"]), b);
    }

    #[test]
    fn local_files_and_tls_are_never_passed_on() {
        // LOAD DATA LOCAL needs CLIENT_LOCAL_FILES: never offered, so
        // masked off every client's flags (and upstream strips it again).
        assert_eq!(ADVERTISED & caps::LOCAL_FILES, 0);
        // CLIENT_SSL is offered separately and masked off the flags the
        // upstream login copies.
        assert_eq!(ADVERTISED & caps::SSL, 0);
        assert_eq!(ADVERTISED & caps::COMPRESS, 0);
        // gbk_chinese_ci, sjis_japanese_ci, big5_chinese_ci are refused;
        // utf8mb4_general_ci and latin1_swedish_ci are fine.
        for unsafe_id in [28, 13, 1] {
            assert!(UNSAFE_COLLATIONS.contains(&unsafe_id));
        }
        for safe in [CHARSET_UTF8MB4, 8, 33, 63] {
            assert!(!UNSAFE_COLLATIONS.contains(&safe));
        }
        // Logins: utf8mb4, utf8mb3, latin1 and ascii collations only; not
        // binary (63), ucs2 (35), utf16 (54), utf32 (60), nor the above.
        for ok in [
            u16::from(CHARSET_UTF8MB4),
            8,
            11,
            33,
            45,
            46,
            192,
            224,
            247,
            255,
        ] {
            assert!(check_charset(ok).is_ok(), "{ok}");
        }
        for refused in [63, 35, 54, 56, 60, 28, 13, 1, 95, 248, 256] {
            assert!(check_charset(refused).is_err(), "{refused}");
        }
        for unsafe_id in UNSAFE_COLLATIONS {
            assert!(check_charset(u16::from(*unsafe_id)).is_err(), "{unsafe_id}");
        }
    }
}
