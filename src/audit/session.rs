//! What a proxy session tells the audit log, whatever its protocol:
//! connects, failed logins, every judged statement with its decision, and
//! disconnects. Used by [`crate::pg::audit_hook`] and
//! [`crate::mysql::audit_hook`].
//!
//! Recording never waits on disk (the log's writer thread does the work).
//! When the log cannot take an event and `audit.fail_closed` is set, the
//! statement is refused instead of running unrecorded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{AuditDecision, AuditEvent, AuditLog, EventKind};
use crate::policy::Principal;

/// How long a statement waits for room in a full audit queue before it is
/// refused (see [`SessionAudit::wait_for_room`]).
pub const ROOM_WAIT: Duration = Duration::from_secs(5);

/// Session ids, shared by every protocol so that `airlock replay SESSION`
/// names one session.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A new session id, unique across Postgres and MySQL sessions, and
/// across restarts when there is an audit log (see [`sessions_after`]).
pub fn next_session_id() -> u64 {
    NEXT_SESSION.fetch_add(1, Ordering::Relaxed)
}

/// Numbers later sessions after `last` (the highest id in the audit log,
/// read when it opens).
pub fn sessions_after(last: u64) {
    NEXT_SESSION.fetch_max(last.saturating_add(1), Ordering::Relaxed);
}

/// Who and where: what every event of a session carries.
pub struct SessionInfo<'a> {
    pub session: u64,
    pub principal: &'a Principal,
    pub client: &'a str,
    pub application_name: Option<&'a str>,
    pub declared_model: Option<&'a str>,
    /// `"postgres"` or `"mysql"`.
    pub protocol: &'static str,
    /// The database the session works in.
    pub database: &'a str,
}

/// One judged statement, as recorded. The text is shared with whoever
/// keeps it (a prepared statement's text is the same at every execution).
#[derive(Debug, Clone, Default)]
pub struct StatementRecord {
    pub sql: Arc<str>,
    pub decision: Option<AuditDecision>,
    pub rule: Option<Arc<str>>,
    pub reason: Option<Arc<str>>,
    /// Masked result columns (rule ids), comma separated.
    pub masked_columns: Option<Arc<str>>,
    /// Rows returned or affected, when the statement ran.
    pub rows: Option<u64>,
    pub duration: Option<Duration>,
}

/// A statement's text as the audit log keeps it: its bytes as UTF-8, any
/// invalid sequence replaced (the store holds text).
pub fn sql_text(sql: &[u8]) -> Arc<str> {
    if sql.len() > MAX_TEXT {
        return long_text(sql);
    }
    // The common case, valid UTF-8, through the faster check (the lossy
    // conversion walks the text chunk by chunk: about four times the cost).
    match std::str::from_utf8(sql) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(sql).into(),
    }
}

/// Most bytes of a statement the audit log keeps whole. A longer text
/// (up to `limits.max_message_size`, refused or not) keeps its first 32
/// KiB and last 16 KiB, its length, its SHA-256, and its fingerprint
/// (comments dropped, literals as `?`, whitespace collapsed) up to 16
/// KiB: an agent must not fill the disk, the writer's queue or an
/// operator's console poll with megabytes per record (DoS finding: 400
/// refused 8 MiB statements made a 3.4 GB log), nor hide what a statement
/// did behind padding (review finding: a 64 KiB comment before an UPDATE
/// left only the comment in the log).
pub const MAX_TEXT: usize = 64 * 1024;
const LONG_HEAD: usize = 32 * 1024;
const LONG_TAIL: usize = 16 * 1024;
const LONG_FINGERPRINT: usize = 16 * 1024;

#[cold]
fn long_text(sql: &[u8]) -> Arc<str> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(sql);
    let hex = crate::hex::encode(&digest);
    let text = String::from_utf8_lossy(sql);
    let head = cut_chars(&text, LONG_HEAD, false);
    let tail = cut_chars(&text, LONG_TAIL, true);
    let fp = super::fingerprint::fingerprint(&text);
    let fp = cut_chars(&fp, LONG_FINGERPRINT, false);
    format!(
        "{head} … {tail} [airlock: {} bytes, shown are the first {LONG_HEAD} and the last {LONG_TAIL}; sha256 {hex}; fingerprint: {fp}]",
        sql.len()
    )
    .into()
}

/// At most `max` bytes of `s`, from its start or (`from_end`) its end,
/// cut at a character boundary.
fn cut_chars(s: &str, max: usize, from_end: bool) -> &str {
    if s.len() <= max {
        return s;
    }
    if from_end {
        let mut at = s.len() - max;
        while !s.is_char_boundary(at) {
            at += 1;
        }
        &s[at..]
    } else {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        &s[..at]
    }
}

