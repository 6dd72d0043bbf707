//! The audit log through real MySQL sessions (mysql_async to MariaDB
//! through airlock): every decision kind is recorded with identity, model,
//! protocol, rows and duration; logins and disconnects are recorded; the
//! chain verifies; and a failing store refuses statements (fail closed).
//! Mirrors pg_audit.rs.

use crate::common::mysql as mysql_env;

use std::process::Command;

use airlock::audit::{AuditRecord, EventKind, Filter};
use mysql_async::prelude::*;
use mysql_env::{MyEnv, AGENT, AGENT_PW};

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
deny_tables = ["app.secrets"]

[[mask]]
id = "email"
columns = ["app.people.email"]
strategy = "email"
"#;

const SETUP: &str = "CREATE TABLE secrets (s varchar(20));
CREATE TABLE people (id int PRIMARY KEY, name varchar(20), email varchar(50));
INSERT INTO people VALUES (1, 'Ann', 'ann.pii@example.com'), (2, 'Bo', 'bo.pii@example.com');";

async fn env(audit_db: &std::path::Path) -> MyEnv {
    let env = MyEnv::start_full(
        Some(RULES),
        "",
        "",
        &format!("[audit]\npath = \"{}\"\n", audit_db.display()),
    )
    .await;
    env.admin(SETUP);
    env
}

