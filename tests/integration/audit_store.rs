//! The audit store end to end: round trips, redaction, fingerprints, the
//! hash chain under tampering, fail-closed behaviour, draining on
//! shutdown, and query filters. No database server needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock::audit::{
    self, AuditDecision, AuditEvent, AuditLog, AuditUnavailable, EventKind, Filter, TamperKind,
};
use rusqlite::Connection;

fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    (dir, path)
}

fn stmt(session: u64, identity: &str, sql: &str, decision: AuditDecision) -> AuditEvent {
    AuditEvent {
        time_ms: 1_700_000_000_000 + session as i64,
        session,
        kind: EventKind::Statement,
        identity: identity.into(),
        user: Some("alice".into()),
        model: Some("gpt-x".into()),
        declared_model: Some("claude-y".into()),
        client_addr: Some("127.0.0.1:5555".into()),
        application_name: Some("agent/claude-y".into()),
        protocol: "postgres".into(),
        target: "main".into(),
        database: Some("demo".into()),
        statement: Some(sql.into()),
        decision: Some(decision),
        rule: (decision != AuditDecision::Allow).then(|| "p.deny".into()),
        reason: None,
        masked_columns: None,
        rows: Some(3),
        duration_us: Some(1234),
    }
}

/// Writes `n` allowed statements and returns the path.
fn filled(n: usize) -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = store();
    let log = AuditLog::open(&path, 10_000).expect("open");
    for i in 0..n {
        let sql = format!("select * from t where id = {i}");
        log.record(stmt(1, "agent", &sql, AuditDecision::Allow))
            .expect("record");
    }
    log.shutdown();
    (dir, path)
}

fn rw(path: &Path) -> Connection {
    Connection::open(path).expect("open rw")
}

#[test]
fn records_round_trip_with_fingerprint() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 100).expect("open");
    let mut connect = AuditEvent::now(EventKind::Connect, 7);
    connect.identity = "agent".into();
    connect.protocol = "mysql".into();
    connect.target = "db".into();
    let mut e = stmt(
        7,
        "agent",
        "SELECT * FROM t WHERE a = 'x' AND b = 42",
        AuditDecision::Masked,
    );
    e.masked_columns = Some("t.ssn,t.email".into());
    log.record(connect.clone()).expect("record");
    log.record(e.clone()).expect("record");
    log.shutdown();

    let got = audit::query(&path, &Filter::default()).expect("query");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].seq, 1);
    assert_eq!(got[0].event, connect);
    assert_eq!(got[0].fingerprint, None);
    assert_eq!(got[1].event, e);
    assert_eq!(
        got[1].fingerprint.as_deref(),
        Some("select * from t where a = ? and b = ?")
    );
    assert_eq!(got[1].prev_hash, got[0].hash);
    assert_eq!(got[0].prev_hash, audit::chain::GENESIS);
    let table = audit::format_table(&got);
    assert!(table.contains("2023-11-14T22:13:20.007Z"));
    // The agent, its model and the person it acts for.
    assert!(table.contains("agent/gpt-x (alice)"), "{table}");
    let json = audit::format_json(&got);
    assert_eq!(json.lines().count(), 2);
    let v: serde_json::Value =
        serde_json::from_str(json.lines().nth(1).unwrap_or("")).expect("json");
    assert_eq!(v["decision"], "masked");
    assert_eq!(v["masked_columns"], "t.ssn,t.email");
}

#[test]
fn pii_and_secrets_are_redacted() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 100).expect("open");
    let sql = "select * from users where email = 'bob@example.com' \
               or card = '4111 1111 1111 1111' or key = 'AKIAIOSFODNN7EXAMPLE'";
    log.record(stmt(1, "agent", sql, AuditDecision::Allow))
        .expect("record");
    log.shutdown();
    let got = audit::query(&path, &Filter::default()).expect("query");
    let stored = got[0].event.statement.as_deref().unwrap_or("");
    assert!(!stored.contains("bob@example.com"), "{stored}");
    assert!(!stored.contains("4111"), "{stored}");
    assert!(!stored.contains("AKIAIOSFODNN7EXAMPLE"), "{stored}");
    assert!(stored.contains("[email]") && stored.contains("[card]") && stored.contains("[secret]"));
    let fp = got[0].fingerprint.as_deref().unwrap_or("");
    assert_eq!(
        fp,
        "select * from users where email = ? or card = ? or key = ?"
    );
    assert!(audit::verify(&path).expect("verify").is_intact());
}

