//! The `[admin]` and `[approvals]` tables: the admin HTTP listener (API,
//! metrics, web console) and how long a statement waits for a human.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;

/// The admin listener. Without this table there is no admin API, and a
/// statement that needs approval is refused (nobody could approve it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener, e.g. "127.0.0.1:9187".
    pub listen: Spanned<SocketAddr>,
    /// Environment variable holding the bearer token.
    pub token_env: Option<Spanned<String>>,
    /// File holding the bearer token (trailing newline ignored).
    pub token_file: Option<Spanned<PathBuf>>,
    /// Resolved by `Config::validate`; `None` only on a loopback address.
    #[serde(skip)]
    pub token: Option<Secret>,
}

/// Human approval of statements a `require_approval` rule holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long a held statement waits for a decision before it is refused.
    #[serde(with = "super::humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            timeout: Duration::from_secs(120),
        }
    }
}

/// Reads the admin token from `token_env` or `token_file`, and refuses a
/// listener that is not on loopback without one. With `optional` (`airlock
/// check`), a token that cannot be read is noted in `unread` instead. The
/// error is the span, key and message for the caller's `ConfigError`.
pub(super) fn resolve_token(
    admin: &mut AdminConfig,
    base: &std::path::Path,
    optional: bool,
    unread: &mut Vec<String>,
) -> Result<(), (std::ops::Range<usize>, String, String)> {
    admin.token = match super::secrets::read(
        "admin.token",
        admin.token_env.as_ref(),
        admin.token_file.as_ref(),
        base,
        optional,
        unread,
    )? {
        super::secrets::Read::Value(token) => Some(token),
        super::secrets::Read::Unset => None,
        // A token is configured: the listener is not an open one.
        super::secrets::Read::Unread => return Ok(()),
    };
    if admin.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
        return Err((
            admin.listen.span(),
            "admin.token_env".into(),
            "the admin token is empty".into(),
        ));
    }
    if admin.token.is_none() && !admin.listen.get_ref().ip().is_loopback() {
        return Err((
            admin.listen.span(),
            "admin.listen".into(),
            format!(
                "{} is not a loopback address: set admin.token_env or admin.token_file",
                admin.listen.get_ref()
            ),
        ));
    }
    Ok(())
}
