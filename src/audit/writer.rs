//! The writer: [`AuditLog`] hands events to a background thread over a
//! bounded channel; the thread redacts, fingerprints, chains and writes
//! them in batches, one transaction per batch.
//!
//! [`AuditLog::record`] never blocks: when the queue is full or the writer
//! is failing it returns [`AuditUnavailable`], and the session decides
//! whether to refuse the statement (fail closed) or go on.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::event::{AuditEvent, Preparer};
use super::format::record_json;
use super::{retention, store, AuditError, AuditUnavailable};

/// Most events written in one transaction.
const BATCH: usize = 256;
/// How often a session waiting for room in the queue looks again.
const ROOM_POLL: Duration = Duration::from_millis(2);
/// Least room the channel has beyond the configured queue size (see
/// `Shared::hard_capacity`).
const HEADROOM: usize = 1024;
/// The least [`AuditLog::session_share_limit`].
pub const MIN_SESSION_SHARE: usize = 256;
/// How long the writer lets events gather after the first one arrives.
const GATHER: Duration = Duration::from_millis(20);
/// Pause between attempts at a failing batch.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How often the writer removes records past `[audit] retention`.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// When to try again after a prune failed.
const PRUNE_RETRY: Duration = Duration::from_secs(60);
/// Attempts at a failing batch once shutdown has begun.
const SHUTDOWN_ATTEMPTS: u32 = 3;

enum Msg {
    /// An event, and the share of the session that queued it, released
    /// when the writer takes it (as `Shared::depth` is).
    Event(Box<AuditEvent>, Option<ShareGuard>),
    Shutdown,
}

/// How many records one session has in the queue or reserved there: no
/// session may hold more than [`AuditLog::session_share_limit`] (DoS
/// finding: one session pipelining 260,000 statements without a Sync held
/// the whole queue, and other agents' statements were refused).
#[derive(Debug, Default, Clone)]
pub struct SessionShare(Arc<AtomicUsize>);

impl SessionShare {
    /// Records and reservations the session holds now.
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn take(&self) -> ShareGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        ShareGuard(Arc::clone(&self.0))
    }
}

/// One record or reservation of a [`SessionShare`]; released when dropped.
struct ShareGuard(Arc<AtomicUsize>);

impl Drop for ShareGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Shared {
    healthy: AtomicBool,
    stopping: AtomicBool,
    depth: AtomicUsize,
    /// Statements forwarded whose record is still to come (each is
    /// recorded when it has run): counted with `depth`, so that a
    /// pipeline admitted behind a slow statement cannot overrun the
    /// channel when its records arrive ([`Reservation`]).
    reserved: AtomicUsize,
    /// The configured queue size (`audit.queue`): past it, sessions wait
    /// for room before their next statement (backpressure).
    capacity: usize,
    /// The channel's size: past it, records are lost and fail-closed
    /// sessions refuse statements. The headroom above `capacity` takes
    /// the records of statements admitted just before the queue filled
    /// (each is recorded when it has run) and of sessions that waited
    /// while others filled the room again.
    hard_capacity: usize,
}

impl Shared {
    /// Events queued plus records reserved.
    fn load(&self) -> usize {
        self.depth.load(Ordering::Acquire) + self.reserved.load(Ordering::Acquire)
    }
}

/// A slot kept in the audit queue for a statement's record (see
/// [`AuditLog::reserve`]); freed when dropped.
pub struct Reservation {
    shared: Arc<Shared>,
    _share: Option<ShareGuard>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reservation")
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shared.reserved.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running audit log. Share it between sessions behind an `Arc`.
pub struct AuditLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Opens (creating if needed) the store at `path` and starts the writer
    /// with a queue of `queue_capacity` events (at least 1).
    pub fn open(path: &Path, queue_capacity: usize) -> Result<AuditLog, AuditError> {
        Self::start(path, queue_capacity, None, None)
    }

    /// As [`AuditLog::open`] or [`AuditLog::with_json_lines`], and with
    /// `retention` the writer removes records older than that at start and
    /// every hour (see [`super::retention`]).
    pub fn with_retention(
        path: &Path,
        queue_capacity: usize,
        json: Option<Box<dyn Write + Send>>,
        retention: Option<Duration>,
    ) -> Result<AuditLog, AuditError> {
        Self::start(path, queue_capacity, json, retention)
    }

    /// As [`AuditLog::open`], and also writes every stored record as one
    /// JSON object per line to `json` (a file, stdout, ...), flushed after
    /// each batch.
    pub fn with_json_lines(
        path: &Path,
        queue_capacity: usize,
        json: Box<dyn Write + Send>,
    ) -> Result<AuditLog, AuditError> {
        Self::start(path, queue_capacity, Some(json), None)
    }

