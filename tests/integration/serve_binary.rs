//! `airlock serve` as a process, on the runtime it builds for itself: I/O
//! only, without tokio's time driver, every timer on airlock's timer
//! thread (`src/timer_thread.rs`). The in-process tests run airlock on
//! `#[tokio::test]` runtimes, which do have tokio's timer, so this is the
//! test that would see a timer path panic for want of it.
//!
//! One process covers the paths that wait on a timer: upstream connects
//! under `connect_timeout` (Postgres and MySQL), ephemeral credentials
//! (broker calls under a timeout, the janitor, the TTL), an approval hold
//! that times out, a cancel request forwarded upstream under its timeout,
//! the idle timeout, the rules-file poll, the admin API and its deadline on
//! request heads, and shutdown on SIGTERM with its drain. Not covered: the
//! back-off after an accept error (the listeners' and the admin
//! listener's), which needs the process out of file descriptors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::testkit::process::free_port;
use airlock::testkit::{MariaDbServer, PgServer};

use crate::common::admin::{admin_toml, AdminApi};
use crate::common::{AGENT, AGENT_PW, DB, UPSTREAM_PW, UPSTREAM_USER};

/// The MySQL target's name (the client's database selects the target).
const MY_TARGET: &str = "myapp";

/// The policy's head; each version adds its own last lines.
const POLICY: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write"]
allow_builtin = ["builtin.dangerous-function"]
"#;

/// The first rules: writes to `items` wait for a human.
fn rules() -> String {
    POLICY.to_owned()
        + r#"require_approval = [
  { id = "items-write", statements = ["write"], tables = ["public.items"], message = "writes to items need a human" },
]
"#
}

/// The rules once the rules-file poll has picked up a change: reads of
/// `items` are refused; and a policy for a misspelt identity, which the
/// reload warns about as `airlock check` does.
fn rules_no_items() -> String {
    POLICY.to_owned()
        + "deny_tables = [\"public.items\"]\n"
        + r#"
[[policy]]
id = "typo"
applies_to = { identities = ["agnet"] }
allow_statements = ["read"]
"#
}

