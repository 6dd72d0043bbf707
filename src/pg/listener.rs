//! The Postgres listener: the shared accept loop ([`crate::listener`])
//! starting a [`super::session`] per connection.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::proxy::Proxy;

/// Accepts until shutdown, then drains sessions.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    crate::listener::serve(proxy, listener, "postgres", super::session::run).await
}
