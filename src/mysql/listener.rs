//! The MySQL listener: accepts connections, enforces the connection limit
//! and starts a session for each. Shutdown works as on the Postgres side:
//! stop accepting, let sessions end at their next idle point, abort the
//! rest after `limits.shutdown_timeout`.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::proxy::Proxy;

/// Accepts until shutdown, then drains sessions.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    let config = proxy.config();
    let limit = Arc::new(Semaphore::new(config.limits.max_client_connections));
    let mut sessions = JoinSet::new();
    let mut shutdown = proxy.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let permit = Arc::clone(&limit).try_acquire_owned().ok();
                    if permit.is_none() {
                        tracing::warn!(client = %peer, "connection limit reached (limits.max_client_connections)");
                    }
                    sessions.spawn(super::session::run(Arc::clone(&proxy), tcp, peer, permit));
                }
                Err(e) => {
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let drain = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(config.limits.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = sessions.len(),
            "shutdown timeout: closing remaining MySQL sessions"
        );
        sessions.abort_all();
    }
}
