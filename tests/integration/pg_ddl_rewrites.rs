//! Masking on the Postgres path against DDL that rewrites or moves masked
//! data: `ALTER COLUMN ... TYPE ... USING <expr>` is a write of `<expr>`
//! into the column (checked as `UPDATE ... SET` is), and `ALTER SCHEMA ...
//! RENAME TO` would move masked tables out from under schema-qualified
//! rules. A masked agent allowed DDL is refused, nothing runs (checked on
//! a direct connection), nothing leaks, and the session stays usable. The
//! fixture (`public.customers.email` and `*.card_number` masked for the
//! agent, `builder` unmasked) is `pg_catalog_changes`'s.

use crate::common::*;
use crate::pg_catalog_changes::{
    assert_clean, assert_usable, both_ways, builder, env, flatten_rows, simple,
};

/// What a direct (unproxied) connection reads for `sql`.
async fn directly(env: &Env, sql: &str) -> Vec<u8> {
    let rows = env.direct().await.query(sql, &[]).await.unwrap();
    flatten_rows(&rows)
}

/// `customers` as it is, seen directly: every column's type, then the rows.
async fn customers_directly(env: &Env) -> Vec<u8> {
    let mut out = directly(
        env,
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = 'customers' ORDER BY ordinal_position",
    )
    .await;
    out.extend(
        directly(
            env,
            "SELECT id::text, name, email, card_number FROM customers ORDER BY id",
        )
        .await,
    );
    out
}

/// `sql` is refused by the mask rule `rule` over the simple and the
/// extended protocol, and the refusal quotes no PII.
async fn assert_refused(c: &tokio_postgres::Client, sql: &str, rule: &str) {
    let simple = c.batch_execute(sql).await;
    let extended = c.execute(sql, &[]).await;
    for (how, got) in [("simple", simple.map(|_| 0)), ("extended", extended)] {
        let text = match got {
            Ok(n) => panic!("{sql} ({how}) ran: {n}"),
            Err(e) => format!("{e:?}"),
        };
        assert!(
            text.contains(&format!("blocked by rule {rule}")),
            "{sql} ({how}): {text}"
        );
        assert_clean(text.as_bytes(), sql);
    }
}

/// B3 and B7: a type change whose `USING` computes from masked data, into
/// another column or the masked column itself, is refused under the mask
/// rule, in several spellings; harmless type changes run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_rewrites_type_change_using_masked_data_is_refused() {
    let mut env = env().await;
    // Views over `name` and `email` would keep their types from changing.
    let b = builder(&env).await;
    b.batch_execute("DROP VIEW vx, vn, vh").await.unwrap();
    let c = env.agent().await;
    c.batch_execute("ALTER TABLE customers ADD COLUMN note text")
        .await
        .unwrap();
    let before = customers_directly(&env).await;
    for (sql, rule) in [
        (
            "ALTER TABLE customers ALTER COLUMN note TYPE varchar USING email || ' ' || card_number",
            "email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN note TYPE varchar USING card_number || ' ' || email",
            "card",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN email TYPE varchar USING reverse(email)",
            "email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN card_number TYPE text \
             USING right(card_number,4) || left(card_number,-4)",
            "card",
        ),
        (
            r#"ALTER TABLE "public"."customers" ALTER COLUMN "note" SET DATA TYPE text USING "email""#,
            "email",
        ),
        (
            "alter table PUBLIC.CUSTOMERS alter note type TEXT using UPPER(EMAIL)",
            "email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN email TYPE text USING card_number",
            "card",
        ),
        (
            r#"ALTER TABLE customers ALTER COLUMN card_number TYPE "char""#,
            "card",
        ),
        // One refused operation refuses the statement: the added column
        // is not added either.
        (
            "ALTER TABLE customers ADD COLUMN n2 text, \
             ALTER COLUMN note TYPE varchar USING reverse(card_number)",
            "card",
        ),
    ] {
        assert_refused(&c, sql, rule).await;
        assert_eq!(customers_directly(&env).await, before, "{sql} ran");
        for got in both_ways(&c, "SELECT id, note, email, card_number FROM customers").await {
            assert_clean(&got, sql);
        }
    }
    assert_usable(&c, "after the refusals").await;

    // Harmless type changes run, and a masked column copied into itself
    // unmodified stays masked.
    for sql in [
        "ALTER TABLE customers ALTER COLUMN note TYPE varchar USING note::varchar",
        "ALTER TABLE customers ALTER COLUMN name TYPE varchar USING upper(name)",
        "ALTER TABLE customers ALTER COLUMN name TYPE text USING initcap(name)",
        "ALTER TABLE customers ALTER COLUMN email TYPE varchar(200) USING email",
        "ALTER TABLE customers ALTER COLUMN card_number SET DATA TYPE varchar(40)",
    ] {
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    assert_eq!(
        directly(
            &env,
            "SELECT data_type::text FROM information_schema.columns \
             WHERE table_name = 'customers' AND column_name IN ('note', 'email', 'card_number') \
             ORDER BY column_name"
        )
        .await,
        b"character varying|character varying|character varying|"
    );
    assert_eq!(
        simple(&b, "SELECT email, card_number FROM customers ORDER BY id").await,
        b"alice.pii@example.com|4111111111111111|bob.pii@example.org|5500005555555559|",
        "the copies are unmodified"
    );
    for got in both_ways(&c, "SELECT id, name, email, card_number FROM customers").await {
        assert_clean(&got, "after the harmless type changes");
        assert!(!got.is_empty());
    }
    assert_usable(&c, "after the harmless type changes").await;
    drop((c, b));
    env.stop().await;
}

/// B4: renaming a schema would move its masked tables out from under
/// schema-qualified rules; with `*.card_number` any schema's table may hold
/// masked data, so every rename is refused (fail-closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_ddl_rewrites_schema_rename_is_refused() {
    let mut env = env().await;
    env.direct()
        .await
        .batch_execute("CREATE SCHEMA scratch; CREATE TABLE scratch.t (a int)")
        .await
        .unwrap();
    let c = env.agent().await;
    let schemas = "SELECT nspname::text FROM pg_namespace \
         WHERE nspname IN ('public', 'pub2', 'scratch', 'scratch2') ORDER BY nspname";
    for (sql, rule) in [
        ("ALTER SCHEMA public RENAME TO pub2", "email"),
        (r#"alter schema "public" rename to "pub2""#, "email"),
        ("ALTER SCHEMA IF EXISTS PUBLIC RENAME TO pub2", "email"),
        ("ALTER SCHEMA scratch RENAME TO scratch2", "card"),
    ] {
        assert_refused(&c, sql, rule).await;
        assert_eq!(
            directly(&env, schemas).await,
            b"public|scratch|",
            "{sql} ran"
        );
        for got in both_ways(&c, "SELECT email, card_number FROM pub2.customers").await {
            assert_clean(&got, sql);
        }
        for got in both_ways(&c, "SELECT email, card_number FROM customers").await {
            assert_clean(&got, sql);
            assert!(!got.is_empty());
        }
    }
    assert_usable(&c, "after the refusals").await;
    // Other schema DDL still runs; an unmasked identity may rename.
    c.batch_execute("ALTER SCHEMA scratch OWNER TO CURRENT_USER")
        .await
        .unwrap();
    let b = builder(&env).await;
    b.batch_execute("ALTER SCHEMA scratch RENAME TO scratch2")
        .await
        .unwrap();
    assert_eq!(directly(&env, schemas).await, b"public|scratch2|");
    assert_usable(&c, "after the builder's rename").await;
    drop((c, b));
    env.stop().await;
}
