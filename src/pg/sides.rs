//! The two directions of a Postgres session as [`Side`]s of the relay.
//!
//! * [`ClientSide`] (client → server): every statement (Query, Parse,
//!   FunctionCall) passes the policy gate before it is forwarded. It tracks
//!   which prepared statements and portals came from statements airlock
//!   allowed, and refuses Bind and Execute of anything else. Refusals are
//!   sent upstream as sentinels (see [`super::refusal`]). Unknown message
//!   types end the session, as Postgres itself does.
//! * [`ServerSide`] (server → client): swaps sentinel errors for airlock's
//!   own, enforces the per-statement row limit, and tracks ReadyForQuery to
//!   know when the session is idle (idle timeout, graceful shutdown).
//!
//! Both share a [`Shared`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use airlock_protocol::pg::backend::{self, Severity};
use airlock_protocol::pg::frontend::{
    self as fe, Bind, Execute, FunctionCall, Parse, Query, Target,
};

use super::error::SessionError;
use super::refusal::Refusals;
use super::relay::{sleep_or_forever, Side, Stopped, Verdict};
use crate::policy::{Decision, Dialect, Effects, Principal, Request, SessionContext, Source};
use crate::proxy::Proxy;

/// SQLSTATE of a refusal: insufficient_privilege.
const REFUSED: &str = "42501";

/// State both directions see.
pub struct Shared {
    /// Requests sent upstream whose ReadyForQuery has not come back.
    pub pending: AtomicU32,
    /// Transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    pub status: AtomicU8,
    /// Bumped at every ReadyForQuery, so waiters re-check idleness.
    ready: watch::Sender<u64>,
    pub refusals: Refusals,
}

impl Shared {
    pub fn new(status: u8) -> Self {
        Shared {
            pending: AtomicU32::new(0),
            status: AtomicU8::new(status),
            ready: watch::Sender::new(0),
            refusals: Refusals::default(),
        }
    }

    /// Nothing in flight and no open transaction.
    pub fn is_idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0 && self.status.load(Ordering::Acquire) == b'I'
    }
}

/// Client → server.
pub struct ClientSide<'a> {
    pub shared: &'a Shared,
    pub proxy: &'a Proxy,
    pub principal: &'a Principal,
    pub idle_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub context: SessionContext,
    /// Protocol-level statement names ("" = unnamed) from allowed Parses.
    statements: HashSet<Vec<u8>>,
    /// Portals bound from allowed statements.
    portals: HashSet<Vec<u8>>,
}

impl<'a> ClientSide<'a> {
    pub fn new(
        shared: &'a Shared,
        proxy: &'a Proxy,
        principal: &'a Principal,
        idle_timeout: Duration,
        context: SessionContext,
    ) -> Self {
        ClientSide {
            shared,
            proxy,
            principal,
            idle_timeout,
            shutdown: proxy.shutdown.clone(),
            context,
            statements: HashSet::new(),
            portals: HashSet::new(),
        }
    }

    /// Asks the gate; on allow applies the statement's effects and returns
    /// `None`, otherwise the client-facing error message.
    fn judge(&mut self, source: Source, sql: &[u8]) -> Option<String> {
        let request = Request {
            dialect: Dialect::Postgres,
            source,
            sql,
            session: &self.context,
        };
        let judgement = self.proxy.gate().judge(self.principal, &request);
        if let Some(would) = &judgement.would {
            tracing::warn!(identity = %self.principal.identity, decision = %would, sql = %preview(sql), "observe mode: would refuse");
        }
        match judgement.decision {
            Decision::Allow => {
                self.apply(&judgement.effects);
                None
            }
            Decision::Block { rule, message } => {
                tracing::warn!(identity = %self.principal.identity, rule = %rule, sql = %preview(sql), "statement blocked");
                Some(format!("airlock: blocked by rule {rule}: {message}"))
            }
            Decision::RequireApproval { rule, message } => {
                tracing::warn!(identity = %self.principal.identity, rule = %rule, sql = %preview(sql), "statement needs approval; refused");
                Some(format!(
                    "airlock: rule {rule} requires human approval, and approvals are not enabled: {message}"
                ))
            }
        }
    }

