//! `[jwt]`: agents may present a signed JWT as their password.
//!
//! Only over TLS with `tls.allow_cleartext_password` (a JWT is a bearer
//! token). A verified token makes an ad-hoc identity: its name, model and
//! groups come from the token's claims, its targets from `jwt.targets`.
//! `[identities]` is not consulted for such a login.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use toml::Spanned;

use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// A JWKS file (`{"keys": [...]}`) with the RS256/ES256 public keys,
    /// selected by the token's `kid`.
    pub jwks: Option<Spanned<PathBuf>>,
    /// Environment variable holding an HS256 shared secret.
    pub hs256_secret_env: Option<Spanned<String>>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set (a token with an `aud` is refused without it).
    pub audience: Option<String>,
    /// The claim naming the identity; it must equal the startup user name.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// The claim naming the model behind the agent (optional in tokens).
    #[serde(default = "default_model_claim")]
    pub model_claim: String,
    /// The claim listing the identity's groups (optional in tokens).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Clock skew allowed for `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "super::humantime_serde_compat")]
    pub leeway: Duration,
    /// Targets a JWT-authenticated identity may connect to; "*" for all.
    pub targets: Spanned<Vec<String>>,
    /// Most sessions one JWT identity may have open at once.
    pub max_sessions: Option<usize>,
    /// End a session when its token expires (`exp` plus `leeway`), as
    /// an ephemeral credential's session ends at its TTL. Off by default:
    /// pools hold connections longer than tokens often live.
    #[serde(default)]
    pub end_sessions_at_expiry: bool,
    /// Loaded from `jwks` by validation.
    #[serde(skip)]
    pub jwk_set: Option<JwkSet>,
    /// Resolved from `hs256_secret_env` by validation.
    #[serde(skip)]
    pub hs256_secret: Option<Secret>,
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_model_claim() -> String {
    "model".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
