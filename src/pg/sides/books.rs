//! The books of prepared statements and portals kept in step with what
//! the server carried out (see [`super::super::book_sync`]).

use super::*;

impl<'a> ClientSide<'a> {
    /// Undoes, in the books, what the server did not carry out of the
    /// answered requests' Parse, Bind and Close messages (see
    /// [`super::book_sync`]). Nothing to do, and no atomic access, when no
    /// such message is awaiting its answer.
    pub(super) fn settle_books(&mut self) {
        // Once per request, at its first Query, Parse, Bind, Execute or
        // Close: that frame waited for the answer to the request before
        // (see `on_frame`).
        if self
            .masking
            .as_ref()
            .is_some_and(|m| m.journal.needs_settling(m.fence.batch_request()))
        {
            self.settle_answered();
        }
    }

    /// [`Self::settle_books`], once there is something to settle.
    #[inline(never)]
    pub(super) fn settle_answered(&mut self) {
        let shared = self.shared;
        let Some(m) = &mut self.masking else {
            return;
        };
        m.journal.settled_for(m.fence.batch_request());
        let settled = m
            .journal
            .settle(&shared.skips, shared.fence.answered_upto());
        if !settled.reprepared.is_empty() {
            m.reprepared(settled.reprepared);
        }
        // Not made, or not made by this PREPARE: EXECUTE and Bind of the
        // name are refused until it is prepared again.
        for name in &settled.revoked {
            self.context.prepared.remove(name);
        }
        for op in settled.undo {
            match op {
                // Not made: not bound or executed through airlock until
                // it is made again.
                Op::Parse(name) => {
                    self.statements.remove(&name);
                    m.book.closed_statement(&name);
                }
                Op::Bind(name) => {
                    self.portals.remove(&name);
                    m.book.portal_gone(&name);
                }
                // Not closed: the journal keeps the name taken.
                Op::CloseStatement(_) => {}
                Op::ClosePortal(name) => m.book.portal_gone(&name),
                Op::Reprepare { .. } | Op::SqlPrepare(_) => {}
            }
        }
        if m.book.has_gone() && shared.is_idle() {
            m.book.forget_gone();
        }
    }

    /// Whether a Close, or a Parse of the unnamed statement, forwarded now
    /// is surely carried out by the server: nothing in flight, no message
    /// since the last Sync that an error could make it skip, no failed
    /// transaction. (`after_sync`: as before this message.)
    pub(super) fn surely_carried_out(&self, after_sync: bool) -> bool {
        after_sync
            && self.shared.pending.load(Ordering::Acquire) == 0
            && self.shared.status.load(Ordering::Acquire) != b'E'
    }

    /// Sessions without masking (a masking session follows the server's
    /// answers instead, see [`super::super::book_sync`]): statement `name`
    /// was closed (Close, SQL `DEALLOCATE` or `DISCARD ALL`), or replaced
    /// (a Parse of the unnamed statement), by a message the server may not
    /// carry out. It may still hold a statement of the name, judged under
    /// the rules of its day, while airlock takes the name for a later
    /// Parse's text. One judged under older rules than those in force is
    /// used up at once: refused at every Bind until a Close the server
    /// surely carries out (see [`Self::drop_used_up`]); any other is used
    /// up at the next reload ([`Self::rules_changed`]). Red-team finding:
    /// a Close skipped after an error, then a Parse of the name the server
    /// refused (42P05), made airlock vouch for the statement prepared
    /// before a reload denied its column.
    pub(super) fn closed_unsurely(&mut self, name: &[u8]) {
        if self.masking.is_some() || self.unsure.iter().any(|n| **n == *name) {
            return;
        }
        let stale = self
            .statements
            .get(name)
            .is_some_and(|v| v.version != self.seen_version);
        if stale {
            self.used_up.push(name.into());
        } else if self.unsure.len() < MAX_UNSURE {
            self.unsure.push(name.into());
        } else {
            // Lost track: the next reload ends the session instead.
            self.unsure_overflow = true;
            self.unsure = Vec::new();
        }
    }

    /// A Close of statement `name`, or a Parse of the unnamed statement
    /// (`name` empty), is being forwarded: for sessions without masking,
    /// see [`Self::closed_unsurely`].
    #[inline]
    pub(super) fn closing(&mut self, name: &[u8], after_sync: bool) {
        if self.masking.is_some() {
            return;
        }
        if self.surely_carried_out(after_sync) {
            if !self.unsure.is_empty() {
                self.unsure.retain(|n| **n != *name);
            }
        } else {
            self.closed_unsurely(name);
        }
    }

