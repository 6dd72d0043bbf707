//! Masking on the Postgres path behind a session's *own* DDL: airlock reads
//! the catalog on another connection, which does not see DDL until its
//! transaction ends, and a client may pipeline statements behind DDL the
//! server has not run yet. A masking session therefore waits for its DDL's
//! answer before planning what follows, and while the DDL's transaction is
//! open it runs only transaction and session statements (see
//! `src/pg/ddl_fence.rs`). The fixture (a masked `agent`, an unmasked
//! `builder`, and views `vx` = `name AS a`) is `pg_catalog_changes`'s.

use bytes::BytesMut;

use crate::common::raw::{encode_message, RawClient};
use crate::common::*;
use crate::pg_catalog_changes::{
    assert_clean, assert_usable, both_ways, builder, env, exec, flatten_rows, simple,
};

pub(crate) const REPLACE_VX: &str =
    "CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a FROM customers";
pub(crate) const RESTORE_VX: &str = "CREATE OR REPLACE VIEW vx AS SELECT name AS a FROM customers";

/// What `vx` returns to a direct (unproxied) connection.
async fn vx_directly(env: &Env) -> Vec<u8> {
    let rows = env
        .direct()
        .await
        .query("SELECT a FROM vx ORDER BY a", &[])
        .await
        .unwrap();
    flatten_rows(&rows)
}

/// The refusal airlock gives inside the DDL's open transaction.
fn assert_refused_after_ddl(got: &[u8], context: &str) {
    let text = String::from_utf8_lossy(got);
    assert!(
        text.contains("mask.unanalyzable") && text.contains("until its transaction ends"),
        "{context}: {text}"
    );
    assert_clean(got, context);
}

/// `BEGIN; CREATE OR REPLACE VIEW ...;` then a read of the view, in every
/// way a client can send it: refused until COMMIT or ROLLBACK. Transaction
/// and session statements still run, and after COMMIT the new definition
/// is masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_own_ddl_in_an_open_transaction_fences_what_follows() {
    let mut env = env().await;
    let c = env.agent().await;
    let stmt = c.prepare("SELECT a FROM vx ORDER BY a").await.unwrap();
    assert_eq!(exec(&c, &stmt).await, b"Alice|Bob|");

    // DDL over the simple protocol, then reads over both.
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute(REPLACE_VX).await.unwrap();
    for sql in ["SELECT a FROM vx", "SELECT * FROM vx", "SELECT 1"] {
        for got in both_ways(&c, sql).await {
            assert_refused_after_ddl(&got, sql);
        }
    }
    assert_refused_after_ddl(&exec(&c, &stmt).await, "prepared before the DDL");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(exec(&c, &stmt).await, b"Alice|Bob|", "rolled back");
    assert_eq!(
        simple(&c, "SELECT a FROM vx ORDER BY a").await,
        b"Alice|Bob|"
    );

    // DDL over the extended protocol (tokio-postgres's execute), likewise.
    c.batch_execute("BEGIN").await.unwrap();
    c.execute(REPLACE_VX, &[]).await.unwrap();
    assert_refused_after_ddl(&exec(&c, &stmt).await, "extended DDL, prepared read");
    for got in both_ways(&c, "SELECT a FROM vx").await {
        assert_refused_after_ddl(&got, "extended DDL, new read");
    }
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(vx_directly(&env).await, b"Alice|Bob|");

    // Transaction and session statements run in the DDL's transaction,
    // over either protocol; after COMMIT the new view is masked.
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute(REPLACE_VX).await.unwrap();
    c.batch_execute("SET LOCAL statement_timeout = 5000; SAVEPOINT s1; RELEASE SAVEPOINT s1")
        .await
        .unwrap();
    c.execute("SAVEPOINT s2", &[]).await.unwrap();
    c.execute("COMMIT", &[]).await.unwrap();
    assert_clean(&exec(&c, &stmt).await, "prepared, after the commit");
    for got in both_ways(&c, "SELECT a FROM vx").await {
        assert_clean(&got, "after the commit");
        assert!(!got.is_empty());
    }
    assert_usable(&c, "after the commit").await;
    drop(c);
    env.stop().await;
}

