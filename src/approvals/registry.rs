//! The registry of pending requests and approval windows.
//!
//! A [`Ticket`] is the session's side of one pending request: waiting on it
//! ends with the reviewer's decision or the timeout, and dropping it (the
//! client went away) withdraws the request. The lock is a plain mutex held
//! for a few map operations, never across an await.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use super::Outcome;
use crate::audit::{now_ms, redact, rfc3339};
use crate::metrics::{self, ApprovalEnd};

/// Longest approval window accepted.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Longest reviewer name and deny reason kept, in characters.
const MAX_TEXT: usize = 500;

/// What a session asks a human about.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// The statement as sent (redacted before anyone sees it).
    pub statement: String,
    pub identity: String,
    pub user: Option<String>,
    pub model: Option<String>,
    pub rule: String,
    /// The rule's message.
    pub message: String,
    pub session: u64,
    pub protocol: &'static str,
    pub target: String,
}

/// A pending request, as listed to reviewers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PendingInfo {
    pub id: u64,
    /// The statement with PII and secrets redacted.
    pub statement: String,
    /// The statement with literals replaced by `?`: what a window matches.
    pub fingerprint: String,
    pub identity: String,
    pub user: Option<String>,
    pub model: Option<String>,
    pub rule: String,
    pub message: String,
    pub session: u64,
    pub protocol: &'static str,
    pub target: String,
    /// RFC 3339 UTC.
    pub requested_at: String,
    pub requested_ms: i64,
    /// When the request times out, unix ms.
    pub expires_ms: i64,
}

/// A decision that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("no pending approval request {0} (already decided, timed out, or the client left)")]
    NotFound(u64),
    #[error("approval window {0:?} is longer than the maximum of 24h")]
    WindowTooLong(Duration),
    #[error("a reason is required to deny a request")]
    NoReason,
}

struct Pending {
    info: PendingInfo,
    tx: oneshot::Sender<Outcome>,
}

/// An approval window: this fingerprint from this identity passes until
/// `until`.
struct Grant {
    scope: Scope,
    until: Instant,
    by: String,
}

/// What an approval window releases: the same statement shape from the
/// same identity, on the same target and protocol, under the same rule.
#[derive(Clone, PartialEq, Eq)]
struct Scope {
    fingerprint: String,
    identity: String,
    target: String,
    protocol: &'static str,
    rule: String,
}

impl Scope {
    fn of(info: &PendingInfo) -> Scope {
        Scope {
            fingerprint: info.fingerprint.clone(),
            identity: info.identity.clone(),
            target: info.target.clone(),
            protocol: info.protocol,
            rule: info.rule.clone(),
        }
    }
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    grants: Vec<Grant>,
}

/// Every pending request of a running airlock.
#[derive(Default)]
pub struct Approvals {
    inner: Mutex<Inner>,
}

/// The answer to [`Approvals::hold`].
pub enum Hold {
    /// An approval window covers the statement: go ahead.
    Released(Outcome),
    /// Wait on this for the decision.
    Waiting(Ticket),
}

/// The statement as reviewers see it: values that look like PII or
/// secrets redacted. A private key block is redacted through its END line,
/// or to the end of the text when it has none, and code can stand in that
/// span (`WHERE id = 1 -- -----BEGIN PRIVATE KEY-----⏎OR id > 1`): then
/// the statement as airlock parsed it, literals as `?` and comments gone
/// (`key`, see [`super::window_key`]), is shown after it, so that what
/// runs is in sight. So is it for a Postgres text with `#`, which is an
/// operator there (XOR), not the comment a reviewer may read it as
/// (red-team finding: `WHERE id = 4 # 0 OR id > 0` read as `id = 4`).
fn shown(statement: &str, key: &str, protocol: &str) -> String {
    let redacted = redact(statement);
    let lower = statement.to_ascii_lowercase();
    let why = if lower.contains("private key-----") {
        "a private key block was withheld"
    } else if protocol != "mysql" && statement.contains('#') {
        "# is an operator in Postgres, not a comment"
    } else {
        return redacted;
    };
    // A long text's key is its digest: parse it here (on a big stack).
    let parsed = match key.strip_prefix("sql:") {
        Some(p) => p.to_owned(),
        None => super::window_key::parsed_form(protocol, statement)
            .and_then(|p| p.strip_prefix("sql:").map(str::to_owned))
            .unwrap_or_else(|| "(not parsed)".into()),
    };
    format!("{redacted} [{why}; as parsed: {parsed}]")
}

