//! The policy gate of [`ClientSide`]: a statement's decision (from the
//! session memo or the policy), its masking plans, what the audit log
//! records of it, and the verdicts on Query and Parse.

use super::*;

impl<'a> ClientSide<'a> {
    /// Masking's verdict on a statement the guardrails allowed: its plans,
    /// or the refusal message. Empty when nothing is masked for this
    /// principal.
    pub(super) fn mask_plan(&self, sql: &[u8], shape: &Shape<'_>) -> Planned {
        match &self.masking {
            Some(m) if self.catalog_unreadable.is_some() => {
                let message = self.catalog_unreadable.as_deref().map_or("", |u| &u.1);
                self.plan_without_catalog(m, sql, message)
            }
            Some(m) if self.restricted || self.beside_ddl => {
                m.ctx.plan_after_ddl(sql, &m.context, self.unseen_ddl())
            }
            Some(m) => m.ctx.plan(sql, shape, &m.context),
            None => Ok(no_plans()),
        }
    }

    /// Whether `sql` creates a schema named as the upstream user, or
    /// renames one to or from that name (see
    /// [`crate::policy::extract::schemas_made`]).
    fn shadows_user_schema(&self, sql: &[u8]) -> bool {
        !self.upstream_user.is_empty()
            && std::str::from_utf8(sql).is_ok_and(|text| {
                // The names come lower-cased (as the policy names
                // everything): a quoted `"Bench"` is refused for the user
                // `Bench`, and, needlessly, for `bench`.
                let made = crate::policy::extract::schemas_made(Dialect::Postgres, text);
                !made.is_empty() && {
                    let user = self.upstream_user.to_lowercase();
                    made.iter()
                        .any(|s| *s == user || s == crate::policy::extract::CURRENT_USER_SCHEMA)
                }
            })
    }

    /// Puts the target's links in force in the session context (a map
    /// loaded since replaces the one there, and with it the memo's
    /// entries, which are keyed by it).
    #[inline]
    fn sync_foreign_keys(&mut self) {
        let Some(slot) = &self.foreign_keys else {
            return;
        };
        if let Some(map) = self.links.changed(slot, self.context.foreign_keys_id()) {
            self.put_foreign_keys(map);
        }
    }

    /// [`Self::sync_foreign_keys`] with a map that may differ from the one
    /// in force.
    #[cold]
    #[inline(never)]
    fn put_foreign_keys(&mut self, map: Arc<crate::policy::foreign_keys::ForeignKeys>) {
        if self.context.set_foreign_keys(map) && !self.context.prepared.is_empty() {
            // SQL `PREPARE`s were judged under the old links; the server
            // keeps them, so their names may not run again, as after a
            // rules reload (re-audit finding: `EXECUTE d(1)` cascaded
            // into a denied table once a key was made).
            let stale = std::mem::take(&mut self.context.prepared);
            self.used_up
                .extend(stale.into_iter().map(|n| n.into_bytes().into_boxed_slice()));
        }
    }

    /// Whether a statement must wait for the target's links
    /// ([`Self::refresh_foreign_keys`]): they are stale, or a reload gave
    /// the session's policy rules on tables and it has none.
    pub(super) fn foreign_keys_stale(&mut self) -> bool {
        // A map another session loaded is taken without a wait.
        self.sync_foreign_keys();
        match &self.foreign_keys {
            Some(slot) => self.links.stale(slot),
            None => {
                self.gates.version() != self.seen_version
                    && self.gates.gate().judges_tables(self.principal)
            }
        }
    }

