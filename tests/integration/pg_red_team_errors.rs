//! Two bypasses of a later red-team pass, replayed through airlock against
//! a real Postgres with a real client; each must now come back without
//! the protected value, or be refused without having run.
//!
//! * (B8) errors that print a value unquoted: `make_date(...)` fails with
//!   `date field value out of range: 5550101-13-01`, and with
//!   `ascii(substr(email, k, 1))` reads a masked column one character at a
//!   time. Such numbers are now withheld like quoted values;
//! * (B10) `ALTER ROLE CURRENT_USER SET search_path TO evil`, which a
//!   policy allowing DCL let through: every later session of the upstream
//!   role started with a search_path airlock did not know, and read
//!   `evil.orders` (a view over a masked column) as `public.orders`,
//!   unmasked. A role's defaults of the settings `SET` may not change are
//!   now refused too.

use crate::common::*;
use tokio_postgres::{Client, SimpleQueryMessage};

const RULES: &str = r#"
[[policy]]
id = "agent"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "session", "transaction", "dcl"]

[[mask]]
id = "email"
columns = ["public.customers.email"]
strategy = "email"

[[mask]]
id = "phone"
columns = ["public.customers.phone"]
strategy = "redact"
"#;

const SETUP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, phone text);
INSERT INTO customers VALUES (1, 'Alice', 'alice@example.com', '555-0101'),
                             (2, 'Bob', 'bob@example.org', '555-0102');
CREATE TABLE orders (id int, customer_id int, status text);
INSERT INTO orders VALUES (10, 1, 'new'), (11, 2, 'shipped');
CREATE SCHEMA evil;
CREATE VIEW evil.orders AS SELECT id, id AS customer_id, email AS status FROM public.customers;
";

async fn env() -> Env {
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    env
}

/// The text of every row `sql` returns (simple protocol).
async fn rows_text(c: &Client, sql: &str) -> String {
    let mut text = String::new();
    for m in c.simple_query(sql).await.unwrap() {
        if let SimpleQueryMessage::Row(row) = m {
            for i in 0..row.len() {
                text.push_str(row.get(i).unwrap_or("NULL"));
                text.push('|');
            }
            text.push('\n');
        }
    }
    text
}

/// Whether `sql` was refused by airlock (and so did not run).
async fn is_refused(c: &Client, sql: &str) -> Result<(), String> {
    match c.simple_query(sql).await {
        Ok(_) => Err(format!("ran: {sql}")),
        Err(e) => match e.as_db_error() {
            Some(db) if db.code().code() == "42501" && db.message().starts_with("airlock: ") => {
                Ok(())
            }
            _ => Err(format!("{sql}: not refused by airlock: {e:?}")),
        },
    }
}

