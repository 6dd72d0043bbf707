//! Guardrails enforced through airlock against a real Postgres, over the
//! simple, extended and pipelined protocols. Every refused statement is
//! checked not to have run (through a direct connection), and the same
//! session is checked to keep working.

use std::time::Duration;

use crate::common::raw::RawClient;
use crate::common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
deny_tables = ["public.secrets", "private.*"]
deny_columns = ["public.customers.ssn"]
max_rows = 1000
statement_timeout = "7s"
idle_in_transaction_timeout = "60s"
allow_startup_options = true

[[policy]]
id = "reader"
applies_to = { identities = ["reader"] }
read_only = true

[[policy]]
id = "watcher"
applies_to = { identities = ["watcher"] }
enforce = false
read_only = true
"#;

const SETUP: &str = "
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE secrets (id int, s text);
INSERT INTO secrets VALUES (1, 'launch code');
CREATE TABLE customers (id int, name text, ssn text);
INSERT INTO customers VALUES (1, 'Alice', '123-45-6789');
CREATE SCHEMA private;
CREATE TABLE private.keys (k text);
";

async fn env() -> Env {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        identities: vec![
            ("reader".into(), "reader-pw".into(), vec![]),
            ("watcher".into(), "watcher-pw".into(), vec![]),
            ("stranger".into(), "stranger-pw".into(), vec![]),
        ],
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    env
}

fn refused(e: &tokio_postgres::Error) -> String {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"));
    assert_eq!(db.code().code(), "42501", "{}", db.message());
    assert!(db.message().starts_with("airlock: "), "{}", db.message());
    db.message().to_owned()
}