    /// Loads the target's links when they are stale (or first, when a
    /// reload gave the policy rules on tables), and puts them in force.
    /// Until a load succeeds, the links in force refuse every write (see
    /// [`crate::foreign_keys`]).
    pub(super) async fn refresh_foreign_keys(&mut self) {
        if self.foreign_keys.is_none() {
            if !self.gates.gate().judges_tables(self.principal) {
                return;
            }
            match self.proxy.foreign_keys(&self.principal.target) {
                Ok(slot) => self.foreign_keys = Some(slot),
                Err(e) => {
                    // The target left the config: no links can be read
                    // for it, and writes are refused.
                    tracing::warn!(target = %self.principal.target, error = %e, "foreign keys not loaded: writes are refused");
                    self.context.set_foreign_keys(Arc::new(
                        crate::policy::foreign_keys::ForeignKeys::unloaded(),
                    ));
                    return;
                }
            }
        }
        if let Some(slot) = self.foreign_keys.clone() {
            slot.fresh().await;
            // Taken whatever the slot's version says (see
            // `LinksWatch::changed`).
            if let Some(map) = self.links.changed(&slot, 0) {
                self.put_foreign_keys(map);
            }
        }
    }

    /// Judges a statement with the guardrails and, when they allow it,
    /// plans its masking; records the outcome in the audit log. Returns the
    /// masking plans or the refusal message, or [`Decided::Held`] when the
    /// statement waits for a human (see [`ClientSide::resolve_held`]).
    pub(super) fn decide(&mut self, source: Source, sql: &[u8]) -> Decided {
        self.window_released = false;
        // A FunctionCall is not followed to its end: recorded when judged.
        let record_now = source == Source::FunctionCall;
        if let Some(hazard) = self.shared.lexer_hazard.get() {
            let message = super::super::lexer_guard::refusal(hazard);
            return self.refuse(record_now, sql, ids::LEXER_SETTING, message);
        }
        if self.masking_now_applies {
            return self.refuse(record_now, sql, RELOADED, self.reconnect_reason().into());
        }
        if let Some(message) = self.cursors.as_ref().and_then(|c| c.fetch_refusal(sql)) {
            return self.refuse(record_now, sql, RELOADED, message);
        }
        self.sync_foreign_keys();
        // Not while restricted: the memo's plans were made without the
        // restriction (see `super::ddl_fence`).
        let memo = match record_now
            || self.restricted
            || self.beside_ddl
            || self.catalog_unreadable.is_some()
        {
            true => None,
            false => self.memo.view(self.gates.gate(), &self.context),
        };
        // `templated` finds the shape entry `shaped` would, without the
        // shape.
        if let Some(plans) = memo
            .as_ref()
            .and_then(|m| m.exact(source, sql).or_else(|| m.templated(source, sql)))
        {
            let plans = plans.clone();
            return self.replay(sql, plans);
        }
        // Worked out once, for the memo, the decision cache and the
        // masking plan cache.
        let shape = match source {
            Source::FunctionCall => Shape::none(sql),
            _ => Shape::of(sql),
        };
        let gate = Arc::clone(self.gates.gate());
        let request = Request {
            dialect: Dialect::Postgres,
            source,
            sql,
            session: &self.context,
        };
        let (judgement, reuse) = gate.judge_reusable(self.principal, &request, &shape);
        let judgement = judgement.enforcing_builtins(self.masking.is_some());
        let mut note = Note::default();
        if let Some(would) = &judgement.would {
            tracing::warn!(decision = %would, sql = %preview(sql), "observe mode: would refuse");
            if let Decision::Block { rule, message } | Decision::RequireApproval { rule, message } =
                would
            {
                note.decision = AuditDecision::WouldBlock;
                note.rule = Some(rule.clone());
                note.reason = Some(message.clone());
            }
        }
        let outcome = match judgement.decision {
            Decision::Allow if self.shadows_user_schema(sql) => {
                let message = format!(
                    "a schema named as airlock's upstream user ({}) would come first in the search_path of every session that shares it (\"$user\"); name it otherwise",
                    self.upstream_user
                );
                return self.refuse(record_now, sql, ids::SEARCH_PATH, message);
            }
            Decision::Allow => {
                let planned = self.allowed(sql, &shape, (&judgement.effects, source), &mut note);
                if let Ok(plans) = &planned {
                    // Not a read by name: what the name is bound to
                    // changes, so each one is checked afresh.
                    if !record_now
                        && !self.restricted
                        && !self.beside_ddl
                        && self.catalog_unreadable.is_none()
                        && judgement.replayable()
                        && !reads_by_name(plans, sql)
                    {
                        self.memo.remember(
                            &gate,
                            source,
                            &self.context,
                            reuse,
                            sql,
                            &shape,
                            plans.clone(),
                        );
                    }
                }
                planned
            }
            Decision::Block { rule, message } => {
                return self.refuse(record_now, sql, &rule, message);
            }
            Decision::RequireApproval { rule, message } => {
                // Armed before reviewers (and the client) can see the
                // request, so that a cancel cannot slip in between.
                let cancelled = self.cancel.as_ref().map(|c| c.arm());
                match self.request_approval(sql, &rule, &message) {
                    None => {
                        tracing::warn!(rule = %rule, sql = %preview(sql), "statement needs approval; refused");
                        note.decision = AuditDecision::Approval;
                        let refusal = format!(
                            "airlock: rule {rule} requires human approval, and approvals are not enabled (no [admin] listener): {message}"
                        );
                        note.rule = Some(rule);
                        note.reason = Some(message);
                        Err(refusal)
                    }
                    Some(Hold::Released(outcome)) => {
                        tracing::info!(rule = %rule, sql = %preview(sql), "statement released by an approval window");
                        self.window_released = true;
                        note.reason = Some(outcome.audit_reason(None));
                        note.rule = Some(rule);
                        self.allowed(sql, &shape, (&judgement.effects, source), &mut note)
                    }
                    Some(Hold::Waiting(ticket)) => {
                        tracing::warn!(rule = %rule, request = ticket.id(), sql = %preview(sql), "statement held for approval");
                        note.decision = AuditDecision::Approval;
                        note.reason = Some(format!(
                            "held for approval (request {}): {message}",
                            ticket.id()
                        ));
                        note.rule = Some(rule.clone());
                        if let Err(refusal) = self.record(sql, note, Ok(())) {
                            // Unrecorded: refuse (dropping the ticket withdraws it).
                            return Decided::Now(Err(refusal), None);
                        }
                        self.held = Some(Box::new(Held {
                            ticket,
                            sql: sql.to_vec(),
                            rule,
                            effects: judgement.effects,
                            version: self.seen_version,
                            parse_name: None,
                            cancelled,
                        }));
                        return Decided::Held;
                    }
                }
            }
        };
        if record_now {
            return Decided::Now(self.record(sql, note, outcome), None);
        }
        let (planned, judged) = self.admit(sql, note, outcome);
        Decided::Now(planned, judged)
    }

