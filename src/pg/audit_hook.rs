//! What a Postgres session tells the audit log: connects, failed logins,
//! every judged statement with its decision, and disconnects.
//!
//! Recording never waits on disk (the log's writer thread does the work).
//! When the log cannot take an event and `audit.fail_closed` is set, the
//! statement is refused instead of running unrecorded.

use std::sync::Arc;

use crate::audit::{AuditDecision, AuditEvent, AuditLog, EventKind};
use crate::policy::Principal;

/// The audit context of one session.
pub struct SessionAudit {
    log: Arc<AuditLog>,
    fail_closed: bool,
    base: AuditEvent,
}

impl SessionAudit {
    pub fn new(
        log: Arc<AuditLog>,
        fail_closed: bool,
        session: u64,
        principal: &Principal,
        client: &str,
        application_name: Option<&str>,
        declared_model: Option<&str>,
    ) -> Self {
        let mut base = AuditEvent::now(EventKind::Connect, session);
        base.identity = principal.identity.clone();
        base.user = principal.user.clone();
        base.model = principal.model.clone();
        base.declared_model = declared_model.map(str::to_owned);
        base.client_addr = Some(client.to_owned());
        base.application_name = application_name.map(str::to_owned);
        base.protocol = "postgres".into();
        base.target = principal.target.clone();
        base.database = Some(principal.target.clone());
        SessionAudit {
            log,
            fail_closed,
            base,
        }
    }

    fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = self.base.clone();
        e.kind = kind;
        e.time_ms = crate::audit::now_ms();
        e
    }

    pub fn connect(&self) {
        let _ = self.log.record(self.event(EventKind::Connect));
    }

    pub fn disconnect(&self) {
        let _ = self.log.record(self.event(EventKind::Disconnect));
    }

    /// Records a judged statement. `Err` carries the refusal to send when
    /// the log is unavailable and airlock fails closed.
    pub fn statement(
        &self,
        sql: &[u8],
        decision: AuditDecision,
        rule: Option<&str>,
        reason: Option<&str>,
        masked_columns: Option<String>,
    ) -> Result<(), String> {
        let mut e = self.event(EventKind::Statement);
        e.statement = Some(String::from_utf8_lossy(sql).into_owned());
        e.decision = Some(decision);
        e.rule = rule.map(str::to_owned);
        e.reason = reason.map(str::to_owned);
        e.masked_columns = masked_columns;
        match self.log.record(e) {
            Ok(()) => Ok(()),
            Err(unavailable) if self.fail_closed => Err(unavailable.to_string()),
            Err(unavailable) => {
                tracing::warn!(error = %unavailable, "audit log unavailable; statement not recorded");
                Ok(())
            }
        }
    }
}

/// Records a failed login (no session context exists yet).
pub fn auth_failed(log: &AuditLog, session: u64, identity: &str, client: &str) {
    let mut e = AuditEvent::now(EventKind::AuthFailed, session);
    e.identity = identity.to_owned();
    e.client_addr = Some(client.to_owned());
    e.protocol = "postgres".into();
    let _ = log.record(e);
}