async fn count(env: &Env, sql: &str) -> i64 {
    env.direct().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// A setting's value as the server shows it.
async fn show(c: &Client, setting: &str) -> String {
    c.query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn still_usable(c: &Client) {
    let r: i32 = c.query_one("SELECT 40 + 2", &[]).await.unwrap().get(0);
    assert_eq!(r, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_statements_never_run_simple_and_extended() {
    let env = env().await;
    let c = env.agent().await;

    // Simple protocol.
    let msg = refused(&c.batch_execute("DELETE FROM t").await.unwrap_err());
    assert!(msg.contains("builtin.unbounded-write"), "{msg}");
    // Extended protocol (Parse is judged).
    let msg = refused(
        &c.execute("UPDATE t SET v = 'x' WHERE 1 = 1", &[])
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("builtin.unbounded-write"), "{msg}");
    let msg = refused(
        &c.execute("DELETE FROM t WHERE true OR id = $1", &[&1i32])
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("unbounded-write"), "{msg}");
    // A WITH whose main statement writes, and upserts and MERGE that
    // rewrite every row they read, are unbounded writes too.
    for sql in [
        "WITH s AS (SELECT 1) DELETE FROM t",
        "with s as (select 1) update t set v = 'x'",
        "WITH s AS (SELECT 1) UPDATE t SET v = 'x' WHERE 1 = 1",
        "INSERT INTO t (id, v) SELECT id, 'x' FROM t ON CONFLICT (id) DO UPDATE SET v = 'x'",
        "INSERT INTO t SELECT id, 'x' FROM public.t WHERE true ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
        "WITH s AS (SELECT id FROM t) INSERT INTO t (id, v) SELECT id, 'x' FROM s ON CONFLICT (id) DO UPDATE SET v = 'x'",
        "MERGE INTO t USING t AS s ON true WHEN MATCHED THEN UPDATE SET v = 'x'",
        "MERGE INTO t USING (SELECT 1 AS one) s ON 1 = 1 WHEN MATCHED THEN DELETE",
    ] {
        let msg = refused(&c.batch_execute(sql).await.unwrap_err());
        assert!(msg.contains("builtin.unbounded-write"), "{sql}: {msg}");
        let msg = refused(&c.execute(sql, &[]).await.unwrap_err());
        assert!(msg.contains("builtin.unbounded-write"), "{sql}: {msg}");
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM t WHERE v <> 'x'").await,
        3
    );
    still_usable(&c).await;
    // Bounded, they run.
    c.batch_execute(
        "INSERT INTO t (id, v) SELECT id, 'uno' FROM t WHERE id = 1 ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v",
    )
    .await
    .unwrap();
    assert_eq!(
        count(&env, "SELECT count(*) FROM t WHERE v = 'uno'").await,
        1
    );

    // A bounded write is fine.
    assert_eq!(
        c.execute("DELETE FROM t WHERE id = $1", &[&3i32])
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_tables_and_columns_every_way_round() {
    let env = env().await;
    let c = env.agent().await;
    for sql in [
        "SELECT * FROM secrets",
        "select s from SECRETS",
        "SELECT s FROM public.secrets",
        "SELECT s FROM \"secrets\"",
        "SELECT s FROM U&\"\\0073ecrets\"",
        "TABLE secrets",
        "SELECT 1 FROM t WHERE id IN (SELECT id FROM secrets)",
        "WITH x AS (SELECT * FROM secrets) SELECT * FROM x",
        "SELECT v FROM t UNION SELECT s FROM secrets",
        "SELECT /* hi */ s FROM /* there */ secrets",
        "EXPLAIN SELECT * FROM secrets",
        "COPY secrets TO STDOUT",
        "COPY (SELECT * FROM secrets) TO STDOUT",
        "INSERT INTO t SELECT id + 100, s FROM secrets",
        "SELECT * FROM private.keys",
        "SELECT ssn FROM customers",
        "SELECT name FROM customers WHERE ssn LIKE '1%'",
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT customers.* FROM customers",
        "SELECT * FROM customers",
        "SELECT 1; SELECT * FROM secrets",
        // An alias on a parenthesised join names every table in it, also
        // when another table or alias has that name (red-team finding).
        "SELECT t.* FROM (customers c CROSS JOIN t x) AS t",
        "SELECT j.ssn FROM (customers c CROSS JOIN t x) AS j WHERE EXISTS (SELECT 1 FROM t j)",
        "CREATE TABLE leak AS SELECT t.* FROM (customers c CROSS JOIN t x) AS t WHERE EXISTS (SELECT 1 FROM t)",
        // Field notation: `c.f` is `f(c)`, the whole row (review finding).
        "SELECT c.row_to_json FROM customers c",
        "SELECT customers.to_jsonb FROM customers",
        "SELECT c.quote_literal FROM customers c",
        // Identifiers Postgres cuts to 63 bytes name one alias twice.
        "SELECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaax.* FROM customers AS aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaay WHERE EXISTS (SELECT 1 FROM t AS aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaax)",
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        refused(&e);
        let e = c.query(sql, &[]).await.expect_err(sql);
        refused(&e);
    }
    // Nothing was copied by the refused INSERT ... SELECT and CREATE TABLE AS.
    assert_eq!(count(&env, "SELECT count(*) FROM t").await, 3);
    assert_eq!(
        count(&env, "SELECT count(*) FROM pg_class WHERE relname = 'leak'").await,
        0
    );
    // `q.*` of the table that is not denied is fine beside it.
    let r = c
        .query_one(
            "SELECT x.*, c.name FROM t x JOIN customers c ON c.id = x.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(2), "Alice");
    // Allowed columns of the same table are fine.
    let r = c
        .query_one("SELECT name FROM customers", &[])
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "Alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_query_is_all_or_nothing() {
    let env = env().await;
    let c = env.agent().await;
    let e = c
        .batch_execute("INSERT INTO t VALUES (9, 'nine'); DROP TABLE secrets")
        .await
        .unwrap_err();
    refused(&e);
    assert_eq!(count(&env, "SELECT count(*) FROM t WHERE id = 9").await, 0);
    assert_eq!(count(&env, "SELECT count(*) FROM secrets").await, 1);
    still_usable(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_in_a_pipeline_keeps_order_and_transaction_state() {
    let env = env().await;
    let c = env.agent().await;
    let (a, b, d) = tokio::join!(
        c.query("SELECT id FROM t ORDER BY id", &[]),
        c.query("SELECT * FROM secrets", &[]),
        c.query("SELECT v FROM t WHERE id = 2", &[]),
    );
    assert_eq!(a.unwrap().len(), 3);
    refused(&b.unwrap_err());
    assert_eq!(d.unwrap()[0].get::<_, &str>(0), "two");

    // Inside a transaction a refusal aborts it, as any error would.
    c.batch_execute("BEGIN; INSERT INTO t VALUES (10, 'ten')")
        .await
        .unwrap();
    refused(&c.batch_execute("SELECT * FROM secrets").await.unwrap_err());
    let e = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&env, "SELECT count(*) FROM t WHERE id = 10").await, 0);
    still_usable(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_blocked_statements() {
    let env = env().await;
    let c = env.agent().await;
    for (sql, rule) in [
        ("DO $$ BEGIN DELETE FROM t; END $$", "opaque-code"),
        ("SET ROLE postgres", "role-change"),
        ("SET SESSION AUTHORIZATION postgres", "role-change"),
        ("SELECT set_config('role', 'postgres', false)", ""),
        ("SELECT pg_sleep(0)", "dangerous-function"),
        ("SELECT pg_catalog.pg_sleep(0)", "dangerous-function"),
        ("SELECT PG_SLEEP(0)", "dangerous-function"),
        ("SELECT * FROM pg_ls_dir('.')", ""),
        ("SELECT pg_read_file('/etc/passwd')", ""),
        ("COPY t TO PROGRAM 'id'", ""),
        ("COPY t FROM '/etc/passwd'", ""),
        ("ALTER SYSTEM SET work_mem = '1GB'", ""),
        ("CREATE EXTENSION dblink", ""),
        ("LOAD 'auto_explain'", ""),
        ("EXPLAIN ANALYZE DELETE FROM t", ""),
        ("PREPARE p AS DELETE FROM t", "unbounded-write"),
        ("EXECUTE nosuch", ""),
        ("SELEC * FROM t", "unparseable"),
    ] {
        let msg = refused(&c.simple_query(sql).await.expect_err(sql));
        assert!(msg.contains(rule), "{sql}: {msg}");
    }
    assert_eq!(count(&env, "SELECT count(*) FROM t").await, 3);

    // SQL PREPARE of an allowed body, then EXECUTE, works.
    c.batch_execute("PREPARE ok(int) AS SELECT v FROM t WHERE id = $1")
        .await
        .unwrap();
    let rows = c.simple_query("EXECUTE ok(1)").await.unwrap();
    assert!(rows
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("one"))));
    still_usable(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_messages_are_refused() {
    let env = env().await;
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    // FunctionCall of pg_sleep's OID (2626) with one float8 argument.
    let mut msg = vec![b'F'];
    let body: Vec<u8> = [
        &2626i32.to_be_bytes()[..],
        &0i16.to_be_bytes(),
        &1i16.to_be_bytes(),
        &3i32.to_be_bytes(),
        b"0.0",
        &0i16.to_be_bytes(),
    ]
    .concat();
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(&body);
    raw.send(&msg).await;
    let frames = raw.until_ready(1).await;
    let error = frames.iter().find(|f| f.tag() == b'E').expect("an error");
    let text = String::from_utf8_lossy(error.body());
    assert!(
        text.contains("42501") && text.contains("builtin.function-call"),
        "{text}"
    );
    assert_eq!(frames.last().unwrap().tag(), b'Z');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_are_vetted() {
    let env = env().await;
    let mut cfg = env.agent_config();
    cfg.options("-c role=postgres");
    let e = cfg.connect(tokio_postgres::NoTls).await.err().unwrap();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
    let mut cfg = env.agent_config();
    cfg.options("-c search_path=private");
    assert!(cfg.connect(tokio_postgres::NoTls).await.is_err());
    // Postgres splits options at any C isspace, the vertical tab too
    // (red-team finding: `\v-crole=...` hid the setting from airlock).
    for options in [
        "-c work_mem=8MB\x0b-crole=postgres",
        "-c work_mem=8MB\x0b-csearch_path=private",
    ] {
        let mut cfg = env.agent_config();
        cfg.options(options);
        let e = cfg.connect(tokio_postgres::NoTls).await.err().unwrap();
        assert_eq!(
            e.code().map(|c| c.code()),
            Some("42501"),
            "{options:?}: {e:?}"
        );
    }
    // A parameter named twice: Postgres keeps the last, airlock's checks
    // read the first (red-team finding: a second `options` dropped the
    // policy's forced read-only and timeout). Refused.
    let e = crate::common::raw::RawClient::login_with(
        env.port,
        &[
            ("user", AGENT),
            ("database", DB),
            ("options", " "),
            ("options", " "),
        ],
        AGENT_PW,
    )
    .await
    .err()
    .expect("a duplicate parameter logged in");
    assert!(e.contains("more than once"), "{e}");
    // asyncpg sends `client_encoding = 'utf-8'`, quotes and all; Postgres
    // reads it as UTF8 (client-compatibility finding: refused before). An
    // encoding the server would read statements differently in is not.
    for (encoding, allowed) in [("'utf-8'", true), ("utf-8", true), ("'sjis'", false)] {
        let login = crate::common::raw::RawClient::login_with(
            env.port,
            &[
                ("user", AGENT),
                ("database", DB),
                ("client_encoding", encoding),
            ],
            AGENT_PW,
        )
        .await;
        match login {
            Ok(mut raw) => {
                assert!(allowed, "{encoding} logged in");
                raw.send(&crate::common::raw::encode_all(&[
                    r#"{"Query": "SHOW client_encoding"}"#,
                ]))
                .await;
                let frames = raw.until_ready(1).await;
                assert!(frames.iter().any(|f| f.tag() == b'D'));
                assert!(String::from_utf8_lossy(&raw.received).contains("UTF8"));
            }
            Err(e) => {
                assert!(!allowed, "{encoding}: {e}");
                assert!(e.contains("startup-option"), "{e}");
            }
        }
    }
    // client_encoding twice, UTF-8 both times, as asyncpg sends it with
    // `server_settings`: fine; with another encoding second: refused.
    for (second, allowed) in [("utf-8", true), ("SJIS", false)] {
        let login = crate::common::raw::RawClient::login_with(
            env.port,
            &[
                ("user", AGENT),
                ("database", DB),
                ("client_encoding", "'utf-8'"),
                ("client_encoding", second),
            ],
            AGENT_PW,
        )
        .await;
        assert_eq!(login.is_ok(), allowed, "{second}: {:?}", login.err());
    }
    // Settings that change what the server logs of the session, as a
    // startup parameter or in options (re-check finding: with a superuser
    // upstream, `log_statement=none` kept the session out of the log).
    for (name, value) in [
        ("log_statement", "none"),
        ("LOG_STATEMENT", "none"),
        ("session_replication_role", "replica"),
        ("options", "-c log_min_duration_statement=-1"),
        ("options", "--track-activities=off"),
    ] {
        let e = crate::common::raw::RawClient::login_with(
            env.port,
            &[("user", AGENT), ("database", DB), (name, value)],
            AGENT_PW,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{name}={value} logged in"));
        assert!(e.contains("startup-option"), "{name}={value}: {e}");
    }
    // An ordinary setting is fine.
    let mut cfg = env.agent_config();
    cfg.options("-c work_mem=8MB");
    let c = connect(cfg).await;
    still_usable(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_policy_is_also_locked_upstream() {
    let env = env().await;
    let r = connect(env.config_for("reader", "reader-pw")).await;
    let ro: String = r
        .query_one(
            "SELECT current_setting('default_transaction_read_only')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");
    refused(
        &r.batch_execute("INSERT INTO t VALUES (5, 'five')")
            .await
            .unwrap_err(),
    );
    refused(
        &r.batch_execute("SET default_transaction_read_only = off")
            .await
            .unwrap_err(),
    );
    // Postgres reads any unique prefix of false/off as off (red-team
    // finding: `fa` and `of` passed), and an expression may be anything.
    for value in ["fa", "'of'", "FALS", "No", "'0'", "DEFAULT", "(0)"] {
        let sql = format!("SET default_transaction_read_only = {value}");
        refused(&r.batch_execute(&sql).await.unwrap_err());
        let sql = format!("BEGIN; SET transaction_read_only = {value}");
        refused(&r.batch_execute(&sql).await.unwrap_err());
        r.batch_execute("ROLLBACK").await.unwrap();
    }
    // Turning it on stays allowed, in any spelling Postgres reads as true.
    for value in ["on", "tr", "'yes'", "1", "TRUE"] {
        let sql = format!("SET default_transaction_read_only = {value}");
        r.batch_execute(&sql).await.unwrap();
    }
    refused(&r.batch_execute("BEGIN READ WRITE").await.unwrap_err());
    // Refused by airlock, not only by the server's read-only transaction.
    let msg = refused(
        &r.batch_execute("WITH s AS (SELECT 1) INSERT INTO t SELECT 5, 'five' FROM s")
            .await
            .unwrap_err(),
    );
    assert!(msg.contains("reader.read-only"), "{msg}");
    refused(&r.batch_execute("SELECT nextval('x')").await.unwrap_err());
    let c: i64 = r
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(c, 3);
    assert_eq!(count(&env, "SELECT count(*) FROM t WHERE id = 5").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_limits() {
    let env = env().await;
    let c = env.agent().await;
    // The policy's limits, applied upstream.
    for (setting, value) in [
        ("statement_timeout", "7s"),
        ("idle_in_transaction_session_timeout", "1min"),
    ] {
        let shown: String = c
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(shown, value, "{setting}");
    }
    let e = c
        .query("SELECT g FROM generate_series(1, 5000) g", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "54000");
    assert!(db.message().contains("max_rows"), "{}", db.message());
    let e = c
        .simple_query("SELECT g FROM generate_series(1, 5000) g")
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "54000");
    let rows = c
        .query("SELECT g FROM generate_series(1, 1000) g", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    still_usable(&c).await;
}

/// What drivers and pools send on their own runs, and cannot undo the
/// policy's limits (compatibility finding: asyncpg's type introspection
/// sends `set_config('jit', 'off', false)`, and its pool's reset query
/// `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`: both
/// were refused, which broke every array column and every pool release).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_and_pool_statements_run_and_keep_the_policy_limits() {
    let env = env().await;
    let c = env.agent().await;
    c.simple_query("SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new")
        .await
        .unwrap();
    assert_eq!(show(&c, "jit").await, "off");
    c.simple_query("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;")
        .await
        .unwrap();
    c.simple_query("RESET statement_timeout").await.unwrap();
    // RESET restores what the session started with: the policy's limits.
    assert_eq!(show(&c, "statement_timeout").await, "7s");
    assert_eq!(
        show(&c, "idle_in_transaction_session_timeout").await,
        "1min"
    );
    // set_config is still judged as the SET it is.
    for sql in [
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT set_config('search_path', 'private', false)",
        "SELECT set_config('jit', (SELECT s FROM secrets), false)",
        "SELECT pg_advisory_lock(1)",
    ] {
        refused(&c.simple_query(sql).await.unwrap_err());
    }
    assert_eq!(show(&c, "statement_timeout").await, "7s");
    still_usable(&c).await;

    // Read-only: RESET ALL keeps the session read-only; what would turn
    // writes back on is refused.
    let r = connect(env.config_for("reader", "reader-pw")).await;
    r.simple_query("RESET ALL").await.unwrap();
    assert_eq!(show(&r, "default_transaction_read_only").await, "on");
    refused(
        &r.simple_query("SELECT set_config('default_transaction_read_only', 'off', false)")
            .await
            .unwrap_err(),
    );
    refused(
        &r.simple_query("BEGIN; RESET transaction_read_only")
            .await
            .unwrap_err(),
    );
    r.simple_query("ROLLBACK").await.unwrap();
    refused(
        &r.batch_execute("INSERT INTO t VALUES (9, 'nine')")
            .await
            .unwrap_err(),
    );
    assert_eq!(count(&env, "SELECT count(*) FROM t WHERE id = 9").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_logs_but_runs() {
    let env = env().await;
    let w = connect(env.config_for("watcher", "watcher-pw")).await;
    // Would be blocked (read-only policy), but observe mode lets it run;
    // the upstream read-only lock is not applied in observe mode either.
    w.batch_execute("CREATE TABLE observed (id int)")
        .await
        .unwrap();
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'observed'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_without_policy_is_denied_everything() {
    let env = env().await;
    let e = env
        .config_for("stranger", "stranger-pw")
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    let msg = refused(&e);
    assert!(msg.contains("no-policy"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_takes_effect_without_reconnecting() {
    let env = env().await;
    let c = env.agent().await;
    // Each path the session's memo of allowed statements serves: the
    // same simple Query text, another literal of the same shape, and the
    // same extended-protocol Parse text, each sent twice.
    for _ in 0..2 {
        c.simple_query("SELECT * FROM t").await.unwrap();
        c.simple_query("SELECT v FROM t WHERE id = 1")
            .await
            .unwrap();
        c.simple_query("SELECT v FROM t WHERE id = 2")
            .await
            .unwrap();
        c.query("SELECT v FROM t WHERE id = $1", &[&1i32])
            .await
            .unwrap();
    }
    // Statements prepared before the reload (red-team finding: they ran
    // under the old rules for as long as the session lasted).
    let named = c.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
    c.query(&named, &[&1i32]).await.unwrap();
    let other = c.prepare("SELECT 40 + $1::int").await.unwrap();
    c.simple_query("PREPARE q AS SELECT v FROM t")
        .await
        .unwrap();
    c.simple_query("EXECUTE q").await.unwrap();
    // The same on the wire, where the statement's name can be parsed again
    // after the reload (the server refuses that with 42P05 and keeps the
    // old statement, which airlock must not then judge by the new text).
    use crate::common::raw::{encode_all, RawClient};
    let wire = encode_all;
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    raw.send(&wire(&[
        r#"{"Parse": {"name": "s", "query": "SELECT v FROM t"}}"#,
        r#"{"Sync": null}"#,
        r#"{"Query": "PREPARE r AS SELECT v FROM t"}"#,
    ]))
    .await;
    raw.until_ready(2).await;
    env.write_rules(&RULES.replace(
        "deny_tables = [\"public.secrets\", \"private.*\"]",
        "deny_tables = [\"public.secrets\", \"private.*\", \"public.t\"]",
    ));
    until_reloaded("the table deny in force", || async {
        c.simple_query("SELECT * FROM t").await.is_err()
    })
    .await;
    // Not one of them is served from before the reload.
    refused(
        &c.simple_query("SELECT v FROM t WHERE id = 1")
            .await
            .unwrap_err(),
    );
    refused(
        &c.simple_query("SELECT v FROM t WHERE id = 3")
            .await
            .unwrap_err(),
    );
    refused(
        &c.query("SELECT v FROM t WHERE id = $1", &[&1i32])
            .await
            .unwrap_err(),
    );
    // A statement prepared before is judged again at its next Bind; one
    // the new rules allow still runs.
    let msg = refused(&c.query(&named, &[&1i32]).await.unwrap_err());
    assert!(msg.contains("public.t"), "{msg}");
    let n: i32 = c.query_one(&other, &[&2i32]).await.unwrap().get(0);
    assert_eq!(n, 42);
    refused(&c.simple_query("EXECUTE q").await.unwrap_err());
    raw.received.clear();
    raw.send(&wire(&[
        r#"{"Parse": {"name": "s", "query": "SELECT 1"}}"#,
        r#"{"Sync": null}"#,
        r#"{"Bind": {"portal": "", "statement": "s"}}"#,
        r#"{"Execute": {"portal": ""}}"#,
        r#"{"Sync": null}"#,
        r#"{"Query": "PREPARE r AS SELECT 1"}"#,
        r#"{"Query": "EXECUTE r"}"#,
    ]))
    .await;
    raw.until_ready(4).await;
    let text = String::from_utf8_lossy(&raw.received).into_owned();
    assert!(
        !text.contains("one"),
        "a statement prepared before the reload ran: {text}"
    );
    assert!(text.contains("42P05"), "{text}");
    // An invalid rule file is rejected; the previous rules stay.
    env.write_rules("[[policy]]\nid = \"broken\"\nallow_statements = [\"nonsense\"]\n");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    refused(&c.simple_query("SELECT * FROM t").await.unwrap_err());
    still_usable(&c).await;
}

/// The session's memo of allowed statements answers only in the context
/// they were judged in: after `SET search_path`, the same text (and
/// another literal of the same shape) names other tables and is judged
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_path_change_is_not_served_from_before() {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(
            r#"
[[policy]]
id = "agent"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "session"]
deny_tables = ["private.*"]
allow_builtin = ["builtin.search-path"]
"#
            .into(),
        ),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    let c = env.agent().await;
    for sql in ["SELECT * FROM keys", "SELECT k FROM keys LIMIT 1"] {
        for _ in 0..2 {
            // Allowed by airlock (public.keys is not denied); the server
            // has no such table.
            let e = c.simple_query(sql).await.unwrap_err();
            assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e:?}");
            let e = c.query(sql, &[]).await.unwrap_err();
            assert_eq!(e.code().map(|c| c.code()), Some("42P01"), "{e:?}");
        }
    }
    c.batch_execute("SET search_path = private, public")
        .await
        .unwrap();
    for sql in [
        "SELECT * FROM keys",
        "SELECT k FROM keys LIMIT 1",
        "SELECT k FROM keys LIMIT 2",
    ] {
        refused(&c.simple_query(sql).await.unwrap_err());
        refused(&c.query(sql, &[]).await.unwrap_err());
    }
    still_usable(&c).await;
}

/// A literal padded past the size limit has the shape of a short one: the
/// memo must not serve it from the short one's judgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_padded_literal_over_the_size_limit_is_judged_on_its_own() {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(
            r#"
[settings]
max_statement_bytes = 200

[[policy]]
id = "agent"
applies_to = { identities = ["agent"] }
allow_statements = ["read"]
"#
            .into(),
        ),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    let c = env.agent().await;
    for _ in 0..2 {
        c.simple_query("SELECT v FROM t WHERE id = 1")
            .await
            .unwrap();
    }
    let padded = format!("SELECT v FROM t WHERE id = {}2", "0".repeat(300));
    let msg = refused(&c.simple_query(&padded).await.unwrap_err());
    assert!(msg.contains("builtin.too-large"), "{msg}");
    still_usable(&c).await;
}

/// `EXECUTE`'s arguments run when it does, outside the judgement of its
/// PREPARE (ground-truth red team: `EXECUTE p(query_to_xml('select ssn
/// …'))` returned the denied column and `EXECUTE p(set_config(…))` turned
/// a read-only session read-write). Their functions are judged, and they
/// may not read tables; constants still pass. Simple and extended (the
/// EXECUTE text in a Parse) alike, and through EXPLAIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_arguments_are_judged() {
    let env = env().await;
    for (who, pw) in [("agent", AGENT_PW), ("reader", "reader-pw")] {
        let c = connect(env.config_for(who, pw)).await;
        c.batch_execute("PREPARE p(text) AS SELECT $1")
            .await
            .unwrap();
        let rows = c.simple_query("EXECUTE p('plain')").await.unwrap();
        assert!(
            rows.iter()
                .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("plain"))),
            "{who}"
        );
        for sql in [
            "EXECUTE p(query_to_xml('select id, ssn from customers', true, false, '')::text)",
            "EXECUTE p((SELECT ssn FROM customers LIMIT 1))",
            "EXECUTE p((SELECT s FROM secrets LIMIT 1))",
            "EXECUTE p(set_config('default_transaction_read_only', 'off', false))",
            "EXPLAIN ANALYZE EXECUTE p(set_config('default_transaction_read_only', 'off', false))",
        ] {
            let e = c.simple_query(sql).await.unwrap_err();
            let msg = refused(&e);
            assert!(!msg.contains("123-45"), "{who}: {sql}: {msg}");
            let e = c.query(sql, &[]).await.unwrap_err();
            refused(&e);
        }
        let ro: String = c
            .query_one(
                "SELECT current_setting('default_transaction_read_only')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ro, if who == "reader" { "on" } else { "off" }, "{who}");
        still_usable(&c).await;
    }
    // The reader's write function is refused as a write.
    let r = connect(env.config_for("reader", "reader-pw")).await;
    r.batch_execute("PREPARE q(bigint) AS SELECT $1")
        .await
        .unwrap();
    let msg = refused(&r.simple_query("EXECUTE q(nextval('x'))").await.unwrap_err());
    assert!(msg.contains("reader.read-only"), "{msg}");
}
