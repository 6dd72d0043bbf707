//! What a MySQL session tells the audit log, through the protocol-neutral
//! [`SessionAudit`]: connects, failed logins, every judged statement
//! (COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB, COM_FIELD_LIST) with its
//! decision, and disconnects.
//!
//! * A refused statement is recorded at once ([`MyAudit::refused`]).
//! * An allowed one is recorded when its reply is complete, with the rows
//!   returned or affected and the duration ([`MyAudit::begin`] then
//!   [`MyAudit::finish`]). Before it is forwarded, [`MyAudit::begin`]
//!   refuses it when the log is failing and `audit.fail_closed` is set.
//!
//! The application name (for the declared model) is the client's
//! `program_name` connection attribute.

use std::sync::Arc;
use std::time::Instant;

use crate::audit::session::{self, rule_in, sql_text, SessionAudit, SessionInfo, StatementRecord};
use crate::audit::{AuditDecision, AuditLog};
use crate::masking::{ColumnMask, StatementPlan};
use crate::policy::{Decision, Principal};

use super::error::MyError;
use super::response::Tracker;

const PROTOCOL: &str = "mysql";

/// A statement on its way, recorded when its reply is complete.
struct Pending {
    sql: Arc<str>,
    decision: AuditDecision,
    rule: Option<String>,
    reason: Option<String>,
    masked: Option<String>,
    start: Instant,
}

/// The audit context of one MySQL session.
pub struct MyAudit {
    inner: SessionAudit,
    /// Observe mode: what the last judgement would have done.
    would: Option<(String, String)>,
    /// The rule that held the statement about to run, and why it runs
    /// (approved by whom), for its record.
    approved: Option<(String, String)>,
    pending: Option<Pending>,
}

impl MyAudit {
    pub fn new(
        log: Arc<AuditLog>,
        fail_closed: bool,
        session: u64,
        principal: &Principal,
        client: &str,
        program_name: Option<&str>,
        database: &str,
    ) -> Self {
        let inner = SessionAudit::with_info(
            log,
            fail_closed,
            &SessionInfo {
                session,
                principal,
                client,
                application_name: program_name,
                declared_model: session::declared_model(program_name),
                protocol: PROTOCOL,
                database,
            },
        );
        MyAudit {
            inner,
            would: None,
            approved: None,
            pending: None,
        }
    }

    pub fn connect(&self) {
        self.inner.connect();
    }

    pub fn disconnect(&self) {
        self.inner.disconnect();
    }

    /// The session's record of a statement, for the approval steps
    /// ([`crate::approvals::wait`]).
    pub fn statement_event(&self) -> crate::audit::AuditEvent {
        self.inner.statement_event()
    }

    /// The statement about to run was held by `rule` and then approved
    /// (`reason`): its record names both, as a Postgres one does.
    pub fn approved(&mut self, rule: &str, reason: String) {
        self.approved = Some((rule.to_owned(), reason));
    }

    /// Notes what observe mode says the last judgement would have done.
    pub fn judged(&mut self, would: Option<&Decision>) {
        self.would = match would {
            Some(
                Decision::Block { rule, message } | Decision::RequireApproval { rule, message },
            ) => Some((rule.clone(), message.clone())),
            _ => None,
        };
    }

    /// Records a refused statement: `decision` is the policy's verdict
    /// (`Allow` when airlock refused it for another reason, given in
    /// `message`).
    pub fn refused(&mut self, sql: &[u8], decision: &Decision, message: &str) {
        let (kind, rule, reason) = match decision {
            Decision::Block { rule, message } => {
                (AuditDecision::Block, Some(rule.as_str()), message.as_str())
            }
            Decision::RequireApproval { rule, message } => (
                AuditDecision::Approval,
                Some(rule.as_str()),
                message.as_str(),
            ),
            Decision::Allow => (AuditDecision::Block, rule_in(message), message),
        };
        let _ = self.inner.record(StatementRecord {
            sql: sql_text(sql),
            decision: Some(kind),
            rule: rule.map(Arc::from),
            reason: Some(reason.into()),
            ..Default::default()
        });
        self.would = None;
        self.approved = None;
    }