/// Sends `messages` (JSON, see `common::raw`) in one write and reads
/// until `ready` ReadyForQuery messages came back; returns what came back.
async fn pipeline(env: &Env, messages: &[String], ready: usize) -> Vec<u8> {
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = BytesMut::new();
    for m in messages {
        encode_message(m, &mut out);
    }
    raw.send(&out).await;
    let frames = raw.until_ready(ready).await;
    let ready_seen = frames.iter().filter(|f| f.tag() == b'Z').count();
    assert_eq!(ready_seen, ready, "the session answered every request");
    frames.iter().flat_map(|f| f.as_bytes().to_vec()).collect()
}

fn query(sql: &str) -> String {
    serde_json::json!({ "Query": sql }).to_string()
}

/// Parse, Bind and Execute of `sql` (unnamed), without Sync.
fn extended(sql: &str) -> [String; 4] {
    [
        serde_json::json!({ "Parse": { "name": "", "query": sql } }).to_string(),
        serde_json::json!({ "Bind": { "portal": "", "statement": "" } }).to_string(),
        serde_json::json!({ "Describe": { "kind": "P", "name": "" } }).to_string(),
        serde_json::json!({ "Execute": { "portal": "" } }).to_string(),
    ]
}

fn sync() -> String {
    r#"{"Sync": null}"#.into()
}

/// Counts the DataRows in raw backend frames.
fn data_rows(bytes: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if rest[0] == b'D' {
            n += 1;
        }
        rest = &rest[(1 + len).min(rest.len())..];
    }
    n
}

/// Statements a client pipelines behind DDL, without waiting for its
/// answer, are planned only once the DDL has run: in autocommit they are
/// masked against the new definition; inside the DDL's transaction or
/// batch they are refused, and nothing of the batch runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_statements_pipelined_behind_own_ddl_wait_for_it() {
    let mut env = env().await;
    let b = builder(&env).await;

    // Simple protocol, autocommit: the SELECT waits and is masked.
    let got = pipeline(&env, &[query(REPLACE_VX), query("SELECT a FROM vx")], 2).await;
    assert_clean(&got, "simple pipeline");
    assert_eq!(data_rows(&got), 2, "the read ran, masked");
    b.batch_execute(RESTORE_VX).await.unwrap();

    // Extended protocol, one batch each, autocommit: likewise.
    let mut msgs: Vec<String> = extended(REPLACE_VX).into();
    msgs.push(sync());
    msgs.extend(extended("SELECT a FROM vx"));
    msgs.push(sync());
    let got = pipeline(&env, &msgs, 2).await;
    assert_clean(&got, "extended pipeline");
    assert_eq!(data_rows(&got), 2, "the read ran, masked");
    b.batch_execute(RESTORE_VX).await.unwrap();

    // DDL and a read in one extended batch (one implicit transaction): the
    // read is refused, which aborts the batch, DDL included.
    let mut msgs: Vec<String> = extended(REPLACE_VX).into();
    msgs.extend(extended("SELECT a FROM vx"));
    msgs.push(sync());
    let got = pipeline(&env, &msgs, 1).await;
    assert_refused_after_ddl(&got, "one extended batch");
    assert_eq!(data_rows(&got), 0);
    assert_eq!(vx_directly(&env).await, b"Alice|Bob|", "nothing ran");

    // An explicit transaction, pipelined: the read is refused, ROLLBACK
    // runs, and the read after it sees the old view again.
    let got = pipeline(
        &env,
        &[
            query("BEGIN"),
            query(REPLACE_VX),
            query("SELECT a FROM vx"),
            query("ROLLBACK"),
            query("SELECT a FROM vx ORDER BY a"),
        ],
        5,
    )
    .await;
    assert_refused_after_ddl(&got, "pipelined transaction");
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("Alice") && text.contains("Bob"), "{text}");
    assert_eq!(vx_directly(&env).await, b"Alice|Bob|");

    // Pipelined with COMMIT: the read waits for the COMMIT's answer and is
    // masked against the committed view.
    let got = pipeline(
        &env,
        &[
            query("BEGIN"),
            query(REPLACE_VX),
            query("COMMIT"),
            query("SELECT a FROM vx"),
        ],
        4,
    )
    .await;
    assert_clean(&got, "pipelined commit");
    assert_eq!(data_rows(&got), 2, "the read ran, masked");
    b.batch_execute(RESTORE_VX).await.unwrap();

    // The same over the extended protocol, with the transaction statements
    // as prepared statements (as JDBC sends them).
    let mut msgs: Vec<String> = Vec::new();
    for sql in ["BEGIN", REPLACE_VX, "COMMIT", "SELECT a FROM vx"] {
        msgs.extend(extended(sql));
        msgs.push(sync());
    }
    let got = pipeline(&env, &msgs, 4).await;
    assert_clean(&got, "extended pipelined commit");
    assert_eq!(data_rows(&got), 2, "the read ran, masked");

    let c = env.agent().await;
    assert_usable(&c, "after the pipelines").await;
    drop((b, c));
    env.stop().await;
}

