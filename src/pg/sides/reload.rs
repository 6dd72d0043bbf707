//! A rules reload seen by an open session: statements, portals and
//! cursors judged under the old rules are judged again or refused.

use super::*;

impl<'a> ClientSide<'a> {
    /// The rules changed (a reload) since the session last looked.
    /// Masking rules now applying to a session that started without
    /// masking cannot be taken up mid-session: the session ends at its
    /// next request with nothing in flight (57P01), and its statements are
    /// refused until then (see [`Side::on_frame`]). Statements prepared
    /// with SQL `PREPARE` under the old
    /// rules are forgotten and their names used up, so `EXECUTE` of them is
    /// refused (masking sessions refuse them already, as outdated:
    /// a reload moves every catalog generation). Protocol-level statements
    /// are judged again at their next Bind ([`Self::judged_again`]).
    #[cold]
    pub(super) fn rules_changed(&mut self, version: u64, after_sync: bool) {
        self.seen_version = version;
        // Portals and cursors open now were made under the old rules.
        let idle = after_sync && self.shared.is_idle();
        if self.cursors.is_some() || (!idle && self.portals.names().next().is_some()) {
            let portals = self.portals.names().filter(|_| !idle);
            self.cursors
                .get_or_insert_with(Default::default)
                .rules_changed(portals);
        }
        if self.masking.is_some() {
            // A reload took masking away from this session, which went on
            // unmasked: what it made meanwhile (a temporary relation that
            // shadows a masked table, say) masking never saw. A later
            // reload that brings masking back ends it, as for a session
            // that started without (red-team finding: a temporary view
            // made while the masks were gone read the masked column in
            // clear once they were back).
            // (No masking rules at all: the session keeps the ones it has.)
            let principal = self.principal;
            match self.gates.masker() {
                Some(m) if !m.has_rules_for(principal) => self.masking_lapsed = true,
                Some(_) if self.masking_lapsed => self.masking_now_applies = true,
                _ => {}
            }
        } else {
            let principal = self.principal;
            // (And no longer, when a later reload took the mask away.)
            self.masking_now_applies = self
                .gates
                .masker()
                .is_some_and(|m| m.is_active_for(principal));
            // The server keeps them: their names may not run again.
            let stale = std::mem::take(&mut self.context.prepared);
            self.used_up
                .extend(stale.into_iter().map(|n| n.into_bytes().into_boxed_slice()));
            // And those it may keep (see `closed_unsurely`); a session that
            // lost track of them ends at its next request between
            // transactions, as one that masking now applies to does.
            self.used_up.append(&mut self.unsure);
            if self.unsure_overflow {
                self.masking_now_applies = true;
            }
        }
    }

