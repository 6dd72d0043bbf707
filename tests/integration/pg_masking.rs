//! PII masking through airlock against a real Postgres. Every test checks
//! the bytes the client actually receives: no raw PII value (nor a trivial
//! encoding of one) may appear in rows, errors, notices, notifications or
//! COPY data, whatever shape the query takes.

use crate::common::raw::RawClient;
use crate::common::*;

const RULES: &str = r#"
[[policy]]
id = "agent-rw"
applies_to = { identities = ["agent"] }
allow_statements = ["read", "write", "ddl", "session", "transaction"]

[[mask]]
id = "email"
columns = ["public.customers.email"]
strategy = "email"

[[mask]]
id = "card"
columns = ["*.card_number"]
strategy = "partial"
keep_last = 4

[[mask]]
id = "ssn"
columns = ["public.customers.ssn"]
strategy = "hash"

[[mask]]
id = "phone"
columns = ["public.customers.phone"]
strategy = "redact"

[[mask]]
id = "birth-year"
columns = ["public.customers.birth_year"]
strategy = "redact"

[[mask]]
id = "zip"
columns = ["public.customers.zip"]
strategy = "fake"

[[mask]]
id = "account-email"
columns = ["public.accounts.email"]
strategy = "email"

[[mask]]
id = "account-phone"
columns = ["public.accounts.phone"]
strategy = "redact"

[[mask]]
id = "iban"
columns = ["public.customers.iban"]
strategy = "null"

[masking]
hash_key_env = "AIRLOCK_TEST_MASK_KEY"
detectors = ["email", "card", "ssn", "secret"]
"#;

const SETUP: &str = "
CREATE TABLE customers (id int, name text, email text, phone text, ssn text,
                        card_number text, birth_year int, notes text, zip text, iban text);
INSERT INTO customers VALUES
 (1, 'Alice', 'alice.pii@example.com', '+1-202-555-0101', '123-45-6789', '4111111111111111', 1980,
  'reach me at zed.secret@corp.example, card 5500 0055 5555 5559', '90210', 'GB82WEST12345698765432'),
 (2, 'Bob', 'bob.pii@example.org', '+1-202-555-0102', '123-45-6789', '5500005555555559', 1975, 'nothing here', '10001', NULL);
CREATE VIEW v_cust AS SELECT id, email AS contact FROM customers;
CREATE TABLE orders (id int, customer_id int, amount numeric);
INSERT INTO orders VALUES (10, 1, 9.99), (11, 2, 5.00);
";

/// Raw PII values, with the trivial encodings of each.
fn forbidden() -> Vec<Vec<u8>> {
    let raw = [
        "alice.pii@example.com",
        "bob.pii@example.org",
        "zed.secret@corp.example",
        "555-0101",
        "555-0102",
        "123-45-6789",
        "4111111111111111",
        "5500005555555559",
        "5500 0055 5555 5559",
        "90210",
        "GB82WEST12345698765432",
    ];
    let mut out = Vec::new();
    for v in raw {
        let digits: String = v.chars().filter(|c| c.is_ascii_digit()).collect();
        let reversed: String = v.chars().rev().collect();
        let b64 = base64_encode(v.as_bytes());
        let hex: String = v.bytes().map(|b| format!("{b:02x}")).collect();
        for s in [v.to_owned(), v.to_uppercase(), reversed, b64, hex] {
            out.push(s.into_bytes());
        }
        if digits.len() >= 9 {
            out.push(digits.into_bytes());
        }
    }
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
    }
    s
}

fn assert_clean(received: &[u8], context: &str) {
    for f in forbidden() {
        if let Some(at) = received.windows(f.len()).position(|w| w == &f[..]) {
            let from = at.saturating_sub(60);
            panic!(
                "{context}: PII {:?} reached the client: …{}…",
                String::from_utf8_lossy(&f),
                String::from_utf8_lossy(&received[from..(at + f.len() + 20).min(received.len())])
            );
        }
    }
}