fn statements(all: &[AuditRecord]) -> Vec<&AuditRecord> {
    all.iter()
        .filter(|r| r.event.kind == EventKind::Statement)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_decisions_are_recorded_and_chained() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut env = env(&db).await;
    let opts = mysql_async::OptsBuilder::from_opts(env.opts(AGENT, AGENT_PW))
        .connect_attribute("program_name", "copilot (model=gpt-5)");
    let mut c = mysql_async::Conn::new(opts).await.unwrap();
    c.query_drop("SELECT 1").await.unwrap();
    c.query_drop("SELECT * FROM secrets").await.unwrap_err();
    let emails: Vec<String> = c
        .query("SELECT email FROM people ORDER BY id")
        .await
        .unwrap();
    assert_eq!(emails.len(), 2);
    c.query_drop("DELETE FROM people").await.unwrap_err();
    // Refused before the guardrails: a sql_mode change that would alter
    // lexing, an executable comment airlock cannot expand.
    c.query_drop("SET sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap_err();
    c.query_drop("SELECT 1 /*! , 2").await.unwrap_err();
    c.query_drop("UPDATE people SET name = 'Anne' WHERE id = 1")
        .await
        .unwrap();
    let r: Option<String> = c
        .exec_first("SELECT email FROM people WHERE id = ?", (2,))
        .await
        .unwrap();
    assert_eq!(r.as_deref(), Some("****@example.com"));
    c.disconnect().await.unwrap();
    assert!(mysql_async::Conn::new(env.opts(AGENT, "nope"))
        .await
        .is_err());
    // A login refused after the agent proved who it is (a target that
    // does not exist) is recorded too.
    let elsewhere =
        mysql_async::OptsBuilder::from_opts(env.opts(AGENT, AGENT_PW)).db_name(Some("elsewhere"));
    assert!(mysql_async::Conn::new(elsewhere).await.is_err());
    // A COM_CHANGE_USER whose password fails is a failed login too, with
    // the database it asked for.
    let mut c = env.agent().await;
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("nobody-here".into()))
            .with_pass(Some("wrong".into())),
    )
    .await
    .unwrap_err();
    // Wait for the disconnect to be processed: a fresh session that ends.
    env.agent().await.disconnect().await.unwrap();
    env.stop().await; // drains the audit queue

    let all = airlock::audit::query(&db, &Filter::default()).unwrap();
    let stmts = statements(&all);
    let find = |pred: &dyn Fn(&AuditRecord) -> bool| stmts.iter().copied().find(|r| pred(r));
    let decision = |r: &AuditRecord| r.event.decision.map(|d| d.as_str()).unwrap_or("");
    let one = find(&|r| r.event.statement.as_deref() == Some("SELECT 1")).expect("SELECT 1");
    assert_eq!(decision(one), "allow");
    assert_eq!(one.event.rows, Some(1));
    assert!(one.event.duration_us.is_some());
    assert_eq!(&*one.event.protocol, "mysql");
    assert_eq!(&*one.event.identity, AGENT);
    assert_eq!(one.event.model.as_deref(), Some("test-model"));
    assert_eq!(one.event.declared_model.as_deref(), Some("gpt-5"));
    assert_eq!(one.event.database.as_deref(), Some("app"));

    let secrets = find(&|r| {
        r.event
            .statement
            .as_deref()
            .is_some_and(|s| s.contains("secrets"))
    })
    .expect("blocked statement");
    assert_eq!(decision(secrets), "block");
    assert_eq!(secrets.event.rule.as_deref(), Some("agent-rw.deny-tables"));

    let masked = find(&|r| {
        r.event
            .statement
            .as_deref()
            .is_some_and(|s| s.starts_with("SELECT email FROM people ORDER"))
    })
    .expect("masked statement");
    assert_eq!(decision(masked), "masked");
    assert_eq!(masked.event.masked_columns.as_deref(), Some("email"));
    assert_eq!(masked.event.rows, Some(2));

    let unbounded = find(&|r| r.event.statement.as_deref() == Some("DELETE FROM people"))
        .expect("unbounded delete");
    assert_eq!(decision(unbounded), "block");
    assert_eq!(
        unbounded.event.rule.as_deref(),
        Some("builtin.unbounded-write")
    );
    for (statement, rule) in [
        ("SET sql_mode = 'ANSI_QUOTES'", "builtin.lexer-setting"),
        ("SELECT 1 /*! , 2", "builtin.unparseable"),
    ] {
        let r = find(&|r| r.event.statement.as_deref() == Some(statement)).expect(statement);
        assert_eq!(
            (decision(r), r.event.rule.as_deref()),
            ("block", Some(rule)),
            "{statement}"
        );
    }
    let update = find(&|r| {
        r.event
            .statement
            .as_deref()
            .is_some_and(|s| s.starts_with("UPDATE people"))
    })
    .expect("update");
    assert_eq!((decision(update), update.event.rows), ("allow", Some(1)));
    // The prepared statement is recorded at COM_STMT_PREPARE.
    let prepared = find(&|r| {
        r.event
            .statement
            .as_deref()
            .is_some_and(|s| s.contains("WHERE id = ?"))
    })
    .expect("prepared statement");
    assert_eq!(decision(prepared), "masked");

    for kind in [
        EventKind::Connect,
        EventKind::Disconnect,
        EventKind::AuthFailed,
    ] {
        assert!(
            all.iter()
                .any(|r| r.event.kind == kind && &*r.event.protocol == "mysql"),
            "no {kind} record"
        );
    }
    let failed = all
        .iter()
        .find(|r| r.event.kind == EventKind::AuthFailed)
        .unwrap();
    assert_eq!(&*failed.event.identity, AGENT);
    assert_eq!(failed.event.reason.as_deref(), Some("wrong password"));
    let changed = all
        .iter()
        .find(|r| r.event.kind == EventKind::AuthFailed && &*r.event.identity == "nobody-here")
        .expect("the failed COM_CHANGE_USER is recorded");
    assert_eq!(
        changed.event.reason.as_deref(),
        Some("no identity of that name may log in over MySQL")
    );
    assert!(!changed.event.target.is_empty(), "{changed:?}");
    let refused = all
        .iter()
        .find(|r| {
            r.event.kind == EventKind::Connect
                && r.event.decision == Some(airlock::audit::AuditDecision::Block)
        })
        .expect("the refused login is recorded");
    assert_eq!(&*refused.event.identity, AGENT);
    assert_eq!(refused.event.user.as_deref(), Some("tester"));
    assert!(
        refused
            .event
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("elsewhere")),
        "{refused:?}"
    );

    // The blocked-query log, as an operator reads it, and the chain.
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
    assert!(text.contains("agent-rw.deny-tables"), "{text}");
    assert!(text.contains("builtin.lexer-setting"), "{text}");
    assert!(!text.contains("SELECT 1"), "{text}");
    let verify = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_fails_closed_when_the_audit_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut env = env(&db).await;
    let mut c = env.agent().await;
    c.query_drop("SELECT 1").await.unwrap();
    let insert = c
        .prep("INSERT INTO people VALUES (?, 'prepared', NULL)")
        .await
        .unwrap();
    // Break the store under the running writer.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("DROP TABLE audit")
        .unwrap();
    // Statements keep being recorded until the writer notices; then every
    // new statement is refused before it reaches the server.
    let mut refusal = None;
    for i in 0..500 {
        let sql = format!("INSERT INTO people VALUES ({}, 'x', NULL)", 100 + i);
        match c.query_drop(&sql).await {
            Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(e) => {
                refusal = Some((i, format!("{e:?}")));
                break;
            }
        }
    }
    let (i, message) = refusal.expect("airlock never refused while the audit store was broken");
    assert!(message.contains("audit log unavailable"), "{message}");
    assert_eq!(
        env.admin(&format!(
            "SELECT COUNT(*) FROM people WHERE id = {}",
            100 + i
        )),
        "0"
    );
    // A statement prepared before is refused too (red-team finding: its
    // executions ran unrecorded while the log was down).
    let e = c.exec_drop(&insert, (99,)).await.unwrap_err();
    assert!(format!("{e:?}").contains("audit log unavailable"), "{e:?}");
    assert_eq!(env.admin("SELECT COUNT(*) FROM people WHERE id = 99"), "0");
    env.stop().await;
}

