//! Guardrails enforced through airlock against a real MariaDB, over the
//! text protocol (COM_QUERY) and server-side prepared statements
//! (COM_STMT_PREPARE, mysql_async's binary protocol). Every refused
//! statement is checked not to have run (through a direct connection), and
//! the same session is checked to keep working. Mirrors pg_guardrails.rs.

use crate::common::mysql as mysql_env;

use mysql_async::prelude::*;
use mysql_env::MyEnv;

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]
deny_tables = ["app.secrets", "mysql.*", "information_schema.user_privileges"]
deny_columns = ["app.customers.ssn"]
"#;

const SETUP: &str = "CREATE TABLE t (id int PRIMARY KEY, v varchar(50));
INSERT INTO t VALUES (1, 'one'), (2, 'two'), (3, 'three');
CREATE TABLE secrets (id int, s varchar(50));
INSERT INTO secrets VALUES (1, 'launch code');
CREATE TABLE customers (id int, name varchar(50), ssn varchar(20));
INSERT INTO customers VALUES (1, 'Alice', '123-45-6789');";

async fn env() -> MyEnv {
    let env = MyEnv::start(Some(RULES)).await;
    env.admin(SETUP);
    env
}

/// The airlock refusal in `e` (panics on anything else).
fn refused(e: mysql_async::Error, sql: &str) -> String {
    match e {
        mysql_async::Error::Server(s) => {
            assert!(
                s.message.starts_with("airlock:"),
                "{sql}: {} {}",
                s.code,
                s.message
            );
            s.message
        }
        other => panic!("{sql}: expected an airlock refusal, got {other:?}"),
    }
}

