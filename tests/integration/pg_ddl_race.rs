//! Masking on the Postgres path when *another* session's DDL lands while a
//! statement is already planned and forwarded: `SELECT a FROM vx` planned
//! against `vx` = `name AS a` waits for the lock of a session that has
//! replaced `vx` in an open transaction, and runs against the new
//! definition once it commits. Airlock counts every session's DDL from the
//! moment it is forwarded or seen until its transaction is seen to end,
//! and refuses (40001) a masked result that starts while another session's
//! DDL is unsettled, or after the catalog moved under its plan (see
//! `src/pg/ddl_fence.rs`). The fixture is `pg_catalog_changes`'s.

use std::time::Duration;

use crate::common::*;
use crate::pg_catalog_changes::{
    assert_clean, assert_usable, builder, env, env_with, flatten_rows, simple,
};
use crate::pg_own_ddl::{REPLACE_VX, RESTORE_VX};

const READ_VX: &str = "SELECT a FROM vx ORDER BY a";

/// What airlock says of a result it refuses.
const REFUSED: &str =
    "is being changed in another session's open transaction, while this statement ran";

/// How A reads `vx`.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// Simple protocol.
    Simple,
    /// tokio-postgres `query` (Parse/Describe/Sync, then Bind/Execute/Sync).
    Extended,
}

/// `sql` over `way`: rows (`|` after each value) or the error.
async fn read(c: &tokio_postgres::Client, sql: &str, way: Way) -> Vec<u8> {
    match way {
        Way::Simple => simple(c, sql).await,
        Way::Extended => match c.query(sql, &[]).await {
            Ok(rows) => flatten_rows(&rows),
            Err(e) => format!("{e:?}").into_bytes(),
        },
    }
}

/// Waits until some backend waits for a lock (A's read, behind B's DDL).
async fn wait_for_lock_wait(env: &Env) {
    let direct = env.direct().await;
    for _ in 0..200 {
        let row = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("pg_stat_activity");
        if row.get::<_, i64>(0) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the read never waited for the DDL's lock");
}

/// The red team's race: B replaces `vx` in an open transaction, A's read
/// of `vx` (planned against the old definition) waits for B's lock, B
/// commits. A's result must not carry the reversed emails: it is refused
/// (or masked), A's session stays usable, and its next read is masked.
/// Returns whether A's racing read was refused.
async fn race(env: &Env, b: &tokio_postgres::Client, way: Way) -> bool {
    let a = env.agent().await;
    assert_eq!(read(&a, READ_VX, way).await, b"Alice|Bob|", "before");
    b.batch_execute("BEGIN").await.expect("B: BEGIN");
    b.batch_execute(REPLACE_VX).await.expect("B: replace vx");
    let reader = tokio::spawn(async move {
        let got = read(&a, READ_VX, way).await;
        (a, got)
    });
    wait_for_lock_wait(env).await;
    b.batch_execute("COMMIT").await.expect("B: COMMIT");
    let (a, got) = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("A's read finishes once B committed")
        .expect("reader task");
    let text = String::from_utf8_lossy(&got).into_owned();
    assert_clean(&got, &format!("{way:?}: A's read racing B's DDL"));
    let refused = text.contains(REFUSED);
    assert!(
        refused || text.contains('*') || text.contains("REDACTED") || !text.contains('@'),
        "{way:?}: neither refused nor masked: {text}"
    );
    if refused {
        assert!(text.contains("40001"), "{way:?}: {text}");
    }
    // Usable, and the next read follows the new definition, masked.
    let again = read(&a, READ_VX, way).await;
    assert_clean(&again, &format!("{way:?}: A's next read"));
    assert!(
        !String::from_utf8_lossy(&again).contains(REFUSED) && !again.is_empty(),
        "{way:?}: {}",
        String::from_utf8_lossy(&again)
    );
    assert_usable(&a, "after the race").await;
    b.batch_execute(RESTORE_VX).await.expect("B: restore vx");
    assert_eq!(read(&a, READ_VX, way).await, b"Alice|Bob|", "restored");
    refused
}

/// The red team's case: both connections are the masked agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_masked_session_ddl_does_not_leak_into_a_waiting_read() {
    let mut env = env().await;
    let b = env.agent().await;
    assert!(
        race(&env, &b, Way::Simple).await,
        "the simple read ran against the new view: refused"
    );
    drop(b);
    env.stop().await;
}

