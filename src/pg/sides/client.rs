//! [`ClientSide`]: its construction, the frame-by-frame judgement of
//! what the client sends ([`ClientSide::judge_frame`]) and its [`Side`]
//! impl for the relay.

use super::*;

impl<'a> ClientSide<'a> {
    pub fn new(
        shared: &'a Shared,
        proxy: &'a Proxy,
        principal: &'a Principal,
        idle_timeout: Duration,
        context: SessionContext,
        mut masking: Option<ClientMasking>,
        audit: Option<&'a SessionAudit>,
    ) -> Self {
        if let Some(m) = &mut masking {
            m.sync_context(&context);
            // Nothing sent yet; the initial snapshot's generation.
            shared.fence.planned(0, m.ctx.loaded_at());
            shared.fence.join(m.ctx.generation());
        }
        let foreign_keys = context
            .foreign_keys
            .as_ref()
            .and_then(|_| proxy.foreign_key_slot(&principal.target));
        ClientSide {
            shared,
            proxy,
            foreign_keys,
            links: Default::default(),
            upstream_user: "",
            gates: proxy.gate_cache(),
            principal,
            idle_timeout,
            shutdown: proxy.shutdown.clone(),
            context,
            statements: Named::default(),
            portals: Named::default(),
            parsed_prepares: None,
            masking,
            audit,
            audit_expect: audit.map(|_| Arc::new(AuditQueue::default())),
            no_formats: Arc::new(Vec::new()),
            no_statement: Arc::from(&b""[..]),
            session_id: 0,
            held: None,
            cancel: None,
            memo: Memo::default(),
            refreshing: None,
            awaiting_room: None,
            restricted: false,
            beside_ddl: false,
            ddl_grace: None,
            grace_passed: None,
            catalog_unreadable: None,
            approved_once: Vec::new(),
            used_up: Vec::new(),
            unsure: Vec::new(),
            unsure_overflow: false,
            lifted: Vec::new(),
            window_released: false,
            in_copy_data: false,
            frames_unchecked: 0,
            after_sync: true,
            seen_version: 0,
            masking_now_applies: false,
            masking_lapsed: false,
            cursors: None,
        }
    }

    /// The version of the rules the session was admitted under (read
    /// before its masking was decided): a reload after it is noticed at
    /// the first statement.
    pub fn with_rules_version(mut self, version: u64) -> Self {
        self.seen_version = version;
        self
    }

    /// Sets the database user airlock logged in as upstream.
    pub fn with_upstream_user(mut self, user: &'a str) -> Self {
        self.upstream_user = user;
        self
    }

    /// Sets the session id that approval requests name.
    pub fn with_session_id(mut self, id: u64) -> Self {
        self.session_id = id;
        self
    }

    /// Lets a CancelRequest for this session withdraw a held statement.
    pub fn with_cancel(mut self, cancel: Arc<HeldCancel>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// The server side's audit follower, which records allowed statements
    /// when they have run; `None` without an audit log.
    pub fn reply_audit(&self) -> Option<ReplyAudit<'a>> {
        let audit: &'a SessionAudit = self.audit?;
        let expect = Arc::clone(self.audit_expect.as_ref()?);
        Some(ReplyAudit::new(audit, expect))
    }

    #[inline]
    pub(super) fn expect(&mut self, e: Expect<StatementPlan>) {
        if let Some(m) = &mut self.masking {
            match e {
                Expect::Simple { .. } | Expect::Sync | Expect::FunctionCall => {
                    let changed_books = m.journal.has_request(m.fence.batch_request());
                    m.fence.request_sent();
                    if changed_books {
                        // The next request waits for this one's answer,
                        // which says what the server carried out.
                        m.fence.mark_request();
                    }
                }
                Expect::CopyEnd => {}
                _ => m.fence.frame_in_batch(),
            }
            m.expect.push(e);
        }
    }

    /// Tells the audit follower what a request will produce.
    pub(super) fn follow(&self, e: impl FnOnce() -> Expect<Run>) {
        // Built only when followed: without an audit log the expectation
        // (and the reference counts it takes) is not made at all.
        if let Some(q) = &self.audit_expect {
            q.push(e());
        }
    }