async fn still_usable(c: &mut mysql_async::Conn) {
    let r: Option<i32> = c.query_first("SELECT 40 + 2").await.unwrap();
    assert_eq!(r, Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_statements_never_run_text_and_prepared() {
    let mut env = env().await;
    let mut c = env.agent().await;
    for sql in [
        "DELETE FROM t",
        "DELETE FROM t WHERE 1 = 1",
        "UPDATE t SET v = 'x'",
        "UPDATE t SET v = 'x' WHERE id = 1 OR 1",
        "delete from T",
        "DELETE /* c */ FROM `t`",
        "TRUNCATE t",
        // Upserts and REPLACE that rewrite every row they read.
        "INSERT INTO t (id, v) SELECT id, 'x' FROM t ON DUPLICATE KEY UPDATE v = 'x'",
        "REPLACE INTO t (id, v) SELECT id, 'x' FROM t",
        "replace into T select id, 'x' from app.t where 1",
        "INSERT INTO t SELECT id, 'x' FROM (SELECT id FROM t) d ON DUPLICATE KEY UPDATE v = VALUES(v)",
    ] {
        let msg = refused(c.query_drop(sql).await.unwrap_err(), sql);
        assert!(msg.contains("builtin.unbounded-write"), "{sql}: {msg}");
        let msg = refused(c.prep(sql).await.unwrap_err(), sql);
        assert!(msg.contains("builtin.unbounded-write"), "{sql}: {msg}");
        still_usable(&mut c).await;
    }
    assert_eq!(env.admin("SELECT COUNT(*) FROM t WHERE v <> 'x'"), "3");
    // A bounded write is fine, both ways.
    c.exec_drop("DELETE FROM t WHERE id = ?", (3,))
        .await
        .unwrap();
    c.query_drop("UPDATE t SET v = 'uno' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "2");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_tables_and_columns_every_way_round() {
    let mut env = env().await;
    let mut c = env.agent().await;
    for sql in [
        "SELECT * FROM secrets",
        "select s from SECRETS",
        "SELECT s FROM app.secrets",
        "SELECT s FROM `secrets`",
        "SELECT s FROM `app`.`secrets`",
        "SELECT 1 FROM t WHERE id IN (SELECT id FROM secrets)",
        "WITH x AS (SELECT * FROM secrets) SELECT * FROM x",
        "SELECT v FROM t UNION SELECT s FROM secrets",
        "SELECT /* hi */ s FROM /* there */ secrets",
        "EXPLAIN SELECT * FROM secrets",
        "INSERT INTO t SELECT id + 100, s FROM secrets",
        "SELECT * FROM mysql.user",
        "SELECT * FROM information_schema.user_privileges",
        "SELECT ssn FROM customers",
        "SELECT `SSN` FROM customers",
        "SELECT name FROM customers WHERE ssn LIKE '1%'",
        "SELECT c.ssn FROM customers c",
        "SELECT customers.* FROM customers",
        "SELECT * FROM customers",
        "SELECT 1; SELECT * FROM secrets",
        "SELECT 1 /*! UNION SELECT s FROM secrets */",
        // DDL that would move data out from under the rules.
        "RENAME TABLE secrets TO notsecret",
        "RENAME TABLE t TO t2, secrets TO notsecret",
        "ALTER TABLE secrets RENAME TO notsecret",
        "RENAME TABLE customers TO c2",
        "ALTER TABLE customers RENAME TO c2",
        "ALTER TABLE customers RENAME COLUMN ssn TO x",
        "ALTER TABLE `customers` CHANGE `SSN` x varchar(20)",
        "ALTER TABLE customers ADD COLUMN e2 varchar(99) AS (ssn) VIRTUAL",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
        if !sql.contains(';') {
            refused(c.prep(sql).await.unwrap_err(), sql);
        }
        still_usable(&mut c).await;
    }
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "3");
    assert_eq!(
        env.admin("SELECT GROUP_CONCAT(table_name ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'app'"),
        "customers,secrets,t"
    );
    assert_eq!(
        env.admin("SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'customers'"),
        "id,name,ssn"
    );
    let name: Option<String> = c.query_first("SELECT name FROM customers").await.unwrap();
    assert_eq!(name.as_deref(), Some("Alice"));
    env.stop().await;
}

/// A policy that denies columns, with no masking at all, still keeps the
/// server's errors from quoting values: a value computed from data the
/// agent may not read would otherwise come back in the message. The code
/// and wording stay; the quoted value goes. Errors that quote only the
/// statement's own text (a syntax error, an unknown column) keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_lose_quoted_values_where_columns_are_denied() {
    let mut env = env().await;
    let mut c = env.agent().await;
    for sql in [
        "UPDATE customers SET id = name WHERE id = 1",
        "UPDATE customers SET id = ? WHERE id = 1",
    ] {
        let e = if sql.contains('?') {
            c.exec_drop(sql, ("Alice",)).await.unwrap_err()
        } else {
            c.query_drop(sql).await.unwrap_err()
        };
        let mysql_async::Error::Server(s) = e else {
            panic!("{sql}: expected a server error, got {e:?}");
        };
        assert_eq!(s.code, 1366, "{sql}: {}", s.message);
        assert!(
            s.message.starts_with("Incorrect integer value"),
            "{sql}: {}",
            s.message
        );
        assert!(!s.message.contains("Alice"), "{sql}: {}", s.message);
        still_usable(&mut c).await;
    }
    let e = c
        .query_drop("SELECT nosuchcolumn FROM t")
        .await
        .unwrap_err();
    let mysql_async::Error::Server(s) = e else {
        panic!("expected a server error, got {e:?}");
    };
    assert_eq!(s.code, 1054);
    assert!(s.message.contains("nosuchcolumn"), "{}", s.message);
    assert_eq!(
        env.admin("SELECT id FROM customers WHERE name = 'Alice'"),
        "1"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_query_is_all_or_nothing() {
    let mut env = env().await;
    let mut c = env.agent().await;
    let e = c
        .query_drop("INSERT INTO t VALUES (9, 'nine'); DROP TABLE secrets")
        .await
        .unwrap_err();
    refused(e, "multi");
    let e = c
        .query_drop("INSERT INTO t VALUES (9, 'nine'); DELETE FROM t")
        .await
        .unwrap_err();
    refused(e, "multi");
    assert_eq!(env.admin("SELECT COUNT(*) FROM t WHERE id = 9"), "0");
    assert_eq!(env.admin("SELECT COUNT(*) FROM secrets"), "1");
    still_usable(&mut c).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_blocked_statements() {
    let mut env = env().await;
    let mut c = env.agent().await;
    let dump = env.dir.path().join("dump.txt");
    let outfile = format!("SELECT * FROM t INTO OUTFILE '{}'", dump.display());
    let dumpfile = format!("SELECT v FROM t LIMIT 1 INTO DUMPFILE '{}'", dump.display());
    for (sql, rule) in [
        (outfile.as_str(), "file-access"),
        (dumpfile.as_str(), "file-access"),
        ("LOAD DATA INFILE '/etc/passwd' INTO TABLE t", "file-access"),
        ("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t", ""),
        ("SELECT LOAD_FILE('/etc/passwd')", "dangerous-function"),
        ("SELECT load_file('/etc/hosts') AS x", "dangerous-function"),
        ("SELECT SLEEP(0)", "dangerous-function"),
        ("SELECT BENCHMARK(10, MD5('a'))", "dangerous-function"),
        ("HANDLER t OPEN", ""),
        ("PREPARE s FROM @q", ""),
        ("PREPARE s FROM 'DELETE FROM t'", ""),
        ("SET @q = 'DELETE FROM t'", ""),
        ("EXECUTE s", ""),
        ("SELECT 1 /*! , SLEEP(0) */", ""),
        ("/*!50000 DELETE FROM t */", "unbounded-write"),
        ("/*M!100000 DELETE FROM t */", "unbounded-write"),
        ("SET sql_mode = 'NO_BACKSLASH_ESCAPES'", "sql_mode"),
        ("SET GLOBAL general_log = 1", "admin"),
        ("KILL 1", "admin"),
        ("USE mysql", ""),
        ("SELEC * FROM t", "unparseable"),
        // Ground-truth red team: server commands read as session
        // statements, settings that hide a session from the server's
        // logs, password hashes, other sessions' plans and statements.
        ("RESET MASTER", "admin"),
        ("reset  slave", "admin"),
        ("RESET REPLICA", "admin"),
        ("SET SESSION sql_log_off = 1", "admin"),
        ("SET @@sql_log_bin = 0", "admin"),
        ("SET a = 1, skip_replication = 1", "admin"),
        ("SELECT * FROM mysql.user", "admin"),
        ("SELECT Priv FROM `mysql`.`global_priv`", "admin"),
        ("SHOW EXPLAIN FOR 1", "other-sessions"),
        ("SELECT sys.ps_thread_trx_info(1)", "dangerous-function"),
    ] {
        let e = c.query_drop(sql).await;
        // `SET @q = '...'` is allowed (a literal); what matters is that the
        // PREPARE/EXECUTE around it is not.
        if sql.starts_with("SET @q") {
            e.unwrap();
            continue;
        }
        let Err(e) = e else {
            panic!("{sql}: was not refused");
        };
        let msg = refused(e, sql);
        assert!(msg.contains(rule), "{sql}: {msg}");
        still_usable(&mut c).await;
    }
    assert!(!dump.exists(), "INTO OUTFILE ran");
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "3");
    // Prepared the protocol way, a bad statement is refused just the same.
    for sql in [
        "SELECT LOAD_FILE('/etc/passwd')",
        "HANDLER t OPEN",
        "PREPARE s FROM @q",
        "RESET MASTER",
        "SET SESSION sql_log_off = 1",
    ] {
        refused(c.prep(sql).await.unwrap_err(), sql);
    }
    still_usable(&mut c).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_schema_probes_of_denied_objects() {
    let mut env = env().await;
    let mut c = env.agent().await;
    for sql in [
        "SELECT * FROM mysql.user",
        "SELECT user, authentication_string FROM mysql.global_priv",
        "SELECT * FROM information_schema.user_privileges",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
    }
    // Metadata reads that name no denied object are fine.
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'app'")
        .await
        .unwrap();
    assert_eq!(n, Some(3));
    still_usable(&mut c).await;
    env.stop().await;
}

/// A rule reload reaches statements the session has sent before: the
/// session's memo of allowed statements never answers for the old rules,
/// whether the text repeats exactly or only its numbers change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_reaches_statements_sent_before() {
    let mut env = env().await;
    let mut c = env.agent().await;
    for _ in 0..2 {
        c.query_drop("SELECT * FROM t").await.unwrap();
        c.query_drop("SELECT v FROM t WHERE id = 1").await.unwrap();
        c.query_drop("SELECT v FROM t WHERE id = 2").await.unwrap();
    }
    env.write_rules(&RULES.replace(
        "deny_tables = [\"app.secrets\",",
        "deny_tables = [\"app.t\", \"app.secrets\",",
    ));
    let mut blocked = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if c.query_drop("SELECT * FROM t").await.is_err() {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "new rules not in force");
    for sql in [
        "SELECT * FROM t",
        "SELECT v FROM t WHERE id = 1",
        "SELECT v FROM t WHERE id = 3",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
        refused(c.prep(sql).await.unwrap_err(), sql);
    }
    still_usable(&mut c).await;
    env.stop().await;
}

/// `SELECT … INTO @var` assigns session variables and writes no table: a
/// read-only policy lets it run, over the text protocol and prepared,
/// while denied tables and columns stay denied through it, and INTO
/// anything but a user variable stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_into_user_variables_is_a_read() {
    let mut env = MyEnv::start(Some(&RULES.replace(
        "allow_statements = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]",
        "read_only = true",
    )))
    .await;
    env.admin(SETUP);
    let mut c = env.agent().await;
    c.query_drop("SELECT v INTO @a FROM t WHERE id = 2")
        .await
        .unwrap();
    c.exec_drop("SELECT v, id INTO @b, @n FROM t WHERE id = ?", (3,))
        .await
        .unwrap();
    let got: Option<(String, String, i64)> = c.query_first("SELECT @a, @b, @n").await.unwrap();
    assert_eq!(got, Some(("two".into(), "three".into(), 3)));
    for sql in [
        "SELECT ssn INTO @x FROM customers LIMIT 1",
        "SELECT * INTO @x, @y, @z FROM customers LIMIT 1",
        "SELECT s INTO @x FROM secrets LIMIT 1",
        "SELECT id INTO @x FROM t WHERE id = 1 FOR UPDATE",
        "SELECT 1 INTO x",
        "SELECT 1 INTO `@x`",
        "SELECT 1, 2 INTO @x, y",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
        refused(c.prep(sql).await.unwrap_err(), sql);
        still_usable(&mut c).await;
    }
    let x: Option<Option<String>> = c.query_first("SELECT @x").await.unwrap();
    assert_eq!(x, Some(None), "a refused statement assigned @x");
    env.stop().await;
}

/// `--` followed by a Unicode space (U+00A0, U+0085, U+3000, ...) is a
/// comment to sqlparser but code to MariaDB (minus, minus, a name): the
/// rest of the line would run unjudged. Such text is refused, over the
/// text protocol and prepared, in a multi-statement and inside an
/// executable comment, and nothing of it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_space_after_double_dash_is_refused() {
    let mut env = env().await;
    let mut c = env.agent().await;
    let shapes = [
        "SELECT 1 --\u{a0} AS n, s FROM secrets, (SELECT 1 AS `\u{a0}`) d",
        "SELECT 1 --\u{85} AS n, s FROM secrets, (SELECT 1 AS `\u{85}`) d",
        "SELECT 1 --\u{3000} AS n, ssn FROM customers, (SELECT 1 AS `\u{3000}`) d",
        "SELECT 1 --\u{a0} AS n, SLEEP(1) FROM t, (SELECT 1 AS `\u{a0}`) d",
        "SELECT 1 /*! --\u{a0} AS n, s FROM secrets, (SELECT 1 AS `\u{a0}`) d */",
    ];
    for sql in shapes {
        // (Inside an executable comment the text is judged as MariaDB
        // expands it: refused too, by the rule of what it reads.)
        let msg = refused(c.query_drop(sql).await.unwrap_err(), sql);
        assert!(
            msg.contains("builtin.unparseable") || sql.contains("/*!"),
            "{sql}: {msg}"
        );
        let msg = refused(c.prep(sql).await.unwrap_err(), sql);
        assert!(
            msg.contains("builtin.unparseable") || sql.contains("/*!"),
            "{sql}: {msg}"
        );
        still_usable(&mut c).await;
    }
    for sql in [
        "SELECT 1 --\u{a0} AS n, 2 FROM t, (SELECT 1 AS `\u{a0}`) d; DELETE FROM t",
        "SELECT 1 --\u{a0} AS n, 2 FROM t, (SELECT 1 AS `\u{a0}`) d; DROP TABLE secrets",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
        still_usable(&mut c).await;
    }
    assert_eq!(env.admin("SELECT COUNT(*) FROM t"), "3");
    assert_eq!(env.admin("SELECT COUNT(*) FROM secrets"), "1");
    // Comments with an ASCII space, and the character inside quotes or a
    // comment, are fine.
    let r: Option<String> = c
        .query_first("SELECT v FROM t WHERE id = 1 -- a note with\u{a0}a no-break space")
        .await
        .unwrap();
    assert_eq!(r.as_deref(), Some("one"));
    let r: Option<String> = c.query_first("SELECT '--\u{a0}x'").await.unwrap();
    assert_eq!(r.as_deref(), Some("--\u{a0}x"));
    env.stop().await;
}

/// Red-team finding: under a latin1 client character set MariaDB reads
/// the byte 0xA0 as a space, and airlock (in UTF-8) as part of a
/// character, so `@x\u{e0}FROM secrets` (`à` is C3 A0) was to airlock one
/// user variable and no table, and to the server a read of a denied table.
/// Refused now in sessions whose client character set is (or may be)
/// latin1 or ascii, from the login or from `SET NAMES`, over both
/// protocols; in strings, quoted names and comments the character is
/// fine, and in UTF-8 sessions it is part of a character.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latin1_space_cannot_hide_a_table() {
    let mut env = env().await;
    let mut c = env.agent().await;
    c.query_drop("SET NAMES latin1").await.unwrap();
    for sql in [
        "SELECT s, @x\u{e0}FROM secrets",
        "SELECT ssn, @x\u{e0}FROM customers",
        "SELECT s, @x\u{c2}\u{a0}FROM secrets",
        "SELECT s, @x\u{e0}FROM secrets UNION SELECT 1, 2",
    ] {
        let msg = refused(c.query_drop(sql).await.unwrap_err(), sql);
        assert!(msg.contains("latin1"), "{sql}: {msg}");
        let msg = refused(c.prep(sql).await.unwrap_err(), sql);
        assert!(msg.contains("latin1"), "{sql}: {msg}");
        still_usable(&mut c).await;
    }
    // The server does read it as a space: directly, the same text runs.
    assert_eq!(
        env.admin("SET NAMES latin1; SELECT s, @x\u{e0}FROM secrets"),
        "launch code\tNULL"
    );
    // A login in latin1 (the mariadb client's default in a C locale) is
    // read so from its first statement.
    let latin1 = std::process::Command::new(env.db.client_binary())
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-P"])
        .arg(env.port.to_string())
        .args(["-u", mysql_env::AGENT])
        .arg(format!("-p{}", mysql_env::AGENT_PW))
        .args([
            "--default-character-set=latin1",
            "--batch",
            "--skip-ssl",
            "-e",
        ])
        .arg("SELECT s, @x\u{e0}FROM secrets")
        .arg(mysql_env::DB)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&latin1.stderr);
    assert!(!latin1.status.success(), "{stderr}");
    assert!(stderr.contains("latin1"), "{stderr}");
    assert!(latin1.stdout.is_empty(), "nothing ran");
    // Under utf8mb4 the byte is part of a character, and a name such as
    // 价格 (E6 A0 BC) is read as the server reads it (review finding:
    // refusing it for every client refused one CJK name in forty).
    let mut utf8 = env.agent().await;
    let r: Option<i32> = utf8
        .query_first("SELECT 1 AS \u{4ef7}\u{683c}")
        .await
        .unwrap();
    assert_eq!(r, Some(1));
    let r: Option<i32> = utf8.query_first("SELECT 1 AS voil\u{e0}").await.unwrap();
    assert_eq!(r, Some(1));
    c.query_drop("SET NAMES utf8mb4").await.unwrap();
    let r: Option<String> = c
        .query_first(
            "SELECT `voil\u{e0}` FROM (SELECT 'voil\u{e0}' AS `voil\u{e0}`) d -- voil\u{e0}",
        )
        .await
        .unwrap();
    assert_eq!(r.as_deref(), Some("voil\u{e0}"));
    env.stop().await;
}

