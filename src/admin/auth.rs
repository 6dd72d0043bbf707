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
        // No token (loopback only): a web page in the operator's browser
        // could still reach the API, by a cross-site request or by DNS
        // rebinding. Only same-origin requests to a loopback host name go.
        // A request line in absolute form (`GET http://host/...`) names
        // its host there, not in Host: refused, as browsers never send it.
        let absolute = req.uri().authority().is_some();
        let checked = match absolute {
            true => Err("requests in absolute form are refused without an admin token"),
            false => loopback_same_origin(req.headers()),
        };
        if let Err(why) = checked {
            return error(StatusCode::FORBIDDEN, why).into_response();
        }
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

/// Checks that a tokenless request names a loopback host and, if it comes
/// from a browser page, one of the same origin.
/// One Host and at most one Origin (review finding: a second one went
/// unchecked), and a Host that is a name and an optional port and nothing
/// else (`127.0.0.1:9187@evil` passed).
pub fn loopback_same_origin(headers: &axum::http::HeaderMap) -> Result<(), &'static str> {
    if headers.get_all(header::HOST).iter().count() != 1
        || headers.get_all(header::ORIGIN).iter().count() > 1
    {
        return Err("one Host header and at most one Origin header are required");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("a Host header is required")?;
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').unwrap_or(("", "-")),
        None => match host.split_once(':') {
            Some((name, port)) => (name, port),
            None => (host, ""),
        },
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("without an admin token, only requests to a loopback host name are served");
    }
    let loopback = name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback());
    if !loopback {
        return Err("without an admin token, only requests to a loopback host name are served");
    }
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => Ok(()),
        Some(Ok(origin)) if origin == format!("http://{host}") => Ok(()),
        Some(_) => Err("cross-origin requests are refused without an admin token"),
    }
}

#[cfg(test)]
mod origin_tests {
    use super::loopback_same_origin;
    use axum::http::{header, HeaderMap, HeaderValue};

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn tokenless_requests_must_be_loopback_and_same_origin() {
        assert!(loopback_same_origin(&headers("127.0.0.1:9187", None)).is_ok());
        assert!(
            loopback_same_origin(&headers("localhost:9187", Some("http://localhost:9187"))).is_ok()
        );
        assert!(loopback_same_origin(&headers("[::1]:9187", None)).is_ok());
        // DNS rebinding: an attacker's name resolving to 127.0.0.1.
        assert!(loopback_same_origin(&headers("evil.example:9187", None)).is_err());
        // A cross-site request from a page elsewhere.
        assert!(
            loopback_same_origin(&headers("127.0.0.1:9187", Some("https://evil.example"))).is_err()
        );
        assert!(loopback_same_origin(&headers("127.0.0.1:9187", Some("null"))).is_err());
        assert!(loopback_same_origin(&HeaderMap::new()).is_err());
        // Anything after the port, and second Host or Origin headers
        // (review finding), are refused.
        assert!(loopback_same_origin(&headers("127.0.0.1:9187@evil.example", None)).is_err());
        assert!(loopback_same_origin(&headers("[::1]x", None)).is_err());
        let mut two = headers("127.0.0.1:9187", None);
        two.append(header::HOST, HeaderValue::from_static("evil.example"));
        assert!(loopback_same_origin(&two).is_err());
        let mut two = headers("127.0.0.1:9187", Some("http://127.0.0.1:9187"));
        two.append(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(loopback_same_origin(&two).is_err());
    }
}
