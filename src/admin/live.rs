//! The sessions past login, for `/api/sessions`: who is connected where,
//! and a way for an operator to end a session.
//!
//! A session registers itself with [`LiveSessions::register`] and keeps the
//! returned [`LiveSession`] for its lifetime (dropping it unregisters), and
//! selects on [`LiveSession::terminated`] beside its relay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::watch;

use crate::audit::{now_ms, rfc3339};

/// One session, as listed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    /// `"postgres"` or `"mysql"`.
    pub protocol: &'static str,
    pub identity: String,
    pub user: Option<String>,
    pub model: Option<String>,
    pub declared_model: Option<String>,
    /// The client's address.
    pub client: String,
    pub target: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub started_ms: i64,
}

impl SessionInfo {
    /// A session starting now.
    pub fn now(
        id: u64,
        protocol: &'static str,
        identity: &str,
        client: String,
        target: &str,
    ) -> Self {
        let started_ms = now_ms();
        SessionInfo {
            id,
            protocol,
            identity: identity.to_owned(),
            user: None,
            model: None,
            declared_model: None,
            client,
            target: target.to_owned(),
            started: rfc3339(started_ms),
            started_ms,
        }
    }
}

struct Entry {
    info: SessionInfo,
    kill: watch::Sender<bool>,
}

/// Every live session of a running airlock.
#[derive(Default)]
pub struct LiveSessions {
    map: Mutex<BTreeMap<u64, Entry>>,
}

impl LiveSessions {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists `info` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, info: SessionInfo) -> LiveSession {
        let (kill, rx) = watch::channel(false);
        let id = info.id;
        self.lock().insert(id, Entry { info, kill });
        LiveSession {
            id,
            rx,
            registry: Arc::clone(self),
        }
    }

    /// The live sessions, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock().values().map(|e| e.info.clone()).collect()
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Asks session `id` to end; `None` when there is no such session.
    pub fn terminate(&self, id: u64) -> Option<SessionInfo> {
        let map = self.lock();
        let e = map.get(&id)?;
        let _ = e.kill.send(true);
        Some(e.info.clone())
    }
}

/// A session's registration. Dropping it unregisters the session.
pub struct LiveSession {
    id: u64,
    rx: watch::Receiver<bool>,
    registry: Arc<LiveSessions>,
}

impl LiveSession {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Completes when an operator terminates the session. Cancel-safe.
    pub async fn terminated(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|killed| *killed).await.is_err() {
            // The registry entry is gone: never fires.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
