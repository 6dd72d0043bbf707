//! What is audited: [`AuditEvent`] (what a session hands the log) and
//! [`AuditRecord`] (what the store holds: the event with its statement
//! redacted, its fingerprint, its sequence number and its chain hashes).

use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use crate::fasthash::FastMap;
use crate::masking::detect::{scrub, DetectorSet};

use super::fingerprint::fingerprint;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EventKind {
    Connect,
    Disconnect,
    #[default]
    Statement,
    AuthFailed,
    /// Retention removed the oldest records (see `audit::retention`).
    Pruned,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Disconnect => "disconnect",
            EventKind::Statement => "statement",
            EventKind::AuthFailed => "auth_failed",
            EventKind::Pruned => "audit_pruned",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::Connect,
            EventKind::Disconnect,
            EventKind::Statement,
            EventKind::AuthFailed,
            EventKind::Pruned,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditDecision {
    Allow,
    Block,
    /// Allowed, with result columns masked.
    Masked,
    /// Observe mode (`enforce = false`): allowed, but a rule would block it.
    WouldBlock,
    /// Held for (or refused pending) human approval.
    Approval,
}

impl AuditDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Block => "block",
            AuditDecision::Masked => "masked",
            AuditDecision::WouldBlock => "would_block",
            AuditDecision::Approval => "approval",
        }
    }

    pub fn parse(s: &str) -> Option<AuditDecision> {
        [
            AuditDecision::Allow,
            AuditDecision::Block,
            AuditDecision::Masked,
            AuditDecision::WouldBlock,
            AuditDecision::Approval,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    /// Whether the statement was (or, in observe mode, would have been)
    /// refused: what `airlock log --blocked` shows.
    pub fn is_blocked(self) -> bool {
        matches!(
            self,
            AuditDecision::Block | AuditDecision::WouldBlock | AuditDecision::Approval
        )
    }
}

impl fmt::Display for AuditDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One auditable event, as a session reports it. `statement` is the raw
/// SQL; the writer redacts it before anything is stored.
///
/// The text fields are shared (`Arc<str>`): a session's identity, model,
/// addresses and target are the same in every event it reports, and a
/// prepared statement's text in every execution, so an event refers to
/// them instead of copying them (no allocation per field on the query
/// path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    pub session: u64,
    pub kind: EventKind,
    /// The agent identity (login name).
    pub identity: Arc<str>,
    /// The human the agent acts for.
    pub user: Option<Arc<str>>,
    /// The configured model.
    pub model: Option<Arc<str>>,
    /// The model the client declared (e.g. from application_name).
    pub declared_model: Option<Arc<str>>,
    pub client_addr: Option<Arc<str>>,
    pub application_name: Option<Arc<str>>,
    /// `"postgres"` or `"mysql"`.
    pub protocol: Arc<str>,
    pub target: Arc<str>,
    pub database: Option<Arc<str>>,
    pub statement: Option<Arc<str>>,
    pub decision: Option<AuditDecision>,
    pub rule: Option<Arc<str>>,
    pub reason: Option<Arc<str>>,
    /// Masked result columns, comma separated.
    pub masked_columns: Option<Arc<str>>,
    /// Rows returned or affected.
    pub rows: Option<u64>,
    pub duration_us: Option<u64>,
}

impl AuditEvent {
    /// An event of `kind` stamped with the current time.
    pub fn now(kind: EventKind, session: u64) -> AuditEvent {
        AuditEvent {
            time_ms: now_ms(),
            session,
            kind,
            ..AuditEvent::default()
        }
    }
}

/// The current unix time in milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    /// The event; its `statement` and `reason` are redacted.
    pub event: AuditEvent,
    /// The statement with literals replaced by `?`.
    pub fingerprint: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// `text` with PII and secrets replaced by detector tokens (`[email]`,
/// `[card]`, `[secret]`, ...).
pub fn redact(text: &str) -> String {
    match redacted(text) {
        Some(clean) => clean.to_string(),
        None => text.to_owned(),
    }
}

