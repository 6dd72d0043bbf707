//! The bypasses a red-team pass on statement and portal names found (6
//! December 2026), replayed through airlock against a real Postgres.
//!
//! A masking session forgot a protocol statement or portal when a SQL
//! statement said it would go (`DEALLOCATE`, `DISCARD ALL`, `DECLARE` of
//! its name, `CLOSE`, `ROLLBACK TO SAVEPOINT`), and took a SQL `PREPARE`
//! or `DECLARE` for what the name meant from then on, whether or not the
//! server carried them out. When the server refused them (an earlier
//! error in the same query, an aborted transaction, `DISCARD ALL` inside a
//! transaction, a name already taken), it still held the statement or
//! portal over masked data, and `EXECUTE` or `FETCH` of the name read it
//! in clear. Each sequence must now be refused or come back masked, and
//! the session must keep working; the same statements used as clients
//! use them keep working.
//!
//! A second pass, on the fix, found two more: a `PREPARE` of a protocol
//! statement's name, which the server refuses, made airlock forget the
//! statement's masking plan while still vouching for Binds of it; and a
//! Close message of a SQL-prepared statement left its name SQL-prepared.

use crate::common::raw::{encode_message, RawClient};
use crate::common::*;
use serde_json::json;

const RULES: &str = r#"
[[policy]]
id = "agent"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "transaction", "session"]

[[mask]]
id = "email"
columns = ["public.customers.email"]
strategy = "email"
"#;

const SETUP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text, email text);
INSERT INTO customers VALUES (1, 'Alice', 'alice.secret@example.com'),
                             (2, 'Bob', 'bob.hidden@example.org');
";

/// The protected values, in the forms the masked query below gives them.
const SECRETS: &[&str] = &["alice.secret", "bob.hidden"];

/// A query over the masked column that the value detectors do not see
/// through (no `@` left).
const MASKED: &str = "SELECT replace(email, '@', ' at ') AS e FROM customers";
/// A harmless query with the same shape.
const HARMLESS: &str = "SELECT 'x' AS e FROM customers";

/// One step: messages to send in one write, and how many ReadyForQuery
/// to wait for.
struct Step {
    messages: Vec<serde_json::Value>,
    ready: usize,
}

/// A step of protocol messages (JSON forms, see `encode_message`).
fn wire(ready: usize, messages: Vec<serde_json::Value>) -> Step {
    Step { messages, ready }
}

/// A simple query.
fn q(sql: &str) -> Step {
    wire(1, vec![query(sql)])
}

fn query(sql: &str) -> serde_json::Value {
    json!({ "Query": sql })
}

/// Runs `steps` on a new agent session; returns everything the client
/// received, as text.
async fn replay(env: &Env, steps: &[Step]) -> String {
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    for step in steps {
        let mut out = bytes::BytesMut::new();
        for m in &step.messages {
            encode_message(&m.to_string(), &mut out);
        }
        raw.send(&out).await;
        raw.until_ready(step.ready).await;
    }
    String::from_utf8_lossy(&raw.received).into_owned()
}

/// Parse of protocol statement `s` over masked data, described, synced.
fn parse_masked() -> Step {
    wire(
        1,
        vec![
            json!({"Parse": {"name": "s", "query": MASKED}}),
            json!({"Describe": {"kind": "S", "name": "s"}}),
            json!({"Sync": null}),
        ],
    )
}

/// Parse of `s` over masked data and Bind of portal `cc` from it,
/// described (to be followed by a Sync).
fn bind_masked_portal() -> Vec<serde_json::Value> {
    vec![
        json!({"Parse": {"name": "s", "query": MASKED}}),
        json!({"Bind": {"portal": "cc", "statement": "s"}}),
        json!({"Describe": {"kind": "P", "name": "cc"}}),
    ]
}

/// `sql` parsed as the unnamed statement, then Sync: never executed.
fn parsed_only(sql: &str) -> Step {
    wire(
        1,
        vec![
            json!({"Parse": {"name": "", "query": sql}}),
            json!({"Sync": null}),
        ],
    )
}

