//! Retention: removing the oldest records without breaking the chain.
//!
//! A prune removes the records older than a cutoff from the start of the
//! log, up to the first newer one (a record's time is when its statement
//! was judged or ended, so times are not strictly in `seq` order). In the
//! same transaction it keeps the last removed record's `seq` and `hash` as
//! the chain's *anchor* (table `audit_pruned`), and appends a record of
//! kind `audit_pruned` that names them. `airlock audit verify` then checks
//! the chain from the anchor, and checks the anchor against the newest
//! such record, so records removed by anyone else still show as deleted.
//!
//! The writer prunes at start and every hour when `[audit] retention` is
//! set; `airlock audit prune --older-than` does it by hand. A large backlog
//! goes in chunks of [`CHUNK`] records, one transaction each, so that the
//! writer's batches are not held up behind one long delete.

use rusqlite::{params, Connection, TransactionBehavior};

use super::event::{AuditEvent, AuditRecord, EventKind};
use super::format::rfc3339;
use super::store::{self, Anchor};
use super::AuditError;

/// Most records removed in one transaction: far less than the writer's
/// lock wait on slow storage (review: 50,000 rows took up to 0.65 s of
/// the writer's wait on a local disk, with the wait at 2 s).
pub const CHUNK: i64 = 10_000;

/// The least history retention keeps (`[audit] retention` and `airlock
/// audit prune --older-than`): less would remove records before anyone
/// read them.
pub const MIN_RETENTION: std::time::Duration = std::time::Duration::from_secs(3600);

/// What one prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Records removed by this prune.
    pub removed: u64,
    /// The new anchor: the last record removed.
    pub anchor: Anchor,
    /// The record that says so.
    pub record: AuditRecord,
    /// Whether more records older than the cutoff remain (a chunk's limit
    /// stopped it).
    pub more: bool,
}

/// Removes up to `chunk` of the oldest records whose time is before
/// `cutoff_ms`, stopping at the first newer record; `None` when there is
/// nothing to remove. `why` says what asked for it ("retention 90d"), for
/// the record it appends.
pub fn prune(
    conn: &mut Connection,
    cutoff_ms: i64,
    chunk: i64,
    why: &str,
) -> Result<Option<Pruned>, AuditError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (first, last): (Option<i64>, Option<i64>) =
        tx.query_row("SELECT min(seq), max(seq) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    let first_kept: Option<i64> = tx.query_row(
        "SELECT min(seq) FROM audit WHERE time_ms >= ?1",
        params![cutoff_ms],
        |r| r.get(0),
    )?;
    let old_through = first_kept.map_or(last, |s| s - 1);
    if old_through < first {
        return Ok(None);
    }
    let through = old_through.min(first.saturating_add(chunk.max(1) - 1));
    let hash: String = tx.query_row(
        "SELECT hash FROM audit WHERE seq = ?1",
        params![through],
        |r| r.get(0),
    )?;
    let max_session: Option<i64> = tx.query_row(
        "SELECT max(session) FROM audit WHERE seq <= ?1",
        params![through],
        |r| r.get(0),
    )?;
    let before = store::anchor(&tx)?.map_or(0, |a| a.max_session);
    let removed = tx.execute("DELETE FROM audit WHERE seq <= ?1", params![through])? as u64;
    let anchor = Anchor {
        through_seq: through,
        hash,
        time_ms: super::now_ms(),
        max_session: max_session.unwrap_or(0).max(before),
    };
    store::set_anchor(&tx, &anchor)?;
    let mut batch = vec![(note(&anchor, removed, cutoff_ms, why), None)];
    let record = store::append_in(&tx, &mut batch)?
        .pop()
        .ok_or_else(|| AuditError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
    tx.commit()?;
    Ok(Some(Pruned {
        removed,
        anchor,
        record,
        more: through < old_through,
    }))
}

/// The record a prune appends. Its reason names the anchor in a fixed form
/// that [`anchor_named`] reads back.
fn note(anchor: &Anchor, removed: u64, cutoff_ms: i64, why: &str) -> AuditEvent {
    let mut e = AuditEvent::now(EventKind::Pruned, 0);
    e.time_ms = anchor.time_ms;
    e.identity = "airlock".into();
    e.protocol = "airlock".into();
    e.target = "-".into();
    e.rows = Some(removed);
    e.reason = Some(
        format!(
            "{why}: removed {removed} records older than {}; through seq {} hash {}",
            rfc3339(cutoff_ms),
            anchor.through_seq,
            anchor.hash
        )
        .into(),
    );
    e
}

/// A retention period as an operator writes it: "90d", "36h", "90m", "45s".
pub fn duration_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The anchor an `audit_pruned` record's reason names.
pub fn anchor_named(reason: &str) -> Option<(i64, &str)> {
    let rest = &reason[reason.rfind("; through seq ")? + "; through seq ".len()..];
    let (seq, rest) = rest.split_once(" hash ")?;
    Some((seq.parse().ok()?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_its_anchor() {
        let a = Anchor {
            through_seq: 41,
            hash: "ab".repeat(32),
            time_ms: 1_700_000_000_000,
            max_session: 7,
        };
        let e = note(&a, 41, 1_600_000_000_000, "retention 90d");
        let reason = e.reason.as_deref().unwrap_or_default();
        assert_eq!(anchor_named(reason), Some((41, a.hash.as_str())));
        assert!(reason.starts_with("retention 90d: removed 41 records older than 2020-"));
        assert_eq!(anchor_named("removed nothing"), None);
    }

    #[test]
    fn durations_read_as_written() {
        use std::time::Duration;
        assert_eq!(duration_text(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(duration_text(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(duration_text(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
    }
}
