//! The client side's part of masking: the catalog refresh after DDL,
//! rows read by name, results planned against an outdated catalog, and
//! [`ClientMasking`]'s own bookkeeping.

use super::*;

impl ClientMasking {
    /// A statement that prepares again, or deallocates, SQL-level
    /// statements held outdated: they are current again once the server
    /// has run it without an error, against the same snapshot (see
    /// [`super::book_sync`]); one it may not have run leaves them refused.
    /// A Parse of it runs only if executed: not followed, they stay
    /// outdated.
    pub(super) fn reprepare(&mut self, e: &Effects, source: Source) {
        if self.outdated_prepared.is_empty() {
            return;
        }
        let what = if e.deallocate_all {
            Reprepared::All
        } else {
            let names: Box<[String]> = e
                .prepared
                .iter()
                .chain(&e.deallocated)
                .filter(|n| self.outdated_prepared.contains(*n))
                .cloned()
                .collect();
            if names.is_empty() {
                return;
            }
            Reprepared::Names(names)
        };
        if source == Source::Query {
            let at = self.ctx.plans_at();
            self.journal
                .push(self.fence.batch_request(), Op::Reprepare { what, at });
        }
    }

    /// Applies what [`Self::reprepare`] journaled, once answered.
    pub(super) fn reprepared(&mut self, done: Vec<(Reprepared, u64)>) {
        for (what, at) in done {
            if at != self.ctx.plans_at() {
                // Judged against an older snapshot: still outdated.
                continue;
            }
            match what {
                Reprepared::All => self.outdated_prepared.clear(),
                Reprepared::Names(names) => {
                    for n in names.iter() {
                        self.outdated_prepared.remove(n);
                    }
                }
            }
        }
    }

    /// Takes the session's search_path (after it changed).
    pub(super) fn sync_context(&mut self, session: &SessionContext) {
        self.context.search_path.clone_from(&session.search_path);
        super::super::masking::name_user_schema(&mut self.context.search_path, &self.upstream_user);
    }

    pub fn new(
        ctx: Arc<MaskContext>,
        expect: Arc<Expectations<StatementPlan>>,
        upstream_user: &str,
    ) -> Self {
        ClientMasking {
            ctx,
            expect,
            book: PlanBook::default(),
            journal: Journal::default(),
            fence: Fence::default(),
            upstream_user: upstream_user.to_owned(),
            context: SessionContext::default(),
            outdated_prepared: Default::default(),
        }
    }
}

impl<'a> ClientSide<'a> {
    /// Reloads the catalog snapshot when the target's catalog generation
    /// moved since it was loaded, and then, if the snapshot or the rules
    /// changed, forgets the memo, whose plans were made against the old
    /// ones. Prepared statements and portals keep their plans, tagged with
    /// when they were made ([`MaskContext::plans_at`]), until
    /// [`Self::replan_statement`] or [`Self::replan_portal`] sees them.
    pub(super) async fn refresh_catalog(&mut self) -> Result<(), SessionError> {
        let Some(m) = self.masking.as_ref().filter(|m| m.ctx.catalog_stale()) else {
            return Ok(());
        };
        let (catalog, at) = self.proxy.catalog(&self.principal.target).await?;
        // A reload moves every catalog generation: take its masking rules
        // up too.
        let changed = m.ctx.set_catalog(catalog, at, self.proxy.masker());
        // Results of requests sent so far were planned before the
        // generation moved: the server side refuses them (see
        // `ServerSide::suspect`), even when nothing was found changed (the
        // catalog may have changed and changed back meanwhile).
        self.shared.fence.planned(m.fence.planned_so_far(), at);
        if !changed {
            return Ok(());
        }
        self.memo.forget();
        if let Some(m) = &mut self.masking {
            m.outdated_prepared
                .extend(self.context.prepared.iter().cloned());
        }
        Ok(())
    }

