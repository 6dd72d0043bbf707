//! The SQLite store: one `audit` table, WAL mode, `synchronous=NORMAL`,
//! and `audit_pruned`, the chain's anchor once retention has removed the
//! oldest records (see [`super::retention`]).
//!
//! The writer owns airlock's read-write connection; `airlock audit prune`
//! may open another, so every append reads the chain's head inside its own
//! write transaction. `query`, `verify` and `replay` open read-only
//! connections.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use super::chain::{record_hash, GENESIS};
use super::event::{AuditDecision, AuditEvent, AuditRecord, EventKind};
use super::AuditError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    session INTEGER NOT NULL,
    kind TEXT NOT NULL,
    identity TEXT NOT NULL,
    user TEXT,
    model TEXT,
    declared_model TEXT,
    client_addr TEXT,
    application_name TEXT,
    protocol TEXT NOT NULL,
    target TEXT NOT NULL,
    database TEXT,
    statement TEXT,
    fingerprint TEXT,
    decision TEXT,
    rule TEXT,
    reason TEXT,
    masked_columns TEXT,
    rows INTEGER,
    duration_us INTEGER,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time_ms);
CREATE INDEX IF NOT EXISTS audit_session ON audit (session);
CREATE INDEX IF NOT EXISTS audit_identity ON audit (identity);
CREATE TABLE IF NOT EXISTS audit_pruned (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through_seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    max_session INTEGER NOT NULL DEFAULT 0
);
";

/// Every column, in the order [`from_row`] reads them.
pub(crate) const COLUMNS: &str = "seq, time_ms, session, kind, identity, user, model, \
    declared_model, client_addr, application_name, protocol, target, database, statement, \
    fingerprint, decision, rule, reason, masked_columns, rows, duration_us, prev_hash, hash";

