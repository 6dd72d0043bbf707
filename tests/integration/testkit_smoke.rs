//! Smoke tests of the test kit: throwaway PostgreSQL and MariaDB servers
//! start, enforce real password auth over TCP, and leave nothing behind.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use airlock::testkit::postgres::psql_via;
use airlock::testkit::{MariaDbServer, PgHostAuth, PgOptions, PgServer};
use tokio_postgres::NoTls;

fn start_pg(options: PgOptions) -> PgServer {
    let started = Instant::now();
    let pg = options.start().expect("start PostgreSQL");
    eprintln!(
        "PgServer::start ({:?}) took {:?}",
        pg.host_auth(),
        started.elapsed()
    );
    pg
}

fn start_mariadb() -> MariaDbServer {
    let started = Instant::now();
    let db = MariaDbServer::start().expect("start MariaDB");
    eprintln!("MariaDbServer::start took {:?}", started.elapsed());
    db
}

/// Connects over TCP and runs `select 1`; returns the error message on failure.
async fn pg_select_one(conninfo: &str) -> Result<i32, String> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one("select 1", &[])
        .await
        .map_err(|e| e.to_string())?;
    drop(client);
    task.await.unwrap().unwrap();
    Ok(row.get(0))
}

fn assert_gone(root: &Path, port: u16) {
    assert!(!root.exists(), "{} still exists", root.display());
    TcpListener::bind(("127.0.0.1", port)).expect("port is free again");
}

#[tokio::test]
async fn postgres_scram_login() {
    let pg = start_pg(PgOptions::new());
    assert!(pg.port() != 5432);
    assert_eq!(pg.psql_admin("select 1").unwrap(), "1");
    assert_eq!(
        pg.psql_admin("show password_encryption").unwrap(),
        "scram-sha-256"
    );

    // A password that needs quoting everywhere.
    let password = r"it's a \secret";
    pg.create_user("alice", password).unwrap();
    pg.create_database("alice_db", "alice").unwrap();
    let stored = pg
        .psql_admin("select rolpassword from pg_authid where rolname = 'alice'")
        .unwrap();
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");

    let good = pg.connection_string("alice", password, "alice_db");
    assert_eq!(pg_select_one(&good).await.unwrap(), 1);

    let bad = pg.connection_string("alice", "wrong", "alice_db");
    let err = pg_select_one(&bad).await.unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");

    let admin = pg.connection_string(pg.superuser(), pg.superuser_password(), "postgres");
    assert_eq!(pg_select_one(&admin).await.unwrap(), 1);
    let no_password = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        pg.port()
    );
    assert!(pg_select_one(&no_password).await.is_err());

    let psql_out = psql_via(&pg, &good, "select current_user").unwrap();
    assert_eq!(psql_out, "alice");
    assert!(pg.version().starts_with(|c: char| c.is_ascii_digit()));
    assert!(pg.bin_dir().join("pgbench").exists());
}

#[tokio::test]
async fn postgres_md5_login() {
    let pg = start_pg(PgOptions::new().md5());
    assert_eq!(pg.host_auth(), PgHostAuth::Md5);
    pg.create_user("bob", "bob-pw").unwrap();
    let stored = pg
        .psql_admin("select rolpassword from pg_authid where rolname in ('bob', 'postgres') order by rolname")
        .unwrap();
    assert!(stored.lines().all(|l| l.starts_with("md5")), "{stored}");

    let good = pg.connection_string("bob", "bob-pw", "postgres");
    assert_eq!(pg_select_one(&good).await.unwrap(), 1);
    let bad = pg.connection_string("bob", "nope", "postgres");
    let err = pg_select_one(&bad).await.unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");
    let admin = pg.connection_string(pg.superuser(), pg.superuser_password(), "postgres");
    assert_eq!(pg_select_one(&admin).await.unwrap(), 1);
}