/// A statement as airlock's own log lines show it: redacted as the audit
/// store redacts it (PII literals an agent typed stay out of the log),
/// and cut at 200 characters.
pub fn log_preview(sql: &[u8]) -> String {
    let text = redact(&String::from_utf8_lossy(sql));
    let mut s: String = text.chars().take(200).collect();
    if text.chars().nth(200).is_some() {
        s.push('…');
    }
    s
}

/// Turns events into what is stored: statement and reason redacted,
/// fingerprint computed. Runs on the writer thread, off the query path.
///
/// Most statements recur (a prepared statement at every execution, an
/// application's queries with the same parameters), so the redacted text
/// and the fingerprint of a statement are remembered, keyed by protocol
/// and text: both are functions of those alone. Texts longer than
/// [`REMEMBERED_TEXT`] are not kept, and the memory is emptied when it
/// holds [`REMEMBERED`] texts, so it stays within about 12 MiB (texts,
/// redacted texts and fingerprints) whatever agents send.
#[derive(Default)]
pub(crate) struct Preparer {
    known: FastMap<(Arc<str>, Arc<str>), Prepared>,
}

/// A statement's stored form: its redacted text (`None`: unchanged) and
/// its fingerprint.
struct Prepared {
    redacted: Option<Arc<str>>,
    fingerprint: String,
}

/// Most statements a [`Preparer`] remembers.
const REMEMBERED: usize = 1024;
/// Longest statement text a [`Preparer`] remembers, in bytes.
const REMEMBERED_TEXT: usize = 4096;

impl Preparer {
    /// The event as it will be stored, with its fingerprint.
    pub(crate) fn prepare(&mut self, mut event: AuditEvent) -> (AuditEvent, Option<String>) {
        // A reason that is the message the client got starts with
        // `airlock: `; the log says it is airlock's (operator finding:
        // `why: airlock: blocked by rule ...`).
        if let Some(r) = event
            .reason
            .as_deref()
            .and_then(|r| r.strip_prefix("airlock: "))
        {
            event.reason = Some(Arc::from(r));
        }
        redact_in_place(&mut event.reason);
        if event
            .statement
            .as_deref()
            .is_some_and(super::passwords::may_hold_password)
        {
            if let Some(cut) = event
                .reason
                .as_deref()
                .and_then(super::passwords::cut_at_literal)
            {
                event.reason = Some(cut.into());
            }
        }
        let Some(sql) = event.statement.take() else {
            return (event, None);
        };
        if sql.len() > REMEMBERED_TEXT {
            let fingerprint = safe_fingerprint(&event.protocol, &sql);
            event.statement = Some(redacted(&sql).unwrap_or(sql));
            return (event, Some(fingerprint));
        }
        if self.known.len() >= REMEMBERED {
            self.known.clear();
        }
        // One hash of the text, whether it is known or not.
        let fingerprint = match self.known.entry((Arc::clone(&event.protocol), sql)) {
            Entry::Occupied(entry) => {
                let known = entry.get();
                event.statement = Some(
                    known
                        .redacted
                        .clone()
                        .unwrap_or_else(|| Arc::clone(&entry.key().1)),
                );
                known.fingerprint.clone()
            }
            Entry::Vacant(slot) => {
                let (protocol, sql) = slot.key();
                let fingerprint = safe_fingerprint(protocol, sql);
                let redacted = redacted(sql);
                event.statement = Some(redacted.clone().unwrap_or_else(|| Arc::clone(sql)));
                slot.insert(Prepared {
                    redacted,
                    fingerprint: fingerprint.clone(),
                });
                fingerprint
            }
        };
        (event, Some(fingerprint))
    }
}

/// [`statement_fingerprint`], of the text as stored when it may hold a
/// password ([`super::passwords`]): a tokenizer misled by the dialect
/// must not keep a password as a word.
fn safe_fingerprint(protocol: &str, sql: &str) -> String {
    match super::passwords::redact_passwords(sql) {
        Some(cut) => statement_fingerprint(protocol, &cut),
        None => statement_fingerprint(protocol, sql),
    }
}

