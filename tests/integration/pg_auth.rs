//! Logging in to airlock: SCRAM for agents, identical failures for unknown
//! identities and wrong secrets, TLS on the client leg with a generated CA,
//! and the upstream credential never reaching the client.

use crate::common::*;

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_owned())
        .unwrap_or_default()
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_and_unknown_identity_fail_alike() {
    let env = Env::start().await;
    let mut wrong = env.agent_config();
    wrong.password("not-the-secret");
    let e1 = wrong.connect(tokio_postgres::NoTls).await.err().unwrap();

    let mut unknown = env.agent_config();
    unknown.user("nobody-here");
    let e2 = unknown.connect(tokio_postgres::NoTls).await.err().unwrap();

    assert_eq!(sqlstate(&e1), "28P01");
    assert_eq!(sqlstate(&e2), "28P01");
    assert_eq!(
        message(&e1).replace(AGENT, "U"),
        message(&e2).replace("nobody-here", "U")
    );

    // The upstream user and its password are not agent identities.
    let mut upstream = env.agent_config();
    upstream.user(UPSTREAM_USER).password(UPSTREAM_PW);
    let e3 = upstream.connect(tokio_postgres::NoTls).await.err().unwrap();
    assert_eq!(sqlstate(&e3), "28P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_forbidden_database() {
    let env = Env::start().await;
    let mut cfg = env.agent_config();
    cfg.dbname("postgres");
    let e = cfg.connect(tokio_postgres::NoTls).await.err().unwrap();
    assert_eq!(sqlstate(&e), "3D000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_login_failure_does_not_leak_the_credential() {
    let env = Env::start().await;
    // Change the upstream password behind airlock's back.
    env.pg
        .psql_admin("ALTER ROLE airlock_svc PASSWORD 'changed-elsewhere'")
        .unwrap();
    let e = env
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    let text = format!("{e:?}");
    assert!(!text.contains(UPSTREAM_USER), "{text}");
    assert!(!text.contains(UPSTREAM_PW), "{text}");
    assert!(
        message(&e).contains("could not log in to the upstream server"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_upstream() {
    let pg = tokio::task::spawn_blocking(|| {
        airlock::testkit::postgres::PgServer::start_with(
            airlock::testkit::postgres::PgOptions::default().md5(),
        )
    })
    .await
    .unwrap()
    .unwrap();
    let env = Env::start_on(std::sync::Arc::new(pg), EnvOptions::default()).await;
    let c = env.agent().await;
    let r: i32 = c.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(r, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_leg_with_generated_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let env = Env::start_with(EnvOptions {
        extra_toml: format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nrequire = true\n"),
        ..Default::default()
    })
    .await;
    let url = env.agent_url();

    // verify-full against our CA: works, and the session is encrypted.
    let out = env.psql(&[
        &format!("{url}?sslmode=verify-full&sslrootcert={ca}"),
        "-XAtc",
        "SELECT 'tls-ok'",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tls-ok");

    // Without TLS the client is refused, since require = true.
    let out = env.psql(&[&format!("{url}?sslmode=disable"), "-XAtc", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires TLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_only_over_tls_when_configured() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let env = Env::start_with(EnvOptions {
        extra_toml: format!(
            "[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nallow_cleartext_password = true\n"
        ),
        ..Default::default()
    })
    .await;
    let url = env.agent_url();
    // Over TLS airlock asks for the password in clear (libpq: require_auth=password).
    let out = env.psql(&[
        &format!("{url}?sslmode=verify-full&sslrootcert={ca}&require_auth=password"),
        "-XAtc",
        "SELECT 1",
    ]);
    // libpq 15 does not know require_auth; fall back to a plain TLS login.
    let ok = out.status.success() || String::from_utf8_lossy(&out.stderr).contains("require_auth");
    assert!(ok, "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.psql(&[
        &format!("{url}?sslmode=verify-full&sslrootcert={ca}"),
        "-XAtc",
        "SELECT 1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without TLS it is SCRAM, which tokio-postgres speaks.
    let c = env.agent().await;
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_identity_session_limit() {
    let env = Env::start_with(EnvOptions {
        agent_toml: "max_sessions = 1".into(),
        ..Default::default()
    })
    .await;
    let first = env.agent().await;
    let e = env
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "53300", "{e:?}");
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    env.agent().await.simple_query("SELECT 1").await.unwrap();
}

/// A server error during the upstream login does not name airlock's
/// database user (red-team finding: `too many connections for role
/// "airlock_svc"` reached the agent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_login_errors_do_not_name_the_service_account() {
    let env = Env::start().await;
    env.pg
        .psql_admin(&format!("ALTER ROLE {UPSTREAM_USER} CONNECTION LIMIT 1"))
        .unwrap();
    let first = env.agent().await;
    let e = env
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("over the role's connection limit");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53300", "{db:?}");
    assert!(!db.message().contains(UPSTREAM_USER), "{db:?}");
    assert!(db.message().contains("airlock's database user"), "{db:?}");
    first.simple_query("SELECT 1").await.unwrap();
}

/// A server that asks for the password in clear gets it only when its
/// certificate was verified (`tls = "verify-full"`) or the target allows it
/// (`allow_cleartext_password`). Red-team finding: airlock sent its
/// password to any server that asked, or anyone answering in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_upstream_passwords_need_a_verified_server_or_consent() {
    let pg = tokio::task::spawn_blocking(|| {
        airlock::testkit::PgOptions::new()
            .host_auth(airlock::testkit::PgHostAuth::Password)
            .start()
    })
    .await
    .unwrap()
    .expect("start postgres with password auth");
    let pg = std::sync::Arc::new(pg);
    let refused = Env::start_on(std::sync::Arc::clone(&pg), EnvOptions::default()).await;
    let e = refused
        .agent_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("airlock does not send the password in clear");
    let text = format!("{e:?}");
    assert!(text.contains("could not log in"), "{text}");
    assert!(!text.contains(UPSTREAM_PW), "{text}");
    let allowed = Env::start_on(
        pg,
        EnvOptions {
            target_toml: "allow_cleartext_password = true\n".into(),
            ..Default::default()
        },
    )
    .await;
    allowed
        .agent()
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

/// The `i=` airlock's server-first-message shows `user`, read off a SCRAM
/// exchange it leaves after that message.
async fn scram_iterations_shown(port: u16, user: &str) -> String {
    use airlock_protocol::pg::startup::StartupMessage;
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut c = crate::common::raw::RawClient {
        tcp,
        rbuf: BytesMut::new(),
        received: Vec::new(),
    };
    let mut out = BytesMut::new();
    StartupMessage::encode(&[("user", user), ("database", DB)], &mut out);
    c.send(&out).await;
    let asked = c.read().await.unwrap();
    assert_eq!(
        (asked.tag(), &asked.body()[..4]),
        (b'R', &10i32.to_be_bytes()[..])
    );
    out.clear();
    frontend::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=clientnonce0123456789", &mut out)
        .unwrap();
    c.send(&out).await;
    let first = c.read().await.unwrap();
    assert_eq!(&first.body()[..4], &11i32.to_be_bytes()[..]);
    let text = String::from_utf8_lossy(&first.body()[4..]).into_owned();
    text.split(',')
        .find_map(|p| p.strip_prefix("i="))
        .unwrap_or_default()
        .to_owned()
}

/// An unknown name is shown the iteration count most identities' verifiers
/// have, not always 4096 (red-team note: where identities' verifiers used
/// another count, `i=` told unknown names from real ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_see_the_iteration_count_most_identities_have() {
    let mut extra = String::new();
    for name in ["analyst", "reporter"] {
        let v = airlock_protocol::pg::scram::make_verifier_with("pw", name.as_bytes(), 10_000);
        extra.push_str(&format!(
            "\n[identities.{name}]\nsecret = \"{v}\"\ntargets = [\"{DB}\"]\n"
        ));
    }
    let mut env = Env::start_with(EnvOptions {
        extra_toml: extra,
        ..Default::default()
    })
    .await;
    assert_eq!(scram_iterations_shown(env.port, "analyst").await, "10000");
    assert_eq!(scram_iterations_shown(env.port, AGENT).await, "4096");
    assert_eq!(
        scram_iterations_shown(env.port, "nobody-here").await,
        "10000"
    );
    env.stop().await;
}

/// A CancelRequest sent over TLS (libpq 17's encrypted cancel, psycopg's
/// `cancel_safe()`) is answered as Postgres answers it: the connection is
/// closed, over TLS with a close_notify (compatibility finding: it was
/// dropped without one, and psycopg reported "unexpected eof" for a
/// cancel that had worked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_over_tls_is_closed_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let env = Env::start_with(EnvOptions {
        extra_toml: format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"),
        ..Default::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    // SSLRequest: length 8, code 80877103.
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"S");
    let config = airlock::tls::client_config(
        airlock::config::UpstreamTlsMode::VerifyFull,
        Some(std::path::Path::new(&ca)),
    )
    .unwrap()
    .unwrap();
    let name = airlock::tls::server_name("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    // CancelRequest: length 16, code 80877102, a pid and key no session has.
    let mut cancel = vec![0, 0, 0, 16, 4, 210, 22, 46];
    cancel.extend_from_slice(&7i32.to_be_bytes());
    cancel.extend_from_slice(&9i32.to_be_bytes());
    tls.write_all(&cancel).await.unwrap();
    tls.flush().await.unwrap();
    let mut rest = Vec::new();
    let read = tls.read_to_end(&mut rest).await;
    assert!(
        matches!(read, Ok(0)),
        "the connection was not closed with a close_notify: {read:?}"
    );
}
