//! Audit retention: the oldest records removed, by the writer
//! (`[audit] retention`) and by `airlock audit prune`, the chain still
//! verified from its anchor, and every other way of removing records or
//! moving the anchor still caught. No database server needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock::audit::{
    self, retention, AuditDecision, AuditEvent, AuditLog, EventKind, Filter, TamperKind,
};
use rusqlite::Connection;

const DAY_MS: i64 = 24 * 3600 * 1000;
const NINETY_DAYS: Duration = Duration::from_secs(90 * 24 * 3600);

fn event(time_ms: i64, sql: &str) -> AuditEvent {
    AuditEvent {
        time_ms,
        session: 7,
        kind: EventKind::Statement,
        identity: "agent".into(),
        protocol: "postgres".into(),
        target: "main".into(),
        statement: Some(sql.into()),
        decision: Some(AuditDecision::Allow),
        ..AuditEvent::default()
    }
}

/// A store with `old` records from 200 days ago, then `new` from now.
fn store(old: usize, new: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path, 10_000).expect("open");
    let now = audit::now_ms();
    for i in 0..old {
        log.record(event(now - 200 * DAY_MS, &format!("select {i}")))
            .expect("record");
    }
    for i in 0..new {
        log.record(event(now, &format!("select {}", 1000 + i)))
            .expect("record");
    }
    log.shutdown();
    (dir, path)
}

fn rw(path: &Path) -> Connection {
    Connection::open(path).expect("open rw")
}

fn kinds(path: &Path) -> Vec<(i64, EventKind)> {
    audit::query(path, &Filter::default())
        .expect("query")
        .into_iter()
        .map(|r| (r.seq, r.event.kind))
        .collect()
}

#[test]
fn the_writer_removes_records_past_retention_and_the_chain_still_verifies() {
    let (_dir, path) = store(5, 3);
    let log = AuditLog::with_retention(&path, 100, None, Some(NINETY_DAYS)).expect("open");
    log.record(event(audit::now_ms(), "select 'after'"))
        .expect("record");
    log.shutdown();

    let report = audit::verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.problem);
    let anchor = report.pruned.expect("an anchor");
    assert_eq!(anchor.through_seq, 5);
    // Three new records, the record of the prune, and one more.
    assert_eq!(report.records, 5);
    let got = kinds(&path);
    assert_eq!(got.first().map(|k| k.0), Some(6));
    let pruned = audit::query(&path, &Filter::default())
        .expect("query")
        .into_iter()
        .find(|r| r.event.kind == EventKind::Pruned)
        .expect("a record of the prune");
    let reason = pruned.event.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("retention 90d: removed 5 records older than "),
        "{reason}"
    );
    assert_eq!(pruned.event.rows, Some(5));
    assert!(audit::cli_verify(&path).is_ok());

    // Opened again with nothing old left, it removes nothing more.
    let log = AuditLog::with_retention(&path, 100, None, Some(NINETY_DAYS)).expect("reopen");
    log.shutdown();
    assert_eq!(kinds(&path), got);
}

#[test]
fn a_store_whose_every_record_is_old_keeps_only_the_record_of_the_prune() {
    let (_dir, path) = store(4, 0);
    // Less than an hour is refused, as in the config (review finding).
    let e = audit::cli_prune(&path, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("keep at least 1h"), "{e}");
    audit::cli_prune(&path, NINETY_DAYS).expect("prune");
    let got = kinds(&path);
    assert_eq!(got, vec![(5, EventKind::Pruned)]);
    let report = audit::verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.problem);
    // A writer opened on it continues the chain.
    let log = AuditLog::open(&path, 10).expect("open");
    log.record(event(audit::now_ms(), "select 1"))
        .expect("record");
    log.shutdown();
    let report = audit::verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.records, 2);
    // Session ids go on after those of the removed records (review
    // finding: they started again at 1).
    let sessions: Vec<u64> = audit::query(&path, &Filter::default())
        .expect("query")
        .into_iter()
        .map(|r| r.event.session)
        .collect();
    assert_eq!(sessions, vec![0, 7]);
    assert!(
        audit::session::next_session_id() > 7,
        "the writer numbers sessions after the removed ones"
    );
}

#[test]
fn pruning_in_chunks_beside_a_running_writer_keeps_one_chain() {
    let (_dir, path) = store(40, 0);
    // A running airlock keeps writing while `airlock audit prune` works:
    // each append reads the head in its own write transaction.
    let log = AuditLog::open(&path, 10_000).expect("open");
    let mut conn = rw(&path);
    let cutoff = audit::now_ms() - DAY_MS;
    let mut rounds = 0;
    while let Some(p) = retention::prune(&mut conn, cutoff, 3, "test").expect("prune") {
        log.record(event(audit::now_ms(), "select 'meanwhile'"))
            .expect("record");
        rounds += 1;
        if !p.more {
            break;
        }
    }
    log.shutdown();
    assert_eq!(rounds, 14, "40 records in chunks of 3");
    let report = audit::verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.pruned.map(|a| a.through_seq), Some(40));
}

/// A pruned store (5 old records removed), and its first kept seq.
fn pruned() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = store(5, 4);
    audit::cli_prune(&path, NINETY_DAYS).expect("prune");
    assert!(audit::verify(&path).expect("verify").is_intact());
    (dir, path)
}

#[test]
fn records_removed_past_the_anchor_are_caught() {
    let (_dir, path) = pruned();
    rw(&path)
        .execute("DELETE FROM audit WHERE seq = 6", [])
        .expect("delete");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (7, TamperKind::Deleted), "{t}");
}

#[test]
fn an_anchor_moved_past_removed_records_is_caught() {
    let (_dir, path) = pruned();
    // Remove records 6 and 7 and move the anchor onto 7, as a prune would
    // have, but without the record a prune leaves.
    let c = rw(&path);
    let hash: String = c
        .query_row("SELECT hash FROM audit WHERE seq = 7", [], |r| r.get(0))
        .expect("hash");
    c.execute("DELETE FROM audit WHERE seq <= 7", [])
        .expect("delete");
    c.execute("UPDATE audit_pruned SET through_seq = 7, hash = ?1", [hash])
        .expect("move the anchor");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!(t.kind, TamperKind::Deleted, "{t}");
    assert!(t.detail.contains("retention record"), "{t}");
    assert!(audit::cli_verify(&path).is_err());
}

#[test]
fn an_anchor_removed_shows_the_removed_records() {
    let (_dir, path) = pruned();
    rw(&path)
        .execute("DELETE FROM audit_pruned", [])
        .expect("delete");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (6, TamperKind::Deleted), "{t}");
    assert!(t.detail.contains("records 1 to 5"), "{t}");
}

#[test]
fn the_record_of_a_prune_cannot_be_removed_or_edited_unseen() {
    let (_dir, path) = pruned();
    let seq: i64 = rw(&path)
        .query_row(
            "SELECT seq FROM audit WHERE kind = 'audit_pruned'",
            [],
            |r| r.get(0),
        )
        .expect("seq");
    let c = rw(&path);
    c.execute(
        "UPDATE audit SET reason = replace(reason, 'removed 5', 'removed 0') WHERE seq = ?1",
        [seq],
    )
    .expect("edit");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (seq, TamperKind::Edited), "{t}");
}