#[test]
fn json_lines_mirror_the_store() {
    let (dir, path) = store();
    let json_path = dir.path().join("audit.jsonl");
    let file = std::fs::File::create(&json_path).expect("create");
    let log = AuditLog::with_json_lines(&path, 100, Box::new(file)).expect("open");
    for i in 0..5 {
        log.record(stmt(i, "agent", "select 1", AuditDecision::Allow))
            .expect("record");
    }
    log.shutdown();
    let text = std::fs::read_to_string(&json_path).expect("read");
    assert_eq!(text.lines().count(), 5);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        assert_eq!(v["fingerprint"], "select ?");
    }
}

#[test]
fn reopen_continues_the_chain() {
    let (_dir, path) = filled(3);
    let log = AuditLog::open(&path, 10).expect("reopen");
    log.record(stmt(2, "agent", "select 2", AuditDecision::Allow))
        .expect("record");
    log.shutdown();
    let report = audit::verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.records, 4);
}

#[test]
fn chain_verifies_untouched() {
    let (_dir, path) = filled(10);
    let report = audit::verify(&path).expect("verify");
    assert!(report.is_intact(), "{:?}", report.problem);
    assert_eq!(report.records, 10);
    assert!(audit::cli_verify(&path).is_ok());
}

#[test]
fn chain_detects_edit() {
    let (_dir, path) = filled(10);
    rw(&path)
        .execute("UPDATE audit SET statement = 'select 1' WHERE seq = 3", [])
        .expect("update");
    let report = audit::verify(&path).expect("verify");
    let t = report.problem.expect("tampering found");
    assert_eq!((t.seq, t.kind), (3, TamperKind::Edited));
    assert_eq!(report.records, 2);
    let err = audit::cli_verify(&path).expect_err("must fail");
    assert!(err.to_string().contains("seq 3"), "{err}");
}

#[test]
fn chain_detects_edit_of_enum_column() {
    let (_dir, path) = filled(5);
    // A value airlock never writes must still break the hash.
    rw(&path)
        .execute("UPDATE audit SET decision = 'bogus' WHERE seq = 4", [])
        .expect("update");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (4, TamperKind::Edited));
}

#[test]
fn chain_detects_deletion() {
    let (_dir, path) = filled(10);
    rw(&path)
        .execute("DELETE FROM audit WHERE seq = 5", [])
        .expect("delete");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (6, TamperKind::Deleted));
    assert!(t.detail.contains("record 5"), "{}", t.detail);
}

#[test]
fn chain_detects_deletion_with_renumbering() {
    let (_dir, path) = filled(10);
    let c = rw(&path);
    c.execute("DELETE FROM audit WHERE seq = 5", [])
        .expect("delete");
    c.execute("UPDATE audit SET seq = seq + 1000 WHERE seq > 5", [])
        .expect("shift");
    c.execute("UPDATE audit SET seq = seq - 1001 WHERE seq > 1000", [])
        .expect("shift back");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (5, TamperKind::Deleted));
}

#[test]
fn chain_detects_appended_copy() {
    let (_dir, path) = filled(10);
    let cols = "time_ms, session, kind, identity, user, model, declared_model, client_addr, \
                application_name, protocol, target, database, statement, fingerprint, decision, \
                rule, reason, masked_columns, rows, duration_us, prev_hash, hash";
    rw(&path)
        .execute(
            &format!("INSERT INTO audit (seq, {cols}) SELECT 11, {cols} FROM audit WHERE seq = 2"),
            [],
        )
        .expect("insert");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (11, TamperKind::Inserted));
}

