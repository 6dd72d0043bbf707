//! What one session can make airlock hold. `limits.max_prepared_statements`:
//! it cannot make airlock keep (or a MySQL server hand out, server-wide) an
//! unbounded number of prepared statements; over the limit a prepare is
//! refused and recorded, the session stays usable, and closing a
//! statement makes room again. Nor can it grow the replies airlock awaits
//! by sending messages after an error with no Sync, or the portals airlock
//! books by binding new names in transaction after transaction (red-team
//! findings).

use mysql_async::prelude::Queryable;
use tokio_postgres::types::Type;

use crate::common::mysql::MyEnv;
use crate::common::raw::{encode_all, RawClient};
use crate::common::*;

const PG_RULES: &str = r#"
[[policy]]
id = "agent"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "session"]
"#;

fn audit_toml(db: &std::path::Path) -> String {
    format!("[audit]\npath = \"{}\"\n", db.display())
}

/// The refused statements the audit log holds under the limit's rule.
fn refused_at_limit(db: &std::path::Path) -> Vec<String> {
    airlock::audit::query(db, &airlock::audit::Filter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.event.rule.as_deref() == Some("limits.max_prepared_statements"))
        .filter(|r| r.event.decision == Some(airlock::audit::AuditDecision::Block))
        .filter_map(|r| r.event.statement.map(|s| s.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_prepared_statements_per_session_are_capped() {
    let audit_dir = tempfile::tempdir().unwrap();
    let db = audit_dir.path().join("audit.db");
    let mut env = Env::start_with(EnvOptions {
        limits_toml: "max_prepared_statements = 3\n".into(),
        extra_toml: audit_toml(&db),
        rules_toml: Some(PG_RULES.into()),
        ..Default::default()
    })
    .await;
    let c = env.agent().await;
    // tokio-postgres prepares named statements (s0, s1, ...).
    let first = c.prepare("SELECT 1").await.unwrap();
    let _second = c.prepare("SELECT 2").await.unwrap();
    c.simple_query("PREPARE p3 AS SELECT 3").await.unwrap();

    // A fourth, by protocol Parse: 53400, naming the limit.
    let e = c.prepare("SELECT 4").await.unwrap_err();
    let db_error = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(db_error.code().code(), "53400", "{db_error:?}");
    assert!(
        db_error
            .message()
            .contains("limits.max_prepared_statements = 3"),
        "{}",
        db_error.message()
    );
    // ... or by SQL PREPARE, also behind another statement.
    let e = c
        .simple_query("SELECT 1; PREPARE p4 AS SELECT 4")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.message().contains("max_prepared_statements")),
        "{e:?}"
    );
    // The unnamed statement is not counted, and the session goes on.
    let five = c
        .query_typed_one("SELECT $1::int", &[(&5i32, Type::INT4)])
        .await
        .unwrap();
    assert_eq!(five.get::<_, i32>(0), 5);
    assert!(!c.simple_query("SELECT 5").await.unwrap().is_empty());
    assert_eq!(
        c.query_one(&first, &[]).await.unwrap().get::<_, i32>(0),
        1,
        "statements prepared before the limit still run"
    );

    // Closing one (Close, DEALLOCATE) makes room again.
    drop(first);
    c.simple_query("DEALLOCATE p3").await.unwrap();
    let again = c.prepare("SELECT 6").await.unwrap();
    c.simple_query("PREPARE p5 AS SELECT 7").await.unwrap();
    assert_eq!(c.query_one(&again, &[]).await.unwrap().get::<_, i32>(0), 6);
    drop(c);
    env.stop().await; // drains the audit queue
    let refused = refused_at_limit(&db);
    assert!(
        refused.iter().any(|s| s == "SELECT 4"),
        "the refused Parse is recorded: {refused:?}"
    );
    assert!(
        refused.iter().any(|s| s.contains("PREPARE p4")),
        "the refused PREPARE is recorded: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_prepared_statements_per_session_are_capped() {
    let audit_dir = tempfile::tempdir().unwrap();
    let db = audit_dir.path().join("audit.db");
    let mut env = MyEnv::start_inner(
        None,
        "",
        "",
        &audit_toml(&db),
        "max_prepared_statements = 2\n",
    )
    .await;
    let mut c = env.agent().await;
    let first = c.prep("SELECT 1").await.unwrap();
    let _second = c.prep("SELECT 2").await.unwrap();
    // A third: ER_MAX_PREPARED_STMT_COUNT_REACHED, naming the limit,
    // before the server's own (server-wide) limit is touched.
    match c.prep("SELECT 3").await.unwrap_err() {
        mysql_async::Error::Server(s) => {
            assert_eq!(s.code, 1461, "{s:?}");
            assert!(
                s.message.contains("limits.max_prepared_statements = 2"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    // The session goes on, and closing a statement makes room again.
    let one: Option<i32> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    c.close(first).await.unwrap();
    let third = c.prep("SELECT 3").await.unwrap();
    let three: Option<i32> = c.exec_first(&third, ()).await.unwrap();
    assert_eq!(three, Some(3));
    drop(c);
    env.stop().await;
    let refused = refused_at_limit(&db);
    assert_eq!(refused, vec!["SELECT 3".to_owned()], "recorded once");
}

/// After an error the server answers nothing up to the next Sync: a
/// client that then sends message after message and no Sync grew the
/// replies airlock awaits without bound (1 GB in 3.4 s). The session ends
/// past 2^18 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_messages_after_an_error_without_a_sync_are_bounded() {
    let audit_dir = tempfile::tempdir().unwrap();
    let db = audit_dir.path().join("audit.db");
    let mut env = Env::start_with(EnvOptions {
        extra_toml: audit_toml(&db),
        rules_toml: Some(PG_RULES.into()),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    raw.send(&encode_all(&[
        r#"{"Parse": {"name": "", "query": "SELECT 1/0"}}"#,
        r#"{"Bind": {"portal": "", "statement": ""}}"#,
        r#"{"Execute": {"portal": ""}}"#,
    ]))
    .await;
    let close = encode_all(&[r#"{"Close": {"kind": "P", "name": ""}}"#]);
    let chunk = close.repeat(10_000);
    for _ in 0..40 {
        if raw.try_send(&chunk).await.is_err() {
            break;
        }
    }
    let mut ended = None;
    while let Some(f) = raw.read().await {
        if f.tag() == b'E' && String::from_utf8_lossy(f.body()).contains("without a Sync") {
            ended = Some(String::from_utf8_lossy(f.body()).into_owned());
        }
    }
    let ended = ended.expect("the session ends with an error that says why");
    assert!(ended.contains("262144"), "{ended}");
    // Others are not affected.
    let c = env.agent().await;
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    env.stop().await;
}

/// Protocol portals never outlive their transaction: airlock forgets the
/// named ones between transactions (red-team finding: binding a new name
/// in transaction after transaction grew its books without bound, and an
/// Execute of a long-gone portal was still taken for a vetted one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_portals_are_forgotten_when_their_transaction_ends() {
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(PG_RULES.into()),
        ..Default::default()
    })
    .await;
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    raw.send(&encode_all(&[
        r#"{"Parse": {"name": "s", "query": "SELECT 1"}}"#,
        r#"{"Bind": {"portal": "p1", "statement": "s"}}"#,
        r#"{"Execute": {"portal": "p1"}}"#,
        r#"{"Sync": null}"#,
    ]))
    .await;
    raw.until_ready(1).await;
    // A later transaction: p1 is gone on the server, and for airlock.
    raw.send(&encode_all(&[
        r#"{"Bind": {"portal": "p2", "statement": "s"}}"#,
        r#"{"Execute": {"portal": "p1"}}"#,
        r#"{"Sync": null}"#,
    ]))
    .await;
    let frames = raw.until_ready(1).await;
    let errors: Vec<String> = frames
        .iter()
        .filter(|f| f.tag() == b'E')
        .map(|f| String::from_utf8_lossy(f.body()).into_owned())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("airlock"),
        "refused by airlock: {errors:?}"
    );
    // The session goes on.
    raw.send(&encode_all(&[r#"{"Query": "SELECT 2"}"#])).await;
    let frames = raw.until_ready(1).await;
    assert!(frames.iter().all(|f| f.tag() != b'E'));
    drop(raw);
    env.stop().await;
}
