//! The web console: one HTML page, a stylesheet and a script, compiled in
//! (no build step). The page holds no data; it asks for the admin token,
//! keeps it in `sessionStorage`, and calls the JSON API with it.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Headers every console asset carries: no framing, no inline scripts.
const SECURITY: [(header::HeaderName, &str); 3] = [
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'",
    ),
];

pub async fn index() -> impl IntoResponse {
    (
        SECURITY,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        SECURITY,
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    (
        SECURITY,
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE,
    )
}
