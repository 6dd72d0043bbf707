//! Verifying a JWT presented as an agent's password.
//!
//! Accepted algorithms: HS256 (the `jwt.hs256_secret_env` key), RS256 and
//! ES256 (the JWKS key named by the token's `kid`, whose type must match the
//! algorithm). `alg: none` and every other algorithm are refused. `exp` is
//! required; `nbf` is checked; `iss` and `aud`, when configured, are
//! required and checked (a token without them is refused). A header with
//! `crit` (extensions the token says must be understood) is refused, as
//! RFC 7515 asks of a verifier that understands none.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::JwtConfig;

/// Who a verified token says the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// The `user_claim`: the identity name.
    pub name: String,
    /// The `model_claim`, if present.
    pub model: Option<String>,
    /// The `groups_claim` (a string array, or one string), if present.
    pub groups: Vec<String>,
    /// `exp`, in seconds since the Unix epoch (required and checked).
    pub expires: u64,
}

/// Why a token was refused. Logged at info, never shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token header: {0}")]
    Header(jsonwebtoken::errors::Error),
    #[error("algorithm {0:?} is not accepted (HS256, RS256, ES256 only)")]
    Algorithm(Algorithm),
    #[error("HS256 token but jwt.hs256_secret_env is not configured")]
    NoHmacKey,
    #[error("token has no kid")]
    NoKid,
    #[error("unknown kid {0:?}")]
    UnknownKid(String),
    #[error("key {kid:?} does not fit algorithm {alg:?}")]
    KeyMismatch { kid: String, alg: Algorithm },
    #[error("key {0:?} is unusable: {1}")]
    BadKey(String, jsonwebtoken::errors::Error),
    #[error("token refused: {0}")]
    Invalid(jsonwebtoken::errors::Error),
    #[error("claim {0:?} missing or not a string")]
    MissingClaim(String),
    #[error("header names critical extensions (crit), which airlock does not understand")]
    Critical,
}

/// Whether a password looks like a compact JWT: three base64url segments
/// (the signature may be empty, so unsigned tokens are refused as tokens).
pub fn looks_like_jwt(password: &str) -> bool {
    let parts: Vec<&str> = password.split('.').collect();
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| b64url(p))
}

/// Whether the token's header has a `crit` member (RFC 7515 4.1.11: a
/// verifier must refuse extensions it does not understand, and airlock
/// understands none). jsonwebtoken's `Header` drops unknown members, so
/// the header is read again here; a header it could decode is valid JSON.
fn names_critical_extensions(token: &str) -> bool {
    use base64::Engine;
    let Some(segment) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment) else {
        return true;
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&json) {
        Ok(members) => members.contains_key("crit"),
        Err(_) => true,
    }
}

/// Verifies `token` against the `[jwt]` configuration.
pub fn verify(config: &JwtConfig, token: &str) -> Result<JwtClaims, JwtError> {
    let header = jsonwebtoken::decode_header(token).map_err(JwtError::Header)?;
    if names_critical_extensions(token) {
        return Err(JwtError::Critical);
    }
    let alg = header.alg;
    let key = match alg {
        Algorithm::HS256 => {
            let secret = config.hs256_secret.as_ref().ok_or(JwtError::NoHmacKey)?;
            DecodingKey::from_secret(secret.expose().as_bytes())
        }
        Algorithm::RS256 | Algorithm::ES256 => {
            let kid = header.kid.ok_or(JwtError::NoKid)?;
            let jwk = config
                .jwk_set
                .as_ref()
                .and_then(|s| s.find(&kid))
                .ok_or_else(|| JwtError::UnknownKid(kid.clone()))?;
            if !fits(jwk, alg) {
                return Err(JwtError::KeyMismatch { kid, alg });
            }
            DecodingKey::from_jwk(jwk).map_err(|e| JwtError::BadKey(kid, e))?
        }
        other => return Err(JwtError::Algorithm(other)),
    };

    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // Required, not only checked when present (red-team finding: a token
    // without `iss` or `aud`, minted for some other use of the same key,
    // was accepted).
    let mut required = vec!["exp"];
    if config.issuer.is_some() {
        required.push("iss");
    }
    if config.audience.is_some() {
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    match &config.issuer {
        Some(iss) => validation.set_issuer(&[iss]),
        None => validation.iss = None,
    }
    match &config.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data =
        jsonwebtoken::decode::<BTreeMap<String, serde_json::Value>>(token, &key, &validation)
            .map_err(JwtError::Invalid)?;
    let claims = data.claims;
    // jsonwebtoken also takes an array of issuers; RFC 7519 makes `iss` one
    // string (re-check finding: `["https://evil", "<issuer>"]` passed).
    if config.issuer.is_some() && !claims.get("iss").is_some_and(|v| v.is_string()) {
        return Err(JwtError::MissingClaim("iss".into()));
    }

    let string = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let name = string(&config.user_claim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| JwtError::MissingClaim(config.user_claim.clone()))?;
    let groups = match claims.get(&config.groups_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    };
    let expires = claims
        .get("exp")
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
        .ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
    Ok(JwtClaims {
        name,
        model: string(&config.model_claim),
        groups,
        expires,
    })
}

/// Whether a JWKS key may verify `alg`: RSA for RS256, P-256 for ES256, and
/// the key's own `alg`, when it names one, must agree.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let declared_ok = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    let type_ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    };
    declared_ok && type_ok
}

#[cfg(test)]
mod tests;