async fn env() -> Env {
    std::env::set_var("AIRLOCK_TEST_MASK_KEY", "test-key-0123456789");
    let env = Env::start_with(EnvOptions {
        rules_toml: Some(RULES.into()),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    env
}

/// Every bypass shape, over the simple protocol, with every byte checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_pii_in_any_byte_whatever_the_query() {
    let env = env().await;
    let mut c = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let shapes = [
        "SELECT email FROM customers",
        "SELECT * FROM customers",
        "SELECT c.* FROM customers c",
        "SELECT lower(email), upper(email), initcap(email) FROM customers",
        "SELECT email || '' AS e, concat(email, 'x'), format('%s', email) FROM customers",
        "SELECT substr(email, 1, 100), left(email, 50), reverse(email) FROM customers",
        "SELECT encode(email::bytea, 'base64'), encode(email::bytea, 'hex'), md5(email) FROM customers",
        "SELECT CASE WHEN id > 0 THEN email END, coalesce(email, 'none') FROM customers",
        "SELECT string_agg(email, ','), array_agg(email) FROM customers",
        "SELECT (SELECT email FROM customers LIMIT 1)",
        "SELECT 'x' UNION ALL SELECT email FROM customers",
        "WITH x AS (SELECT email AS m FROM customers) SELECT m FROM x",
        "SELECT u.a FROM (SELECT email, phone FROM customers) AS u(a, b)",
        "SELECT lag(email) OVER (ORDER BY id), first_value(card_number) OVER () FROM customers",
        "SELECT translate(card_number, '0123456789', 'abcdefghij'), replace(ssn, '-', '') FROM customers",
        "SELECT json_build_object('e', email), jsonb_build_array(card_number) FROM customers",
        "SELECT ARRAY[email, phone] FROM customers",
        "SELECT * FROM v_cust",
        "SELECT contact FROM v_cust",
        "SELECT x.e FROM customers c, LATERAL (SELECT c.email AS e) x",
        "SELECT notes FROM customers",
        "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id",
        "UPDATE customers SET name = name WHERE id = 1 RETURNING email, card_number",
        "SELECT birth_year, ssn FROM customers",
        // Refused outright: values that cannot be masked safely.
        "SELECT c FROM customers c",
        "SELECT row_to_json(c) FROM customers c",
        "SELECT to_jsonb(c) FROM customers c",
        "SELECT c::text FROM customers c",
        // A function of the whole row in field notation (`c.f` is
        // `f(c)`; review finding).
        "SELECT c.row_to_json FROM customers c",
        "SELECT c.to_jsonb, c.quote_literal FROM customers c",
        "SELECT customers.concat FROM customers",
        "SELECT c.json_build_array FROM customers c",
        "SELECT json_agg(email) FROM customers",
        "CREATE TABLE stolen AS SELECT email FROM customers",
        "INSERT INTO orders (id) SELECT length(email) FROM customers",
        "COPY customers TO STDOUT",
        "COPY (SELECT email FROM customers) TO STDOUT",
        // Boolean options in Postgres's other spellings, respelled for the
        // parser only (pgbench -i's `freeze on`).
        "COPY (SELECT email FROM customers) TO STDOUT WITH (FORMAT csv, HEADER on)",
        "COPY customers TO STDOUT (HEADER 1)",
        "COPY (SELECT 1, header no FROM customers) TO STDOUT (HEADER yes)",
        // Errors that would echo a value.
        "SELECT email::int FROM customers",
        "SELECT card_number::date FROM customers",
    ];
    let mut with_rows = 0;
    for sql in shapes {
        let query = format!("{{\"Query\": {}}}", serde_json_string(sql));
        let mut out = bytes::BytesMut::new();
        crate::common::raw::encode_message(&query, &mut out);
        c.send(&out).await;
        let frames = c.until_ready(1).await;
        assert!(!frames.is_empty(), "{sql}: no reply");
        if frames.iter().any(|f| f.tag() == b'D') {
            with_rows += 1;
        } else {
            eprintln!("no rows: {sql}");
        }
    }
    // The masking shapes return (masked) rows; only the unsafe ones are refused.
    assert!(with_rows >= 23, "only {with_rows} shapes returned rows");
    // A notification carrying PII (through LISTEN on the same session).
    for sql in [
        "LISTEN ch",
        "NOTIFY ch, 'mail alice.pii@example.com now'",
        "SET application_name = 'alice.pii@example.com'",
    ] {
        let mut out = bytes::BytesMut::new();
        crate::common::raw::encode_message(
            &format!("{{\"Query\": {}}}", serde_json_string(sql)),
            &mut out,
        );
        c.send(&out).await;
        c.until_ready(1).await;
    }
    assert_clean(&c.received, "simple protocol");
    // The refused ones did not run.
    let n: i64 = env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'stolen'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

fn serde_json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_text_and_binary_formats() {
    let env = env().await;
    let c = env.agent().await;
    // tokio-postgres: extended protocol, binary results.
    let rows = c
        .query(
            "SELECT id, name, email, card_number, ssn, phone, birth_year FROM customers ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let r = &rows[0];
    assert_eq!(r.get::<_, i32>(0), 1);
    assert_eq!(r.get::<_, &str>(1), "Alice");
    let email: &str = r.get(2);
    assert!(
        email.ends_with("@example.com") && !email.contains("alice"),
        "{email}"
    );
    let card: &str = r.get(3);
    assert!(card.ends_with("1111") && !card.contains("411111"), "{card}");
    let ssn: &str = r.get(4);
    assert!(ssn.starts_with("h:"), "{ssn}");
    assert_ne!(r.get::<_, &str>(5), "+1-202-555-0101");
    // A masked integer stays a valid value for its type: NULL.
    assert_eq!(r.get::<_, Option<i32>>(6), None);
    // `fake` keeps the shape (five digits), `null` gives NULL.
    let z = c
        .query_one("SELECT zip, iban FROM customers WHERE id = 1", &[])
        .await
        .unwrap();
    let zip: &str = z.get(0);
    assert!(
        zip.len() == 5 && zip.chars().all(|ch| ch.is_ascii_digit()) && zip != "90210",
        "{zip}"
    );
    assert_eq!(z.get::<_, Option<&str>>(1), None);

    // Simple protocol: text format, same masks.
    let msgs = c
        .simple_query("SELECT email, card_number, birth_year FROM customers ORDER BY id")
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get(0), Some(email));
    assert_eq!(row.get(1), Some(card));
    assert_eq!(row.get(2), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_values_still_join_and_group() {
    let env = env().await;
    let c = env.agent().await;
    // Both customers share an SSN: GROUP BY sees one group, one token.
    let rows = c
        .query("SELECT ssn, count(*) FROM customers GROUP BY ssn", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(1), 2);
    let token: String = rows[0].get(0);
    // The same value gives the same token in another query and session.
    let other = env.agent().await;
    let again: Vec<String> = other
        .query("SELECT ssn FROM customers ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(again, vec![token.clone(), token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statement_reused_many_times_stays_masked() {
    let env = env().await;
    let c = env.agent().await;
    let stmt = c
        .prepare("SELECT name, email FROM customers WHERE id = $1")
        .await
        .unwrap();
    for i in 0..50 {
        let id = 1 + (i % 2);
        let r = c.query_one(&stmt, &[&id]).await.unwrap();
        let email: &str = r.get(1);
        assert!(!email.contains(".pii@"), "{email}");
        assert!(["Alice", "Bob"].contains(&r.get::<_, &str>(0)));
    }
}

/// The same text run again after its table changed must be judged on the
/// new columns: airlock reuses a result's masking work when the statement
/// repeats, and must notice when the result is no longer the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_text_after_the_table_changed_is_masked_again() {
    let env = env().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE drift (id int, note text); INSERT INTO drift VALUES (1, 'plain')",
        )
        .await
        .unwrap();
    let c = env.agent().await;
    let rows = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<Vec<Option<String>>> {
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    };
    for _ in 0..3 {
        let r = rows(c.simple_query("SELECT * FROM drift").await.unwrap());
        assert_eq!(r, vec![vec![Some("1".into()), Some("plain".into())]]);
    }
    // Behind airlock's back: a new column whose name a rule masks.
    env.direct()
        .await
        .batch_execute(
            "ALTER TABLE drift ADD COLUMN card_number text; UPDATE drift SET card_number = '4111111111111111'",
        )
        .await
        .unwrap();
    // The first run meets a column the catalog snapshot lacks: refused as
    // of a schema that changed while it ran, and the catalog read again
    // (see pg_catalog_changes::pg_tables_changed_outside_airlock_are_read_again).
    let first = c.simple_query("SELECT * FROM drift").await;
    let r = match first {
        Ok(msgs) => rows(msgs),
        Err(e) => {
            assert_eq!(
                e.code(),
                Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
                "{e:?}"
            );
            rows(c.simple_query("SELECT * FROM drift").await.unwrap())
        }
    };
    assert_eq!(r[0].len(), 3);
    assert_eq!(r[0][2].as_deref(), Some("************1111"), "{r:?}");
    // Through airlock: the plain column renamed to a masked name, so the
    // text and the width stay the same.
    // (One statement a request: nothing but transaction and session
    // statements may follow DDL in one while masking applies.)
    for sql in [
        "ALTER TABLE drift DROP COLUMN card_number",
        "ALTER TABLE drift RENAME COLUMN note TO card_number",
        "UPDATE drift SET card_number = '5500005555555559' WHERE id = 1",
    ] {
        c.batch_execute(sql).await.unwrap();
    }
    // One text, one plan (a function's result is opaque to lineage), one
    // width, but two different results: the second names a masked column.
    let redefine = |col: &str, value: &str| {
        format!(
            "DROP FUNCTION IF EXISTS f(); CREATE FUNCTION f() RETURNS TABLE (id int, {col} text) \
             LANGUAGE sql AS $$ SELECT 1, '{value}' $$"
        )
    };
    let direct = env.direct().await;
    direct
        .batch_execute(&redefine("note", "plain"))
        .await
        .unwrap();
    let r = rows(c.simple_query("SELECT * FROM f()").await.unwrap());
    assert_eq!(r, vec![vec![Some("1".into()), Some("plain".into())]]);
    direct
        .batch_execute(&redefine("card_number", "4111111111111111"))
        .await
        .unwrap();
    let r = rows(c.simple_query("SELECT * FROM f()").await.unwrap());
    assert_eq!(r[0][1].as_deref(), Some("************1111"), "{r:?}");
    // (This session's catalog snapshot predates the rename, so the column
    // is still "note" to the lineage analysis; the card detector masks it.)
    for _ in 0..2 {
        let r = rows(c.simple_query("SELECT * FROM drift").await.unwrap());
        assert_eq!(r[0].len(), 2);
        let v = r[0][1].as_deref().unwrap_or_default();
        assert!(!v.contains("5500005555555559") && !v.is_empty(), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_copy() {
    let env = env().await;
    let out = env.psql(&[
        &env.agent_url(),
        "-XAt",
        "-c",
        "SELECT name, email, card_number FROM customers ORDER BY id",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("Alice|****@example.com|"), "{stdout}");
    assert_clean(stdout.as_bytes(), "psql");

    // COPY of clean columns is exact; COPY of a masked table is refused.
    let dump = env.path("clean.csv");
    let out = env.psql(&[
        &env.agent_url(),
        "-XAt",
        "-c",
        &format!(
            "\\copy (SELECT id, name FROM customers ORDER BY id) TO '{}' CSV",
            dump.display()
        ),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&dump).unwrap(), "1,Alice\n2,Bob\n");
    let out = env.psql(&[&env.agent_url(), "-XAt", "-c", "\\copy customers TO STDOUT"]);
    assert!(!out.status.success());
    assert_clean(&out.stdout, "copy");
    assert_clean(&out.stderr, "copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_larger_than_the_streaming_threshold_are_masked_too() {
    let env = env().await;
    env.direct()
        .await
        .batch_execute(
            "UPDATE customers SET email = repeat('x', 400000) || '.pii@example.com' WHERE id = 1",
        )
        .await
        .unwrap();
    let mut c = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = bytes::BytesMut::new();
    crate::common::raw::encode_message(
        r#"{"Query": "SELECT email FROM customers ORDER BY id"}"#,
        &mut out,
    );
    c.send(&out).await;
    let frames = c.until_ready(1).await;
    assert!(frames.iter().any(|f| f.tag() == b'D'));
    let leaked = c.received.windows(16).any(|w| w == b".pii@example.com");
    assert!(
        !leaked,
        "a 400 KB masked value was streamed through unmasked"
    );
}

/// A view created in the same session over a masked column is masked when
/// read in that session, through the reloaded catalog. A temporary one
/// over masked data is refused: airlock's catalog leaves temporary
/// relations out, so masking could not follow what it reads (a computed
/// value read through one came back raw). A new session (with a fresh
/// snapshot) sees the view's own masking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_created_in_the_session_is_masked() {
    let env = env().await;
    let c = env.agent().await;
    c.batch_execute("CREATE VIEW v_phone AS SELECT id, phone AS p FROM customers")
        .await
        .unwrap();
    // A temporary view is not in any catalog snapshot, so what it reads
    // could not be followed: over masked data, it is refused (a computed
    // value read through one came back raw), even shadowing a harmless
    // table's name.
    for make_temp in [
        "CREATE TEMP VIEW t_phone AS SELECT phone FROM customers",
        "CREATE TEMP VIEW orders AS SELECT phone AS amount FROM customers",
        "BEGIN; CREATE TEMP VIEW t_phone AS SELECT phone || '' AS p FROM customers",
    ] {
        let refused = c.batch_execute(make_temp).await.expect_err(make_temp);
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{make_temp}"
        );
    }
    for sql in ["SELECT p FROM v_phone", "SELECT * FROM v_phone"] {
        let msgs = c.simple_query(sql).await.unwrap();
        for m in msgs {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                for i in 0..r.len() {
                    let v = r.get(i).unwrap_or_default();
                    assert!(!v.contains("555-01"), "{sql}: {v}");
                }
            }
        }
    }
    // `*` over the shadowing view: masking planned `public.orders`'s three
    // columns, the server sends one. The result is refused and the session
    // ends (the analysis was wrong: fail closed), with nothing leaked.
    let (_, got) = simple_bytes(&c, "SELECT * FROM orders").await;
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("555-01"), "{text}");
    let fresh = env.agent().await;
    let r = fresh
        .query_one("SELECT p FROM v_phone WHERE id = 1", &[])
        .await
        .unwrap();
    let p: &str = r.get(0);
    assert!(!p.contains("555-01"), "{p}");
}

/// A temporary table or view shadows any relation of its name (Postgres
/// looks in the session's temporary schema first), and no catalog
/// snapshot has it: a copy of masked data renamed to an unmasked table's
/// name read raw (re-check finding). Temporary relations cannot be made
/// while masking applies, in any spelling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_relations_cannot_be_made_while_masking_applies() {
    let env = env().await;
    let c = env.agent().await;
    for sql in [
        "CREATE TEMP TABLE customers (id int, phone text)",
        "CREATE TEMPORARY TABLE t AS SELECT 1 AS x",
        "CREATE TABLE pg_temp.customers (id int, phone text)",
        "CREATE TABLE PG_TEMP.orders (id int)",
        "CREATE TEMP VIEW v AS SELECT 1 AS x",
        "CREATE VIEW pg_temp.orders AS SELECT id, phone AS amount FROM customers",
        "SELECT 1 AS x INTO TEMP t",
        "SELECT 1 AS x INTO TEMPORARY TABLE t",
    ] {
        let err = c.batch_execute(sql).await.expect_err(sql);
        assert!(format!("{err:?}").contains("temporary"), "{sql}: {err:?}");
    }
    let n: i64 = env
        .direct()
        .await
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relpersistence = 't'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a temporary relation was made");
    // A plain table may still be made, and read.
    c.batch_execute("CREATE TABLE scratch_ok (x int)")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO scratch_ok VALUES (1)")
        .await
        .unwrap();
}

/// Postgres looks for unqualified names in the schema named after the
/// session's user (`$user`, first on the default search_path) before
/// `public`. A view the agent puts there, new or shadowing a harmless
/// table's name, is read through masking's lineage like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_in_the_users_own_schema_is_resolved_as_postgres_does() {
    let env = env().await;
    let c = env.agent().await;
    let user: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let schema = format!("\"{user}\"");
    // An agent may not make it (it would shadow tables for every session
    // of the upstream user, red-team finding): a DBA does.
    for ddl in [
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE SCHEMA AUTHORIZATION {schema}"),
        format!("CREATE SCHEMA other; ALTER SCHEMA other RENAME TO {schema}"),
    ] {
        let e = c.batch_execute(&ddl).await.unwrap_err();
        let message = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(
            message.contains("builtin.search-path") || message.contains("builtin.role-change"),
            "{ddl}: {message}"
        );
    }
    env.direct()
        .await
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    for ddl in [
        format!("CREATE VIEW {schema}.foo AS SELECT id, phone AS e, card_number AS k FROM public.customers"),
        format!("CREATE VIEW {schema}.orders AS SELECT id, reverse(phone) AS amount FROM public.customers"),
    ] {
        c.batch_execute(&ddl).await.unwrap_or_else(|e| panic!("{ddl}: {e:?}"));
    }
    for sql in [
        "SELECT * FROM foo",
        "SELECT e, k FROM foo",
        "SELECT * FROM orders",
        "SELECT amount FROM orders",
        "SELECT amount || '' FROM orders",
    ] {
        let (_, got) = simple_bytes(&c, sql).await;
        assert_clean(&got, sql);
        let (_, got) = extended_bytes(&c, sql).await;
        assert_clean(&got, sql);
    }
    // A new session too.
    let fresh = env.agent().await;
    let (_, got) = simple_bytes(&fresh, "SELECT * FROM orders").await;
    assert_clean(&got, "new session");
}

/// A partition (at any depth) or an inheritance child holds its parent's
/// rows under another name: reading it directly is masked by the parent's
/// rules, over the simple and the extended protocol (whose RowDescription
/// names the child's OID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_inheritance_children_are_masked_as_their_parent() {
    let env = env().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE accounts (id int, region text, email text, phone text) PARTITION BY LIST (region);
             CREATE TABLE accounts_eu PARTITION OF accounts FOR VALUES IN ('eu') PARTITION BY RANGE (id);
             CREATE SCHEMA archive;
             CREATE TABLE archive.accounts_eu_low PARTITION OF accounts_eu FOR VALUES FROM (0) TO (1000);
             CREATE TABLE accounts_us (id int, region text, email text, phone text);
             ALTER TABLE accounts ATTACH PARTITION accounts_us FOR VALUES IN ('us');
             INSERT INTO accounts VALUES (1, 'eu', 'alice.pii@example.com', '+1-202-555-0101'),
                                         (2, 'us', 'bob.pii@example.org', '+1-202-555-0102');
             CREATE TABLE customers_old (archived date) INHERITS (customers);
             INSERT INTO customers_old SELECT *, now() FROM customers;",
        )
        .await
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "SELECT email FROM accounts_eu",
        "SELECT email FROM archive.accounts_eu_low",
        "SELECT * FROM archive.accounts_eu_low",
        "SELECT email, phone FROM accounts_us",
        "SELECT lower(phone) FROM accounts_us",
        "SELECT phone FROM archive.accounts_eu_low",
        "SELECT email FROM accounts",
        "SELECT a.* FROM accounts_eu a",
        "SELECT phone FROM accounts_us UNION ALL SELECT phone FROM archive.accounts_eu_low",
        "SELECT email, phone, ssn, card_number, zip, iban FROM customers_old",
        "SELECT * FROM customers_old",
        "SELECT phone || '' FROM customers_old",
        "SELECT o FROM customers_old o",
        "SELECT row_to_json(o) FROM customers_old o",
    ] {
        let (_, got) = simple_bytes(&c, sql).await;
        assert_clean(&got, sql);
        let (_, got) = extended_bytes(&c, sql).await;
        assert_clean(&got, sql);
    }
    // A child the agent creates cannot compute a stored column from an
    // inherited masked one (red-team finding: the INSERT of the parent's
    // rows that fills it is a same-rule copy, and the generated column
    // held the raw phone).
    for ddl in [
        "CREATE TABLE c_child (g text GENERATED ALWAYS AS (phone) STORED) INHERITS (customers)",
        "CREATE TABLE c_child (g text GENERATED ALWAYS AS (upper(phone)) STORED) INHERITS (customers_old)",
        "CREATE TABLE a_child (g text GENERATED ALWAYS AS (phone || '') STORED) INHERITS (accounts_us)",
    ] {
        let err = c.batch_execute(ddl).await.expect_err(ddl);
        assert!(format!("{err:?}").contains("phone"), "{ddl}: {err:?}");
    }
    c.batch_execute(
        "CREATE TABLE c_child (g int GENERATED ALWAYS AS (id * 2) STORED) INHERITS (customers)",
    )
    .await
    .unwrap();
    // Masked, not refused: the rows still come, with the parent's masks.
    let (n, got) = simple_bytes(&c, "SELECT phone FROM archive.accounts_eu_low").await;
    assert_eq!(n, Some(1), "{}", String::from_utf8_lossy(&got));
    assert_eq!(got, b"****|");
    let (n, got) = extended_bytes(&c, "SELECT phone FROM accounts_us").await;
    assert_eq!((n, got), (Some(1), b"****|".to_vec()));

    // A partition made on the server itself (a maintenance job), which
    // the session's catalog snapshot lacks (red-team finding: `phone ||
    // ''` came back raw): refused, and the catalog is read again, so that
    // the statement run again is masked.
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE accounts_n1 PARTITION OF accounts FOR VALUES IN ('n1');
             INSERT INTO accounts VALUES (3, 'n1', 'alice.pii@example.com', '+1-202-555-0101');
             CREATE TABLE plain_new (x text); INSERT INTO plain_new VALUES ('visible');",
        )
        .await
        .unwrap();
    let (n, got) = simple_bytes(&c, "SELECT lower(phone) FROM public.accounts_n1").await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        n.is_none()
            && text.contains("builtin.unknown-source")
            && text.contains("run the statement again"),
        "{text}"
    );
    for sql in [
        "SELECT phone || '' FROM accounts_n1",
        "SELECT lower(phone) FROM public.accounts_n1",
        "SELECT * FROM accounts_n1",
    ] {
        let (n, got) = simple_bytes(&c, sql).await;
        assert_eq!(n, Some(1), "{sql}: {}", String::from_utf8_lossy(&got));
        assert_clean(&got, sql);
    }
    // A new table with nothing masked reads as it is, once the catalog
    // is read again (it was, above).
    let (_, got) = simple_bytes(&c, "SELECT x || '' FROM plain_new").await;
    assert_eq!(got, b"visible|");
    // A child of a masked and an unmasked table: rows in it are read
    // through the unmasked parent as they are. The agent may not make one
    // (re-check finding: an UPDATE through the masked parent reached it);
    // into one the DBA made, masked data cannot be copied (review
    // finding: the copy counted as a same-rule copy).
    c.batch_execute("CREATE TABLE pub (phone text)")
        .await
        .unwrap();
    let err = c
        .batch_execute("CREATE TABLE launder () INHERITS (customers, pub)")
        .await
        .expect_err("a child of a masked and an unmasked table");
    assert!(format!("{err:?}").contains("differently"), "{err:?}");
    env.direct()
        .await
        .batch_execute("CREATE TABLE launder () INHERITS (customers, pub)")
        .await
        .unwrap();
    for sql in [
        // The first may be refused as naming a relation the snapshot
        // lacks; then it and the second are refused for the copy.
        "INSERT INTO launder (id, phone) SELECT id, phone FROM customers",
        "INSERT INTO launder (id, phone) SELECT id, phone FROM customers",
        "INSERT INTO launder (id, phone) SELECT id, phone FROM customers_old",
    ] {
        c.batch_execute(sql).await.expect_err(sql);
    }
    let (_, got) = simple_bytes(&c, "SELECT phone || '' FROM pub").await;
    assert_clean(&got, "pub");
    // Nor make one by adding the column to the unmasked parent later,
    // which Postgres merges with the child's masked one (re-check finding).
    c.batch_execute("CREATE TABLE u5 (id int)").await.unwrap();
    c.batch_execute("CREATE TABLE c9 () INHERITS (customers, u5)")
        .await
        .unwrap();
    let err = c
        .batch_execute("ALTER TABLE u5 ADD COLUMN phone text")
        .await
        .expect_err("a column merged with a masked one");
    assert!(format!("{err:?}").contains("merge"), "{err:?}");
    c.batch_execute("ALTER TABLE u5 ADD COLUMN note2 text")
        .await
        .unwrap();
    // A generated column naming the new table itself (re-check finding:
    // `c.phone` was taken for an unmasked column of c).
    for ddl in [
        "CREATE TABLE g10 (g text GENERATED ALWAYS AS (upper(g10.phone)) STORED) INHERITS (customers)",
        "CREATE TABLE public.g18 (g text GENERATED ALWAYS AS (public.g18.phone) STORED) INHERITS (customers)",
    ] {
        c.batch_execute(ddl).await.expect_err(ddl);
    }
    // `TABLE ONLY x` after WITH lost x (re-check finding): refused.
    let (n, _) = simple_bytes(&c, "WITH a AS (SELECT 1) TABLE ONLY accounts_us").await;
    assert_eq!(n, None);
}