/// The audit context of one session.
pub struct SessionAudit {
    log: Arc<AuditLog>,
    fail_closed: bool,
    base: AuditEvent,
    /// The session's records in the queue (see
    /// [`super::writer::SessionShare`]).
    share: super::writer::SessionShare,
}

impl SessionAudit {
    pub fn with_info(log: Arc<AuditLog>, fail_closed: bool, info: &SessionInfo<'_>) -> Self {
        let mut base = AuditEvent::now(EventKind::Connect, info.session);
        base.identity = info.principal.identity.as_str().into();
        base.user = info.principal.user.as_deref().map(Arc::from);
        base.model = info.principal.model.as_deref().map(Arc::from);
        base.declared_model = info.declared_model.map(Arc::from);
        base.client_addr = Some(info.client.into());
        base.application_name = info.application_name.map(Arc::from);
        base.protocol = info.protocol.into();
        base.target = info.principal.target.as_str().into();
        base.database = Some(info.database.into());
        SessionAudit {
            log,
            fail_closed,
            base,
            share: Default::default(),
        }
    }

    /// The session's record of a statement, before the statement's own
    /// fields (for records another module writes on its behalf).
    pub fn statement_event(&self) -> AuditEvent {
        self.event(EventKind::Statement)
    }

    fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = self.base.clone();
        e.kind = kind;
        e.time_ms = super::now_ms();
        e
    }

    pub fn connect(&self) {
        let _ = self.log.record(self.event(EventKind::Connect));
    }

    pub fn disconnect(&self) {
        let _ = self.log.record(self.event(EventKind::Disconnect));
    }

    /// A slot for the record of a statement forwarded now (see
    /// [`super::writer::Reservation`]).
    pub fn reserve(&self) -> super::writer::Reservation {
        self.log.reserve_shared(&self.share)
    }

    /// Whether this session holds its whole share of the queue.
    fn over_share(&self) -> bool {
        self.share.held() >= self.log.session_share_limit()
    }

    /// Whether the next statement should first wait for room in the log's
    /// queue ([`Self::wait_for_room`]): the queue is full, the writer is
    /// healthy, and airlock fails closed (so the statement would otherwise
    /// be refused). One atomic load while the queue has room.
    pub fn queue_full(&self) -> bool {
        self.fail_closed && (self.log.queue_full() || self.over_share())
    }

    /// Backpressure: waits up to [`ROOM_WAIT`] for room in the queue, and
    /// counts the wait (`airlock_audit_waits_total`). A statement judged
    /// afterwards is refused as before if there is still none.
    pub async fn wait_for_room(&self) {
        crate::metrics::audit_wait();
        let deadline = std::time::Instant::now() + ROOM_WAIT;
        while self.over_share() && std::time::Instant::now() < deadline {
            crate::timer_thread::sleep(Duration::from_millis(2)).await;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !self.log.wait_for_room(left).await {
            tracing::warn!(
                "the audit log's queue stayed full for {ROOM_WAIT:?}: the statement is refused (fail_closed)"
            );
        }
    }

    /// Whether a statement may run: `Err` carries the refusal when the log
    /// could not take its record (failing, shutting down, queue full) and
    /// airlock fails closed (for statements recorded after they complete).
    pub fn ready(&self) -> Result<(), String> {
        if self.fail_closed && self.over_share() {
            return Err(format!(
                "audit log unavailable: this session holds {} records the audit log has not written yet, the most one session may (audit.queue); read the results of the statements sent before sending more",
                self.share.held()
            ));
        }
        match self.log.available() {
            Err(unavailable) if self.fail_closed => Err(unavailable.to_string()),
            _ => Ok(()),
        }
    }

    /// Records a judged statement. `Err` carries the refusal to send when
    /// the log is unavailable and airlock fails closed.
    pub fn statement(
        &self,
        sql: &[u8],
        decision: AuditDecision,
        rule: Option<&str>,
        reason: Option<&str>,
        masked_columns: Option<&str>,
    ) -> Result<(), String> {
        self.record(StatementRecord {
            sql: sql_text(sql),
            decision: Some(decision),
            rule: rule.map(Arc::from),
            reason: reason.map(Arc::from),
            masked_columns: masked_columns.map(Arc::from),
            rows: None,
            duration: None,
        })
    }

    /// Records a statement with everything known about it.
    pub fn record(&self, s: StatementRecord) -> Result<(), String> {
        let mut e = self.event(EventKind::Statement);
        e.statement = Some(s.sql);
        e.decision = s.decision;
        e.rule = s.rule;
        e.reason = s.reason;
        e.masked_columns = s.masked_columns;
        e.rows = s.rows;
        e.duration_us = s
            .duration
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        match self.log.record_shared(e, &self.share) {
            Ok(()) => Ok(()),
            Err(unavailable) if self.fail_closed => Err(unavailable.to_string()),
            Err(unavailable) => {
                tracing::warn!(error = %unavailable, "audit log unavailable; statement not recorded");
                Ok(())
            }
        }
    }
}

