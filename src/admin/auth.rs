//! The bearer token check, in constant time.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::api::error;
use super::AdminState;

/// Lets a request through when it carries the configured token (or when
/// none is configured, which only a loopback listener allows).
pub async fn require_token(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let config = state.proxy.config();
    let Some(token) = config.admin.as_ref().and_then(|a| a.token.as_ref()) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if token_matches(p, token.expose()) => next.run(req).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "invalid admin token").into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            error(
                StatusCode::UNAUTHORIZED,
                "admin token required: send Authorization: Bearer <token>",
            ),
        )
            .into_response(),
    }
}

/// Compares digests of both strings, so neither their contents nor their
/// lengths show in the time taken.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn compares_tokens() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3creT"));
        assert!(!token_matches("", "s3cret"));
    }
}
