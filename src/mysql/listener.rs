//! The MySQL listener (in progress): refuses connections until the MySQL
//! sessions land.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::proxy::Proxy;

/// Accepts until shutdown.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    let mut shutdown = proxy.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((tcp, peer)) = accepted {
                    tracing::warn!(client = %peer, "MySQL sessions are not implemented yet; closing");
                    drop(tcp);
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