/// DDL by a trusted (unmasked) identity must not leak into a masked
/// session's waiting read either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_unmasked_session_ddl_does_not_leak_into_a_waiting_read() {
    let mut env = env().await;
    let b = builder(&env).await;
    assert!(
        race(&env, &b, Way::Simple).await,
        "the simple read ran against the new view: refused"
    );
    drop(b);
    env.stop().await;
}

/// The extended protocol for A (whose Describe already waits for the
/// lock): refused or masked, never clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_extended_read_does_not_leak() {
    let mut env = env().await;
    let b = env.agent().await;
    race(&env, &b, Way::Extended).await;
    let b = builder(&env).await;
    race(&env, &b, Way::Extended).await;
    drop(b);
    env.stop().await;
}

/// Without DDL anywhere, nothing is refused, over either protocol and with
/// several sessions at once. While another session holds DDL in an open
/// transaction (even on an unrelated object), masked results are refused
/// with 40001 (the availability cost); once it ends, they are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_results_are_refused_only_while_ddl_is_unsettled() {
    let mut env = env().await;
    let a = env.agent().await;
    let c = env.agent().await;
    for _ in 0..5 {
        for way in [Way::Simple, Way::Extended] {
            assert_eq!(read(&a, READ_VX, way).await, b"Alice|Bob|");
            assert_eq!(
                read(&c, "SELECT name FROM customers ORDER BY id", way).await,
                b"Alice|Bob|"
            );
        }
    }
    assert_usable(&a, "no DDL").await;

    for b in [env.agent().await, builder(&env).await] {
        b.batch_execute("BEGIN; CREATE VIEW unrelated AS SELECT 1 AS one")
            .await
            .expect("B: DDL in an open transaction");
        for way in [Way::Simple, Way::Extended] {
            let got = read(&a, "SELECT name FROM customers ORDER BY id", way).await;
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains(REFUSED) && text.contains("40001"),
                "{way:?}: refused while B's DDL is unsettled: {text}"
            );
        }
        b.batch_execute("ROLLBACK").await.expect("B: ROLLBACK");
        for way in [Way::Simple, Way::Extended] {
            assert_eq!(read(&a, READ_VX, way).await, b"Alice|Bob|", "{way:?}");
        }
        assert_usable(&a, "after B's transaction ended").await;
    }

    // A session that ends with its DDL's transaction open settles it.
    let b = builder(&env).await;
    b.batch_execute("BEGIN; CREATE VIEW unrelated AS SELECT 1 AS one")
        .await
        .expect("B: DDL in an open transaction");
    drop(b);
    assert!(
        reads_again(&a, READ_VX, Duration::from_millis(50)).await,
        "B's session ended: its DDL no longer counts"
    );
    assert_usable(&a, "after B's session ended").await;
    drop((a, c));
    env.stop().await;
}

/// Sends one Query over a raw connection.
async fn send_query(raw: &mut crate::common::raw::RawClient, sql: &str) {
    let mut out = bytes::BytesMut::new();
    crate::common::raw::encode_message(&serde_json::json!({ "Query": sql }).to_string(), &mut out);
    raw.send(&out).await;
}

