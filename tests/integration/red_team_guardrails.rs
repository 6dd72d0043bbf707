//! Guardrail bypasses a red-team pass found (5 December 2026), replayed
//! through airlock against real servers: each must be refused and must
//! not have run.
//!
//! * `COPY (UPDATE ... RETURNING *) TO STDOUT`, a write classed as a read
//!   (so allowed with only `read`, and past the unbounded-write rule);
//! * `max_rows` escaped by `COPY ... TO STDOUT`;
//! * an UPDATE or DELETE whose WHERE filters only another table
//!   (`DELETE FROM orders USING customers c WHERE c.id = 1`);
//! * MySQL `SET PASSWORD`, which changed the credentials of the account
//!   airlock logs in as;
//! * `max_rows`, which MySQL sessions did not apply at all;
//! * MySQL `SHOW CREATE TABLE` and `SHOW INDEX` of a denied table.
//!
//! And names sqlparser holds without visiting them as relations (audit of
//! 7 December 2026): a foreign key to a denied column (which tells whether
//! a value is there), Postgres VACUUM, GRANT on every table of a schema,
//! column comments, sequences owned by a column; and on MariaDB, the
//! same through foreign keys, `CREATE TABLE ... LIKE`, `DROP INDEX ...
//! ON`, `FLUSH TABLES`, GRANTs and `SHOW TABLES FROM`.

use crate::common::mysql::MyEnv;
use crate::common::raw::{encode_message, RawClient};
use crate::common::*;

const RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "transaction", "session"]
max_rows = 100

[[policy]]
id = "rd"
applies_to = { identities = ["reader"] }
allow_statements = ["read"]
"#;

const SETUP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers VALUES (1, 'Alice'), (2, 'Bob');
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, status text);
INSERT INTO orders VALUES (10, 1, 'new'), (11, 2, 'new');
";

/// Runs `sql` (simple protocol) and returns the refusal's text; panics if
/// it ran.
async fn refused(c: &tokio_postgres::Client, sql: &str) -> String {
    let e = c
        .simple_query(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql} ran"));
    let text = format!("{e:?}");
    assert!(text.contains("airlock"), "{sql}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_writes_hidden_in_copy_and_other_tables_are_refused() {
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        identities: vec![("reader".into(), "reader-pw".into(), vec![])],
        ..Default::default()
    })
    .await;
    let direct = env.direct().await;
    direct.batch_execute(SETUP).await.unwrap();
    let reader = connect(env.config_for("reader", "reader-pw")).await;
    refused(
        &reader,
        "COPY (UPDATE orders SET status = 'pwned' RETURNING *) TO STDOUT",
    )
    .await;
    let c = env.agent().await;
    for sql in [
        "COPY (DELETE FROM orders RETURNING *) TO STDOUT",
        "DELETE FROM orders USING customers c WHERE c.id = 1",
        "UPDATE orders SET status = 'all' FROM customers c WHERE c.id = 1",
        "UPDATE orders o SET status = 'all' FROM customers AS c WHERE c.name = 'Alice'",
    ] {
        refused(&c, sql).await;
    }
    let rows = direct
        .query("SELECT status FROM orders ORDER BY id", &[])
        .await
        .unwrap();
    let statuses: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, ["new", "new"], "a refused write ran");
    // Bounded by a column of the written table: allowed.
    c.batch_execute(
        "UPDATE orders SET status = 'one' FROM customers c WHERE orders.customer_id = c.id AND c.id = 1",
    )
    .await
    .unwrap();
    // max_rows holds for COPY ... TO STDOUT too.
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = bytes::BytesMut::new();
    encode_message(
        r#"{"Query": "COPY (SELECT generate_series(1, 1000)) TO STDOUT"}"#,
        &mut out,
    );
    raw.send(&out).await;
    let frames = raw.until_ready(1).await;
    let rows = frames.iter().filter(|f| f.tag() == b'd').count();
    let text = String::from_utf8_lossy(&raw.received).into_owned();
    assert!(
        rows <= 100 && text.contains("max_rows"),
        "{rows} rows: {text}"
    );
    drop((c, reader, direct, raw));
    env.stop().await;
}

