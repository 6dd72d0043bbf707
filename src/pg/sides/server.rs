//! [`ServerSide`] (server → client): sentinel errors swapped for
//! airlock's own, the per-statement row limit, masking of rows, errors and
//! notifications, and ReadyForQuery tracking (idle timeout, shutdown).

use super::*;

/// Server → client.
pub struct ServerSide<'a> {
    pub shared: &'a Shared,
    pub shutdown: watch::Receiver<bool>,
    /// Rows allowed per statement result.
    pub max_rows: Option<u64>,
    rows: u64,
    /// A result went over `max_rows`: drop messages up to ReadyForQuery.
    truncating: bool,
    /// Masking of rows, errors and notifications; `None` when nothing is
    /// masked for this principal.
    masking: Option<RowMasking>,
    /// Told about DDL, which makes the target's masking catalog stale
    /// (for every session, see [`crate::masking::catalog`]).
    proxy: &'a Proxy,
    target: &'a str,
    /// Records allowed statements when they have run; `None` without an
    /// audit log.
    audit: Option<ReplyAudit<'a>>,
    /// Requests answered, as last told to the client side (masking
    /// sessions, see [`super::ddl_fence`]).
    answered: u64,
    /// Strip data values from errors that quote them (see
    /// [`crate::masking::error_values`]): masking or denied columns
    /// protect this session's data.
    withhold_values: bool,
    /// ParseComplete, BindComplete and CloseComplete of the request in
    /// progress (masking sessions, see [`super::book_sync`]).
    completions: u32,
}

impl<'a> ServerSide<'a> {
    pub fn new(
        shared: &'a Shared,
        proxy: &'a Proxy,
        target: &'a str,
        max_rows: Option<u64>,
        masking: Option<RowMasking>,
    ) -> Self {
        ServerSide {
            shared,
            shutdown: proxy.shutdown.clone(),
            max_rows,
            rows: 0,
            truncating: false,
            masking,
            proxy,
            target,
            audit: None,
            answered: 0,
            withhold_values: false,
            completions: 0,
        }
    }

    /// Strips the values errors and notices may quote (see
    /// [`crate::masking::error_values`]).
    pub fn withholding_values(mut self, on: bool) -> Self {
        self.withhold_values = on;
        self
    }

    /// Follows the replies for the audit log (see
    /// [`ClientSide::reply_audit`]).
    pub fn with_audit(mut self, audit: Option<ReplyAudit<'a>>) -> Self {
        self.audit = audit;
        self
    }

    /// The target's catalog generation (looked up only when DDL is seen:
    /// masking sessions have it at hand).
    fn generation(&self) -> crate::masking::Generation {
        match &self.masking {
            Some(m) => m.ctx.generation().clone(),
            None => self.proxy.catalog_generations.of(self.target),
        }
    }

    /// Requests answered, as the reply tracker counts them; without
    /// masking (no tracker, and no DDL counted ahead by the client side),
    /// every request.
    fn requests_done(&self) -> u64 {
        self.masking
            .as_ref()
            .map_or(u64::MAX, |m| m.requests_done())
    }

    /// Whether the result starting to stream (at its first DataRow) may
    /// have been computed from definitions its masking plan did not know
    /// (see [`super::ddl_fence`], "Other sessions' DDL"): another session
    /// of the target has DDL whose transaction airlock has not seen end
    /// (the statement may have waited for its lock), the catalog moved
    /// since the snapshot in use was loaded, or the request was planned
    /// against an older snapshot. A few atomic loads, once per result.
    fn suspect(&self, m: &RowMasking) -> bool {
        let fence = &self.shared.fence;
        let generation = m.ctx.generation();
        // Before the generation: DDL is settled only after it moved.
        let unsettled = generation.unsettled();
        if unsettled > u64::from(fence.ddl_counted()) {
            return true;
        }
        let (before, at) = fence.plan_generation();
        generation.current() != at || m.requests_done() < before
    }

    /// An error ends the request in progress: the server skips its
    /// messages up to Sync. Tells a masking client side how many of its
    /// Parse, Bind and Close messages were carried out (see
    /// [`super::book_sync`]).
    fn report_skips(&self) {
        if self.masking.is_some() {
            self.shared
                .skips
                .report(self.requests_done().saturating_add(1), self.completions);
        }
    }

    /// The error that replaces a result [`Self::suspect`] refuses.
    fn schema_race_error(&self) -> Bytes {
        let mut out = BytesMut::new();
        backend::error_response(
            &mut out,
            Severity::Error,
            SCHEMA_RACE,
            &format!(
                "airlock: blocked by rule {}: the schema changed (or the rules were reloaded), or is being changed in another session's open transaction, while this statement ran; masking cannot vouch for its result: run it again",
                crate::masking::lineage::UNANALYZABLE
            ),
        );
        out.freeze()
    }

