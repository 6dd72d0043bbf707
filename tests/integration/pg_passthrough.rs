//! `credentials = "passthrough"` (issue 6): the client's own database login
//! is relayed to the server (SCRAM without channel binding, cleartext over
//! TLS), and the database user is the session's identity, under policy and
//! audit as usual.

use std::time::Duration;

use crate::common::*;

const DB_USER: &str = "alice";
const DB_PW: &str = "Alice-Db-Passw0rd";

const RULES: &str = r#"
[[policy]]
id = "legacy"
applies_to = { groups = ["passthrough"] }
allow_statements = ["read", "session", "transaction"]
deny_tables = ["public.hidden"]
"#;

fn passthrough_toml() -> String {
    format!(
        "credentials = \"passthrough\"\n[targets.{DB}.passthrough.users.{DB_USER}]\n\
         user = \"alice@example.com\"\nmodel = \"legacy-app\"\n\
         [targets.{DB}.passthrough.users.{UNCOVERED}]\ngroups = []\n"
    )
}

/// A database user mapped to no groups: no policy applies to it.
const UNCOVERED: &str = "carol";

async fn start(extra_toml: &str) -> (Env, std::path::PathBuf, tempfile::TempDir) {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = audit_dir.path().join("audit.db");
    let env = Env::start_with(EnvOptions {
        target_toml: passthrough_toml(),
        rules_toml: Some(RULES.into()),
        extra_toml: format!("[audit]\npath = \"{}\"\n{extra_toml}", audit.display()),
        ..Default::default()
    })
    .await;
    env.pg.create_user(DB_USER, DB_PW).unwrap();
    env.pg
        .psql_db(
            DB,
            &format!(
                "CREATE TABLE items (id int, name text);
                 INSERT INTO items VALUES (1, 'one');
                 CREATE TABLE hidden (x int);
                 GRANT SELECT ON items, hidden TO {DB_USER};"
            ),
        )
        .unwrap();
    (env, audit, audit_dir)
}

