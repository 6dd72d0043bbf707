//! The two directions of a Postgres session as [`Side`]s of the relay.
//!
//! * [`ClientSide`] (client → server): every statement (Query, Parse,
//!   FunctionCall) passes the policy gate before it is forwarded; unknown
//!   message types end the session, as Postgres itself does.
//! * [`ServerSide`] (server → client): tracks ReadyForQuery to know when the
//!   session is idle (for the idle timeout and graceful shutdown).
//!
//! Both share a [`Shared`] with the count of requests (Query, Sync,
//! FunctionCall) that still await their ReadyForQuery.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use airlock_protocol::pg::backend;
use airlock_protocol::pg::frontend::{self as fe, FunctionCall, Parse, Query};

use super::error::SessionError;
use super::relay::{sleep_or_forever, Side, Stopped, Verdict};
use crate::policy::{Decision, Dialect, Gate, Principal, Request, SessionContext, Source};

/// State both directions see.
pub struct Shared {
    /// Requests sent upstream whose ReadyForQuery has not come back.
    pub pending: AtomicU32,
    /// Transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    pub status: AtomicU8,
    /// Bumped at every ReadyForQuery, so waiters re-check idleness.
    ready: watch::Sender<u64>,
}

impl Shared {
    pub fn new(status: u8) -> Self {
        Shared {
            pending: AtomicU32::new(0),
            status: AtomicU8::new(status),
            ready: watch::Sender::new(0),
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
    pub gate: Arc<dyn Gate>,
    pub principal: &'a Principal,
    pub idle_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub context: SessionContext,
}

impl ClientSide<'_> {
    fn judge(&self, source: Source, sql: &[u8]) -> Result<Verdict, SessionError> {
        let request = Request {
            dialect: Dialect::Postgres,
            source,
            sql,
            session: &self.context,
        };
        match self.gate.judge(self.principal, &request).decision {
            Decision::Allow => Ok(Verdict::Pass),
            Decision::Block { rule, message } | Decision::RequireApproval { rule, message } => {
                // Refusal with session continuity arrives with the guardrails
                // engine; until then a block ends the session, failing closed.
                Err(SessionError::Refused(format!(
                    "airlock: blocked by rule {rule}: {message}"
                )))
            }
        }
    }
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
        match tag {
            fe::QUERY => {
                let q = Query::decode(body).map_err(malformed)?;
                let v = self.judge(Source::Query, q.sql)?;
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                Ok(v)
            }
            fe::PARSE => {
                let p = Parse::decode(body).map_err(malformed)?;
                self.judge(Source::Parse, p.sql)
            }
            fe::FUNCTION_CALL => {
                FunctionCall::decode(body).map_err(malformed)?;
                let v = self.judge(Source::FunctionCall, b"")?;
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                Ok(v)
            }
            fe::SYNC => {
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                Ok(Verdict::Pass)
            }
            fe::TERMINATE => Ok(Verdict::PassAndStop),
            fe::BIND
            | fe::DESCRIBE
            | fe::EXECUTE
            | fe::CLOSE
            | fe::FLUSH
            | fe::COPY_DATA
            | fe::COPY_DONE
            | fe::COPY_FAIL => Ok(Verdict::Pass),
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
}

impl Side for ServerSide<'_> {
    fn streamable(&self, tag: u8) -> bool {
        matches!(tag, backend::DATA_ROW | fe::COPY_DATA)
    }

    fn on_frame(&mut self, frame: &[u8]) -> Result<Verdict, SessionError> {
        if frame[0] == backend::READY_FOR_QUERY {
            let status = backend::parse_ready_for_query(&frame[5..]).ok_or_else(|| {
                SessionError::Protocol("malformed ReadyForQuery from server".into())
            })?;
            self.shared.status.store(status, Ordering::Release);
            let _ = self
                .shared
                .pending
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            self.shared.ready.send_modify(|n| *n = n.wrapping_add(1));
            if *self.shutdown.borrow() && self.shared.is_idle() {
                return Ok(Verdict::PassAndStop);
            }
        }
        Ok(Verdict::Pass)
    }
}
