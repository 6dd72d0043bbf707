//! Real MySQL clients through airlock to a throwaway MariaDB: TLS on the
//! client leg, caching_sha2_password (fast and full path), COM_CHANGE_USER,
//! executable comments and sql_mode bypass attempts, the mariadb CLI (`-e`,
//! stdin, `source`), PyMySQL and sysbench. Clients that are not installed
//! are skipped with a printed reason.

use crate::common::mysql as mysql_env;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mysql_async::prelude::*;
use mysql_env::{MyEnv, Raw, AGENT, AGENT_PW, DB};

const SHA2_USER: &str = "shabot";
const SHA2_PW: &str = "sha2-only-pw";
const READER: &str = "reader";
const READER_PW: &str = "reader-pw";

const RULES: &str = r#"
[[policy]]
id = "reader"
applies_to = { identities = ["reader"] }
read_only = true

[[policy]]
id = "agents"
applies_to = { identities = ["agent", "shabot"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
# PyMySQL sends SET NAMES on connect, and airlock's own sql_mode checks are
# what these tests exercise.
allow_builtin = ["builtin.lexer-setting"]
deny_tables = ["*.hidden"]
"#;

const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v varchar(50), n int NULL);
INSERT INTO t VALUES (1, 'one', 10), (2, 'two', NULL), (3, 'three', 30);
CREATE TABLE hidden (secret varchar(50));";

/// Identities beyond the kit's `agent` (native hash only): one with only a
/// caching_sha2 verifier, one with both (as `airlock passwd --mysql`).
fn identities() -> String {
    let scram = airlock_protocol::pg::scram::make_verifier("unused");
    let sha2_only = airlock_protocol::mysql::auth::secret_string(SHA2_PW.as_bytes())
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    let both = airlock_protocol::mysql::auth::secret_string(READER_PW.as_bytes());
    format!(
        r#"
[identities.{SHA2_USER}]
secret = "{scram}"
mysql_secret = "{sha2_only}"
targets = ["{DB}"]

[identities.{READER}]
secret = "{scram}"
mysql_secret = "{both}"
targets = ["{DB}"]
"#
    )
}

/// A CA and a server certificate for 127.0.0.1/localhost, as PEM files.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = ["ca.pem", "server.pem", "server.key"].map(|n| dir.join(n));
    std::fs::write(&paths[0], ca.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    let [a, b, c] = paths;
    (a, b, c)
}

/// MariaDB plus airlock with `[tls]` (and `tls_extra` in it) and the extra
/// identities; returns the env and the CA path.
async fn tls_env(tls_extra: &str, target_toml: &str) -> (MyEnv, PathBuf, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path());
    let extra = format!(
        "{}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n{tls_extra}\n",
        identities(),
        cert.display(),
        key.display()
    );
    let env = MyEnv::start_full(Some(RULES), target_toml, "", &extra).await;
    env.admin(SETUP);
    (env, ca, certs)
}

async fn plain_env() -> MyEnv {
    let env = MyEnv::start_full(Some(RULES), "", "", &identities()).await;
    env.admin(SETUP);
    env
}

fn tls_opts(env: &MyEnv, ca: &Path, user: &str, password: &str) -> mysql_async::Opts {
    let ssl = mysql_async::SslOpts::default().with_root_certs(vec![ca.to_path_buf().into()]);
    mysql_async::OptsBuilder::from_opts(env.opts(user, password))
        .ssl_opts(Some(ssl))
        .into()
}