    /// [`Self::refresh_catalog`], for a frame that waited for it: `None`
    /// when the snapshot is fresh, else the SQLSTATE and refusal of the
    /// statements the frame would plan, bind or run. A snapshot the
    /// server did not give (a lock held by another transaction, a timeout,
    /// the server unreachable) refuses the statement, not the session.
    pub(super) async fn refresh_catalog_or_refusal(
        &mut self,
    ) -> Option<Box<(&'static str, String)>> {
        let Err(e) = self.refresh_catalog().await else {
            return None;
        };
        // Not class 08 on a session that goes on: pools may take it for a
        // broken connection (a failed load shared with sessions that
        // waited for it keeps its connect error's).
        let code = match &e {
            SessionError::Upstream { .. } if !e.sqlstate().starts_with("08") => e.sqlstate(),
            SessionError::Upstream { .. } | SessionError::Io(_) => "58030",
            _ => "58000",
        };
        tracing::warn!(target = %self.principal.target, error = %e, "catalog snapshot not loaded: statements that need it are refused");
        Some(Box::new((
            code,
            format!("{e}; masking cannot plan without it: run the statement again"),
        )))
    }

    /// While the catalog could not be read ([`Self::catalog_unreadable`]):
    /// its refusal in place of `checked`, the result of a Bind's or
    /// Execute's own checks, unless the statement (its text from `text`)
    /// is one of transaction and session statements only, which plan
    /// nothing (review finding: a session could not end the transaction
    /// whose lock kept the catalog from being read); with the SQLSTATE to
    /// answer with.
    #[inline]
    pub(super) fn catalog_refusal(
        &self,
        checked: Result<(), String>,
        text: impl FnOnce(&PlanBook) -> Option<Arc<[u8]>>,
    ) -> (&'static str, Result<(), String>) {
        let Some((code, message)) = self.catalog_unreadable.as_deref() else {
            return (REFUSED, checked);
        };
        let plans_nothing = self.masking.as_ref().is_some_and(|m| {
            text(&m.book).is_some_and(|sql| {
                m.ctx
                    .plan_after_ddl(&sql, &m.context, crate::masking::UnseenDdl::Own)
                    .is_ok()
            })
        });
        match plans_nothing {
            true => (REFUSED, checked),
            false => (code, Err(self.catalog_refusal_text(message))),
        }
    }

    /// The refusal of a statement that needs the catalog snapshot that
    /// could not be read (`message`: why).
    pub(super) fn catalog_refusal_text(&self, message: &str) -> String {
        format!(
            "airlock: blocked by rule {}: {message}",
            crate::masking::lineage::UNANALYZABLE
        )
    }

    /// A Query's or Parse's masking plans while the catalog could not be
    /// read: transaction and session statements only (see
    /// [`Self::catalog_refusal`]), else the refusal.
    pub(super) fn plan_without_catalog(
        &self,
        m: &ClientMasking,
        sql: &[u8],
        message: &str,
    ) -> Planned {
        m.ctx
            .plan_after_ddl(sql, &m.context, crate::masking::UnseenDdl::Own)
            .map_err(|_| self.catalog_refusal_text(message))
    }

