//! The admin HTTP API against a running airlock with real clients: the
//! token, /healthz, /metrics, /api/audit filters, /api/sessions (list and
//! terminate), /api/rules (version and reload), the `airlock
//! approvals` / `approve` / `deny` commands, and the cap on connections.

use crate::common::admin as admin_kit;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use admin_kit::*;
use serde_json::json;

const RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent", "other"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
deny_tables = ["public.secrets"]
require_approval = [
  { id = "orders-write", statements = ["write"], tables = ["public.orders"], message = "needs a human" },
]
"#;

async fn start(dir: &std::path::Path) -> (Env, AdminApi) {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        extra_toml: admin_toml(dir, "2m"),
        identities: vec![("other".into(), "other-pw".into(), vec![])],
        ..Default::default()
    })
    .await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE secrets (s text); CREATE TABLE orders (id int, note text);
             INSERT INTO orders VALUES (1, 'new')",
        )
        .await
        .unwrap();
    let addr = env.airlock.as_ref().and_then(|a| a.admin_addr).unwrap();
    (env, AdminApi::new(addr))
}

/// The value of one sample line of /metrics.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_except_for_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let anonymous = AdminApi {
        url: api.url.clone(),
        token: None,
    };
    let wrong = AdminApi {
        url: api.url.clone(),
        token: Some("not-the-token".into()),
    };
    let r = anonymous.get("/healthz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    for path in [
        "/metrics",
        "/api/approvals",
        "/api/audit",
        "/api/sessions",
        "/api/rules",
    ] {
        let r = anonymous.get(path).await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r.text().contains("admin token required"), "{}", r.text());
        assert_eq!(wrong.get(path).await.status, 401, "{path}");
        assert_eq!(api.get(path).await.status, 200, "{path}");
    }
    assert_eq!(
        anonymous.post("/api/rules/reload", json!({})).await.status,
        401
    );
    assert_eq!(
        anonymous
            .post("/api/approvals/1/approve", json!({}))
            .await
            .status,
        401
    );
    // The console's page holds no data and loads without a token.
    let page = anonymous.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("airlock console"));
    assert_eq!(anonymous.get("/nope").await.status, 404);

    // Readiness, also without a token: ready, until the fail-closed audit
    // log cannot record (operator finding: /healthz said ok while every
    // statement was refused).
    let r = anonymous.get("/readyz").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    rusqlite::Connection::open(dir.path().join("audit.db"))
        .unwrap()
        .execute_batch("DROP TABLE audit")
        .unwrap();
    let c = env.agent().await;
    let _ = c.simple_query("SELECT 1").await;
    let mut r = anonymous.get("/readyz").await;
    for _ in 0..100 {
        if r.status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        r = anonymous.get("/readyz").await;
    }
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("audit log cannot record"), "{}", r.text());
    assert_eq!(anonymous.get("/healthz").await.status, 200);
    env.stop().await;
}

