//! What a Postgres session tells the audit log: the protocol-neutral
//! [`crate::audit::session::SessionAudit`] with the Postgres protocol name.
//!
//! Recording never waits on disk (the log's writer thread does the work).
//! When the log cannot take an event and `audit.fail_closed` is set, the
//! statement is refused instead of running unrecorded.
//!
//! * Refused and held statements are recorded when they are judged.
//! * An allowed statement is recorded when it has run, with the rows
//!   returned or affected and its duration: the client side checks that the
//!   log can take the record before forwarding ([`SessionAudit::ready`]),
//!   and hands a [`Run`] to the reply tracker ([`super::results`]) in an
//!   [`AuditQueue`]; [`ReplyAudit`] on the server side records it when the
//!   tracker reports its end.
//! * One record per execution: a simple Query (all its statements: rows
//!   summed, duration until its last result ended), or an Execute of a
//!   portal (a prepared statement executed N times gives N records, each
//!   with the statement text judged at Parse). A Parse or Bind the server
//!   rejects is recorded as a failed execution; a successful Parse alone is
//!   not recorded (nothing ran). A statement that failed carries
//!   `failed with SQLSTATE xxxxx` in its reason.

use std::sync::Arc;
use std::time::Instant;

use super::results::{Ending, Expect, Expectations, Finished, OutOfStep, Tracker};
use crate::audit::session::{self, SessionInfo, StatementRecord};
use crate::audit::{AuditDecision, AuditLog};
use crate::policy::Principal;

pub use crate::audit::session::SessionAudit;

const PROTOCOL: &str = "postgres";

impl SessionAudit {
    /// The audit context of a Postgres session.
    pub fn new(
        log: Arc<AuditLog>,
        fail_closed: bool,
        session: u64,
        principal: &Principal,
        client: &str,
        application_name: Option<&str>,
        declared_model: Option<&str>,
    ) -> Self {
        SessionAudit::with_info(
            log,
            fail_closed,
            &SessionInfo {
                session,
                principal,
                client,
                application_name,
                declared_model,
                protocol: PROTOCOL,
                database: &principal.target,
            },
        )
    }
}

/// Records a failed Postgres login (no session context exists yet), with
/// the target asked for and why (see [`session::auth_failed`]).
pub fn auth_failed(
    log: &AuditLog,
    session: u64,
    identity: &str,
    client: &str,
    target_and_why: (&str, &str),
) {
    session::auth_failed(log, session, identity, client, PROTOCOL, target_and_why);
}

/// Records a Postgres login refused after authentication, with the
/// message the client got (see [`session::login_refused`]).
pub fn login_refused(
    log: &AuditLog,
    session: u64,
    who: session::Who<'_>,
    target: &str,
    client: &str,
    message: &str,
) {
    session::login_refused(log, session, who, target, client, PROTOCOL, message);
}

/// An allowed statement as judged, recorded each time it runs.
#[derive(Debug)]
pub struct Judged {
    pub sql: Arc<str>,
    pub decision: AuditDecision,
    pub rule: Option<Arc<str>>,
    pub reason: Option<Arc<str>>,
    /// Ids of the masking rules applied, comma separated.
    pub masked: Option<Arc<str>>,
}

/// One execution of a judged statement: what the reply tracker carries.
#[derive(Debug)]
pub struct Run {
    pub judged: Arc<Judged>,
    /// When it was forwarded.
    pub start: Instant,
    /// Its record's slot in the audit queue, held until the record is
    /// made (or never will be).
    _slot: crate::audit::writer::Reservation,
}

impl Run {
    /// An execution forwarded now.
    pub fn now(judged: &Arc<Judged>, audit: &SessionAudit) -> Arc<Run> {
        Arc::new(Run {
            _slot: audit.reserve(),
            judged: Arc::clone(judged),
            start: Instant::now(),
        })
    }
}

/// However the relay ends (Terminate, hang-up, TTL cut, terminate from the
/// admin API), executions still owed a reply are recorded.
impl Drop for ReplyAudit<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Reason recorded for a statement forwarded just before the session ended.
const UNFINISHED: &str = "outcome unknown: the session ended before the server's reply";

