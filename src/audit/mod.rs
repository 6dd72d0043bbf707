//! Audit log: every connection and statement, tamper-evident, in SQLite.
//!
//! * [`event`]: [`AuditEvent`] (what sessions report) and [`AuditRecord`]
//!   (what is stored: statement redacted, fingerprint, chain hashes).
//! * [`writer`]: [`AuditLog`], a non-blocking queue in front of a writer
//!   thread that writes batches in one transaction each.
//! * [`store`]: the SQLite schema (WAL, `synchronous=NORMAL`).
//! * [`chain`]: the sha256 hash chain; [`verify`] checks it.
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
pub mod session;
mod store;
pub mod verify;
pub mod writer;

pub use event::{now_ms, redact, AuditDecision, AuditEvent, AuditRecord, EventKind};
pub use fingerprint::fingerprint;
pub use format::{format_json, format_table, rfc3339};
pub use query::{query, session_records, Filter};
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
            Ok(())
        }
        Some(t) => anyhow::bail!(
            "audit log {} has been tampered with: {t} ({} records verified before it)",
            path.display(),
            report.records
        ),
    }
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