    /// Refuses a statement: logged, recorded in the audit log, and
    /// answered with airlock's error for `rule`.
    pub(super) fn refuse(
        &mut self,
        record_now: bool,
        sql: &[u8],
        rule: &str,
        message: String,
    ) -> Decided {
        tracing::warn!(rule = %rule, reason = %message, sql = %preview(sql), "statement blocked");
        let refusal = format!("airlock: blocked by rule {rule}: {message}");
        let note = Note {
            decision: AuditDecision::Block,
            rule: Some(rule.to_owned()),
            reason: Some(message),
            masked: None,
        };
        if record_now {
            return Decided::Now(self.record(sql, note, Err(refusal)), None);
        }
        let (planned, judged) = self.admit(sql, note, Err(refusal));
        Decided::Now(planned, judged)
    }

    /// A repeat of the memo's statement: allowed with the plans it had.
    pub(super) fn replay(&mut self, sql: &[u8], plans: Plans<StatementPlan>) -> Decided {
        let mut note = Note::default();
        let outcome = self.settle_allowed(
            sql,
            Ok(plans),
            (&Effects::default(), Source::Query),
            &mut note,
        );
        let (planned, judged) = self.admit(sql, note, outcome);
        Decided::Now(planned, judged)
    }

    /// The allow path: masking plans (or masking's refusal) and the
    /// statement's effects on the session.
    pub(super) fn allowed(
        &mut self,
        sql: &[u8],
        shape: &Shape<'_>,
        effects: (&Effects, Source),
        note: &mut Note,
    ) -> Planned {
        let refusal = self
            .outdated_execute(sql)
            .or_else(|| self.sql_prepare_over_limit(&effects.0.prepared));
        let planned = match refusal {
            Some(refusal) => Err(refusal),
            None => self.mask_plan(sql, shape),
        };
        let planned = planned.and_then(|plans| match self.masked_by_name(sql, &plans) {
            Some(refusal) => Err(refusal),
            None => Ok(plans),
        });
        self.settle_allowed(sql, planned, effects, note)
    }