/// How long a reader waits for a lock held by someone else.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a writer waits for the write lock before a batch fails (and
/// the log turns unhealthy): beside `airlock audit prune` or a backup
/// holding it, sessions wait (the queue's backpressure) rather than have
/// statements refused.
const WRITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) the store for writing.
pub(crate) fn open_rw(path: &Path) -> Result<Connection, AuditError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(WRITE_BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Opens an existing store read-only.
pub(crate) fn open_ro(path: &Path) -> Result<Connection, AuditError> {
    if !path.is_file() {
        return Err(AuditError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The chain head: the last `seq` and `hash`; for a store with no records,
/// the retention anchor (the last record removed), else 0 and the genesis
/// value.
pub(crate) fn head(conn: &Connection) -> Result<(i64, String), AuditError> {
    let mut stmt = conn.prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?;
    let mut rows = stmt.query([])?;
    if let Some(row) = rows.next()? {
        return Ok((row.get(0)?, row.get(1)?));
    }
    Ok(match anchor(conn)? {
        Some(a) => (a.through_seq, a.hash),
        None => (0, GENESIS.to_owned()),
    })
}

/// Where the chain starts once retention removed its oldest records: the
/// last removed record's `seq` and `hash`, and when it was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub through_seq: i64,
    pub hash: String,
    pub time_ms: i64,
    /// The highest session id among every record removed so far.
    pub max_session: i64,
}

/// The retention anchor, if records were ever removed (`None` as well for
/// a store written before retention existed, which has no such table).
pub(crate) fn anchor(conn: &Connection) -> Result<Option<Anchor>, AuditError> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'audit_pruned'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT through_seq, hash, time_ms, max_session FROM audit_pruned WHERE id = 1",
            [],
            |r| {
                Ok(Anchor {
                    through_seq: r.get(0)?,
                    hash: r.get(1)?,
                    time_ms: r.get(2)?,
                    max_session: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Records the anchor (inside the transaction that removes the records).
pub(crate) fn set_anchor(conn: &Connection, a: &Anchor) -> Result<(), AuditError> {
    conn.execute(
        "INSERT INTO audit_pruned (id, through_seq, hash, time_ms, max_session) \
         VALUES (1, ?1, ?2, ?3, ?4) \
         ON CONFLICT (id) DO UPDATE SET through_seq = excluded.through_seq, \
         hash = excluded.hash, time_ms = excluded.time_ms, max_session = excluded.max_session",
        params![a.through_seq, a.hash, a.time_ms, a.max_session],
    )?;
    Ok(())
}

/// The highest session id in the log (0 when empty): a restarted airlock
/// numbers its sessions after it, so that a session id names one session
/// in the log whatever the restarts (`airlock replay`, `--session`).
pub(crate) fn last_session(conn: &Connection) -> Result<u64, AuditError> {
    let last: Option<i64> = conn.query_row("SELECT max(session) FROM audit", [], |r| r.get(0))?;
    // Records removed by retention count too (review finding: after a
    // prune of every session's records, ids started again at 1).
    let removed = anchor(conn)?.map_or(0, |a| a.max_session);
    Ok(last.unwrap_or(0).max(removed).try_into().unwrap_or(0))
}

/// Appends prepared events in one write transaction, chaining from the
/// head it reads there. On success the events move into the returned
/// records and `batch` is left empty; on error nothing was written and
/// `batch` is unchanged, to be tried again.
pub(crate) fn append(
    conn: &mut Connection,
    batch: &mut Vec<(AuditEvent, Option<String>)>,
) -> Result<Vec<AuditRecord>, AuditError> {
    // IMMEDIATE: the write lock from the start, so that the head read here
    // is still the head when the records go in, whoever else writes.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let records = append_in(&tx, batch)?;
    tx.commit()?;
    Ok(records)
}

/// [`append`] inside a transaction the caller holds and commits: on error
/// `batch` is unchanged.
pub(crate) fn append_in(
    tx: &Connection,
    batch: &mut Vec<(AuditEvent, Option<String>)>,
) -> Result<Vec<AuditRecord>, AuditError> {
    let (head_seq, head_hash) = head(tx)?;
    let head = (head_seq, head_hash.as_str());
    let mut hashes = Vec::with_capacity(batch.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit (seq, time_ms, session, kind, identity, user, model, \
             declared_model, client_addr, application_name, protocol, target, database, \
             statement, fingerprint, decision, rule, reason, masked_columns, rows, \
             duration_us, prev_hash, hash) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19, ?20, ?21, ?22, ?23)",
        )?;
        let mut seq = head.0;
        for (e, fp) in batch.iter() {
            seq += 1;
            let prev = hashes.last().map_or(head.1, String::as_str);
            let hash = record_hash(prev, e, fp.as_deref());
            stmt.execute(params![
                seq,
                e.time_ms,
                e.session as i64,
                e.kind.as_str(),
                e.identity,
                e.user,
                e.model,
                e.declared_model,
                e.client_addr,
                e.application_name,
                e.protocol,
                e.target,
                e.database,
                e.statement,
                fp,
                e.decision.map(AuditDecision::as_str),
                e.rule,
                e.reason,
                e.masked_columns,
                e.rows.map(|r| r as i64),
                e.duration_us.map(|d| d as i64),
                prev,
                hash,
            ])?;
            hashes.push(hash);
        }
    }
    // Written (once the caller commits): the events move into their
    // records, uncopied.
    let mut seq = head.0;
    let mut prev = head.1.to_owned();
    Ok(batch
        .drain(..)
        .zip(hashes)
        .map(|((event, fingerprint), hash)| {
            seq += 1;
            AuditRecord {
                seq,
                event,
                fingerprint,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            }
        })
        .collect())
}

/// Reads a row selected with [`COLUMNS`].
pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let kind: String = row.get(3)?;
    let decision: Option<String> = row.get(15)?;
    let session: i64 = row.get(2)?;
    let rows: Option<i64> = row.get(19)?;
    let duration: Option<i64> = row.get(20)?;
    let event = AuditEvent {
        time_ms: row.get(1)?,
        session: session as u64,
        // An unknown kind cannot come from airlock; keep the row readable
        // (verification will flag it as edited).
        kind: EventKind::parse(&kind).unwrap_or_default(),
        identity: row.get(4)?,
        user: row.get(5)?,
        model: row.get(6)?,
        declared_model: row.get(7)?,
        client_addr: row.get(8)?,
        application_name: row.get(9)?,
        protocol: row.get(10)?,
        target: row.get(11)?,
        database: row.get(12)?,
        statement: row.get(13)?,
        decision: decision.as_deref().and_then(AuditDecision::parse),
        rule: row.get(16)?,
        reason: row.get(17)?,
        masked_columns: row.get(18)?,
        rows: rows.map(|r| r as u64),
        duration_us: duration.map(|d| d as u64),
    };
    Ok(AuditRecord {
        seq: row.get(0)?,
        event,
        fingerprint: row.get(14)?,
        prev_hash: row.get(21)?,
        hash: row.get(22)?,
    })
}