/// A statement prepared with SQL PREPARE before a view it reads changed:
/// EXECUTE would return what the view now computes, which masking cannot
/// tell (it plans EXECUTE as rows of unknown shape, matched by column
/// name). Once the catalog changed it is refused until prepared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sql_prepared_statement_is_refused_after_its_view_changed() {
    let mut env = env().await;
    let c = env.agent().await;
    c.batch_execute("PREPARE s1 AS SELECT a FROM vx ORDER BY a")
        .await
        .unwrap();
    assert_eq!(simple(&c, "EXECUTE s1").await, b"Alice|Bob|");
    let b = builder(&env).await;
    b.batch_execute(REPLACE_VX).await.unwrap();
    for sql in ["EXECUTE s1", "execute S1", "EXPLAIN ANALYZE EXECUTE s1"] {
        let got = simple(&c, sql).await;
        assert_clean(&got, sql);
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("airlock"), "{sql}: {text}");
    }
    // So is a Bind of it over the extended protocol. (vx is changed back:
    // replacing it with what it already is changes nothing.)
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = BytesMut::new();
    for m in [
        query("PREPARE s9 AS SELECT 1"),
        query(RESTORE_VX),
        r#"{"Bind": {"portal": "", "statement": "s9"}}"#.into(),
        r#"{"Execute": {"portal": ""}}"#.into(),
        sync(),
    ] {
        encode_message(&m, &mut out);
    }
    raw.send(&out).await;
    raw.until_ready(3).await;
    let text = String::from_utf8_lossy(&raw.received);
    assert!(
        text.contains("prepared (SQL PREPARE) before the catalog changed"),
        "{text}"
    );
    // The session's own DDL counts too.
    c.batch_execute("DEALLOCATE s1; PREPARE s2 AS SELECT a FROM vx")
        .await
        .unwrap();
    c.batch_execute(REPLACE_VX).await.unwrap();
    let got = simple(&c, "EXECUTE s2").await;
    assert_clean(&got, "own DDL");
    assert!(String::from_utf8_lossy(&got).contains("airlock"));
    c.batch_execute(RESTORE_VX).await.unwrap();
    // Prepared again against the current catalog, it runs.
    c.batch_execute("DEALLOCATE s2; PREPARE s2 AS SELECT a FROM vx ORDER BY a")
        .await
        .unwrap();
    assert_eq!(simple(&c, "EXECUTE s2").await, b"Alice|Bob|");
    assert_usable(&c, "after re-preparing").await;
    drop((b, c));
    env.stop().await;
}

