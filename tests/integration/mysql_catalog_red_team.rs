//! Red-team findings on the MySQL path's catalog snapshot
//! (`src/mysql/catalog.rs`), reproduced through airlock against a
//! throwaway MariaDB: a view the snapshot does not hold, or holds under
//! the wrong name, must not let the masked agent read raw PII, over the
//! text protocol or as a prepared statement.
//!
//! * A view created in the `mysql` or `sys` database (which the snapshot
//!   once left out) is masked through its definition.
//! * Relations whose names differ only in case (`vw` and `VW`, `app` and
//!   `APP`: distinct on a Linux server) are refused, not mixed up.
//! * The agent's `sql_select_limit` does not cut the snapshot short (it
//!   is loaded on the agent's session).

use crate::common::mysql as mysql_env;

use mysql_async::prelude::*;
use mysql_env::{flatten_all, MyEnv, UPSTREAM_USER};

const RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]

[[mask]]
id = "phone"
columns = ["app.customers.phone"]
strategy = "redact"

[[mask]]
id = "email"
columns = ["app.customers.email"]
strategy = "email"
"#;

const SETUP: &str = "CREATE TABLE customers (id int PRIMARY KEY, name varchar(50), phone varchar(32), email varchar(100));
INSERT INTO customers VALUES (1, 'Alice', '+1-202-555-0143', 'alice.pii@example.com'),
 (2, 'Bob', '+1-202-555-0178', 'bob.pii@example.org');";

const FORBIDDEN: [&str; 4] = [
    "+1-202-555-0143",
    "+1-202-555-0178",
    "alice.pii@example.com",
    "bob.pii@example.org",
];

/// No forbidden value in any form (`common::assert_no_pii_forms`).
fn assert_clean(bytes: &[u8], context: &str) {
    crate::common::assert_no_pii_forms(&FORBIDDEN, bytes, context);
}

/// MariaDB and airlock, with `SETUP` in `app` and `grants` (SQL run as
/// root before airlock starts) for the upstream user.
async fn env(grants: &str) -> MyEnv {
    let env = MyEnv::start_with(Some(RULES), "", grants).await;
    env.admin(SETUP);
    env
}

/// `sql` over the text protocol and as a prepared statement: the values
/// the client saw each way, or the error's text.
async fn both_ways(c: &mut mysql_async::Conn, sql: &str) -> [Result<Vec<u8>, String>; 2] {
    let text = c
        .query::<mysql_async::Row, _>(sql)
        .await
        .map(|rows| flatten_all(&rows))
        .map_err(|e| format!("{e:?}"));
    let prepared = c
        .exec::<mysql_async::Row, _, _>(sql, ())
        .await
        .map(|rows| flatten_all(&rows))
        .map_err(|e| format!("{e:?}"));
    [text, prepared]
}

/// `sql` returns rows both ways, with no PII.
async fn assert_masked_rows(c: &mut mysql_async::Conn, sql: &str) {
    for got in both_ways(c, sql).await {
        match got {
            Ok(values) => {
                assert_clean(&values, sql);
                assert!(!values.is_empty(), "{sql}: no rows");
            }
            Err(e) => panic!("{sql}: expected masked rows, got {e}"),
        }
    }
}

/// `sql` is refused both ways as unanalyzable, with no PII.
async fn assert_refused(c: &mut mysql_async::Conn, sql: &str) {
    for got in both_ways(c, sql).await {
        match got {
            Ok(values) => {
                assert_clean(&values, sql);
                panic!(
                    "{sql}: expected a refusal, got {:?}",
                    String::from_utf8_lossy(&values)
                );
            }
            Err(e) => {
                assert_clean(e.as_bytes(), sql);
                assert!(e.contains("mask.unanalyzable"), "{sql}: {e}");
            }
        }
    }
}

