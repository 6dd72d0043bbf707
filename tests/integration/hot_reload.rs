//! A rules reload reaches sessions that are already open (red-team
//! finding: masking rules and prepared statements kept the rules of the
//! login for as long as the session lasted). On Postgres and MySQL:
//! a new mask applies to the next result of an open session, to plain
//! queries and to statements prepared before the reload alike; a
//! statement prepared before the reload is judged again before it next
//! runs; a session that started without masking, to whose identity
//! masking now applies, is refused until it reconnects.

use crate::common::mysql as mysql_env;
use crate::common::*;

use std::time::Duration;

const PG_RULES: &str = r#"
[[policy]]
id = "all"
applies_to = { identities = ["agent", "plain"] }
allow_statements = ["read", "session"]

[[mask]]
id = "phone"
columns = ["*.customers.phone"]
strategy = "redact"
applies_to = { identities = ["agent"] }
"#;

const NAME_MASK: &str = r#"
[[mask]]
id = "name"
columns = ["*.customers.name"]
strategy = "redact"
"#;

const SETUP: &str = "CREATE TABLE customers (id int PRIMARY KEY, name text, phone text);
INSERT INTO customers VALUES (1, 'Alice', '+1-202-555-0101'), (2, 'Bob', '+1-202-555-0102');";

async fn first_text(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Result<String, tokio_postgres::Error> {
    let rows = c.simple_query(sql).await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_reload_reaches_open_sessions() {
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(PG_RULES.into()),
        identities: vec![("plain".into(), "plain-pw".into(), vec![])],
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    let agent = env.agent().await;
    let plain = connect(env.config_for("plain", "plain-pw")).await;
    // Connected, not a statement yet: the reload is still noticed.
    let idle = connect(env.config_for("plain", "plain-pw")).await;
    let stmt = agent
        .prepare("SELECT name, id FROM customers ORDER BY id")
        .await
        .unwrap();
    let name: String = agent.query(&stmt, &[]).await.unwrap()[0].get(0);
    assert_eq!(name, "Alice");
    assert_eq!(
        first_text(&plain, "SELECT name FROM customers ORDER BY id")
            .await
            .unwrap(),
        "Alice"
    );

    env.write_rules(&format!("{PG_RULES}{NAME_MASK}"));
    let mut reloaded = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let fresh = env.agent().await;
        if first_text(&fresh, "SELECT name FROM customers ORDER BY id")
            .await
            .unwrap()
            != "Alice"
        {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "new rules not in force");
    // The open masking session: plain queries, computed values and the
    // statement it prepared before the reload.
    for sql in [
        "SELECT name FROM customers ORDER BY id",
        "SELECT lower(name) FROM customers ORDER BY id",
    ] {
        let v = first_text(&agent, sql).await.unwrap();
        assert!(!v.to_lowercase().contains("alice"), "{sql}: {v}");
    }
    let name: String = agent.query(&stmt, &[]).await.unwrap()[0].get(0);
    assert!(
        !name.contains("Alice"),
        "prepared before the reload: {name}"
    );
    // The open session that had no masking: refused until it reconnects.
    let e = plain
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap_err();
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(msg.contains("builtin.rules-reloaded"), "{e:?}");
    let e = idle
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("builtin.rules-reloaded"), "{e:?}");
    let plain = connect(env.config_for("plain", "plain-pw")).await;
    let v = first_text(&plain, "SELECT name FROM customers ORDER BY id")
        .await
        .unwrap();
    assert!(!v.contains("Alice"), "{v}");
    drop((agent, plain, idle));
    env.stop().await;
}

const MY_RULES: &str = r#"
[[policy]]
id = "all"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "session"]

[[mask]]
id = "phone"
columns = ["app.customers.phone"]
strategy = "redact"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_reload_reaches_open_sessions() {
    use mysql_async::prelude::*;
    let mut env = mysql_env::MyEnv::start(Some(MY_RULES)).await;
    env.admin(
        "CREATE TABLE customers (id int PRIMARY KEY, name varchar(20), phone varchar(20));
         INSERT INTO customers VALUES (1, 'Alice', '+1-202-555-0101'), (2, 'Bob', '+1-202-555-0102');",
    );
    let mut c = env.agent().await;
    let stmt = c
        .prep("SELECT name, id FROM customers ORDER BY id")
        .await
        .unwrap();
    let first: Option<(String, i32)> = c.exec_first(&stmt, ()).await.unwrap();
    assert_eq!(first.unwrap().0, "Alice");

    env.write_rules(&format!(
        "{MY_RULES}{}",
        NAME_MASK.replace("*.customers", "app.customers")
    ));
    let mut reloaded = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut fresh = env.agent().await;
        let v: Option<String> = fresh
            .query_first("SELECT name FROM customers ORDER BY id")
            .await
            .unwrap();
        if v.as_deref() != Some("Alice") {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "new rules not in force");
    let v: Option<String> = c
        .query_first("SELECT name FROM customers ORDER BY id")
        .await
        .unwrap();
    assert!(
        !v.unwrap_or_default().contains("Alice"),
        "plain query of the open session"
    );
    let first: Option<(Option<String>, i32)> = c.exec_first(&stmt, ()).await.unwrap();
    let name = first.unwrap().0.unwrap_or_default();
    assert!(
        !name.contains("Alice"),
        "prepared before the reload: {name}"
    );

    // A deny added by a reload refuses the statement prepared before it.
    env.write_rules(&MY_RULES.replace(
        "allow_statements = [\"read\", \"session\"]",
        "allow_statements = [\"read\", \"session\"]\ndeny_tables = [\"app.customers\"]",
    ));
    let mut refused = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Err(e) = c.exec_first::<(Option<String>, i32), _, _>(&stmt, ()).await {
            assert!(e.to_string().contains("deny-tables"), "{e}");
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the statement prepared before the reload still ran"
    );
    let one: Option<i32> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    drop(c);
    env.stop().await;
}