#[test]
fn a_public_admin_listener_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("airlock.toml");
    let text = "[listen]\npostgres = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"0.0.0.0:9187\"\n";
    let err = airlock::config::Config::from_toml(text, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.listen"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    let text = "[listen]\npostgres = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"0.0.0.0:9187\"\ntoken_env = \"AIRLOCK_TEST_UNSET_TOKEN_VAR\"\n";
    let err = airlock::config::Config::from_toml(text, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AIRLOCK_TEST_UNSET_TOKEN_VAR is not set"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_statements_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let before = api.get("/metrics").await;
    assert_eq!(before.status, 200);
    let before = before.text();
    assert!(before.contains("# TYPE airlock_statement_duration_seconds histogram"));
    assert!(before.contains("airlock_audit_queue_depth "), "{before}");

    let c = env.agent().await;
    c.simple_query("SELECT 1").await.unwrap();
    c.simple_query("SELECT * FROM secrets").await.unwrap_err();
    let mut wrong = env.agent_config();
    wrong.password("not-the-password");
    assert!(wrong.connect(tokio_postgres::NoTls).await.is_err());

    let after = api.get("/metrics").await.text();
    // A failed login is counted (operator finding: no metric told of
    // logins that did not get in).
    let failed = "airlock_logins_rejected_total{protocol=\"postgres\",result=\"failed\"}";
    assert!(sample(&after, failed) > sample(&before, failed), "{after}");
    let conns = "airlock_connections_total{protocol=\"postgres\"}";
    assert!(sample(&after, conns) > sample(&before, conns), "{after}");
    assert!(sample(&after, "airlock_connections_current{protocol=\"postgres\"}") >= 1.0);
    for decision in ["allow", "block"] {
        let s = format!("airlock_statements_total{{decision=\"{decision}\"}}");
        assert!(sample(&after, &s) > sample(&before, &s), "{s}\n{after}");
    }
    let count = "airlock_statement_duration_seconds_count";
    assert!(sample(&after, count) > sample(&before, count), "{after}");
    assert!(sample(&after, "airlock_sessions_active") >= 1.0);
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_api_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let agent = env.agent().await;
    agent.simple_query("SELECT 41").await.unwrap();
    agent
        .simple_query("SELECT * FROM secrets")
        .await
        .unwrap_err();
    let other = connect(env.config_for("other", "other-pw")).await;
    other.simple_query("SELECT 42").await.unwrap();
    other
        .simple_query("SELECT s FROM secrets WHERE s = 'x'")
        .await
        .unwrap_err();

    // Everything is written (the writer is asynchronous).
    let all = wait_for("four statements in the audit log", || async {
        let r = api.audit("").await;
        let statements = r.iter().filter(|r| r["kind"] == "statement").count();
        (statements >= 4).then_some(r)
    })
    .await;
    assert!(all.iter().any(|r| r["identity"] == "other"));

    let blocked = api.audit("blocked=true").await;
    assert_eq!(blocked.len(), 2, "{blocked:?}");
    assert!(blocked
        .iter()
        .all(|r| r["decision"] == "block" && r["rule"] == "rw.deny-tables"));

    let mine = api.audit("identity=other").await;
    assert!(!mine.is_empty() && mine.iter().all(|r| r["identity"] == "other"));
    let both = api.audit("identity=other&blocked=true").await;
    assert_eq!(both.len(), 1, "{both:?}");
    assert!(both[0]["statement"].as_str().unwrap().contains("secrets"));

    let by_rule = api.audit("rule=rw.deny-tables").await;
    assert_eq!(by_rule.len(), 2);
    let by_model = api.audit("model=test-model&blocked=1").await;
    assert_eq!(by_model.len(), 1, "only agent has a model: {by_model:?}");

    let session = both[0]["session"].as_u64().unwrap();
    let one_session = api.audit(&format!("session={session}")).await;
    assert!(one_session.iter().all(|r| r["session"] == session));
    assert!(one_session.iter().any(|r| r["kind"] == "connect"));

    assert_eq!(api.audit("since=1h").await.len(), all.len());
    assert_eq!(api.audit("limit=1").await.len(), 1);
    for bad in ["since=soon", "session=x", "limit=-1", "blocked=maybe"] {
        let r = api.get(&format!("/api/audit?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_can_be_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let mut cfg = env.agent_config();
    cfg.application_name("helper (model=gpt-5)");
    let c = connect(cfg).await;
    c.simple_query("SELECT 1").await.unwrap();

    let r = api.get("/api/sessions").await;
    let sessions = r.json().as_array().cloned().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(s["identity"], AGENT);
    assert_eq!(s["model"], "test-model");
    assert_eq!(s["declared_model"], "gpt-5");
    assert_eq!(s["target"], DB);
    assert_eq!(s["protocol"], "postgres");
    assert!(s["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(s["started"].as_str().unwrap().ends_with('Z'));

    let id = s["id"].as_u64().unwrap();
    let r = api
        .post(&format!("/api/sessions/{id}/terminate"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The client's session ends.
    wait_for("the terminated client to be closed", || async {
        let gone = c.is_closed() || c.simple_query("SELECT 1").await.is_err();
        gone.then_some(())
    })
    .await;
    wait_for("the session to leave the list", || async {
        api.get("/api/sessions")
            .await
            .json()
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    })
    .await;
    let r = api
        .post(&format!("/api/sessions/{id}/terminate"), json!({}))
        .await;
    assert_eq!(r.status, 404);
    // New sessions still work.
    env.agent().await.simple_query("SELECT 1").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_report_their_version_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let r = api.get("/api/rules").await;
    let v1 = r.json()["version"].as_u64().unwrap();
    assert!(r.json()["rules"].as_str().unwrap().ends_with("rules.toml"));
    let c = env.agent().await;
    c.simple_query("SELECT count(*) FROM orders").await.unwrap();

    env.write_rules(&RULES.replace(
        "deny_tables = [\"public.secrets\"]",
        "deny_tables = [\"public.secrets\", \"public.orders\"]",
    ));
    let r = api.post("/api/rules/reload", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v2 = r.json()["version"].as_u64().unwrap();
    assert!(v2 > v1, "{v1} -> {v2}");
    assert_eq!(r.json()["restart_required"], json!([]), "{}", r.text());
    let err = c
        .simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("rw.deny-tables")),
        "{message:?}"
    );

    env.write_rules("[[policy]]\nid = \"broken\"\nallow_statements = [\"nope\"]\n");
    let r = api.post("/api/rules/reload", json!({})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("nope"),
        "{}",
        r.text()
    );
    // The running rules stay.
    c.simple_query("SELECT 1").await.unwrap();
    c.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap_err();
    // And the rejection shows where operators look, not only on stderr
    // (operator finding).
    let last = api.get("/api/rules").await.json()["last_reload"].clone();
    assert_eq!(last["applied"], false, "{last}");
    assert!(
        last["error"].as_str().unwrap_or_default().contains("nope"),
        "{last}"
    );
    let metrics = api.get("/metrics").await.text();
    assert!(
        metrics.contains("airlock_config_last_reload_ok 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("airlock_config_reloads_total{result=\"rejected\"}"),
        "{metrics}"
    );

    // A setting read only at start is reported, not silently ignored
    // (operator finding); the rest of the reload applies.
    env.write_rules(RULES);
    let r = api.post("/api/rules/reload", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["last_reload"]["applied"], true, "{}", r.text());
    assert!(api
        .get("/metrics")
        .await
        .text()
        .contains("airlock_config_last_reload_ok 1"));
    let config = env.dir.path().join("airlock.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let text = original.replace("[limits]\n", "[limits]\nmax_client_connections = 7\n");
    std::fs::write(&config, text).unwrap();
    // Compared with what runs, not with the last reload (review finding):
    // reported at every reload until the file agrees with it again.
    for _ in 0..2 {
        let r = api.post("/api/rules/reload", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json()["restart_required"],
            json!(["limits.max_client_connections"]),
            "{}",
            r.text()
        );
    }
    // GET says so too, until the process restarts (operator finding).
    let r = api.get("/api/rules").await;
    assert_eq!(
        r.json()["restart_required"],
        json!(["limits.max_client_connections"]),
        "{}",
        r.text()
    );
    std::fs::write(&config, &original).unwrap();
    let r = api.post("/api/rules/reload", json!({})).await;
    assert_eq!(r.json()["restart_required"], json!([]), "{}", r.text());
    c.simple_query("SELECT count(*) FROM orders").await.unwrap();
    env.stop().await;
}

/// Runs the airlock binary with the admin URL and token.
fn cli(url: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args).arg("--admin").arg(url);
    cmd.env_remove("AIRLOCK_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("AIRLOCK_ADMIN_TOKEN", t);
    }
    cmd.output().unwrap()
}

async fn cli_async(url: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let (url, token) = (url.to_owned(), token.map(str::to_owned));
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&url, token.as_deref(), &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_approves_and_denies() {
    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let c = Arc::new(env.agent().await);

    let out = cli_async(&api.url, Some(TOKEN), &["approvals"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no pending approval requests\n"
    );
    // Without --admin: the config's `[admin] listen`, read without the
    // secrets it names (new-user walkthrough: the CLI ignored the config).
    let with_config = |text: String| {
        let cfg = dir.path().join("cli.toml");
        std::fs::write(&cfg, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["approvals", "-c"])
            .arg(&cfg)
            .env("AIRLOCK_ADMIN_TOKEN", TOKEN)
            .env_remove("AIRLOCK_ADMIN_URL")
            .env_remove("AIRLOCK_TEST_TOKEN_NOBODY_SET")
            .output()
            .unwrap()
    };
    let addr = api.url.trim_start_matches("http://").to_owned();
    let out = tokio::task::block_in_place(|| {
        with_config(format!(
            "[listen]\npostgres = \"127.0.0.1:0\"\n[admin]\nlisten = \"{addr}\"\ntoken_env = \"AIRLOCK_TEST_TOKEN_NOBODY_SET\"\n"
        ))
    });
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no pending approval requests\n"
    );
    let out = tokio::task::block_in_place(|| {
        with_config("[listen]\npostgres = \"127.0.0.1:0\"\n".to_owned())
    });
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cli.toml: no [admin] listener"),
        "{out:?}"
    );

    let c1 = Arc::clone(&c);
    let task = tokio::spawn(async move {
        c1.simple_query("UPDATE orders SET note = 'cli' WHERE id = 1")
            .await
            .map(|_| ())
    });
    let p = api.wait_pending(AGENT).await;
    let id = p["id"].to_string();

    let out = cli_async(&api.url, Some(TOKEN), &["approvals"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains(&format!("#{id}")), "{text}");
    assert!(text.contains("identity agent"), "{text}");
    assert!(text.contains("model test-model"), "{text}");
    assert!(
        text.contains("rule rw.orders-write: needs a human"),
        "{text}"
    );
    assert!(text.contains("UPDATE orders SET note"), "{text}");

    let out = cli_async(&api.url, None, &["approve", &id]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set AIRLOCK_ADMIN_TOKEN"), "{err}");

    let out = cli_async(&api.url, Some("wrong"), &["approvals"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));

    let out = cli_async(&api.url, Some(TOKEN), &["approve", &id, "--by", "carol"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("approved request {id}")));
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .expect("approved through the CLI");

    let out = cli_async(&api.url, Some(TOKEN), &["approve", &id]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("no pending approval request {id}")),
        "{err}"
    );

    let c2 = Arc::clone(&c);
    let task = tokio::spawn(async move {
        c2.simple_query("DELETE FROM orders WHERE id = 1")
            .await
            .map(|_| ())
    });
    let p = api.wait_pending(AGENT).await;
    let id = p["id"].to_string();
    let out = cli_async(
        &api.url,
        Some(TOKEN),
        &["deny", &id, "--reason", "ask the DBA", "--by", "carol"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let err = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "airlock: rule rw.orders-write: denied by carol: ask the DBA"
    );

    let out = cli_async("http://127.0.0.1:1", Some(TOKEN), &["approvals"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    env.stop().await;
}

/// The admin listener keeps at most `MAX_CONNECTIONS` connections, so
/// that clients of the admin port cannot take the descriptors the proxy's
/// listeners need. At the cap, a connection that has sent nothing for
/// `MIN_IDLE` is closed to make room, the oldest first: sockets that sit
/// silent cannot keep the operator out (red-team finding: the new
/// connection was closed instead). The case where none is quiet enough and
/// the new one is closed is `admin::slots`'s unit test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_are_capped_and_quiet_ones_make_room() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let (mut env, api) = start(dir.path()).await;
    let addr = env.airlock.as_ref().and_then(|a| a.admin_addr).unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let ask = || async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A write may fail on a connection already closed.
        let _ = s.write_all(request).await;
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        got
    };
    assert!(ask().await.starts_with(b"HTTP/1.1 200"));
    let mut silent = Vec::new();
    for _ in 0..airlock::admin::serve::MAX_CONNECTIONS {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // Once they have been quiet for MIN_IDLE, a request is answered.
    wait_for("a request past the cap to be answered", || async {
        ask().await.starts_with(b"HTTP/1.1 200").then_some(())
    })
    .await;
    // One silent socket was closed to make room, and only one: the others
    // are still open (the header timeout, 10 s, has not closed them yet).
    let closed = |silent: &[TcpStream]| {
        let mut byte = [0u8; 1];
        silent
            .iter()
            .filter(|s| !matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
            .count()
    };
    wait_for("a quiet connection to be closed", || async {
        (closed(&silent) > 0).then_some(())
    })
    .await;
    assert_eq!(closed(&silent), 1, "more than one connection made room");
    drop(silent);
    assert_eq!(api.get("/healthz").await.status, 200);
    env.stop().await;
}

/// Without a token (loopback only), requests a browser could be made to
/// send from another site are refused, and so are hand-made ones that
/// would slip past the Host and Origin checks (review finding: a request
/// line in absolute form, a second Host or Origin header, and
/// `Host: 127.0.0.1:P@evil` got through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenless_admin_serves_only_plain_loopback_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        extra_toml: "[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
        ..Default::default()
    })
    .await;
    let addr = env.airlock.as_ref().and_then(|a| a.admin_addr).unwrap();
    let status = |head: String| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        text.split_whitespace().nth(1).unwrap_or("").to_owned()
    };
    let host = format!("127.0.0.1:{}", addr.port());
    let plain = format!("GET /api/approvals HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    assert_eq!(status(plain).await, "200");
    for head in [
        format!("GET http://{host}/api/approvals HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/approvals HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        format!("GET /api/approvals HTTP/1.1\r\nHost: {host}@evil.example\r\nConnection: close\r\n\r\n"),
        format!("GET /api/approvals HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n"),
        "GET /api/approvals HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let got = status(head.clone()).await;
        assert!(got == "403" || got == "400", "{head:?}: {got}");
    }
    env.stop().await;
}