async fn run(c: &mut mysql_async::Conn, sql: &str) {
    c.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// The session still answers, and still masks.
async fn assert_usable(c: &mut mysql_async::Conn, context: &str) {
    let names: Vec<String> = c
        .query("SELECT name FROM customers ORDER BY id")
        .await
        .unwrap_or_else(|e| panic!("{context}: session unusable: {e:?}"));
    assert_eq!(names, ["Alice", "Bob"], "{context}");
    assert_masked_rows(c, "SELECT id, phone, email FROM customers ORDER BY id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_catalog_red_team_views_in_mysql_and_sys_are_masked() {
    let grants = format!(
        "GRANT ALL PRIVILEGES ON mysql.* TO '{UPSTREAM_USER}'@'%';
         GRANT ALL PRIVILEGES ON sys.* TO '{UPSTREAM_USER}'@'%';"
    );
    let mut env = env(&grants).await;
    let mut c = env.agent().await;
    for db in ["mysql", "sys"] {
        run(
            &mut c,
            &format!("CREATE VIEW {db}.rt_v AS SELECT id, phone, email FROM app.customers"),
        )
        .await;
        run(
            &mut c,
            &format!(
                "CREATE VIEW {db}.rt_w AS SELECT id, CONCAT(phone, '') AS p, \
                 REVERSE(email) AS e FROM app.customers"
            ),
        )
        .await;
        for sql in [
            format!("SELECT * FROM {db}.rt_v ORDER BY id"),
            format!("SELECT id, phone, email FROM {db}.rt_v ORDER BY id"),
            format!("SELECT * FROM {db}.rt_w ORDER BY id"),
            format!("SELECT id, p, e FROM {db}.rt_w ORDER BY id"),
        ] {
            assert_masked_rows(&mut c, &sql).await;
        }
    }
    // The stock views are in the snapshot now: reading one still works,
    // and so does everything else.
    let version: Vec<mysql_async::Row> = c
        .query("SELECT * FROM sys.version")
        .await
        .expect("a stock sys view reads");
    assert_eq!(version.len(), 1);
    assert_usable(&mut c, "after views in mysql and sys").await;
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_catalog_red_team_names_that_differ_only_in_case_are_refused() {
    let grants =
        format!("CREATE DATABASE `APP`; GRANT ALL PRIVILEGES ON `APP`.* TO '{UPSTREAM_USER}'@'%';");
    let mut env = env(&grants).await;
    let mut c = env.agent().await;
    run(
        &mut c,
        "CREATE VIEW vw AS SELECT id, CONCAT(phone, '') AS p FROM customers",
    )
    .await;
    assert_masked_rows(&mut c, "SELECT p, id FROM vw ORDER BY id").await;

    // A table whose name differs only in case: `vw` is refused, not read
    // with `VW`'s columns.
    run(&mut c, "CREATE TABLE VW (x1 int)").await;
    env.admin("INSERT INTO VW VALUES (7)");
    for sql in ["SELECT p FROM vw", "SELECT * FROM vw", "SELECT * FROM VW"] {
        assert_refused(&mut c, sql).await;
    }
    run(&mut c, "DROP TABLE VW").await;
    assert_masked_rows(&mut c, "SELECT p, id FROM vw ORDER BY id").await;

    // The same for a database whose name differs only in case.
    run(&mut c, "CREATE TABLE APP.vw (x1 int)").await;
    env.admin("INSERT INTO APP.vw VALUES (7)");
    for sql in [
        "SELECT p FROM app.vw",
        "SELECT p FROM vw",
        "SELECT * FROM APP.vw",
    ] {
        assert_refused(&mut c, sql).await;
    }
    run(&mut c, "DROP TABLE APP.vw").await;
    assert_masked_rows(&mut c, "SELECT p, id FROM vw ORDER BY id").await;
    assert_usable(&mut c, "after the case collisions").await;
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_catalog_red_team_sql_select_limit_does_not_cut_the_snapshot_short() {
    let mut env = env("").await;
    let mut c = env.agent().await;
    run(
        &mut c,
        "CREATE VIEW rt_v AS SELECT id, phone, email FROM customers",
    )
    .await;
    assert_masked_rows(&mut c, "SELECT id, phone, email FROM rt_v ORDER BY id").await;
    // The helper's reproduction: a one-row limit, then a statement that
    // reloads the snapshot (any text with `create` in it), then the limit
    // back. The snapshot held one column and the view was read in clear.
    run(&mut c, "SET SESSION sql_select_limit = 1").await;
    run(&mut c, "SELECT 'create'").await;
    run(&mut c, "CREATE TABLE rt_reload (a int)").await;
    assert_masked_rows(&mut c, "SELECT id, phone, email FROM rt_v ORDER BY id").await;
    run(&mut c, "SET SESSION sql_select_limit = DEFAULT").await;
    for sql in [
        "SELECT id, phone, email FROM rt_v ORDER BY id",
        "SELECT * FROM rt_v ORDER BY id",
        "SELECT v.email FROM rt_v v JOIN customers c ON c.id = v.id ORDER BY v.id",
    ] {
        assert_masked_rows(&mut c, sql).await;
    }
    assert_usable(&mut c, "after sql_select_limit").await;
    drop(c);
    env.stop().await;
}

/// `SELECT *` from information_schema, whose columns the snapshot does not
/// hold, runs; a result with columns the analysis never saw from anything
/// else is still refused (compatibility finding: every `SELECT *` from
/// information_schema was refused as not matching the masking analysis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_catalog_red_team_select_star_from_information_schema_runs() {
    let mut env = env("").await;
    let mut c = env.agent().await;
    for sql in [
        "SELECT * FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'customers'",
        "SELECT * FROM information_schema.tables WHERE table_schema = 'app'",
        "SELECT t.* FROM information_schema.schemata t WHERE schema_name = 'app'",
        "SELECT c.id, c.phone, c.email, t.* FROM customers c JOIN information_schema.tables t \
         ON t.table_schema = 'app' AND t.table_name = 'customers' ORDER BY c.id",
    ] {
        assert_masked_rows(&mut c, sql).await;
    }
    assert_usable(&mut c, "after information_schema").await;
    drop(c);
    env.stop().await;
}

/// Red-team findings: a MERGE table (`ENGINE=MRG_MyISAM UNION=(t)`) reads
/// and writes `t` under its own name, which masks (naming `t`) did not
/// follow: the emails of a masked MyISAM table came back in clear. Making
/// one is refused while masking applies, and one made on the server is
/// refused as the catalog describes it. A same-rule copy into a view,
/// which writes it into a column of another name, is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_catalog_red_team_merge_tables_and_views_do_not_carry_masked_data_away() {
    let rules = format!(
        "{RULES}\n[[mask]]\nid = \"code\"\ncolumns = [\"*.code\"]\nstrategy = \"redact\"\n"
    );
    let mut env = MyEnv::start_with(Some(&rules), "", "").await;
    env.admin(SETUP);
    env.admin(
        "CREATE TABLE legacy (id int NOT NULL, phone varchar(32), email varchar(100), INDEX(id)) ENGINE=MyISAM;
         INSERT INTO legacy SELECT id, phone, email FROM customers;
         CREATE TABLE dba_merge (id int NOT NULL, phone varchar(32), email varchar(100), INDEX(id))
           ENGINE=MRG_MyISAM UNION=(legacy);
         CREATE TABLE codes (id int, code varchar(20));
         INSERT INTO codes VALUES (1, 'c-one'), (2, 'c-two');
         CREATE TABLE loot (id int, note varchar(100));
         INSERT INTO loot VALUES (1, 'a'), (2, 'b');
         CREATE VIEW vv AS SELECT id, note AS code FROM loot;
         CREATE TABLE g2 (id int, code varchar(20), x varchar(30) AS (reverse(code)) STORED);
         CREATE TABLE d2 (id int, code varchar(20), x varchar(30) DEFAULT (reverse(code)));",
    );
    // A DBA's generated columns over masked ones (read-route finding:
    // they came back in clear).
    env.admin(
        "ALTER TABLE customers ADD email_v varchar(100) AS (lower(email)) VIRTUAL,
           ADD phone_p varchar(40) AS (reverse(phone)) PERSISTENT;",
    );
    let mut c = env.agent().await;
    assert_masked_rows(
        &mut c,
        "SELECT id, email_v, phone_p FROM customers ORDER BY id",
    )
    .await;
    assert_masked_rows(&mut c, "SELECT * FROM customers ORDER BY id").await;
    let made = c
        .query_drop(
            "CREATE TABLE m2 (id int NOT NULL, phone varchar(32), email varchar(100), INDEX(id)) \
             ENGINE=MRG_MyISAM UNION=(customers)",
        )
        .await;
    let e = format!("{made:?}");
    assert!(e.contains("reads other tables"), "{e}");
    assert_refused(&mut c, "SELECT id, phone, email FROM dba_merge ORDER BY id").await;
    // `code` is masked by name: a copy from codes.code into vv.code was a
    // same-rule copy, into loot.note.
    let copy = c
        .query_drop("INSERT INTO vv (id, code) SELECT id, code FROM codes")
        .await;
    let e = format!("{copy:?}");
    assert!(e.contains("passes what is written to it on"), "{e}");
    let notes: Vec<String> = c.query("SELECT note FROM loot ORDER BY id").await.unwrap();
    assert_eq!(notes, ["a", "b"]);
    // A generated column or an expression default computes from the copy
    // (re-audit finding: `x` held the codes reversed, in clear).
    for sql in [
        "INSERT INTO g2 (id, code) SELECT id, code FROM codes",
        "INSERT INTO d2 (id, code) SELECT id, code FROM codes",
    ] {
        let e = format!("{:?}", c.query_drop(sql).await);
        assert!(e.contains("passes what is written to it on"), "{sql}: {e}");
    }
    assert_usable(&mut c, "after the refusals").await;
    drop(c);
    env.stop().await;
}
