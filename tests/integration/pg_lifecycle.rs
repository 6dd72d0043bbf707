//! Session lifecycle through airlock: client and upstream disconnects,
//! graceful shutdown, idle timeout, the message size cap, psql's Ctrl-C,
//! and TLS with verify-full on the upstream leg.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

async fn backends_of_upstream_user(env: &Env) -> i64 {
    let direct = env.direct().await;
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'airlock_svc' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_query_ends_the_backend() {
    let env = Env::start().await;
    let c = env.agent().await;
    let slow = tokio::spawn(async move {
        let _ = c.batch_execute("SELECT pg_sleep(1)").await;
        c
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    slow.abort(); // drops the client and its socket
    let _ = slow.await;
    let mut left = 1;
    for _ in 0..50 {
        left = backends_of_upstream_user(&env).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "backend outlived its client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_termination_reaches_the_client() {
    let env = Env::start().await;
    let c = env.agent().await;
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    env.direct()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(e.is_closed() || e.code().is_some(), "{e}");
    // airlock itself keeps serving.
    env.agent().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_open_transactions_finish() {
    let mut env = Env::start().await;
    let idle = env.agent().await;
    let busy = env.agent().await;
    busy.batch_execute("CREATE TABLE g (id int); BEGIN; INSERT INTO g VALUES (1)")
        .await
        .unwrap();
    let airlock = env.airlock.take().unwrap();
    let stopping = tokio::spawn(airlock.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The idle session was closed with 57P01; new connections are refused.
    let e = idle.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        e.is_closed() || e.code().map(|c| c.code()) == Some("57P01"),
        "{e}"
    );
    assert!(env
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .is_err());

    // The session in a transaction can still finish it.
    busy.batch_execute("INSERT INTO g VALUES (2); COMMIT")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finished")
        .unwrap();
    let n: i64 = env
        .direct()
        .await
        .query_one("SELECT count(*) FROM g", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_clients_only() {
    let env = Env::start_with(EnvOptions {
        limits_toml: "idle_timeout = \"1s\"".into(),
        ..Default::default()
    })
    .await;
    let c = env.agent().await;
    // A query longer than the idle timeout is not idleness.
    c.batch_execute("SELECT pg_sleep(1.5)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        e.is_closed() || e.code().map(|c| c.code()) == Some("57P05"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused_clearly() {
    let env = Env::start_with(EnvOptions {
        limits_toml: "max_message_size = \"64KiB\"".into(),
        ..Default::default()
    })
    .await;
    let c = env.agent().await;
    let big = "x".repeat(100_000);
    let e = c
        .simple_query(&format!("SELECT '{big}'"))
        .await
        .unwrap_err();
    let text = format!("{e:?}");
    assert!(text.contains("max_message_size") || e.is_closed(), "{text}");
    // Other sessions are unaffected.
    env.agent().await.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_ctrl_c_cancels_the_query() {
    let env = Env::start().await;
    let mut child = std::process::Command::new(env.pg.bin_dir().join("psql"))
        .args([&env.agent_url(), "-X", "-c", "SELECT pg_sleep(30)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        child.wait_with_output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verify_full() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let pg = tokio::task::spawn_blocking(move || {
        airlock::testkit::PgOptions::new().tls(cert, key).start()
    })
    .await
    .unwrap()
    .unwrap();
    let pg = Arc::new(pg);
    let env = Env::start_on(
        Arc::clone(&pg),
        EnvOptions {
            target_toml: format!("tls = \"verify-full\"\nca = \"{ca}\""),
            ..Default::default()
        },
    )
    .await;
    let c = env.agent().await;
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "upstream leg is not encrypted");

    // A CA that did not sign the server's certificate is refused.
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _, _) = make_certs(other.path());
    let env2 = Env::start_on(
        pg,
        EnvOptions {
            target_toml: format!("tls = \"verify-full\"\nca = \"{wrong_ca}\""),
            ..Default::default()
        },
    )
    .await;
    let e = env2
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert!(format!("{e:?}").contains("TLS"), "{e:?}");
}