#[test]
fn chain_detects_forged_insertion_in_the_middle() {
    let (_dir, path) = filled(10);
    let c = rw(&path);
    c.execute("UPDATE audit SET seq = seq + 1000 WHERE seq >= 4", [])
        .expect("shift");
    c.execute("UPDATE audit SET seq = seq - 999 WHERE seq > 1000", [])
        .expect("shift back");
    // A forged record at seq 4 with a correct hash chained after seq 3.
    let rec3 = audit::query(&path, &Filter::default())
        .expect("query")
        .into_iter()
        .find(|r| r.seq == 3)
        .expect("seq 3");
    let mut forged = rec3.event.clone();
    forged.statement = Some("select 'nothing to see'".into());
    let fp = Some("select ?".to_string());
    let hash = audit::chain::record_hash(&rec3.hash, &forged, fp.as_deref());
    c.execute(
        "INSERT INTO audit (seq, time_ms, session, kind, identity, protocol, target, statement, \
         fingerprint, decision, rule, user, model, declared_model, client_addr, \
         application_name, database, rows, duration_us, prev_hash, hash) \
         SELECT 4, time_ms, session, kind, identity, protocol, target, ?1, ?2, decision, rule, \
         user, model, declared_model, client_addr, application_name, database, rows, \
         duration_us, ?3, ?4 FROM audit WHERE seq = 3",
        rusqlite::params![forged.statement, fp, rec3.hash, hash],
    )
    .expect("insert");
    let t = audit::verify(&path)
        .expect("verify")
        .problem
        .expect("found");
    assert_eq!((t.seq, t.kind), (4, TamperKind::Inserted), "{t}");
}

#[test]
fn open_error_when_path_is_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(AuditLog::open(dir.path(), 1).is_err());
}

#[test]
fn fails_closed_when_queue_is_full() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 1).expect("open");
    // Hold the write lock so the writer blocks in its first batch.
    let mut blocker = rw(&path);
    let tx = blocker
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .expect("lock");
    // A queue of 1 waits for room past one event (backpressure) and
    // loses events past its headroom (1,024 more).
    let results: Vec<_> = (0..1100)
        .map(|i| log.record(stmt(i, "agent", "select 1", AuditDecision::Allow)))
        .collect();
    assert!(
        results.contains(&Err(AuditUnavailable::QueueFull)),
        "{:?}",
        results.iter().filter(|r| r.is_err()).count()
    );
    assert!(log.queue_full());
    assert!(log.queue_depth() <= 1 + 1024);
    tx.rollback().expect("unlock");
    log.shutdown();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let stored = audit::query(&path, &Filter::default())
        .expect("query")
        .len();
    assert_eq!(stored, accepted);
    assert!(audit::verify(&path).expect("verify").is_intact());
}

#[test]
fn fails_closed_when_writer_fails() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 100).expect("open");
    rw(&path)
        .execute_batch("DROP TABLE audit")
        .expect("drop table");
    log.record(stmt(1, "agent", "select 1", AuditDecision::Allow))
        .expect("queued before the writer noticed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.is_healthy() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!log.is_healthy());
    assert_eq!(
        log.record(stmt(2, "agent", "select 2", AuditDecision::Allow)),
        Err(AuditUnavailable::WriterFailed)
    );
    // Shutdown gives up on the failing batch instead of hanging.
    let started = Instant::now();
    log.shutdown();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn record_after_shutdown_is_refused() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 10).expect("open");
    log.shutdown();
    assert_eq!(
        log.record(stmt(1, "agent", "select 1", AuditDecision::Allow)),
        Err(AuditUnavailable::ShutDown)
    );
}

#[test]
fn shutdown_drains_the_queue() {
    let (_dir, path) = filled(1000);
    let got = audit::query(&path, &Filter::default()).expect("query");
    assert_eq!(got.len(), 1000);
    assert_eq!(got.last().map(|r| r.seq), Some(1000));
    assert!(audit::verify(&path).expect("verify").is_intact());
}