/// The server process; killed if the test fails before it stops it.
struct Serve {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Free loopback ports for airlock's three listeners.
struct Ports {
    pg: u16,
    my: u16,
    admin: u16,
}

fn config(dir: &Path, pg: &PgServer, my: &MariaDbServer, ports: &Ports) -> String {
    let pw_file = dir.join("upstream.pw");
    std::fs::write(&pw_file, format!("{UPSTREAM_PW}\n")).unwrap();
    std::fs::write(dir.join("rules.toml"), rules()).unwrap();
    format!(
        r#"
[listen]
postgres = "127.0.0.1:{pg_port}"
mysql = "127.0.0.1:{my_port}"

[limits]
connect_timeout = "5s"
shutdown_timeout = "2s"
idle_timeout = "2s"

[policy]
rules = "{rules}"

[targets.{DB}]
host = "127.0.0.1"
port = {pg_upstream}
database = "{DB}"
user = "{UPSTREAM_USER}"
password_file = "{pw}"
credentials = "ephemeral"
[targets.{DB}.ephemeral]
template_role = "agent_ro"
ttl = "1h"

[targets.{MY_TARGET}]
protocol = "mysql"
host = "127.0.0.1"
port = {my_upstream}
database = "{DB}"
user = "{UPSTREAM_USER}"
password_file = "{pw}"

[identities.{AGENT}]
secret = "{scram}"
mysql_secret = "{native}"
user = "tester"
model = "test-model"
targets = ["{DB}", "{MY_TARGET}"]

{admin}
"#,
        rules = dir.join("rules.toml").display(),
        pg_upstream = pg.port(),
        my_upstream = my.port(),
        pw = pw_file.display(),
        scram = airlock_protocol::pg::scram::make_verifier(AGENT_PW),
        native = airlock_protocol::mysql::auth::native_hash_string(AGENT_PW.as_bytes()),
        pg_port = ports.pg,
        my_port = ports.my,
        admin = admin_toml(dir, "1s").replace("127.0.0.1:0", &format!("127.0.0.1:{}", ports.admin)),
    )
}

/// Throwaway servers with the upstream user, a broker for ephemeral
/// credentials on Postgres, and a table on each.
fn servers() -> (PgServer, MariaDbServer) {
    let pg = PgServer::start().expect("start postgres");
    pg.create_user(UPSTREAM_USER, UPSTREAM_PW).unwrap();
    pg.create_database(DB, UPSTREAM_USER).unwrap();
    pg.psql_admin(
        "ALTER ROLE airlock_svc CREATEROLE;
         CREATE ROLE agent_ro NOLOGIN;
         GRANT agent_ro TO airlock_svc WITH ADMIN OPTION;",
    )
    .unwrap();
    pg.psql_db(
        DB,
        "CREATE TABLE items (id int, name text);
         INSERT INTO items VALUES (1, 'one'), (2, 'two');
         GRANT SELECT, INSERT ON items TO agent_ro;",
    )
    .unwrap();
    let my = MariaDbServer::start().expect("start mariadb");
    my.create_user(UPSTREAM_USER, UPSTREAM_PW).unwrap();
    my.create_database(DB, UPSTREAM_USER).unwrap();
    (pg, my)
}

fn pg_config(port: u16) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(port)
        .user(AGENT)
        .password(AGENT_PW)
        .dbname(DB)
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn pg_connect(port: u16) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = pg_config(port).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Waits until airlock takes a Postgres login (it is starting up).
async fn wait_up(serve: &mut Serve, port: u16) -> tokio_postgres::Client {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match pg_connect(port).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < until => {
                if let Ok(Some(status)) = serve.child.try_wait() {
                    panic!("airlock exited ({status}) at start-up:\n{}", serve.log());
                }
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("airlock did not take a login: {e}\n{}", serve.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_its_timer_paths_without_tokios_timer() {
    let (pg, my) = tokio::task::spawn_blocking(servers).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        pg: free_port().unwrap(),
        my: free_port().unwrap(),
        admin: free_port().unwrap(),
    };
    let (pg_port, my_port) = (ports.pg, ports.my);
    let path = dir.path().join("airlock.toml");
    std::fs::write(&path, config(dir.path(), &pg, &my, &ports)).unwrap();
    let log = dir.path().join("airlock.log");
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("AIRLOCK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut serve = Serve { child, log };

    // Postgres: a login with an ephemeral credential (the broker's calls
    // and the upstream connect run under timeouts), then a read.
    let client = wait_up(&mut serve, pg_port).await;
    let rows = client
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);

    // An approval nobody answers times out.
    let err = client
        .simple_query("INSERT INTO items VALUES (3, 'three')")
        .await
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert_eq!(
        db.message(),
        "airlock: rule rw.items-write: approval timed out after 1s"
    );
    client.simple_query("SELECT 1").await.unwrap();

    // A cancel request goes upstream (under a timeout) and cancels.
    let token = client.cancel_token();
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    };
    let (slept, cancelled) = tokio::join!(client.simple_query("SELECT pg_sleep(30)"), cancel);
    cancelled.unwrap();
    let err = slept.expect_err("pg_sleep(30) was cancelled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    client.simple_query("SELECT 1").await.unwrap();

    // MySQL: the upstream connect runs under its timeout.
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(my_port)
        .user(Some(AGENT))
        .pass(Some(AGENT_PW))
        .db_name(Some(MY_TARGET));
    let mut my_conn = mysql_async::Conn::new(opts).await.unwrap();
    use mysql_async::prelude::Queryable;
    let one: Option<i64> = my_conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    // The admin API.
    let api = AdminApi::new(([127, 0, 0, 1], ports.admin).into());
    assert_eq!(api.get("/healthz").await.status, 200);
    assert_eq!(api.get("/api/sessions").await.status, 200);
    // Admin clients that never finish a request head are cut off after
    // the header-read timeout (10 s, on the timer thread): one silent, one
    // stopped mid-head, one sending a byte a second, and one idle after a
    // request it was answered. Checked below, after the other waits.
    let slow_admin = SlowAdminClients::open(ports.admin).await;
    assert_eq!(api.get("/healthz").await.status, 200);

    // The idle timeout (2 s) ends both idle sessions.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        client.simple_query("SELECT 1").await.is_err(),
        "an idle Postgres session outlived idle_timeout"
    );
    assert!(
        my_conn.query_drop("SELECT 1").await.is_err(),
        "an idle MySQL session outlived idle_timeout"
    );

    // The rules-file poll picks up a change.
    std::fs::write(dir.path().join("rules.toml"), rules_no_items()).unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let c = pg_connect(pg_port).await.unwrap();
        match c.simple_query("SELECT name FROM items").await {
            Err(e) => {
                let db = e.as_db_error().expect("a refusal");
                assert_eq!(db.code().code(), "42501", "{e:?}");
                assert!(db.message().contains("public.items"), "{e:?}");
                break;
            }
            Ok(_) if Instant::now() < until => tokio::time::sleep(Duration::from_millis(300)).await,
            Ok(_) => panic!("the rules file was not reloaded:\n{}", serve.log()),
        }
    }
    // The reload said what `airlock check` would have.
    let log = serve.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("policy typo") && l.contains("agnet")),
        "no warning about the unknown identity at reload:\n{log}"
    );

    slow_admin.assert_cut_off().await;
    assert_eq!(api.get("/healthz").await.status, 200);

    // SIGTERM: a clean stop, within the drain timeout and some.
    let held_open = pg_connect(pg_port).await.unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(serve.child.id() as libc::pid_t, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "airlock did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(held_open);
    let log = serve.log();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Raw connections to the admin listener that never complete a request
/// head in time.
struct SlowAdminClients {
    opened: Instant,
    silent: tokio::net::TcpStream,
    mid_head: tokio::net::TcpStream,
    idle_after_request: tokio::net::TcpStream,
    trickle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SlowAdminClients {
    const HEAD: &'static [u8] = b"GET /healthz HTTP/1.1\r\nHost: airlock\r\n";

    async fn open(port: u16) -> Self {
        use tokio::io::AsyncWriteExt;
        use tokio::net::TcpStream;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let opened = Instant::now();
        let silent = TcpStream::connect(addr).await.unwrap();
        let mut mid_head = TcpStream::connect(addr).await.unwrap();
        mid_head.write_all(Self::HEAD).await.unwrap();
        let mut idle_after_request = TcpStream::connect(addr).await.unwrap();
        idle_after_request.write_all(Self::HEAD).await.unwrap();
        idle_after_request.write_all(b"\r\n").await.unwrap();
        let trickle = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            // Longer than the timeout at a byte a second: the server
            // closes, and a write fails.
            for b in Self::HEAD.iter().chain([b'X'; 60].iter()) {
                s.write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(())
        });
        SlowAdminClients {
            opened,
            silent,
            mid_head,
            idle_after_request,
            trickle,
        }
    }

    /// Each connection is closed well within 30 s of opening.
    async fn assert_cut_off(self) {
        let deadline = self.opened + Duration::from_secs(30);
        assert!(
            Self::read_until_closed(self.silent, deadline)
                .await
                .is_empty(),
            "the silent connection got a reply"
        );
        Self::read_until_closed(self.mid_head, deadline).await;
        let answered = Self::read_until_closed(self.idle_after_request, deadline).await;
        assert!(
            answered.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answered)
        );
        let trickled = tokio::time::timeout_at(deadline.into(), self.trickle)
            .await
            .expect("a client sending a byte a second was not cut off")
            .unwrap();
        assert!(trickled.is_err(), "the trickled request head was accepted");
    }

    /// What the server sent before it closed the connection; panics if it
    /// is still open at `deadline`.
    async fn read_until_closed(mut s: tokio::net::TcpStream, deadline: Instant) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let read = tokio::time::timeout_at(deadline.into(), s.read_to_end(&mut got)).await;
        assert!(
            read.is_ok(),
            "an admin connection without a full request head is still open after 30 s"
        );
        got
    }
}