    /// A row counted in `self.rows`: passed (or masked), or, past the
    /// policy's `max_rows`, the error that ends the result (the rest up to
    /// ReadyForQuery is dropped).
    /// Inlined: every DataRow takes it.
    #[inline]
    fn within_max_rows(&mut self, masked: Option<Verdict>) -> Verdict {
        match self.max_rows {
            Some(max) if self.rows > max => self.stop_at_max_rows(max),
            _ => masked.unwrap_or(Verdict::Pass),
        }
    }

    #[cold]
    fn stop_at_max_rows(&mut self, max: u64) -> Verdict {
        self.truncating = true;
        Verdict::Replace(self.max_rows_error(max))
    }

    fn max_rows_error(&self, max: u64) -> Bytes {
        let mut out = BytesMut::new();
        backend::error_response(
            &mut out,
            Severity::Error,
            "54000",
            &format!(
                "airlock: result stopped after {max} rows (policy max_rows); add a LIMIT or narrow the query"
            ),
        );
        out.freeze()
    }
}

impl Drop for ServerSide<'_> {
    /// A session that ends after DDL but before its idle ReadyForQuery
    /// (committed or not, who knows) still makes the catalog stale, and
    /// its DDL no longer counts as unsettled (once the generation moved).
    fn drop(&mut self) {
        let fence = &self.shared.fence;
        fence.leave();
        if fence.ddl_open() || fence.ddl_counted() {
            let generation = self.generation();
            generation.bump();
            fence.settle_ddl_at_end(&generation);
        }
    }
}

impl Side for ServerSide<'_> {
    fn streamable(&self, tag: u8) -> bool {
        match tag {
            // Rows are seen whole when a row limit or masking applies: a
            // streamed row would pass unmasked and uncounted.
            backend::DATA_ROW => self.max_rows.is_none() && self.masking.is_none(),
            // COPY ... TO STDOUT: one row per CopyData, counted under a
            // row limit.
            fe::COPY_DATA => self.max_rows.is_none(),
            _ => false,
        }
    }

    fn on_streamed(&mut self, tag: u8) {
        if let Some(a) = &mut self.audit {
            // DataRow or CopyData: neither needs its body.
            if let Err(e) = a.on_message(tag, &[]) {
                tracing::warn!(error = %e, "audit follower out of step");
            }
        }
    }

    fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        let tag = frame[0];
        if let Some(a) = &mut self.audit {
            a.on_message(tag, &frame[5..])
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
        }
        // Masking follows every reply, so it sees the stream in order.
        let masked = match &mut self.masking {
            Some(m) => Some(m.on_frame(frame)?),
            None => None,
        };
        let or_masked = |m: Option<Verdict>| m.unwrap_or(Verdict::Pass);
        match tag {
            backend::READY_FOR_QUERY => {
                let status = backend::parse_ready_for_query(&frame[5..]).ok_or_else(|| {
                    SessionError::Protocol("malformed ReadyForQuery from server".into())
                })?;
                self.shared.status.store(status, Ordering::Release);
                let fence = &self.shared.fence;
                if status == b'I' && (fence.ddl_open() || fence.ddl_counted()) {
                    let done = self.requests_done();
                    let settles = fence.ddl_counted() && fence.settle_upto() <= done;
                    if fence.ddl_open() || settles {
                        // Invalidated before the flag is cleared and the
                        // DDL settled, so a client side that sees it
                        // cleared, or another session that sees it settled,
                        // sees the catalog stale.
                        let generation = self.generation();
                        generation.bump();
                        fence.set_ddl_open(false);
                        fence.settle_ddl(&generation, done);
                    }
                }
                if let Some(m) = &self.masking {
                    // After the DDL state above (see `ddl_fence`). Requests
                    // are answered at ReadyForQuery: a Sync the server
                    // ignored during COPY is counted before the
                    // ReadyForQuery that always follows it.
                    let done = m.requests_done();
                    if done != self.answered {
                        self.answered = done;
                        self.shared.fence.answered(done);
                    }
                }
                self.shared.ready_received();
                self.rows = 0;
                self.truncating = false;
                self.completions = 0;
                if *self.shutdown.borrow() && self.shared.is_idle() {
                    return Ok(Verdict::PassAndStop);
                }
                Ok(Verdict::Pass)
            }
            // What the server carried out of the request's Parse, Bind and
            // Close messages, for a masking client side's books (see
            // `book_sync`): counted, and reported at an error, even while
            // the rest of a result is dropped.
            b'1' | b'2' | b'3' => {
                self.completions = self.completions.saturating_add(1);
                match self.truncating {
                    true => Ok(Verdict::Replace(Bytes::new())),
                    false => Ok(or_masked(masked)),
                }
            }
            backend::ERROR_RESPONSE if self.truncating => {
                self.report_skips();
                Ok(Verdict::Replace(Bytes::new()))
            }
            _ if self.truncating => Ok(Verdict::Replace(Bytes::new())),
            backend::DATA_ROW => {
                self.rows += 1;
                if self.rows == 1 && self.masking.as_ref().is_some_and(|m| self.suspect(m)) {
                    // Nothing of the result reaches the client: the rest
                    // up to ReadyForQuery is dropped, as for max_rows.
                    tracing::warn!("result refused: the schema changed, or is being changed in another session, while the statement ran");
                    self.truncating = true;
                    return Ok(Verdict::Replace(self.schema_race_error()));
                }
                Ok(self.within_max_rows(masked))
            }
            // A row of COPY ... TO STDOUT (seen whole only under a row
            // limit: see `streamable`).
            fe::COPY_DATA => {
                self.rows += 1;
                Ok(self.within_max_rows(masked))
            }
            backend::ERROR_RESPONSE => {
                self.report_skips();
                self.rows = 0;
                if self.shared.refusals.any_pending() {
                    if let Some(error) = self.shared.refusals.replacement(&frame[5..]) {
                        return Ok(Verdict::Replace(error));
                    }
                }
                let verdict = or_masked(masked);
                Ok(match self.withhold_values {
                    true => withhold_values(tag, frame, verdict),
                    false => verdict,
                })
            }
            backend::NOTICE_RESPONSE if self.withhold_values => {
                Ok(withhold_values(tag, frame, or_masked(masked)))
            }
            backend::PARAMETER_STATUS => {
                if let Some(hazard) = super::super::lexer_guard::hazard(&frame[5..]) {
                    // Statements pipelined behind the one that changed it
                    // were judged as airlock reads SQL, and the server reads
                    // them otherwise: nothing it sends from here on is
                    // relayed, and the session ends (see `lexer_guard`).
                    tracing::error!(%hazard, "the server now reads SQL differently from airlock; ending the session");
                    let message = super::super::lexer_guard::refusal(&hazard);
                    let _ = self.shared.lexer_hazard.set(hazard);
                    return Err(SessionError::Upstream {
                        code: REFUSED,
                        message: format!(
                            "airlock: blocked by rule {}: {message}",
                            crate::policy::builtin::ids::LEXER_SETTING
                        ),
                    });
                }
                Ok(or_masked(masked))
            }
            // CommandComplete, EmptyQueryResponse, PortalSuspended end a result.
            backend::COMMAND_COMPLETE | b'I' | b's' => {
                self.rows = 0;
                if tag == backend::COMMAND_COMPLETE && is_ddl(&frame[5..]) {
                    // Whoever ran it, every session's snapshot of the
                    // target goes stale once it is committed or rolled
                    // back (at the next idle ReadyForQuery): only then can
                    // a reload see it, and only then has it released its
                    // locks, on which a reload would wait. Until then a
                    // masking session plans only transaction and session
                    // statements (see `ddl_fence`).
                    self.shared.fence.set_ddl_open(true);
                    // Unsettled until then (counted already when a masking
                    // session's client side forwarded it): masked results
                    // of other sessions are refused meanwhile.
                    let upto = self.requests_done().saturating_add(1);
                    self.shared.fence.count_ddl(&self.generation(), upto);
                }
                Ok(Verdict::Pass)
            }
            _ => Ok(or_masked(masked)),
        }
    }
}

