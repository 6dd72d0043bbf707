//! Query cancellation through airlock.
//!
//! The client is given the upstream backend's real pid, so `pg_backend_pid()`,
//! NOTIFY sender pids and `pg_terminate_backend(pid)` agree with what the
//! client sees, but a secret key that airlock generates. The registry maps
//! (pid, airlock key) to the upstream address and the real key; a
//! CancelRequest with an unknown pair is dropped silently, as Postgres does.
//!
//! A statement that airlock holds for approval has not reached the server,
//! so a cancel cannot go there: while a session holds one, its
//! [`HeldCancel`] takes the cancel instead, and the session withdraws the
//! request and refuses the statement with 57014, as Postgres would. Only
//! when nothing is held is the cancel forwarded to the backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use airlock_protocol::pg::startup::encode_cancel;

/// Where a cancel for one session goes.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub host: String,
    pub port: u16,
    pub pid: i32,
    pub secret_key: i32,
}

/// A session's statement held for approval, if any, for a CancelRequest
/// to withdraw.
#[derive(Debug, Default)]
pub struct HeldCancel {
    slot: Mutex<Option<oneshot::Sender<()>>>,
}

impl HeldCancel {
    /// A statement is now held: the receiver fires if the client cancels
    /// it. Dropping the receiver (the hold ended) disarms it.
    pub fn arm(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.lock() = Some(tx);
        rx
    }

    /// Cancels the held statement; `false` when none is held.
    pub fn fire(&self) -> bool {
        match self.lock().take() {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<oneshot::Sender<()>>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct CancelRegistry {
    map: DashMap<(i32, i32), (CancelTarget, Arc<HeldCancel>)>,
}

impl CancelRegistry {
    /// Registers a session and returns the key to hand to the client, plus a
    /// guard that unregisters it when the session ends.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> (i32, CancelGuard) {
        let pid = target.pid;
        loop {
            let key: i32 = rand::random();
            if let dashmap::Entry::Vacant(slot) = self.map.entry((pid, key)) {
                let held = Arc::new(HeldCancel::default());
                slot.insert((target, Arc::clone(&held)));
                let guard = CancelGuard {
                    registry: Arc::clone(self),
                    key: (pid, key),
                    held,
                };
                return (key, guard);
            }
        }
    }

    pub fn lookup(&self, pid: i32, key: i32) -> Option<CancelTarget> {
        self.map.get(&(pid, key)).map(|e| e.value().0.clone())
    }

    /// The session's held statement, for the pair.
    fn held(&self, pid: i32, key: i32) -> Option<Arc<HeldCancel>> {
        self.map.get(&(pid, key)).map(|e| Arc::clone(&e.value().1))
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
    held: Arc<HeldCancel>,
}

impl CancelGuard {
    /// Where the session puts a statement it holds for approval.
    pub fn held(&self) -> Arc<HeldCancel> {
        Arc::clone(&self.held)
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry.map.remove(&self.key);
    }
}

/// Cancels the session's statement held for approval, if it holds one;
/// otherwise sends a CancelRequest to the real backend, if the pair is
/// known.
pub async fn forward_cancel(registry: &CancelRegistry, pid: i32, key: i32, timeout: Duration) {
    if registry.held(pid, key).is_some_and(|h| h.fire()) {
        tracing::info!(pid, "cancel request withdrew a statement held for approval");
        return;
    }
    let Some(target) = registry.lookup(pid, key) else {
        // Anyone may send one, before any login: counted, not logged each
        // time (DoS finding: 3,000 cancels made 3,000 lines).
        static UNKNOWN: crate::log_every::SharedLogEvery =
            crate::log_every::SharedLogEvery::new(Duration::from_secs(10));
        if let Some(n) = UNKNOWN.hit() {
            tracing::warn!(
                pid,
                count = n,
                "cancel requests with an unknown key ignored (logged at most every 10 s)"
            );
        }
        return;
    };
    let send = async {
        let mut tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
        tcp.write_all(&encode_cancel(target.pid, target.secret_key))
            .await?;
        tcp.shutdown().await
    };
    match crate::timer_thread::timeout(timeout, send).await {
        Ok(Ok(())) => tracing::info!(pid, "cancel request forwarded"),
        Ok(Err(e)) => tracing::warn!(pid, error = %e, "cancel request could not be forwarded"),
        Err(_) => tracing::warn!(pid, "cancel request timed out"),
    }
}