fn alice(env: &Env, password: &str) -> tokio_postgres::Config {
    let mut c = env.config_for(DB_USER, password);
    c.application_name("report (model=gpt-5)");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_password_runs_queries_under_policy_and_audit() {
    let (mut env, audit, _dir) = start("").await;
    let c = connect(alice(&env, DB_PW)).await;
    let rows = c
        .query("SELECT current_user::text, name FROM items", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), DB_USER);
    assert_eq!(rows[0].get::<_, String>(1), "one");

    // The server would allow it (alice may read hidden); the policy does not.
    let e = c.simple_query("SELECT * FROM hidden").await.unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("blocked by rule legacy.deny-tables"),
        "{}",
        db.message()
    );
    // The session is still usable.
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);

    // A database user no policy covers is refused once logged in.
    env.pg.create_user(UNCOVERED, DB_PW).unwrap();
    let e = env
        .config_for(UNCOVERED, DB_PW)
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("no policy applies");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(db.message().contains("no-policy"), "{}", db.message());

    // On a passthrough target an agent identity's name is just a database
    // user name, and its airlock secret no database password.
    let e = env
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("airlock's agent secret is no database password");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("28P01"),
        "{e}"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    env.stop().await;
    let all = airlock::audit::query(&audit, &airlock::audit::Filter::default()).unwrap();
    let connect = all
        .iter()
        .find(|r| r.event.kind == airlock::audit::EventKind::Connect)
        .expect("a connect record");
    assert_eq!(&*connect.event.identity, DB_USER);
    assert_eq!(connect.event.user.as_deref(), Some("alice@example.com"));
    assert_eq!(connect.event.model.as_deref(), Some("legacy-app"));
    assert_eq!(connect.event.declared_model.as_deref(), Some("gpt-5"));
    let blocked = all
        .iter()
        .find(|r| {
            r.event.kind == airlock::audit::EventKind::Statement
                && r.event.statement.as_deref() == Some("SELECT * FROM hidden")
        })
        .expect("the blocked statement is recorded");
    assert_eq!(&*blocked.event.identity, DB_USER);
    assert_eq!(blocked.event.rule.as_deref(), Some("legacy.deny-tables"));
    // The database user no policy covers is refused on the record too,
    // as a configured identity would be (operator finding: a superuser's
    // refused login left no record).
    let uncovered = all
        .iter()
        .find(|r| &*r.event.identity == UNCOVERED)
        .expect("the refused login is recorded");
    assert_eq!(uncovered.event.kind, airlock::audit::EventKind::Connect);
    assert_eq!(
        uncovered.event.decision,
        Some(airlock::audit::AuditDecision::Block)
    );
    assert_eq!(uncovered.event.rule.as_deref(), Some("no-policy"));
    assert_eq!(&*uncovered.event.target, DB);
    // And the agent whose secret is no database password: a failed login,
    // saying the server refused it.
    let failed = all
        .iter()
        .find(|r| r.event.kind == airlock::audit::EventKind::AuthFailed)
        .expect("the failed login is recorded");
    assert_eq!(&*failed.event.target, DB);
    assert_eq!(
        failed.event.reason.as_deref(),
        Some("the database server refused the login")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_28p01_and_nothing_leaks() {
    let (mut env, audit, _dir) = start("").await;
    for (user, password) in [(DB_USER, "not-the-password"), ("nobody", "whatever")] {
        let e = env
            .config_for(user, password)
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("refused");
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "28P01");
        assert_eq!(
            db.message(),
            format!("password authentication failed for user \"{user}\"")
        );
        let text = format!("{db:?}");
        for secret in [UPSTREAM_USER, UPSTREAM_PW, DB_PW] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // A name the server would cut to 63 bytes, and then map to another
    // role than airlock's policies and limits did (red-team finding).
    let long = format!("{DB_USER}{}", "x".repeat(64));
    let e = env
        .config_for(&long, DB_PW)
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42602"),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.stop().await;
    let all = airlock::audit::query(&audit, &airlock::audit::Filter::default()).unwrap();
    assert!(
        all.iter()
            .any(|r| r.event.kind == airlock::audit::EventKind::AuthFailed
                && &*r.event.identity == DB_USER),
        "failed logins are audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_upstream_only_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let (env, _audit, _dir) = start(&format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n")).await;
    // The server asks for a cleartext password from now on.
    let hba = env.pg.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    let new: String = old
        .lines()
        .map(|l| {
            if l.starts_with("host") {
                l.replace("scram-sha-256", "password")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(new.contains("password"), "{new}");
    std::fs::write(&hba, new + "\n").unwrap();
    env.pg.psql_admin("SELECT pg_reload_conf()").unwrap();

    let url = |pw: &str, sslmode: &str| {
        format!(
            "postgresql://{DB_USER}:{pw}@127.0.0.1:{}/{DB}?sslmode={sslmode}&sslrootcert={ca}",
            env.port
        )
    };
    let out = env.psql(&[&url(DB_PW, "verify-full"), "-XAtc", "SELECT current_user"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), DB_USER);

    let out = env.psql(&[&url("wrong", "verify-full"), "-XAtc", "SELECT 1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("password authentication failed for user \"alice\""),
        "{stderr}"
    );

    // Without TLS airlock never asks the client for a cleartext password.
    let out = env.psql(&[&url(DB_PW, "disable"), "-XAtc", "SELECT 1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("relays only over TLS"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_is_relayed_through_psql_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let (env, _audit, _dir) = start(&format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n")).await;
    // libpq over TLS with channel_binding=prefer sends `y,,`: relayed as is.
    let url = format!(
        "postgresql://{DB_USER}:{DB_PW}@127.0.0.1:{}/{DB}?sslmode=verify-full&sslrootcert={ca}",
        env.port
    );
    let out = env.psql(&[&url, "-XAtc", "SELECT count(*) FROM items"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // channel_binding=require cannot be met: airlock offers no -PLUS.
    let out = env.psql(&[
        &format!("{url}&channel_binding=require"),
        "-XAtc",
        "SELECT 1",
    ]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_identity_and_its_model() {
    let (env, _audit, _dir) = start("").await;
    let explain = |identity: &str, sql: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["explain", "--config"])
            .arg(env.path("airlock.toml"))
            .args(["--identity", identity, "--target", DB, sql])
            .output()
            .expect("run airlock explain");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A passthrough database user: described by targets.app.passthrough.
    let text = explain(DB_USER, "SELECT * FROM hidden");
    assert!(
        text.contains("user: alice@example.com  model: legacy-app  groups: [passthrough]"),
        "{text}"
    );
    assert!(text.contains("legacy.deny-tables"), "{text}");
    // A user not listed: default groups, no person or model.
    let text = explain("bob", "SELECT 1");
    assert!(
        text.contains("identity: bob  user: -  model: -  groups: [passthrough]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_is_relayed() {
    let pg = tokio::task::spawn_blocking(|| airlock::testkit::PgOptions::new().md5().start())
        .await
        .unwrap()
        .expect("start postgres with md5");
    let env = Env::start_on(
        std::sync::Arc::new(pg),
        EnvOptions {
            target_toml: passthrough_toml(),
            rules_toml: Some(RULES.into()),
            ..Default::default()
        },
    )
    .await;
    env.pg.create_user(DB_USER, DB_PW).unwrap();
    let c = connect(alice(&env, DB_PW)).await;
    let rows = c.query("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, String>(0), DB_USER);
    let e = env
        .config_for(DB_USER, "wrong")
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("28P01"),
        "{e}"
    );
}

/// Sends a startup packet as `user` and reads the first answer: the
/// server's authentication request relayed (the login is then in
/// progress, holding a server connection), or airlock's refusal.
async fn start_login(env: &Env, user: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    let mut out = bytes::BytesMut::new();
    airlock_protocol::pg::startup::StartupMessage::encode(
        &[("user", user), ("database", DB)],
        &mut out,
    );
    tcp.write_all(&out).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf.truncate(n);
    (tcp, buf)
}

/// Red-team findings: a client with no password made airlock open a server
/// connection for every login it started (100 filled the server's
/// max_connections), and took the database user's session slot before the
/// login, so such clients locked the real user out. Logins in progress are
/// capped per target (`max_pending_logins`), and the user's slot is taken
/// once the server accepted the login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_progress_are_capped_and_take_no_session_slot() {
    let env = Env::start_with(EnvOptions {
        target_toml: format!(
            "credentials = \"passthrough\"\n[targets.{DB}.passthrough]\n\
             max_sessions = 1\nmax_pending_logins = 3\n"
        ),
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.pg.create_user(DB_USER, DB_PW).unwrap();
    // Two logins as alice that never send a password.
    let (h1, first) = start_login(&env, DB_USER).await;
    let (h2, _) = start_login(&env, DB_USER).await;
    assert_eq!(first.first(), Some(&b'R'), "{first:?}");
    // The real alice logs in: the two took neither her session slot nor
    // all the logins in progress.
    let alice_session = connect(alice(&env, DB_PW)).await;
    alice_session.simple_query("SELECT 1").await.unwrap();
    // A third silent login fills the logins in progress; a fourth is
    // refused before airlock connects anywhere.
    let (h3, _) = start_login(&env, "anyone").await;
    let (_h4, refused) = start_login(&env, "anyone").await;
    let text = String::from_utf8_lossy(&refused);
    assert_eq!(refused.first(), Some(&b'E'), "{text}");
    assert!(
        text.contains("53300") && text.contains("max_pending_logins"),
        "{text}"
    );
    drop((h1, h2, h3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // With them gone, alice's second session meets her own limit.
    let e = alice(&env, DB_PW)
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("over max_sessions");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53300");
    assert!(db.message().contains("passthrough.max_sessions"), "{db:?}");
    alice_session.simple_query("SELECT 1").await.unwrap();
}

/// The client's login_timeout, counted from its arrival, bounds a relayed
/// login too (re-check finding: a startup packet sent just in time was
/// given connect_timeout more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_login_ends_at_the_login_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start_with(EnvOptions {
        target_toml: passthrough_toml(),
        rules_toml: Some(RULES.into()),
        limits_toml: "login_timeout = \"2s\"\n".into(),
        ..Default::default()
    })
    .await;
    env.pg.create_user(DB_USER, DB_PW).unwrap();
    let connected = std::time::Instant::now();
    let mut late = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut out = bytes::BytesMut::new();
    airlock_protocol::pg::startup::StartupMessage::encode(
        &[("user", DB_USER), ("database", DB)],
        &mut out,
    );
    late.write_all(&out).await.unwrap();
    // The server's SASL request, relayed; then no answer from the client.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), late.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let open_for = connected.elapsed();
    assert_eq!(got.first(), Some(&b'R'), "{got:?}");
    // At 2 s, not at 1.5 s + connect_timeout.
    assert!(
        open_for < Duration::from_millis(3500),
        "open for {open_for:?}"
    );
    assert!(
        String::from_utf8_lossy(&got).contains("login_timeout"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// A database user named like an airlock identity cannot log in through
/// passthrough: policies know a principal by its name alone, and it would
/// get the identity's policies with no airlock secret (red-team finding).
/// It is refused once the server accepted its login, so a client without
/// the database password does not learn which identities exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_user_named_like_an_identity_is_refused() {
    let (env, _audit, _dir) = start("").await;
    env.pg.create_user(AGENT, "Agent-Db-Passw0rd").unwrap();
    let (code, message) = login_refusal(env.config_for(AGENT, "Agent-Db-Passw0rd")).await;
    assert_eq!(code, "28000", "{message}");
    assert!(message.contains("name of an airlock identity"), "{message}");
    // With the wrong password it is the server's refusal, as for any user.
    let (code, message) = login_refusal(env.config_for(AGENT, "wrong")).await;
    assert_eq!(code, "28P01", "{message}");
    // Other database users are unaffected.
    let ok = connect(alice(&env, DB_PW)).await;
    ok.simple_query("SELECT 1").await.unwrap();
}

/// A server that lets a user in without a password (`trust` for airlock's
/// address) would let any client in as that user through passthrough: the
/// rule matches airlock's address, not the client's (red-team finding:
/// `user=postgres` with no password was a superuser session). Refused
/// unless the target sets `passthrough.allow_trust`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_the_server_trusts_is_refused_unless_allowed() {
    let (env, _audit, _dir) = start("").await;
    env.pg.trust_host_user(DB_USER).unwrap();
    let (code, message) = login_refusal(alice(&env, "not-checked")).await;
    assert_eq!(code, "28000", "{message}");
    assert!(message.contains("passthrough.allow_trust"), "{message}");

    let env = Env::start_with(EnvOptions {
        target_toml: format!(
            "{}[targets.{DB}.passthrough]\nallow_trust = true\n",
            passthrough_toml()
        ),
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.pg.create_user(DB_USER, DB_PW).unwrap();
    env.pg.trust_host_user(DB_USER).unwrap();
    let c = connect(alice(&env, "not-checked")).await;
    c.simple_query("SELECT 1").await.unwrap();
}

/// The SQLSTATE and message of a login that must be refused.
async fn login_refusal(config: tokio_postgres::Config) -> (String, String) {
    let e = config
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("refused");
    let db = e.as_db_error().expect("a server error");
    (db.code().code().to_owned(), db.message().to_owned())
}
