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

/// One step: messages to send, and how many ReadyForQuery to wait for.
struct Step<'a> {
    messages: Vec<String>,
    ready: usize,
    _label: &'a str,
}

fn query(sql: &str) -> String {
    serde_json::json!({ "Query": sql }).to_string()
}

fn msg(v: serde_json::Value) -> String {
    v.to_string()
}

/// Runs `steps` on a new agent session; returns everything the client
/// received, as text.
async fn replay(env: &Env, steps: &[Step<'_>]) -> String {
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    for step in steps {
        let mut out = bytes::BytesMut::new();
        for m in &step.messages {
            encode_message(m, &mut out);
        }
        raw.send(&out).await;
        raw.until_ready(step.ready).await;
    }
    String::from_utf8_lossy(&raw.received).into_owned()
}

/// Parse of protocol statement `s` over masked data, described, synced.
fn parse_masked() -> Step<'static> {
    Step {
        messages: vec![
            msg(serde_json::json!({"Parse": {"name": "s", "query": MASKED}})),
            msg(serde_json::json!({"Describe": {"kind": "S", "name": "s"}})),
            msg(serde_json::json!({"Sync": null})),
        ],
        ready: 1,
        _label: "parse",
    }
}

fn q<'a>(sql: &str, label: &'a str) -> Step<'a> {
    Step {
        messages: vec![query(sql)],
        ready: 1,
        _label: label,
    }
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
    let cases: Vec<(&str, Vec<Step<'_>>)> = vec![
        (
            "a DEALLOCATE cut short by an earlier error, then a PREPARE the server refused",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s", "deallocate"),
                q(&prepare_harmless, "prepare"),
                q("EXECUTE s", "execute"),
            ],
        ),
        (
            "DEALLOCATE and PREPARE in one query, cut short by an error",
            vec![
                parse_masked(),
                q(
                    &format!("DEALLOCATE nosuch; DEALLOCATE s; {prepare_harmless}"),
                    "deallocate+prepare",
                ),
                q("EXECUTE s", "execute"),
            ],
        ),
        (
            "DISCARD ALL refused inside a transaction",
            vec![
                parse_masked(),
                q("BEGIN", "begin"),
                q("DISCARD ALL", "discard"),
                q("ROLLBACK", "rollback"),
                q(&prepare_harmless, "prepare"),
                q("EXECUTE s", "execute"),
            ],
        ),
        (
            "DEALLOCATE in an aborted transaction",
            vec![
                parse_masked(),
                q("BEGIN", "begin"),
                q("SELECT 1/0", "abort"),
                q("DEALLOCATE s", "deallocate"),
                q("ROLLBACK", "rollback"),
                q(&prepare_harmless, "prepare"),
                q("EXECUTE s", "execute"),
            ],
        ),
        (
            "a DEALLOCATE parsed through the protocol but never executed, then PREPARE",
            vec![
                parse_masked(),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Parse": {"name": "", "query": "DEALLOCATE s"}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 1,
                    _label: "parse deallocate",
                },
                q(&prepare_harmless, "prepare"),
                q("EXECUTE s", "execute"),
            ],
        ),
        (
            "a PREPARE parsed through the protocol but never executed",
            vec![
                parse_masked(),
                q("DEALLOCATE nosuch; DEALLOCATE s", "deallocate"),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Parse": {"name": "", "query": prepare_harmless}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 1,
                    _label: "parse prepare",
                },
                q("EXECUTE s", "execute"),
            ],
        ),
        (
            "a DECLARE the server refused (the portal's name), then ROLLBACK TO and FETCH",
            vec![
                q("BEGIN", "begin"),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Parse": {"name": "s", "query": MASKED}})),
                        msg(serde_json::json!({"Bind": {"portal": "cc", "statement": "s"}})),
                        msg(serde_json::json!({"Describe": {"kind": "P", "name": "cc"}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 1,
                    _label: "bind cc",
                },
                q(
                    &format!("SAVEPOINT a; {declare_harmless}"),
                    "declare over the portal",
                ),
                q("ROLLBACK TO a; FETCH ALL FROM cc", "fetch"),
                q("ROLLBACK", "rollback"),
            ],
        ),
        (
            "a DECLARE parsed through the protocol but never executed, then FETCH",
            vec![
                q("BEGIN", "begin"),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Parse": {"name": "s", "query": MASKED}})),
                        msg(serde_json::json!({"Bind": {"portal": "cc", "statement": "s"}})),
                        msg(serde_json::json!({"Describe": {"kind": "P", "name": "cc"}})),
                        msg(serde_json::json!({"Sync": null})),
                        msg(serde_json::json!({"Parse": {"name": "", "query": declare_harmless}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 2,
                    _label: "bind cc, parse declare",
                },
                q("FETCH ALL FROM cc", "fetch"),
                q("ROLLBACK", "rollback"),
            ],
        ),
        (
            "CLOSE of the portal refused in an aborted transaction, then FETCH after ROLLBACK TO",
            vec![
                q("BEGIN", "begin"),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Parse": {"name": "s", "query": MASKED}})),
                        msg(serde_json::json!({"Bind": {"portal": "cc", "statement": "s"}})),
                        msg(serde_json::json!({"Describe": {"kind": "P", "name": "cc"}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 1,
                    _label: "bind cc",
                },
                q("SAVEPOINT a", "savepoint"),
                q("SELECT 1/0", "abort"),
                q("CLOSE cc", "close"),
                q("ROLLBACK TO a", "rollback to"),
                q("FETCH ALL FROM cc", "fetch"),
                q("ROLLBACK", "rollback"),
            ],
        ),
        // Second pass (a red team of the fix).
        (
            "a PREPARE of a protocol statement's name, refused by the server, then Bind and Execute",
            vec![
                parse_masked(),
                q(&prepare_harmless, "prepare"),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Bind": {"portal": "p", "statement": "s"}})),
                        msg(serde_json::json!({"Describe": {"kind": "P", "name": "p"}})),
                        msg(serde_json::json!({"Execute": {"portal": "p"}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 1,
                    _label: "bind, execute",
                },
            ],
        ),
        (
            "the same, in one write",
            vec![Step {
                messages: vec![
                    msg(serde_json::json!({"Parse": {"name": "s", "query": MASKED}})),
                    msg(serde_json::json!({"Describe": {"kind": "S", "name": "s"}})),
                    msg(serde_json::json!({"Sync": null})),
                    query(&prepare_harmless),
                    msg(serde_json::json!({"Bind": {"portal": "p", "statement": "s"}})),
                    msg(serde_json::json!({"Describe": {"kind": "P", "name": "p"}})),
                    msg(serde_json::json!({"Execute": {"portal": "p"}})),
                    msg(serde_json::json!({"Sync": null})),
                ],
                ready: 3,
                _label: "all at once",
            }],
        ),
        (
            "a SQL statement closed by a Close message, its name parsed over masked data, a PREPARE refused, then EXECUTE",
            vec![
                q(&prepare_harmless, "prepare"),
                Step {
                    messages: vec![
                        msg(serde_json::json!({"Close": {"kind": "S", "name": "s"}})),
                        msg(serde_json::json!({"Sync": null})),
                    ],
                    ready: 1,
                    _label: "close",
                },
                parse_masked(),
                q(&prepare_harmless, "prepare again"),
                q("EXECUTE s", "execute"),
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
    drop(c);
    env.stop().await;
}