/// A policy's `idle_in_transaction_timeout` is applied upstream
/// (MariaDB's `idle_transaction_timeout`, whole seconds), the agent cannot
/// lift it, and the server ends a session left idle in a transaction.
/// sql_mode set to modes that keep the default quoting runs, as
/// connectors send it (compatibility finding: mysql-connector sends the
/// session's own sql_mode after COM_RESET_CONNECTION, and a strict mode
/// in an init command is common; both were refused by default); modes
/// that change how text is read stay refused, over both protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_sql_modes_run_and_lexing_ones_are_refused() {
    let mut env = env().await;
    let mut c = env.agent().await;
    let current: Option<String> = c.query_first("SELECT @@SESSION.sql_mode").await.unwrap();
    let current = current.unwrap_or_default();
    for sql in [
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES'".to_owned(),
        "SET sql_mode = 'TRADITIONAL'".to_owned(),
        "SET @@session.sql_mode = ''".to_owned(),
        format!("SET @@session.sql_mode = '{current}'"),
    ] {
        c.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        c.exec_drop(&sql, ())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let now: Option<String> = c.query_first("SELECT @@SESSION.sql_mode").await.unwrap();
    assert_eq!(now.unwrap_or_default(), current);
    for sql in [
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES'",
        "SET sql_mode = CONCAT('ANSI', '_QUOTES')",
        "SET GLOBAL sql_mode = ''",
        // Changes how NOT binds (red-team finding: with it, an always-true
        // WHERE was read as false and updated every row).
        "SET sql_mode = 'HIGH_NOT_PRECEDENCE,STRICT_TRANS_TABLES'",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
        refused(c.exec_drop(sql, ()).await.unwrap_err(), sql);
    }
    let now: Option<String> = c.query_first("SELECT @@SESSION.sql_mode").await.unwrap();
    assert_eq!(now.unwrap_or_default(), current);
    still_usable(&mut c).await;
    drop(c);
    env.stop().await;
}