/// `sql` parsed, bound and executed through the unnamed statement and
/// portal (to be followed by a Sync).
fn run_parsed(sql: &str) -> Vec<serde_json::Value> {
    vec![
        json!({"Parse": {"name": "", "query": sql}}),
        json!({"Bind": {"portal": "", "statement": ""}}),
        json!({"Describe": {"kind": "P", "name": ""}}),
        json!({"Execute": {"portal": ""}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_names_the_server_kept_cannot_be_read_in_clear() {
    init_logging();
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    let prepare_harmless = format!("PREPARE s AS {HARMLESS}");
    let declare_harmless = format!("DECLARE cc CURSOR FOR {HARMLESS}");
    let sync = || json!({"Sync": null});
    let with_sync = |mut messages: Vec<serde_json::Value>| {
        messages.push(sync());
        messages
    };
    let cases: Vec<(&str, Vec<Step>)> = vec![
        (
            "a DEALLOCATE cut short by an earlier error, then a PREPARE the server refused",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                q(&prepare_harmless),
                q("EXECUTE s"),
            ],
        ),
        (
            "DEALLOCATE and PREPARE in one query, cut short by an error",
            vec![
                parse_masked(),
                q(&format!(
                    "DEALLOCATE nosuch; DEALLOCATE s; {prepare_harmless}"
                )),
                q("EXECUTE s"),
            ],
        ),
        (
            "DISCARD ALL refused inside a transaction",
            vec![
                parse_masked(),
                q("BEGIN"),
                q("DISCARD ALL"),
                q("ROLLBACK"),
                q(&prepare_harmless),
                q("EXECUTE s"),
            ],
        ),
        (
            "DEALLOCATE in an aborted transaction",
            vec![
                parse_masked(),
                q("BEGIN"),
                q("SELECT 1/0"),
                q("DEALLOCATE s"),
                q("ROLLBACK"),
                q(&prepare_harmless),
                q("EXECUTE s"),
            ],
        ),
        (
            "a DEALLOCATE parsed through the protocol but never executed, then PREPARE",
            vec![
                parse_masked(),
                parsed_only("DEALLOCATE s"),
                q(&prepare_harmless),
                q("EXECUTE s"),
            ],
        ),
        (
            "a PREPARE parsed through the protocol but never executed",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                parsed_only(&prepare_harmless),
                q("EXECUTE s"),
            ],
        ),
        (
            "a DECLARE the server refused (the portal's name), then ROLLBACK TO and FETCH",
            vec![
                q("BEGIN"),
                wire(1, with_sync(bind_masked_portal())),
                q(&format!("SAVEPOINT a; {declare_harmless}")),
                q("ROLLBACK TO a; FETCH ALL FROM cc"),
                q("ROLLBACK"),
            ],
        ),
        (
            "a DECLARE parsed through the protocol but never executed, then FETCH",
            vec![
                q("BEGIN"),
                // One write: the portal, then the DECLARE parsed only.
                wire(2, {
                    let mut m = with_sync(bind_masked_portal());
                    m.extend(parsed_only(&declare_harmless).messages);
                    m
                }),
                q("FETCH ALL FROM cc"),
                q("ROLLBACK"),
            ],
        ),
        (
            "CLOSE of the portal refused in an aborted transaction, then FETCH after ROLLBACK TO",
            vec![
                q("BEGIN"),
                wire(1, with_sync(bind_masked_portal())),
                q("SAVEPOINT a"),
                q("SELECT 1/0"),
                q("CLOSE cc"),
                q("ROLLBACK TO a"),
                q("FETCH ALL FROM cc"),
                q("ROLLBACK"),
            ],
        ),
        // Second pass (a red team of the fix).
        (
            "a PREPARE of a protocol statement's name, refused by the server, then Bind and Execute",
            vec![
                parse_masked(),
                q(&prepare_harmless),
                wire(
                    1,
                    vec![
                        json!({"Bind": {"portal": "p", "statement": "s"}}),
                        json!({"Describe": {"kind": "P", "name": "p"}}),
                        json!({"Execute": {"portal": "p"}}),
                        sync(),
                    ],
                ),
            ],
        ),
        (
            "the same, in one write",
            vec![wire(
                3,
                vec![
                    json!({"Parse": {"name": "s", "query": MASKED}}),
                    json!({"Describe": {"kind": "S", "name": "s"}}),
                    sync(),
                    query(&prepare_harmless),
                    json!({"Bind": {"portal": "p", "statement": "s"}}),
                    json!({"Describe": {"kind": "P", "name": "p"}}),
                    json!({"Execute": {"portal": "p"}}),
                    sync(),
                ],
            )],
        ),
        (
            "a SQL statement closed by a Close message, its name parsed over masked data, a PREPARE refused, then EXECUTE",
            vec![
                q(&prepare_harmless),
                wire(1, vec![json!({"Close": {"kind": "S", "name": "s"}}), sync()]),
                parse_masked(),
                q(&prepare_harmless),
                q("EXECUTE s"),
            ],
        ),
        // A SQL PREPARE sent through Parse is taken for its name when a
        // portal of it runs, not when parsed (it was refused in masking
        // sessions before).
        (
            "a PREPARE through Parse, Bind and Execute that the server refused, then EXECUTE",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                wire(1, with_sync(run_parsed(&prepare_harmless))),
                q("EXECUTE s"),
            ],
        ),
        (
            "the same, with EXECUTE parsed and run behind it before the Sync",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                wire(1, {
                    let mut m = run_parsed(&prepare_harmless);
                    m.extend(run_parsed("EXECUTE s"));
                    with_sync(m)
                }),
            ],
        ),
        (
            "the same, with EXECUTE as a simple query in the same write",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                wire(2, {
                    let mut m = with_sync(run_parsed(&prepare_harmless));
                    m.push(query("EXECUTE s"));
                    m
                }),
            ],
        ),
        (
            "a PREPARE through the protocol skipped after an earlier error, then EXECUTE",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                wire(1, {
                    let mut m = run_parsed("SELECT 1/0");
                    m.extend(run_parsed(&prepare_harmless));
                    with_sync(m)
                }),
                q("EXECUTE s"),
            ],
        ),
        (
            "a PREPARE parsed as a named statement, bound, never executed",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s"),
                wire(
                    1,
                    vec![
                        json!({"Parse": {"name": "pp", "query": prepare_harmless}}),
                        json!({"Bind": {"portal": "", "statement": "pp"}}),
                        sync(),
                    ],
                ),
                q("EXECUTE s"),
            ],
        ),
    ];
    let mut failed = Vec::new();
    for (what, steps) in &cases {
        let seen = replay(&env, steps).await;
        let lower = seen.to_lowercase();
        for s in SECRETS {
            if lower.contains(s) {
                failed.push(format!("{what}: {s:?} leaked"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));

    // The same statements, used as clients use them, keep working.
    let mut c = env.agent().await;
    let rows = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| {
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    c.simple_query("PREPARE p AS SELECT name FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows(c.simple_query("EXECUTE p").await.unwrap()),
        ["Alice", "Bob"]
    );
    c.simple_query("DEALLOCATE p").await.unwrap();
    c.simple_query("PREPARE p AS SELECT id::text FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows(c.simple_query("EXECUTE p").await.unwrap()), ["1", "2"]);
    // In one query too.
    assert_eq!(
        rows(
            c.simple_query("PREPARE q AS SELECT name FROM customers ORDER BY id; EXECUTE q")
                .await
                .unwrap()
        ),
        ["Alice", "Bob"]
    );
    // A cursor declared through the extended protocol and fetched through
    // it (as psycopg's named cursors do), and one through simple queries.
    let tx = c.transaction().await.unwrap();
    tx.execute(
        "DECLARE pc CURSOR FOR SELECT name FROM customers ORDER BY id",
        &[],
    )
    .await
    .unwrap();
    let fetched = tx.query("FETCH ALL FROM pc", &[]).await.unwrap();
    assert_eq!(fetched.len(), 2);
    tx.rollback().await.unwrap();
    c.simple_query("BEGIN").await.unwrap();
    c.simple_query("DECLARE sc CURSOR FOR SELECT email FROM customers ORDER BY id")
        .await
        .map(|_| ())
        .unwrap_or(()); // over masked data: refused, as before
    c.simple_query("ROLLBACK").await.unwrap();
    c.simple_query("BEGIN; DECLARE sc CURSOR FOR SELECT name FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        rows(c.simple_query("FETCH ALL FROM sc").await.unwrap()),
        ["Alice", "Bob"]
    );
    c.simple_query("COMMIT").await.unwrap();

    // SQL PREPARE through the extended protocol, as drivers send every
    // statement (tokio-postgres here; psycopg 3 and JDBC alike): it runs,
    // and EXECUTE of it works by simple query and through Parse, again
    // after DEALLOCATE. Over masked data it is refused, as by simple query.
    c.execute("PREPARE x AS SELECT name FROM customers ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(
        rows(c.simple_query("EXECUTE x").await.unwrap()),
        ["Alice", "Bob"]
    );
    let names: Vec<String> = c
        .query("EXECUTE x", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["Alice", "Bob"]);
    c.execute("DEALLOCATE x", &[]).await.unwrap();
    c.execute(
        "PREPARE x AS SELECT id::text FROM customers ORDER BY id",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(rows(c.simple_query("EXECUTE x").await.unwrap()), ["1", "2"]);
    let e = c
        .execute("PREPARE y AS SELECT email FROM customers", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
    drop(c);
    env.stop().await;
}