    /// Why a session that a reload left unable to go on ends (see
    /// `masking_now_applies`).
    pub(super) fn reconnect_reason(&self) -> &'static str {
        if self.unsure_overflow {
            TOO_MANY_UNSURE
        } else {
            MASKING_NOW_APPLIES
        }
    }

    /// Before an Execute of `portal`, when the rules were reloaded in this
    /// session's life: refused when the portal was bound before the reload
    /// ([`Cursors::execute_refusal`]), or masking now applies.
    #[cold]
    pub(super) fn reload_check(&self, portal: &[u8]) -> Result<(), String> {
        if self.masking_now_applies {
            return Err(format!(
                "airlock: blocked by rule {RELOADED}: {}",
                self.reconnect_reason()
            ));
        }
        match self
            .cursors
            .as_ref()
            .and_then(|c| c.execute_refusal(portal))
        {
            Some(m) => Err(format!("airlock: blocked by rule {RELOADED}: {m}")),
            None => Ok(()),
        }
    }

    /// Before a message of the extended protocol or a Query, while the
    /// session tracks cursors: when no transaction is open, the portals
    /// and cursors without hold are gone ([`Cursors::transaction_ended`]).
    /// `after_sync`: no extended-protocol message was sent since the last
    /// Sync or Query (one in this batch may have opened a transaction).
    #[cold]
    pub(super) fn forget_ended_cursors(&mut self, after_sync: bool) {
        if after_sync && self.shared.is_idle() {
            if let Some(c) = &mut self.cursors {
                c.transaction_ended();
                if c.is_empty() {
                    self.cursors = None;
                }
            }
        }
    }

    /// Before a Bind of statement `name`: what the audit log records of
    /// its executions. When the rules changed since it was parsed it is
    /// judged again: a statement the new rules refuse is refused at every
    /// Bind. One whose text airlock did not keep (the unnamed statement,
    /// without audit or masking) is refused: Parse it again.
    /// Also what the portal's execution prepares (a SQL `PREPARE` sent
    /// through Parse).
    #[inline]
    pub(super) fn judged_again(&mut self, name: &[u8]) -> Result<Bound, String> {
        match self.statements.get(name) {
            // Vouched for by a SQL PREPARE of that name.
            None if !self.masking_now_applies => Ok(Bound::default()),
            Some(v)
                if v.version == self.seen_version
                    && v.links == self.context.foreign_keys_id()
                    && !self.masking_now_applies =>
            {
                Ok(Bound {
                    judged: v.judged.clone(),
                    prepares: v.prepares.clone(),
                })
            }
            _ => self.judge_again(name),
        }
    }

    /// [`Self::judged_again`] when the rules changed.
    #[cold]
    pub(super) fn judge_again(&mut self, name: &[u8]) -> Result<Bound, String> {
        if self.masking_now_applies {
            return Err(format!(
                "airlock: blocked by rule {RELOADED}: {}",
                self.reconnect_reason()
            ));
        }
        let Some(vetted) = self.statements.get(name) else {
            return Ok(Bound::default());
        };
        let version = self.seen_version;
        let links = self.context.foreign_keys_id();
        let sql = vetted
            .sql
            .clone()
            .or_else(|| vetted.judged.as_ref().map(|j| Arc::from(j.sql.as_bytes())))
            .or_else(|| {
                self.masking
                    .as_ref()
                    .and_then(|m| m.book.statement_sql(name))
            });
        let Some(sql) = sql else {
            return Err(format!(
                "airlock: blocked by rule {RELOADED}: the rules (or the tables' foreign keys) changed since prepared statement \"{}\" was parsed: Parse it again",
                String::from_utf8_lossy(name)
            ));
        };
        // A FETCH parsed before the reload of a cursor open at it (review
        // finding: only Query and Parse texts were checked).
        if let Some(m) = self.cursors.as_ref().and_then(|c| c.fetch_refusal(&sql)) {
            return Err(format!("airlock: blocked by rule {RELOADED}: {m}"));
        }
        let gate = Arc::clone(self.gates.gate());
        let request = Request {
            dialect: Dialect::Postgres,
            source: Source::Parse,
            sql: &sql,
            session: &self.context,
        };
        let judgement = gate.judge(self.principal, &request);
        match judgement.enforcing_builtins(self.masking.is_some()).decision {
            Decision::Allow => Ok(self
                .statements
                .get_mut(name)
                .map(|v| {
                    v.version = version;
                    v.links = links;
                    Bound {
                        judged: v.judged.clone(),
                        prepares: v.prepares.clone(),
                    }
                })
                .unwrap_or_default()),
            Decision::Block { rule, message } => {
                Err(format!("airlock: blocked by rule {rule}: {message}"))
            }
            // Held only at a Parse, where the client waits for it.
            Decision::RequireApproval { rule, message } => Err(format!(
                "airlock: blocked by rule {rule}: {message}; the rules (or the tables' foreign keys) changed since prepared statement \"{}\" was parsed, and they hold it for approval: Parse it again to ask",
                String::from_utf8_lossy(name)
            )),
        }
    }

    /// After the Bind of statement `name`: a statement a human approved
    /// (a held Parse) runs once, as an approved Query does. Its first Bind
    /// uses the approval up; later ones are refused as unvetted (Parse it
    /// again to ask again). Without this, one approval of `... WHERE id =
    /// $1` ran with every id the agent bound afterwards.
    ///
    /// Forgetting the statement is not enough: the server still holds it,
    /// so a Parse of the same name that the server refuses (42P05), or
    /// skips after an error, or a SQL `PREPARE` of that name, would vouch
    /// for it again. Its name stays used up until the server has surely
    /// dropped it.
    pub(super) fn bind_once(&mut self, name: &[u8]) {
        if let Some(at) = self.approved_once.iter().position(|n| **n == *name) {
            let name = self.approved_once.swap_remove(at);
            self.statements.remove(&name);
            self.used_up.push(name);
        }
    }

    /// A Parse of the unnamed statement, or a Close of statement `name`,
    /// is being forwarded: when the server surely carries it out (nothing
    /// in flight, no message since the last Sync that an error could make
    /// it skip, no failed transaction), the used-up statement of that name
    /// is gone from the server.
    pub(super) fn drop_used_up(&mut self, name: &[u8], after_sync: bool) {
        if self.surely_carried_out(after_sync) {
            self.used_up.retain(|n| **n != *name);
        }
    }

    /// Records the Query or Parse a session ended at because masking now
    /// applies to it (it did not run), so that the log says why.
    pub(super) fn record_ended_at(&self, tag: u8, body: &[u8]) {
        let sql = match tag {
            fe::QUERY => Query::decode(body).ok().map(|q| q.sql),
            _ => Parse::decode(body).ok().map(|p| p.sql),
        };
        if let Some(sql) = sql {
            let note = Note {
                decision: AuditDecision::Block,
                rule: Some(RELOADED.to_owned()),
                reason: Some(format!(
                    "{} (the session was ended)",
                    self.reconnect_reason()
                )),
                masked: None,
            };
            let _ = self.record(sql, note, Err::<(), _>(String::new()));
        }
    }
}