    /// A statement the guardrails and masking allowed is about to be
    /// forwarded. `Err` is the refusal when the log is failing and airlock
    /// fails closed.
    /// See [`SessionAudit::queue_full`].
    pub fn queue_full(&self) -> bool {
        self.inner.queue_full()
    }

    /// See [`SessionAudit::wait_for_room`].
    pub async fn wait_for_room(&self) {
        self.inner.wait_for_room().await
    }

    pub fn begin(
        &mut self,
        sql: &[u8],
        plans: Option<&[Arc<StatementPlan>]>,
    ) -> Result<(), String> {
        let masked = plans.map(masked_rules).filter(|m| !m.is_empty());
        let would = self.would.take();
        let approved = self.approved.take();
        let (decision, rule, reason) = match (&masked, would, approved) {
            (_, Some((rule, message)), _) => (AuditDecision::WouldBlock, Some(rule), Some(message)),
            (Some(_), None, Some((rule, why))) => (AuditDecision::Masked, Some(rule), Some(why)),
            (None, None, Some((rule, why))) => (AuditDecision::Allow, Some(rule), Some(why)),
            (Some(m), None, None) => (AuditDecision::Masked, None, Some(m.join(","))),
            (None, None, None) => (AuditDecision::Allow, None, None),
        };
        if let Err(refusal) = self.inner.ready() {
            let _ = self.inner.record(StatementRecord {
                sql: sql_text(sql),
                decision: Some(AuditDecision::Block),
                reason: Some(refusal.as_str().into()),
                ..Default::default()
            });
            return Err(refusal);
        }
        self.pending = Some(Pending {
            sql: sql_text(sql),
            decision,
            rule,
            reason,
            masked: masked.map(|m| m.join(",")),
            start: Instant::now(),
        });
        Ok(())
    }

    /// The reply of the statement [`Self::begin`] let through is complete.
    pub fn finish(&mut self, tracker: &Tracker) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let recorded = self.inner.record(StatementRecord {
            sql: p.sql,
            decision: Some(p.decision),
            rule: p.rule.map(Arc::from),
            reason: p.reason.map(Arc::from),
            masked_columns: p.masked.map(Arc::from),
            rows: Some(tracker.rows),
            duration: Some(p.start.elapsed()),
        });
        if let Err(e) = recorded {
            tracing::error!(error = %e, "audit log unavailable; a completed statement was not recorded");
        }
    }
}

/// The ids of the masking rules a statement's plans apply.
fn masked_rules(plans: &[Arc<StatementPlan>]) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for plan in plans {
        if let StatementPlan::Columns(cols) | StatementPlan::OpenColumns(cols) = plan.as_ref() {
            for c in cols {
                if let ColumnMask::Mask { rule, .. } = c {
                    if !rules.contains(rule) {
                        rules.push(rule.clone());
                    }
                }
            }
        }
    }
    rules
}

/// Records a login refused after authentication (no database, a target
/// the identity may not use), with the message the client got.
pub fn login_refused(
    log: &AuditLog,
    session: u64,
    who: session::Who<'_>,
    target: &str,
    client: &str,
    e: &MyError,
) {
    let reason = e.to_client().map(|(_, _, m)| m).unwrap_or_default();
    session::login_refused(log, session, who, target, client, PROTOCOL, &reason);
}

/// Records a failed login or COM_CHANGE_USER, if `e` is one.
pub fn auth_failed(log: &AuditLog, session: u64, e: &MyError, client: &str) {
    let MyError::LoginFailed {
        identity,
        database,
        why,
        ..
    } = e
    else {
        return;
    };
    session::auth_failed(log, session, identity, client, PROTOCOL, (database, why));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_from_messages() {
        assert_eq!(
            rule_in("airlock: blocked by rule email: SELECT INTO would copy"),
            Some("email")
        );
        assert_eq!(rule_in("airlock: executable comments"), None);
        let plans = vec![
            Arc::new(StatementPlan::Columns(vec![
                ColumnMask::Clear,
                ColumnMask::Mask {
                    rule: "email".into(),
                    strategy: crate::masking::Strategy::Email,
                },
            ])),
            Arc::new(StatementPlan::NoResult),
        ];
        assert_eq!(masked_rules(&plans), vec!["email".to_owned()]);
    }
}