    /// Refuses a Parse of a statement name the session has, as the server
    /// would refuse it: forwarded, the server would keep its statement
    /// while airlock planned the new one (see [`super::book_sync`]).
    #[cold]
    pub(super) fn refuse_taken(&self, name: &[u8]) -> Verdict {
        self.follow(|| Expect::Completion);
        let msg = format!(
            "prepared statement \"{}\" already exists (airlock: a statement of that name was prepared in this session and not closed)",
            String::from_utf8_lossy(name)
        );
        Verdict::Replace(self.shared.refusals.parse(name, "42P05", &msg))
    }

    /// Whether a Parse of statement `name` would be refused by the server
    /// because the session has one of that name. Refused by airlock:
    /// forwarded, the server would keep its statement while airlock took
    /// the new text for it (and judged that text again after a reload).
    /// Masking sessions' books follow the server's (see
    /// [`super::book_sync`]); without masking, a name whose Parse the
    /// server refused stays taken until it is closed.
    pub(super) fn statement_taken(&self, name: &[u8]) -> bool {
        !name.is_empty()
            && (self.statements.contains_key(name)
                || self.masking.as_ref().is_some_and(|m| m.journal.kept(name))
                || self.sql_prepared(name))
    }

    /// Whether `name` is a statement the session prepared with SQL
    /// `PREPARE`: the protocol's statements share its namespace, so the
    /// server refuses a Parse of it (red-team finding: in a session
    /// without masking, which does not follow the server's answers,
    /// airlock took such a Parse for the name's new text, and its audit
    /// records named that text while the server ran the SQL statement).
    #[inline]
    fn sql_prepared(&self, name: &[u8]) -> bool {
        !self.context.prepared.is_empty()
            && std::str::from_utf8(name).is_ok_and(|n| self.context.prepared.contains(n))
    }

    /// The refusal of a statement that would prepare `new` more named
    /// statements when the session already holds as many as
    /// `limits.max_prepared_statements` allows (protocol Parses, SQL
    /// PREPAREs and used-up approved statements alike); `None` otherwise.
    pub(super) fn prepared_over_limit(&self, new: usize) -> Option<String> {
        if new == 0 {
            return None;
        }
        // Used-up names too: the server may still hold them (red-team
        // finding: under an approval window each new name's one Bind moved
        // it there, past the limit and into ever longer scans).
        let held = self.statements.named_len() + self.context.prepared.len() + self.used_up.len();
        self.proxy.config().limits.prepared_refusal(held + new - 1)
    }

    /// [`Self::prepared_over_limit`] for the names a statement's SQL
    /// PREPAREs make: checked when it is judged, and again when a Parse's
    /// runs (see [`Self::execute_prepares`]).
    pub(super) fn sql_prepare_over_limit(&self, prepared: &[String]) -> Option<String> {
        if prepared.is_empty() {
            return None;
        }
        let new = prepared
            .iter()
            .filter(|n| !self.context.prepared.contains(*n))
            .count();
        self.prepared_over_limit(new)
            .map(|m| format!("airlock: blocked by rule {PREPARED_LIMIT_RULE}: {m}"))
    }

    /// At the Execute of a portal bound from a SQL `PREPARE` sent through
    /// Parse: the names it makes are taken now, when it runs, as a simple
    /// Query's are when it is forwarded (and, in masking sessions, taken
    /// back when the request is answered with an error anywhere, see
    /// [`super::super::book_sync::Op::SqlPrepare`]). Not at its Parse:
    /// parsed, it makes nothing, and the server may refuse it when it
    /// runs and keep the statement it holds under the name (red-team
    /// finding: a `PREPARE` parsed but never executed was taken for its
    /// harmless text, and `EXECUTE` read the protocol statement the server
    /// kept, over masked data, in clear).
    pub(super) fn execute_prepares(&mut self, names: &[String]) {
        let effects = Effects {
            prepared: names.to_vec(),
            ..Effects::default()
        };
        self.apply(&effects, Source::Query);
    }

    /// Whether a Bind names a SQL-level prepared statement (not one of an
    /// allowed Parse) judged against an older catalog snapshot.
    pub(super) fn bind_outdated(&self, statement: &[u8]) -> bool {
        self.masking.as_ref().is_some_and(|m| {
            !m.outdated_prepared.is_empty()
                && m.book.statement_sql(statement).is_none()
                && std::str::from_utf8(statement).is_ok_and(|n| m.outdated_prepared.contains(n))
        })
    }

    #[inline]
    pub(super) fn statement_vetted(&mut self, name: &[u8]) -> bool {
        !self.gates.gate().vets_prepared()
            || self.statements.contains_key(name)
            || self.sql_prepared(name)
    }
}