/// Each execution of a prepared statement is recorded with its rows, as
/// a Postgres Execute is (red-team finding: only the prepare was, with 0
/// rows, and the UPDATEs it then ran were not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_prepared_executions_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut env = env(&db).await;
    let mut c = env.agent().await;
    let update = c
        .prep("UPDATE people SET name = ? WHERE id = ?")
        .await
        .unwrap();
    for (name, id) in [("A", 1), ("B", 2), ("C", 3)] {
        c.exec_drop(&update, (name, id)).await.unwrap();
    }
    drop(c);
    env.stop().await;
    let all = airlock::audit::query(&db, &Filter::default()).unwrap();
    let runs: Vec<Option<u64>> = statements(&all)
        .into_iter()
        .filter(|r| r.event.statement.as_deref() == Some("UPDATE people SET name = ? WHERE id = ?"))
        .map(|r| r.event.rows)
        .collect();
    // The prepare (no rows), then one record per execution: 1, 1, 0 rows.
    assert_eq!(runs, vec![Some(0), Some(1), Some(1), Some(0)], "{all:#?}");
}

/// MariaDB's statement id 0xFFFFFFFF ("the statement prepared last", which
/// no client library sends, so a raw client does): its execution is
/// recorded with the text airlock saw prepared last, marked as taken to be
/// it, and with its row count (review finding: it was recorded without
/// any text). Without masking or approvals, which refuse the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_execute_of_the_last_prepared_id_is_recorded_with_its_text() {
    const NO_MASKS: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "session"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let mut env = MyEnv::start_full(
        Some(NO_MASKS),
        "",
        "",
        &format!("[audit]\npath = \"{}\"\n", db.display()),
    )
    .await;
    env.admin(SETUP);
    let mut raw = mysql_env::Raw::login(env.port, AGENT, AGENT_PW).await;
    // COM_STMT_PREPARE of a statement without parameters or columns: one
    // PREPARE_OK packet.
    let text = "UPDATE people SET name = 'Zed' WHERE id <= 2";
    let prepared = raw.cmd(&[&[0x16u8][..], text.as_bytes()].concat()).await;
    assert_eq!(prepared.get(..1), Some(&[0u8][..]), "prepare: {prepared:?}");
    // COM_STMT_EXECUTE: id 0xFFFFFFFF, no cursor, one iteration.
    let executed = raw
        .cmd(&[0x17, 0xff, 0xff, 0xff, 0xff, 0, 1, 0, 0, 0])
        .await;
    assert_eq!(executed.get(..1), Some(&[0u8][..]), "execute: {executed:?}");
    assert_eq!(executed.get(1), Some(&2), "two rows changed: {executed:?}");
    drop(raw);
    env.stop().await;
    let all = airlock::audit::query(&db, &Filter::default()).unwrap();
    let runs: Vec<(&str, Option<u64>)> = statements(&all)
        .into_iter()
        .filter_map(|r| Some((r.event.statement.as_deref()?, r.event.rows)))
        .filter(|(s, _)| s.contains("people"))
        .collect();
    let marked = format!("-- statement id 0xFFFFFFFF, taken as the last prepared:\n{text}");
    // The prepare (no rows), then the execution under the marked text.
    assert_eq!(
        runs,
        vec![(text, Some(0)), (marked.as_str(), Some(2))],
        "{all:#?}"
    );
}
