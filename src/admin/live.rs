//! The sessions past login, for `/api/sessions`: who is connected where,
//! and a way for an operator to end a session.
//!
//! A session registers itself with [`LiveSessions::register`] and keeps the
//! returned [`LiveSession`] for its lifetime (dropping it unregisters), and
//! selects on [`LiveSession::terminated`] beside its relay.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::Notify;

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
    kill: Arc<Kill>,
}

/// An operator's request to end one session. A flag and a [`Notify`]
/// rather than a watch channel: every live session has one, and a watch
/// channel's state is several times larger.
#[derive(Default)]
struct Kill {
    killed: AtomicBool,
    notify: Notify,
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
        let kill = Arc::new(Kill::default());
        let id = info.id;
        self.lock().insert(
            id,
            Entry {
                info,
                kill: Arc::clone(&kill),
            },
        );
        LiveSession {
            id,
            kill,
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
        e.kill.killed.store(true, Ordering::Release);
        e.kill.notify.notify_waiters();
        Some(e.info.clone())
    }
}

/// A session's registration. Dropping it unregisters the session.
pub struct LiveSession {
    id: u64,
    kill: Arc<Kill>,
    registry: Arc<LiveSessions>,
}

impl LiveSession {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Completes when an operator terminates the session. Cancel-safe.
    pub async fn terminated(&self) {
        loop {
            // Created before the flag is read: a `Notified` receives
            // `notify_waiters` from its creation on, so a terminate between
            // the check and the await is not missed.
            let notified = self.kill.notify.notified();
            if self.kill.killed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
