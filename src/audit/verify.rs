//! Verification: recompute the hash chain and report the first record that
//! was edited, inserted or deleted.
//!
//! Walking records in `seq` order, with `expected` the previous record's
//! hash (the genesis value for the first):
//!
//! * a gap in `seq` means records were deleted;
//! * a record whose link is right but whose own hash is wrong was edited;
//! * a record whose link is wrong was inserted if the chain goes on
//!   without it (the next record links to `expected`), if it links to an
//!   older record (a replayed copy), or if it and the record before it
//!   claim the same predecessor (a fork: the earlier one is the intruder);
//!   otherwise, if its own hash is right, its predecessor was deleted and
//!   the rest renumbered; otherwise it was edited.
//!
//! Once retention removed the oldest records, the walk starts from the
//! anchor it kept (the last removed record's `seq` and hash), and the
//! anchor must be the one that the newest `audit_pruned` record names:
//! records removed otherwise, or an anchor moved, show as deleted.
//!
//! Deleting the newest records cannot be seen from inside the file: compare
//! the printed head hash with one kept elsewhere.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use super::chain::{record_hash_raw, GENESIS};
use super::retention::anchor_named;
use super::store::{anchor, from_row, open_ro, Anchor, COLUMNS};
use super::{AuditError, AuditRecord, EventKind};

/// How a record was tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperKind {
    Edited,
    Inserted,
    Deleted,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    /// The record at fault (for a deletion: the first record after the
    /// gap).
    pub seq: i64,
    pub kind: TamperKind,
    pub detail: String,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            TamperKind::Edited => "edited",
            TamperKind::Inserted => "inserted",
            TamperKind::Deleted => "deleted",
        };
        write!(f, "record seq {}: {what}: {}", self.seq, self.detail)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked (up to the first problem).
    pub records: u64,
    /// The hash of the last good record (the genesis value if none).
    pub head: String,
    /// Where the chain starts when retention removed older records.
    pub pruned: Option<Anchor>,
    pub problem: Option<Tamper>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

struct Checked {
    record: AuditRecord,
    /// The hash recomputed from the stored fields.
    computed: String,
}

/// Recomputes the chain of the store at `path`.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let conn = open_ro(path)?;
    // One snapshot for the anchor and the records (review finding: a
    // prune committed between the two reads would look like deletion).
    conn.execute_batch("BEGIN")?;
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))?;
    let mut rows = stmt
        .query_map([], |row| {
            let kind: String = row.get(3)?;
            let decision: Option<String> = row.get(15)?;
            let record = from_row(row)?;
            let computed = record_hash_raw(
                &record.prev_hash,
                &record.event,
                &kind,
                decision.as_deref(),
                record.fingerprint.as_deref(),
            );
            Ok(Checked { record, computed })
        })?
        .peekable();

    let pruned = anchor(&conn)?;
    let mut report = VerifyReport {
        records: 0,
        head: pruned
            .as_ref()
            .map_or_else(|| GENESIS.to_owned(), |a| a.hash.clone()),
        pruned: pruned.clone(),
        problem: None,
    };
    let mut expected_seq = pruned.as_ref().map_or(1, |a| a.through_seq + 1);
    // The previous record's prev_hash, to spot forks.
    let mut last_prev: Option<String> = None;
    let mut seen: HashSet<String> = HashSet::new();
    seen.insert(report.head.clone());
    // The anchor that the newest `audit_pruned` record names, and its seq.
    let mut named: Option<(i64, Option<(i64, String)>)> = None;
    while let Some(row) = rows.next() {
        let Checked {
            record: r,
            computed,
        } = row?;
        let tamper = |kind, detail: String| Tamper {
            seq: r.seq,
            kind,
            detail,
        };
        if r.seq > expected_seq {
            let missing = if r.seq - expected_seq == 1 {
                format!("record {expected_seq} is missing")
            } else {
                format!("records {expected_seq} to {} are missing", r.seq - 1)
            };
            report.problem = Some(tamper(TamperKind::Deleted, missing));
            break;
        }
        if r.seq < expected_seq {
            let detail = format!("unexpected seq (expected {expected_seq})");
            report.problem = Some(tamper(TamperKind::Inserted, detail));
            break;
        }
        let self_ok = computed == r.hash;
        let link_ok = r.prev_hash == report.head;
        if link_ok && self_ok {
            if r.event.kind == EventKind::Pruned {
                let says = r.event.reason.as_deref().and_then(anchor_named);
                named = Some((r.seq, says.map(|(s, h)| (s, h.to_owned()))));
            }
            report.records += 1;
            last_prev = Some(std::mem::replace(&mut report.head, r.hash.clone()));
            seen.insert(r.hash);
            expected_seq += 1;
            continue;
        }
        report.problem = Some(if link_ok {
            tamper(
                TamperKind::Edited,
                "its contents do not match its hash".into(),
            )
        } else if self_ok && last_prev.as_deref() == Some(r.prev_hash.as_str()) {
            Tamper {
                seq: r.seq - 1,
                kind: TamperKind::Inserted,
                detail: format!("record {} links to the same predecessor", r.seq),
            }
        } else if rows
            .peek()
            .and_then(|n| n.as_ref().ok())
            .is_some_and(|n| n.record.prev_hash == report.head)
        {
            tamper(TamperKind::Inserted, "the next record links past it".into())
        } else if seen.contains(&r.prev_hash) {
            tamper(
                TamperKind::Inserted,
                "it links to an earlier record (a copy)".into(),
            )
        } else if self_ok {
            tamper(
                TamperKind::Deleted,
                "the record before it is missing (later records renumbered)".into(),
            )
        } else {
            tamper(
                TamperKind::Edited,
                "its contents and its link do not match".into(),
            )
        });
        break;
    }
    if report.problem.is_none() {
        report.problem = anchor_problem(pruned.as_ref(), named, expected_seq);
    }
    Ok(report)
}

/// An anchor that no `audit_pruned` record accounts for: records removed
/// (and the anchor moved) by something other than retention.
fn anchor_problem(
    anchor: Option<&Anchor>,
    named: Option<(i64, Option<(i64, String)>)>,
    next_seq: i64,
) -> Option<Tamper> {
    let a = anchor?;
    let first = a.through_seq + 1;
    let detail = match named {
        None => format!(
            "records up to {} were removed, and no retention record says so",
            a.through_seq
        ),
        Some((_, Some((seq, hash)))) if seq == a.through_seq && hash == a.hash => return None,
        Some((at, _)) => format!(
            "the chain is anchored at record {}, but the last retention record \
             (seq {at}) names another",
            a.through_seq
        ),
    };
    Some(Tamper {
        seq: first.min(next_seq),
        kind: TamperKind::Deleted,
        detail,
    })
}
