//! Real MySQL drivers through airlock, as applications use them:
//! mysql-connector-python over the text and the binary protocol, with its
//! pool, and MariaDB Connector/J (DBeaver's MariaDB driver) with its
//! default settings and with server-side prepared statements. The checks
//! are listed in `testdata/clients/README.md`; a driver that is not
//! installed is skipped with the reason printed.

use crate::common::drivers::{run, Runner};
use crate::common::mysql::{MyEnv, AGENT, AGENT_PW, DB};

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "session", "transaction"]
deny_tables = ["app.secrets"]

[[mask]]
id = "email"
columns = ["app.customers.email"]
strategy = "email"

[[mask]]
id = "ssn"
columns = ["app.customers.ssn"]
strategy = "redact"
"#;

const SCHEMA: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name varchar(50), email varchar(100),
  ssn varchar(20), balance decimal(12,2), created datetime);
INSERT INTO customers VALUES
 (1, 'Alice', 'alice.pii@example.com', '123-45-6789', 1234.50, '2024-01-02 03:04:05'),
 (2, 'Bob', 'bob.pii@example.org', '987-65-4321', -5.25, '2023-12-31 23:59:59');
CREATE TABLE notes (id int AUTO_INCREMENT PRIMARY KEY, customer_id int, body text);
CREATE TABLE secrets (k text);
INSERT INTO secrets VALUES ('top');
";

async fn drive(runner: Runner, script: &str) {
    let mut env = MyEnv::start(Some(RULES)).await;
    env.admin(SCHEMA);
    run(runner, script, env.port, AGENT, AGENT_PW, DB).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connector_python_through_airlock() {
    drive(Runner::Python, "mysql_connector_check.py").await;
}

/// Connector/J logs in with `set autocommit=1, sql_mode =
/// concat(@@sql_mode,',STRICT_TRANS_TABLES')` (compatibility finding: it
/// could not connect with its default settings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connector_j_through_airlock() {
    drive(
        Runner::Java {
            jar: "/usr/share/java/mariadb-java-client.jar",
        },
        "MariadbJdbcCheck.java",
    )
    .await;
}