/// `||` is OR to MySQL: a WHERE holding it is not taken for bounded
/// (red-team finding: `DELETE FROM t WHERE id = 0 || 1` deleted every
/// row). InnoDB's lock tables, which show locked key values, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_pipe_writes_and_innodb_lock_tables_are_refused() {
    let mut env = env().await;
    let mut c = env.agent().await;
    for sql in [
        "DELETE FROM t WHERE id = 0 || 1",
        "UPDATE t SET v = 'x' WHERE id = -1 || 1",
        "SELECT * FROM information_schema.INNODB_LOCKS",
        "SELECT * FROM information_schema.innodb_lock_waits",
    ] {
        refused(c.query_drop(sql).await.unwrap_err(), sql);
        refused(c.exec_drop(sql, ()).await.unwrap_err(), sql);
    }
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM t WHERE v IN ('one', 'two', 'three')")
        .await
        .unwrap();
    assert_eq!(n, Some(3), "nothing was written");
    c.query_drop("DELETE FROM t WHERE id = 0 OR id = 3")
        .await
        .unwrap();
    still_usable(&mut c).await;
    drop(c);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_timeout_is_applied_and_kept() {
    let rules = RULES.replacen(
        "deny_tables",
        "idle_in_transaction_timeout = \"1500ms\"\ndeny_tables",
        1,
    );
    let mut env = MyEnv::start(Some(&rules)).await;
    env.admin(SETUP);
    let mut c = env.agent().await;
    let set: Option<u64> = c
        .query_first("SELECT @@SESSION.idle_transaction_timeout")
        .await
        .unwrap();
    assert_eq!(set, Some(2), "rounded up to whole seconds");
    for sql in [
        "SET SESSION idle_transaction_timeout = 0",
        "SET @@idle_write_transaction_timeout = 0",
    ] {
        let msg = refused(c.query_drop(sql).await.unwrap_err(), sql);
        assert!(
            msg.contains("agent-rw.idle-in-transaction-timeout"),
            "{sql}: {msg}"
        );
        still_usable(&mut c).await;
    }
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE t SET v = 'held' WHERE id = 1")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert!(
        c.query_drop("SELECT 1").await.is_err(),
        "the idle transaction's session was ended"
    );
    // Ended, so rolled back: the row lock is gone.
    assert_eq!(env.admin("SELECT v FROM t WHERE id = 1"), "one");
    let mut again = env.agent().await;
    still_usable(&mut again).await;
    drop((c, again));
    env.stop().await;
}