/// A request in flight when the session reloads its snapshot (another
/// session's DDL settled meanwhile, and the session sent its next
/// statement) was planned against the old one: its result is refused, even
/// though the catalog has not moved since the reload. The next request,
/// planned against the new snapshot, is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_result_planned_before_a_reload_is_refused() {
    let mut env = env().await;
    // The first request will wait for a lock on this table, taken on a
    // direct connection (not through airlock: not counted). Made before
    // the sessions start, so that their snapshot has it (a relation the
    // snapshot lacks is refused).
    let direct = env.direct().await;
    direct
        .batch_execute("CREATE TABLE gate (x int); GRANT SELECT ON gate TO PUBLIC")
        .await
        .expect("gate");
    // Both sessions start (and the catalog is loaded) before the lock.
    let mut raw = crate::common::raw::RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    send_query(&mut raw, "SELECT 1").await;
    raw.until_ready(1).await;
    let b = builder(&env).await;
    direct
        .batch_execute("BEGIN; LOCK TABLE gate IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    send_query(
        &mut raw,
        "SELECT name FROM customers, (SELECT count(*) FROM gate) g ORDER BY id",
    )
    .await;
    wait_for_lock_wait(&env).await;
    b.batch_execute("CREATE VIEW unrelated AS SELECT 1 AS one")
        .await
        .expect("B: DDL in autocommit");
    send_query(&mut raw, "SELECT name FROM customers ORDER BY id").await;
    // Time to reload the snapshot before the first request goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    direct.batch_execute("ROLLBACK").await.expect("unlock");
    let frames = tokio::time::timeout(Duration::from_secs(20), raw.until_ready(2))
        .await
        .expect("both requests answered");
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.as_bytes().to_vec()).collect();
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches(REFUSED).count(), 1, "the first result: {text}");
    let rows = frames.iter().filter(|f| f.tag() == b'D').count();
    assert_eq!(rows, 2, "the second result only: {text}");
    let first_ready = frames
        .iter()
        .position(|f| f.tag() == b'Z')
        .expect("a ReadyForQuery");
    assert!(
        frames[..first_ready].iter().all(|f| f.tag() != b'D'),
        "nothing of the first result: {text}"
    );
    drop((raw, b, direct));
    env.stop().await;
}