/// A catalog reload that finds nothing changed keeps what was planned
/// against the snapshot in use: after DDL that touches no relation (an
/// index, a comment) and after a reload asked for by a name the snapshot
/// lacks, SQL-prepared statements still run, as does a statement
/// prepared over the extended protocol before. (Each reload used to
/// outdate them: an agent naming fresh nonexistent tables could have every
/// masking session of its target prepare its statements again, once every
/// 10 s.) A reload that finds a change still outdates them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_reload_that_finds_nothing_changed_keeps_prepared_statements() {
    let mut env = env().await;
    let c = env.agent().await;
    let stmt = c.prepare("SELECT a FROM vx ORDER BY a").await.unwrap();
    c.batch_execute("PREPARE k1 AS SELECT a FROM vx ORDER BY a")
        .await
        .unwrap();
    assert_eq!(simple(&c, "EXECUTE k1").await, b"Alice|Bob|");
    let b = builder(&env).await;
    for ddl in [
        "CREATE INDEX customers_name_k ON customers (name)",
        "COMMENT ON VIEW vx IS 'unchanged'",
        "DROP INDEX customers_name_k",
    ] {
        b.batch_execute(ddl).await.unwrap();
        assert_eq!(simple(&c, "EXECUTE k1").await, b"Alice|Bob|", "after {ddl}");
        assert_eq!(exec(&c, &stmt).await, b"Alice|Bob|", "after {ddl}");
    }
    // A name the snapshot lacks has the catalog read again.
    let got = simple(&c, "SELECT * FROM no_such_relation_k").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("is not in airlock's snapshot"), "{text}");
    assert_eq!(
        simple(&c, "EXECUTE k1").await,
        b"Alice|Bob|",
        "after the reload"
    );
    assert_eq!(exec(&c, &stmt).await, b"Alice|Bob|", "after the reload");
    // A change is still a change.
    b.batch_execute(REPLACE_VX).await.unwrap();
    let got = simple(&c, "EXECUTE k1").await;
    assert_clean(&got, "after REPLACE_VX");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("prepared (SQL PREPARE) before the catalog changed"),
        "{text}"
    );
    assert_clean(&exec(&c, &stmt).await, "extended, after REPLACE_VX");
    b.batch_execute(RESTORE_VX).await.unwrap();
    drop((b, c));
    env.stop().await;
}

/// Masking sessions that find the catalog snapshot stale together, as
/// every busy session of a target does after DDL, share one load (each
/// used to open an upstream connection of its own: a hundred sessions, a
/// hundred logins at once); a load that found nothing changed is counted
/// as such (`airlock_catalog_loads_total`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sessions_that_find_the_catalog_stale_together_share_one_load() {
    use airlock::metrics::{catalog_loads, CatalogLoad, Protocol};
    let counts = || {
        [
            CatalogLoad::Changed,
            CatalogLoad::Unchanged,
            CatalogLoad::Failed,
        ]
        .map(|o| catalog_loads(Protocol::Postgres, o))
    };
    let mut env = env().await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let c = env.agent().await;
        assert_eq!(
            simple(&c, "SELECT a FROM vx ORDER BY a").await,
            b"Alice|Bob|"
        );
        clients.push(c);
    }
    let b = builder(&env).await;
    for (ddl, outcome) in [
        ("CREATE TABLE shared_load (id int)", 0),
        ("CREATE INDEX shared_load_i ON shared_load (id)", 1),
    ] {
        let before = counts();
        b.batch_execute(ddl).await.unwrap();
        let reads = clients
            .iter()
            .map(|c| simple(c, "SELECT a FROM vx ORDER BY a"));
        for got in futures_util::future::join_all(reads).await {
            assert_eq!(got, b"Alice|Bob|", "after {ddl}");
        }
        let after = counts();
        let mut expected = before;
        expected[outcome] += 1;
        assert_eq!(
            after, expected,
            "loads (changed, unchanged, failed) after {ddl}"
        );
    }
    drop((b, clients));
    env.stop().await;
}