/// Every value of every row a simple query returned, and any error text.
async fn simple_bytes(c: &tokio_postgres::Client, sql: &str) -> (Option<usize>, Vec<u8>) {
    match c.simple_query(sql).await {
        Ok(msgs) => {
            let mut out = Vec::new();
            let mut n = 0;
            for m in msgs {
                if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                    n += 1;
                    for i in 0..r.len() {
                        out.extend_from_slice(r.get(i).unwrap_or_default().as_bytes());
                        out.push(b'|');
                    }
                }
            }
            (Some(n), out)
        }
        Err(e) => (None, format!("{e:?}").into_bytes()),
    }
}

/// The same through the extended protocol (prepared, binary results); all
/// columns are read as text.
async fn extended_bytes(c: &tokio_postgres::Client, sql: &str) -> (Option<usize>, Vec<u8>) {
    match c.query(sql, &[]).await {
        Ok(rows) => {
            let mut out = Vec::new();
            for r in &rows {
                for i in 0..r.len() {
                    let v: Option<String> = r.try_get(i).unwrap_or_default();
                    out.extend_from_slice(v.unwrap_or_default().as_bytes());
                    out.push(b'|');
                }
            }
            (Some(rows.len()), out)
        }
        Err(e) => (None, format!("{e:?}").into_bytes()),
    }
}

