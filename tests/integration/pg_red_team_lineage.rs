//! The bypasses a red-team pass on Postgres name resolution and lineage
//! found (5 December 2026), replayed through airlock against a real
//! Postgres. Each must be refused, or come back with the masked values
//! masked, and the session must keep working:
//!
//! * `EXPLAIN (ANALYZE) CREATE TABLE ... AS`, which runs its statement
//!   although only `EXPLAIN ANALYZE` was checked as running;
//! * `c.to_json`, which Postgres reads as `to_json(c)` (a whole row);
//! * `ALTER INDEX customers RENAME`, which renames a table too;
//! * names that differ only in case (`"EMAIL"` and `email`), which airlock
//!   compared in lower case and took the first of;
//! * a WITH RECURSIVE entry reading one listed after it;
//! * a recursive CTE whose taints settle only after many rounds;
//! * a table function whose alias list names fewer columns than it has;
//! * functions that keep their arguments (`setval`, `pg_notify`);
//! * (second pass) the names Postgres gives computed columns (`lower`),
//!   temporary views, a table function's computed values and its columns
//!   beyond the alias list, and a RowDescription of a statement since
//!   replaced;
//! * (7 December) a quoted CTE name that differs from the table's only in
//!   case; string constants split across lines, which Postgres joins and
//!   airlock's parser did not; dollar-quote tags and operators running
//!   into `--` or `/*`, which the two lexers split differently.

use crate::common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

const RULES: &str = r#"
[[policy]]
id = "agent"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "transaction", "session"]

[[mask]]
id = "email"
columns = ["public.customers.email"]
strategy = "email"

[[mask]]
id = "phone"
columns = ["public.customers.phone"]
strategy = "redact"
"#;

const SETUP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, phone text);
INSERT INTO customers VALUES (1, 'Alice', 'alice.secret@example.com', '555-0101'),
                             (2, 'Bob', 'bob.hidden@example.org', '555-0102');
CREATE SEQUENCE s1;
";

/// Protected values: none may reach the client, in any of these forms.
const SECRETS: &[&str] = &[
    "alice.secret",
    "alice#secret",
    "#secret",
    "terces.ecila",
    "bob.hidden",
    "555-0101",
    "5550101",
    "1010-555",
];

async fn env() -> Env {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    env
}

/// What the client saw of `sql` (simple protocol): every value, or the
/// error's text; `true` when it ran.
async fn run(c: &Client, sql: &str) -> (bool, String) {
    match c.simple_query(sql).await {
        Ok(msgs) => {
            let mut out = String::new();
            for m in msgs {
                if let SimpleQueryMessage::Row(r) = m {
                    for i in 0..r.len() {
                        out.push_str(r.get(i).unwrap_or("NULL"));
                        out.push('|');
                    }
                }
            }
            (true, out)
        }
        Err(e) => (false, format!("{e:?}")),
    }
}