const WIDE_RULES: &str = r#"
[[policy]]
id = "wide"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "dcl", "transaction", "session", "other"]
deny_tables = ["public.payments"]
deny_columns = ["public.customers.ssn"]
"#;

/// airlock under [`WIDE_RULES`], with `setup` run directly on the
/// server, and a direct (superuser) client to check what ran.
async fn wide_env(setup: &str) -> (Env, tokio_postgres::Client) {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(WIDE_RULES.into()),
        ..Default::default()
    })
    .await;
    let direct = env.direct().await;
    direct.batch_execute(setup).await.unwrap();
    (env, direct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tables_and_columns_in_keys_grants_and_maintenance_are_judged() {
    let (mut env, direct) = wide_env(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text UNIQUE);
             INSERT INTO customers VALUES (1, 'Alice', '123-45-6789');
             CREATE TABLE payments (id int PRIMARY KEY, amount int);",
    )
    .await;
    let c = env.agent().await;
    for sql in [
        "CREATE TABLE probe (v text REFERENCES customers(ssn))",
        "CREATE TABLE probe (v text, FOREIGN KEY (v) REFERENCES \"customers\" (ssn))",
        "VACUUM payments",
        "vacuum analyze customers (name, ssn)",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC",
        "GRANT SELECT (ssn) ON customers TO PUBLIC",
        "COMMENT ON COLUMN customers.ssn IS 'x'",
        "CREATE SEQUENCE s OWNED BY customers.ssn",
    ] {
        let text = refused(&c, sql).await;
        assert!(text.contains("42501"), "{sql}: {text}");
    }
    let probe: Option<String> = direct
        .query_one("SELECT to_regclass('probe')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(probe, None, "a refused CREATE TABLE ran");
    let granted: bool = direct
        .query_one(
            "SELECT has_column_privilege('public', 'customers', 'ssn', 'SELECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!granted, "a refused GRANT ran");
    // What names no denied table or column runs.
    // (One at a time: VACUUM cannot run in the implicit transaction of a
    // multi-statement query.)
    for sql in [
        "VACUUM ANALYZE customers (name)",
        "ANALYZE customers (id)",
        "CREATE TABLE p2 (v int REFERENCES customers (id))",
        "COMMENT ON COLUMN customers.name IS 'the name'",
        "CREATE SEQUENCE s2 OWNED BY customers.id",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    drop((c, direct));
    env.stop().await;
}

/// Red-team findings of the second audit (7 December 2026): a quoted CTE
/// name that differs from a table's only in case, a CTE named like the
/// table a write changes, an INSERT's alias, and the columns upserts,
/// MERGE and column-less INSERTs write. Each is refused and has not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ctes_aliases_and_upserts_cannot_hide_a_table_or_column() {
    let (mut env, direct) = wide_env(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text);
             INSERT INTO customers VALUES (1, 'Alice', '123-45-6789');
             CREATE TABLE payments (id int PRIMARY KEY, amount int);
             INSERT INTO payments VALUES (1, 999);",
    )
    .await;
    let c = env.agent().await;
    for sql in [
        "WITH \"Payments\" AS (SELECT 1) SELECT * FROM payments",
        "WITH \"Customers\" AS (SELECT 1) SELECT id, ssn FROM customers",
        "WITH payments AS (SELECT 1) DELETE FROM payments WHERE id = 1 RETURNING *",
        "WITH customers AS (SELECT 1) UPDATE customers SET name = name WHERE id = 1 RETURNING ssn",
        "INSERT INTO customers AS c (id, name) VALUES (1, 'x') \
         ON CONFLICT (id) DO UPDATE SET name = 'y' RETURNING c",
        "INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET ssn = 'x'",
        "MERGE INTO customers c USING (SELECT 1 AS id) s ON c.id = s.id \
         WHEN MATCHED THEN UPDATE SET ssn = 'x'",
        "INSERT INTO customers VALUES (9, 'z', '999')",
    ] {
        let text = refused(&c, sql).await;
        assert!(text.contains("42501"), "{sql}: {text}");
    }
    let row = direct
        .query_one("SELECT name, ssn FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Alice", "a refused upsert ran");
    assert_eq!(
        row.get::<_, String>(1),
        "123-45-6789",
        "a refused write ran"
    );
    let n: i64 = direct
        .query_one("SELECT count(*) FROM payments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "a refused DELETE ran");
    let n: i64 = direct
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "a refused INSERT ran");
    // What names no denied table or column runs.
    for sql in [
        "INSERT INTO customers (id, name) VALUES (1, 'Al') ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        "WITH \"Payments\" AS (SELECT 1 AS x) SELECT x FROM \"Payments\"",
        "MERGE INTO customers c USING (SELECT 2 AS id) s ON c.id = s.id \
         WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, 'Bob')",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    drop((c, direct));
    env.stop().await;
}

const MY_RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "transaction", "session"]
max_rows = 100
deny_tables = ["*.secrets"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_password_changes_and_writes_filtered_by_another_table_are_refused() {
    use mysql_async::prelude::*;
    let mut env = MyEnv::start(Some(MY_RULES)).await;
    env.admin(
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         INSERT INTO customers VALUES (1, 'Alice'), (2, 'Bob');
         CREATE TABLE orders (id int PRIMARY KEY, customer_id int, status text);
         INSERT INTO orders VALUES (10, 1, 'new'), (11, 2, 'new');
         CREATE TABLE secrets (id int PRIMARY KEY, v varchar(20) DEFAULT 'TOPSECRET-42');",
    );
    let mut c = env.agent().await;
    for sql in [
        "SET PASSWORD = PASSWORD('taken-over')",
        "DELETE o FROM orders o JOIN customers c WHERE c.id = 1",
        "DELETE FROM orders USING orders JOIN customers c WHERE c.id = 1",
        "UPDATE orders o JOIN customers c SET o.status = 'all' WHERE c.id = 1",
        // A denied table's definition (its defaults, its indexes).
        "SHOW CREATE TABLE secrets",
        "SHOW INDEX FROM secrets",
        "SHOW KEYS IN secrets FROM app",
    ] {
        let e = c.query_drop(sql).await.expect_err(sql);
        assert!(format!("{e:?}").contains("airlock"), "{sql}: {e:?}");
    }
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM orders WHERE status = 'new'")
        .await
        .unwrap();
    assert_eq!(n, Some(2), "a refused write ran");
    // max_rows holds on MySQL too, over both protocols, and the session
    // stays usable.
    let many = "SELECT seq FROM seq_1_to_1000";
    let e = c
        .query_drop(many)
        .await
        .expect_err("text rows past max_rows");
    assert!(format!("{e:?}").contains("max_rows"), "{e:?}");
    let e = c
        .exec_drop(many, ())
        .await
        .expect_err("binary rows past max_rows");
    assert!(format!("{e:?}").contains("max_rows"), "{e:?}");
    let rows: Vec<i64> = c.query("SELECT seq FROM seq_1_to_100").await.unwrap();
    assert_eq!(rows.len(), 100);
    // The session and later logins still work.
    drop(c);
    let mut c = env.agent().await;
    let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    drop(c);
    env.stop().await;
}

/// The last line of the `mariadb` CLI's output (the value of a
/// one-value query).
fn last_line(out: &str) -> Option<&str> {
    out.lines().last().map(str::trim)
}

const MY_WIDE_RULES: &str = r#"
[[policy]]
id = "mywide"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "dcl", "session", "transaction", "other"]
deny_tables = ["app.payments", "mysql.*"]
allow_tables = ["app.*"]
deny_columns = ["app.users.password"]
"#;

/// The MySQL side of the 7 December audit: names in foreign keys,
/// `CREATE TABLE ... LIKE`, `DROP INDEX ... ON`, `FLUSH TABLES`,
/// schema-wide and column GRANTs and schema listings reach the rules, on
/// a real MariaDB that would have run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_tables_and_columns_in_keys_grants_and_listings_are_judged() {
    use mysql_async::prelude::*;
    let mut env = MyEnv::start(Some(MY_WIDE_RULES)).await;
    env.admin(
        "CREATE TABLE users (id int PRIMARY KEY, password varchar(20) UNIQUE) ENGINE=InnoDB;
         INSERT INTO users VALUES (1, 'hunter2');
         CREATE TABLE payments (id int PRIMARY KEY, amount int) ENGINE=InnoDB;
         CREATE TABLE orders (id int PRIMARY KEY, total int) ENGINE=InnoDB;",
    );
    let mut c = env.agent().await;
    for sql in [
        // A foreign key to a denied column tells whether a value is there.
        "CREATE TABLE probe (v varchar(20), FOREIGN KEY (v) REFERENCES users(password)) ENGINE=InnoDB",
        "CREATE TABLE probe (v varchar(20) REFERENCES `users` (`password`)) ENGINE=InnoDB",
        "CREATE TABLE probe (v int, FOREIGN KEY (v) REFERENCES payments(id)) ENGINE=InnoDB",
        // Copies of, and changes to, a denied table.
        "CREATE TABLE c2 LIKE payments",
        "CREATE TABLE c2 (LIKE payments)",
        "DROP INDEX `PRIMARY` ON payments",
        "FLUSH TABLES orders, payments FOR EXPORT",
        // Grants that cover a denied table or column.
        "GRANT SELECT ON app.* TO 'x'@'%'",
        "GRANT SELECT ON *.* TO 'x'@'%'",
        "GRANT SELECT (password) ON users TO 'x'@'%'",
        // Writes to a denied column by upsert, REPLACE, SET or no list.
        "REPLACE INTO users SET id = 1, password = 'attacker-known'",
        "INSERT INTO users (id) VALUES (1) ON DUPLICATE KEY UPDATE password = 'x'",
        "REPLACE INTO users VALUES (1, 'pw')",
        // Listings of a schema whose tables are all denied.
        "SHOW TABLES FROM mysql",
        "SHOW TABLE STATUS FROM mysql",
        "SHOW FULL TABLES IN mysql",
    ] {
        let e = c.query_drop(sql).await.expect_err(sql);
        let text = format!("{e:?}");
        assert!(text.contains("airlock"), "{sql}: {text}");
        assert!(text.contains("mywide"), "{sql}: {text}");
    }
    // SHOW forms sqlparser does not know skip their WHERE: refused, in a
    // session without masks too (the error would show the password).
    for sql in [
        "SHOW TRIGGERS FROM app WHERE extractvalue(1, concat(0x7e, (SELECT password FROM users)))",
        "SHOW TABLE STATUS FROM app WHERE extractvalue(1, concat(0x7e, (SELECT password FROM users)))",
    ] {
        let e = c.query_drop(sql).await.expect_err(sql);
        let text = format!("{e:?}");
        assert!(text.contains("airlock") && !text.contains("hunter2"), "{sql}: {text}");
    }
    // Nothing refused ran.
    let made = env.admin(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = 'app' AND table_name IN ('probe', 'c2')",
    );
    assert_eq!(
        last_line(&made),
        Some("0"),
        "a refused CREATE TABLE ran: {made}"
    );
    let keys = env.admin(
        "SELECT COUNT(*) FROM information_schema.statistics \
         WHERE table_schema = 'app' AND table_name = 'payments' AND index_name = 'PRIMARY'",
    );
    assert_eq!(
        last_line(&keys),
        Some("1"),
        "a refused DROP INDEX ran: {keys}"
    );
    let pw = env.admin("SELECT password FROM users WHERE id = 1");
    assert_eq!(last_line(&pw), Some("hunter2"), "a refused write ran: {pw}");
    // What names no denied table or column runs.
    for sql in [
        "INSERT INTO users (id) VALUES (1) ON DUPLICATE KEY UPDATE id = 1",
        "CREATE TABLE p2 (v int, FOREIGN KEY (v) REFERENCES users(id)) ENGINE=InnoDB",
        "CREATE TABLE c3 LIKE orders",
        "SHOW TABLES FROM app",
        "SHOW TABLE STATUS FROM app",
    ] {
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    drop(c);
    env.stop().await;
}

const MY_LEXER_RULES: &str = r#"
[[policy]]
id = "rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "transaction", "session"]
deny_columns = ["app.customers.ssn"]

[[mask]]
id = "email"
columns = ["app.customers.email"]
strategy = "redact"
"#;

/// Text sqlparser's MySQL tokenizer reads otherwise than MariaDB (helper
/// audits of 7 December 2026): `b"..."`, which sqlparser took for a byte
/// string without escapes, `` @@`version` ``, whose backtick it glued to
/// the name, and `|/*`, which it took for an operator; and the WHERE of
/// SHOW forms sqlparser skips. The rest of the text ran unjudged and unmasked, hidden
/// statements included. Now refused, and nothing ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_text_the_server_reads_otherwise_cannot_hide_sql() {
    use mysql_async::prelude::*;
    let mut env = MyEnv::start(Some(MY_LEXER_RULES)).await;
    env.admin(
        "CREATE TABLE customers (id int PRIMARY KEY, email varchar(100), ssn varchar(20));
         INSERT INTO customers VALUES (1, 'alice@example.com', '111-11-1111');
         CREATE TABLE orders (id int PRIMARY KEY);
         INSERT INTO orders VALUES (1);",
    );
    let mut c = env.agent().await;
    for sql in [
        r#"SELECT b"\" AS a, " , (SELECT group_concat(ssn) FROM customers) AS s FROM (SELECT 1 AS b) t #" FROM (SELECT 1 AS b) t"#,
        r#"SELECT b"\" AS a, " , concat(email) FROM customers, (SELECT 1 AS b) u #" FROM (SELECT 1 AS b) t"#,
        r#"SELECT b"\" AS a, " , 2 FROM (SELECT 1 AS b) t; DELETE FROM orders; CREATE TABLE pwned (x int); SELECT 1 #" FROM (SELECT 1 AS b) t"#,
        "SELECT @@`version`, (SELECT group_concat(ssn) FROM customers) AS s #`",
        "SELECT @@`version`, (SELECT group_concat(email) FROM customers) AS s #`",
        "SELECT @@`version`; DELETE FROM orders; CREATE TABLE pwned2 (x int); SELECT 1 #`",
        // `|/` and `||/` are Postgres operators to sqlparser; and the SHOW
        // forms it does not know skip their WHERE unjudged.
        "SHOW TRIGGERS FROM app WHERE 1 |/* ' */ 0; SELECT ssn FROM customers; -- '",
        "SHOW TABLE STATUS FROM app WHERE 1 ||/* ' */ 0; DELETE FROM orders; -- '",
        "SHOW TRIGGERS FROM app WHERE extractvalue(1, concat(0x7e, (SELECT ssn FROM customers)))",
        "SHOW PROCEDURE STATUS WHERE extractvalue(1, concat(0x7e, (SELECT ssn FROM customers)))",
    ] {
        match c.query::<mysql_async::Row, _>(sql).await {
            Ok(rows) => panic!("{sql} ran: {rows:?}"),
            Err(e) => {
                let text = format!("{e:?}");
                assert!(text.contains("airlock"), "{sql}: {text}");
                assert!(
                    !text.contains("111-11") && !text.contains("alice@"),
                    "{text}"
                );
            }
        }
    }
    let orders = env.admin("SELECT COUNT(*) FROM orders");
    assert_eq!(last_line(&orders), Some("1"), "a hidden DELETE ran");
    let made = env.admin(
        "SELECT COUNT(*) FROM information_schema.tables \
         WHERE table_schema = 'app' AND table_name LIKE 'pwned%'",
    );
    assert_eq!(last_line(&made), Some("0"), "a hidden CREATE TABLE ran");
    // The session is still usable, and what it may read it reads.
    let v: Option<String> = c.query_first("SELECT @@version").await.unwrap();
    assert!(v.is_some());
    let e: Option<String> = c
        .query_first("SELECT email FROM customers WHERE id = 1")
        .await
        .unwrap();
    assert_ne!(e.as_deref(), Some("alice@example.com"), "email not masked");
    drop(c);
    env.stop().await;
}