/// Red-team bypass (MySQL, same lineage code here): an unqualified masked
/// column in a scalar subquery over a relation outside the catalog
/// snapshot (pg_catalog, information_schema) was taken to be that
/// relation's; the server resolves it to the outer query's column. It is
/// masked, over the simple and the extended protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subquery_over_catalog_relation_cannot_unmask_outer_columns() {
    let env = env().await;
    let c = env.agent().await;
    for sql in [
        "SELECT (SELECT email FROM pg_catalog.pg_class LIMIT 1) FROM customers",
        "SELECT (SELECT encode(email::bytea, 'hex') FROM pg_class LIMIT 1) AS e FROM customers",
        "select (select \"email\" from information_schema.tables limit 1) from \"customers\"",
        "SELECT (SELECT /* c */ reverse(EMAIL) FROM PG_CATALOG.PG_NAMESPACE LIMIT 1) FROM customers -- x",
        "SELECT (SELECT card_number || '' FROM pg_catalog.pg_type LIMIT 1) FROM customers",
        "SELECT * FROM (SELECT (SELECT replace(ssn, '-', '') FROM pg_class LIMIT 1) AS s FROM customers) t",
        "SELECT (SELECT (SELECT phone FROM pg_class LIMIT 1) FROM pg_type LIMIT 1)::text FROM customers",
    ] {
        for (way, (rows, bytes)) in [
            ("simple", simple_bytes(&c, sql).await),
            ("extended", extended_bytes(&c, sql).await),
        ] {
            assert_clean(&bytes, &format!("{sql} ({way})"));
            assert_eq!(
                rows,
                Some(2),
                "{sql} ({way}): {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    // The catalog relation's own columns are untouched.
    let r = c
        .query_one(
            "SELECT (SELECT relname::text FROM pg_class WHERE relname = 'pg_type') FROM customers WHERE id = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "pg_type");
}

/// Red-team bypasses (MySQL; the write rules are shared): a value computed
/// from a masked column was accepted into any masked column, where a
/// weaker strategy showed it; UPDATE ... FROM, upserts and MERGE write by
/// the same rule: only an unmodified copy into a column of the same rule.
/// Nothing refused is written; legitimate writes still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_masked_values_cannot_be_written_anywhere() {
    let env = env().await;
    let d = env.direct().await;
    d.batch_execute(
        "CREATE UNIQUE INDEX ON customers (id);
         CREATE TABLE contacts (id int PRIMARY KEY, email text);
         INSERT INTO contacts VALUES (1, 'nobody@contacts.test'), (2, 'nobody2@contacts.test');",
    )
    .await
    .unwrap();
    let snapshot = || async {
        let mut out = Vec::new();
        for q in [
            "SELECT customers::text FROM customers ORDER BY id",
            "SELECT contacts::text FROM contacts ORDER BY id",
            "SELECT orders::text FROM orders ORDER BY id",
        ] {
            for r in d.query(q, &[]).await.unwrap() {
                out.push(r.get::<_, String>(0));
            }
        }
        out
    };
    let before = snapshot().await;
    let c = env.agent().await;
    for sql in [
        "UPDATE customers SET email = 'x@' || card_number WHERE id = 2",
        "UPDATE customers SET email = 'x@' || replace(email, '@', '_') WHERE id = 1",
        "update CUSTOMERS set EMAIL = lower(\"email\") where id = 1",
        "UPDATE customers SET card_number = /* c */ phone WHERE id = 1",
        "UPDATE customers SET (email, name) = (SELECT email, 'x' FROM customers WHERE id = 1) WHERE id = 2",
        "INSERT INTO customers (id, email) SELECT id + 100, 'x@' || replace(email, '@', '_') FROM customers",
        "INSERT INTO customers (id, email) VALUES (100, 'x@' || replace((SELECT email FROM customers WHERE id = 1), '@', '_'))",
        "INSERT INTO customers (id, email) SELECT id + 100, email FROM customers UNION ALL SELECT id + 200, card_number FROM customers",
        "INSERT INTO customers (id, email) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET email = 'x@' || customers.card_number",
        "INSERT INTO customers AS k (id, email) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET email = lower(k.email)",
        "MERGE INTO customers t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET email = 'x@' || t.card_number",
        "MERGE INTO customers t USING orders o ON t.id = o.customer_id WHEN MATCHED THEN UPDATE SET name = t.email",
        "UPDATE contacts k SET email = c.email FROM customers c WHERE c.id = k.id",
        "UPDATE contacts SET email = customers.card_number FROM customers WHERE customers.id = contacts.id",
        "UPDATE orders SET amount = length(c.email) FROM customers c WHERE c.id = orders.customer_id",
    ] {
        for (way, (rows, bytes)) in [
            ("simple", simple_bytes(&c, sql).await),
            ("extended", extended_bytes(&c, sql).await),
        ] {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                rows.is_none() && text.contains("masked"),
                "{sql} ({way}) was not refused by airlock: {text}"
            );
            assert_clean(&bytes, &format!("{sql} ({way})"));
        }
    }
    assert_eq!(snapshot().await, before, "a refused write wrote something");

    // Unmodified same-rule copies and unmasked values still run.
    for sql in [
        "UPDATE customers SET email = email, name = 'Alicia' WHERE id = 1",
        "UPDATE customers SET card_number = c2.card_number FROM customers c2 WHERE c2.id = 1 AND customers.id = 2",
        "UPDATE contacts k SET email = 'n' || c.name || '@x.test' FROM customers c WHERE c.id = k.id",
        "INSERT INTO customers (id, email) VALUES (2, 'bob.new@example.net') ON CONFLICT (id) DO UPDATE SET email = excluded.email",
        "MERGE INTO customers t USING (SELECT 2 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET name = 'Merged', card_number = t.card_number",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    let rows: Vec<String> = d
        .query(
            "SELECT concat_ws(',', name, email, card_number) FROM customers ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            "Alicia,alice.pii@example.com,4111111111111111",
            "Merged,bob.new@example.net,4111111111111111"
        ]
    );
    let k: Vec<String> = d
        .query("SELECT email FROM contacts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(k, ["nAlicia@x.test", "nBob@x.test"]);
}

/// Statements and portals made through the protocol (Parse, Bind) share
/// their namespaces with SQL's: `EXECUTE s` and `FETCH ... FROM p` read
/// their rows by name, as a result lineage cannot attribute to columns.
/// Those of a masked query are refused (with the columns computed, so
/// that neither the table's column numbers nor a detector would catch
/// the values), however the read is made: simple Query, a quoted name,
/// under EXPLAIN ANALYZE, or a Parse of the FETCH whose portal is bound
/// to the masked query only after it. (`EXECUTE` of a statement that SQL
/// PREPARE did not make is refused by the policy already.) A FETCH of an
/// unmasked portal still works, in the forms sqlparser does not read
/// (`FETCH c`, `MOVE ... c`) too, and so does the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_statements_and_portals_cannot_be_read_by_name() {
    let env = env().await;
    let mut c = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let send = |lines: &[&str]| {
        let mut out = bytes::BytesMut::new();
        for line in lines {
            crate::common::raw::encode_message(line, &mut out);
        }
        out
    };
    let query = |sql: &str| format!("{{\"Query\": {}}}", serde_json_string(sql));
    c.send(&send(&[
        &query("BEGIN"),
        r#"{"Parse": {"name": "s", "query": "SELECT phone || '' AS p, birth_year + 0 AS b, zip || '' AS z FROM customers"}}"#,
        r#"{"Parse": {"name": "plain", "query": "SELECT id + 0 AS n FROM orders"}}"#,
        r#"{"Bind": {"portal": "leak", "statement": "s"}}"#,
        r#"{"Bind": {"portal": "Leak", "statement": "s"}}"#,
        r#"{"Bind": {"portal": "fine", "statement": "plain"}}"#,
        r#"{"Sync": null}"#,
    ]))
    .await;
    c.until_ready(2).await;
    for sql in [
        "FETCH ALL FROM leak",
        "FETCH ALL leak",
        "FETCH FORWARD 1 IN LEAK",
        "FETCH NEXT FROM \"Leak\"",
        "EXECUTE s",
        "EXPLAIN ANALYZE EXECUTE s",
        "SELECT 1; FETCH ALL FROM leak",
    ] {
        c.send(&send(&[&query(sql)])).await;
        let frames = c.until_ready(1).await;
        let error = frames.iter().find(|f| f.tag() == b'E');
        assert!(
            error.is_some_and(|e| e.body().escape_ascii().to_string().contains("C42501")),
            "{sql}: not refused: {:?}",
            frames
                .iter()
                .map(|f| f.body().escape_ascii().to_string())
                .collect::<Vec<_>>()
        );
        assert!(
            !frames.iter().any(|f| f.tag() == b'D'),
            "{sql}: rows came back"
        );
        c.send(&send(&[&query("ROLLBACK"), &query("BEGIN")])).await;
        c.until_ready(2).await;
        c.send(&send(&[
            r#"{"Bind": {"portal": "leak", "statement": "s"}}"#,
            r#"{"Bind": {"portal": "Leak", "statement": "s"}}"#,
            r#"{"Bind": {"portal": "fine", "statement": "plain"}}"#,
            r#"{"Sync": null}"#,
        ]))
        .await;
        c.until_ready(1).await;
    }
    // Parsed while `later` is not bound; bound to the masked query before
    // the Execute.
    c.send(&send(&[
        r#"{"Parse": {"name": "f", "query": "FETCH ALL FROM later"}}"#,
        r#"{"Bind": {"portal": "pf", "statement": "f"}}"#,
        r#"{"Bind": {"portal": "later", "statement": "s"}}"#,
        r#"{"Execute": {"portal": "pf"}}"#,
        r#"{"Sync": null}"#,
    ]))
    .await;
    let frames = c.until_ready(1).await;
    assert!(
        frames.iter().any(|f| f.tag() == b'E'),
        "the Execute of a FETCH of a masked portal was not refused"
    );
    assert!(!frames.iter().any(|f| f.tag() == b'D'), "rows came back");
    // Unmasked ones read by name still work, in every form Postgres
    // takes; MOVE returns no rows, so it may move a masked portal too.
    c.send(&send(&[&query("ROLLBACK"), &query("BEGIN")])).await;
    c.until_ready(2).await;
    c.send(&send(&[
        r#"{"Bind": {"portal": "leak", "statement": "s"}}"#,
        r#"{"Bind": {"portal": "fine", "statement": "plain"}}"#,
        r#"{"Sync": null}"#,
    ]))
    .await;
    c.until_ready(1).await;
    for sql in [
        "MOVE FORWARD 0 IN fine",
        "MOVE NEXT leak",
        "FETCH fine",
        "FETCH ALL FROM fine",
        "MOVE FORWARD ALL fine",
        "COMMIT",
    ] {
        c.send(&send(&[&query(sql)])).await;
        let frames = c.until_ready(1).await;
        assert!(
            !frames.iter().any(|f| f.tag() == b'E'),
            "{sql}: {:?}",
            frames
                .iter()
                .map(|f| f.body().escape_ascii().to_string())
                .collect::<Vec<_>>()
        );
        let rows = frames.iter().any(|f| f.tag() == b'D');
        assert_eq!(rows, sql.starts_with("FETCH"), "{sql}: rows {rows}");
    }
    // The same text again, now that `fine` is bound to the masked query:
    // judged afresh, not replayed from the session's memo.
    c.send(&send(&[
        &query("BEGIN"),
        r#"{"Bind": {"portal": "fine", "statement": "s"}}"#,
        r#"{"Sync": null}"#,
        &query("FETCH ALL FROM fine"),
    ]))
    .await;
    let frames = c.until_ready(3).await;
    assert!(
        !frames.iter().any(|f| f.tag() == b'D'),
        "a FETCH allowed before was replayed for a masked portal"
    );
    // A Close the server skipped (after an error) leaves it the portal
    // airlock forgot; a rolled-back savepoint keeps the transaction open.
    c.send(&send(&[
        &query("ROLLBACK"),
        &query("BEGIN"),
        r#"{"Bind": {"portal": "kept", "statement": "s"}}"#,
        r#"{"Sync": null}"#,
        &query("SAVEPOINT a"),
        r#"{"Parse": {"name": "e", "query": "SELECT 1/0"}}"#,
        r#"{"Bind": {"portal": "", "statement": "e"}}"#,
        r#"{"Execute": {"portal": ""}}"#,
        r#"{"Close": {"kind": "P", "name": "kept"}}"#,
        r#"{"Sync": null}"#,
        &query("ROLLBACK TO a"),
    ]))
    .await;
    c.until_ready(6).await;
    c.send(&send(&[&query("FETCH ALL FROM kept")])).await;
    let frames = c.until_ready(1).await;
    assert!(
        !frames.iter().any(|f| f.tag() == b'D'),
        "a portal whose Close the server skipped was read by name"
    );
    assert_clean(&c.received, "reads by name");
}

/// airlock plans a Bind from its own book of the session's statements, so
/// that book must hold what the server holds. The server refuses a Parse
/// of a name it already has, and skips every message after an error until
/// Sync: a Parse or Close it did not carry out must not change what airlock
/// plans with. Each case ends in a Bind and Execute of a masked query that
/// airlock would otherwise have planned as another one. A name whose Parse
/// the server refused stays free, as it does on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_the_server_did_not_change_keep_their_masking() {
    let env = env().await;
    const MASKED: &str = "SELECT phone || '' AS p, zip || '' AS z FROM customers";
    const PLAIN: &str = "SELECT 'x' || '' AS p, 'y' || '' AS z";
    let parse = |name: &str, sql: &str| {
        format!(
            "{{\"Parse\": {{\"name\": \"{name}\", \"query\": {}}}}}",
            serde_json_string(sql)
        )
    };
    let error = [
        parse("e", "SELECT 1/0"),
        r#"{"Bind": {"portal": "", "statement": "e"}}"#.to_string(),
        r#"{"Execute": {"portal": ""}}"#.to_string(),
    ];
    // Bind, Describe of the portal, Execute: as libpq runs a statement.
    let run = |statement: &str| {
        vec![
            format!("{{\"Bind\": {{\"portal\": \"\", \"statement\": \"{statement}\"}}}}"),
            r#"{"Describe": {"kind": "P", "name": ""}}"#.to_string(),
            r#"{"Execute": {"portal": ""}}"#.to_string(),
            r#"{"Sync": null}"#.to_string(),
        ]
    };
    let sync = r#"{"Sync": null}"#.to_string();
    let long = |end: &str| format!("{}{end}", "l".repeat(63));
    // Each case: batches sent one at a time, waiting for each's ReadyForQuery.
    let cases: Vec<(&str, Vec<Vec<String>>)> = vec![
        (
            "a named Parse of a name the server has",
            vec![
                vec![parse("s1", MASKED), sync.clone()],
                vec![parse("s1", PLAIN), sync.clone()],
                run("s1"),
            ],
        ),
        (
            "an unnamed Parse skipped after an error",
            vec![
                vec![parse("", MASKED), sync.clone()],
                [&error[..], &[parse("", PLAIN), sync.clone()]].concat(),
                run(""),
            ],
        ),
        (
            "a Close skipped after an error, then a Parse of the name",
            vec![
                vec![parse("s2", MASKED), sync.clone()],
                [
                    &error[..],
                    &[
                        r#"{"Close": {"kind": "S", "name": "s2"}}"#.to_string(),
                        sync.clone(),
                    ],
                ]
                .concat(),
                vec![parse("s2", PLAIN), sync.clone()],
                run("s2"),
            ],
        ),
        (
            "names that agree on their first 63 bytes (one statement to the server)",
            vec![
                vec![parse(&long("1"), PLAIN), sync.clone()],
                vec![
                    format!(
                        "{{\"Close\": {{\"kind\": \"S\", \"name\": \"{}\"}}}}",
                        long("2")
                    ),
                    sync.clone(),
                ],
                vec![parse(&long("2"), MASKED), sync.clone()],
                run(&long("1")),
            ],
        ),
    ];
    for (case, batches) in cases {
        let mut c = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
        for batch in batches {
            let mut out = bytes::BytesMut::new();
            for line in &batch {
                crate::common::raw::encode_message(line, &mut out);
            }
            c.send(&out).await;
            c.until_ready(1).await;
        }
        assert_clean(&c.received, case);
    }
    // A name whose Parse the server refused is free again, as on the
    // server; a name in use is refused as the server refuses it.
    let mut c = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    for (batch, expect) in [
        (
            vec![
                parse("s3", "SELECT no_such_column FROM customers"),
                sync.clone(),
            ],
            "42703",
        ),
        (
            vec![parse("s3", "SELECT id FROM customers"), sync.clone()],
            "",
        ),
        (
            vec![parse("s3", "SELECT id FROM customers"), sync.clone()],
            "42P05",
        ),
        (run("s3"), ""),
    ] {
        let mut out = bytes::BytesMut::new();
        for line in &batch {
            crate::common::raw::encode_message(line, &mut out);
        }
        c.send(&out).await;
        let frames = c.until_ready(1).await;
        let error = frames
            .iter()
            .find(|f| f.tag() == b'E')
            .map(|f| f.body().escape_ascii().to_string());
        match expect {
            "" => assert!(error.is_none(), "{batch:?}: {error:?}"),
            code => assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains(&format!("C{code}"))),
                "{batch:?}: {error:?}"
            ),
        }
    }
    // The same, pipelined: the batch the server skips part of and the one
    // that runs the statement are sent together, so airlock plans the
    // second before it hears of the error. The rows must not come back
    // (the session may end).
    let mut c = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    let mut out = bytes::BytesMut::new();
    for line in [parse("", MASKED), sync.clone()] {
        crate::common::raw::encode_message(&line, &mut out);
    }
    c.send(&out).await;
    c.until_ready(1).await;
    let mut out = bytes::BytesMut::new();
    for line in [&error[..], &[parse("", PLAIN), sync.clone()], &run("")[..]].concat() {
        crate::common::raw::encode_message(&line, &mut out);
    }
    c.send(&out).await;
    c.until_ready(2).await;
    assert_clean(&c.received, "pipelined");
    // Again, with the second batch opening with a Describe (which waits
    // for nothing) before its Bind.
    let describe = r#"{"Describe": {"kind": "S", "name": ""}}"#.to_string();
    let mut out = bytes::BytesMut::new();
    for line in [
        &[parse("", MASKED), sync.clone()][..],
        &error[..],
        &[parse("", PLAIN), sync.clone(), describe],
        &run("")[..],
    ]
    .concat()
    {
        crate::common::raw::encode_message(&line, &mut out);
    }
    c.send(&out).await;
    c.until_ready(3).await;
    assert_clean(&c.received, "pipelined, Describe first");
}

