//! Audit log: every connection and statement, tamper-evident, in SQLite.
//!
//! * [`event`]: [`AuditEvent`] (what sessions report) and [`AuditRecord`]
//!   (what is stored: statement redacted, fingerprint, chain hashes).
//! * [`writer`]: [`AuditLog`], a non-blocking queue in front of a writer
//!   thread that writes batches in one transaction each.
//! * [`store`]: the SQLite schema (WAL, `synchronous=NORMAL`).
//! * [`chain`]: the sha256 hash chain; [`verify`] checks it.
//! * [`retention`]: removing the oldest records, the chain anchored at the
//!   last one removed.
//! * [`fingerprint`]: statements with literals replaced by `?`.
//! * [`query`] and [`format`]: `airlock log` / `airlock replay` output.
//! * [`session`]: what proxy sessions (Postgres and MySQL) record.
//!
//! The CLI entry points are [`cli_log`], [`cli_verify`] and [`cli_replay`].

use std::path::{Path, PathBuf};

pub mod chain;
pub mod event;
pub mod fingerprint;
pub mod format;
pub mod passwords;
pub mod query;
pub mod retention;
pub mod session;
mod store;
pub mod verify;
pub mod writer;

pub use event::{now_ms, redact, AuditDecision, AuditEvent, AuditRecord, EventKind};
pub use fingerprint::fingerprint;
pub use format::{format_json, format_table, rfc3339};
pub use query::{query, session_records, Filter};
pub use store::Anchor;
pub use verify::{verify, Tamper, TamperKind, VerifyReport};
pub use writer::AuditLog;

/// The store could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("audit store {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
}

/// An event could not be queued: the session should refuse the statement
/// when audit is configured to fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditUnavailable {
    #[error("airlock: audit log unavailable (queue full); statement refused")]
    QueueFull,
    #[error("airlock: audit log unavailable (writer failing); statement refused")]
    WriterFailed,
    #[error("airlock: audit log unavailable (shutting down); statement refused")]
    ShutDown,
}

/// `airlock log`: prints matching records as a table or JSON lines;
/// returns how many.
pub fn cli_log(path: &Path, filter: Filter, json: bool) -> anyhow::Result<usize> {
    let records = query(path, &filter)?;
    let out = if json {
        format_json(&records)
    } else {
        format_table(&records)
    };
    print!("{out}");
    Ok(records.len())
}

/// `airlock audit verify`: checks the hash chain; an error naming the
/// first tampered record (so a non-zero exit) if it is broken.
pub fn cli_verify(path: &Path) -> anyhow::Result<()> {
    let report = verify(path)?;
    match &report.problem {
        None => {
            println!(
                "audit log {}: {} records, chain intact, head {}",
                path.display(),
                report.records,
                report.head
            );
            if let Some(a) = &report.pruned {
                println!(
                    "records up to seq {} were removed by retention (last at {}); \
                     the chain is checked from that record's hash {}",
                    a.through_seq,
                    rfc3339(a.time_ms),
                    a.hash
                );
            }
            Ok(())
        }
        Some(t) => anyhow::bail!(
            "audit log {} has been tampered with: {t} ({} records verified before it)",
            path.display(),
            report.records
        ),
    }
}

/// `airlock audit prune --older-than D`: removes the records older than
/// `older_than`, in chunks, each leaving a record that says so; works
/// beside a running airlock.
pub fn cli_prune(path: &Path, older_than: std::time::Duration) -> anyhow::Result<()> {
    // The config's floor too (review finding: `--older-than 1s` emptied
    // the log of everything but the newest second).
    if older_than < retention::MIN_RETENTION {
        anyhow::bail!(
            "--older-than {}: keep at least {} of history",
            retention::duration_text(older_than),
            retention::duration_text(retention::MIN_RETENTION)
        );
    }
    if !path.is_file() {
        return Err(AuditError::Missing(path.to_path_buf()).into());
    }
    let mut conn = store::open_rw(path)?;
    let keep_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(keep_ms);
    let why = format!(
        "airlock audit prune --older-than {}",
        retention::duration_text(older_than)
    );
    let mut removed = 0u64;
    let mut through = None;
    while let Some(p) = retention::prune(&mut conn, cutoff, retention::CHUNK, &why)? {
        removed += p.removed;
        through = Some(p.anchor.through_seq);
        if !p.more {
            break;
        }
    }
    match through {
        None => println!(
            "audit log {}: no records older than {}",
            path.display(),
            rfc3339(cutoff)
        ),
        Some(seq) => println!(
            "audit log {}: removed {removed} records older than {} (through seq {seq}); \
             `airlock audit verify` checks the chain from there",
            path.display(),
            rfc3339(cutoff)
        ),
    }
    Ok(())
}

/// `airlock replay SESSION`: every record of one session, as a table.
pub fn cli_replay(path: &Path, session: u64) -> anyhow::Result<()> {
    let records = session_records(path, session)?;
    if records.is_empty() {
        anyhow::bail!(
            "no audit records for session {session} in {}",
            path.display()
        );
    }
    print!("{}", format_table(&records));
    Ok(())
}
