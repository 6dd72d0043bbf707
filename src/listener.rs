//! Accepting client connections, for every protocol: enforces the
//! connection limits (the listener's, and an address's logins in
//! progress, see [`crate::pending_logins`]) and starts a session per
//! connection.
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

use crate::log_every::LogEvery;
use crate::pending_logins::PendingLogin;
use crate::proxy::Proxy;

/// What a session is let in with: a slot of the listener's limit (`None`
/// over it: the session refuses the client in its protocol's way), and
/// its place among its address's logins in progress, to give back once
/// logged in ([`PendingLogin::finish`]).
pub struct Admission {
    pub permit: Option<OwnedSemaphorePermit>,
    pub pending: PendingLogin,
}

/// Connections over `limits.max_client_connections` that may be open at
/// once, waiting to be refused in their protocol's way (a Postgres client
/// has a few seconds to send its startup packet first, and a cancel
/// request among them is still forwarded). One more is closed at once,
/// unanswered: a client opening connections as fast as it can must not
/// make airlock hold a descriptor for each for seconds (red-team note).
pub const MAX_OVER_LIMIT: usize = 64;

/// Accepts until shutdown, then drains sessions. `session` runs one
/// connection; it gets `None` instead of a permit when the limit is reached
/// and must then refuse the client in its protocol's way.
pub async fn serve<F, Fut>(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    protocol: &'static str,
    session: F,
) where
    F: Fn(Arc<Proxy>, TcpStream, SocketAddr, Admission) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let config = proxy.config();
    let limit = Arc::new(Semaphore::new(config.limits.max_client_connections));
    let over_limit = Arc::new(Semaphore::new(MAX_OVER_LIMIT));
    let mut warn = LogEvery::new(std::time::Duration::from_secs(10));
    let mut warn_address = LogEvery::new(std::time::Duration::from_secs(10));
    let per_address = config.limits.max_pending_logins_per_address;
    let mut sessions = JoinSet::new();
    let mut shutdown = proxy.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Some(pending) = proxy.pending_logins.start(peer.ip(), per_address) else {
                        if let Some(refused) = warn_address.hit() {
                            tracing::warn!(client = %peer, protocol, refused, "too many logins in progress from one address (limits.max_pending_logins_per_address); closing its new connections");
                        }
                        // Closed unanswered: dropped here.
                        continue;
                    };
                    let permit = Arc::clone(&limit).try_acquire_owned().ok();
                    let mut waiting = None;
                    if permit.is_none() {
                        waiting = Arc::clone(&over_limit).try_acquire_owned().ok();
                        if let Some(refused) = warn.hit() {
                            tracing::warn!(client = %peer, protocol, refused, "connection limit reached (limits.max_client_connections); refusing new connections");
                        }
                        if waiting.is_none() {
                            // Closed unanswered: dropped here.
                            continue;
                        }
                    }
                    let run = session(Arc::clone(&proxy), tcp, peer, Admission { permit, pending });
                    match waiting {
                        // Spawned as it is: a wrapping future would hold a
                        // second copy of the session's state for its life.
                        None => {
                            sessions.spawn(run);
                        }
                        Some(waiting) => {
                            sessions.spawn(async move {
                                run.await;
                                drop(waiting);
                            });
                        }
                    }
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