/// Observe mode (`enforce = false`) only logs what the policy's rules
/// would refuse; the built-in rules masking depends on still refuse in a
/// session that masks (red-team finding: `query_to_xml` ran SQL given as
/// text, which masking cannot see into, and returned every email in
/// clear). What only the policy refuses (here a denied table) still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_keeps_the_builtins_masking_needs() {
    std::env::set_var("AIRLOCK_TEST_MASK_KEY", "test-key-0123456789");
    let rules = RULES.replace(
        "allow_statements = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]",
        "allow_statements = [\"read\", \"write\", \"ddl\", \"session\", \"transaction\"]\nenforce = false\ndeny_tables = [\"public.orders\"]",
    );
    let mut env = Env::start_with(EnvOptions {
        rules_toml: Some(rules),
        ..Default::default()
    })
    .await;
    env.direct().await.batch_execute(SETUP).await.unwrap();
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    for sql in [
        "SELECT query_to_xml('select email, phone from customers', true, false, '')",
        "SELECT query_to_json('select email from customers', true)",
        "DO $$ BEGIN RAISE NOTICE '%', (SELECT string_agg(phone, ',') FROM customers); END $$",
        "SELECT set_config('search_path', 'elsewhere, public', false)",
        "SELECT (xpath('/row/email/text()', query_to_xml('select email from customers', true, false, '')))[1]::text",
    ] {
        let before = raw.received.len();
        let q = serde_json::json!({ "Query": sql }).to_string();
        raw.send(&crate::common::raw::encode_all(&[&q])).await;
        raw.until_ready(1).await;
        let got = String::from_utf8_lossy(&raw.received[before..]).into_owned();
        assert!(got.contains("builtin."), "{sql}: {got}");
    }
    assert_clean(&raw.received, "observe mode");
    // The policy's own rule is observed: the statement runs.
    let c = env.agent().await;
    let rows = c.simple_query("SELECT id FROM orders").await.unwrap();
    assert!(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
    drop(c);
    drop(raw);
    env.stop().await;
}

