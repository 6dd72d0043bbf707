//! Real Postgres drivers through airlock, as applications use them:
//! psycopg 3, asyncpg, node-postgres and pgjdbc (DBeaver's). Each runs its
//! script from `testdata/clients/` (the checks are listed in the README
//! there): typed reads, masking over prepared and binary results, refusals
//! with SQLSTATE 42501 and the rule's id that leave the connection usable,
//! transactions, batches, cancels, and what each driver does of its own
//! accord (type introspection, pools and their reset, cursors, COPY,
//! metadata calls). A driver that is not installed is skipped with the
//! reason printed; `scripts/setup --tests` installs them.

use crate::common::drivers::{run, Runner};
use crate::common::*;

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "session", "transaction"]
deny_tables = ["public.secrets"]

[[mask]]
id = "email"
columns = ["public.customers.email"]
strategy = "email"

[[mask]]
id = "ssn"
columns = ["public.customers.ssn"]
strategy = "redact"
"#;

const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text,
  balance numeric(12,2), created timestamptz, tags text[], meta jsonb,
  mood mood, photo bytea, uid uuid);
INSERT INTO customers VALUES
 (1, 'Alice', 'alice.pii@example.com', '123-45-6789', 1234.50,
  '2024-01-02 03:04:05+00', '{a,b}', '{"k": 1}', 'calm', '\x0102',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, 'Bob', 'bob.pii@example.org', '987-65-4321', -5.25,
  '2023-12-31 23:59:59+00', '{}', '[]', 'busy', NULL, NULL);
CREATE TABLE notes (id serial PRIMARY KEY, customer_id int, body text);
CREATE TABLE secrets (k text);
INSERT INTO secrets VALUES ('top');
"#;

async fn drive(runner: Runner, script: &str) {
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SCHEMA).await.unwrap();
    run(runner, script, env.port, AGENT, AGENT_PW, DB).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_through_airlock() {
    drive(Runner::Python, "psycopg_check.py").await;
}

/// asyncpg reads an enum's type with `set_config('jit', 'off', false)`
/// around its query, then restores `jit` with `set_config('jit', $1,
/// false)` (compatibility finding: the restore was refused, and with it
/// the first query of every connection that returned a type of the
/// database's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_through_airlock() {
    drive(Runner::Python, "asyncpg_check.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_through_airlock() {
    drive(Runner::Node, "node_pg_check.js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_through_airlock() {
    drive(
        Runner::Java {
            jar: "/usr/share/java/postgresql.jar",
        },
        "PgJdbcCheck.java",
    )
    .await;
}