/// A statement outdated by a catalog change stays refused until the
/// server has prepared it again: a PREPARE or DEALLOCATE the server
/// refused, skipped or never ran does not vouch for it. (airlock judges
/// them before the server runs them: a PREPARE of a name the server
/// already has fails, one in an aborted transaction is not run, and a
/// Parse of one is never run without an Execute.) Each of these left the
/// old statement on the server, reading what the view now computes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sql_prepared_statement_stays_outdated_until_the_server_prepared_it_again() {
    let mut env = env().await;
    let c = env.agent().await;
    c.batch_execute("PREPARE old1 AS SELECT a FROM vx ORDER BY a")
        .await
        .unwrap();
    assert_eq!(simple(&c, "EXECUTE old1").await, b"Alice|Bob|");
    let b = builder(&env).await;
    b.batch_execute(REPLACE_VX).await.unwrap();
    let assert_refused = |got: Vec<u8>, context: &str| {
        assert_clean(&got, context);
        let text = String::from_utf8_lossy(&got);
        // Outdated, or unknown once a DEALLOCATE was judged.
        assert!(
            text.contains("prepared (SQL PREPARE) before the catalog changed")
                || text.contains("builtin.unknown-prepared"),
            "{context}: {text}"
        );
    };
    assert_refused(simple(&c, "EXECUTE old1").await, "outdated");

    // Another statement, named like it but in another case, is not it.
    c.batch_execute(r#"PREPARE "OLD1" AS SELECT 'x'::text AS a"#)
        .await
        .unwrap();
    assert_refused(simple(&c, "EXECUTE old1").await, "after PREPARE \"OLD1\"");
    // Names that agree on their first 63 bytes are one statement to the
    // server: names over 63 bytes are refused before they reach it.
    let long = |end: &str| format!("{}{end}", "o".repeat(63));
    for sql in [
        format!("PREPARE {} AS SELECT a FROM vx ORDER BY a", long("1")),
        format!("EXECUTE {}", long("2")),
    ] {
        let got = simple(&c, &sql).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("builtin.unparseable"), "{sql}: {text}");
        assert!(text.contains("longer than 63 bytes"), "{sql}: {text}");
    }
    // The server already has old1: this PREPARE fails.
    let got = simple(&c, "PREPARE old1 AS SELECT 'x'::text AS a").await;
    assert!(String::from_utf8_lossy(&got).contains("already exists"));
    assert_refused(simple(&c, "EXECUTE old1").await, "after a failed PREPARE");
    // So does one after an error in the same query.
    let got = simple(
        &c,
        "SELECT 1/0; DEALLOCATE old1; PREPARE old1 AS SELECT 'x'::text AS a",
    )
    .await;
    assert!(String::from_utf8_lossy(&got).contains("division by zero"));
    assert_refused(simple(&c, "EXECUTE old1").await, "after a skipped PREPARE");
    // And in an aborted transaction, DEALLOCATE and PREPARE are not run.
    c.batch_execute("BEGIN").await.unwrap();
    assert!(c.batch_execute("SELECT 1/0").await.is_err());
    for sql in [
        "DEALLOCATE old1",
        "PREPARE old1 AS SELECT 'x'::text AS a",
        "DISCARD ALL",
    ] {
        let got = simple(&c, sql).await;
        assert!(String::from_utf8_lossy(&got).contains("aborted"), "{sql}");
    }
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_refused(
        simple(&c, "EXECUTE old1").await,
        "after an aborted transaction",
    );
    // Parsed, bound, but never executed: not run either.
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = BytesMut::new();
    for m in [
        query(RESTORE_VX),
        query("PREPARE old1 AS SELECT a FROM vx ORDER BY a"),
        query(REPLACE_VX),
        r#"{"Parse": {"name": "d", "query": "DEALLOCATE old1"}}"#.into(),
        r#"{"Parse": {"name": "p", "query": "PREPARE old1 AS SELECT 'x'::text AS a"}}"#.into(),
        r#"{"Bind": {"portal": "", "statement": "d"}}"#.into(),
        sync(),
        query("EXECUTE old1"),
    ] {
        encode_message(&m, &mut out);
    }
    raw.send(&out).await;
    raw.until_ready(5).await;
    assert_refused(raw.received.clone(), "after a Parse never executed");

    // Carried out, a DEALLOCATE and PREPARE make it usable again, also
    // when the EXECUTE is pipelined behind them.
    let mut out = BytesMut::new();
    for m in [
        query(RESTORE_VX),
        query("DEALLOCATE old1; PREPARE old1 AS SELECT a FROM vx ORDER BY a"),
        query("EXECUTE old1"),
    ] {
        encode_message(&m, &mut out);
    }
    raw.received.clear();
    raw.send(&out).await;
    raw.until_ready(3).await;
    let text = String::from_utf8_lossy(&raw.received);
    assert!(
        text.contains("Alice") && !text.contains("airlock"),
        "{text}"
    );
    assert_refused(simple(&c, "EXECUTE old1").await, "the other session's");
    assert_usable(&c, "after re-preparing").await;
    drop((b, c, raw));
    env.stop().await;
}