    /// Notes what masking does to an allowed statement and applies its
    /// effects, unless masking refused it.
    pub(super) fn settle_allowed(
        &mut self,
        sql: &[u8],
        planned: Planned,
        (effects, source): (&Effects, Source),
        note: &mut Note,
    ) -> Planned {
        match &planned {
            Ok(plans) => {
                let masked = masked_rules(plans);
                if !masked.is_empty() && note.decision == AuditDecision::Allow {
                    note.decision = AuditDecision::Masked;
                    note.masked = Some(masked.join(","));
                }
                self.apply(effects, source);
            }
            Err(msg) => {
                // Masking's refusals name their rule: recorded, so that
                // `airlock log --rule` finds them.
                let rule = crate::audit::session::rule_in(msg);
                tracing::warn!(rule = rule.unwrap_or(""), reason = %msg, sql = %preview(sql), "statement blocked by masking");
                note.decision = AuditDecision::Block;
                note.rule = rule.map(str::to_owned);
                note.reason = Some(msg.clone());
            }
        }
        planned
    }

    /// Settles a judged statement with the audit log and the metrics. A
    /// refused one is recorded now. An allowed one is recorded when it has
    /// run (see [`super::audit_hook`]): here the log is only asked whether
    /// it can take that record, and the statement is refused if not (fail
    /// closed). Returns the plans or refusal, and what to record later.
    pub(super) fn admit(
        &self,
        sql: &[u8],
        note: Note,
        outcome: Planned,
    ) -> (Planned, Option<Arc<Judged>>) {
        let Some(audit) = self.audit.filter(|_| outcome.is_ok()) else {
            return (self.record(sql, note, outcome), None);
        };
        crate::metrics::statement(note.decision);
        if let Err(refusal) = audit.ready() {
            tracing::warn!(reason = %refusal, "statement refused: audit log unavailable");
            let _ = audit.statement(sql, AuditDecision::Block, None, Some(&refusal), None);
            return (Err(refusal), None);
        }
        let masked: Option<Arc<str>> = note.masked.map(Arc::from);
        let judged = Judged {
            sql: crate::audit::session::sql_text(sql),
            decision: note.decision,
            rule: note.rule.map(Arc::from),
            reason: note.reason.map(Arc::from).or_else(|| masked.clone()),
            masked,
        };
        (outcome, Some(Arc::new(judged)))
    }

    /// Records a judged statement in the audit log and the metrics. A
    /// statement that could not be recorded is refused (fail closed).
    pub(super) fn record<T>(
        &self,
        sql: &[u8],
        note: Note,
        outcome: Result<T, String>,
    ) -> Result<T, String> {
        crate::metrics::statement(note.decision);
        if let Some(audit) = self.audit {
            let reason = note.reason.or_else(|| note.masked.clone());
            let recorded = audit.statement(
                sql,
                note.decision,
                note.rule.as_deref(),
                reason.as_deref(),
                note.masked.as_deref(),
            );
            if let (Err(msg), Ok(_)) = (&recorded, &outcome) {
                return Err(msg.clone());
            }
        }
        outcome
    }

    /// For a masking session's statement that runs DDL if `runs_ddl`
    /// says so: counts the DDL unsettled (as it would be to run; if it is
    /// refused after all, it settles when the refusal's request is
    /// answered idle) and returns the requests other masking sessions of
    /// the target have in flight, which may be writes checked before it
    /// (see [`crate::masking::catalog::InFlight`]). Empty otherwise.
    pub(super) fn ddl_waits(
        &self,
        runs_ddl: impl FnOnce(&ClientMasking) -> bool,
    ) -> crate::masking::catalog::InFlightAt {
        let Some(m) = self.masking.as_ref().filter(|m| runs_ddl(m)) else {
            return Default::default();
        };
        let generation = m.ctx.generation();
        let request = m.fence.batch_request();
        self.shared.fence.count_ddl(generation, request);
        let waiting_for = self.shared.fence.others_in_flight(generation);
        if !waiting_for.is_empty() {
            // Not forwarded while it waits: others' DDL need not wait for
            // it (two sessions' DDL would each wait for the other), only
            // for what the session sent before it.
            self.shared.fence.checking(request - 1);
        }
        waiting_for
    }