/// The red team's write race: A's `INSERT INTO loot SELECT a FROM vx`,
/// planned against `vx` = `name AS a`, waited for the lock of B's open
/// `CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a ...` and, once
/// B committed, copied the reversed emails into `loot`, which nothing
/// masks: a write has no result to refuse. While another session's DDL is
/// unsettled, a masked session's writes are refused at once, over either
/// protocol and whether B is masked or not; once it has ended they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_writes_are_refused_beside_another_sessions_ddl() {
    const INSERT: &str = "INSERT INTO loot SELECT a FROM vx";
    const REFUSED_WRITE: &str = "no write runs while another session's DDL";
    let mut env = env().await;
    let a = env.agent().await;
    a.batch_execute("CREATE TABLE loot (v text)").await.unwrap();
    let prepared = a.prepare(INSERT).await.unwrap();
    let copied = || async {
        let direct = env.direct().await;
        let row = direct
            .query_one("SELECT count(*) FROM loot", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    for (who, b) in [
        ("masked", env.agent().await),
        ("unmasked", builder(&env).await),
    ] {
        // A's snapshot current first: a reload while B holds its lock on
        // vx would wait for it (pg_get_viewdef).
        assert_eq!(simple(&a, "SELECT 1").await, b"1|");
        b.batch_execute("BEGIN").await.expect("B: BEGIN");
        b.batch_execute(REPLACE_VX).await.expect("B: replace vx");
        let got = tokio::time::timeout(Duration::from_secs(5), simple(&a, INSERT))
            .await
            .expect("refused at once, not left waiting for B's lock");
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(text.contains(REFUSED_WRITE), "{who}, simple: {text}");
        let got = tokio::time::timeout(Duration::from_secs(5), a.execute(&prepared, &[]))
            .await
            .expect("refused at once, not left waiting for B's lock");
        let text = format!("{got:?}");
        assert!(text.contains(REFUSED_WRITE), "{who}, prepared: {text}");
        // Nor anything that keeps what it read beyond its result
        // (re-check findings: a cursor fetched after the DDL, a function
        // that keeps its argument).
        for sql in [
            "DECLARE c CURSOR WITH HOLD FOR SELECT a FROM vx",
            "BEGIN; DECLARE c CURSOR FOR SELECT a FROM vx",
            "SELECT setseed(ascii(a) / 256.0) FROM vx",
            "EXPLAIN ANALYZE SELECT a FROM vx",
            // Second re-check: a query whose WITH entry writes.
            "WITH x AS (INSERT INTO loot SELECT a FROM vx RETURNING 1) SELECT 1",
            "WITH x AS (DELETE FROM loot WHERE v = 'x' RETURNING 1) SELECT count(*) FROM x",
        ] {
            let got = tokio::time::timeout(Duration::from_secs(5), simple(&a, sql))
                .await
                .expect("refused at once");
            let text = String::from_utf8_lossy(&got).into_owned();
            assert!(text.contains(REFUSED_WRITE), "{who}, {sql}: {text}");
        }
        a.batch_execute("ROLLBACK").await.ok();
        // Plain reads still run; their results are refused while B's DDL
        // is open (see above).
        let got = simple(&a, "SELECT 1 AS one FROM loot").await;
        assert!(!String::from_utf8_lossy(&got).contains(REFUSED_WRITE));
        b.batch_execute("COMMIT").await.expect("B: COMMIT");
        b.batch_execute(RESTORE_VX).await.expect("B: restore vx");
        assert_eq!(copied().await, 0, "{who}: nothing was copied");
    }
    // B's transaction has ended: writes run again.
    simple(&a, INSERT).await;
    a.execute(&prepared, &[])
        .await
        .expect("prepared INSERT runs");
    assert_eq!(copied().await, 4);
    assert_usable(&a, "after the writes").await;
    drop(a);
    env.stop().await;
}

/// The race left by refusing writes beside unsettled DDL: a write checked
/// before another session's DDL is counted may run after it, here
/// pipelined behind a slow statement (A sends both at once; B replaces
/// `vx` in autocommit while the slow one runs). Counted, B's DDL waits
/// until A's requests checked before it have been answered, so A's INSERT
/// copies what `vx` computed when it was planned, and B's DDL then runs:
/// over the simple and the extended protocol (B), and with B's DDL and
/// another session's DDL sent together (neither waits for the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_ddl_waits_for_writes_checked_before_it() {
    let mut env = env().await;
    let a0 = env.agent().await;
    a0.batch_execute("CREATE TABLE loot (v text)")
        .await
        .unwrap();
    drop(a0);
    for extended in [false, true] {
        let b = env.agent().await;
        let c = env.agent().await;
        // A's snapshot loaded before the pipeline (a reload would not wait).
        let mut a = crate::common::raw::RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
        send_query(&mut a, "SELECT 1").await;
        a.until_ready(1).await;
        let pipeline = tokio::spawn(async move {
            let mut out = bytes::BytesMut::new();
            for sql in [
                "SELECT count(*) FROM generate_series(1, 4000000)",
                "INSERT INTO loot SELECT a FROM vx",
            ] {
                crate::common::raw::encode_message(
                    &serde_json::json!({ "Query": sql }).to_string(),
                    &mut out,
                );
            }
            a.send(&out).await;
            a.until_ready(2).await;
            a
        });
        // A's requests are checked and forwarded; the slow one runs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let replaced = match extended {
            false => b.batch_execute(REPLACE_VX).await.map(|_| ()),
            true => b.execute(REPLACE_VX, &[]).await.map(|_| ()),
        };
        replaced.expect("B's DDL runs once A's requests have been answered");
        let a = pipeline.await.expect("A's pipeline");
        let text = String::from_utf8_lossy(&a.received).into_owned();
        assert!(text.contains("INSERT 0 2"), "A's INSERT ran: {text}");
        let direct = env.direct().await;
        let copied: Vec<String> = direct
            .query("SELECT v FROM loot ORDER BY v", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            copied,
            ["Alice", "Bob"],
            "extended: {extended}: copied as planned, not reversed emails"
        );
        direct.batch_execute("DELETE FROM loot").await.unwrap();
        // Two sessions' DDL at once: either may be refused (the other's
        // came meanwhile), neither waits out the grace period for the
        // other, and each runs when sent again.
        let started = std::time::Instant::now();
        let (rb, rc) = tokio::join!(
            b.batch_execute(RESTORE_VX),
            c.batch_execute("CREATE TABLE IF NOT EXISTS scratch (x int)")
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "DDL waited for DDL: {:?} {rb:?} {rc:?}",
            started.elapsed()
        );
        for (r, c, sql) in [
            (rb, &b, RESTORE_VX),
            (rc, &c, "CREATE TABLE IF NOT EXISTS scratch (x int)"),
        ] {
            if let Err(e) = r {
                assert!(format!("{e:?}").contains("run it again"), "{e:?}");
                c.batch_execute(sql).await.expect("DDL sent again runs");
            }
        }
    }
    env.stop().await;
}

