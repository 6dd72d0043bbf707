//! The two directions of a Postgres session as [`Side`]s of the relay.
//!
//! * [`ClientSide`] (client → server): every statement (Query, Parse,
//!   FunctionCall) passes the policy gate before it is forwarded. It tracks
//!   which prepared statements and portals came from statements airlock
//!   allowed, and refuses Bind and Execute of anything else. Refusals are
//!   sent upstream as sentinels (see [`super::refusal`]). Unknown message
//!   types end the session, as Postgres itself does. A statement that a
//!   `require_approval` rule matches is held ([`Verdict::Hold`]) while
//!   [`crate::approvals`] waits for a human; [`Side::resolve`] then lets it
//!   through as if allowed, or refuses it. Without an admin listener
//!   nobody could approve, so it is refused at once. A CancelRequest for
//!   the session ([`super::cancel`]) withdraws a held statement, which is
//!   then refused with 57014 as Postgres refuses a cancelled one.
//! * Audit ([`super::audit_hook`]): refused and held statements are recorded
//!   when judged; allowed ones are followed to their end through the reply
//!   tracker and recorded there with rows and duration, once per simple
//!   Query and once per Execute.
//! * [`ServerSide`] (server → client): swaps sentinel errors for airlock's
//!   own, enforces the per-statement row limit, and tracks ReadyForQuery to
//!   know when the session is idle (idle timeout, graceful shutdown).
//!
//! Both share a [`Shared`].

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{oneshot, watch};

use airlock_protocol::pg::backend::{self, Severity};
use airlock_protocol::pg::frontend::{
    self as fe, Bind, Execute, FunctionCall, Parse, Query, Target,
};

use super::audit_hook::{AuditQueue, Judged, ReplyAudit, Run, SessionAudit};
use super::book_sync::{Journal, Op, Reprepared, SkipReports};
use super::cancel::HeldCancel;
use super::cursors::Cursors;
use super::ddl_fence::{Fence, FenceSignal};
use super::error::SessionError;
use super::masking::{MaskContext, PlanBook, Planned, RowMasking};
use super::named::Named;
use super::refusal::Refusals;
use super::relay::{Side, Stopped, Verdict};
use super::results::{Expect, Expectations, Plans};
use crate::approvals::{Hold, HoldRequest, Outcome, Ticket};
use crate::audit::AuditDecision;
use crate::masking::by_name::ReadByName;
use crate::masking::StatementPlan;
use crate::policy::builtin::ids;
use crate::policy::memo::Memo;
use crate::policy::shape::Shape;
use crate::policy::{Decision, Dialect, Effects, Principal, Request, SessionContext, Source};
use crate::proxy::{GateCache, Proxy};
use std::sync::Arc;

/// SQLSTATE of a refusal: insufficient_privilege.
const REFUSED: &str = "42501";
/// SQLSTATE of a result refused because the schema changed under it
/// (serialization_failure: run it again).
const SCHEMA_RACE: &str = "40001";

use crate::policy::builtin::ids::RULES_RELOADED as RELOADED;
const MASKING_NOW_APPLIES: &str = "the rules were reloaded and masking now applies to this identity; reconnect to have it applied";

/// State both directions see.
pub struct Shared {
    /// Requests sent upstream whose ReadyForQuery has not come back.
    pub pending: AtomicU32,
    /// Transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    pub status: AtomicU8,
    /// When the last ReadyForQuery went by ([`crate::metrics::now_ns`]).
    /// Written at every ReadyForQuery and read only by the idle-timeout
    /// check, so a query's round trip wakes nothing else.
    last_ready_ns: AtomicU64,
    pub refusals: Refusals,
    /// When `pending` last went from 0 to 1 ([`crate::metrics::now_ns`]),
    /// for the statement latency histogram.
    busy_since: AtomicU64,
    /// Set when the server reported a setting under which it reads SQL
    /// differently from airlock ([`super::lexer_guard`]): every later
    /// statement is refused.
    lexer_hazard: std::sync::OnceLock<String>,
    /// The session's DDL and the requests answered, for masking's fence
    /// (see [`super::ddl_fence`]).
    pub fence: FenceSignal,
    /// Parse, Bind and Close messages the server did not carry out (see
    /// [`super::book_sync`]).
    pub skips: SkipReports,
}

impl Shared {
    pub fn new(status: u8) -> Self {
        Shared {
            pending: AtomicU32::new(0),
            status: AtomicU8::new(status),
            last_ready_ns: AtomicU64::new(crate::metrics::now_ns()),
            refusals: Refusals::default(),
            busy_since: AtomicU64::new(0),
            lexer_hazard: std::sync::OnceLock::new(),
            fence: FenceSignal::default(),
            skips: SkipReports::default(),
        }
    }

    /// A request that the server answers with ReadyForQuery went upstream.
    fn request_sent(&self) {
        if self.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            self.busy_since
                .store(crate::metrics::now_ns(), Ordering::Relaxed);
        }
    }

    /// A ReadyForQuery came back: one request fewer in flight, and the
    /// start of an idle period (one clock read for both).
    fn ready_received(&self) {
        let now = crate::metrics::now_ns();
        let before = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            let since = self.busy_since.load(Ordering::Relaxed);
            if since != 0 && now >= since {
                crate::metrics::latency(Duration::from_nanos(now - since));
            }
        }
        self.last_ready_ns.store(now, Ordering::Release);
    }

    /// Nothing in flight and no open transaction.
    pub fn is_idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0 && self.status.load(Ordering::Acquire) == b'I'
    }

    /// When the current idle period (if the session is idle) began.
    fn idle_since(&self) -> Instant {
        crate::metrics::instant_at(self.last_ready_ns.load(Ordering::Acquire))
    }
}