    /// Tells the audit follower that an Execute runs nothing (refused).
    fn follow_no_run(&self) {
        self.follow(|| Expect::Execute {
            plan: None,
            statement: Arc::clone(&self.no_statement),
            formats: Arc::clone(&self.no_formats),
            origin: Origin::default(),
        });
    }

    /// An audit expectation for a Parse or Bind of `judged`.
    pub(super) fn follow_step(&self, judged: Option<&Arc<Judged>>) {
        self.follow(|| match (judged, self.audit) {
            (Some(j), Some(audit)) => Expect::Step {
                plan: Some(Run::now(j, audit)),
            },
            _ => Expect::Completion,
        });
    }

    /// CopyData goes upstream: the first of a run leaves a marker in the
    /// expectation queues, where a failing COPY FROM STDIN may have failed
    /// (see `results::Tracker::copy_failed`).
    pub(super) fn copy_data_sent(&mut self) {
        if !self.in_copy_data {
            self.in_copy_data = true;
            self.expect(Expect::CopyData);
            self.follow(|| Expect::CopyData);
        }
    }

    /// What becomes of one client frame, against the current catalog
    /// snapshot (see [`Side::on_frame`]).
    pub(super) fn judge_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        let tag = frame[0];
        let body = &frame[5..];
        let after_sync = self.after_sync;
        if tag != fe::FLUSH {
            self.after_sync = matches!(tag, fe::SYNC | fe::QUERY);
            if self.after_sync {
                if let Some(c) = &mut self.cursors {
                    c.batch_ended();
                }
            }
        }
        if tag == fe::COPY_DATA {
            self.copy_data_sent();
            return Ok(Verdict::Pass);
        }
        self.in_copy_data = false;
        if matches!(tag, fe::QUERY | fe::PARSE | fe::BIND | fe::EXECUTE) {
            if matches!(tag, fe::QUERY | fe::EXECUTE) {
                self.publish_checking();
            }
            self.work_out_restricted();
            if self.cursors.is_some() {
                self.forget_ended_cursors(after_sync);
            }
            // Also at Execute: a portal bound before a reload is stale.
            let version = self.gates.version();
            if version != self.seen_version {
                self.rules_changed(version, after_sync);
            }
            if self.masking_now_applies
                && after_sync
                && self
                    .shared
                    .pending
                    .load(std::sync::atomic::Ordering::Acquire)
                    == 0
                && matches!(tag, fe::QUERY | fe::PARSE)
            {
                // A reload made masking apply to this session, which
                // started without it and cannot take it up: at its next
                // request with nothing in flight it ends (57P01, as when
                // an administrator terminates a backend; an open
                // transaction is rolled back), so that a pool opens a new
                // one. Refusing its statements instead left a session
                // caught inside a transaction unable to leave it.
                self.record_ended_at(tag, body);
                return Err(SessionError::MustReconnect(self.reconnect_reason()));
            }
        }
        if matches!(
            tag,
            fe::QUERY | fe::PARSE | fe::BIND | fe::EXECUTE | fe::CLOSE
        ) {
            self.settle_books();
            if after_sync && self.portals.named_len() != 0 && self.shared.is_idle() {
                self.forget_ended_portals();
            }
        }
        let refusals = &self.shared.refusals;
        match tag {
            fe::QUERY => {
                let q = Query::decode(body).map_err(malformed)?;
                self.shared.request_sent();
                Ok(match self.decide(Source::Query, q.sql) {
                    Decided::Now(planned, judged) => {
                        let code = self.refusal_code(&planned);
                        self.query_verdict(planned, judged, code, true)
                    }
                    Decided::Held => Verdict::Hold,
                })
            }
            fe::PARSE => {
                let p = Parse::decode(body).map_err(malformed)?;
                self.expect(Expect::Completion);
                // Set by this Parse's judgement only.
                self.parsed_prepares = None;
                if p.name.is_empty() {
                    // Skipped, it leaves the unnamed statement it replaces.
                    self.closing(p.name, after_sync);
                }
                if let Some(at) = self.approved_once.iter().position(|n| **n == *p.name) {
                    // A new statement of that name needs its own approval;
                    // the server may keep the approved one (42P05, or a
                    // Parse it skips), so its name is used up.
                    let name = self.approved_once.swap_remove(at);
                    self.statements.remove(&name);
                    self.used_up.push(name);
                }
                if !self.used_up.is_empty() {
                    if p.name.is_empty() {
                        // The server replaces the unnamed statement at a
                        // Parse it carries out.
                        self.drop_used_up(p.name, after_sync);
                    }
                    if self.used_up.iter().any(|n| **n == *p.name) {
                        self.lifted.push(p.name.into());
                    }
                }
                if self.statement_taken(p.name) {
                    return Ok(self.refuse_taken(p.name));
                }
                if let Some(msg) = self.prepared_over_limit(usize::from(!p.name.is_empty())) {
                    // Recorded as refused; 53400 (configuration_limit_exceeded).
                    let refused = self.refuse(false, p.sql, PREPARED_LIMIT_RULE, msg);
                    return Ok(match refused {
                        Decided::Now(planned, judged) => {
                            self.parse_verdict(p.name, p.sql, planned, judged, "53400")
                        }
                        Decided::Held => Verdict::Hold,
                    });
                }
                Ok(match self.decide(Source::Parse, p.sql) {
                    Decided::Now(planned, judged) => {
                        let released = std::mem::take(&mut self.window_released) && planned.is_ok();
                        let code = self.refusal_code(&planned);
                        let verdict = self.parse_verdict(p.name, p.sql, planned, judged, code);
                        if released {
                            // Released by a window: it runs once, as an
                            // approved Parse does (see `bind_once`).
                            self.approved_once.push(p.name.into());
                        }
                        verdict
                    }
                    Decided::Held => {
                        if let Some(held) = &mut self.held {
                            held.parse_name = Some(p.name.to_vec());
                        }
                        Verdict::Hold
                    }
                })
            }
            fe::BIND => {
                let b = Bind::decode(body).map_err(malformed)?;
                self.expect(Expect::Completion);
                if !self.used_up.is_empty()
                    && self.used_up.iter().any(|n| **n == *b.statement)
                    && !self.lifted.iter().any(|n| **n == *b.statement)
                {
                    self.follow(|| Expect::Completion);
                    self.portals.remove(b.portal);
                    let msg = format!(
                        "airlock: blocked by rule builtin.unvetted-statement: prepared statement \"{}\" may not run again (it was approved to run once, and it has; or it was prepared before the rules were reloaded): Close it and Parse it again",
                        String::from_utf8_lossy(b.statement)
                    );
                    return Ok(Verdict::Replace(refusals.bind(b.portal, REFUSED, &msg)));
                }
                if self.statement_vetted(b.statement) {
                    let checked = match self.restricted || self.beside_ddl {
                        _ if self.bind_outdated(b.statement) => Err(format!(
                            "airlock: blocked by rule {}: prepared statement \"{}\" was prepared (SQL PREPARE) before the catalog changed, and masking cannot tell what it returns now: DEALLOCATE it and PREPARE it again",
                            crate::masking::lineage::UNANALYZABLE,
                            String::from_utf8_lossy(b.statement)
                        )),
                        true => self.after_ddl_check(|book| book.statement_sql(b.statement)),
                        false => self.replan_statement(b.statement),
                    };
                    let (code, checked) =
                        self.catalog_refusal(checked, |book| book.statement_sql(b.statement));
                    if let Err(msg) = checked {
                        // Its masking plan against the current catalog
                        // refuses it; the statement stays, refused at each
                        // Bind while the catalog says so.
                        self.follow(|| Expect::Completion);
                        self.portals.remove(b.portal);
                        if let Some(m) = &mut self.masking {
                            // The server keeps the portal this Bind would
                            // have replaced, if any.
                            m.book.portal_gone(b.portal);
                        }
                        return Ok(Verdict::Replace(refusals.bind(b.portal, code, &msg)));
                    }
                    let bound = match self.judged_again(b.statement) {
                        Ok(bound) => bound,
                        Err(msg) => {
                            self.follow(|| Expect::Completion);
                            self.portals.remove(b.portal);
                            if let Some(m) = &mut self.masking {
                                m.book.portal_gone(b.portal);
                            }
                            return Ok(Verdict::Replace(refusals.bind(b.portal, REFUSED, &msg)));
                        }
                    };
                    self.follow_step(bound.judged.as_ref());
                    self.portals.insert(b.portal, bound);
                    if let Some(c) = &mut self.cursors {
                        c.bound(b.portal);
                    }
                    if !self.approved_once.is_empty() {
                        self.bind_once(b.statement);
                    }
                    if let Some(m) = &mut self.masking {
                        let formats = Bind::result_formats(body).map_err(malformed)?;
                        m.book.bound(b.portal, b.statement, formats);
                        m.journal
                            .push(m.fence.batch_request(), Op::Bind(b.portal.into()));
                    }
                    return Ok(Verdict::Pass);
                }
                self.follow(|| Expect::Completion);
                self.portals.remove(b.portal);
                let msg = format!(
                    "airlock: blocked by rule builtin.unvetted-statement: prepared statement \"{}\" was not allowed by airlock",
                    String::from_utf8_lossy(b.statement)
                );
                Ok(Verdict::Replace(refusals.bind(b.portal, REFUSED, &msg)))
            }
            fe::EXECUTE => {
                let e = Execute::decode(body).map_err(malformed)?;
                // Refused anyway without a snapshot: no wait for it.
                if self.grace_passed.is_none() && self.catalog_unreadable.is_none() {
                    let waiting_for = self.ddl_waits(|m| m.book.portal_runs_ddl(e.portal));
                    if !waiting_for.is_empty() {
                        self.ddl_grace = Some(Box::new(DdlGrace {
                            waiting_for,
                            then: GraceThen::Execute(frame.into()),
                        }));
                        return Ok(Verdict::Hold);
                    }
                }
                let replanned = match self.restricted || self.beside_ddl {
                    true => self.after_ddl_check(|book| book.portal_sql(e.portal)),
                    false => self.replan_portal(e.portal),
                }
                .and_then(|()| self.execute_by_name_check(e.portal));
                // Both rare: one branch on the hot path.
                let replanned = match self.cursors.is_some() || self.masking_now_applies {
                    true => replanned.and_then(|()| self.reload_check(e.portal)),
                    false => replanned,
                };
                // Before the DDL count below: a refused DDL does not run
                // (review finding).
                let (code, mut replanned) =
                    self.catalog_refusal(replanned, |book| book.portal_sql(e.portal));
                let restricted = self.restricted;
                let shared = self.shared;
                if let Some(m) = &mut self.masking {
                    let expect = m.book.execute(e.portal);
                    let runs_ddl = matches!(
                        &expect,
                        Expect::Execute { plan: Some(p), .. } if matches!(p.as_ref(), StatementPlan::Ddl)
                    );
                    if replanned.is_ok() && (restricted || runs_ddl) {
                        m.fence.mark_batch();
                        if runs_ddl {
                            // Counted before it is forwarded, until the
                            // batch's Sync is answered idle (see `Query`).
                            shared
                                .fence
                                .count_ddl(m.ctx.generation(), m.fence.batch_request());
                            if let Some(Err(refusal)) = self.grace_passed {
                                tracing::warn!(reason = refusal, "DDL refused");
                                replanned = Err(refusal.into());
                            }
                        }
                    }
                    m.fence.frame_in_batch();
                    m.expect.push(expect);
                }
                if let Err(msg) = replanned {
                    self.follow_no_run();
                    return Ok(Verdict::Replace(refusals.execute(code, &msg)));
                }
                let portal = self.portals.get(e.portal);
                if portal.is_some() || !self.gates.gate().vets_prepared() {
                    let Bound { judged, prepares } = portal.cloned().unwrap_or_default();
                    if let Some(msg) = prepares
                        .as_deref()
                        .and_then(|p| self.sql_prepare_over_limit(p))
                    {
                        tracing::warn!(reason = %msg, "execution refused");
                        self.follow_no_run();
                        return Ok(Verdict::Replace(refusals.execute("53400", &msg)));
                    }
                    if let (Some(audit), Some(_)) = (self.audit, &judged) {
                        // Each execution is recorded when it ends: refuse
                        // it now if the log could not take that record.
                        if let Err(refusal) = audit.ready() {
                            // A pipeline refused thousands of times in a
                            // row: counted, not logged each time.
                            static REFUSED_EXECUTIONS: crate::log_every::SharedLogEvery =
                                crate::log_every::SharedLogEvery::new(Duration::from_secs(10));
                            if let Some(n) = REFUSED_EXECUTIONS.hit() {
                                tracing::warn!(reason = %refusal, count = n, "executions refused: audit log unavailable (logged at most every 10 s)");
                            }
                            self.follow_no_run();
                            return Ok(Verdict::Replace(refusals.execute(REFUSED, &refusal)));
                        }
                    }
                    if let Some(names) = prepares {
                        self.execute_prepares(&names);
                    }
                    self.follow(|| Expect::Execute {
                        plan: judged
                            .as_ref()
                            .zip(self.audit)
                            .map(|(j, audit)| Run::now(j, audit)),
                        statement: Arc::clone(&self.no_statement),
                        formats: Arc::clone(&self.no_formats),
                        origin: Origin::default(),
                    });
                    return Ok(Verdict::Pass);
                }
                self.follow_no_run();
                let msg = format!(
                    "airlock: blocked by rule builtin.unvetted-portal: portal \"{}\" was not bound by airlock",
                    String::from_utf8_lossy(e.portal)
                );
                Ok(Verdict::Replace(refusals.execute(REFUSED, &msg)))
            }
            fe::CLOSE => {
                self.expect(Expect::Completion);
                self.follow(|| Expect::Completion);
                match Target::decode(body, "Close").map_err(malformed)? {
                    Target::Statement(name) => {
                        self.closing(name, after_sync);
                        self.statements.remove(name);
                        // Statements prepared with SQL PREPARE share the
                        // namespace: a Close of one ends it (red-team
                        // finding: the name stayed SQL-prepared after the
                        // server dropped it, and EXECUTE of it later read
                        // a protocol statement of that name unmasked).
                        if !self.context.prepared.is_empty() {
                            if let Ok(sql_name) = std::str::from_utf8(name) {
                                self.context.prepared.remove(sql_name);
                            }
                        }
                        if !self.used_up.is_empty() {
                            self.drop_used_up(name, after_sync);
                        }
                        if let Some(m) = &mut self.masking {
                            m.book.closed_statement(name);
                            m.journal
                                .push(m.fence.batch_request(), Op::CloseStatement(name.into()));
                        }
                    }
                    Target::Portal(name) => {
                        self.portal_freed(name);
                        if let Some(m) = &mut self.masking {
                            m.journal
                                .push(m.fence.batch_request(), Op::ClosePortal(name.into()));
                        }
                    }
                };
                Ok(Verdict::Pass)
            }
            fe::DESCRIBE => {
                match Target::decode(body, "Describe").map_err(malformed)? {
                    Target::Statement(name) => {
                        if let Some(m) = &mut self.masking {
                            let parse = m.book.describe_statement(name);
                            self.expect(Expect::DescribeStatement {
                                name: name.to_vec(),
                                parse,
                            });
                        }
                        // The audit follower keeps no descriptions: no name.
                        self.follow(|| Expect::DescribeStatement {
                            name: Vec::new(),
                            parse: 0,
                        });
                    }
                    Target::Portal(name) => {
                        if let Some(m) = &mut self.masking {
                            let e = m.book.describe_portal(name);
                            self.expect(e);
                        }
                        self.follow(|| Expect::DescribePortal {
                            bind: 0,
                            parse: 0,
                            statement: None,
                        });
                    }
                }
                Ok(Verdict::Pass)
            }
            fe::FUNCTION_CALL => {
                FunctionCall::decode(body).map_err(malformed)?;
                self.shared.request_sent();
                self.expect(Expect::FunctionCall);
                self.follow(|| Expect::FunctionCall);
                let refusal = match self.decide(Source::FunctionCall, b"") {
                    Decided::Now(Ok(_), _) => return Ok(Verdict::Pass),
                    Decided::Now(Err(msg), _) => msg,
                    Decided::Held => {
                        // A FunctionCall has no statement to show a human.
                        self.held = None;
                        "airlock: FunctionCall messages cannot be held for approval".into()
                    }
                };
                Ok(Verdict::Replace(
                    self.shared.refusals.query(REFUSED, &refusal),
                ))
            }
            fe::SYNC => {
                self.shared.request_sent();
                self.lifted.clear();
                self.expect(Expect::Sync);
                if let Some(m) = &mut self.masking {
                    m.fence.sync_sent();
                }
                self.follow(|| Expect::Sync);
                Ok(Verdict::Pass)
            }
            fe::TERMINATE => Ok(Verdict::PassAndStop),
            fe::COPY_DONE | fe::COPY_FAIL => {
                self.expect(Expect::CopyEnd);
                self.follow(|| Expect::CopyEnd);
                Ok(Verdict::Pass)
            }
            fe::FLUSH => Ok(Verdict::Pass),
            other => Err(SessionError::Protocol(format!(
                "invalid frontend message type {other}"
            ))),
        }
    }
}