/// Whether `sql` (simple protocol) reads `Alice|Bob|` within 100 tries,
/// `pause` apart.
async fn reads_again(c: &tokio_postgres::Client, sql: &str, pause: Duration) -> bool {
    for _ in 0..100 {
        if read(c, sql, Way::Simple).await == b"Alice|Bob|" {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    false
}

/// `sql`, over both protocols, is refused (55P03) for a lock that keeps the
/// catalog from being read, within 30 s.
async fn refused_for_the_lock(c: &tokio_postgres::Client, sql: &str, who: &str) {
    for way in [Way::Simple, Way::Extended] {
        let got = tokio::time::timeout(Duration::from_secs(30), read(c, sql, way))
            .await
            .unwrap_or_else(|_| panic!("{who}: held until the lock is released"));
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.contains("E55P03") && got.contains("locked by another transaction"),
            "{who}, {way:?}: {got}"
        );
    }
}

/// The catalog snapshot could not be read while another transaction held
/// a lock on a view (`pg_get_viewdef` waits for it): every masking session
/// of the target waited for that transaction to end, held in the one load
/// they share (found while bounding the load: a migration left open by
/// hand held them all). Now the load leaves a view locked when it starts
/// out: statements reading it are refused, naming the lock, and the rest
/// run, over both protocols and at a Bind; once the lock is gone, reading
/// the view asks for a fresh snapshot. A lock the load meets anyway (here
/// on `pg_rewrite`, which `pg_get_viewdef` reads) makes it give up after
/// its lock_timeout: the statements that need it are refused (55P03),
/// the sessions go on, and a masked login meanwhile starts a session whose
/// statements are refused the same way until the catalog can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_a_view_locked_elsewhere_refuses_statements_not_sessions() {
    let mut env = env().await;
    let a = env.agent().await;
    assert_eq!(read(&a, READ_VX, Way::Simple).await, b"Alice|Bob|");
    const CUSTOMERS: &str = "SELECT name FROM customers ORDER BY id";
    let prepared = a.prepare(CUSTOMERS).await.expect("prepare");
    let builder = builder(&env).await;
    let b = env.direct().await;
    b.batch_execute("CREATE TABLE other (x int); CREATE VIEW vo AS SELECT x FROM other")
        .await
        .expect("a view over another table");
    let within = |what: &'static str| {
        move |r: Result<Vec<u8>, tokio::time::error::Elapsed>| {
            r.unwrap_or_else(|_| panic!("{what}: held until B's transaction ends"))
        }
    };
    let text = |got: &[u8]| String::from_utf8_lossy(got).into_owned();

    // Outside airlock: a transaction keeps vx locked, and a table that
    // vo reads (`pg_get_viewdef` locks those too; review finding).
    b.batch_execute("BEGIN").await.expect("B: BEGIN");
    b.batch_execute(RESTORE_VX).await.expect("B: lock vx");
    b.batch_execute("LOCK TABLE other IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("B: lock other");
    // DDL through airlock: every snapshot of the target is stale.
    builder
        .batch_execute("CREATE TABLE moved_on (x int)")
        .await
        .expect("builder: DDL");
    for way in [Way::Simple, Way::Extended] {
        let got = within("customers")(
            tokio::time::timeout(Duration::from_secs(30), read(&a, CUSTOMERS, way)).await,
        );
        assert_eq!(got, b"Alice|Bob|", "{way:?}: {}", text(&got));
        for view in [READ_VX, "SELECT x FROM vo"] {
            let got = within("a locked view")(
                tokio::time::timeout(Duration::from_secs(30), read(&a, view, way)).await,
            );
            assert!(
                text(&got).contains("view is locked by another transaction")
                    && text(&got).contains("mask.locked-view"),
                "{way:?}: {view}: {}",
                text(&got)
            );
        }
    }
    assert_eq!(
        flatten_rows(&a.query(&prepared, &[]).await.expect("bound")),
        b"Alice|Bob|"
    );
    b.batch_execute("ROLLBACK").await.expect("B: ROLLBACK");
    // Reading the locked view asked for a fresh snapshot (at most every
    // 5 s): it reads again once the lock is gone.
    assert!(
        reads_again(&a, READ_VX, Duration::from_millis(100)).await,
        "vx reads again once the lock was released"
    );

    // A lock the load cannot see coming: it gives up.
    builder
        .batch_execute("DROP TABLE moved_on")
        .await
        .expect("builder: DDL");
    // Only a superuser may lock a catalog table.
    let mut root = env.direct_config();
    root.user(env.pg.superuser())
        .password(env.pg.superuser_password());
    let b = connect(root).await;
    b.batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_rewrite IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("B: lock pg_rewrite");
    // Statements that plan nothing still run: a session can end its
    // transaction (review finding), over both protocols.
    a.batch_execute("BEGIN")
        .await
        .expect("BEGIN without a snapshot");
    a.batch_execute("ROLLBACK")
        .await
        .expect("ROLLBACK without a snapshot");
    a.execute("BEGIN", &[]).await.expect("extended BEGIN");
    a.execute("ROLLBACK", &[]).await.expect("extended ROLLBACK");
    refused_for_the_lock(&a, CUSTOMERS, "pg_rewrite").await;
    let bound = tokio::time::timeout(Duration::from_secs(30), a.query(&prepared, &[]))
        .await
        .expect("Bind refused, not held");
    assert!(format!("{bound:?}").contains("E55P03"), "Bind: {bound:?}");
    // A masked login meanwhile: the session starts (before, the login
    // failed), and its statements are refused as in running sessions.
    let late = tokio::time::timeout(Duration::from_secs(30), env.agent())
        .await
        .expect("a masked login is not held");
    refused_for_the_lock(&late, CUSTOMERS, "a new session").await;
    late.batch_execute("BEGIN; ROLLBACK")
        .await
        .expect("the new session ends a transaction without a snapshot");
    // A guardrail's refusal meanwhile keeps its own SQLSTATE, not the
    // catalog's "try again" (red-team finding).
    for way in [Way::Simple, Way::Extended] {
        let got = read(&late, "SET search_path = public", way).await;
        assert!(
            text(&got).contains("E42501") && text(&got).contains("builtin.search-path"),
            "{way:?}: {}",
            text(&got)
        );
    }
    b.batch_execute("ROLLBACK").await.expect("B: ROLLBACK");
    // A failed load is shared for a second; then the next one reads it.
    assert!(
        reads_again(&a, CUSTOMERS, Duration::from_millis(50)).await,
        "the catalog is read once the lock was released"
    );
    assert_usable(&a, "once the lock was released").await;
    assert_usable(&late, "the session that logged in without a snapshot").await;
    assert_eq!(
        flatten_rows(&a.query(&prepared, &[]).await.expect("bound again")),
        b"Alice|Bob|"
    );
    drop((a, late, builder));
    env.stop().await;
}

