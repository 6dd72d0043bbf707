//! `kill -9` of a real airlock process while a session holds an ephemeral
//! user, then a restart: the new process's janitor drops the leftover
//! (issue 6). Postgres and MariaDB.
//!
//! Both runs use the same config and listen address, so they share an
//! instance id and the restarted airlock recognises the leftover as its own
//! at once (no need to wait for the TTL).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::testkit::postgres::PgServer;
use airlock::testkit::MariaDbServer;
use mysql_async::prelude::*;

const AGENT: &str = "agent";
const AGENT_PW: &str = "agent-pw";
const BROKER: &str = "airlock_svc";
const BROKER_PW: &str = "Br0ker-S3cret-Never-Leaks";
const DB: &str = "app";

/// A port that was free a moment ago (both airlock runs listen on it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The airlock binary, serving `config`, its log in `log`.
fn spawn_airlock(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--config"])
        .arg(config)
        .env("AIRLOCK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start airlock")
}

/// Polls `check` until it holds or 20 s pass.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn kill_9(child: &mut Child) {
    child.kill().expect("SIGKILL airlock"); // Child::kill is SIGKILL on Unix
    child.wait().expect("reap airlock");
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leftover_of_a_killed_airlock_is_dropped_on_restart() {
    let pg = tokio::task::spawn_blocking(PgServer::start)
        .await
        .unwrap()
        .expect("start postgres");
    pg.create_user(BROKER, BROKER_PW).unwrap();
    pg.create_database(DB, BROKER).unwrap();
    pg.psql_admin(
        "ALTER ROLE airlock_svc CREATEROLE;
         CREATE ROLE agent_ro NOLOGIN;
         GRANT agent_ro TO airlock_svc WITH ADMIN OPTION;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("airlock.toml");
    std::fs::write(dir.path().join("broker.pw"), BROKER_PW).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
postgres = "127.0.0.1:{port}"

[targets.{DB}]
host = "127.0.0.1"
port = {pg_port}
database = "{DB}"
user = "{BROKER}"
password_file = "broker.pw"
credentials = "ephemeral"

[targets.{DB}.ephemeral]
template_role = "agent_ro"
ttl = "15m"

[identities.{AGENT}]
secret = "{verifier}"
model = "test-model"
targets = ["{DB}"]
"#,
            pg_port = pg.port(),
            verifier = airlock_protocol::pg::scram::make_verifier(AGENT_PW),
        ),
    )
    .unwrap();
    let log = dir.path().join("airlock.log");
    let mut first = spawn_airlock(&config, &log);
    assert!(
        eventually(|| accepts(port)).await,
        "airlock did not start:\n{}",
        log_of(&log)
    );

    let mut agent = tokio_postgres::Config::new();
    agent
        .host("127.0.0.1")
        .port(port)
        .user(AGENT)
        .password(AGENT_PW)
        .dbname(DB);
    let client = crate::common::connect(agent).await;
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert!(user.starts_with("airlock_eph_"), "session runs as {user}");
    let exists = |name: &str| {
        !pg.psql_admin(&format!("SELECT 1 FROM pg_roles WHERE rolname = '{name}'"))
            .unwrap()
            .trim()
            .is_empty()
    };

    kill_9(&mut first);
    drop(client);
    assert!(
        exists(&user),
        "the killed airlock had no chance to drop its user"
    );

    let mut second = spawn_airlock(&config, &log);
    let dropped = eventually(|| !exists(&user)).await;
    kill_9(&mut second);
    assert!(
        dropped,
        "the janitor left the user behind:\n{}",
        log_of(&log)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_leftover_of_a_killed_airlock_is_dropped_on_restart() {
    let db = tokio::task::spawn_blocking(|| {
        let db = MariaDbServer::start().expect("start mariadb");
        db.create_user(BROKER, BROKER_PW).unwrap();
        db.create_database(DB, BROKER).unwrap();
        db.admin_sql(
            "GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'airlock_svc'@'%';
             GRANT SELECT ON mysql.user TO 'airlock_svc'@'%';
             CREATE ROLE agent_ro;
             GRANT SELECT ON app.* TO agent_ro;
             GRANT agent_ro TO 'airlock_svc'@'%' WITH ADMIN OPTION;",
        )
        .unwrap();
        db
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("airlock.toml");
    std::fs::write(dir.path().join("broker.pw"), BROKER_PW).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
mysql = "127.0.0.1:{port}"

[targets.{DB}]
protocol = "mysql"
host = "127.0.0.1"
port = {db_port}
database = "{DB}"
user = "{BROKER}"
password_file = "broker.pw"
credentials = "ephemeral"

[targets.{DB}.ephemeral]
template_role = "agent_ro"
ttl = "15m"

[identities.{AGENT}]
secret = "{verifier}"
mysql_secret = "{native}"
model = "test-model"
targets = ["{DB}"]
"#,
            db_port = db.port(),
            verifier = airlock_protocol::pg::scram::make_verifier(AGENT_PW),
            native = airlock_protocol::mysql::auth::native_hash_string(AGENT_PW.as_bytes()),
        ),
    )
    .unwrap();
    let log = dir.path().join("airlock.log");
    let mut first = spawn_airlock(&config, &log);
    assert!(
        eventually(|| accepts(port)).await,
        "airlock did not start:\n{}",
        log_of(&log)
    );

    let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(AGENT))
        .pass(Some(AGENT_PW))
        .db_name(Some(DB))
        .prefer_socket(false)
        .into();
    let mut conn = mysql_async::Conn::new(opts).await.expect("agent connects");
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    let user = current
        .unwrap_or_default()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(user.starts_with("airlock_eph_"), "session runs as {user}");
    let exists = |name: &str| {
        !db.admin_sql(&format!("SELECT 1 FROM mysql.user WHERE User = '{name}'"))
            .unwrap()
            .trim()
            .is_empty()
    };

    kill_9(&mut first);
    drop(conn);
    assert!(
        exists(&user),
        "the killed airlock had no chance to drop its user"
    );

    let mut second = spawn_airlock(&config, &log);
    let dropped = eventually(|| !exists(&user)).await;
    kill_9(&mut second);
    assert!(
        dropped,
        "the janitor left the user behind:\n{}",
        log_of(&log)
    );
}