    /// Waits for what a [`DdlGrace`] waits for (at most [`DDL_GRACE`]),
    /// then finishes the statement it holds: refused if they were not all
    /// answered in time.
    pub(super) async fn resolve_grace(&mut self) -> Result<Verdict, SessionError> {
        let Some(grace) = self.ddl_grace.take() else {
            return Err(SessionError::Protocol(
                "internal error: no DDL is waiting".into(),
            ));
        };
        let drained = grace.waiting_for.wait_drained(super::DDL_GRACE).await;
        match grace.then {
            GraceThen::Query {
                planned,
                judged,
                code,
            } => {
                // Published again, then another session's DDL counted
                // meanwhile is looked for (see `InFlight`).
                self.publish_checking();
                self.work_out_restricted();
                let moved =
                    self.beside_ddl || self.masking.as_ref().is_some_and(|m| m.ctx.catalog_stale());
                let planned = match (drained, moved) {
                    (false, _) => {
                        Err(self.refuse_ddl(judged.as_deref(), super::DDL_BESIDE_STATEMENTS))
                    }
                    (true, true) => Err(self.refuse_ddl(judged.as_deref(), super::DDL_BESIDE_DDL)),
                    (true, false) => planned,
                };
                Ok(self.query_verdict_now(planned, judged, code))
            }
            GraceThen::Execute(frame) => {
                // Judged again: published again, then another session's
                // DDL counted meanwhile is looked for; planned against a
                // catalog that has moved since, it is refused.
                let moved = self.masking.as_ref().is_some_and(|m| m.ctx.catalog_stale());
                self.grace_passed = Some(match (drained, moved) {
                    (false, _) => Err(super::DDL_BESIDE_STATEMENTS),
                    (true, true) => Err(super::DDL_BESIDE_DDL),
                    (true, false) => Ok(()),
                });
                let verdict = self.judge_frame(&frame);
                self.grace_passed = None;
                verdict
            }
        }
    }

    /// A masking session's DDL refused with `refusal` (see [`DdlGrace`]),
    /// recorded in the audit log.
    fn refuse_ddl(&self, judged: Option<&Judged>, refusal: &str) -> String {
        tracing::warn!(reason = refusal, "DDL refused");
        if let (Some(audit), Some(j)) = (self.audit, judged) {
            let _ = audit.statement(
                j.sql.as_bytes(),
                AuditDecision::Block,
                Some(crate::masking::lineage::UNANALYZABLE),
                Some(refusal),
                None,
            );
        }
        refusal.to_owned()
    }

    /// What becomes of a Query, given its judgement (`code`: the SQLSTATE
    /// of a refusal). DDL of a masking session first waits for other
    /// masking sessions' requests in flight ([`DdlGrace`]) when `may_wait`,
    /// else is refused if there are any.
    pub(super) fn query_verdict(
        &mut self,
        planned: Planned,
        judged: Option<Arc<Judged>>,
        code: &'static str,
        may_wait: bool,
    ) -> Verdict {
        let planned = match planned {
            Ok(plans) => {
                let waiting_for = self.ddl_waits(|_| {
                    plans
                        .iter()
                        .flatten()
                        .any(|p| matches!(p.as_ref(), StatementPlan::Ddl))
                });
                match (waiting_for.is_empty(), may_wait) {
                    (true, _) => Ok(plans),
                    (false, true) => {
                        self.ddl_grace = Some(Box::new(DdlGrace {
                            waiting_for,
                            then: GraceThen::Query {
                                planned: Ok(plans),
                                judged,
                                code,
                            },
                        }));
                        return Verdict::Hold;
                    }
                    (false, false) => {
                        Err(self.refuse_ddl(judged.as_deref(), super::DDL_BESIDE_STATEMENTS))
                    }
                }
            }
            planned => planned,
        };
        self.query_verdict_now(planned, judged, code)
    }

