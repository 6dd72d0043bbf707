//! Masking on the Postgres path after the schema changes under an open
//! session: DDL run through airlock by any session (masked or not) makes
//! every session's catalog snapshot of the target stale, and a prepared
//! statement is planned again when it is next bound after such a change.
//! No raw PII (nor its upper-case, hex or reversed form) may reach the
//! masked agent, and sessions stay usable.

use crate::common::*;

/// `agent` is masked; `builder` (the same password) is not, and runs DDL.
const RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent", "builder"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]

[[mask]]
id = "email"
columns = ["public.customers.email"]
strategy = "email"
unmasked = { identities = ["builder"] }

[[mask]]
id = "card"
columns = ["*.card_number"]
strategy = "partial"
keep_last = 4
unmasked = { identities = ["builder"] }

# The names the DDL below gives masked data.
[[mask]]
id = "moved"
columns = ["public.customers.mail", "public.customers.e2"]
strategy = "redact"
unmasked = { identities = ["builder"] }
"#;

const SETUP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text);
INSERT INTO customers VALUES (1, 'Alice', 'alice.pii@example.com', '4111111111111111'),
 (2, 'Bob', 'bob.pii@example.org', '5500005555555559');
CREATE VIEW vx AS SELECT name AS a FROM customers;
CREATE VIEW vn AS SELECT name AS a FROM customers;
CREATE VIEW vh AS SELECT encode(convert_to(email, 'UTF8'), 'hex') AS a FROM customers;
";

const FORBIDDEN: [&str; 4] = [
    "alice.pii@example.com",
    "bob.pii@example.org",
    "4111111111111111",
    "5500005555555559",
];

/// No forbidden value in any form ([`assert_no_pii_forms`]).
pub(crate) fn assert_clean(bytes: &[u8], context: &str) {
    assert_no_pii_forms(&FORBIDDEN, bytes, context);
}

pub(crate) async fn env() -> Env {
    env_with("").await
}

/// [`env`] with `keys` added to the policy (TOML lines).
pub(crate) async fn env_with(keys: &str) -> Env {
    let rules = RULES.replacen("allow_statements", &format!("{keys}\nallow_statements"), 1);
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(rules),
        identities: vec![("builder".into(), AGENT_PW.into(), Vec::new())],
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    env
}

pub(crate) async fn builder(env: &Env) -> tokio_postgres::Client {
    connect(env.config_for("builder", AGENT_PW)).await
}

/// Every value of every row, text (`NULL` for null), `|` after each.
pub(crate) fn flatten_rows(rows: &[tokio_postgres::Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        for i in 0..r.len() {
            let v = match r.try_get::<_, Option<String>>(i) {
                Ok(v) => v,
                Err(_) => r
                    .try_get::<_, Option<i32>>(i)
                    .map(|v| v.map(|n| n.to_string()))
                    .unwrap_or_else(|e| Some(format!("{e:?}"))),
            };
            out.extend_from_slice(v.as_deref().unwrap_or("NULL").as_bytes());
            out.push(b'|');
        }
    }
    out
}

/// `sql` over the simple protocol.
pub(crate) async fn simple(c: &tokio_postgres::Client, sql: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match c.simple_query(sql).await {
        Ok(msgs) => {
            for m in msgs {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    for i in 0..r.len() {
                        out.extend_from_slice(r.get(i).unwrap_or("NULL").as_bytes());
                        out.push(b'|');
                    }
                }
            }
        }
        Err(e) => out.extend_from_slice(format!("{e:?}").as_bytes()),
    }
    out
}

/// A prepared statement executed (bound) again: rows, or the error.
pub(crate) async fn exec(c: &tokio_postgres::Client, stmt: &tokio_postgres::Statement) -> Vec<u8> {
    match c.query(stmt, &[]).await {
        Ok(rows) => flatten_rows(&rows),
        Err(e) => format!("{e:?}").into_bytes(),
    }
}

/// `sql` over the simple protocol and prepared (extended protocol).
pub(crate) async fn both_ways(c: &tokio_postgres::Client, sql: &str) -> [Vec<u8>; 2] {
    let prepared = match c.prepare(sql).await {
        Ok(stmt) => exec(c, &stmt).await,
        Err(e) => format!("{e:?}").into_bytes(),
    };
    [simple(c, sql).await, prepared]
}