/// Records a failed login (no session context exists yet): the name the
/// client gave, and `(target, why)`: the target (database) it asked for
/// and why it failed ("wrong password"; the client is never told which).
pub fn auth_failed(
    log: &AuditLog,
    session: u64,
    identity: &str,
    client: &str,
    protocol: &'static str,
    (target, why): (&str, &str),
) {
    let mut e = AuditEvent::now(EventKind::AuthFailed, session);
    e.identity = identity.into();
    e.client_addr = Some(client.into());
    e.protocol = protocol.into();
    e.target = target.into();
    e.database = Some(target.into()).filter(|t: &Arc<str>| !t.is_empty());
    e.reason = Some(why.into());
    if let Err(unavailable) = log.record(e) {
        login_not_recorded("failed", identity, client, why, &unavailable);
    }
}

/// A failed or refused login the audit log could not take is still told
/// in airlock's own log (at most every 10 s, with how many there were: a
/// password guesser would otherwise fill it), so that it is not lost.
fn login_not_recorded(
    what: &str,
    identity: &str,
    client: &str,
    why: &str,
    unavailable: &dyn std::fmt::Display,
) {
    static NOT_RECORDED: crate::log_every::SharedLogEvery =
        crate::log_every::SharedLogEvery::new(std::time::Duration::from_secs(10));
    if let Some(count) = NOT_RECORDED.hit() {
        tracing::warn!(
            login = what,
            identity,
            client,
            reason = why,
            error = %unavailable,
            count,
            "audit log unavailable; login not recorded (logged at most every 10 s)"
        );
    }
}

/// The rule an airlock refusal names (`airlock: blocked by rule RULE:
/// ...`), for its audit record.
pub fn rule_in(message: &str) -> Option<&str> {
    let rest = message.split("blocked by rule ").nth(1)?;
    rest.split(':')
        .next()
        .filter(|rule| !rule.is_empty() && !rule.contains(' '))
}

/// Who a refused login proved to be: identity, the person behind it and
/// the model, as configured.
pub type Who<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

/// Records a login refused after authentication (a startup setting a rule
/// refuses, the identity's session limit, a target it may not use): a
/// `connect` event with decision `block`, the message the client got as
/// its reason and the rule in it, so that `airlock log --blocked` shows it.
pub fn login_refused(
    log: &AuditLog,
    session: u64,
    (identity, user, model): Who<'_>,
    target: &str,
    client: &str,
    protocol: &'static str,
    reason: &str,
) {
    let mut e = AuditEvent::now(EventKind::Connect, session);
    e.identity = identity.into();
    e.user = user.map(Arc::from);
    e.model = model.map(Arc::from);
    e.client_addr = Some(client.into());
    e.protocol = protocol.into();
    e.target = target.into();
    e.database = Some(target.into());
    e.decision = Some(AuditDecision::Block);
    e.rule = rule_in(reason).map(Arc::from);
    e.reason = Some(reason.into());
    if let Err(unavailable) = log.record(e) {
        login_not_recorded("refused", identity, client, reason, &unavailable);
    }
}

/// A model the client declares in its application name (`...model=NAME...`;
/// Postgres `application_name`, MySQL connection attribute `program_name`).
/// It is recorded beside the configured model and never replaces it.
pub fn declared_model(application_name: Option<&str>) -> Option<&str> {
    let app = application_name?;
    let at = app.find("model=")?;
    let rest = &app[at + "model=".len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == ')')
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_in_refusals() {
        assert_eq!(
            rule_in("airlock: blocked by rule pii-email: cursors over masked data"),
            Some("pii-email")
        );
        assert_eq!(
            rule_in("airlock: blocked by rule builtin.startup-option: x: y"),
            Some("builtin.startup-option")
        );
        assert_eq!(rule_in("permission denied for database \"x\""), None);
        assert_eq!(rule_in("airlock: blocked by rule : x"), None);
    }

    #[test]
    fn declared_models() {
        assert_eq!(declared_model(Some("copilot (model=gpt-5)")), Some("gpt-5"));
        assert_eq!(declared_model(Some("x model=a;b")), Some("a"));
        assert_eq!(declared_model(Some("model=")), None);
        assert_eq!(declared_model(None), None);
    }
}