/// How often a busy session re-checks whether it has gone idle.
const BUSY_RECHECK: Duration = Duration::from_secs(1);
/// How often a busy session re-checks once shutdown has begun.
const SHUTDOWN_RECHECK: Duration = Duration::from_millis(20);

/// Client → server.
pub struct ClientSide<'a> {
    pub shared: &'a Shared,
    pub proxy: &'a Proxy,
    /// The rules in force, looked up once per statement.
    gates: GateCache<'a>,
    pub principal: &'a Principal,
    pub idle_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub context: SessionContext,
    /// Protocol-level statement names ("" = unnamed) from allowed Parses,
    /// with what the audit log records of each execution and the rules
    /// they were judged under.
    statements: Named<Vetted>,
    /// Portals bound from allowed statements, likewise.
    portals: Named<Option<Arc<Judged>>>,
    /// Masking: plans per statement and portal, and what each request will
    /// produce (shared with the server side). `None` when nothing is masked
    /// for this principal.
    masking: Option<ClientMasking>,
    audit: Option<&'a SessionAudit>,
    /// What each request will produce, for the audit follower on the server
    /// side ([`ClientSide::reply_audit`]); `None` without an audit log.
    audit_expect: Option<Arc<AuditQueue>>,
    /// The (unused) result formats of an audit Execute expectation.
    no_formats: Arc<Vec<i16>>,
    /// The statement name of the audit follower's executions (it needs
    /// none), shared rather than allocated per Execute.
    no_statement: Arc<[u8]>,
    /// The session id, for approval requests.
    session_id: u64,
    /// The statement waiting for a human, between [`Verdict::Hold`] and
    /// [`Side::resolve`]. Boxed: rare, and large inline in every session.
    held: Option<Box<Held>>,
    /// Where a CancelRequest for this session finds a held statement.
    cancel: Option<Arc<HeldCancel>>,
    /// The last allowed statements the gate said may be reused, with
    /// their masking plans: a repeat skips the shared caches. The plans
    /// depend on nothing the memo does not compare because the session's
    /// [`MaskContext`] (masker and catalog snapshot) is fixed between
    /// catalog reloads, and [`ClientSide::refresh_catalog`] forgets the
    /// memo; whatever else ever replaces it must also forget the memo.
    memo: Memo<Plans<StatementPlan>>,
    /// A Query, Parse, Bind or Execute held while the catalog snapshot is
    /// reloaded (the target's catalog generation moved): judged against
    /// the fresh snapshot in [`Side::resolve`].
    refreshing: Option<Box<[u8]>>,
    /// The session's own DDL is in a transaction that has not ended (see
    /// [`super::ddl_fence`]): only transaction and session statements may
    /// run. Worked out for each Query, Parse, Bind and Execute.
    restricted: bool,
    /// Statements (Parse names) a human approved, not bound yet: each may
    /// be bound once ([`ClientSide::bind_once`]).
    approved_once: Vec<Box<[u8]>>,
    /// Approved statements that have had their one Bind and that the server
    /// may still hold: refused at every Bind until the server has surely
    /// dropped them ([`ClientSide::drop_used_up`]).
    used_up: Vec<Box<[u8]>>,
    /// Used-up names parsed again in the current batch (since the last
    /// Sync): a Bind after that Parse in the same batch is safe, as the
    /// server skips it too if it skips or refuses the Parse.
    lifted: Vec<Box<[u8]>>,
    /// The statement [`Self::decide`] just allowed was released by an
    /// approval window: a Parse so released runs once, as an approved one.
    window_released: bool,
    /// The version of the rules ([`crate::proxy::Loaded::version`]) the
    /// session last saw: a reload is noticed at the next statement.
    seen_version: u64,
    /// A reload made masking rules apply to this principal, whose session
    /// started without masking: every later statement is refused.
    masking_now_applies: bool,
    /// SQL cursors the session declared, and the portals and cursors open
    /// at a reload, which may not be read any more ([`Cursors`]). `None`
    /// while there are none (nearly every session).
    cursors: Option<Box<Cursors>>,
    /// The last message was CopyData: its run has its marker in the
    /// expectation queues ([`Expect::CopyData`]).
    in_copy_data: bool,
    /// No extended-protocol message was sent since the last Sync or Query:
    /// with nothing in flight, the server carries out the next message
    /// (it skips messages only after an error, up to the next Sync).
    after_sync: bool,
}

/// An allowed Parse: what the audit log records of its executions, the
/// version of the rules it was judged under, and its text when airlock
/// keeps it to judge it again after a reload (named statements; the
/// unnamed one's text comes from the audit record or the masking book).
struct Vetted {
    judged: Option<Arc<Judged>>,
    version: u64,
    sql: Option<Arc<[u8]>>,
}

/// A statement held for approval.
struct Held {
    ticket: Ticket,
    sql: Vec<u8>,
    rule: String,
    /// Applied if it is approved.
    effects: Effects,
    /// For a Parse: the statement name; `None` for a Query.
    parse_name: Option<Vec<u8>>,
    /// Fires when the client cancels the held statement.
    cancelled: Option<oneshot::Receiver<()>>,
}

