//! Query cancellation through airlock.
//!
//! The client is given the upstream backend's real pid, so `pg_backend_pid()`,
//! NOTIFY sender pids and `pg_terminate_backend(pid)` agree with what the
//! client sees, but a secret key that airlock generates. The registry maps
//! (pid, airlock key) to the upstream address and the real key; a
//! CancelRequest with an unknown pair is dropped silently, as Postgres does.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use airlock_protocol::pg::startup::encode_cancel;

/// Where a cancel for one session goes.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub host: String,
    pub port: u16,
    pub pid: i32,
    pub secret_key: i32,
}

#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: DashMap<(i32, i32), CancelTarget>,
}

impl CancelRegistry {
    /// Registers a session and returns the key to hand to the client, plus a
    /// guard that unregisters it when the session ends.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> (i32, CancelGuard) {
        let pid = target.pid;
        loop {
            let key: i32 = rand::random();
            if let dashmap::Entry::Vacant(slot) = self.map.entry((pid, key)) {
                slot.insert(target);
                let guard = CancelGuard {
                    registry: Arc::clone(self),
                    key: (pid, key),
                };
                return (key, guard);
            }
        }
    }

    pub fn lookup(&self, pid: i32, key: i32) -> Option<CancelTarget> {
        self.map.get(&(pid, key)).map(|e| e.value().clone())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Removes a registration on drop.
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    key: (i32, i32),
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.map.remove(&self.key);
    }
}

/// Sends a CancelRequest to the real backend, if the pair is known.
pub async fn forward_cancel(registry: &CancelRegistry, pid: i32, key: i32, timeout: Duration) {
    let Some(target) = registry.lookup(pid, key) else {
        tracing::warn!(pid, "cancel request with an unknown key ignored");
        return;
    };
    let send = async {
        let mut tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.write_all(&encode_cancel(target.pid, target.secret_key))
            .await?;
        tcp.shutdown().await
    };
    match tokio::time::timeout(timeout, send).await {
        Ok(Ok(())) => tracing::info!(pid, "cancel request forwarded"),
        Ok(Err(e)) => tracing::warn!(pid, error = %e, "cancel request could not be forwarded"),
        Err(_) => tracing::warn!(pid, "cancel request timed out"),
    }
}