impl Approvals {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a request, unless an approval window already covers it.
    pub fn hold(self: &Arc<Self>, req: HoldRequest, timeout: Duration) -> Hold {
        // What a window matches on: the statement as airlock parsed it
        // (see `window_key`), not the audit log's fingerprint.
        let fp = super::window_key::window_key(req.protocol, &req.statement);
        let now = Instant::now();
        let mut inner = self.lock();
        inner.grants.retain(|g| g.until > now);
        if let Some(g) = inner.grants.iter().find(|g| {
            g.scope.fingerprint == fp
                && g.scope.identity == req.identity
                && g.scope.target == req.target
                && g.scope.protocol == req.protocol
                && g.scope.rule == req.rule
        }) {
            metrics::approval(ApprovalEnd::Window);
            return Hold::Released(Outcome::Window { by: g.by.clone() });
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let requested_ms = now_ms();
        let info = PendingInfo {
            id,
            statement: shown(&req.statement, &fp, req.protocol),
            fingerprint: fp,
            identity: req.identity,
            user: req.user,
            model: req.model,
            rule: req.rule,
            message: req.message,
            session: req.session,
            protocol: req.protocol,
            target: req.target,
            requested_at: rfc3339(requested_ms),
            requested_ms,
            expires_ms: requested_ms
                .saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)),
        };
        let (tx, rx) = oneshot::channel();
        inner.pending.insert(id, Pending { info, tx });
        Hold::Waiting(Ticket {
            id,
            rx,
            timeout,
            registry: Arc::clone(self),
        })
    }

    /// The pending requests, oldest first.
    pub fn list(&self) -> Vec<PendingInfo> {
        self.lock()
            .pending
            .values()
            .map(|p| p.info.clone())
            .collect()
    }

    pub fn pending_count(&self) -> usize {
        self.lock().pending.len()
    }

    /// Approves request `id`. With a `window`, the same fingerprint from the
    /// same identity passes without asking until it ends, and requests of
    /// that kind already waiting are released too.
    pub fn approve(
        &self,
        id: u64,
        by: &str,
        window: Option<Duration>,
    ) -> Result<PendingInfo, ApprovalError> {
        if let Some(w) = window.filter(|w| *w > MAX_WINDOW) {
            return Err(ApprovalError::WindowTooLong(w));
        }
        let by = clip(by);
        let mut inner = self.lock();
        let p = inner
            .pending
            .remove(&id)
            .ok_or(ApprovalError::NotFound(id))?;
        let info = p.info.clone();
        let _ = p.tx.send(Outcome::Approved {
            by: by.clone(),
            window,
        });
        metrics::approval(ApprovalEnd::Approved);
        if let Some(w) = window.filter(|w| !w.is_zero()) {
            let scope = Scope::of(&info);
            let same: Vec<u64> = inner
                .pending
                .values()
                .filter(|o| Scope::of(&o.info) == scope)
                .map(|o| o.info.id)
                .collect();
            for other in same {
                if let Some(o) = inner.pending.remove(&other) {
                    let _ = o.tx.send(Outcome::Window { by: by.clone() });
                    metrics::approval(ApprovalEnd::Window);
                }
            }
            inner.grants.push(Grant {
                scope,
                until: Instant::now() + w,
                by,
            });
        }
        Ok(info)
    }

    /// Denies request `id`; the client gets `reason`.
    pub fn deny(&self, id: u64, by: &str, reason: &str) -> Result<PendingInfo, ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::NoReason);
        }
        let reason = clip(reason.trim());
        let p = self
            .lock()
            .pending
            .remove(&id)
            .ok_or(ApprovalError::NotFound(id))?;
        let _ = p.tx.send(Outcome::Denied {
            by: clip(by),
            reason,
        });
        metrics::approval(ApprovalEnd::Denied);
        Ok(p.info)
    }

    /// Ends every pending request with [`Outcome::Cancelled`] (shutdown).
    pub fn cancel_all(&self) {
        let pending = std::mem::take(&mut self.lock().pending);
        for (_, p) in pending {
            let _ = p.tx.send(Outcome::Cancelled);
        }
    }

    fn withdraw(&self, id: u64) -> bool {
        self.lock().pending.remove(&id).is_some()
    }
}

