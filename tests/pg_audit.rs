//! The audit log through real sessions: every decision kind is recorded
//! with identity and model, the chain verifies, tampering is caught, and
//! `airlock log` shows what was blocked and why.

mod common;

use std::process::Command;

use common::*;

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
deny_tables = ["public.secrets"]

[[mask]]
id = "email"
columns = ["public.people.email"]
strategy = "email"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_recorded_and_chained() {
    let audit_dir = tempfile::tempdir().unwrap();
    let db = audit_dir.path().join("audit.db");
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        extra_toml: format!("[audit]\npath = \"{}\"\n", db.display()),
        ..Default::default()
    })
    .await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE secrets (s text); CREATE TABLE people (name text, email text);
             INSERT INTO people VALUES ('Ann', 'ann.pii@example.com')",
        )
        .await
        .unwrap();
    let mut cfg = env.agent_config();
    cfg.application_name("copilot (model=gpt-5)");
    let c = connect(cfg).await;
    c.simple_query("SELECT 1").await.unwrap();
    c.simple_query("SELECT * FROM secrets").await.unwrap_err();
    c.simple_query("SELECT email FROM people WHERE name = 'Ann'")
        .await
        .unwrap();
    c.simple_query("DELETE FROM people").await.unwrap_err();
    drop(c);
    let mut wrong = env.agent_config();
    wrong.password("nope");
    assert!(wrong.connect(tokio_postgres::NoTls).await.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    env.stop().await; // drains the audit queue

    let all = airlock::audit::query(&db, &airlock::audit::Filter::default()).unwrap();
    let decisions: Vec<(String, String, String)> = all
        .iter()
        .filter(|r| r.event.kind == airlock::audit::EventKind::Statement)
        .map(|r| {
            (
                r.event.statement.clone().unwrap_or_default(),
                r.event
                    .decision
                    .map(|d| d.as_str().to_owned())
                    .unwrap_or_default(),
                r.event.rule.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        decisions.contains(&("SELECT 1".into(), "allow".into(), String::new())),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|(s, d, r)| s.contains("secrets") && d == "block" && r == "agent-rw.deny-tables"),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|(s, d, _)| s.contains("email FROM people") && d == "masked"),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|(_, d, r)| d == "block" && r == "builtin.unbounded-write"),
        "{decisions:?}"
    );
    let statement = all
        .iter()
        .find(|r| r.event.kind == airlock::audit::EventKind::Statement)
        .unwrap();
    assert_eq!(statement.event.identity, AGENT);
    assert_eq!(statement.event.model.as_deref(), Some("test-model"));
    assert_eq!(statement.event.declared_model.as_deref(), Some("gpt-5"));
    assert!(all
        .iter()
        .any(|r| r.event.kind == airlock::audit::EventKind::Connect));
    assert!(all
        .iter()
        .any(|r| r.event.kind == airlock::audit::EventKind::Disconnect));
    assert!(all
        .iter()
        .any(|r| r.event.kind == airlock::audit::EventKind::AuthFailed));

    // The blocked-query log, as an operator reads it.
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["log", "--blocked", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("agent-rw.deny-tables") && text.contains("secrets"),
        "{text}"
    );
    assert!(!text.contains("SELECT 1"), "{text}");

    // The chain verifies, and an edit is caught.
    let verify = |db: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["audit", "verify", "--db"])
            .arg(db)
            .output()
            .unwrap()
    };
    assert!(verify(&db).status.success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE audit SET statement = 'SELECT 2' WHERE statement = 'SELECT 1'",
        [],
    )
    .unwrap();
    drop(conn);
    let out = verify(&db);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tampered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
