//! The admin HTTP listener (`[admin] listen`): health, Prometheus metrics,
//! the JSON API and the web console.
//!
//! * [`api`]: `/api/audit`, `/api/approvals`, `/api/sessions`, `/api/rules`.
//! * [`auth`]: the bearer token check (constant time).
//! * [`console`]: the web console's static page, script and style.
//! * [`listener`]: the bound listener, with accept errors waited out on
//!   the timer thread.
//! * [`live`]: the registry of live sessions the API lists and terminates.
//! * [`serve`]: HTTP/1.1 on the listener, with a deadline on request heads.
//! * [`client`] and [`cli`]: a small HTTP client, and the `airlock
//!   approvals` / `approve` / `deny` commands built on it.
//!
//! Everything but `/healthz`, `/readyz` and the console's static files
//! (which hold no data) needs `Authorization: Bearer <token>` when a token is configured;
//! airlock refuses to listen on a non-loopback address without one.

pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod console;
pub mod listener;
pub mod live;
pub mod serve;
pub mod slots;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::proxy::Proxy;

/// State every handler sees.
#[derive(Clone)]
pub struct AdminState {
    pub proxy: Arc<Proxy>,
}

/// The whole admin application.
pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/metrics", get(api::metrics))
        .route("/api/audit", get(api::audit))
        .route("/api/approvals", get(api::approvals))
        .route("/api/approvals/{id}/approve", post(api::approve))
        .route("/api/approvals/{id}/deny", post(api::deny))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/{id}/terminate", post(api::terminate))
        .route("/api/rules", get(api::rules))
        .route("/api/rules/reload", post(api::reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/", get(console::index))
        .route("/console.js", get(console::script))
        .route("/console.css", get(console::style))
        .merge(api)
        .fallback(api::not_found)
        .with_state(state)
}

/// Binds `[admin] listen` when configured and serves until shutdown.
pub async fn start(proxy: Arc<Proxy>) -> anyhow::Result<Option<(SocketAddr, JoinHandle<()>)>> {
    let config = proxy.config();
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    let addr = *admin.listen.get_ref();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (admin.listen)"))?;
    let bound = listener.local_addr()?;
    if admin.token.is_none() {
        tracing::warn!(admin = %bound, "admin API has no token (admin.token_env / admin.token_file): anyone on this machine can approve statements");
    }
    let mut shutdown = proxy.shutdown.clone();
    let app = router(AdminState {
        proxy: Arc::clone(&proxy),
    });
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        serve::serve(listener::AdminListener(listener), app, stop).await;
    });
    tracing::info!(admin = %bound, "admin API and console listening");
    Ok(Some((bound, task)))
}