#[test]
fn filters() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 100).expect("open");
    log.record(stmt(1, "a1", "select 1", AuditDecision::Allow))
        .expect("r");
    log.record(stmt(1, "a1", "drop table t", AuditDecision::Block))
        .expect("r");
    log.record(stmt(2, "a2", "delete from t", AuditDecision::WouldBlock))
        .expect("r");
    let mut other_rule = stmt(3, "a2", "select ssn from t", AuditDecision::Approval);
    other_rule.rule = Some("p.approve".into());
    other_rule.model = Some("other".into());
    other_rule.declared_model = None;
    log.record(other_rule).expect("r");
    let mut bobs = stmt(4, "a1", "select 4", AuditDecision::Masked);
    bobs.user = Some("bob".into());
    log.record(bobs).expect("r");
    log.shutdown();

    let seqs = |f: Filter| -> Vec<i64> {
        audit::query(&path, &f)
            .expect("query")
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(seqs(Filter::default()), [1, 2, 3, 4, 5]);
    assert_eq!(
        seqs(Filter {
            blocked: true,
            ..Filter::default()
        }),
        [2, 3, 4]
    );
    assert_eq!(
        seqs(Filter {
            identity: Some("a2".into()),
            ..Filter::default()
        }),
        [3, 4]
    );
    // The person the agent acts for.
    assert_eq!(
        seqs(Filter {
            user: Some("bob".into()),
            ..Filter::default()
        }),
        [5]
    );
    assert_eq!(
        seqs(Filter {
            rule: Some("p.deny".into()),
            ..Filter::default()
        }),
        [2, 3, 5]
    );
    // A policy's id finds every rule it holds; only whole parts match.
    assert_eq!(
        seqs(Filter {
            rule: Some("p".into()),
            ..Filter::default()
        }),
        [2, 3, 4, 5]
    );
    assert_eq!(
        seqs(Filter {
            rule: Some("p.de".into()),
            ..Filter::default()
        }),
        Vec::<i64>::new()
    );
    assert_eq!(
        seqs(Filter {
            session: Some(1),
            ..Filter::default()
        }),
        [1, 2]
    );
    // Events are stamped 1_700_000_000_000 + session.
    assert_eq!(
        seqs(Filter {
            since: Some(1_700_000_000_003),
            ..Filter::default()
        }),
        [4, 5]
    );
    assert_eq!(
        seqs(Filter {
            model: Some("other".into()),
            ..Filter::default()
        }),
        [4]
    );
    assert_eq!(
        seqs(Filter {
            model: Some("claude-y".into()),
            ..Filter::default()
        }),
        [] as [i64; 0],
        "a model a client declares beside a configured one does not count (red-team finding)"
    );
    assert_eq!(
        seqs(Filter {
            limit: Some(2),
            ..Filter::default()
        }),
        [4, 5]
    );
    assert_eq!(
        seqs(Filter {
            blocked: true,
            identity: Some("a1".into()),
            ..Filter::default()
        }),
        [2]
    );
    let replay = audit::session_records(&path, 1).expect("replay");
    assert_eq!(replay.len(), 2);
    assert!(audit::cli_replay(&path, 99).is_err());
    assert!(audit::cli_log(&path, Filter::default(), true).is_ok());
}

#[test]
fn query_missing_store_is_an_error() {
    let (_dir, path) = store();
    assert!(audit::query(&path, &Filter::default()).is_err());
    assert!(audit::verify(&path).is_err());
}