/// A reviewer name or reason, trimmed to a sane length and to one line.
fn clip(s: &str) -> String {
    let s: String = s
        .chars()
        .take(MAX_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.trim().is_empty() {
        "unknown".into()
    } else {
        s
    }
}

/// A session's pending request. Dropping it withdraws the request.
pub struct Ticket {
    id: u64,
    rx: oneshot::Receiver<Outcome>,
    timeout: Duration,
    registry: Arc<Approvals>,
}

impl Ticket {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the decision, or the timeout.
    pub async fn wait(&mut self) -> Outcome {
        match crate::timer_thread::timeout(self.timeout, &mut self.rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Cancelled,
            Err(_) => {
                if self.registry.withdraw(self.id) {
                    metrics::approval(ApprovalEnd::TimedOut);
                    return Outcome::TimedOut(self.timeout);
                }
                // Decided in the same instant: the decision stands.
                self.rx
                    .try_recv()
                    .unwrap_or(Outcome::TimedOut(self.timeout))
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.withdraw(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_behind_a_private_key_block_stays_in_sight() {
        let sql =
            "UPDATE orders SET note = 'x' WHERE id = 1 -- -----BEGIN PRIVATE KEY-----\nOR id > 1";
        let key = super::super::window_key::window_key("postgres", sql);
        let seen = shown(sql, &key, "postgres");
        assert!(seen.contains("OR id > ?"), "{seen}");
        assert!(!seen.contains("BEGIN PRIVATE KEY"), "{seen}");
        // Without such a block: the redacted text alone.
        let plain = "UPDATE orders SET note = 'a@example.com' WHERE id = 1";
        assert_eq!(shown(plain, "sql:x", "postgres"), redact(plain));
        // `#` is XOR in Postgres: what runs is shown too.
        let xor = "UPDATE orders SET status = 'x' WHERE id = 4 # 0 OR id > 0";
        let key = super::super::window_key::window_key("postgres", xor);
        let seen = shown(xor, &key, "postgres");
        assert!(
            seen.contains("not a comment; as parsed:") && seen.contains("OR id > ?"),
            "{seen}"
        );
        assert_eq!(shown(xor, &key, "mysql"), redact(xor));
    }

    fn req(identity: &str, sql: &str) -> HoldRequest {
        HoldRequest {
            statement: sql.into(),
            identity: identity.into(),
            user: None,
            model: None,
            rule: "p.orders".into(),
            message: "needs a human".into(),
            session: 1,
            protocol: "postgres",
            target: "app".into(),
        }
    }

    fn waiting(h: Hold) -> Ticket {
        match h {
            Hold::Waiting(t) => t,
            Hold::Released(o) => panic!("released: {o:?}"),
        }
    }

    #[tokio::test]
    async fn a_window_releases_only_the_same_target_protocol_and_rule() {
        let a = Arc::new(Approvals::default());
        let long = Duration::from_secs(60);
        let sql = "DROP TABLE x";
        let mut t = waiting(a.hold(req("bot", sql), long));
        a.approve(t.id(), "alice", Some(Duration::from_secs(600)))
            .unwrap();
        assert!(t.wait().await.is_approved());
        assert!(matches!(a.hold(req("bot", sql), long), Hold::Released(_)));
        let mut prod = req("bot", sql);
        prod.target = "prod".into();
        waiting(a.hold(prod, long));
        let mut mysql = req("bot", sql);
        mysql.protocol = "mysql";
        waiting(a.hold(mysql, long));
        let mut other_rule = req("bot", sql);
        other_rule.rule = "p.other".into();
        waiting(a.hold(other_rule, long));
    }

    #[tokio::test]
    async fn approve_deny_timeout_and_windows() {
        let a = Arc::new(Approvals::default());
        let long = Duration::from_secs(60);
        let mut t = waiting(a.hold(req("bot", "DELETE FROM orders WHERE id = 1"), long));
        assert_eq!(a.list().len(), 1);
        a.approve(t.id(), "alice", None).unwrap();
        assert!(t.wait().await.is_approved());
        assert!(a.list().is_empty());

        let mut t = waiting(a.hold(req("bot", "DELETE FROM orders WHERE id = 2"), long));
        assert_eq!(a.deny(t.id(), "bob", " "), Err(ApprovalError::NoReason));
        a.deny(t.id(), "bob", "no").unwrap();
        assert_eq!(
            t.wait().await,
            Outcome::Denied {
                by: "bob".into(),
                reason: "no".into()
            }
        );

        let mut t = waiting(a.hold(req("bot", "x"), Duration::from_millis(10)));
        assert_eq!(t.wait().await, Outcome::TimedOut(Duration::from_millis(10)));
        assert!(a.list().is_empty());

        // A window releases the same fingerprint and identity only.
        let mut t = waiting(a.hold(req("bot", "DELETE FROM orders WHERE id = 3"), long));
        a.approve(t.id(), "alice", Some(Duration::from_secs(600)))
            .unwrap();
        assert!(t.wait().await.is_approved());
        assert!(matches!(
            a.hold(req("bot", "DELETE FROM orders WHERE id = 4"), long),
            Hold::Released(Outcome::Window { .. })
        ));
        let other = waiting(a.hold(req("other", "DELETE FROM orders WHERE id = 4"), long));
        drop(other);
        assert!(
            a.list().is_empty(),
            "a dropped ticket withdraws its request"
        );
        assert_eq!(a.approve(99, "x", None), Err(ApprovalError::NotFound(99)));
    }
}