/// The fingerprint of a statement. The hand tokenizer ([`fingerprint`])
/// can be misled where the dialects differ (Postgres `#` is XOR; MySQL
/// `--1` is arithmetic), and the stored text loses everything after a
/// private key block with no END line (redacted to the end), and on MySQL
/// executable comments and backslashes: for texts
/// with those, the fingerprint is the statement as airlock parsed it,
/// with literals as `?` and comments gone (`sql:...`, as approval windows
/// key it), so the log shows what the server ran. Other texts, and texts
/// airlock cannot parse, keep the cheap tokenizer's.
fn statement_fingerprint(protocol: &str, sql: &str) -> String {
    let b = sql.as_bytes();
    let misleading = memchr::memchr(b'#', b).is_some()
        || memchr::memmem::find(b, b"--").is_some()
        || memchr::memmem::find(b, b"-----BEGIN ").is_some()
        // MySQL runs executable comments, and a backslash escapes a quote
        // (red-team finding: `WHERE id = 1 /*! OR id > 0 */` showed as
        // `where id = ?` on the record of an UPDATE of every row).
        || (protocol == "mysql"
            && (memchr::memmem::find(b, b"/*!").is_some()
                || memchr::memmem::find(b, b"/*M!").is_some()
                || memchr::memchr(b'\\', b).is_some()));
    if misleading {
        if let Some(parsed) = crate::approvals::window_key::parsed_form(protocol, sql) {
            return parsed;
        }
    }
    fingerprint(sql)
}

/// [`redact`], keeping the string as it is (no copy) when there is
/// nothing to redact, as for most statements.
fn redact_in_place(text: &mut Option<Arc<str>>) {
    if let Some(t) = text {
        if let Some(clean) = redacted(t) {
            *t = clean;
        }
    }
}

/// `text` redacted (passwords written into it first, see
/// [`super::passwords`]), or `None` when there is nothing to redact.
fn redacted(text: &str) -> Option<Arc<str>> {
    let without_passwords = super::passwords::redact_passwords(text);
    let text = without_passwords.as_deref().unwrap_or(text);
    match scrub(text.as_bytes(), DetectorSet::ALL) {
        Some(clean) => Some(String::from_utf8_lossy(&clean).into()),
        None => without_passwords.map(Arc::from),
    }
}

#[cfg(test)]
mod tests {
    use super::{statement_fingerprint, AuditEvent, Preparer, REMEMBERED, REMEMBERED_TEXT};

    fn statement(protocol: &str, sql: &str) -> AuditEvent {
        AuditEvent {
            protocol: protocol.into(),
            statement: Some(sql.into()),
            ..AuditEvent::default()
        }
    }

    /// Passwords written into statements are not stored, nor shown in log
    /// lines (audit finding: refused `CREATE ROLE ... PASSWORD 'x'` and
    /// `IDENTIFIED BY 'x'` were kept in clear).
    #[test]
    fn passwords_are_not_stored() {
        let mut p = Preparer::default();
        for (protocol, sql) in [
            (
                "postgres",
                "CREATE ROLE foo LOGIN PASSWORD 'SuperSecretPw1'",
            ),
            ("mysql", "ALTER USER u IDENTIFIED BY 'SuperSecretPw1'"),
        ] {
            let (e, fp) = p.prepare(statement(protocol, sql));
            let text = e.statement.as_deref().unwrap_or_default();
            assert!(!text.contains("SuperSecret"), "{text}");
            assert!(text.contains("[withheld"), "{text}");
            assert!(!fp.unwrap_or_default().contains("SuperSecret"));
            assert!(!super::log_preview(sql.as_bytes()).contains("SuperSecret"));
        }
    }