/// Records a held statement as withdrawn when it is dropped: armed while
/// [`ClientSide::resolve_held`] waits, and forgotten once a decision came.
struct SessionGone<'s> {
    audit: Option<&'s SessionAudit>,
    sql: &'s [u8],
    rule: &'s str,
    id: u64,
}

impl Drop for SessionGone<'_> {
    fn drop(&mut self) {
        tracing::info!(
            request = self.id,
            "session ended while its statement was held: the request is withdrawn"
        );
        crate::metrics::statement(AuditDecision::Block);
        if let Some(audit) = self.audit {
            let reason = format!(
                "withdrawn: the session ended, the client disconnected or was terminated (request {})",
                self.id
            );
            // The session is ending: a record that fails has nobody to refuse.
            let _ = audit.statement(
                self.sql,
                AuditDecision::Block,
                Some(self.rule),
                Some(&reason),
                None,
            );
        }
    }
}

/// The outcome of [`ClientSide::decide`].
enum Decided {
    /// Plans (and, for an allowed statement, what to record when it has
    /// run), or the refusal message.
    Now(Planned, Option<Arc<Judged>>),
    /// Held for approval: the pump awaits [`Side::resolve`].
    Held,
}

/// What the audit log is told about a statement.
struct Note {
    decision: AuditDecision,
    rule: Option<String>,
    reason: Option<String>,
    /// Ids of the masking rules applied.
    masked: Option<String>,
}

impl Default for Note {
    fn default() -> Self {
        Note {
            decision: AuditDecision::Allow,
            rule: None,
            reason: None,
            masked: None,
        }
    }
}

/// The client side's part of masking.
pub struct ClientMasking {
    pub ctx: Arc<MaskContext>,
    pub expect: Arc<Expectations<StatementPlan>>,
    book: PlanBook,
    /// The Parse, Bind and Close messages forwarded and not yet answered,
    /// to undo what the server did not carry out (see
    /// [`super::book_sync`]).
    journal: Journal,
    /// Keeps plans behind the session's own DDL (see [`super::ddl_fence`]).
    fence: Fence,
    /// The database user airlock logged in as: what `$user` in the
    /// session's search_path names.
    upstream_user: String,
    /// The session context masking plans with: the session's search_path,
    /// with `$user` named (see [`super::masking::name_user_schema`]).
    context: SessionContext,
    /// SQL-level prepared statements (`PREPARE name AS ...`) judged
    /// against an older catalog snapshot. Masking plans `EXECUTE` as rows
    /// of unknown shape, matched by column name, and cannot tell what such
    /// a statement now returns (a view it reads may compute something
    /// else): it is refused until prepared again, by a simple Query the
    /// server answered without an error ([`Self::reprepare`]).
    outdated_prepared: std::collections::HashSet<String>,
}

