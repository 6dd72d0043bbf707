//! Accepting client connections, for every protocol: enforces the
//! connection limit and starts a session per connection.
//!
//! On shutdown a listener stops accepting at once; sessions end at their
//! next idle point, and [`serve`] returns when all have ended or
//! `limits.shutdown_timeout` has passed (the rest are aborted).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::proxy::Proxy;

/// Accepts until shutdown, then drains sessions. `session` runs one
/// connection; it gets `None` instead of a permit when the limit is reached
/// and must then refuse the client in its protocol's way.
pub async fn serve<F, Fut>(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    protocol: &'static str,
    session: F,
) where
    F: Fn(Arc<Proxy>, TcpStream, SocketAddr, Option<OwnedSemaphorePermit>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
                        tracing::warn!(client = %peer, protocol, "connection limit reached (limits.max_client_connections)");
                    }
                    sessions.spawn(session(Arc::clone(&proxy), tcp, peer, permit));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!(error = %e, protocol, "accept failed");
                    crate::timer_thread::sleep(std::time::Duration::from_millis(100)).await;
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
    let open = sessions.len();
    if open > 0 {
        tracing::info!(sessions = open, protocol, timeout = ?config.limits.shutdown_timeout, "waiting for sessions to finish");
    }
    let drain = async { while sessions.join_next().await.is_some() {} };
    if crate::timer_thread::timeout(config.limits.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = sessions.len(),
            protocol,
            "shutdown timeout: closing remaining sessions"
        );
        sessions.abort_all();
    }
}