/// The backend PIDs of airlock's catalog loads that wait for a lock. Not
/// through the view `pg_stat_activity`: a new connection's first use of a
/// view reads `pg_rewrite`, which the test locks.
async fn loads_waiting(direct: &tokio_postgres::Client) -> Vec<i32> {
    direct
        .query(
            "SELECT pid FROM pg_stat_get_activity(NULL) \
             WHERE application_name = 'airlock catalog' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A load that gives up on a lock is tried once more at once (red-team
/// finding: an agent allowed `LOCK TABLE` timed its lock to land after the
/// load read `pg_locks`, and so refused every masked statement of the
/// target on demand; a migration starting during a load did the same).
/// The next try reads `pg_locks` again and leaves a view locked meanwhile
/// out. Here the lock is on `pg_rewrite` (the window after `pg_locks` is
/// read cannot be hit on purpose): the first try gives up, a second load
/// waits, the lock is released while it does, and the statement reads
/// rather than being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_a_load_that_gave_up_on_a_lock_is_tried_again() {
    let mut env = env().await;
    let a = env.agent().await;
    const CUSTOMERS: &str = "SELECT name FROM customers ORDER BY id";
    assert_eq!(read(&a, CUSTOMERS, Way::Simple).await, b"Alice|Bob|");
    let builder = builder(&env).await;
    builder
        .batch_execute("CREATE TABLE moved_on (x int)")
        .await
        .expect("builder: DDL");
    let mut root = env.direct_config();
    root.user(env.pg.superuser())
        .password(env.pg.superuser_password());
    let b = connect(root).await;
    let direct = env.direct().await;
    assert!(loads_waiting(&direct).await.is_empty());
    b.batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_rewrite IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("B: lock pg_rewrite");
    let reader = tokio::spawn(async move {
        let got = read(&a, CUSTOMERS, Way::Extended).await;
        (a, got)
    });
    // The first try waits, then a second one (another connection).
    let mut first = None;
    let mut tried_again = false;
    for _ in 0..400 {
        let waiting = loads_waiting(&direct).await;
        match first {
            None => first = waiting.first().copied(),
            Some(pid) if waiting.iter().any(|p| *p != pid) => {
                tried_again = true;
                break;
            }
            Some(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(first.is_some(), "the load never waited for the lock");
    assert!(tried_again, "the load was not tried again");
    b.batch_execute("ROLLBACK").await.expect("B: ROLLBACK");
    let (a, got) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the read finishes once the lock is released")
        .expect("reader task");
    assert_eq!(got, b"Alice|Bob|", "{}", String::from_utf8_lossy(&got));
    assert_usable(&a, "after the second try").await;
    drop((a, builder));
    env.stop().await;
}

/// A masked agent that leaves DDL in an open transaction has every other
/// masked session's results refused (40001) for as long as it stays open
/// (red-team finding; documented). A policy's
/// `idle_in_transaction_timeout` bounds that: the server ends the idle
/// session, its DDL with it, and the others read again. The agent cannot
/// lift the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_race_an_idle_transaction_holding_ddl_is_ended_by_the_policy() {
    let mut env = env_with("idle_in_transaction_timeout = \"1s\"").await;
    const CUSTOMERS: &str = "SELECT name FROM customers ORDER BY id";
    let holder = env.agent().await;
    let reader = env.agent().await;
    assert_eq!(read(&reader, CUSTOMERS, Way::Simple).await, b"Alice|Bob|");
    for (sql, rule) in [
        (
            "SET idle_in_transaction_session_timeout = 0",
            "rw.idle-in-transaction-timeout",
        ),
        (
            "BEGIN; SET LOCAL \"idle_in_transaction_session_timeout\" TO DEFAULT",
            "rw.idle-in-transaction-timeout",
        ),
        (
            "SELECT set_config('idle_in_transaction_session_timeout', '0', false)",
            "rw.idle-in-transaction-timeout",
        ),
    ] {
        let got = simple(&holder, sql).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.contains(rule), "{sql}: {got}");
    }
    holder.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    // RESET restores the value the session started with: the policy's.
    holder
        .batch_execute("RESET idle_in_transaction_session_timeout")
        .await
        .expect("RESET");
    let shown = simple(&holder, "SHOW idle_in_transaction_session_timeout").await;
    assert_eq!(shown, b"1s|", "the limit is still in force");
    holder
        .batch_execute("BEGIN; CREATE TABLE held (x int)")
        .await
        .expect("DDL in a transaction");
    let got = read(&reader, CUSTOMERS, Way::Simple).await;
    assert!(
        String::from_utf8_lossy(&got).contains("E40001"),
        "refused while the DDL is open: {}",
        String::from_utf8_lossy(&got)
    );
    // The server ends the holder's session after a second idle.
    assert!(
        reads_again(&reader, CUSTOMERS, Duration::from_millis(100)).await,
        "the others read again once the idle transaction was ended"
    );
    let ended = holder.batch_execute("SELECT 1").await;
    assert!(ended.is_err(), "the idle session was ended: {ended:?}");
    assert_usable(&reader, "after the idle session was ended").await;
    drop((holder, reader));
    env.stop().await;
}