    /// The SQLSTATE of a Query's or Parse's refusal: the catalog's for the
    /// refusal of a statement that needed the snapshot that could not be
    /// read ([`Self::plan_without_catalog`]), else [`REFUSED`] (red-team
    /// finding: a guardrail's refusal meanwhile, `SET search_path` say,
    /// came with the catalog's 55P03, which a driver may take for "try
    /// again").
    pub(super) fn refusal_code(&self, planned: &Planned) -> &'static str {
        match (self.catalog_unreadable.as_deref(), planned) {
            (Some((code, message)), Err(refusal))
                if *refusal == self.catalog_refusal_text(message) =>
            {
                code
            }
            _ => REFUSED,
        }
    }

    /// The refusal of a statement that runs (`EXECUTE`) a SQL-level
    /// prepared statement judged against an older catalog snapshot, or
    /// one masking cannot name; `None` when there is none, or nothing is
    /// outdated (the usual case: no parse).
    pub(super) fn outdated_execute(&self, sql: &[u8]) -> Option<String> {
        let m = self.masking.as_ref()?;
        // The keyword is spelled out in any statement that runs one (SQL
        // keywords have no escapes): most texts need no parse.
        if m.outdated_prepared.is_empty()
            || !sql.windows(7).any(|w| w.eq_ignore_ascii_case(b"execute"))
        {
            return None;
        }
        let outdated = |names: &[String]| {
            names
                .iter()
                .find(|n| m.outdated_prepared.contains(*n) || !self.context.prepared.contains(*n))
                .cloned()
        };
        let name = match std::str::from_utf8(sql).ok().and_then(|t| {
            m.ctx
                .rules()
                .masker
                .executed_statements(Dialect::Postgres, t)
        }) {
            Some(names) => outdated(&names)?,
            None => String::new(),
        };
        Some(format!(
            "airlock: blocked by rule {}: EXECUTE {name}: the statement was prepared (SQL PREPARE) before the catalog changed, and masking cannot tell what it returns now: DEALLOCATE it and PREPARE it again",
            crate::masking::lineage::UNANALYZABLE
        ))
    }

    /// The refusal of a statement that reads rows by name (SQL `EXECUTE
    /// s`, `FETCH ... FROM p`) from a statement or portal made through the
    /// protocol whose masking plan masks columns (see
    /// [`crate::masking::by_name`]); `None` when it reads none (the usual
    /// case: its plans are not opaque, and nothing is parsed).
    pub(super) fn masked_by_name(
        &self,
        sql: &[u8],
        plans: &Plans<StatementPlan>,
    ) -> Option<String> {
        let m = self.masking.as_ref()?;
        if !reads_by_name(plans, sql) {
            return None;
        }
        Self::masked_read(m, sql)
    }

    /// [`Self::masked_by_name`] for a statement known to read by name.
    pub(super) fn masked_read(m: &ClientMasking, sql: &[u8]) -> Option<String> {
        let reads = std::str::from_utf8(sql)
            .ok()
            .and_then(|t| m.ctx.rules().masker.reads_by_name(Dialect::Postgres, t));
        let Some(reads) = reads else {
            return Some(format!(
                "airlock: blocked by rule {}: masking cannot tell what this statement reads by name",
                crate::masking::lineage::UNANALYZABLE
            ));
        };
        let read = reads.iter().find(|r| m.book.guards(r))?;
        let (what, use_instead) = match read {
            ReadByName::Statement(_) => ("EXECUTE", "Bind and Execute"),
            ReadByName::Portal(_) => ("FETCH", "Execute"),
        };
        Some(format!(
            "airlock: blocked by rule {}: {what} {}: it names a statement or portal prepared through the protocol that reads masked data, and rows read by name cannot be masked: use the protocol's {use_instead}",
            crate::masking::lineage::UNANALYZABLE,
            read.name()
        ))
    }

    /// Before an Execute of `portal` whose statement reads rows by name:
    /// what the names are bound to now must not be masked (they may have
    /// been bound again since its Parse). `Err`: the refusal message.
    ///
    /// Also refused: an Execute of rows that the client had neither the
    /// portal nor its statement described (see
    /// [`super::super::masking::PlanBook::undescribed_rows`]). Masking
    /// checks each column against the RowDescription (which relation the
    /// server says it comes from; a relation newer than the catalog
    /// snapshot is redacted) and sees none then. Every driver describes
    /// what it executes; a client that does not would read a view created
    /// on the server behind airlock's back in clear (red-team finding).
    pub(super) fn execute_by_name_check(&self, portal: &[u8]) -> Result<(), String> {
        let Some(m) = &self.masking else {
            return Ok(());
        };
        if m.book.undescribed_rows(portal) {
            return Err(format!(
                "airlock: blocked by rule builtin.unknown-source: masking needs the server's description of the rows of portal \"{}\": send Describe (of the portal, or of its statement) before Execute, as drivers do",
                String::from_utf8_lossy(portal)
            ));
        }
        match m.book.portal_reads_by_name(portal) {
            Some(sql) => Self::masked_read(m, &sql).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Works out [`Self::restricted`] and [`Self::beside_ddl`] for the
    /// statement at hand.
    pub(super) fn work_out_restricted(&mut self) {
        let Some(m) = self.masking.as_ref() else {
            return;
        };
        self.restricted = m.fence.restricted(&self.shared.fence);
        // Another session's DDL, unsettled: as `ServerSide::suspect`
        // counts it for results (red-team finding: `INSERT INTO loot
        // SELECT id, name FROM w`, planned against `w` = `name`, waited
        // for the lock of another session's `BEGIN; CREATE OR REPLACE VIEW
        // w AS SELECT id, phone AS name ...` and, once that committed,
        // copied phones into loot; a write has no result to refuse).
        self.beside_ddl =
            m.ctx.generation().unsettled() > u64::from(self.shared.fence.ddl_counted());
    }

    /// Before [`Self::work_out_restricted`] for a Query or Execute, which
    /// run statements: the request is published as in flight before the
    /// DDL count is read (see [`crate::masking::catalog::InFlight`]).
    pub(super) fn publish_checking(&self) {
        if let Some(m) = &self.masking {
            self.shared.fence.checking(m.fence.batch_request());
        }
    }

    /// Whose unseen DDL restricts the statement at hand (see
    /// [`Self::work_out_restricted`]).
    pub(super) fn unseen_ddl(&self) -> crate::masking::UnseenDdl {
        match self.restricted {
            true => crate::masking::UnseenDdl::Own,
            false => crate::masking::UnseenDdl::Others,
        }
    }

    /// Before a Bind or Execute while restricted: the statement's text
    /// (from `text`) must be one that may run in the transaction of DDL
    /// masking has not seen (see [`super::ddl_fence`]). One without a text
    /// (prepared by SQL PREPARE) is refused. `Err`: the refusal message.
    pub(super) fn after_ddl_check(
        &self,
        text: impl FnOnce(&PlanBook) -> Option<Arc<[u8]>>,
    ) -> Result<(), String> {
        let Some(m) = &self.masking else {
            return Ok(());
        };
        match (text(&m.book), self.unseen_ddl()) {
            (Some(sql), whose) => m.ctx.plan_after_ddl(&sql, &m.context, whose).map(|_| ()),
            (None, crate::masking::UnseenDdl::Own) => Err(format!(
                "airlock: blocked by rule {}: while masking applies, only transaction and session statements may follow DDL until its transaction ends, and airlock does not know what this statement runs: COMMIT or ROLLBACK first",
                crate::masking::lineage::UNANALYZABLE
            )),
            (None, crate::masking::UnseenDdl::Others) => Err(format!(
                "airlock: blocked by rule {}: while masking applies, only transaction and session statements run while another session's DDL is in a transaction that has not ended, and airlock does not know what this statement runs: run it again once that transaction has ended",
                crate::masking::lineage::UNANALYZABLE
            )),
        }
    }

    /// Before a Bind of prepared statement `name`: when its masking plan
    /// was made against an older catalog snapshot, plans its text again
    /// against the current one (the server plans it again too, and a view
    /// it reads may now compute something else). `Err`: the refusal
    /// message of that plan.
    pub(super) fn replan_statement(&mut self, name: &[u8]) -> Result<(), String> {
        let Some(m) = &mut self.masking else {
            return Ok(());
        };
        let at = m.ctx.plans_at();
        let Some(sql) = m.book.statement_outdated(name, at) else {
            return Ok(());
        };
        let plan = m.ctx.plan(&sql, &Shape::of(&sql), &m.context)?;
        m.book
            .statement_replanned(name, plan.first().cloned().flatten(), at);
        Ok(())
    }

    /// Before an Execute of `portal`: likewise, for a portal bound before
    /// the catalog changed.
    pub(super) fn replan_portal(&mut self, portal: &[u8]) -> Result<(), String> {
        let Some(m) = &mut self.masking else {
            return Ok(());
        };
        let at = m.ctx.plans_at();
        let Some(sql) = m.book.portal_outdated(portal, at) else {
            return Ok(());
        };
        let plan = m.ctx.plan(&sql, &Shape::of(&sql), &m.context)?;
        m.book
            .portal_replanned(portal, plan.first().cloned().flatten(), at);
        Ok(())
    }
}