/// What the client side tells the audit follower each request produces.
pub type AuditQueue = Expectations<Run>;

/// The server side's audit follower: records each execution when the reply
/// tracker reports its end.
pub struct ReplyAudit<'a> {
    audit: &'a SessionAudit,
    expect: Arc<AuditQueue>,
    tracker: Tracker<Run>,
    /// The simple Query in flight: rows so far, its first error, when its
    /// last result ended.
    query: Ending,
    query_ended: Option<Instant>,
}

impl<'a> ReplyAudit<'a> {
    pub fn new(audit: &'a SessionAudit, expect: Arc<AuditQueue>) -> Self {
        ReplyAudit {
            audit,
            expect,
            tracker: Tracker::counting(),
            query: Ending::default(),
            query_ended: None,
        }
    }

    /// Follows one server message (the body may be empty for a streamed
    /// DataRow or CopyData).
    pub fn on_message(&mut self, tag: u8, body: &[u8]) -> Result<(), OutOfStep> {
        match self.tracker.on_message(&self.expect, tag, body)? {
            None => {}
            Some(Finished::Statement(ending)) => {
                self.query.rows = self.query.rows.saturating_add(ending.rows);
                self.query.error = self.query.error.or(ending.error);
                self.query_ended = Some(Instant::now());
            }
            Some(Finished::Query { plans }) => {
                let ending = std::mem::take(&mut self.query);
                let ended = self.query_ended.take().unwrap_or_else(Instant::now);
                if let Some(Some(run)) = plans.first() {
                    self.complete(run, ending, ended);
                }
            }
            Some(Finished::Execute {
                plan: Some(run),
                ending,
            })
            | Some(Finished::Step {
                plan: Some(run),
                ending,
            }) => self.complete(&run, ending, Instant::now()),
            Some(Finished::Execute { plan: None, .. } | Finished::Step { plan: None, .. }) => {}
        }
        Ok(())
    }

    /// The session is ending with replies still owed: record every
    /// execution that was forwarded but whose end airlock did not see (the
    /// client sent Terminate or hung up right after it), so that nothing
    /// that may have run goes unrecorded.
    fn abandon(&mut self) {
        for e in self.expect.drain() {
            let run = match e {
                Expect::Simple { plans } => plans.iter().flatten().next().cloned(),
                Expect::Execute { plan, .. } => plan,
                _ => None,
            };
            if let Some(run) = run {
                self.record_unfinished(&run);
            }
        }
    }

    fn record_unfinished(&self, run: &Run) {
        let j = &run.judged;
        let reason = match &j.reason {
            Some(r) => format!("{r}; {UNFINISHED}"),
            None => UNFINISHED.to_owned(),
        };
        let recorded = self.audit.record(StatementRecord {
            sql: j.sql.clone(),
            decision: Some(j.decision),
            rule: j.rule.clone(),
            reason: Some(reason.into()),
            masked_columns: j.masked.clone(),
            rows: None,
            duration: Some(run.start.elapsed()),
        });
        if let Err(e) = recorded {
            tracing::error!(error = %e, "audit log unavailable; a forwarded statement was not recorded");
        }
    }

    fn complete(&self, run: &Run, ending: Ending, ended: Instant) {
        let j = &run.judged;
        let failed = ending
            .error
            .map(|code| format!("failed with SQLSTATE {}", String::from_utf8_lossy(&code)));
        let reason = match (&j.reason, failed) {
            (Some(r), Some(f)) => Some(format!("{r}; {f}").into()),
            (_, Some(f)) => Some(f.into()),
            (r, None) => r.clone(),
        };
        let recorded = self.audit.record(StatementRecord {
            sql: j.sql.clone(),
            decision: Some(j.decision),
            rule: j.rule.clone(),
            reason,
            masked_columns: j.masked.clone(),
            rows: Some(ending.rows),
            duration: Some(ended.saturating_duration_since(run.start)),
        });
        if let Err(e) = recorded {
            tracing::error!(error = %e, "audit log unavailable; a completed statement was not recorded");
        }
    }
}