/// The secrets `seen` holds, as complaints about `context`.
fn leaks(seen: &str, context: &str) -> Vec<String> {
    let lower = seen.to_lowercase();
    SECRETS
        .iter()
        .filter(|s| lower.contains(*s))
        .map(|s| format!("{context}: {s:?} leaked in {seen}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_name_resolution_and_lineage_tricks_cannot_unmask() {
    let mut env = env().await;
    let c = env.agent().await;
    let reads = [
        // Function notation on a row.
        "SELECT c.to_json FROM customers c",
        "SELECT c.to_jsonb->>'email' FROM customers c",
        "SELECT c.concat FROM customers c",
        "SELECT replace(c.to_jsonb->>'phone', '-', '') FROM customers c",
        // Names that differ only in case.
        r#"SELECT x.email || '' FROM (SELECT 'safe' AS "EMAIL", email FROM customers) x"#,
        r#"SELECT "C".email || '' FROM (SELECT 'x' AS email) c, customers "C""#,
        r#"SELECT email || '' FROM customers AS c("EMAIL")"#,
        // A quoted CTE name differs from the table's but for case: FROM
        // customers reads the table (second red-team audit).
        r#"WITH "Customers" AS (SELECT 'x' AS email, 'y' AS phone) SELECT email, phone FROM customers"#,
        r#"WITH "CUSTOMERS" AS (SELECT 1) TABLE customers"#,
        r#"WITH "Customers" AS (SELECT 'x' AS email) SELECT c.email || '' FROM customers c"#,
        // A WITH RECURSIVE entry reading a later one.
        "WITH RECURSIVE a AS (SELECT e FROM b), b AS (SELECT email AS e FROM customers) SELECT e || '' FROM a",
        // A recursive CTE that moves a value one column per round.
        "WITH RECURSIVE t AS (SELECT 0 AS n, 'x' AS a, 'x' AS b, 'x' AS c, 'x' AS d, 'x' AS e, email AS f FROM customers \
         UNION ALL SELECT n + 1, b, c, d, e, f, a FROM t WHERE n < 5) SELECT a || '' FROM t WHERE n = 5",
        // An alias list shorter than the function's columns.
        "SELECT u.unnest || '' FROM customers c, unnest(ARRAY['x'], ARRAY[c.email]) AS u(a)",
        "SELECT * FROM customers c, unnest(ARRAY['x'], ARRAY[c.phone]) AS u(a)",
        "SELECT u.unnest FROM (SELECT email FROM customers) c, unnest(ARRAY['x'], ARRAY[c.email]) AS u(a)",
    ];
    // Every shape is tried, and every leak reported at the end.
    let mut failed = Vec::new();
    for sql in reads {
        let (_, seen) = run(&c, sql).await;
        failed.extend(leaks(&seen, sql));
    }
    // Statements that would keep masked data where it is read back raw.
    for sql in [
        "EXPLAIN (ANALYZE) CREATE TABLE stolen AS SELECT email, phone FROM customers",
        "EXPLAIN (FORMAT JSON, ANALYZE true) CREATE TABLE stolen AS SELECT email || '' AS e FROM customers",
        "SELECT setval('s1', replace(phone, '-', '')::bigint) FROM customers WHERE id = 1",
        "SELECT id FROM customers WHERE setval('s1', replace(phone, '-', '')::bigint) > 0",
        "SELECT pg_notify('ch', email) FROM customers",
        "UPDATE customers SET name = name WHERE pg_notify('ch', email) IS NULL",
        // The seed of random(): its next value is a codebook entry (third
        // red-team pass).
        "SELECT setseed(ascii(substr(phone, 2, 1)) / 256.0) FROM customers WHERE id = 1",
        "SELECT id FROM customers WHERE setseed(ascii(substr(email, 1, 1)) / 256.0) IS NULL",
        "ALTER INDEX customers RENAME TO c2",
    ] {
        let (ran, seen) = run(&c, sql).await;
        if ran || !seen.contains("airlock") {
            failed.push(format!("{sql}: not refused: {seen}"));
        }
        failed.extend(leaks(&seen, sql));
    }
    let direct = env.direct().await;
    let stolen = direct
        .query(
            "SELECT to_regclass('stolen') IS NULL, to_regclass('customers') IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    if !stolen[0].get::<_, bool>(0) {
        failed.push("EXPLAIN (ANALYZE) created the table".into());
    }
    if !stolen[0].get::<_, bool>(1) {
        failed.push("ALTER INDEX renamed the table".into());
        direct
            .batch_execute("ALTER TABLE c2 RENAME TO customers")
            .await
            .unwrap();
    }
    let seq = direct
        .query("SELECT last_value FROM s1", &[])
        .await
        .unwrap();
    if seq[0].get::<_, i64>(0) != 1 {
        failed.push("the sequence kept a value".into());
    }
    // What stays allowed: EXPLAIN (ANALYZE) of a read, and function notation
    // on a real column.
    for sql in [
        "EXPLAIN (ANALYZE) SELECT email FROM customers",
        "SELECT c.name FROM customers c ORDER BY id",
    ] {
        let (ran, seen) = run(&c, sql).await;
        assert!(ran, "{sql}: {seen}");
        failed.extend(leaks(&seen, sql));
    }
    let (_, seen) = run(&c, "SELECT email FROM customers ORDER BY id").await;
    assert!(seen.contains("@example.com"), "{seen}");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    drop((c, direct));
    env.stop().await;
}

/// Relations whose quoted names differ only in case (`vw` and `"VW"`) are
/// two relations to Postgres and one name to airlock's lower-case
/// lookups: the catalog kept whichever it read last, so a read of the view
/// was planned with the table's columns. Such a name is now refused until
/// one of them is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_relations_named_alike_but_for_case_are_refused() {
    let mut env = env().await;
    let c = env.agent().await;
    c.batch_execute("CREATE VIEW vw AS SELECT id, concat(phone, '') AS p FROM customers")
        .await
        .unwrap();
    let (_, seen) = run(&c, "SELECT p FROM vw ORDER BY id").await;
    assert_eq!(seen, "****|****|");
    c.batch_execute(r#"CREATE TABLE "VW" (x1 int, p text)"#)
        .await
        .unwrap();
    for sql in [
        "SELECT p FROM vw ORDER BY id",
        r#"SELECT p FROM "VW""#,
        "SELECT * FROM public.vw",
    ] {
        let (ran, seen) = run(&c, sql).await;
        assert!(leaks(&seen, sql).is_empty(), "{sql}: {seen}");
        assert!(
            !ran && seen.contains("differ only in case"),
            "{sql}: {seen}"
        );
    }
    c.batch_execute(r#"DROP TABLE "VW""#).await.unwrap();
    let (_, seen) = run(&c, "SELECT p FROM vw ORDER BY id").await;
    assert_eq!(seen, "****|****|");
    drop(c);
    env.stop().await;
}

/// The second pass: names airlock did not know for columns the server
/// named, relations it could not see, and metadata of a replaced
/// statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_second_pass_shapes_cannot_unmask() {
    let mut env = env().await;
    let c = env.agent().await;
    c.batch_execute("CREATE VIEW cv AS SELECT id, email, phone FROM customers")
        .await
        .unwrap();
    let mut failed = Vec::new();
    for sql in [
        "SELECT lower FROM (SELECT lower(email) FROM customers) s",
        "SELECT s.lower FROM (SELECT lower(phone) FROM customers) s",
        "WITH w AS (SELECT upper(email) FROM customers) SELECT upper FROM w",
        r#"SELECT "case" FROM (SELECT CASE WHEN id > 0 THEN email END FROM customers) s"#,
        "SELECT email FROM (SELECT CASE WHEN id < 0 THEN 'x' ELSE email || '' END FROM customers) s",
        "SELECT x FROM customers, unnest(ARRAY['@' || replace(email, '@', '#')]) AS u(x)",
        "SELECT * FROM unnest(ARRAY[1], ARRAY[2]) AS u(a), cv",
        "SELECT * FROM unnest(ARRAY[7]) WITH ORDINALITY AS u(a), cv",
        "SELECT * FROM (SELECT lower(email) FROM customers) a JOIN (SELECT 'x' AS lower) b USING (lower)",
    ] {
        let (_, seen) = run(&c, sql).await;
        failed.extend(leaks(&seen, sql));
    }
    let (ran, seen) = run(
        &c,
        "CREATE TEMP VIEW tv AS SELECT id, email AS e, phone AS p FROM customers",
    )
    .await;
    if ran || !seen.contains("airlock") {
        failed.push(format!("CREATE TEMP VIEW over masked data: {seen}"));
    }
    // A Describe of one text, then another text under the same name.
    let mut raw = crate::common::raw::RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = bytes::BytesMut::new();
    for m in [
        r#"{"Parse": {"name": "", "query": "SELECT email FROM customers"}}"#,
        r#"{"Describe": {"kind": "S", "name": ""}}"#,
        r#"{"Sync": null}"#,
        r#"{"Parse": {"name": "", "query": "SELECT '@' || replace(email, '@', '#') FROM customers"}}"#,
        r#"{"Bind": {"portal": "", "statement": ""}}"#,
        r#"{"Execute": {"portal": ""}}"#,
        r#"{"Sync": null}"#,
    ] {
        crate::common::raw::encode_message(m, &mut out);
    }
    raw.send(&out).await;
    raw.until_ready(2).await;
    let seen = String::from_utf8_lossy(&raw.received).into_owned();
    failed.extend(leaks(&seen, "a replaced statement's description"));
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    drop((c, raw));
    env.stop().await;
}

/// The third pass (helper audit of 7 December 2026): Postgres joins
/// string constants split across lines and reads the parts after an
/// `E''` with its escapes, so `'\''` ended the string there while
/// sqlparser read on to the next quote. What followed ran unjudged and
/// unmasked, over both protocols. Now refused, and nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_strings_split_across_lines_cannot_hide_sql() {
    let mut env = env().await;
    let c = env.agent().await;
    let mut failed = Vec::new();
    let hidden = [
        "SELECT E''\n'\\'' , id, replace(email, chr(64), chr(35)) AS e, replace(phone, chr(45), chr(46)) AS p FROM customers --'",
        "SELECT E''\n'\\''; SELECT email, phone FROM customers --'",
        "SELECT E'' -- a comment\n'\\''; CREATE TABLE pwn AS SELECT 1 --'",
        // A dollar-quote tag sqlparser does not take for one, and
        // operators running into `/*` or `--` (fourth pass).
        "SELECT $\u{20ac}$ --$\u{20ac}$, replace(email, chr(64), chr(35)) FROM customers",
        "SELECT $\u{a0}$ --$\u{a0}$; CREATE TABLE pwn AS SELECT 1",
        "SELECT 2 #/*'*/ 3, replace(email, chr(64), chr(35)) FROM customers --'",
        "SELECT 1 <>/*'*/ 2; SELECT email, phone FROM customers --'",
        "SELECT 2 #--'\n 3, replace(phone, chr(45), chr(46)) FROM customers --'",
    ];
    for sql in hidden {
        let (ran, seen) = run(&c, sql).await;
        if ran || !seen.contains("airlock") {
            failed.push(format!("{sql:?} was not refused: {seen}"));
        }
        failed.extend(leaks(&seen, sql));
        // The extended protocol: Parse, Bind, Execute.
        match c.query(sql, &[]).await {
            Ok(rows) => {
                let seen: Vec<String> = rows
                    .iter()
                    .flat_map(|r| {
                        (0..r.len()).map(move |i| r.try_get::<_, String>(i).unwrap_or_default())
                    })
                    .collect();
                failed.push(format!("{sql:?} ran over the extended protocol: {seen:?}"));
            }
            Err(e) => {
                let text = format!("{e:?}");
                if !text.contains("airlock") {
                    failed.push(format!(
                        "{sql:?} refused by the server, not airlock: {text}"
                    ));
                }
            }
        }
    }
    let made: Option<String> = env
        .direct()
        .await
        .query_one("SELECT to_regclass('pwn')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(made, None, "a hidden CREATE TABLE ran");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // The session is still usable.
    let (ran, seen) = run(&c, "SELECT id FROM customers WHERE id = 1").await;
    assert!(ran && seen.contains('1'), "{seen}");
    drop(c);
    env.stop().await;
}