/// An ErrorResponse or NoticeResponse (`frame`, or what masking already
/// made of it) without the values it may quote (see
/// [`crate::masking::error_values`]): the quoted part of the message, and
/// the detail and context fields.
fn withhold_values(tag: u8, frame: &[u8], verdict: Verdict) -> Verdict {
    use crate::masking::error_values::{pg_may_quote_data, withhold_pg_text, WITHHELD};
    let body = match &verdict {
        Verdict::Replace(bytes) if bytes.len() >= 5 => &bytes[5..],
        Verdict::Replace(_) => return verdict,
        _ => &frame[5..],
    };
    let sqlstate = backend::error_fields(body).find(|(c, _)| *c == b'C');
    let state = sqlstate.map_or(&b""[..], |(_, v)| v);
    if !pg_may_quote_data(state) {
        return verdict;
    }
    let mut out = BytesMut::with_capacity(body.len() + 5);
    airlock_protocol::pg::frame::encode(tag, &mut out, |b| {
        for (code, value) in backend::error_fields(body) {
            b.put_u8(code);
            match code {
                // The message and hint lose what they quote, their
                // numbers and what follows a colon; the detail, context
                // and internal query go whole.
                b'M' | b'H' => match withhold_pg_text(value, state) {
                    Some(v) => b.put_slice(&v),
                    None => b.put_slice(value),
                },
                b'D' | b'W' | b'q' => b.put_slice(WITHHELD),
                _ => b.put_slice(value),
            }
            b.put_u8(0);
        }
        b.put_u8(0);
    });
    Verdict::Replace(out.freeze())
}

/// Whether a CommandComplete tag reports DDL (which can change what `*`
/// expands to or what a view reads).
///
/// (`SELECT INTO` and `CREATE TABLE AS` report `SELECT n`: the table they
/// make is newer than any snapshot, and its columns are redacted as of an
/// unknown source until the next reload.)
fn is_ddl(tag: &[u8]) -> bool {
    [&b"CREATE"[..], b"ALTER", b"DROP"]
        .iter()
        .any(|p| tag.starts_with(p))
}
