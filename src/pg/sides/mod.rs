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
//!
//! The types are here; their work is in one file per concern:
//!
//! | file | what |
//! |---|---|
//! | `client.rs` | [`ClientSide`]'s frame-by-frame judgement and its [`Side`] impl |
//! | `decide.rs` | the policy gate: decisions, masking plans, audit notes |
//! | `approval.rs` | statements held for a human |
//! | `reload.rs` | statements, portals and cursors from before a rules reload |
//! | `masking_gate.rs` | [`ClientMasking`]: catalog refresh, reads by name, outdated plans |
//! | `books.rs` | prepared statements and portals kept in step with the server |
//! | `portals.rs` | what makes the books forget a portal name |
//! | `server.rs` | [`ServerSide`] |

mod approval;
mod books;
mod client;
mod decide;
mod masking_gate;
mod portals;
mod reload;
mod server;

pub use server::ServerSide;

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
use super::results::{Expect, Expectations, Origin, Plans};
use crate::approvals::{Hold, HoldRequest, Outcome, Ticket};
use crate::audit::AuditDecision;
use crate::config::PREPARED_LIMIT_RULE;
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
/// The refusal of a masking session's DDL when other masking sessions'
/// requests in flight were not answered within [`DDL_GRACE`] (see
/// [`crate::masking::catalog::InFlight`]).
const DDL_BESIDE_STATEMENTS: &str = "airlock: blocked by rule mask.unanalyzable: while masking applies, DDL runs once the statements other masked sessions of the target were running when it came have ended (a write checked before this DDL could otherwise run after it, against definitions its plan did not know), and they did not end within 5 s: run it again";

/// The refusal of a masking session's DDL that waited in a [`DdlGrace`]
/// while another session's DDL was counted, or the catalog moved.
const DDL_BESIDE_DDL: &str = "airlock: blocked by rule mask.unanalyzable: while masking applies, DDL that waited for other sessions' statements does not run once another session's DDL has come meanwhile: run it again";

/// How long a masking session's DDL waits for other masking sessions'
/// requests in flight (see [`DdlGrace`]).
const DDL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A masking session's DDL, counted unsettled, waiting until the requests
/// other masking sessions of the target had in flight are answered (see
/// [`crate::masking::catalog::InFlight`]): any of them may be a write
/// checked before the DDL was counted, which must not run after it.
/// Requests checked later see the DDL (their writes are refused), so the
/// wait ends.
pub(super) struct DdlGrace {
    waiting_for: crate::masking::catalog::InFlightAt,
    then: GraceThen,
}

/// What a [`DdlGrace`] holds back.
pub(super) enum GraceThen {
    /// A Query, judged and planned: its verdict.
    Query {
        planned: Planned,
        judged: Option<Arc<Judged>>,
        code: &'static str,
    },
    /// An Execute of DDL: judged again.
    Execute(Box<[u8]>),
}

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

/// Most statement names a session without masking may have closed by
/// messages the server may not have carried out (see
/// [`ClientSide::closed_unsurely`]).
const MAX_UNSURE: usize = 4096;
/// Why a session that went past [`MAX_UNSURE`] ends.
const TOO_MANY_UNSURE: &str = "the rules were reloaded, and this session closed more prepared statements than airlock can follow without their answers (Close or DEALLOCATE while other messages that may fail were in flight); reconnect";