/// A column of one of the server's own table functions is what the
/// function computes from its arguments: `SELECT x FROM unnest(...) x`
/// names the function's column `x`, and reads nothing masked unless the
/// arguments do (new-user walkthrough: it was refused as a whole row that
/// might hold a column a by-name mask covers, which broke psql's `\d+`
/// and `pgbench -i`'s `generate_series`). Functions made on the server,
/// and arguments that carry masked data, are still refused or masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_table_functions_and_psql_describe_work_while_masking() {
    let mut env = env().await;
    // A DBA's function that shadows a built-in's name and returns rows
    // of the masked table.
    env.direct()
        .await
        .batch_execute(
            "CREATE FUNCTION public.string_to_table(n int) RETURNS SETOF customers \
             LANGUAGE sql AS 'SELECT * FROM customers LIMIT n'; \
             CREATE FUNCTION public.customer_rows() RETURNS SETOF customers \
             LANGUAGE sql AS 'SELECT * FROM customers'",
        )
        .await
        .unwrap();
    let c = env.agent().await;
    for (sql, rows) in [
        ("SELECT x FROM unnest(ARRAY[1, 2]) x", 2),
        ("SELECT x FROM pg_catalog.unnest(ARRAY['a', 'b']) AS x", 2),
        ("SELECT g FROM generate_series(1, 3) g", 3),
        ("SELECT g, g.g FROM generate_series(1, 3) AS g", 3),
        ("SELECT x FROM unnest(ARRAY['a', 'b']) WITH ORDINALITY x", 2),
        ("SELECT w FROM regexp_split_to_table('a b c', ' ') w", 3),
        (
            "SELECT array_to_string(array(SELECT 'toast.' || x FROM pg_catalog.unnest(ARRAY['k=v']) x), ', ')",
            1,
        ),
    ] {
        let got = c
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        let n = got
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        assert_eq!(n, rows, "{sql}");
    }
    // psql's describe commands read the catalogs with such functions.
    for meta in [
        "\\d+ orders",
        "\\d+ customers",
        "\\d v_cust",
        "\\dt",
        "\\df",
        "\\dv",
        "\\dn",
        "\\du",
        "\\l",
    ] {
        let out = env.psql(&[&env.agent_url(), "-X", "-c", meta]);
        assert!(
            out.status.success(),
            "{meta}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&out.stdout, meta);
    }
    // Masked data passed in, or rows from a function made on the server:
    // masked or refused, never in clear.
    let mut raw = RawClient::login(env.port, AGENT, AGENT_PW, DB).await;
    for sql in [
        "SELECT x FROM unnest(ARRAY(SELECT email FROM customers)) x",
        "SELECT x FROM unnest(ARRAY(SELECT c FROM customers c)) x",
        "SELECT x::text FROM unnest(ARRAY(SELECT c FROM customers c)) x",
        "SELECT x FROM unnest(ARRAY(SELECT card_number FROM customers)) WITH ORDINALITY x",
        "SELECT u FROM unnest(ARRAY(SELECT email FROM customers), ARRAY[1, 2]) u",
        "SELECT j FROM json_each(json_build_object('e', (SELECT email FROM customers LIMIT 1))) j",
        "SELECT g FROM string_to_table(2) g",
        "SELECT g::text FROM public.string_to_table(2) g",
        "SELECT g::text FROM pg_catalog.string_to_table('a b', ' ') g",
        "SELECT r FROM customer_rows() r",
        "SELECT r FROM pg_catalog.unnest(ARRAY(SELECT phone FROM customers)) r",
    ] {
        let q = serde_json::json!({ "Query": sql }).to_string();
        raw.send(&crate::common::raw::encode_all(&[&q])).await;
        raw.until_ready(1).await;
    }
    assert_clean(&raw.received, "table functions over masked data");
    drop(raw);
    drop(c);
    env.stop().await;
}