/// B8: numbers a statement computed from a masked column are withheld
/// from the error's message; the message keeps its wording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unquoted_numbers_in_errors_are_withheld() {
    let env = env().await;
    let c = env.agent().await;
    for (sql, code, wording) in [
        (
            "SELECT make_date(replace(phone, '-', '')::int, 13, 1) FROM customers WHERE id = 1",
            "22008",
            "date field value out of range: ",
        ),
        (
            "SELECT make_date(ascii(substr(email, 1, 1)), 13, 1) FROM customers WHERE id = 1",
            "22008",
            "date field value out of range: ",
        ),
        (
            "SELECT make_date(2020, 1, ascii(substr(email, 2, 1))) FROM customers WHERE id = 1",
            "22008",
            "date field value out of range: ",
        ),
        (
            "SELECT make_time(ascii(substr(email, 3, 1)), 0, 0) FROM customers WHERE id = 1",
            "22008",
            "time field value out of range: ",
        ),
        // Digit-free values printed unquoted after a colon (ground-truth
        // red team): digits mapped to letters got past the number rule.
        (
            "SELECT ('x.y.' || translate(phone, '0123456789+-', 'abcdefghij'))::regtype FROM customers WHERE id = 1",
            "0A000",
            "cross-database references are not implemented: ",
        ),
        (
            "SELECT translate(phone, '0123456789+-', 'abcdefghij')::regoper FROM customers WHERE id = 1",
            "42883",
            "operator does not exist: ",
        ),
        // Or in punctuation alone (review finding).
        (
            "SELECT translate(phone, '0123456789+-', '!#%&*<=>?@')::regoper FROM customers WHERE id = 1",
            "42883",
            "operator does not exist: ",
        ),
        // (`setseed` of a masked value is refused before it runs: it keeps
        // its argument for `random()`, see `pg_red_team_lineage`.)
        (
            "SELECT chr(ascii(substr(email, 5, 1)) + 1114112) FROM customers WHERE id = 1",
            "54000",
            "requested character too large for encoding: ",
        ),
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        let db = e
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: not a server error: {e:?}"));
        assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
        assert_eq!(
            db.message(),
            format!("{wording}[withheld by airlock]"),
            "{sql}"
        );
        for field in [db.detail(), db.hint(), db.where_()].into_iter().flatten() {
            assert!(
                !field.chars().any(|ch| ch.is_ascii_digit()),
                "{sql}: {field}"
            );
        }
    }
    // A value at the start of the message, with no colon after it
    // (re-check finding: the letter-mapped phone came back whole).
    let e = c
        .simple_query("SELECT to_ascii('a', translate(phone, '0123456789+-', 'abcdefghij')) FROM customers WHERE id = 1")
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "42704");
    assert_eq!(
        db.message(),
        "[withheld by airlock] is not a valid encoding name"
    );
    // An unknown column keeps its code and wording; its name is withheld
    // too, as it may be data (`has_column_privilege(t, c.phone, …)`).
    let e = c
        .simple_query("SELECT nosuch1 FROM customers")
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "42703");
    assert!(db.message().contains("does not exist"), "{}", db.message());
    assert!(!db.message().contains("nosuch1"), "{}", db.message());
}

/// B10: a role default of search_path would make later sessions resolve
/// names differently from airlock; it is refused, as are the role
/// defaults of the other settings `SET` may not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_defaults_of_guarded_settings_are_refused() {
    let env = env().await;
    let c = env.agent().await;
    let mut outcomes = Vec::new();
    for sql in [
        "ALTER ROLE CURRENT_USER SET search_path TO evil",
        "ALTER USER CURRENT_USER SET search_path = evil",
        "ALTER ROLE CURRENT_USER IN DATABASE app SET search_path TO evil",
        "ALTER ROLE CURRENT_USER SET search_path TO evil, public",
        "ALTER DATABASE app SET search_path TO evil",
    ] {
        outcomes.push(is_refused(&c, sql).await);
    }
    // A later session of the same upstream role reads public.orders.
    let later = env.agent().await;
    let text = rows_text(&later, "SELECT status FROM orders ORDER BY id").await;
    for email in ["alice@example.com", "bob@example.org"] {
        assert!(!text.contains(email), "{text}");
    }
    assert_eq!(text, "new|\nshipped|\n");
    for outcome in outcomes {
        outcome.unwrap();
    }
    for sql in [
        "ALTER ROLE CURRENT_USER RESET search_path",
        "ALTER ROLE CURRENT_USER RESET ALL",
        "ALTER ROLE CURRENT_USER SET standard_conforming_strings TO off",
        "ALTER ROLE CURRENT_USER SET role TO pg_read_all_data",
    ] {
        is_refused(&c, sql).await.unwrap();
    }
    // None ran: the role has no defaults, and other settings may be given.
    c.simple_query("ALTER ROLE CURRENT_USER SET work_mem TO '8MB'")
        .await
        .unwrap();
    let direct = env.direct().await;
    let settings = rows_text(
        &direct,
        "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting",
    )
    .await;
    assert_eq!(settings, "work_mem=8MB|\n");
}