    fn start(
        path: &Path,
        queue_capacity: usize,
        json: Option<Box<dyn Write + Send>>,
        retention: Option<Duration>,
    ) -> Result<AuditLog, AuditError> {
        let conn = store::open_rw(path)?;
        super::session::sessions_after(store::last_session(&conn)?);
        let capacity = queue_capacity.max(1);
        let hard_capacity = capacity
            .saturating_mul(2)
            .max(capacity.saturating_add(HEADROOM));
        let (tx, rx) = sync_channel(hard_capacity);
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            depth: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            capacity,
            hard_capacity,
        });
        let mut writer = Writer {
            conn,
            json,
            retention,
            next_prune: Instant::now(),
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("airlock-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(AuditError::Thread)?;
        Ok(AuditLog {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `event` without blocking. `Err` when the queue is full, the
    /// writer is failing or the log is shut down: the event is lost, and a
    /// fail-closed session must refuse the statement.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditUnavailable> {
        self.record_for(event, None)
    }

    /// [`Self::record`], counted in a session's share until the writer
    /// takes it.
    pub fn record_shared(
        &self,
        event: AuditEvent,
        share: &SessionShare,
    ) -> Result<(), AuditUnavailable> {
        self.record_for(event, Some(share))
    }

    fn record_for(
        &self,
        event: AuditEvent,
        share: Option<&SessionShare>,
    ) -> Result<(), AuditUnavailable> {
        if !self.is_healthy() {
            return Err(AuditUnavailable::WriterFailed);
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(AuditUnavailable::ShutDown);
        }
        self.shared.depth.fetch_add(1, Ordering::AcqRel);
        match self
            .tx
            .try_send(Msg::Event(Box::new(event), share.map(SessionShare::take)))
        {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.depth.fetch_sub(1, Ordering::AcqRel);
                Err(match e {
                    TrySendError::Full(_) => AuditUnavailable::QueueFull,
                    TrySendError::Disconnected(_) => AuditUnavailable::ShutDown,
                })
            }
        }
    }

    /// Whether an event queued now would be taken: `Err` when the writer is
    /// failing, the log is shutting down or the queue is full. For
    /// statements recorded after they complete, asked before they run.
    pub fn available(&self) -> Result<(), AuditUnavailable> {
        if !self.is_healthy() {
            return Err(AuditUnavailable::WriterFailed);
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(AuditUnavailable::ShutDown);
        }
        if self.shared.load() >= self.shared.hard_capacity {
            return Err(AuditUnavailable::QueueFull);
        }
        Ok(())
    }

    /// Whether the queue is full while the writer is healthy: it will
    /// have room again as soon as the writer catches up (see
    /// [`AuditLog::wait_for_room`]).
    pub fn queue_full(&self) -> bool {
        // The writer's backlog, not the records still to come of
        // statements running (those count against the channel's size, in
        // `available`): a session that holds its share of those without
        // reading its results must not make others wait.
        self.shared.depth.load(Ordering::Acquire) >= self.shared.capacity
            && self.is_healthy()
            && !self.shared.stopping.load(Ordering::Acquire)
    }

    /// Waits up to `limit` for the queue to have room again. Backpressure:
    /// a session whose statement would be refused for a full queue waits
    /// here instead, so that under a burst the proxy slows to the writer's
    /// pace rather than refusing. Polls (the writer takes events at
    /// thousands a second); `false` if the queue is still full.
    pub async fn wait_for_room(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.queue_full() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            crate::timer_thread::sleep(ROOM_POLL).await;
        }
        true
    }

    /// Keeps a slot for the record of a statement forwarded now, until the
    /// [`Reservation`] is dropped (after its record was queued, or when it
    /// will never be made).
    pub fn reserve(&self) -> Reservation {
        self.reserve_for(None)
    }

    /// [`Self::reserve`], counted in a session's share until dropped.
    pub fn reserve_shared(&self, share: &SessionShare) -> Reservation {
        self.reserve_for(Some(share))
    }

    fn reserve_for(&self, share: Option<&SessionShare>) -> Reservation {
        self.shared.reserved.fetch_add(1, Ordering::AcqRel);
        Reservation {
            shared: Arc::clone(&self.shared),
            _share: share.map(SessionShare::take),
        }
    }

    /// The most records one session may hold in the queue (queued or
    /// reserved) before its next statement is refused: the queue's
    /// configured size (at least [`MIN_SESSION_SHARE`]), so that the
    /// headroom above it stays for other sessions. A batch of that many
    /// statements sent without reading a result fits; a session that
    /// sends more without reading (so that its records never come) takes
    /// no more room.
    pub fn session_share_limit(&self) -> usize {
        self.shared.capacity.max(MIN_SESSION_SHARE)
    }

    /// False while the writer's last batch failed (it keeps retrying).
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }

    /// Events queued and not yet written.
    pub fn queue_depth(&self) -> usize {
        self.shared.depth.load(Ordering::Acquire)
    }

    /// Stops taking events, writes everything queued and joins the writer.
    /// Idempotent; also done on drop. A batch that keeps failing during
    /// shutdown is dropped after a few attempts (and logged).
    pub fn shutdown(&self) {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        self.shared.stopping.store(true, Ordering::Release);
        // Blocking is fine here: this is not the query path, and the
        // writer keeps consuming (it gives up on failing batches once
        // stopping is set).
        let _ = self.tx.send(Msg::Shutdown);
        if thread.join().is_err() {
            tracing::error!("audit writer thread panicked");
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Writer {
    conn: Connection,
    json: Option<Box<dyn Write + Send>>,
    /// Records older than this are removed ([`super::retention`]).
    retention: Option<Duration>,
    /// When to prune next (now, at start).
    next_prune: Instant,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut preparer = Preparer::default();
        let mut stop = false;
        // Retention first: a store that has been off for months is
        // trimmed before it grows further.
        if self.retention.is_some() {
            self.prune();
        }
        while !stop {
            let first = match self.retention {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(_) => {
                    rx.recv_timeout(self.next_prune.saturating_duration_since(Instant::now()))
                }
            };
            let first = match first {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    self.prune();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut next = Some(first);
            let mut gathered = false;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Event(e, share) => {
                        drop(share);
                        self.shared.depth.fetch_sub(1, Ordering::AcqRel);
                        batch.push(preparer.prepare(*e));
                    }
                    // Keep draining: everything queued before the
                    // shutdown message is written.
                    Msg::Shutdown => stop = true,
                }
                if batch.len() >= BATCH {
                    self.write(&mut batch);
                    // Under a load that never lets the queue empty, the
                    // wait below never times out: retention is due here.
                    if self.retention.is_some() && Instant::now() >= self.next_prune {
                        self.prune();
                    }
                }
                // Let a batch gather before writing: one SQLite transaction
                // (and one wake-up of this thread) per few milliseconds
                // instead of one per statement. The first event has left
                // the queue by now, so its depth counts only what waits in
                // the channel. Senders never wait: `record` only tries.
                if !gathered && !stop {
                    gathered = true;
                    std::thread::sleep(GATHER);
                }
                next = rx.try_recv().ok();
            }
            self.write(&mut batch);
        }
    }

    /// Writes `batch`, retrying while it fails (the log is unhealthy
    /// meanwhile, so sessions stop queueing); empties it.
    fn write(&mut self, batch: &mut Vec<(AuditEvent, Option<String>)>) {
        if batch.is_empty() {
            return;
        }
        let mut failures = 0u32;
        loop {
            match store::append(&mut self.conn, batch) {
                Ok(records) => {
                    self.write_json(&records);
                    self.shared.healthy.store(true, Ordering::Release);
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::error!(error = %e, events = batch.len(), "audit write failed");
                    }
                    self.shared.healthy.store(false, Ordering::Release);
                    if self.shared.stopping.load(Ordering::Acquire) && failures >= SHUTDOWN_ATTEMPTS
                    {
                        tracing::error!(
                            events = batch.len(),
                            "audit log shutting down: dropping events that could not be written"
                        );
                        break;
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        batch.clear();
    }

    /// One retention chunk; due again at once while older records remain,
    /// else in an hour (in a minute after a failure).
    fn prune(&mut self) {
        let Some(retention) = self.retention else {
            return;
        };
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = super::now_ms().saturating_sub(keep_ms);
        let why = format!("retention {}", retention::duration_text(retention));
        self.next_prune = Instant::now() + PRUNE_EVERY;
        match retention::prune(&mut self.conn, cutoff, retention::CHUNK, &why) {
            Ok(None) => {}
            Ok(Some(p)) => {
                tracing::info!(
                    removed = p.removed,
                    through_seq = p.anchor.through_seq,
                    "audit retention removed old records"
                );
                if p.more {
                    self.next_prune = Instant::now();
                }
                self.write_json(std::slice::from_ref(&p.record));
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit retention failed; trying again in a minute");
                self.next_prune = Instant::now() + PRUNE_RETRY;
            }
        }
    }

    fn write_json(&mut self, records: &[super::AuditRecord]) {
        let Some(out) = self.json.as_mut() else {
            return;
        };
        let mut buf = String::new();
        for r in records {
            buf.push_str(&record_json(r));
            buf.push('\n');
        }
        if let Err(e) = out.write_all(buf.as_bytes()).and_then(|()| out.flush()) {
            // The store is the record of truth; the JSON copy is best
            // effort.
            tracing::warn!(error = %e, "audit JSON lines write failed");
        }
    }
}
