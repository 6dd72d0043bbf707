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
    /// What will run, as airlock parsed it: literals as their kinds, comments
    /// gone, on one line ([`parsed_for_review`]). Shown beside the text.
    pub parsed: String,
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

/// What will run, as airlock parsed the statement: literals as their kinds,
/// comments gone, one statement after another on one line (the window key
/// without its `sql:` prefix; see [`super::window_key`]). Reviewers see it
/// beside the statement's text, as a field of its own, because the text
/// can be made to read otherwise than it runs (red-team findings: an
/// `E'...\'...'` string, a nested `/* /* */ */` comment, MySQL's `--1`
/// and backslashes, a `#` in Postgres, code that looks like an SSN or an
/// email and is redacted, a private key block, the rest pushed hundreds of
/// lines down). A note in the text itself, which this once was, the agent
/// could write too.
fn parsed_for_review(key: &str, statement: &str, protocol: &str) -> String {
    let parsed = match key.strip_prefix("sql:") {
        Some(p) => Some(p.to_owned()),
        // A long text's key is its digest: parse it here (on a big stack).
        None if key.starts_with("text-sha256:") => {
            super::window_key::parsed_form(protocol, statement)
                .and_then(|p| p.strip_prefix("sql:").map(str::to_owned))
        }
        // `text:`: the key's own parse failed; it would fail again.
        None => None,
    };
    parsed.unwrap_or_else(|| "(airlock could not parse this text)".into())
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
            statement: redact(&req.statement),
            parsed: parsed_for_review(&fp, &req.statement, req.protocol),
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

    /// What reviewers are shown as parsed, for `sql` in `protocol`.
    fn parsed(protocol: &str, sql: &str) -> String {
        let key = super::super::window_key::window_key(protocol, sql);
        parsed_for_review(&key, sql, protocol)
    }

    /// Texts that read otherwise than they run (red-team findings): the
    /// parsed form beside them shows what runs.
    #[test]
    fn reviewers_see_what_runs_beside_the_text() {
        for (protocol, sql, runs, hidden) in [
            (
                "postgres",
                "UPDATE orders SET note = 'x' WHERE id = 1 -- -----BEGIN PRIVATE KEY-----\nOR id > 1",
                "OR id > ?",
                "PRIVATE KEY",
            ),
            ("postgres", "UPDATE orders SET status = 'x' WHERE id = 4 # 0 OR id > 0", "OR id > ?", "--"),
            (
                "postgres",
                "UPDATE orders SET status = E'x\\' WHERE id = 3 --' WHERE id > 0",
                "WHERE id > ?",
                "id = ",
            ),
            (
                "postgres",
                "UPDATE orders SET status = 'n' WHERE id > 0 /* t /* */ AND id = 3 -- */",
                "WHERE id > ?",
                "AND",
            ),
            (
                "postgres",
                "UPDATE orders SET status = 'r' WHERE id = 3 OR id > 123-45-6789",
                "OR id > ? - ? - ?",
                "[ssn]",
            ),
            (
                "mysql",
                "UPDATE orders SET status='a\\' WHERE id = 3 -- ' WHERE id > 0",
                "WHERE id > ?",
                "id = ",
            ),
            ("mysql", "UPDATE orders SET status='y' WHERE id = 3--1 OR id > 0", "OR id > ?", "--"),
        ] {
            let seen = parsed(protocol, sql);
            assert!(seen.contains(runs), "{sql}: {seen}");
            assert!(!seen.contains(hidden), "{sql}: {seen}");
        }
        // Padding does not push what runs out of sight: one line.
        let padded = format!(
            "UPDATE orders SET status = 'p' WHERE id = 3{}OR id > 0",
            "\n".repeat(300)
        );
        let seen = parsed("postgres", &padded);
        assert!(seen.contains("OR id > ?") && !seen.contains('\n'), "{seen}");
        assert_eq!(
            parsed("postgres", "NOT SQL AT ALL ("),
            "(airlock could not parse this text)"
        );
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