#[test]
fn query_while_the_writer_runs() {
    let (_dir, path) = store();
    let log = AuditLog::open(&path, 100).expect("open");
    for i in 0..3 {
        log.record(stmt(i, "agent", "select 1", AuditDecision::Allow))
            .expect("record");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while seen < 3 && Instant::now() < deadline {
        seen = audit::query(&path, &Filter::default())
            .expect("query")
            .len();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(seen, 3);
    assert!(audit::verify(&path).expect("verify").is_intact());
    log.shutdown();
}

/// A restarted airlock numbers its sessions after the highest one in the
/// log, so a session id names one session whatever the restarts (operator
/// finding: `airlock replay 1` mixed a session from before a restart with
/// one from after it).
#[test]
fn session_ids_go_on_after_a_restart() {
    let (_dir, path) = store();
    let far = 1_000_000_000;
    let log = AuditLog::open(&path, 10).expect("open");
    log.record(stmt(far, "agent", "select 1", AuditDecision::Allow))
        .expect("record");
    log.shutdown();
    let log = AuditLog::open(&path, 10).expect("open again");
    let next = audit::session::next_session_id();
    assert!(next > far, "{next}");
    log.shutdown();
}

/// A statement's text is kept up to 64 KiB, then its length and SHA-256
/// (DoS finding: 400 refused 8 MiB statements made a 3.4 GB log, and one
/// console poll of them took gigabytes of memory).
#[test]
fn long_statements_keep_their_head_length_and_digest() {
    let short = audit::session::sql_text(b"SELECT 1");
    assert_eq!(&*short, "SELECT 1");
    let mut long = b"SELECT '".to_vec();
    long.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
    long.push(b'\'');
    let kept = audit::session::sql_text(&long);
    assert!(
        kept.len() < audit::session::MAX_TEXT + 300,
        "{}",
        kept.len()
    );
    assert!(kept.starts_with("SELECT 'xxx"));
    assert!(
        kept.contains(&format!("[airlock: {} bytes, shown are", long.len())),
        "{}",
        &kept[kept.len() - 300..]
    );
    assert!(kept.contains("sha256 "));
    // Padding does not hide what the statement does (review finding): a
    // long comment before it, or between its parts.
    let padded = format!(
        "UPDATE orders SET status = 'refunded' /*{}*/ WHERE id > 0 /*{}*/",
        "a".repeat(70_000),
        "b".repeat(70_000)
    );
    let kept = audit::session::sql_text(padded.as_bytes());
    assert!(
        kept.contains("fingerprint: update orders set status = ? where id > ?"),
        "{}",
        &kept[kept.len() - 300..]
    );
    // A cut inside a multi-byte character does not panic.
    let wide = "é".repeat(audit::session::MAX_TEXT);
    let kept = audit::session::sql_text(wide.as_bytes());
    assert!(kept.contains("sha256"));
}

/// No session may hold more than the queue's size (DoS finding: one session
/// pipelining statements without a Sync reserved the whole queue, and
/// other agents' statements were refused). Its own next statement is
/// refused; another session's is not.
#[test]
fn one_session_holds_at_most_the_queue_size() {
    use airlock::audit::session::{SessionAudit, SessionInfo};
    use std::sync::Arc;
    let (_dir, path) = store();
    let log = Arc::new(AuditLog::open(&path, 1000).expect("open"));
    let principal = airlock::policy::Principal {
        identity: "agent".into(),
        target: "db".into(),
        ..Default::default()
    };
    let session = |id| {
        SessionAudit::with_info(
            Arc::clone(&log),
            true,
            &SessionInfo {
                session: id,
                principal: &principal,
                client: "127.0.0.1:1",
                application_name: None,
                declared_model: None,
                protocol: "postgres",
                database: "db",
            },
        )
    };
    let (hog, other) = (session(1), session(2));
    assert_eq!(log.session_share_limit(), 1000);
    let held: Vec<_> = (0..1000).map(|_| hog.reserve()).collect();
    let refusal = hog.ready().expect_err("the hog's next statement");
    assert!(
        refusal.contains("this session holds 1000 records"),
        "{refusal}"
    );
    assert!(hog.queue_full());
    // The headroom above the queue's size is left for the others, who do
    // not wait for records still to come.
    other.ready().expect("another session's statement");
    assert!(!other.queue_full());
    drop(held);
    hog.ready().expect("its records are written or released");
    log.shutdown();
}
