//! Holding a statement from a session whose audit hook has no approval
//! steps of its own (MySQL): puts it on hold, records each step (held,
//! approved by whom, denied with the reason, timed out, withdrawn because
//! the client hung up) in the audit log, and waits for the outcome.

use crate::audit::{AuditDecision, AuditEvent, EventKind};
use crate::proxy::Proxy;

use super::{Hold, HoldRequest, Outcome};

/// What was decided about a held statement, and the reason the audit log
/// records for it (for the record of the statement's run, too).
pub struct Decided {
    pub outcome: Outcome,
    pub reason: String,
}

/// Holds `req` until a human decides, the timeout passes or `client_gone`
/// completes (the request is then withdrawn, so that nobody approves a
/// statement whose client has left). `None` when approvals are not enabled
/// (no `[admin]` listener to decide them). `session_event` is the session's
/// own statement record (client address, application name, declared
/// model), which each step's record starts from; without one, a record is
/// made from the request.
pub async fn hold_and_wait(
    proxy: &Proxy,
    req: HoldRequest,
    session_event: Option<AuditEvent>,
    client_gone: impl std::future::Future<Output = ()>,
) -> Option<Decided> {
    let config = proxy.config();
    config.admin.as_ref()?;
    let base = event(&req, session_event);
    let message = req.message.clone();
    Some(match proxy.approvals.hold(req, config.approvals.timeout) {
        Hold::Released(outcome) => {
            let reason = outcome.audit_reason(None);
            if let Err(refusal) = record(proxy, &base, AuditDecision::Allow, reason.clone()) {
                return Some(refused(refusal));
            }
            Decided { outcome, reason }
        }
        Hold::Waiting(mut ticket) => {
            let id = ticket.id();
            let held = format!("held for approval (request {id}): {message}");
            if let Err(refusal) = record(proxy, &base, AuditDecision::Approval, held) {
                return Some(refused(refusal));
            }
            let outcome = tokio::select! {
                outcome = ticket.wait() => outcome,
                () = client_gone => Outcome::ClientGone,
            };
            // Dropping the ticket withdraws a request still pending.
            drop(ticket);
            let decision = if outcome.is_approved() {
                AuditDecision::Allow
            } else {
                AuditDecision::Block
            };
            let reason = outcome.audit_reason(Some(id));
            if let Err(refusal) = record(proxy, &base, decision, reason.clone()) {
                if outcome.is_approved() {
                    return Some(refused(refusal));
                }
            }
            Decided { outcome, reason }
        }
    })
}

/// The audit log could not record a step and airlock fails closed.
fn refused(reason: String) -> Decided {
    Decided {
        outcome: Outcome::Denied {
            by: "airlock".into(),
            reason: reason.clone(),
        },
        reason,
    }
}

fn event(req: &HoldRequest, session_event: Option<AuditEvent>) -> AuditEvent {
    let mut e = match session_event {
        Some(e) => e,
        None => {
            let mut e = AuditEvent::now(EventKind::Statement, req.session);
            e.identity = req.identity.as_str().into();
            e.user = req.user.as_deref().map(Into::into);
            e.model = req.model.as_deref().map(Into::into);
            e.protocol = req.protocol.into();
            e.target = req.target.as_str().into();
            e.database = Some(e.target.clone());
            e
        }
    };
    e.kind = EventKind::Statement;
    e.statement = Some(crate::audit::session::sql_text(req.statement.as_bytes()));
    e.rule = Some(req.rule.as_str().into());
    e
}

/// Records one step; `Err` with the refusal when the log cannot take it
/// and airlock fails closed.
fn record(
    proxy: &Proxy,
    base: &AuditEvent,
    decision: AuditDecision,
    reason: String,
) -> Result<(), String> {
    let Some(log) = &proxy.audit else {
        return Ok(());
    };
    let mut e = base.clone();
    e.time_ms = crate::audit::now_ms();
    e.decision = Some(decision);
    e.reason = Some(reason.into());
    match log.record(e) {
        Ok(()) => Ok(()),
        Err(unavailable) if proxy.audit_fail_closed => Err(unavailable.to_string()),
        Err(unavailable) => {
            tracing::warn!(error = %unavailable, "audit log unavailable; approval step not recorded");
            Ok(())
        }
    }
}