/// A masked table's system columns come back as they are: they hold no
/// table data, and GUI tools key rows by `ctid` when a table has no
/// primary key (client-compatibility finding: they came back NULL, as
/// columns masking did not know). Masked columns beside them stay masked,
/// and a system column of a derived table is no table's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_columns_of_masked_tables_come_back() {
    let mut env = env().await;
    let c = env.agent().await;
    for sql in [
        "SELECT ctid::text, xmin::text, tableoid::regclass::text, id, email FROM customers ORDER BY id",
        "SELECT c.ctid::text, c.xmin::text, c.tableoid::regclass::text, c.id, c.email FROM customers c ORDER BY c.id",
    ] {
        let rows = c.query(sql, &[]).await.unwrap();
        assert_eq!(rows.len(), 2, "{sql}");
        let ctid: Option<String> = rows[0].get(0);
        let xmin: Option<String> = rows[0].get(1);
        let table: Option<String> = rows[0].get(2);
        let email: Option<String> = rows[0].get(4);
        assert!(ctid.is_some_and(|t| t.starts_with('(')), "{sql}");
        assert!(xmin.is_some(), "{sql}");
        assert_eq!(table.as_deref(), Some("customers"), "{sql}");
        assert_eq!(email.as_deref(), Some("****@example.com"), "{sql}");
    }
    drop(c);
    env.stop().await;
}

