//! Statements held for a human's approval: the request, and the wait for
//! its outcome (or the client's cancel, or its going away).

use super::*;

impl<'a> ClientSide<'a> {
    /// Puts a statement on hold for a human, or `None` when approvals are
    /// not enabled (no admin listener to decide them).
    pub(super) fn request_approval(&self, sql: &[u8], rule: &str, message: &str) -> Option<Hold> {
        let config = self.proxy.config();
        config.admin.as_ref()?;
        let request = HoldRequest {
            statement: String::from_utf8_lossy(sql).into_owned(),
            identity: self.principal.identity.clone(),
            user: self.principal.user.clone(),
            model: self.principal.model.clone(),
            rule: rule.to_owned(),
            message: message.to_owned(),
            session: self.session_id,
            protocol: "postgres",
            target: self.principal.target.clone(),
        };
        Some(self.proxy.approvals.hold(request, config.approvals.timeout))
    }

    /// Waits for the decision on the held statement and finishes judging
    /// it: approved, it goes on as if allowed (masking still applies);
    /// denied, timed out or cancelled by the client, it is refused.
    pub(super) async fn resolve_held(&mut self) -> Result<Verdict, SessionError> {
        let Some(held) = self.held.take() else {
            return Err(SessionError::Protocol(
                "internal error: no statement is held".into(),
            ));
        };
        let mut held = *held;
        let id = held.ticket.id();
        // The relay drops this future when the client hangs up meanwhile
        // (see `relay::hold`), and an operator's terminate drops the
        // session: the log then says so.
        let gone = SessionGone {
            audit: self.audit,
            sql: &held.sql,
            rule: &held.rule,
            id,
        };
        let outcome = match held.cancelled.take() {
            Some(cancelled) => tokio::select! {
                outcome = held.ticket.wait() => outcome,
                Ok(()) = cancelled => Outcome::Withdrawn,
            },
            None => held.ticket.wait().await,
        };
        std::mem::forget(gone);
        // Withdraws the request if it is still pending (cancelled).
        drop(held.ticket);
        let mut note = Note {
            rule: Some(held.rule.clone()),
            reason: Some(outcome.audit_reason(Some(id))),
            ..Note::default()
        };
        let outcome_refusal = outcome.refusal(&held.rule);
        let mut code = outcome.sqlstate();
        // The catalog may have changed while a human decided.
        let unreadable = match outcome_refusal {
            None => self.refresh_catalog_or_refusal().await,
            Some(_) => None,
        };
        let after_reload = match (&outcome_refusal, &unreadable) {
            (None, None) => {
                self.refused_after_reload(&held.sql, held.parse_name.is_some(), held.version)
            }
            _ => None,
        };
        let outcome = match (outcome_refusal, unreadable) {
            (None, Some(unreadable)) => {
                let (sqlstate, message) = *unreadable;
                tracing::warn!(request = id, reason = %message, "approved statement refused");
                code = sqlstate;
                note.decision = AuditDecision::Block;
                note.rule = Some(crate::masking::lineage::UNANALYZABLE.to_owned());
                let refusal = self.catalog_refusal_text(&message);
                note.reason = Some(message);
                Err(refusal)
            }
            (None, None) if after_reload.is_some() => {
                let (rule, message) = after_reload.unwrap_or_default();
                tracing::warn!(request = id, rule, reason = %message, "approved statement refused: the rules were reloaded while it was held");
                code = REFUSED;
                note.decision = AuditDecision::Block;
                note.rule = Some(rule.clone());
                note.reason = Some(format!("{message} (rules reloaded while it was held)"));
                Err(format!(
                    "airlock: blocked by rule {rule}: {message} (the rules were reloaded while it waited for approval, and they refuse it)"
                ))
            }
            (None, None) => {
                self.work_out_restricted();
                tracing::info!(
                    request = id,
                    reason = note.reason.as_deref().unwrap_or(""),
                    "held statement released"
                );
                let source = match held.parse_name {
                    Some(_) => Source::Parse,
                    None => Source::Query,
                };
                self.allowed(
                    &held.sql,
                    &Shape::of(&held.sql),
                    (&held.effects, source),
                    &mut note,
                )
            }
            (Some(refusal), _) => {
                tracing::warn!(request = id, reason = %refusal, "held statement refused");
                note.decision = AuditDecision::Block;
                Err(refusal)
            }
        };
        let (planned, judged) = self.admit(&held.sql, note, outcome);
        Ok(match held.parse_name {
            // Not held a second time: refused at once if other masking
            // sessions' requests are in flight (see `DdlGrace`).
            None => self.query_verdict(planned, judged, code, false),
            Some(name) => {
                if planned.is_ok() {
                    // Approved: it may be bound once (see `bind_once`).
                    self.approved_once.push(name.clone().into_boxed_slice());
                }
                self.parse_verdict(&name, &held.sql, planned, judged, code)
            }
        })
    }

    /// A statement approved while the rules were reloaded: judged again
    /// under the rules in force now, which the human did not see
    /// (red-team finding: a hold released after a reload that denied its
    /// column, or made masking apply to the session, ran as judged
    /// before). `Some((rule, message))` when they refuse it; one that
    /// they would hold for approval again runs: a human approved it.
    fn refused_after_reload(
        &mut self,
        sql: &[u8],
        parse: bool,
        judged_under: u64,
    ) -> Option<(String, String)> {
        let version = self.gates.version();
        if version != self.seen_version {
            self.rules_changed(version, self.after_sync);
        }
        if self.masking_now_applies {
            return Some((RELOADED.to_owned(), self.reconnect_reason().to_owned()));
        }
        if judged_under == version {
            return None;
        }
        let request = Request {
            dialect: Dialect::Postgres,
            source: if parse { Source::Parse } else { Source::Query },
            sql,
            session: &self.context,
        };
        let judgement = self.gates.gate().judge(self.principal, &request);
        match judgement
            .enforcing_builtins(self.masking.is_some())
            .decision
        {
            Decision::Block { rule, message } => Some((rule, message)),
            Decision::Allow | Decision::RequireApproval { .. } => None,
        }
    }
}