impl<'a> Side for ClientSide<'a> {
    fn streamable(&self, tag: u8) -> bool {
        tag == fe::COPY_DATA
    }

    fn on_streamed(&mut self, tag: u8) {
        if tag == fe::COPY_DATA {
            self.after_sync = false;
            self.copy_data_sent();
        }
    }

    fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        if self.after_sync
            && matches!(
                frame[0],
                fe::QUERY | fe::PARSE | fe::BIND | fe::EXECUTE | fe::FUNCTION_CALL
            )
            && self.audit.is_some_and(|a| a.queue_full())
        {
            // The audit log cannot take a record now: wait for room
            // (backpressure) rather than refuse (see `resolve`). Only at
            // the start of a request: inside an extended-protocol batch
            // the server holds back the replies that would free room
            // until the batch's Sync, so waiting there would wait for
            // nothing.
            self.awaiting_room = Some(frame.into());
            return Ok(Verdict::Hold);
        }
        self.on_frame_with_room(frame)
    }

    async fn resolve(&mut self) -> Result<Verdict, SessionError> {
        if let Some(frame) = self.awaiting_room.take() {
            if let Some(audit) = self.audit {
                audit.wait_for_room().await;
            }
            match self.on_frame_with_room(&frame)? {
                // Held again, for the catalog or for approval: below.
                Verdict::Hold => {}
                verdict => return Ok(verdict),
            }
        }
        if self.ddl_grace.is_some() {
            return self.resolve_grace().await;
        }
        self.resolve_refreshed().await
    }

    fn interrupt(
        &self,
    ) -> impl std::future::Future<Output = Result<Stopped, SessionError>> + Send + use<'a> {
        let mut shutdown = self.shutdown.clone();
        let shared: &'a Shared = self.shared;
        let idle_timeout = self.idle_timeout;
        async move {
            loop {
                let idle = shared.is_idle();
                if idle && *shutdown.borrow() {
                    return Err(SessionError::ShuttingDown);
                }
                // Checked by deadline rather than woken at every
                // ReadyForQuery (this future is polled only when its timer
                // or the shutdown channel wakes it): idle, wake when the
                // idle period would reach the timeout; busy, look again a
                // little later, soon when shutdown has begun (the session
                // then ends at its next idle point).
                let deadline = if *shutdown.borrow() {
                    Some(Instant::now() + SHUTDOWN_RECHECK)
                } else if idle_timeout.is_zero() {
                    None
                } else if idle {
                    // An idle period that ends past `Instant`'s range never ends.
                    shared.idle_since().checked_add(idle_timeout)
                } else {
                    Some(Instant::now() + BUSY_RECHECK.min(idle_timeout))
                };
                tokio::select! {
                    _ = sleep_until_or_forever(deadline) => {
                        if !idle_timeout.is_zero()
                            && shared.is_idle()
                            && shared.idle_since().elapsed() >= idle_timeout
                        {
                            return Err(SessionError::IdleTimeout);
                        }
                    }
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            // The proxy is gone: treat as shutdown.
                            return Err(SessionError::ShuttingDown);
                        }
                    }
                }
            }
        }
    }
}