impl ClientMasking {
    /// A statement that prepares again, or deallocates, SQL-level
    /// statements held outdated: they are current again once the server
    /// has run it without an error, against the same snapshot (see
    /// [`super::book_sync`]); one it may not have run leaves them refused.
    /// A Parse of it runs only if executed: not followed, they stay
    /// outdated.
    fn reprepare(&mut self, e: &Effects, source: Source) {
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
            let at = self.ctx.loaded_at();
            self.journal
                .push(self.fence.batch_request(), Op::Reprepare { what, at });
        }
    }

    /// Applies what [`Self::reprepare`] journaled, once answered.
    fn reprepared(&mut self, done: Vec<(Reprepared, u64)>) {
        for (what, at) in done {
            if at != self.ctx.loaded_at() {
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
    fn sync_context(&mut self, session: &SessionContext) {
        self.context.search_path.clone_from(&session.search_path);
        super::masking::name_user_schema(&mut self.context.search_path, &self.upstream_user);
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
        }
        ClientSide {
            shared,
            proxy,
            gates: proxy.gate_cache(),
            principal,
            idle_timeout,
            shutdown: proxy.shutdown.clone(),
            context,
            statements: Named::default(),
            portals: Named::default(),
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
            restricted: false,
            approved_once: Vec::new(),
            used_up: Vec::new(),
            lifted: Vec::new(),
            window_released: false,
            in_copy_data: false,
            after_sync: true,
            seen_version: 0,
            masking_now_applies: false,
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

    fn expect(&mut self, e: Expect<StatementPlan>) {
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
    fn follow(&self, e: impl FnOnce() -> Expect<Run>) {
        // Built only when followed: without an audit log the expectation
        // (and the reference counts it takes) is not made at all.
        if let Some(q) = &self.audit_expect {
            q.push(e());
        }
    }

    /// An audit expectation for a Parse or Bind of `judged`.
    fn follow_step(&self, judged: Option<&Arc<Judged>>) {
        self.follow(|| match judged {
            Some(j) => Expect::Step {
                plan: Some(Run::now(j)),
            },
            None => Expect::Completion,
        });
    }

    /// Masking's verdict on a statement the guardrails allowed: its plans,
    /// or the refusal message. Empty when nothing is masked for this
    /// principal.
    fn mask_plan(&self, sql: &[u8], shape: &Shape<'_>) -> Planned {
        match &self.masking {
            Some(m) if self.restricted => m.ctx.plan_after_ddl(sql, &m.context),
            Some(m) => m.ctx.plan(sql, shape, &m.context),
            None => Ok(no_plans()),
        }
    }

    /// Judges a statement with the guardrails and, when they allow it,
    /// plans its masking; records the outcome in the audit log. Returns the
    /// masking plans or the refusal message, or [`Decided::Held`] when the
    /// statement waits for a human (see [`ClientSide::resolve_held`]).
    fn decide(&mut self, source: Source, sql: &[u8]) -> Decided {
        self.window_released = false;
        // A FunctionCall is not followed to its end: recorded when judged.
        let record_now = source == Source::FunctionCall;
        if let Some(hazard) = self.shared.lexer_hazard.get() {
            let message = super::lexer_guard::refusal(hazard);
            return self.refuse(record_now, sql, ids::LEXER_SETTING, message);
        }
        if self.masking_now_applies {
            return self.refuse(record_now, sql, RELOADED, MASKING_NOW_APPLIES.into());
        }
        if let Some(message) = self.cursors.as_ref().and_then(|c| c.fetch_refusal(sql)) {
            return self.refuse(record_now, sql, RELOADED, message);
        }
        // Not while restricted: the memo's plans were made without the
        // restriction (see `super::ddl_fence`).
        let memo = match record_now || self.restricted {
            true => None,
            false => self.memo.view(self.gates.gate(), &self.context),
        };
        if let Some(plans) = memo.as_ref().and_then(|m| m.exact(source, sql)) {
            let plans = plans.clone();
            return self.replay(sql, plans);
        }
        // Worked out once, for the memo, the decision cache and the
        // masking plan cache.
        let shape = match source {
            Source::FunctionCall => Shape::none(sql),
            _ => Shape::of(sql),
        };
        if let Some(plans) = memo.and_then(|m| m.shaped(source, sql, &shape)) {
            let plans = plans.clone();
            return self.replay(sql, plans);
        }
        let gate = Arc::clone(self.gates.gate());
        let request = Request {
            dialect: Dialect::Postgres,
            source,
            sql,
            session: &self.context,
        };
        let (judgement, reuse) = gate.judge_reusable(self.principal, &request, &shape);
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
            Decision::Allow => {
                let planned = self.allowed(sql, &shape, (&judgement.effects, source), &mut note);
                if let Ok(plans) = &planned {
                    // Not a read by name: what the name is bound to
                    // changes, so each one is checked afresh.
                    if !record_now
                        && !self.restricted
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
    fn refuse(&mut self, record_now: bool, sql: &[u8], rule: &str, message: String) -> Decided {
        tracing::warn!(rule = %rule, sql = %preview(sql), "statement blocked");
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
    fn replay(&mut self, sql: &[u8], plans: Plans<StatementPlan>) -> Decided {
        let mut note = Note::default();
        let outcome =
            self.settle_allowed(Ok(plans), (&Effects::default(), Source::Query), &mut note);
        let (planned, judged) = self.admit(sql, note, outcome);
        Decided::Now(planned, judged)
    }

    /// The allow path: masking plans (or masking's refusal) and the
    /// statement's effects on the session.
    fn allowed(
        &mut self,
        sql: &[u8],
        shape: &Shape<'_>,
        effects: (&Effects, Source),
        note: &mut Note,
    ) -> Planned {
        let planned = match self.outdated_execute(sql) {
            Some(refusal) => Err(refusal),
            None => self.mask_plan(sql, shape),
        };
        let planned = planned.and_then(|plans| match self.masked_by_name(sql, &plans) {
            Some(refusal) => Err(refusal),
            None => Ok(plans),
        });
        self.settle_allowed(planned, effects, note)
    }

    /// Notes what masking does to an allowed statement and applies its
    /// effects, unless masking refused it.
    fn settle_allowed(
        &mut self,
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
                tracing::warn!(rule = rule.unwrap_or(""), reason = %msg, "statement blocked by masking");
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
    fn admit(&self, sql: &[u8], note: Note, outcome: Planned) -> (Planned, Option<Arc<Judged>>) {
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
    fn record<T>(&self, sql: &[u8], note: Note, outcome: Result<T, String>) -> Result<T, String> {
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

    /// Puts a statement on hold for a human, or `None` when approvals are
    /// not enabled (no admin listener to decide them).
    fn request_approval(&self, sql: &[u8], rule: &str, message: &str) -> Option<Hold> {
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
    async fn resolve_held(&mut self) -> Result<Verdict, SessionError> {
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
        let code = outcome.sqlstate();
        let outcome = match outcome_refusal {
            None => {
                // The catalog may have changed while a human decided.
                self.refresh_catalog().await?;
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
            Some(refusal) => {
                tracing::warn!(request = id, reason = %refusal, "held statement refused");
                note.decision = AuditDecision::Block;
                Err(refusal)
            }
        };
        let (planned, judged) = self.admit(&held.sql, note, outcome);
        Ok(match held.parse_name {
            None => self.query_verdict(planned, judged, code),
            Some(name) => {
                if planned.is_ok() {
                    // Approved: it may be bound once (see `bind_once`).
                    self.approved_once.push(name.clone().into_boxed_slice());
                }
                self.parse_verdict(&name, &held.sql, planned, judged, code)
            }
        })
    }

    /// CopyData goes upstream: the first of a run leaves a marker in the
    /// expectation queues, where a failing COPY FROM STDIN may have failed
    /// (see `results::Tracker::copy_failed`).
    fn copy_data_sent(&mut self) {
        if !self.in_copy_data {
            self.in_copy_data = true;
            self.expect(Expect::CopyData);
            self.follow(|| Expect::CopyData);
        }
    }

    /// The rules changed (a reload) since the session last looked.
    /// Masking rules now applying to a session that started without
    /// masking cannot be taken up mid-session: its statements are refused
    /// from now on. Statements prepared with SQL `PREPARE` under the old
    /// rules are forgotten and their names used up, so `EXECUTE` of them is
    /// refused (masking sessions refuse them already, as outdated:
    /// a reload moves every catalog generation). Protocol-level statements
    /// are judged again at their next Bind ([`Self::judged_again`]).
    #[cold]
    fn rules_changed(&mut self, version: u64, after_sync: bool) {
        self.seen_version = version;
        // Portals and cursors open now were made under the old rules.
        let idle = after_sync && self.shared.is_idle();
        if self.cursors.is_some() || (!idle && self.portals.names().next().is_some()) {
            let portals = self.portals.names().filter(|_| !idle);
            self.cursors
                .get_or_insert_with(Default::default)
                .rules_changed(portals);
        }
        if self.masking.is_none() {
            let principal = self.principal;
            if self
                .gates
                .masker()
                .is_some_and(|m| m.is_active_for(principal))
            {
                self.masking_now_applies = true;
            }
            // The server keeps them: their names may not run again.
            let stale = std::mem::take(&mut self.context.prepared);
            self.used_up
                .extend(stale.into_iter().map(|n| n.into_bytes().into_boxed_slice()));
        }
    }

    /// Before an Execute of `portal`, when the rules were reloaded in this
    /// session's life: refused when the portal was bound before the reload
    /// ([`Cursors::execute_refusal`]), or masking now applies.
    #[cold]
    fn reload_check(&self, portal: &[u8]) -> Result<(), String> {
        if self.masking_now_applies {
            return Err(format!(
                "airlock: blocked by rule {RELOADED}: {MASKING_NOW_APPLIES}"
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
    fn forget_ended_cursors(&mut self, after_sync: bool) {
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
    #[inline]
    fn judged_again(&mut self, name: &[u8]) -> Result<Option<Arc<Judged>>, String> {
        match self.statements.get(name) {
            // Vouched for by a SQL PREPARE of that name.
            None if !self.masking_now_applies => Ok(None),
            Some(v) if v.version == self.seen_version && !self.masking_now_applies => {
                Ok(v.judged.clone())
            }
            _ => self.judge_again(name),
        }
    }

    /// [`Self::judged_again`] when the rules changed.
    #[cold]
    fn judge_again(&mut self, name: &[u8]) -> Result<Option<Arc<Judged>>, String> {
        if self.masking_now_applies {
            return Err(format!(
                "airlock: blocked by rule {RELOADED}: {MASKING_NOW_APPLIES}"
            ));
        }
        let Some(vetted) = self.statements.get(name) else {
            return Ok(None);
        };
        let version = self.seen_version;
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
                "airlock: blocked by rule {RELOADED}: the rules changed since prepared statement \"{}\" was parsed: Parse it again",
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
        match gate.judge(self.principal, &request).decision {
            Decision::Allow => Ok(self.statements.get_mut(name).and_then(|v| {
                v.version = version;
                v.judged.clone()
            })),
            Decision::Block { rule, message } => {
                Err(format!("airlock: blocked by rule {rule}: {message}"))
            }
            // Held only at a Parse, where the client waits for it.
            Decision::RequireApproval { rule, message } => Err(format!(
                "airlock: blocked by rule {rule}: {message}; the rules were reloaded since prepared statement \"{}\" was parsed, and they hold it for approval: Parse it again to ask",
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
    fn bind_once(&mut self, name: &[u8]) {
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
    fn drop_used_up(&mut self, name: &[u8], after_sync: bool) {
        let carried_out = after_sync
            && self.shared.pending.load(Ordering::Acquire) == 0
            && self.shared.status.load(Ordering::Acquire) != b'E';
        if carried_out {
            self.used_up.retain(|n| **n != *name);
        }
    }

    /// What becomes of a Query, given its judgement (`code`: the SQLSTATE
    /// of a refusal).
    fn query_verdict(
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
                    plans: judged.map(|j| Some(Run::now(&j))).into_iter().collect(),
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
    fn parse_verdict(
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
                let kept = (!name.is_empty()).then(|| Arc::from(sql));
                // Judged under the rules the session last saw (a reload
                // during a hold is noticed at the next statement).
                let version = self.seen_version;
                self.statements.insert(
                    name,
                    Vetted {
                        judged,
                        version,
                        sql: kept,
                    },
                );
                if let Some(m) = &mut self.masking {
                    let at = m.ctx.loaded_at();
                    m.book
                        .parsed(name, plans.first().cloned().flatten(), sql, at);
                    m.journal
                        .push(m.fence.batch_request(), Op::Parse(name.into()));
                }
                Verdict::Pass
            }
            Err(msg) => {
                self.follow(|| Expect::Completion);
                self.statements.remove(name);
                Verdict::Replace(self.shared.refusals.parse(name, code, &msg))
            }
        }
    }

    fn apply(&mut self, e: &Effects, source: Source) {
        // Most statements change nothing (and a memo replay never does).
        if e.prepared.is_empty()
            && e.deallocated.is_empty()
            && !e.deallocate_all
            && e.search_path.is_none()
            && e.declared.is_empty()
        {
            return;
        }
        for (name, hold) in &e.declared {
            self.cursors
                .get_or_insert_with(Default::default)
                .declared(name, *hold);
        }
        if let Some(m) = &mut self.masking {
            m.reprepare(e, source);
        }
        // In the order `Effects` documents.
        if e.deallocate_all {
            self.context.prepared.clear();
            self.statements.clear();
        }
        for name in &e.deallocated {
            self.context.prepared.remove(name);
            // SQL DEALLOCATE also drops protocol-level statements of that name.
            self.statements.remove(name.as_bytes());
        }
        for name in &e.prepared {
            // The server refuses a PREPARE of a name it holds (42P05): a
            // protocol statement, or one that may not run again.
            let held = self.statements.contains_key(name.as_bytes())
                || self.used_up.iter().any(|n| **n == *name.as_bytes());
            if !held {
                self.context.prepared.insert(name.clone());
            }
        }
        if let Some(path) = &e.search_path {
            self.context.search_path = path.clone();
            if let Some(m) = &mut self.masking {
                m.sync_context(&self.context);
            }
        }
    }

    /// What becomes of one client frame, against the current catalog
    /// snapshot (see [`Side::on_frame`]).
    fn judge_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
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
            self.work_out_restricted();
            if self.cursors.is_some() {
                self.forget_ended_cursors(after_sync);
            }
            // Also at Execute: a portal bound before a reload is stale.
            let version = self.gates.version();
            if version != self.seen_version {
                self.rules_changed(version, after_sync);
            }
        }
        if matches!(
            tag,
            fe::QUERY | fe::PARSE | fe::BIND | fe::EXECUTE | fe::CLOSE
        ) {
            self.settle_books();
        }
        let refusals = &self.shared.refusals;
        match tag {
            fe::QUERY => {
                let q = Query::decode(body).map_err(malformed)?;
                self.shared.request_sent();
                Ok(match self.decide(Source::Query, q.sql) {
                    Decided::Now(planned, judged) => self.query_verdict(planned, judged, REFUSED),
                    Decided::Held => Verdict::Hold,
                })
            }
            fe::PARSE => {
                let p = Parse::decode(body).map_err(malformed)?;
                self.expect(Expect::Completion);
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
                Ok(match self.decide(Source::Parse, p.sql) {
                    Decided::Now(planned, judged) => {
                        let released = std::mem::take(&mut self.window_released) && planned.is_ok();
                        let verdict = self.parse_verdict(p.name, p.sql, planned, judged, REFUSED);
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
                    let checked = match self.restricted {
                        _ if self.bind_outdated(b.statement) => Err(format!(
                            "airlock: blocked by rule {}: prepared statement \"{}\" was prepared (SQL PREPARE) before the catalog changed, and masking cannot tell what it returns now: DEALLOCATE it and PREPARE it again",
                            crate::masking::lineage::UNANALYZABLE,
                            String::from_utf8_lossy(b.statement)
                        )),
                        true => self.after_ddl_check(|book| book.statement_sql(b.statement)),
                        false => self.replan_statement(b.statement),
                    };
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
                        return Ok(Verdict::Replace(refusals.bind(b.portal, REFUSED, &msg)));
                    }
                    let judged = match self.judged_again(b.statement) {
                        Ok(judged) => judged,
                        Err(msg) => {
                            self.follow(|| Expect::Completion);
                            self.portals.remove(b.portal);
                            if let Some(m) = &mut self.masking {
                                m.book.portal_gone(b.portal);
                            }
                            return Ok(Verdict::Replace(refusals.bind(b.portal, REFUSED, &msg)));
                        }
                    };
                    self.follow_step(judged.as_ref());
                    self.portals.insert(b.portal, judged);
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
                let replanned = match self.restricted {
                    true => self.after_ddl_check(|book| book.portal_sql(e.portal)),
                    false => self.replan_portal(e.portal),
                }
                .and_then(|()| self.execute_by_name_check(e.portal));
                // Both rare: one branch on the hot path.
                let replanned = match self.cursors.is_some() || self.masking_now_applies {
                    true => replanned.and_then(|()| self.reload_check(e.portal)),
                    false => replanned,
                };
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
                        }
                    }
                    m.fence.frame_in_batch();
                    m.expect.push(expect);
                }
                if let Err(msg) = replanned {
                    self.follow(|| Expect::Execute {
                        plan: None,
                        statement: Arc::clone(&self.no_statement),
                        formats: Arc::clone(&self.no_formats),
                    });
                    return Ok(Verdict::Replace(refusals.execute(REFUSED, &msg)));
                }
                let portal = self.portals.get(e.portal);
                if portal.is_some() || !self.gates.gate().vets_prepared() {
                    let judged = portal.cloned().flatten();
                    if let (Some(audit), Some(_)) = (self.audit, &judged) {
                        // Each execution is recorded when it ends: refuse
                        // it now if the log could not take that record.
                        if let Err(refusal) = audit.ready() {
                            tracing::warn!(reason = %refusal, "execution refused: audit log unavailable");
                            self.follow(|| Expect::Execute {
                                plan: None,
                                statement: Arc::clone(&self.no_statement),
                                formats: Arc::clone(&self.no_formats),
                            });
                            return Ok(Verdict::Replace(refusals.execute(REFUSED, &refusal)));
                        }
                    }
                    self.follow(|| Expect::Execute {
                        plan: judged.as_ref().map(Run::now),
                        statement: Arc::clone(&self.no_statement),
                        formats: Arc::clone(&self.no_formats),
                    });
                    return Ok(Verdict::Pass);
                }
                self.follow(|| Expect::Execute {
                    plan: None,
                    statement: Arc::clone(&self.no_statement),
                    formats: Arc::clone(&self.no_formats),
                });
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
                        self.statements.remove(name);
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
                        self.portals.remove(name);
                        if let Some(m) = &mut self.masking {
                            m.book.closed_portal(name);
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
                        if self.masking.is_some() {
                            self.expect(Expect::DescribeStatement {
                                name: name.to_vec(),
                            });
                        }
                        // The audit follower keeps no descriptions: no name.
                        self.follow(|| Expect::DescribeStatement { name: Vec::new() });
                    }
                    Target::Portal(_) => {
                        self.expect(Expect::DescribePortal);
                        self.follow(|| Expect::DescribePortal);
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

    /// Reloads the catalog snapshot when the target's catalog generation
    /// moved since it was loaded, and then forgets the memo, whose plans
    /// were made against the old one. Prepared statements and portals keep
    /// their plans, tagged with the generation they were made at, until
    /// [`Self::replan_statement`] or [`Self::replan_portal`] sees them.
    async fn refresh_catalog(&mut self) -> Result<(), SessionError> {
        let Some(m) = self.masking.as_ref().filter(|m| m.ctx.catalog_stale()) else {
            return Ok(());
        };
        let (catalog, at) = self.proxy.catalog(&self.principal.target).await?;
        m.ctx.set_catalog(catalog, at);
        // A reload moves every catalog generation: take its masking rules
        // up too. (With no masking rules left at all, the old ones stay
        // until the session ends: it masks more, not less.)
        if let Some(masker) = self.proxy.masker() {
            m.ctx.set_masker(masker);
        }
        // Results of requests sent so far were planned against the old
        // snapshot: the server side refuses them (see `ServerSide::suspect`).
        self.shared.fence.planned(m.fence.planned_so_far(), at);
        self.memo.forget();
        if let Some(m) = &mut self.masking {
            m.outdated_prepared
                .extend(self.context.prepared.iter().cloned());
        }
        Ok(())
    }

    /// The refusal of a statement that runs (`EXECUTE`) a SQL-level
    /// prepared statement judged against an older catalog snapshot, or
    /// one masking cannot name; `None` when there is none, or nothing is
    /// outdated (the usual case: no parse).
    fn outdated_execute(&self, sql: &[u8]) -> Option<String> {
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
    fn masked_by_name(&self, sql: &[u8], plans: &Plans<StatementPlan>) -> Option<String> {
        let m = self.masking.as_ref()?;
        if !reads_by_name(plans, sql) {
            return None;
        }
        Self::masked_read(m, sql)
    }

    /// [`Self::masked_by_name`] for a statement known to read by name.
    fn masked_read(m: &ClientMasking, sql: &[u8]) -> Option<String> {
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
    fn execute_by_name_check(&self, portal: &[u8]) -> Result<(), String> {
        let Some(m) = &self.masking else {
            return Ok(());
        };
        match m.book.portal_reads_by_name(portal) {
            Some(sql) => Self::masked_read(m, &sql).map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    /// Undoes, in the books, what the server did not carry out of the
    /// answered requests' Parse, Bind and Close messages (see
    /// [`super::book_sync`]). Nothing to do, and no atomic access, when no
    /// such message is awaiting its answer.
    fn settle_books(&mut self) {
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
    fn settle_answered(&mut self) {
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
                Op::Reprepare { .. } => {}
            }
        }
        if m.book.has_gone() && shared.is_idle() {
            m.book.forget_gone();
        }
    }

    /// Refuses a Parse of a statement name the session has, as the server
    /// would refuse it: forwarded, the server would keep its statement
    /// while airlock planned the new one (see [`super::book_sync`]).
    #[cold]
    fn refuse_taken(&self, name: &[u8]) -> Verdict {
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
    fn statement_taken(&self, name: &[u8]) -> bool {
        !name.is_empty()
            && (self.statements.contains_key(name)
                || self.masking.as_ref().is_some_and(|m| m.journal.kept(name)))
    }

    /// Whether a Bind names a SQL-level prepared statement (not one of an
    /// allowed Parse) judged against an older catalog snapshot.
    fn bind_outdated(&self, statement: &[u8]) -> bool {
        self.masking.as_ref().is_some_and(|m| {
            !m.outdated_prepared.is_empty()
                && m.book.statement_sql(statement).is_none()
                && std::str::from_utf8(statement).is_ok_and(|n| m.outdated_prepared.contains(n))
        })
    }

    /// Works out [`Self::restricted`] for the statement at hand.
    fn work_out_restricted(&mut self) {
        self.restricted = self
            .masking
            .as_ref()
            .is_some_and(|m| m.fence.restricted(&self.shared.fence));
    }

    /// Before a Bind or Execute while restricted: the statement's text
    /// (from `text`) must be one that may run in the transaction of DDL
    /// masking has not seen (see [`super::ddl_fence`]). One without a text
    /// (prepared by SQL PREPARE) is refused. `Err`: the refusal message.
    fn after_ddl_check(
        &self,
        text: impl FnOnce(&PlanBook) -> Option<Arc<[u8]>>,
    ) -> Result<(), String> {
        let Some(m) = &self.masking else {
            return Ok(());
        };
        match text(&m.book) {
            Some(sql) => m.ctx.plan_after_ddl(&sql, &m.context).map(|_| ()),
            None => Err(format!(
                "airlock: blocked by rule {}: while masking applies, only transaction and session statements may follow DDL until its transaction ends, and airlock does not know what this statement runs: COMMIT or ROLLBACK first",
                crate::masking::lineage::UNANALYZABLE
            )),
        }
    }

    /// Before a Bind of prepared statement `name`: when its masking plan
    /// was made against an older catalog snapshot, plans its text again
    /// against the current one (the server plans it again too, and a view
    /// it reads may now compute something else). `Err`: the refusal
    /// message of that plan.
    fn replan_statement(&mut self, name: &[u8]) -> Result<(), String> {
        let Some(m) = &mut self.masking else {
            return Ok(());
        };
        let at = m.ctx.loaded_at();
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
    fn replan_portal(&mut self, portal: &[u8]) -> Result<(), String> {
        let Some(m) = &mut self.masking else {
            return Ok(());
        };
        let at = m.ctx.loaded_at();
        let Some(sql) = m.book.portal_outdated(portal, at) else {
            return Ok(());
        };
        let plan = m.ctx.plan(&sql, &Shape::of(&sql), &m.context)?;
        m.book
            .portal_replanned(portal, plan.first().cloned().flatten(), at);
        Ok(())
    }

    fn statement_vetted(&mut self, name: &[u8]) -> bool {
        !self.gates.gate().vets_prepared()
            || self.statements.contains_key(name)
            || std::str::from_utf8(name).is_ok_and(|n| self.context.prepared.contains(n))
    }
}

/// Whether a statement with these plans may read rows by name (see
/// [`crate::masking::by_name`]): only opaque plans can, and only texts
/// that spell EXECUTE or FETCH.
fn reads_by_name(plans: &Plans<StatementPlan>, sql: &[u8]) -> bool {
    crate::masking::by_name::plans_may_read(plans.iter().flatten().map(|p| p.as_ref()), sql)
}

/// No masking plans (nothing is masked for the principal, or the query
/// was refused): one shared empty list, so that saying so allocates
/// nothing.
fn no_plans() -> Plans<StatementPlan> {
    static EMPTY: std::sync::OnceLock<Plans<StatementPlan>> = std::sync::OnceLock::new();
    Arc::clone(EMPTY.get_or_init(|| Arc::from(Vec::new())))
}

/// The ids of the masking rules a statement's plans apply.
fn masked_rules(plans: &[Option<Arc<StatementPlan>>]) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for plan in plans.iter().flatten() {
        if let StatementPlan::Columns(cols) = plan.as_ref() {
            for c in cols {
                if let crate::masking::ColumnMask::Mask { rule, .. } = c {
                    if !rules.contains(rule) {
                        rules.push(rule.clone());
                    }
                }
            }
        }
    }
    rules
}

/// The first 200 characters of a statement, for logs.
fn preview(sql: &[u8]) -> String {
    crate::audit::event::log_preview(sql)
}

fn malformed(e: fe::Malformed) -> SessionError {
    SessionError::Protocol(e.to_string())
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
        if self.masking.as_ref().is_some_and(|m| m.journal.full()) {
            return Err(SessionError::Protocol(format!(
                "more than {} Parse, Bind and Close messages sent without waiting for a Sync's answer; airlock follows that many at most while masking applies",
                super::book_sync::MAX_ENTRIES
            )));
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

    async fn resolve(&mut self) -> Result<Verdict, SessionError> {
        if let Some(frame) = self.refreshing.take() {
            let shared = self.shared;
            if let Some(m) = &mut self.masking {
                m.fence.wait(&shared.fence).await;
            }
            self.refresh_catalog().await?;
            // Not held again for the catalog (a change made meanwhile is
            // seen at the next statement), but maybe for approval.
            return match self.judge_frame(&frame)? {
                Verdict::Hold => self.resolve_held().await,
                verdict => Ok(verdict),
            };
        }
        self.resolve_held().await
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
                if let Some(hazard) = super::lexer_guard::hazard(&frame[5..]) {
                    // Statements pipelined behind the one that changed it
                    // were judged as airlock reads SQL, and the server reads
                    // them otherwise: nothing it sends from here on is
                    // relayed, and the session ends (see `lexer_guard`).
                    tracing::error!(%hazard, "the server now reads SQL differently from airlock; ending the session");
                    let message = super::lexer_guard::refusal(&hazard);
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
    use crate::masking::error_values::{pg_may_quote_data, withhold_quoted, WITHHELD};
    let body = match &verdict {
        Verdict::Replace(bytes) if bytes.len() >= 5 => &bytes[5..],
        Verdict::Replace(_) => return verdict,
        _ => &frame[5..],
    };
    let sqlstate = backend::error_fields(body).find(|(c, _)| *c == b'C');
    if !pg_may_quote_data(sqlstate.map_or(&b""[..], |(_, v)| v)) {
        return verdict;
    }
    let mut out = BytesMut::with_capacity(body.len() + 5);
    airlock_protocol::pg::frame::encode(tag, &mut out, |b| {
        for (code, value) in backend::error_fields(body) {
            b.put_u8(code);
            match code {
                // The message and hint lose what they quote and their
                // numbers; the detail, context and internal query go
                // whole.
                b'M' | b'H' => match withhold_quoted(value, b'"') {
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