    /// [`Self::query_verdict`] once any wait is over.
    fn query_verdict_now(
        &mut self,
        planned: Planned,
        judged: Option<Arc<Judged>>,
        code: &str,
    ) -> Verdict {
        match planned {
            Ok(plans) => {
                let runs_ddl = plans
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.as_ref(), StatementPlan::Ddl));
                self.expect(Expect::Simple { plans });
                if runs_ddl || self.restricted {
                    let shared = self.shared;
                    if let Some(m) = &mut self.masking {
                        m.fence.mark_request();
                        if runs_ddl {
                            // Counted before it is forwarded: other
                            // sessions' results are refused from now until
                            // its transaction is seen to end.
                            shared
                                .fence
                                .count_ddl(m.ctx.generation(), m.fence.last_request());
                        }
                    }
                }
                self.follow(|| Expect::Simple {
                    plans: judged
                        .zip(self.audit)
                        .map(|(j, audit)| Some(Run::now(&j, audit)))
                        .into_iter()
                        .collect(),
                });
                Verdict::Pass
            }
            Err(msg) => {
                self.expect(Expect::Simple { plans: no_plans() });
                self.follow(|| Expect::Simple {
                    plans: Arc::from(Vec::new()),
                });
                Verdict::Replace(self.shared.refusals.query(code, &msg))
            }
        }
    }

    /// What becomes of a Parse of statement `name`, given its judgement.
    pub(super) fn parse_verdict(
        &mut self,
        name: &[u8],
        sql: &[u8],
        planned: Planned,
        judged: Option<Arc<Judged>>,
        code: &str,
    ) -> Verdict {
        match planned {
            Ok(plans) => {
                self.follow_step(judged.as_ref());
                // The unnamed one too while the target's links apply: they
                // may change between its Parse and its Bind.
                // Clients parse the same text again and again: the copy
                // kept from the last Parse of that name serves again.
                let kept = (!name.is_empty() || self.foreign_keys.is_some()).then(|| {
                    match self.statements.get(name).and_then(|v| v.sql.as_ref()) {
                        Some(same) if **same == *sql => Arc::clone(same),
                        _ => Arc::from(sql),
                    }
                });
                // Judged under the rules the session last saw (a reload
                // during a hold is noticed at the next statement).
                let version = self.seen_version;
                self.statements.insert(
                    name,
                    Vetted {
                        judged,
                        version,
                        links: self.context.foreign_keys_id(),
                        sql: kept,
                        prepares: self.parsed_prepares.take(),
                    },
                );
                if let Some(m) = &mut self.masking {
                    let at = m.ctx.plans_at();
                    m.book
                        .parsed(name, plans.first().cloned().flatten(), sql, at);
                    m.journal
                        .push(m.fence.batch_request(), Op::Parse(name.into()));
                }
                Verdict::Pass
            }
            Err(msg) => {
                self.parsed_prepares = None;
                self.follow(|| Expect::Completion);
                self.statements.remove(name);
                Verdict::Replace(self.shared.refusals.parse(name, code, &msg))
            }
        }
    }

    #[inline]
    pub(super) fn apply(&mut self, e: &Effects, source: Source) {
        // Most statements change nothing (and a memo replay never does):
        // checked inline, the rest out of line.
        if e.prepared.is_empty()
            && e.deallocated.is_empty()
            && !e.deallocate_all
            && e.search_path.is_none()
            && e.declared.is_empty()
            && e.closed.is_empty()
            && !e.close_all
        {
            return;
        }
        self.apply_effects(e, source);
    }

    /// [`Self::apply`], for a statement that changes the session.
    #[inline(never)]
    fn apply_effects(&mut self, e: &Effects, source: Source) {
        // SQL CLOSE of a protocol portal's name: what the name means next
        // is not the portal airlock vetted, planned and saw described
        // (review finding: a function that opened a refcursor under the
        // closed name was executed under the old portal's plan, in clear).
        // ROLLBACK TO SAVEPOINT closes the portals opened since the
        // savepoint; which those are is not tracked, so all are forgotten
        // (an Execute of an older one is refused: bind it again).
        //
        // The server may refuse the statement (an earlier error in the
        // query, an aborted transaction, a name that is taken) and keep
        // the portal: one that reads masked data stays unreadable by name
        // until the session is idle (red-team finding: a DECLARE of the
        // portal's name that the server refused was taken for the cursor,
        // and FETCH read the portal in clear).
        if e.close_all {
            self.all_portals_closed_by_sql();
        }
        for name in &e.closed {
            self.portal_freed_by_sql(name.as_bytes());
        }
        for (name, hold) in &e.declared {
            self.cursors
                .get_or_insert_with(Default::default)
                .declared(name, *hold);
            // Portals and cursors share one namespace on the server: the
            // cursor is what the name now means, not a protocol portal
            // airlock vetted, planned and saw described under it (review
            // finding: Execute of the name read the cursor's rows under
            // the portal's description and plan, in clear).
            self.portal_freed_by_sql(name.as_bytes());
        }
        if let Some(m) = &mut self.masking {
            // Likewise for SQL DEALLOCATE of a protocol statement's name:
            // the book's plan and description of it are not the next
            // statement's (a Bind of it is refused until it is parsed
            // again). For a PREPARE of the name, below.
            if e.deallocate_all {
                m.book.closed_all_statements();
            }
            for name in &e.deallocated {
                m.book.closed_statement(name.as_bytes());
            }
        }
        if let Some(m) = &mut self.masking {
            m.reprepare(e, source);
        }
        // In the order `Effects` documents. Without masking, the names are
        // unsure: the server may not carry the statement out (see
        // `Self::closed_unsurely`).
        if e.deallocate_all {
            if self.masking.is_none() {
                let names: Vec<Box<[u8]>> = self
                    .statements
                    .names()
                    .map(Into::into)
                    .chain(self.context.prepared.iter().map(|n| n.as_bytes().into()))
                    .collect();
                for name in names {
                    self.closed_unsurely(&name);
                }
            }
            self.context.prepared.clear();
            self.statements.clear();
        }
        for name in &e.deallocated {
            self.closed_unsurely(name.as_bytes());
            self.context.prepared.remove(name);
            // SQL DEALLOCATE also drops protocol-level statements of that name.
            self.statements.remove(name.as_bytes());
        }
        if source == Source::Parse {
            // Parsed, a PREPARE makes nothing: its names are taken when it
            // runs ([`Self::execute_prepares`]).
            if !e.prepared.is_empty() {
                self.parsed_prepares = Some(e.prepared.as_slice().into());
            }
            return self.apply_search_path(e);
        }
        let mut made = Vec::new();
        for name in &e.prepared {
            // The server refuses a PREPARE of a name it holds (42P05): a
            // protocol statement, or one that may not run again.
            let held = self.statement_taken(name.as_bytes())
                || self.used_up.iter().any(|n| **n == *name.as_bytes());
            if !held && self.context.prepared.insert(name.clone()) {
                made.push(name.clone());
            }
        }
        // Masking sessions: the book's plan of a statement of the name is
        // not the new one's; and the names are taken back if the server
        // may not have made them (see `book_sync`). Simple Queries get
        // here, and the Execute of a PREPARE sent through Parse. A
        // PREPARE of a name the session holds leaves the book
        // as it is: the server refuses it and keeps its statement
        // (red-team finding: the book forgot the masked plan of a
        // protocol statement whose name a refused PREPARE reused, and a
        // Bind of it ran unmasked).
        if let Some(m) = self.masking.as_mut().filter(|_| !made.is_empty()) {
            for name in &made {
                m.book.closed_statement(name.as_bytes());
            }
            m.journal
                .push(m.fence.batch_request(), Op::SqlPrepare(made.into()));
        }
        self.apply_search_path(e);
    }

    fn apply_search_path(&mut self, e: &Effects) {
        if let Some(path) = &e.search_path {
            self.context.search_path = path.clone();
            if let Some(m) = &mut self.masking {
                m.sync_context(&self.context);
            }
        }
    }
}