    fn apply(&mut self, e: &Effects) {
        for name in &e.prepared {
            self.context.prepared.insert(name.clone());
        }
        for name in &e.deallocated {
            self.context.prepared.remove(name);
            // SQL DEALLOCATE also drops protocol-level statements of that name.
            self.statements.remove(name.as_bytes());
        }
        if e.deallocate_all {
            self.context.prepared.clear();
            self.statements.clear();
        }
        if let Some(path) = &e.search_path {
            self.context.search_path = path.clone();
        }
    }

    fn statement_vetted(&self, name: &[u8]) -> bool {
        !self.proxy.gate().vets_prepared()
            || self.statements.contains(name)
            || std::str::from_utf8(name).is_ok_and(|n| self.context.prepared.contains(n))
    }
}

/// The first 200 characters of a statement, for logs.
fn preview(sql: &[u8]) -> String {
    let text = String::from_utf8_lossy(sql);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().nth(200).is_some() {
        s.push('…');
    }
    s
}

fn malformed(e: fe::Malformed) -> SessionError {
    SessionError::Protocol(e.to_string())
}

impl Side for ClientSide<'_> {
    fn streamable(&self, tag: u8) -> bool {
        tag == fe::COPY_DATA
    }

    fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        let tag = frame[0];
        let body = &frame[5..];
        let refusals = &self.shared.refusals;
        match tag {
            fe::QUERY => {
                let q = Query::decode(body).map_err(malformed)?;
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                Ok(match self.judge(Source::Query, q.sql) {
                    None => Verdict::Pass,
                    Some(msg) => Verdict::Replace(self.shared.refusals.query(REFUSED, &msg)),
                })
            }
            fe::PARSE => {
                let p = Parse::decode(body).map_err(malformed)?;
                Ok(match self.judge(Source::Parse, p.sql) {
                    None => {
                        self.statements.insert(p.name.to_vec());
                        Verdict::Pass
                    }
                    Some(msg) => {
                        self.statements.remove(p.name);
                        Verdict::Replace(self.shared.refusals.parse(p.name, REFUSED, &msg))
                    }
                })
            }
            fe::BIND => {
                let b = Bind::decode(body).map_err(malformed)?;
                if self.statement_vetted(b.statement) {
                    self.portals.insert(b.portal.to_vec());
                    return Ok(Verdict::Pass);
                }
                self.portals.remove(b.portal);
                let msg = format!(
                    "airlock: blocked by rule builtin.unvetted-statement: prepared statement \"{}\" was not allowed by airlock",
                    String::from_utf8_lossy(b.statement)
                );
                Ok(Verdict::Replace(refusals.bind(b.portal, REFUSED, &msg)))
            }
            fe::EXECUTE => {
                let e = Execute::decode(body).map_err(malformed)?;
                if self.portals.contains(e.portal) || !self.proxy.gate().vets_prepared() {
                    return Ok(Verdict::Pass);
                }
                let msg = format!(
                    "airlock: blocked by rule builtin.unvetted-portal: portal \"{}\" was not bound by airlock",
                    String::from_utf8_lossy(e.portal)
                );
                Ok(Verdict::Replace(refusals.execute(REFUSED, &msg)))
            }
            fe::CLOSE => {
                match Target::decode(body, "Close").map_err(malformed)? {
                    Target::Statement(name) => self.statements.remove(name),
                    Target::Portal(name) => self.portals.remove(name),
                };
                Ok(Verdict::Pass)
            }
            fe::DESCRIBE => {
                Target::decode(body, "Describe").map_err(malformed)?;
                Ok(Verdict::Pass)
            }
            fe::FUNCTION_CALL => {
                FunctionCall::decode(body).map_err(malformed)?;
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                Ok(match self.judge(Source::FunctionCall, b"") {
                    None => Verdict::Pass,
                    Some(msg) => Verdict::Replace(self.shared.refusals.query(REFUSED, &msg)),
                })
            }
            fe::SYNC => {
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                Ok(Verdict::Pass)
            }
            fe::TERMINATE => Ok(Verdict::PassAndStop),
            fe::FLUSH | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => Ok(Verdict::Pass),
            other => Err(SessionError::Protocol(format!(
                "invalid frontend message type {other}"
            ))),
        }
    }

    async fn interrupt(&self) -> Result<Stopped, SessionError> {
        let mut shutdown = self.shutdown.clone();
        let mut ready = self.shared.ready.subscribe();
        loop {
            ready.mark_unchanged();
            let idle = self.shared.is_idle();
            if idle && *shutdown.borrow() {
                return Err(SessionError::ShuttingDown);
            }
            tokio::select! {
                _ = sleep_or_forever(if idle { self.idle_timeout } else { Duration::ZERO }) => {
                    return Err(SessionError::IdleTimeout);
                }
                // A ReadyForQuery arrived: re-check idleness.
                _ = ready.changed() => {}
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

/// Server → client.
pub struct ServerSide<'a> {
    pub shared: &'a Shared,
    pub shutdown: watch::Receiver<bool>,
    /// Rows allowed per statement result.
    pub max_rows: Option<u64>,
    rows: u64,
    /// A result went over `max_rows`: drop messages up to ReadyForQuery.
    truncating: bool,
}

impl<'a> ServerSide<'a> {
    pub fn new(shared: &'a Shared, shutdown: watch::Receiver<bool>, max_rows: Option<u64>) -> Self {
        ServerSide {
            shared,
            shutdown,
            max_rows,
            rows: 0,
            truncating: false,
        }
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

impl Side for ServerSide<'_> {
    fn streamable(&self, tag: u8) -> bool {
        match tag {
            // Rows are counted one by one when a row limit applies.
            backend::DATA_ROW => self.max_rows.is_none(),
            fe::COPY_DATA => true,
            _ => false,
        }
    }

    fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        let tag = frame[0];
        match tag {
            backend::READY_FOR_QUERY => {
                let status = backend::parse_ready_for_query(&frame[5..]).ok_or_else(|| {
                    SessionError::Protocol("malformed ReadyForQuery from server".into())
                })?;
                self.shared.status.store(status, Ordering::Release);
                let _ =
                    self.shared
                        .pending
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                self.shared.ready.send_modify(|n| *n = n.wrapping_add(1));
                self.rows = 0;
                self.truncating = false;
                if *self.shutdown.borrow() && self.shared.is_idle() {
                    return Ok(Verdict::PassAndStop);
                }
                Ok(Verdict::Pass)
            }
            _ if self.truncating => Ok(Verdict::Replace(Bytes::new())),
            backend::DATA_ROW => {
                self.rows += 1;
                match self.max_rows {
                    Some(max) if self.rows > max => {
                        self.truncating = true;
                        Ok(Verdict::Replace(self.max_rows_error(max)))
                    }
                    _ => Ok(Verdict::Pass),
                }
            }
            backend::ERROR_RESPONSE => {
                self.rows = 0;
                if self.shared.refusals.any_pending() {
                    if let Some(error) = self.shared.refusals.replacement(&frame[5..]) {
                        return Ok(Verdict::Replace(error));
                    }
                }
                Ok(Verdict::Pass)
            }
            // CommandComplete, EmptyQueryResponse, PortalSuspended end a result.
            backend::COMMAND_COMPLETE | b'I' | b's' => {
                self.rows = 0;
                Ok(Verdict::Pass)
            }
            _ => Ok(Verdict::Pass),
        }
    }
}