/// Most replies a session's expectation queues may await (see
/// [`ClientSide::check_pending`]): as many as the masking journal follows.
const MAX_PENDING: usize = super::book_sync::MAX_ENTRIES;
/// Messages between two looks at the expectation queues' lengths.
const PENDING_CHECK_EVERY: u32 = 4096;

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
    /// The target's foreign keys, when the policy has rules on tables:
    /// the map in force is put in `context` before each statement is
    /// judged ([`ClientSide::decide`]).
    foreign_keys: Option<Arc<crate::foreign_keys::ForeignKeySlot>>,
    /// When `foreign_keys`' map was last taken, and when it is due.
    links: crate::foreign_keys::LinksWatch,
    /// The database user airlock logged in as upstream (what `"$user"`
    /// in a search_path names).
    upstream_user: &'a str,
    /// Protocol-level statement names ("" = unnamed) from allowed Parses,
    /// with what the audit log records of each execution and the rules
    /// they were judged under.
    statements: Named<Vetted>,
    /// Portals bound from allowed statements, likewise.
    portals: Named<Bound>,
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
    /// A Query, Parse, Bind, Execute or Close held while the session's own
    /// DDL is answered and the catalog snapshot is reloaded (the target's
    /// catalog generation moved): judged in [`Side::resolve`] against the
    /// fresh snapshot, or, when it could not be loaded, refused unless it
    /// plans nothing (see `catalog_unreadable`).
    refreshing: Option<Box<[u8]>>,
    /// A Query, Parse, Bind, Execute or FunctionCall held while the audit
    /// log's queue is full (backpressure, see
    /// [`crate::audit::session::SessionAudit::wait_for_room`]).
    awaiting_room: Option<Box<[u8]>>,
    /// The session's own DDL is in a transaction that has not ended (see
    /// [`super::ddl_fence`]): only transaction and session statements may
    /// run. Worked out for each Query, Parse, Bind and Execute.
    restricted: bool,
    /// Another session of the target has DDL in a transaction that has
    /// not ended (or not yet seen end): only transaction and session
    /// statements may run, as while [`Self::restricted`], but nothing is
    /// marked. Worked out with it.
    beside_ddl: bool,
    /// The session's DDL, counted, waiting for other masking sessions'
    /// requests in flight (see [`DdlGrace`]).
    ddl_grace: Option<Box<DdlGrace>>,
    /// While an Execute that waited in [`DdlGrace`] is judged again:
    /// whether it may run (those requests were answered in time, and
    /// nothing moved meanwhile), or its refusal.
    grace_passed: Option<Result<(), &'static str>>,
    /// While a frame that waited for a fresh catalog snapshot is judged
    /// and the snapshot could not be loaded: the SQLSTATE and refusal of
    /// any statement it would plan, bind or run (see
    /// [`ClientSide::catalog_refusal`]).
    catalog_unreadable: Option<Box<(&'static str, String)>>,
    /// Statements (Parse names) a human approved, not bound yet: each may
    /// be bound once ([`ClientSide::bind_once`]).
    approved_once: Vec<Box<[u8]>>,
    /// Approved statements that have had their one Bind and that the server
    /// may still hold: refused at every Bind until the server has surely
    /// dropped them ([`ClientSide::drop_used_up`]).
    used_up: Vec<Box<[u8]>>,
    /// Sessions without masking: names of statements closed, or replaced,
    /// by a message the server may not have carried out, judged under the
    /// rules in force (see [`ClientSide::closed_unsurely`]); used up at
    /// the next reload. At most [`MAX_UNSURE`].
    unsure: Vec<Box<[u8]>>,
    /// More than [`MAX_UNSURE`] names were closed unsurely: airlock lost
    /// track of them, and the next reload ends the session
    /// ([`TOO_MANY_UNSURE`]).
    unsure_overflow: bool,
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
    /// started without masking (or went on without it for a while, see
    /// `masking_lapsed`): every later statement is refused.
    masking_now_applies: bool,
    /// A reload took masking away from this session, which started with
    /// it: the session ran unmasked (see [`ClientSide::rules_changed`]).
    masking_lapsed: bool,
    /// SQL cursors the session declared, and the portals and cursors open
    /// at a reload, which may not be read any more ([`Cursors`]). `None`
    /// while there are none (nearly every session).
    cursors: Option<Box<Cursors>>,
    /// The last message was CopyData: its run has its marker in the
    /// expectation queues ([`Expect::CopyData`]).
    in_copy_data: bool,
    /// Messages since the expectation queues' lengths were last looked at
    /// ([`ClientSide::check_pending`]).
    frames_unchecked: u32,
    /// The names the SQL `PREPARE` that [`Self::decide`] just allowed
    /// through Parse makes, for its [`Vetted`] entry.
    parsed_prepares: Option<Prepares>,
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
    /// The target's links it was judged under
    /// ([`SessionContext::foreign_keys_id`]): judged again when they
    /// changed.
    links: u64,
    sql: Option<Arc<[u8]>>,
    /// A SQL `PREPARE` sent through Parse: the names it makes. Taken when
    /// a portal bound from it is executed, not at its Parse (see
    /// [`ClientSide::execute_prepares`]).
    prepares: Option<Prepares>,
}

/// The statement names a SQL `PREPARE` makes.
type Prepares = Arc<[String]>;

/// A portal bound from an allowed statement: what the audit log records of
/// its executions, and the names its statement's SQL `PREPARE` makes when
/// it is executed.
#[derive(Clone, Default)]
struct Bound {
    judged: Option<Arc<Judged>>,
    prepares: Option<Prepares>,
}

/// A statement held for approval.
struct Held {
    ticket: Ticket,
    sql: Vec<u8>,
    rule: String,
    /// Applied if it is approved.
    effects: Effects,
    /// The version of the rules it was judged under: judged again when
    /// they were reloaded while it was held.
    version: u64,
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
    /// with `$user` named (see [`super::super::masking::name_user_schema`]).
    context: SessionContext,
    /// SQL-level prepared statements (`PREPARE name AS ...`) judged
    /// against an older catalog snapshot. Masking plans `EXECUTE` as rows
    /// of unknown shape, matched by column name, and cannot tell what such
    /// a statement now returns (a view it reads may compute something
    /// else): it is refused until prepared again, by a simple Query the
    /// server answered without an error ([`Self::reprepare`]).
    outdated_prepared: std::collections::HashSet<String>,
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
        if let StatementPlan::Columns(cols) | StatementPlan::OpenColumns(cols) = plan.as_ref() {
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