/// Waits until `deadline`, or forever when there is none (on the timer
/// thread, see `timer_thread`).
async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(d) => crate::timer_thread::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}

impl ClientSide<'_> {
    /// [`Side::on_frame`] once the audit log has room.
    fn on_frame_with_room(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        if self.masking.as_ref().is_some_and(|m| m.journal.full()) {
            return Err(SessionError::Protocol(format!(
                "more than {} Parse, Bind and Close messages sent without waiting for a Sync's answer; airlock follows that many at most while masking applies",
                super::super::book_sync::MAX_ENTRIES
            )));
        }
        self.frames_unchecked += 1;
        if self.frames_unchecked >= PENDING_CHECK_EVERY {
            self.frames_unchecked = 0;
            self.check_pending()?;
        }
        if matches!(frame[0], fe::QUERY | fe::PARSE | fe::BIND) && self.foreign_keys_stale() {
            // Judged only against the target's links as of now (see
            // `crate::foreign_keys`): the frame waits for them.
            self.refreshing = Some(frame.into());
            return Ok(Verdict::Hold);
        }
        if matches!(
            frame[0],
            fe::QUERY | fe::PARSE | fe::BIND | fe::EXECUTE | fe::CLOSE
        ) {
            if let Some(m) = &mut self.masking {
                if m.fence.must_wait(&self.shared.fence) || m.ctx.catalog_stale() {
                    // Planned, bound or run only once the session's own DDL
                    // has been answered (see `ddl_fence`), and against a
                    // fresh snapshot: the frame waits (see `resolve`).
                    self.refreshing = Some(frame.into());
                    return Ok(Verdict::Hold);
                }
            }
        }
        self.judge_frame(frame)
    }

    /// Ends the session when more than [`MAX_PENDING`] messages await
    /// their replies in an expectation queue. The queues grow with what
    /// the client sends and shrink with what the server answers; after an
    /// error the server answers nothing up to the next Sync, so a client
    /// that sends messages after an error and no Sync would otherwise
    /// grow them without bound (red-team finding: 1 GB in 3.4 s). Looked
    /// at every [`PENDING_CHECK_EVERY`] messages: a queue's lock is not
    /// taken per message.
    fn check_pending(&self) -> Result<(), SessionError> {
        let masking = self.masking.as_ref().map_or(0, |m| m.expect.len());
        let audit = self.audit_expect.as_ref().map_or(0, |q| q.len());
        if masking.max(audit) > MAX_PENDING {
            return Err(SessionError::Protocol(format!(
                "more than {MAX_PENDING} messages sent without a Sync while their replies are awaited (after an error the server answers none up to the next Sync)"
            )));
        }
        Ok(())
    }

    /// [`Side::resolve`] of a frame held for the catalog or for approval.
    async fn resolve_refreshed(&mut self) -> Result<Verdict, SessionError> {
        if let Some(frame) = self.refreshing.take() {
            let shared = self.shared;
            self.refresh_foreign_keys().await;
            if let Some(m) = &mut self.masking {
                m.fence.wait(&shared.fence).await;
            }
            self.catalog_unreadable = self.refresh_catalog_or_refusal().await;
            // Not held again for the catalog (a change made meanwhile is
            // seen at the next statement), but maybe for approval.
            let judged = self.judge_frame(&frame);
            self.catalog_unreadable = None;
            return match judged? {
                Verdict::Hold if self.ddl_grace.is_some() => self.resolve_grace().await,
                Verdict::Hold => self.resolve_held().await,
                verdict => Ok(verdict),
            };
        }
        self.resolve_held().await
    }
}