/// A parent's rows include its children's: a rule that names only a
/// child (an inheritance child, or a partition) counts when the parent is
/// read (second re-audit finding: `SELECT phone FROM persons` showed the
/// phones a rule on its child masked). Rows masked by the child's rule
/// and rows of the parent's own, unmasked, come back masked whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_a_child_counts_when_its_parent_is_read() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute(
            "CREATE TABLE persons (id int, region text, email text, phone text);
             CREATE TABLE accounts () INHERITS (persons);
             INSERT INTO persons VALUES (1, 'us', 'plain@example.net', 'none');
             INSERT INTO accounts VALUES (2, 'eu', 'zed.secret@corp.example', '+1-202-555-0101');",
        )
        .await
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "SELECT id, email, phone FROM persons ORDER BY id",
        "SELECT * FROM persons ORDER BY id",
        "SELECT p.phone, upper(p.email) FROM persons p ORDER BY p.id",
    ] {
        let (n, got) = simple_bytes(&c, sql).await;
        assert_eq!(n, Some(2), "{sql}: {}", String::from_utf8_lossy(&got));
        assert_clean(&got, sql);
        assert!(String::from_utf8_lossy(&got).contains("****"), "{sql}");
    }
    // The child read alone is masked too (whole, as a child of a masked
    // and an unmasked table is: its parent reads its rows unmasked).
    let (_, got) = simple_bytes(&c, "SELECT email FROM accounts").await;
    assert_eq!(String::from_utf8_lossy(&got), "****|");
    drop(c);
    env.stop().await;
}

/// Read-route findings. A generated column computed from a masked column
/// (a DBA's `email_norm GENERATED ALWAYS AS (lower(email))`) holds the
/// masked data: it is masked whole (it came back in clear, and so did a
/// translated card number). And a name that two schemas on the search
/// path airlock assumes both hold is refused while masking applies: a
/// database default `search_path = public` made the server read
/// `public.customers` where lineage analyzed the upstream user's own,
/// unmasked `customers`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_columns_and_search_path_defaults_do_not_unmask() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute(
            "ALTER TABLE customers ADD COLUMN email_norm text GENERATED ALWAYS AS (lower(email)) STORED;
             ALTER TABLE customers ADD COLUMN card_bin text
               GENERATED ALWAYS AS (translate(card_number, '0123456789', 'abcdefghij')) STORED;",
        )
        .await
        .unwrap();
    let c = env.agent().await;
    for sql in [
        "SELECT id, email_norm, card_bin FROM customers ORDER BY id",
        "SELECT * FROM customers ORDER BY id",
        "SELECT upper(email_norm), reverse(card_bin) FROM customers",
    ] {
        let (n, got) = simple_bytes(&c, sql).await;
        assert_eq!(n, Some(2), "{sql}: {}", String::from_utf8_lossy(&got));
        assert_clean(&got, sql);
        let text = String::from_utf8_lossy(&got);
        assert!(!text.contains("ebbbbbbb"), "{sql}: {text}");
    }
    drop(c);
    // The upstream user's own schema with a table of the same name, and a
    // database default search_path without `$user`.
    env.direct()
        .await
        .batch_execute(&format!(
            "CREATE SCHEMA {UPSTREAM_USER};
             CREATE TABLE {UPSTREAM_USER}.customers (id int, email text, card_number text);
             ALTER DATABASE {DB} SET search_path = public;"
        ))
        .await
        .unwrap();
    let c = env.agent().await;
    // The snapshot learns of the new table when a statement names it
    // (refused once as of an unknown relation, and the catalog read again).
    let _ = simple_bytes(&c, &format!("SELECT id FROM {UPSTREAM_USER}.customers")).await;
    let (n, got) = simple_bytes(&c, "SELECT id, lower(email) FROM customers").await;
    let text = String::from_utf8_lossy(&got);
    assert_eq!(n, None, "{text}");
    assert!(text.contains("write the schema"), "{text}");
    assert_clean(&got, "an ambiguous name");
    let (n, got) = simple_bytes(&c, "SELECT id, lower(email) FROM public.customers").await;
    assert_eq!(n, Some(2), "{}", String::from_utf8_lossy(&got));
    assert_clean(&got, "the qualified name");
    drop(c);
    env.stop().await;
}
