//! PII masking on the MySQL path: text-protocol result sets through airlock
//! to a throwaway MariaDB. No raw PII value may reach the client.

#[path = "common/mysql.rs"]
mod mysql_env;

use mysql_async::prelude::*;
use mysql_async::Value;
use mysql_env::{MyEnv, AGENT, AGENT_PW};

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]

[[mask]]
id = "email"
columns = ["app.customers.email"]
strategy = "email"

[[mask]]
id = "card"
columns = ["*.card_number"]
strategy = "partial"
keep_last = 4
"#;

const SETUP: &str = "CREATE TABLE customers (id int PRIMARY KEY, name varchar(50), email varchar(100), card_number varchar(32), score int);
INSERT INTO customers VALUES (1, 'Alice', 'alice.pii@example.com', '4111111111111111', 7),
 (2, 'Bob', 'bob.pii@example.org', '5500005555555559', NULL);";

const FORBIDDEN: [&str; 4] = [
    "alice.pii@example.com",
    "bob.pii@example.org",
    "4111111111111111",
    "5500005555555559",
];

fn assert_clean(bytes: &[u8], context: &str) {
    for f in FORBIDDEN {
        for v in [f.to_owned(), f.to_uppercase(), f.to_lowercase()] {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{context}: raw PII {v:?} leaked in {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

fn flatten(rows: &[mysql_async::Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        for i in 0..r.len() {
            if let Some(Value::Bytes(b)) = r.as_ref(i) {
                out.extend_from_slice(b);
                out.push(b'|');
            }
        }
    }
    out
}

async fn env() -> MyEnv {
    let env = MyEnv::start(Some(RULES)).await;
    env.admin(SETUP);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_text_queries_are_masked() {
    let mut env = env().await;
    let mut c = env.agent().await;

    let rows: Vec<(Option<String>, Option<String>)> = c
        .query("SELECT email, card_number FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (email, card) in &rows {
        let email = email.as_deref().unwrap();
        let card = card.as_deref().unwrap();
        assert!(!FORBIDDEN.contains(&email), "{email}");
        assert!(!FORBIDDEN.contains(&card), "{card}");
    }
    assert!(rows[0].1.as_deref().unwrap().ends_with("1111"));

    let raw: Vec<mysql_async::Row> = c
        .query("SELECT LOWER(email) FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);
    assert_clean(&flatten(&raw), "LOWER(email)");

    let raw: Vec<mysql_async::Row> = c
        .query("SELECT * FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);
    assert_clean(&flatten(&raw), "SELECT *");
    // Non-PII columns are exact.
    let plain: Vec<(i32, String, Option<i32>)> = c
        .query("SELECT id, name, score FROM customers ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        plain,
        vec![(1, "Alice".into(), Some(7)), (2, "Bob".into(), None)]
    );
    let star: Vec<(i32, String)> = raw
        .iter()
        .map(|r| (r.get::<i32, _>(0).unwrap(), r.get::<String, _>(1).unwrap()))
        .collect();
    assert_eq!(star, vec![(1, "Alice".into()), (2, "Bob".into())]);

    // Several statements, aliases, and a join-free subquery.
    let raw: Vec<mysql_async::Row> = c
        .query("SELECT email AS contact, id FROM customers WHERE id IN (SELECT id FROM customers)")
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);
    assert_clean(&flatten(&raw), "alias");

    // Server-side prepared statements over masked columns are refused.
    let e = c.prep("SELECT email FROM customers").await.unwrap_err();
    assert!(format!("{e:?}").contains("prepared statements"), "{e:?}");
    // The session stays usable.
    let one: Option<i32> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_cli_output_is_masked() {
    let mut env = env().await;
    let out = tokio::task::block_in_place(|| {
        env.cli(AGENT, AGENT_PW, "SELECT * FROM customers ORDER BY id")
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean(&out.stdout, "cli stdout");
    assert_clean(&out.stderr, "cli stderr");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Alice") && text.contains("Bob"), "{text}");
    env.stop().await;
}