    /// A remembered statement is stored as the first time: redacted, with
    /// the same fingerprint, whichever protocol sent it.
    #[test]
    fn remembered_statements_are_stored_as_the_first_time() {
        let mut p = Preparer::default();
        let pii = "SELECT * FROM people WHERE email = 'ann@example.com'";
        for _ in 0..3 {
            let (e, fp) = p.prepare(statement("postgres", pii));
            let text = e.statement.as_deref().unwrap_or_default();
            assert!(!text.contains("ann@example.com"), "{text}");
            assert!(text.contains("[email]"), "{text}");
            assert_eq!(fp.as_deref(), Some("select * from people where email = ?"));
        }
        // The same text, keyed by protocol: MySQL runs what an executable
        // comment holds, Postgres does not.
        let sql = "UPDATE notes SET note = 'x' WHERE id = 1 /*! OR id > 0 */";
        let (_, pg) = p.prepare(statement("postgres", sql));
        let (_, my) = p.prepare(statement("mysql", sql));
        assert!(!pg.clone().unwrap_or_default().contains("OR id"), "{pg:?}");
        assert!(
            my.clone().unwrap_or_default().contains("OR id > ?"),
            "{my:?}"
        );
        let (_, pg_again) = p.prepare(statement("postgres", sql));
        assert_eq!(pg_again, pg);
        // Reasons are redacted too; events without a statement have no
        // fingerprint.
        let mut e = AuditEvent {
            reason: Some("value 'bob@example.com' refused".into()),
            ..AuditEvent::default()
        };
        e = p.prepare(e).0;
        assert!(!e.reason.as_deref().unwrap_or_default().contains("bob@"));
        // A reason that is the client's message loses its `airlock: `.
        let e = AuditEvent {
            reason: Some("airlock: blocked by rule no-policy: none".into()),
            ..AuditEvent::default()
        };
        let e = p.prepare(e).0;
        assert_eq!(e.reason.as_deref(), Some("blocked by rule no-policy: none"));
    }

    /// What it remembers stays bounded: long texts are not kept, and it
    /// starts afresh when full.
    #[test]
    fn remembering_is_bounded() {
        let mut p = Preparer::default();
        let long = format!("SELECT '{}'", "x".repeat(REMEMBERED_TEXT));
        let (e, fp) = p.prepare(statement("postgres", &long));
        assert_eq!(e.statement.as_deref(), Some(long.as_str()));
        assert_eq!(fp.as_deref(), Some("select ?"));
        assert!(p.known.is_empty());
        for i in 0..REMEMBERED + 10 {
            p.prepare(statement("postgres", &format!("SELECT {i}")));
            assert!(p.known.len() <= REMEMBERED);
        }
        let (e, fp) = p.prepare(statement("postgres", "SELECT 5"));
        assert_eq!(e.statement.as_deref(), Some("SELECT 5"));
        assert_eq!(fp.as_deref(), Some("select ?"));
    }

    /// MySQL runs what executable comments hold, and a backslash escapes a
    /// quote: the fingerprint says what the server ran (red-team finding).
    #[test]
    fn mysql_fingerprints_show_what_the_server_runs() {
        let fp = statement_fingerprint(
            "mysql",
            "UPDATE notes SET note='x1' WHERE id = 1 /*! OR id > 0 */",
        );
        assert!(fp.contains("OR id > ?"), "{fp}");
        let fp = statement_fingerprint(
            "mysql",
            "UPDATE orders SET status='x' WHERE id = 4 /*!00000 OR id > 0 */",
        );
        assert!(fp.contains("OR id > ?"), "{fp}");
        let fp = statement_fingerprint(
            "mysql",
            r"UPDATE notes SET note='a\' WHERE id = 1 ' WHERE id > 1",
        );
        assert!(
            fp.contains("WHERE id > ?") && !fp.contains("id = ?"),
            "{fp}"
        );
        // Padding past what is parsed inline changes nothing (review
        // finding).
        let padded = format!(
            "UPDATE people SET name = 'x' WHERE id = 1 /*! OR id > 0 */ /* {} */",
            "x".repeat(9000)
        );
        assert!(statement_fingerprint("mysql", &padded).contains("OR id > ?"));
        // Plain texts keep the cheap tokenizer's.
        let fp = statement_fingerprint("mysql", "UPDATE notes SET note = 'x' WHERE id = 1");
        assert_eq!(fp, "update notes set note = ? where id = ?");
    }
}