/// The session still answers, and still masks.
pub(crate) async fn assert_usable(c: &tokio_postgres::Client, context: &str) {
    let rows = c
        .query("SELECT name FROM customers ORDER BY id", &[])
        .await
        .unwrap_or_else(|e| panic!("{context}: session unusable: {e:?}"));
    assert_eq!(flatten_rows(&rows), b"Alice|Bob|", "{context}");
    for got in both_ways(c, "SELECT card_number FROM customers ORDER BY id").await {
        let masked = b"************1111|";
        assert!(
            got.starts_with(masked),
            "{context}: {}",
            String::from_utf8_lossy(&got)
        );
        assert_clean(&got, context);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_view_created_by_another_session_is_seen() {
    let mut env = env().await;
    let reader = env.agent().await;
    // Loads the reader's snapshot.
    assert_usable(&reader, "before").await;
    let b = builder(&env).await;
    let raw = b
        .query("SELECT email FROM customers ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(
        flatten_rows(&raw),
        b"alice.pii@example.com|bob.pii@example.org|",
        "builder is not masked"
    );
    b.batch_execute(
        "CREATE VIEW vv2 AS SELECT upper(email) AS x, reverse(card_number) AS y FROM customers",
    )
    .await
    .unwrap();
    for sql in [
        "SELECT x, y FROM vv2",
        "SELECT * FROM vv2",
        "SELECT x || '' FROM vv2",
    ] {
        for got in both_ways(&reader, sql).await {
            assert_clean(&got, sql);
        }
    }
    assert_usable(&reader, "after a builder's view").await;
    // A masked agent's DDL is seen by the other sessions as well.
    let other = env.agent().await;
    other
        .batch_execute("CREATE VIEW vv3 AS SELECT reverse(email) AS x FROM customers")
        .await
        .unwrap();
    for got in both_ways(&reader, "SELECT x || '' FROM vv3").await {
        assert_clean(&got, "vv3");
    }
    assert_usable(&reader, "after an agent's view").await;
    drop((reader, b, other));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_view_replaced_by_another_session_is_seen_simple_and_prepared() {
    let mut env = env().await;
    let reader = env.agent().await;
    let stmt = reader.prepare("SELECT a FROM vx ORDER BY a").await.unwrap();
    assert_eq!(exec(&reader, &stmt).await, b"Alice|Bob|");
    assert_eq!(
        simple(&reader, "SELECT a FROM vx ORDER BY a").await,
        b"Alice|Bob|"
    );
    let b = builder(&env).await;
    b.batch_execute("CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a FROM customers")
        .await
        .unwrap();
    assert_clean(&exec(&reader, &stmt).await, "prepared before the change");
    for got in both_ways(&reader, "SELECT a FROM vx").await {
        assert_clean(&got, "vx");
    }
    assert_usable(&reader, "after the view changed").await;
    // Back to harmless: the prepared statement runs again, unmasked.
    b.batch_execute("CREATE OR REPLACE VIEW vx AS SELECT name AS a FROM customers")
        .await
        .unwrap();
    assert_eq!(exec(&reader, &stmt).await, b"Alice|Bob|");
    drop((reader, b));
    env.stop().await;
}

/// DDL inside another session's transaction is seen once it commits, even
/// when a session reloaded its snapshot in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_view_replaced_in_another_sessions_transaction_is_seen_after_commit() {
    let mut env = env().await;
    let reader = env.agent().await;
    let stmt = reader.prepare("SELECT a FROM vx ORDER BY a").await.unwrap();
    assert_eq!(exec(&reader, &stmt).await, b"Alice|Bob|");
    let b = builder(&env).await;
    b.batch_execute(
        "BEGIN; CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a FROM customers",
    )
    .await
    .unwrap();
    // Reloads the snapshot while the change is not committed yet. Its
    // result is refused while the other session's DDL is unsettled (see
    // `pg_ddl_race`).
    let got = simple(&reader, "SELECT 1").await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("40001") && text.contains("another session"),
        "{text}"
    );
    b.batch_execute("COMMIT").await.unwrap();
    assert_clean(&exec(&reader, &stmt).await, "prepared, after the commit");
    for got in both_ways(&reader, "SELECT a FROM vx").await {
        assert_clean(&got, "vx after the commit");
    }
    assert_usable(&reader, "after the commit").await;
    drop((reader, b));
    env.stop().await;
}

/// The probe's same-session case: one session prepares, replaces the view
/// and executes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_prepared_statement_is_planned_again_after_its_view_changed() {
    let mut env = env().await;
    let c = env.agent().await;
    let stmt = c.prepare("SELECT a FROM vx ORDER BY a").await.unwrap();
    assert_eq!(exec(&c, &stmt).await, b"Alice|Bob|");
    c.batch_execute("CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a FROM customers")
        .await
        .unwrap();
    for _ in 0..2 {
        assert_clean(&exec(&c, &stmt).await, "re-executed after the view changed");
    }
    assert_clean(&simple(&c, "SELECT a FROM vx").await, "simple");
    assert_usable(&c, "after the view changed").await;
    c.batch_execute("CREATE OR REPLACE VIEW vx AS SELECT name AS a FROM customers")
        .await
        .unwrap();
    assert_eq!(exec(&c, &stmt).await, b"Alice|Bob|");
    c.batch_execute("CREATE OR REPLACE VIEW vx AS SELECT card_number AS a FROM customers")
        .await
        .unwrap();
    let got = exec(&c, &stmt).await;
    assert!(
        got.starts_with(b"************1111|"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_clean(&got, "masked column through the view");
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_view_renamed_by_another_session_is_seen() {
    let mut env = env().await;
    let reader = env.agent().await;
    let stmt = reader.prepare("SELECT a FROM vn ORDER BY a").await.unwrap();
    assert_eq!(exec(&reader, &stmt).await, b"Alice|Bob|");
    assert_eq!(
        simple(&reader, "SELECT a FROM vn ORDER BY a").await,
        b"Alice|Bob|"
    );
    let b = builder(&env).await;
    b.batch_execute("ALTER TABLE vn RENAME TO vn_old; ALTER TABLE vh RENAME TO vn")
        .await
        .unwrap();
    // The server resolved the name when it prepared: the old view still.
    assert_clean(&exec(&reader, &stmt).await, "prepared before the rename");
    for sql in [
        "SELECT a FROM vn",
        "SELECT * FROM vn",
        "SELECT a || '' FROM vn",
    ] {
        for got in both_ways(&reader, sql).await {
            assert_clean(&got, sql);
        }
    }
    assert_usable(&reader, "after the rename").await;
    drop((reader, b));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_columns_changed_by_another_session_are_seen() {
    let mut env = env().await;
    let reader = env.agent().await;
    let star = reader
        .prepare("SELECT * FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_clean(&exec(&reader, &star).await, "before");
    let b = builder(&env).await;
    b.batch_execute("ALTER TABLE customers RENAME COLUMN email TO mail")
        .await
        .unwrap();
    let queries = [
        "SELECT mail FROM customers",
        "SELECT upper(mail), reverse(mail) FROM customers",
        "SELECT * FROM customers",
    ];
    assert_clean(&exec(&reader, &star).await, "prepared `*` after the rename");
    for sql in queries {
        for got in both_ways(&reader, sql).await {
            assert_clean(&got, sql);
        }
    }
    b.batch_execute(
        "ALTER TABLE customers ADD COLUMN e2 text GENERATED ALWAYS AS (upper(mail)) STORED",
    )
    .await
    .unwrap();
    assert_clean(
        &exec(&reader, &star).await,
        "prepared `*` after the new column",
    );
    for sql in [
        "SELECT e2 FROM customers",
        "SELECT reverse(e2), lower(e2) FROM customers",
        "SELECT * FROM customers",
    ] {
        for got in both_ways(&reader, sql).await {
            assert_clean(&got, sql);
        }
    }
    // The open session now sees what a new one does.
    let fresh = env.agent().await;
    for sql in queries
        .iter()
        .chain(&["SELECT e2, reverse(e2) FROM customers ORDER BY id"])
    {
        assert_eq!(
            both_ways(&reader, sql).await,
            both_ways(&fresh, sql).await,
            "{sql}"
        );
    }
    let names = simple(&reader, "SELECT name FROM customers ORDER BY id").await;
    assert_eq!(names, b"Alice|Bob|");
    drop((reader, b, fresh, star));
    env.stop().await;
}

/// Every statement of a simple Query is planned before any runs: what
/// follows DDL in the same request would be planned against the old
/// definitions, so only transaction and session statements may follow it.
/// The request is refused whole (nothing of it runs) and the session goes
/// on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_and_a_read_of_what_it_changed_in_one_request_are_refused() {
    let env = env().await;
    let c = env.agent().await;
    for sql in [
        "CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a FROM customers; SELECT a FROM vx",
        "create or replace view vx as select encode(convert_to(email, 'UTF8'), 'hex') as a from customers; select * from vx",
        "ALTER VIEW vh RENAME TO vh2; ALTER TABLE vn RENAME TO vn_old; SELECT a FROM vn_old",
        "CREATE OR REPLACE VIEW vx AS SELECT reverse(email) AS a FROM customers; CREATE TABLE stolen AS SELECT a FROM vx",
    ] {
        let got = simple(&c, sql).await;
        assert_clean(&got, sql);
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("airlock"), "{sql}: {text}");
        assert_usable(&c, sql).await;
    }
    // Nothing ran: vx is still `name AS a`, and no table was made.
    let rows = env
        .direct()
        .await
        .query("SELECT a FROM vx ORDER BY a", &[])
        .await
        .unwrap();
    assert_eq!(flatten_rows(&rows), b"Alice|Bob|");
    let stolen: i64 = env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'stolen'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stolen, 0);
    // DDL with transaction statements around it runs.
    c.batch_execute("BEGIN; CREATE TABLE notes (n text); COMMIT")
        .await
        .unwrap();
    assert_usable(&c, "after DDL alone").await;
}

/// A view made on the server other than through airlock (a migration, or
/// the owner by hand) is newer than the shared catalog snapshot: masking
/// cannot read its definition, and redacts its columns by the relation the
/// RowDescription names (`builtin.unknown-source`). Red-team finding: the
/// RowDescription of a Describe of the *portal* (libpq's PQexecParams,
/// psycopg 3, node-postgres, pgbench) was thrown away, so those clients
/// read such a view in clear; a client that described nothing, or whose
/// description was of an earlier statement of the same name, likewise.
#[tokio::test]
async fn pg_view_made_behind_airlocks_back_is_redacted_on_every_path() {
    use crate::common::raw::{encode_all, RawClient};
    let mut env = env().await;
    let agent = env.agent().await;
    // The snapshot is loaded now, before the view exists.
    assert_clean(
        &simple(&agent, "SELECT email, card_number FROM customers").await,
        "before",
    );
    env.direct()
        .await
        .batch_execute(
            "CREATE VIEW v_contacts AS SELECT name, email AS contact, card_number AS cc FROM customers",
        )
        .await
        .unwrap();
    let sql = "SELECT name, contact, cc FROM v_contacts ORDER BY name";
    let [a, b] = both_ways(&agent, sql).await;
    assert_clean(&a, "simple Query");
    assert_clean(&b, "described statement (tokio-postgres)");
    assert!(String::from_utf8_lossy(&a).contains("****"), "{a:?}");

    let parse = |name: &str, query: &str| {
        format!(r#"{{"Parse": {{"name": "{name}", "query": "{query}"}}}}"#)
    };
    let bind = |portal: &str, statement: &str| {
        format!(r#"{{"Bind": {{"portal": "{portal}", "statement": "{statement}"}}}}"#)
    };
    let describe = |kind: &str, name: &str| {
        format!(r#"{{"Describe": {{"kind": "{kind}", "name": "{name}"}}}}"#)
    };
    let execute = r#"{"Execute": {"portal": ""}}"#;
    let sync = r#"{"Sync": null}"#;
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let refused = |frames: &[airlock_protocol::pg::frame::Frame], context: &str| {
        let text: Vec<u8> = frames.iter().flat_map(|f| f.body().to_vec()).collect();
        assert!(
            frames.iter().any(|f| f.tag() == b'E')
                && String::from_utf8_lossy(&text).contains("builtin.unknown-source"),
            "{context}: {}",
            String::from_utf8_lossy(&text)
        );
    };

    // The portal described, as libpq does: rows come, redacted.
    let p = parse("", sql);
    let b = bind("", "");
    let d = describe("P", "");
    raw.send(&encode_all(&[&p, &b, &d, execute, sync])).await;
    let frames = raw.until_ready(1).await;
    assert!(frames.iter().any(|f| f.tag() == b'D'), "{frames:?}");
    assert!(frames.iter().all(|f| f.tag() != b'E'), "{frames:?}");

    // Nothing described: refused.
    raw.send(&encode_all(&[&p, &b, execute, sync])).await;
    refused(&raw.until_ready(1).await, "nothing described");

    // The unnamed statement described while it held another text, then
    // parsed again: that description is not this statement's.
    let harmless = parse("", "SELECT name, name, name FROM customers");
    let ds = describe("S", "");
    raw.send(&encode_all(&[&harmless, &ds, sync])).await;
    raw.until_ready(1).await;
    raw.send(&encode_all(&[&p, &b, execute, sync])).await;
    refused(
        &raw.until_ready(1).await,
        "an earlier statement's description",
    );

    // The portal described, then bound again from another statement.
    let named = parse("s1", sql);
    raw.send(&encode_all(&[
        &harmless,
        &b,
        &d,
        &named,
        &bind("", "s1"),
        execute,
        sync,
    ]))
    .await;
    refused(&raw.until_ready(1).await, "an earlier portal's description");

    // A statement described through one of its portals, bound again and
    // executed without a Describe: pgjdbc does this once it has prepared
    // a statement on the server (client-compatibility finding: its sixth
    // execution was refused). Rows come, redacted.
    let jdbc = parse("S_1", sql);
    raw.send(&encode_all(&[&jdbc, &bind("", "S_1"), &d, execute, sync]))
        .await;
    let frames = raw.until_ready(1).await;
    assert!(frames.iter().all(|f| f.tag() != b'E'), "{frames:?}");
    for _ in 0..2 {
        raw.send(&encode_all(&[&bind("", "S_1"), execute, sync]))
            .await;
        let frames = raw.until_ready(1).await;
        assert!(frames.iter().any(|f| f.tag() == b'D'), "{frames:?}");
        assert!(frames.iter().all(|f| f.tag() != b'E'), "{frames:?}");
    }

    // A portal's name taken over by a SQL cursor, and a statement's name
    // by SQL PREPARE: the description and plan airlock had of the name
    // are not those of what it now means (second review finding: both
    // read the view in clear).
    let literals = parse(
        "s9",
        "SELECT 'x'::text AS a, 'y'::text AS b, 'z'::text AS c",
    );
    raw.send(&encode_all(&[
        &literals,
        &bind("c", "s9"),
        &describe("P", "c"),
        sync,
    ]))
    .await;
    raw.until_ready(1).await;
    raw.send(&encode_all(&[&format!(
        r#"{{"Query": "DECLARE c CURSOR WITH HOLD FOR {sql}"}}"#
    )]))
    .await;
    raw.until_ready(1).await;
    raw.send(&encode_all(&[r#"{"Execute": {"portal": "c"}}"#, sync]))
        .await;
    raw.until_ready(1).await;
    raw.send(&encode_all(&[r#"{"Query": "CLOSE c"}"#])).await;
    raw.until_ready(1).await;
    raw.send(&encode_all(&[&describe("S", "s9"), sync])).await;
    raw.until_ready(1).await;
    for q in ["DEALLOCATE s9", &format!("PREPARE s9 AS {sql}")] {
        raw.send(&encode_all(&[&format!(r#"{{"Query": "{q}"}}"#)]))
            .await;
        raw.until_ready(1).await;
    }
    raw.send(&encode_all(&[
        &bind("p", "s9"),
        r#"{"Execute": {"portal": "p"}}"#,
        sync,
    ]))
    .await;
    raw.until_ready(1).await;
    assert_clean(&raw.received, "names taken over by SQL");

    // A portal's name freed by SQL CLOSE (or CLOSE ALL, or ROLLBACK TO a
    // savepoint taken before its Bind) and taken by a portal that
    // server-side code opens: the old portal's plan is not what the name
    // means now (review finding: read in clear).
    env.direct()
        .await
        .batch_execute(
            "CREATE FUNCTION f_open(n refcursor) RETURNS refcursor LANGUAGE plpgsql AS $$ \
             BEGIN OPEN n FOR SELECT name, email, card_number FROM customers; RETURN n; END $$",
        )
        .await
        .unwrap();
    for close in ["CLOSE p8", "CLOSE ALL", "ROLLBACK TO SAVEPOINT sp"] {
        let q = |text: &str| format!(r#"{{"Query": "{text}"}}"#);
        raw.send(&encode_all(&[&q("BEGIN; SAVEPOINT sp")])).await;
        raw.until_ready(1).await;
        raw.send(&encode_all(&[
            &parse(
                "s7",
                "SELECT 'x'::text AS a, 'y'::text AS b, 'z'::text AS c",
            ),
            &bind("p8", "s7"),
            &describe("P", "p8"),
            r#"{"Execute": {"portal": "p8", "max_rows": 1}}"#,
            sync,
        ]))
        .await;
        raw.until_ready(1).await;
        for text in [close, "SELECT f_open('p8')"] {
            raw.send(&encode_all(&[&q(text)])).await;
            raw.until_ready(1).await;
        }
        raw.send(&encode_all(&[r#"{"Execute": {"portal": "p8"}}"#, sync]))
            .await;
        raw.until_ready(1).await;
        raw.send(&encode_all(&[
            &q("ROLLBACK"),
            r#"{"Close": {"kind": "S", "name": "s7"}}"#,
            sync,
        ]))
        .await;
        raw.until_ready(2).await;
        assert_clean(&raw.received, close);
    }

    // A described statement bound later: rows come, redacted.
    raw.send(&encode_all(&[&describe("S", "s1"), sync])).await;
    raw.until_ready(1).await;
    raw.send(&encode_all(&[&bind("", "s1"), execute, sync]))
        .await;
    let frames = raw.until_ready(1).await;
    assert!(frames.iter().any(|f| f.tag() == b'D'), "{frames:?}");
    assert_clean(&raw.received, "raw protocol paths");
    assert_usable(&agent, "after").await;
    drop(agent);
    env.stop().await;
}

/// A materialized view keeps the rows its definition computed at its last
/// refresh, and masking follows the current definitions of what it
/// reads: red-team finding: `w` = `name`, a materialized view over `w`,
/// `w` redefined to read email, a maintenance job's `REFRESH`, `w`
/// redefined back: the materialized view showed the emails unmasked.
/// While masking applies, a view that a materialized view reads (at any
/// depth) cannot be redefined; other views can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_views_read_by_materialized_views_cannot_be_redefined() {
    let mut env = env().await;
    let c = env.agent().await;
    for ddl in [
        "CREATE VIEW w AS SELECT id, name FROM customers",
        "CREATE VIEW w2 AS SELECT id, name FROM w",
        "CREATE VIEW free AS SELECT id, name FROM customers",
        "CREATE MATERIALIZED VIEW mv AS SELECT id, name FROM w2",
    ] {
        c.batch_execute(ddl).await.expect(ddl);
    }
    for sql in [
        "CREATE OR REPLACE VIEW w AS SELECT id, email AS name FROM customers",
        "create or replace view public.W2 as select id, card_number as name from customers",
        "CREATE OR REPLACE VIEW w AS SELECT id, name FROM customers",
    ] {
        let got = simple(&c, sql).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("materialized view public.mv reads view"),
            "{sql}: {text}"
        );
    }
    // Not read by a materialized view: redefined as before.
    c.batch_execute("CREATE OR REPLACE VIEW free AS SELECT id, upper(name) AS name FROM customers")
        .await
        .expect("a view no materialized view reads");
    // The materialized view still reads what it did.
    assert_eq!(
        simple(&c, "SELECT name FROM mv ORDER BY id").await,
        b"Alice|Bob|"
    );
    drop(c);
    env.stop().await;
}

/// A function defined on the server may keep what it is given where it
/// reads raw (second re-check finding: `keep(t)` inserting its argument
/// into a table, then `SELECT keep(secret) FROM people`, and the table
/// read back). Masked data may not be passed to one, in any clause;
/// other data may, and built-in functions take masked data as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_masked_data_is_not_passed_to_functions_defined_on_the_server() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE kept (v text); GRANT ALL ON kept TO PUBLIC;
             CREATE FUNCTION keep(t text) RETURNS int LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING 1 $$;
             CREATE FUNCTION keep_op(a text, b text) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (a) RETURNING true $$;
             CREATE OPERATOR #~# (PROCEDURE = keep_op, LEFTARG = text, RIGHTARG = text);
             CREATE FUNCTION keep_b(t text) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING true $$;
             CREATE DOMAIN keepdom AS text CHECK (keep_b(VALUE));
             CREATE TABLE inbox (id int, card_number text);
             CREATE FUNCTION copy_row() RETURNS trigger LANGUAGE plpgsql
               AS $$ BEGIN INSERT INTO kept VALUES (NEW.card_number); RETURN NEW; END $$;
             CREATE TRIGGER copy_row BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION copy_row();
             CREATE TABLE ruled (id int, card_number text);
             CREATE RULE copy AS ON INSERT TO ruled DO ALSO INSERT INTO kept VALUES (NEW.card_number);
             CREATE TABLE quiet (id int, card_number text);
             CREATE TABLE dominbox (id int, card_number keepdom);
             GRANT ALL ON inbox, ruled, quiet, dominbox TO PUBLIC;",
        )
        .await
        .unwrap();
    // A superuser's function in pg_catalog is not one of the server's own.
    env.pg
        .psql_db(
            DB,
            "CREATE FUNCTION pg_catalog.keepcat(t text) RETURNS int LANGUAGE sql
               AS $$ INSERT INTO public.kept VALUES (t) RETURNING 1 $$;",
        )
        .unwrap();
    let c = env.agent().await;
    // Made after the session's snapshot was read: not one of the
    // server's own, so taken for one made on the server.
    env.direct()
        .await
        .batch_execute(
            "CREATE FUNCTION keep_late(t text) RETURNS int LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING 1 $$;",
        )
        .await
        .unwrap();
    for sql in [
        // Third re-check: operators, casts to domains, a superuser's
        // function in pg_catalog, a function made since the snapshot.
        "SELECT 1 FROM customers WHERE email #~# 'x'",
        "SELECT email OPERATOR(public.#~#) 'x' FROM customers",
        "SELECT email::keepdom FROM customers",
        "SELECT CAST(email AS keepdom) FROM customers",
        "SELECT keepcat(email) FROM customers",
        "SELECT keep_late(email) FROM customers",
        "SELECT keep(email) FROM customers",
        "SELECT KEEP(lower(email)) FROM customers",
        "SELECT public.keep(card_number) FROM customers",
        "SELECT 1 FROM customers WHERE keep(email) IS NULL",
        "SELECT (SELECT keep(c2.email) FROM customers c2 WHERE c2.id = c.id) FROM customers c",
        "SELECT name FROM customers ORDER BY keep(email)",
        "WITH e AS (SELECT email FROM customers) SELECT keep(email) FROM e",
    ] {
        for got in both_ways(&c, sql).await {
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains("function defined on the server"),
                "{sql}: {text}"
            );
        }
    }
    // A same-rule copy into a table whose writes run code made on the
    // server (a trigger, a rule) would show that code the raw values
    // (third re-check finding); into one without, it runs as before.
    for sql in [
        "INSERT INTO inbox SELECT id, card_number FROM customers",
        "INSERT INTO ruled (id, card_number) SELECT id, card_number FROM customers",
        "UPDATE inbox SET card_number = c.card_number FROM customers c WHERE c.id = inbox.id",
        // A column of a domain whose CHECK calls such a function.
        "INSERT INTO dominbox SELECT id, card_number FROM customers",
    ] {
        let got = simple(&c, sql).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("has triggers, rules or checks"),
            "{sql}: {text}"
        );
    }
    c.batch_execute("INSERT INTO quiet SELECT id, card_number FROM customers")
        .await
        .expect("a same-rule copy into a table with no triggers");
    // Unmasked data may be passed; built-in functions take masked data.
    assert_eq!(
        simple(&c, "SELECT keep(name) FROM customers ORDER BY id").await,
        b"1|1|"
    );
    for sql in [
        "SELECT upper(email) FROM customers ORDER BY id",
        "SELECT coalesce(email, 'x'), email::text, email || '' FROM customers",
        "SELECT 1 FROM customers WHERE email LIKE '%@%' AND email ~ 'a'",
    ] {
        let got = simple(&c, sql).await;
        assert_clean(&got, sql);
        assert!(!String::from_utf8_lossy(&got).contains("airlock"), "{sql}");
    }
    let rows = env
        .direct()
        .await
        .query("SELECT v FROM kept ORDER BY v", &[])
        .await
        .unwrap();
    assert_eq!(
        flatten_rows(&rows),
        b"Alice|Bob|",
        "only the names were kept"
    );
    drop(c);
    env.stop().await;
}

/// Fourth re-check findings: more routes to code made on the server.
/// Operators spelled as SQL's own, SQL-syntax names written qualified,
/// casts to arrays of domains; same-rule copies into tables with
/// generated columns, indexes calling such functions, a cascading key
/// into a table with a trigger, a view over one; and, once the server has
/// a cast made since initdb, every cast and every copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_masked_data_reaches_no_code_made_on_the_server_by_other_routes() {
    let mut env = env().await;
    env.pg
        .psql_db(
            DB,
            "CREATE TABLE kept (v text); GRANT ALL ON kept TO PUBLIC;
             CREATE FUNCTION keq(a text, b int) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (a) RETURNING true $$;
             CREATE OPERATOR = (LEFTARG = text, RIGHTARG = int, FUNCTION = keq);
             CREATE FUNCTION keep_b(t text) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING true $$;
             CREATE DOMAIN dk AS text CHECK (keep_b(VALUE));
             CREATE FUNCTION keep_imm(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT t $$;
             CREATE TABLE t_gen (id int, card_number text, g text GENERATED ALWAYS AS (card_number) STORED);
             CREATE TABLE t_idx (id int, card_number text);
             CREATE INDEX ON t_idx (keep_imm(card_number));
             CREATE TABLE t_trig (id int, card_number text);
             CREATE FUNCTION copy_row() RETURNS trigger LANGUAGE plpgsql
               AS $$ BEGIN INSERT INTO kept VALUES (NEW.card_number); RETURN NEW; END $$;
             CREATE TRIGGER copy_row BEFORE INSERT OR UPDATE ON t_trig FOR EACH ROW EXECUTE FUNCTION copy_row();
             CREATE VIEW v_trig AS SELECT id, card_number FROM t_trig;
             CREATE TABLE t_par (card_number text PRIMARY KEY);
             CREATE TABLE t_child (card_number text REFERENCES t_par ON UPDATE CASCADE);
             CREATE TRIGGER copy_row BEFORE UPDATE ON t_child FOR EACH ROW EXECUTE FUNCTION copy_row();
             CREATE TABLE t_plain (id int, card_number text);
             GRANT ALL ON t_gen, t_idx, t_trig, v_trig, t_par, t_child, t_plain TO PUBLIC;",
        )
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "SELECT id FROM customers WHERE email = 5",
        "SELECT email IN (5) FROM customers",
        "SELECT email = ANY (array[5]) FROM customers",
        "SELECT public.coalesce(email) FROM customers",
        r#"SELECT "coalesce"(email) FROM customers"#,
        "SELECT array[email]::dk[] FROM customers",
        "INSERT INTO t_gen (id, card_number) SELECT id, card_number FROM customers",
        "INSERT INTO t_idx SELECT id, card_number FROM customers",
        "INSERT INTO v_trig SELECT id, card_number FROM customers",
        "UPDATE t_par SET card_number = c.card_number FROM customers c WHERE c.id = 1 AND t_par.card_number = 'x'",
    ] {
        let got = simple(&c, sql).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("airlock"), "{sql}: {text}");
    }
    // Still allowed: SQL's own syntax, a plain copy. (With a DBA's `=`,
    // any `=` near masked data counts: airlock does not resolve operand
    // types.)
    for sql in [
        "SELECT coalesce(email, 'x') FROM customers WHERE name LIKE 'A%'",
        "INSERT INTO t_plain SELECT id, card_number FROM customers",
    ] {
        let got = simple(&c, sql).await;
        assert_clean(&got, sql);
        assert!(
            !String::from_utf8_lossy(&got).contains("airlock"),
            "{sql}: {}",
            String::from_utf8_lossy(&got)
        );
    }
    // A cast made since initdb: every cast and every copy, in a session
    // whose snapshot has it.
    env.pg
        .psql_db(
            DB,
            "CREATE FUNCTION keepbig(t text) RETURNS bigint LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t); SELECT 1::bigint $$;
             CREATE CAST (text AS bigint) WITH FUNCTION keepbig(text) AS IMPLICIT;",
        )
        .unwrap();
    // Seen at the next reload (DDL through airlock moves the catalog).
    c.batch_execute("CREATE TABLE reload_now (x int)")
        .await
        .unwrap();
    let d = env.agent().await;
    for sql in [
        "SELECT email::bigint FROM customers",
        "INSERT INTO t_plain SELECT id, card_number FROM customers",
    ] {
        let got = simple(&d, sql).await;
        assert!(String::from_utf8_lossy(&got).contains("airlock"), "{sql}");
    }
    let rows = env
        .direct()
        .await
        .query("SELECT count(*)::int FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(
        rows[0].get::<_, i32>(0),
        0,
        "nothing reached code made on the server"
    );
    drop((c, d));
    env.stop().await;
}

/// A migration run on the server other than through airlock drops a
/// column, or drops a table and makes it again (new OID, same name): the
/// catalog snapshot is stale and airlock cannot tell. The first statement
/// that meets it is refused as of a schema that changed while it ran
/// (40001, "run it again"), with every value hidden meanwhile; the
/// target's catalog is read again, and the statement run again gets the
/// real values, masked as ever. Found by the driver tests: a `SELECT *`
/// after a dropped column ended the session (FATAL, "the result does not
/// match the masking analysis") every time, and a table made again came
/// back with every value hidden, until DDL went through airlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tables_changed_outside_airlock_are_read_again() {
    let mut env = env().await;
    let agent = env.agent().await;
    let star = "SELECT * FROM customers ORDER BY id";
    let masked =
        b"1|Alice|****@example.com|************1111|2|Bob|****@example.org|************5559|";
    assert_eq!(simple(&agent, star).await, masked);

    env.direct()
        .await
        .batch_execute("ALTER TABLE customers DROP COLUMN name CASCADE")
        .await
        .unwrap();
    let first = simple(&agent, star).await;
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.contains("40001") && text.contains("run it again"),
        "{text}"
    );
    assert_clean(&first, "the first `*` after the dropped column");
    let again = simple(&agent, star).await;
    assert_eq!(
        again,
        b"1|****@example.com|************1111|2|****@example.org|************5559|"
    );

    // A table made again (a new OID): the rate limit on reading the
    // catalog again (`masking::catalog::UNKNOWN_RELOAD_EVERY`) may hide
    // values, never show them, until the snapshot has the new table.
    env.direct()
        .await
        .batch_execute(
            "DROP TABLE customers CASCADE; \
             CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text); \
             INSERT INTO customers VALUES (1, 'Alice', 'alice.pii@example.com', '4111111111111111'), \
              (2, 'Bob', 'bob.pii@example.org', '5500005555555559');",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = simple(&agent, star).await;
        assert_clean(&got, "after the table was made again");
        if got == masked {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&got)
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_usable(&agent, "after both changes").await;
    drop(agent);
    env.stop().await;
}

/// An extension that makes operators spelled as SQL's own (`=`, `||`,
/// `>` for citext and hstore) and casts: a statement is refused only when
/// masked data reaches such a call, not when one appears anywhere beside
/// it (client-compatibility finding: with hstore or citext installed,
/// `SELECT id, email FROM customers WHERE id = 1` was refused, as was
/// nearly every statement reading a masked column, for every driver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_extension_operators_beside_masked_columns_are_allowed() {
    let mut env = env().await;
    env.pg
        .psql_db(DB, "CREATE EXTENSION citext; CREATE EXTENSION hstore;")
        .unwrap();
    let c = env.agent().await;
    for (sql, want) in [
        (
            "SELECT id, email FROM customers WHERE id = 1",
            &b"1|****@example.com|"[..],
        ),
        (
            "SELECT c.id, c.email FROM customers c JOIN customers d ON d.id = c.id \
             WHERE c.id IN (1, 2) AND c.id <> 3 ORDER BY c.id",
            b"1|****@example.com|2|****@example.org|",
        ),
        (
            "SELECT id || 'x', email FROM customers WHERE id > 0 ORDER BY id",
            b"1x|****@example.com|2x|****@example.org|",
        ),
        (
            "SELECT email, id::text FROM customers ORDER BY id",
            b"****@example.com|1|****@example.org|2|",
        ),
    ] {
        for got in both_ways(&c, sql).await {
            assert_eq!(got, want, "{sql}: {}", String::from_utf8_lossy(&got));
        }
    }
    // Masked data given to one of them is still refused: `=` may be the
    // extension's, and a cast of a server with casts made since initdb
    // may run one.
    for sql in [
        "SELECT id FROM customers WHERE email = 'x'",
        "SELECT email::text FROM customers",
        "SELECT id FROM customers WHERE (SELECT email FROM customers c2 WHERE c2.id = 1) || 'x' = 'y'",
    ] {
        for got in both_ways(&c, sql).await {
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains("function defined on the server"),
                "{sql}: {text}"
            );
        }
    }
    assert_usable(&c, "after the refusals").await;
    drop(c);
    env.stop().await;
}

/// Red-team findings: a same-rule copy is allowed because the destination
/// column is masked by the rule the value is; but a view writes into its
/// base table's columns under other names (`vv.card_number` is
/// `loot.notes`, which nothing masks), and a foreign key's `ON UPDATE
/// CASCADE` copies a written key into the referencing table's columns.
/// Both took card numbers and emails into unmasked columns, read back in
/// clear. Such copies are now refused; plain writes run as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_same_rule_copies_through_views_and_cascading_keys_are_refused() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE loot (id int, notes text);
             CREATE VIEW vv AS SELECT id, notes AS card_number FROM loot;
             INSERT INTO loot VALUES (1, 'a'), (2, 'b');
             CREATE TABLE ct (id int, card_number text PRIMARY KEY);
             CREATE TABLE leak (id int, ref text REFERENCES ct (card_number) ON UPDATE CASCADE);
             INSERT INTO ct VALUES (1, 'p1'), (2, 'p2');
             INSERT INTO leak VALUES (1, 'p1'), (2, 'p2');
             GRANT ALL ON loot, vv, ct, leak TO PUBLIC;",
        )
        .await
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "INSERT INTO vv (id, card_number) SELECT id, card_number FROM customers",
        "UPDATE vv SET card_number = c.card_number FROM customers c WHERE vv.id = c.id",
        "UPDATE ct SET card_number = c.card_number FROM customers c WHERE ct.id = c.id",
    ] {
        for got in both_ways(&c, sql).await {
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains("passes what is written to it on"),
                "{sql}: {text}"
            );
        }
    }
    let direct = env.direct().await;
    let rows = direct
        .query(
            "SELECT notes FROM loot UNION ALL SELECT ref FROM leak ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(flatten_rows(&rows), b"a|b|p1|p2|", "nothing was copied");
    // Writes that carry no masked data run.
    c.batch_execute("UPDATE vv SET card_number = 'x' WHERE id = 1; UPDATE ct SET card_number = 'p3' WHERE id = 1")
        .await
        .unwrap();
    assert_usable(&c, "after the refusals").await;
    drop(c);
    env.stop().await;
}

/// Re-audit findings: syntax that runs operators or functions a DBA made,
/// without looking like a call of one. Each gave masked data to a DBA's
/// function that keeps its argument: prefix operators, LIKE, BETWEEN, IS
/// DISTINCT FROM, NULLIF, a simple CASE, attribute notation (`c.keeprow`
/// is `keeprow(c)`), a function sqlparser parses as syntax (`ceil`), a
/// cast to a domain named like a type of another database (`string`), a
/// table function in FROM, and the conditions of ON CONFLICT DO UPDATE
/// and MERGE. All are refused; nothing is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_masked_data_reaches_no_code_made_on_the_server_through_syntax() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE kept (v text); GRANT ALL ON kept TO PUBLIC;
             CREATE FUNCTION keep(t text) RETURNS int LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING 1 $$;
             CREATE FUNCTION keep_b(t text) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING true $$;
             CREATE FUNCTION keep_ti(t text, i int) RETURNS bool LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING true $$;
             CREATE FUNCTION keep_u(t text) RETURNS text LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING t $$;
             CREATE OPERATOR - (RIGHTARG = text, PROCEDURE = keep_u);
             CREATE OPERATOR = (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE OPERATOR ~~ (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE OPERATOR >= (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE OPERATOR <= (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE OPERATOR <> (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE OPERATOR < (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE OPERATOR > (LEFTARG = text, RIGHTARG = int, PROCEDURE = keep_ti);
             CREATE FUNCTION keeprow(c customers) RETURNS int LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (c.email) RETURNING 1 $$;
             CREATE FUNCTION public.ceil(t text) RETURNS int LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING 1 $$;
             CREATE DOMAIN string AS text CHECK (keep_b(VALUE));
             CREATE FUNCTION keep_set(t text) RETURNS SETOF text LANGUAGE sql
               AS $$ INSERT INTO kept VALUES (t) RETURNING t $$;",
        )
        .await
        .unwrap();
    // Syntax for functions in pg_catalog: a superuser's there counts as
    // made on the server.
    env.pg
        .psql_db(
            DB,
            "CREATE FUNCTION pg_catalog.timezone(z text, t text) RETURNS text LANGUAGE sql
               AS $$ INSERT INTO public.kept VALUES (t) RETURNING t $$;
             CREATE FUNCTION pg_catalog.extract(f text, t text) RETURNS numeric LANGUAGE sql
               AS $$ INSERT INTO public.kept VALUES (t) RETURNING 1::numeric $$;",
        )
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "SELECT id FROM customers WHERE email NOT IN (1, 2)",
        "SELECT id FROM customers WHERE email NOT BETWEEN 1 AND 2",
        "SELECT email AT TIME ZONE 'UTC' FROM customers",
        "SELECT EXTRACT(epoch FROM email) FROM customers",
        "SELECT id FROM customers WHERE -email IS NOT NULL",
        "SELECT id FROM customers WHERE email LIKE 5",
        "SELECT id FROM customers WHERE email BETWEEN 1 AND 2",
        "SELECT id FROM customers WHERE email IS DISTINCT FROM 5",
        "SELECT nullif(email, 5) FROM customers",
        "SELECT CASE email WHEN 5 THEN 1 END FROM customers",
        "SELECT id FROM customers c WHERE c.keeprow IS NOT NULL",
        "SELECT ceil(email) FROM customers",
        "SELECT email::string FROM customers",
        "SELECT CAST(email AS string) FROM customers",
        "SELECT c.id FROM customers c, keep_set(c.email) k",
        "SELECT c.id FROM customers c CROSS JOIN LATERAL keep_set(c.email) k",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) \
         DO UPDATE SET name = excluded.name WHERE keep(customers.email) > 0",
        "MERGE INTO customers t USING (SELECT 1 AS id) s ON t.id = s.id AND keep(t.email) > 0 \
         WHEN MATCHED THEN UPDATE SET name = 'x'",
        "MERGE INTO customers t USING (SELECT 1 AS id) s ON t.id = s.id \
         WHEN MATCHED AND keep(t.email) > 0 THEN UPDATE SET name = 'x'",
    ] {
        let got = simple(&c, sql).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("function defined on the server"),
            "{sql}: {text}"
        );
    }
    let rows = env
        .direct()
        .await
        .query("SELECT v FROM kept", &[])
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "kept: {}",
        String::from_utf8_lossy(&flatten_rows(&rows))
    );
    // The same syntax and the DBA's code given other data still run
    // (given masked data, LIKE now counts as the DBA's `~~` may be: the
    // operand types are not resolved).
    for sql in [
        "SELECT id, email FROM customers WHERE name LIKE 'A%' ORDER BY id",
        "SELECT keep(name) FROM customers ORDER BY id",
        "SELECT id FROM customers WHERE id BETWEEN 1 AND 2 ORDER BY id",
    ] {
        let got = simple(&c, sql).await;
        assert!(!String::from_utf8_lossy(&got).contains("airlock"), "{sql}");
    }
    drop(c);
    env.stop().await;
}

/// An implicit cast made since initdb runs, with no syntax, on any operand
/// or argument of its source type (second re-audit finding: `WHERE email
/// = 5` ran a DBA's cast from text to int4 with every email): once the
/// server has one, masked data given to any operator or function is
/// refused. Other data runs as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_masked_data_reaches_no_implicit_cast_made_on_the_server() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute("CREATE TABLE kept (v text); GRANT ALL ON kept TO PUBLIC;")
        .await
        .unwrap();
    env.pg
        .psql_db(
            DB,
            "CREATE FUNCTION public.keepint(t text) RETURNS int4 LANGUAGE sql
               AS $$ INSERT INTO public.kept VALUES (t) RETURNING 1 $$;
             CREATE CAST (text AS int4) WITH FUNCTION public.keepint(text) AS IMPLICIT;",
        )
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "SELECT id FROM customers WHERE email = 5",
        "SELECT id FROM customers WHERE email IN (1, 2)",
        "SELECT chr(email) FROM customers",
    ] {
        let got = simple(&c, sql).await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("function defined on the server"),
            "{sql}: {text}"
        );
    }
    let rows = env
        .direct()
        .await
        .query("SELECT v FROM kept", &[])
        .await
        .unwrap();
    assert!(
        rows.is_empty(),
        "kept: {}",
        String::from_utf8_lossy(&flatten_rows(&rows))
    );
    assert_eq!(
        simple(&c, "SELECT id, name FROM customers WHERE id = 1").await,
        b"1|Alice|"
    );
    drop(c);
    env.stop().await;
}