fn server_error(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The mariadb CLI through airlock with arbitrary arguments and stdin.
fn cli(env: &MyEnv, user: &str, password: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env.db.client_binary())
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
        .arg(env.port.to_string())
        .args(["-u", user])
        .arg(format!("-p{password}"))
        .args(["--batch", "--skip-column-names"])
        .args(args)
        .arg(DB)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mariadb client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/mysql")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_caching_sha2_logins() {
    let (mut env, ca, _certs) = tls_env("", "").await;

    // mysql_async over TLS (it fails if airlock does not offer CLIENT_SSL).
    let mut c = mysql_async::Conn::new(tls_opts(&env, &ca, AGENT, AGENT_PW))
        .await
        .expect("TLS login");
    let rows: Vec<(i32, String)> = c.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_eq!(rows.len(), 3);
    let stmt = c.prep("SELECT v FROM t WHERE id = ?").await.unwrap();
    let v: Option<String> = c.exec_first(&stmt, (2,)).await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));
    let e = c.query_drop("DELETE FROM t").await.unwrap_err();
    assert!(server_error(e).1.starts_with("airlock:"));
    c.disconnect().await.unwrap();

    // Plain connections still work when TLS is offered but not required.
    env.agent().await.disconnect().await.unwrap();

    // caching_sha2_password fast path: an identity with only a sha2
    // verifier gets switched to it, with and without TLS.
    for opts in [
        env.opts(SHA2_USER, SHA2_PW),
        tls_opts(&env, &ca, SHA2_USER, SHA2_PW),
    ] {
        let mut c = mysql_async::Conn::new(opts).await.expect("sha2 fast path");
        let one: Option<i32> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        c.disconnect().await.unwrap();
    }
    // A wrong password needs the full path: over TLS it is checked and
    // refused like any failed login ...
    let e = mysql_async::Conn::new(tls_opts(&env, &ca, SHA2_USER, "wrong"))
        .await
        .unwrap_err();
    let (code, msg) = server_error(e);
    assert_eq!(code, 1045, "{msg}");
    assert!(msg.starts_with("Access denied for user 'shabot'"), "{msg}");
    // ... and without TLS (mysql_async asks for the RSA public key) it is
    // refused with a message that says to use TLS.
    let e = mysql_async::Conn::new(env.opts(SHA2_USER, "wrong"))
        .await
        .unwrap_err();
    let (code, msg) = server_error(e);
    assert_eq!(code, 1045);
    assert!(msg.contains("only offered over TLS"), "{msg}");
    // Unknown identities fail the same way.
    let e = mysql_async::Conn::new(env.opts("nobody", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(server_error(e).0, 1045);

    // The mariadb CLI starting with caching_sha2_password: the full path
    // over TLS for a native-only identity (the password itself is checked
    // against the native hash) ...
    let sha2 = "--default-auth=caching_sha2_password";
    let ca_arg = format!("--ssl-ca={}", ca.display());
    let out = cli(
        &env,
        AGENT,
        AGENT_PW,
        &[sha2, "--ssl", &ca_arg, "-e", "SELECT 7"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "7");
    // ... without TLS the native-only identity is switched to native ...
    let out = cli(
        &env,
        AGENT,
        AGENT_PW,
        &[sha2, "--skip-ssl", "-e", "SELECT 8"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "8");
    // ... and an identity with a sha2 verifier takes the fast path.
    let out = cli(
        &env,
        READER,
        READER_PW,
        &[sha2, "--skip-ssl", "-e", "SELECT 9"],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "9");
    let out = cli(
        &env,
        READER,
        "nope",
        &[sha2, "--ssl", &ca_arg, "-e", "SELECT 1"],
        "",
    );
    assert!(
        text(&out.stderr).contains("ERROR 1045 (28000)"),
        "{}",
        text(&out.stderr)
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_and_upstream_tls_without_server_support() {
    // The test kit's MariaDB has no TLS: a target that requires it fails
    // cleanly at connect.
    let (mut env, ca, _certs) = tls_env("require = true", "tls = \"require\"").await;
    let e = env.opts(AGENT, AGENT_PW).clone();
    let (code, msg) = server_error(mysql_async::Conn::new(e).await.unwrap_err());
    assert_eq!(code, 1045);
    assert!(msg.contains("requires TLS"), "{msg}");
    let e = mysql_async::Conn::new(tls_opts(&env, &ca, AGENT, AGENT_PW))
        .await
        .unwrap_err();
    let (code, msg) = server_error(e);
    assert_eq!(code, 1105, "{msg}");
    assert!(
        msg.contains("could not connect to the upstream server"),
        "{msg}"
    );
    assert!(!msg.contains(mysql_env::UPSTREAM_PW));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_switches_identity_and_policy() {
    let mut env = plain_env().await;
    let mut c = env.agent().await;
    c.query_drop("INSERT INTO t VALUES (4, 'four', 40)")
        .await
        .unwrap();
    let _stmt = c.prep("SELECT v FROM t WHERE id = ?").await.unwrap();

    // Now the read-only reader: its policy applies.
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(READER.into()))
            .with_pass(Some(READER_PW.into())),
    )
    .await
    .expect("change_user to reader");
    let e = c
        .query_drop("INSERT INTO t VALUES (5, 'five', 50)")
        .await
        .unwrap_err();
    let (_, msg) = server_error(e);
    assert!(msg.contains("airlock:") && msg.contains("reader"), "{msg}");
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(4));

    // Back to the agent (sha2-only identity: switched to caching_sha2).
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some(SHA2_USER.into()))
            .with_pass(Some(SHA2_PW.into())),
    )
    .await
    .expect("change_user to the sha2 identity");
    c.query_drop("INSERT INTO t VALUES (5, 'five', 50)")
        .await
        .unwrap();
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "5");

    // A wrong password ends the connection with ERR 1045.
    let e = c
        .change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(AGENT.into()))
                .with_pass(Some("wrong".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(server_error(e).0, 1045);
    assert!(c.query_drop("SELECT 1").await.is_err());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_comments_multi_statements_and_sql_mode() {
    let mut env = plain_env().await;
    let mut c = env.agent().await;

    // Executable comments run as the server runs them.
    let two: Option<i32> = c.query_first("SELECT 1 /*!40101 + 1 */").await.unwrap();
    assert_eq!(two, Some(2));
    let two: Option<i32> = c.query_first("SELECT 1 /*M!100000 + 1 */").await.unwrap();
    assert_eq!(two, Some(2));
    let one: Option<i32> = c.query_first("SELECT 1 /*M!999999 + 1 */").await.unwrap();
    assert_eq!(one, Some(1));
    let s: Option<String> = c.query_first("SELECT '/*! not code */'").await.unwrap();
    assert_eq!(s.as_deref(), Some("/*! not code */"));
    // A WHERE in a comment the server skips does not count.
    let refused = [
        "DELETE FROM t /*M!999999 WHERE id = 1 */",
        "DELETE FROM t /*!110000 WHERE id = 1 */",
        "SELECT 1 /*!, LOAD_FILE('/etc/passwd') */",
        "SELECT 1 /*M!, SLEEP(1) */",
        "/*!DELETE FROM t*/",
        "SELECT 1 /*!50708 , 2 */",
        "SELECT 1 /*! , 2",
        "SELECT 1 /*! /* nested */ , 2 */",
        // Every statement of a multi-statement text is judged.
        "SELECT 1; DELETE FROM t",
        "SELECT 1 /*!; DELETE FROM t */",
        // sql_mode changes that alter lexing, and forms airlock cannot check.
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'",
        "SET @@session.sql_mode := 'ANSI'",
        "SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
        "SET sql_mode = 'ANSI_' 'QUOTES'",
        "/*!40101 SET sql_mode = 'ANSI_QUOTES' */",
        "SET STATEMENT sql_mode = 'ANSI_QUOTES' FOR SELECT \"v\" FROM t",
        "PREPARE s FROM 'SET sql_mode = ''ANSI_QUOTES'''",
        "SET GLOBAL sql_mode = ''",
    ];
    for sql in refused {
        let e = c.query_drop(sql).await.expect_err(sql);
        let (_, msg) = server_error(e);
        // Every refusal names its rule, as the blocked-statement log does.
        assert!(msg.starts_with("airlock: blocked by rule "), "{sql}: {msg}");
        let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(n, Some(3), "after {sql}");
    }
    let e = c
        .prep("DELETE FROM t /*!110000 WHERE id = 1 */")
        .await
        .unwrap_err();
    assert!(server_error(e).1.starts_with("airlock:"));
    let mode: Option<String> = c.query_first("SELECT @@SESSION.sql_mode").await.unwrap();
    assert!(!mode.unwrap_or_default().contains("ANSI_QUOTES"));

    // Harmless sql_mode changes pass; a DELETE with a WHERE in an executed
    // comment runs.
    c.query_drop("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
        .await
        .unwrap();
    c.query_drop("DELETE FROM t /*!40000 WHERE id = 3 */")
        .await
        .unwrap();
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "2");
    let rows: Vec<i32> = c.query("SELECT 1; SELECT 2").await.unwrap();
    assert_eq!(rows, vec![1]);
    c.disconnect().await.unwrap();

    // A server whose sessions start with ANSI_QUOTES is refused at login.
    env.admin("SET GLOBAL sql_mode = 'ANSI_QUOTES'");
    let e = mysql_async::Conn::new(env.opts(AGENT, AGENT_PW))
        .await
        .unwrap_err();
    let (_, msg) = server_error(e);
    assert!(
        msg.contains("sql_mode") && msg.contains("ANSI_QUOTES"),
        "{msg}"
    );
    env.admin("SET GLOBAL sql_mode = DEFAULT");
    env.agent().await.disconnect().await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_commands_and_scripts() {
    let mut env = plain_env().await;
    let script = std::fs::read_to_string(testdata("script.sql")).unwrap();
    // Piped on stdin.
    let out = cli(&env, AGENT, AGENT_PW, &[], &script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "one\n3\n42\nten");
    env.admin("DELETE FROM t WHERE id = 10");
    // With `source`.
    let source = format!("source {}", testdata("script.sql").display());
    let out = cli(&env, AGENT, AGENT_PW, &["-e", &source], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "one\n3\n42\nten");
    // COM_INIT_DB to another database is refused; the target's is fine.
    let out = cli(&env, AGENT, AGENT_PW, &["-e", "use mysql"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("airlock:"),
        "{}",
        text(&out.stderr)
    );
    // Local files: the CLI may ask, airlock never lets the server see it.
    let out = cli(
        &env,
        AGENT,
        AGENT_PW,
        &[
            "--local-infile=1",
            "-e",
            "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE t",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("airlock:"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "4");
    // A client character set whose characters can hide a backslash.
    let out = cli(
        &env,
        AGENT,
        AGENT_PW,
        &["--default-character-set=gbk", "-e", "SELECT 1"],
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("character set"),
        "{}",
        text(&out.stderr)
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_through_airlock() {
    let probe = Command::new("python3")
        .args(["-c", "import pymysql"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "skipped: PyMySQL is not importable: {}",
                text(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: python3 not found: {e}");
            return;
        }
    }
    let mut env = plain_env().await;
    let port = env.port.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(testdata("pymysql_check.py"))
            .args([&port, AGENT, AGENT_PW, SHA2_USER, SHA2_PW])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "ok");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_through_airlock() {
    if Command::new("sysbench").arg("--version").output().is_err() {
        println!("skipped: sysbench is not installed");
        return;
    }
    let mut env = plain_env().await;
    let common = |port: u16, user: &str, pw: &str| -> Vec<String> {
        vec![
            "--db-driver=mysql".into(),
            "--mysql-host=127.0.0.1".into(),
            format!("--mysql-port={port}"),
            format!("--mysql-user={user}"),
            format!("--mysql-password={pw}"),
            format!("--mysql-db={DB}"),
            "--mysql-ssl=off".into(),
            "--tables=1".into(),
            "--table-size=1000".into(),
        ]
    };
    let via = common(env.port, AGENT, AGENT_PW);
    // Tables made and filled through airlock (CREATE TABLE with MySQL's
    // executable comments, multi-row INSERTs, CREATE INDEX).
    let out = Command::new("sysbench")
        .arg("oltp_read_write")
        .args(&via)
        .arg("prepare")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    for test in ["oltp_read_only", "oltp_point_select", "oltp_read_write"] {
        for ps in ["auto", "disable"] {
            let via = via.clone();
            // One writer: two would deadlock now and then, which sysbench
            // counts among the errors it ignores.
            let threads = match test {
                "oltp_read_write" => "--threads=1",
                _ => "--threads=2",
            };
            let out = tokio::task::spawn_blocking(move || {
                Command::new("sysbench")
                    .arg(test)
                    .args(&via)
                    .args(["--time=3", threads, &format!("--db-ps-mode={ps}")])
                    .arg("run")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stdout = text(&out.stdout);
            assert!(
                out.status.success(),
                "{test} {ps}: {stdout}\n{}",
                text(&out.stderr)
            );
            let errors = stdout
                .lines()
                .find(|l| l.trim_start().starts_with("ignored errors:"))
                .unwrap_or_else(|| panic!("{test} {ps}: no error count\n{stdout}"));
            assert_eq!(
                errors.split_whitespace().nth(2),
                Some("0"),
                "{test} {ps}: {errors}"
            );
            let queries = stdout
                .lines()
                .find(|l| l.trim_start().starts_with("total:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            assert!(queries > 0, "{test} {ps}: no queries ran\n{stdout}");
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_and_caching_sha2_through_a_second_airlock() {
    // An outer airlock whose target is the inner airlock's MySQL listener:
    // the outer upstream leg runs TLS (verify-full against the test CA) and
    // logs in as the inner sha2-only identity (switched to
    // caching_sha2_password, fast path).
    // The inner airlock requires TLS, so the login proves the outer one
    // used it.
    let (mut inner, ca, certs) = tls_env("require = true", "").await;
    let pw = certs.path().join("outer-upstream.pw");
    std::fs::write(&pw, format!("{SHA2_PW}\n")).unwrap();
    let rules = certs.path().join("outer-rules.toml");
    std::fs::write(
        &rules,
        "[[policy]]\nid = \"outer\"\nallow_statements = [\"read\", \"write\", \"session\", \"transaction\"]\n",
    )
    .unwrap();
    let text = format!(
        r#"
[listen]
mysql = "127.0.0.1:0"

[limits]
connect_timeout = "5s"
shutdown_timeout = "5s"

[targets.{DB}]
protocol = "mysql"
host = "127.0.0.1"
port = {port}
database = "{DB}"
user = "{SHA2_USER}"
password_file = "{pw}"
tls = "verify-full"
ca = "{ca}"

[identities.{AGENT}]
secret = "{scram}"
mysql_secret = "{both}"
targets = ["{DB}"]

[policy]
rules = "{rules}"
"#,
        port = inner.port,
        pw = pw.display(),
        ca = ca.display(),
        rules = rules.display(),
        scram = airlock_protocol::pg::scram::make_verifier(AGENT_PW),
        both = airlock_protocol::mysql::auth::secret_string(AGENT_PW.as_bytes()),
    );
    let path = certs.path().join("outer.toml");
    std::fs::write(&path, &text).unwrap();
    let config = airlock::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let outer = airlock::server::start(config).await.unwrap();
    let port = outer.mysql_addr.expect("outer mysql listener").port();
    let opts = mysql_async::OptsBuilder::from_opts(inner.opts(AGENT, AGENT_PW)).tcp_port(port);
    let mut c = mysql_async::Conn::new(opts)
        .await
        .expect("through both airlocks");
    let rows: Vec<String> = c.query("SELECT v FROM t ORDER BY id").await.unwrap();
    assert_eq!(rows, vec!["one", "two", "three"]);
    // Refusals still come back as ERR packets.
    let e = c.query_drop("DELETE FROM t").await.unwrap_err();
    assert!(server_error(e).1.starts_with("airlock:"));
    c.disconnect().await.unwrap();
    outer.shutdown().await;
    inner.stop().await;
}

/// A client leg that holds back what is written until the next write or
/// flush, so that the SSLRequest and the ClientHello leave in one segment.
struct Coalesce {
    tcp: tokio::net::TcpStream,
    out: Vec<u8>,
}

impl Coalesce {
    fn drain(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while !self.out.is_empty() {
            match tokio::io::AsyncWrite::poll_write(
                std::pin::Pin::new(&mut self.tcp),
                cx,
                &self.out,
            ) {
                Poll::Ready(Ok(n)) => drop(self.out.drain(..n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncRead for Coalesce {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut self.tcp), cx, buf)
    }
}

impl tokio::io::AsyncWrite for Coalesce {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.out.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.tcp), cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        tokio::io::AsyncWrite::poll_shutdown(std::pin::Pin::new(&mut self.tcp), cx)
    }
}

/// MySQL clients start the TLS handshake right after the SSLRequest, with
/// no reply to wait for; when both arrive together (one write, or a loaded
/// server reading late) airlock must still hand the ClientHello to rustls
/// rather than refuse it as data sent before the handshake (with a plaintext
/// ERR the client then reads as a broken TLS record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_and_client_hello_in_one_segment() {
    use airlock_protocol::mysql::{auth, caps, frame, handshake};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut env, ca, _certs) = tls_env("", "").await;
    let mut raw = Raw {
        tcp: tokio::net::TcpStream::connect(("127.0.0.1", env.port))
            .await
            .unwrap(),
        buf: Vec::new(),
    };
    let (_, greeting) = raw.read().await;
    let g = handshake::Greeting::parse(&greeting).unwrap();
    assert_ne!(g.capabilities & caps::SSL, 0);
    let capabilities = caps::PROTOCOL_41
        | caps::SECURE_CONNECTION
        | caps::PLUGIN_AUTH
        | caps::CONNECT_WITH_DB
        | caps::MULTI_RESULTS
        | caps::SSL;
    let mut payload = bytes::BytesMut::new();
    handshake::Response::encode_ssl_request(capabilities, 1 << 24, 45, &mut payload);
    let mut out = bytes::BytesMut::new();
    frame::write_packet(&mut out, 1, &payload);
    let io = Coalesce {
        tcp: raw.tcp,
        out: out.to_vec(),
    };
    let config = airlock::tls::client_config(
        airlock::config::UpstreamTlsMode::VerifyFull,
        Some(ca.as_path()),
    )
    .unwrap()
    .unwrap();
    let name = airlock::tls::server_name("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, io)
        .await
        .expect("TLS handshake after an SSLRequest sent with the ClientHello");
    let r = handshake::Response {
        capabilities,
        max_packet: 1 << 24,
        charset: 45,
        user: AGENT.as_bytes().to_vec(),
        auth_response: auth::native_token(&g.scramble, AGENT_PW.as_bytes()),
        database: Some(DB.as_bytes().to_vec()),
        auth_plugin: Some(auth::NATIVE.into()),
        attributes: Vec::new(),
    };
    let mut payload = bytes::BytesMut::new();
    r.encode(&mut payload);
    let mut out = bytes::BytesMut::new();
    frame::write_packet(&mut out, 2, &payload);
    tls.write_all(&out).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let ok = loop {
        if let Some(l) = frame::locate(&buf, 1 << 20).unwrap() {
            break frame::payload(&buf, &l).into_owned();
        }
        let mut chunk = [0u8; 4096];
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(head(&ok), Some(0), "login over TLS: {ok:?}");
    env.stop().await;
}

fn head(p: &[u8]) -> Option<u8> {
    p.first().copied()
}

fn is_err_with(p: &[u8], needle: &str) -> bool {
    airlock_protocol::mysql::packets::parse_err(p).is_some_and(|(_, _, m)| m.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_the_wire() {
    use airlock_protocol::mysql::com;
    let mut env = plain_env().await;
    let mut c = Raw::login(env.port, AGENT, AGENT_PW).await;

    assert_eq!(head(&c.cmd(&[com::PING]).await), Some(0));
    let stats = c.cmd(&[com::STATISTICS]).await;
    assert!(
        String::from_utf8_lossy(&stats).contains("Uptime"),
        "{stats:?}"
    );

    // COM_FIELD_LIST is judged as a read of the table.
    let first = c.cmd(b"\x04t\0").await;
    let defs = c.until_eof(first).await;
    assert_eq!(defs.len(), 4, "three columns and EOF");
    let denied = c.cmd(b"\x04hidden\0").await;
    assert!(is_err_with(&denied, "airlock:"), "{denied:?}");

    // COM_INIT_DB: the target's database only.
    assert_eq!(head(&c.cmd(b"\x02app").await), Some(0));
    assert!(is_err_with(&c.cmd(b"\x02mysql").await, "airlock:"));

    // COM_SET_OPTION may turn multi-statements off, never on.
    assert!(is_err_with(
        &c.cmd(&[com::SET_OPTION, 0, 0]).await,
        "airlock:"
    ));
    let off = c.cmd(&[com::SET_OPTION, 1, 0]).await;
    assert!(matches!(head(&off), Some(0) | Some(0xfe)), "{off:?}");

    // Replication and administration commands are refused.
    for cmd in [
        com::BINLOG_DUMP,
        com::REGISTER_SLAVE,
        com::SHUTDOWN,
        com::PROCESS_KILL,
    ] {
        assert!(
            is_err_with(&c.cmd(&[cmd, 0, 0, 0, 0]).await, "airlock:"),
            "{cmd}"
        );
    }

    // The session is still usable; COM_RESET_CONNECTION too.
    assert_eq!(head(&c.cmd(&[com::RESET_CONNECTION]).await), Some(0));
    let first = c.cmd(b"\x03SELECT 41 + 1").await;
    let reply = c.until_eof(first).await;
    let next = c.read().await.1;
    let rows = c.until_eof(next).await;
    assert_eq!(reply.len(), 3, "count, column, EOF");
    assert_eq!(rows.len(), 2, "row, EOF");
    assert_eq!(&rows[0][1..], b"42");
    c.send(0, &[com::QUIT]).await;
    env.stop().await;
}

/// The login collation sets the character set results come back in.
/// Under `binary` (63) the value detectors saw no text, and under utf16 no
/// column name matched a mask (red-team finding): only utf8mb4, utf8mb3,
/// latin1 and ascii collations may log in. The same goes for `SET NAMES`
/// and `character_set_results` (see the policy corpus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_in_a_result_charset_masking_cannot_read_are_refused() {
    let mut env = plain_env().await;
    for collation in [63u8, 54, 35, 60] {
        let (_, reply) = Raw::login_as(env.port, AGENT, AGENT_PW, collation).await;
        assert!(
            is_err_with(&reply, "airlock: client character set"),
            "collation {collation}: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    for collation in [45u8, 224, 8, 33] {
        let (mut c, reply) = Raw::login_as(env.port, AGENT, AGENT_PW, collation).await;
        assert_eq!(head(&reply), Some(0), "collation {collation}: {reply:?}");
        assert_eq!(
            head(&c.cmd(&[airlock_protocol::mysql::com::PING]).await),
            Some(0)
        );
    }
    env.stop().await;
}