#[test]
fn postgres_tls() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();

    let pg = start_pg(PgOptions::new().tls(&cert, &key));
    assert!(pg.tls_enabled());
    assert_eq!(pg.psql_admin("show ssl").unwrap(), "on");
    let conninfo = format!(
        "{} sslmode=require",
        pg.connection_string(pg.superuser(), pg.superuser_password(), "postgres")
    );
    let used_tls = psql_via(
        &pg,
        &conninfo,
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    )
    .unwrap();
    assert_eq!(used_tls, "t");
}

#[test]
fn postgres_drop_cleans_up() {
    let pg = start_pg(PgOptions::new());
    let (root, port) = (pg.root_dir().to_owned(), pg.port());
    assert!(pg.data_dir().join("PG_VERSION").exists());
    let started = Instant::now();
    drop(pg);
    eprintln!("PgServer drop took {:?}", started.elapsed());
    assert_gone(&root, port);
}

#[test]
fn postgres_cleanup_on_panic() {
    let seen = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let pg = start_pg(PgOptions::new());
        *seen.lock().unwrap() = Some((pg.root_dir().to_owned(), pg.port()));
        panic!("test failure while the server runs");
    }));
    assert!(result.is_err());
    let (root, port) = seen.lock().unwrap().take().unwrap();
    assert_gone(&root, port);
}

#[test]
fn postgres_parallel_starts() {
    let started = Instant::now();
    let servers: Vec<PgServer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(PgServer::start)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    eprintln!("4 parallel PgServer starts took {:?}", started.elapsed());
    let mut ports: Vec<u16> = servers.iter().map(PgServer::port).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4);
    for pg in &servers {
        assert_eq!(pg.psql_admin("select 1").unwrap(), "1");
    }
}

#[test]
fn postgres_scripts_and_errors() {
    let pg = start_pg(PgOptions::new());
    let script = "create database scratch;\n\\c scratch\n\
                  create table t (x int);\ninsert into t values (1), (2);\n\
                  select current_database(), count(*) from t;";
    assert_eq!(pg.psql_admin(script).unwrap(), "scratch|2");
    assert_eq!(pg.psql_db("scratch", "select sum(x) from t").unwrap(), "3");
    let err = pg.psql_admin("select * from no_such_table").unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

/// Runs `select current_user()` with the mariadb CLI over TCP.
fn mariadb_tcp_login(db: &MariaDbServer, user: &str, password: &str) -> Result<String, String> {
    let output = Command::new(db.client_binary())
        .arg("--no-defaults")
        .args(["--protocol=TCP", "--host=127.0.0.1"])
        .arg(format!("--port={}", db.port()))
        .arg(format!("--user={user}"))
        .arg(format!("--password={password}"))
        .args([
            "--batch",
            "--skip-column-names",
            "-e",
            "select current_user()",
        ])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn mariadb_login_and_cleanup() {
    let db = start_mariadb();
    assert!(db.port() != 3306);
    assert_eq!(db.admin_sql("select 1").unwrap(), "1");
    let anonymous = db
        .admin_sql("select count(*) from mysql.user where user = ''")
        .unwrap();
    assert_eq!(anonymous, "0");

    let password = r"carol's \pw";
    db.create_user("carol", password).unwrap();
    db.create_database("carol_db", "carol").unwrap();
    assert_eq!(
        mariadb_tcp_login(&db, "carol", password).unwrap(),
        "carol@%"
    );
    let err = mariadb_tcp_login(&db, "carol", "wrong").unwrap_err();
    assert!(err.contains("Access denied"), "{err}");

    // root needs its password over TCP too.
    assert!(mariadb_tcp_login(&db, "root", db.root_password()).is_ok());
    assert!(mariadb_tcp_login(&db, "root", "").is_err());

    let (root, port) = (db.root_dir().to_owned(), db.port());
    let started = Instant::now();
    drop(db);
    eprintln!("MariaDbServer drop took {:?}", started.elapsed());
    assert_gone(&root, port);
}

#[test]
fn mariadb_sql_errors_are_reported() {
    let db = start_mariadb();
    let err = db.admin_sql("select * from no_such_table").unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
}
