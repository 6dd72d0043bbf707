//! Lineage and planner tests against an in-memory catalog.

use std::path::Path;

use super::*;

const RULES: &str = include_str!("../../testdata/masking/rules.toml");

fn catalog() -> MemoryCatalog {
    MemoryCatalog::new()
        .table(
            "public",
            "customers",
            &["id", "name", "email", "phone", "ssn", "card_number"],
        )
        .table("public", "orders", &["id", "customer_id", "amount"])
        .view(
            "public",
            "v_customers",
            &["id", "email"],
            "SELECT id, email FROM customers",
        )
        .table("shop", "customers", &["id", "email", "ssn"])
        // A partition of customers, a sub-partition of it, and an
        // inheritance child with a column of its own.
        .table(
            "public",
            "customers_eu",
            &["id", "name", "email", "phone", "ssn", "card_number"],
        )
        .child_of("public", "customers_eu", "public", "customers")
        .table(
            "archive",
            "customers_eu_2020",
            &["id", "name", "email", "phone", "ssn", "card_number"],
        )
        .child_of("archive", "customers_eu_2020", "public", "customers_eu")
        .table(
            "public",
            "vip",
            &["id", "name", "email", "phone", "ssn", "card_number", "tier"],
        )
        .child_of("public", "vip", "public", "customers")
        // A child of a masked and an unmasked table.
        .table("public", "plain", &["id", "email"])
        .table(
            "public",
            "launder",
            &["id", "name", "email", "phone", "ssn", "card_number"],
        )
        .child_of("public", "launder", "public", "customers")
        .child_of("public", "launder", "public", "plain")
}

fn masker() -> Masker {
    let rules = load_masking(&[(Path::new("rules.toml"), RULES)]).expect("rules load");
    Masker::new(rules, Some(b"test-key"), Limits::default())
}

fn who(identity: &str, groups: &[&str]) -> Principal {
    Principal {
        identity: identity.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        target: "app".into(),
        ..Principal::default()
    }
}

fn ctx() -> SessionContext {
    SessionContext {
        search_path: vec!["public".into()],
        ..SessionContext::default()
    }
}

/// One letter per column: `.` clear/detect, `E` email, `C` card, `S` ssn,
/// `P` phone, `N` null; or `BLOCK:<rule>`, `NONE`, `DDL`, `OPAQUE`.
fn shape_as(m: &Masker, p: &Principal, d: Dialect, sql: &str) -> String {
    let mut c = ctx();
    if d == Dialect::MySql {
        c.current_database = Some("shop".into());
    }
    let plans = m.plan(p, d, sql, &c, &catalog());
    plans
        .iter()
        .map(|plan| match plan {
            StatementPlan::NoResult => "NONE".to_string(),
            StatementPlan::Ddl => "DDL".to_string(),
            StatementPlan::Opaque => "OPAQUE".to_string(),
            StatementPlan::Block { rule, .. } => format!("BLOCK:{rule}"),
            StatementPlan::Columns(cols) | StatementPlan::OpenColumns(cols) => cols
                .iter()
                .map(|c| match c {
                    ColumnMask::Clear | ColumnMask::Detect => '.',
                    ColumnMask::Mask { strategy, rule } => match (rule.as_str(), strategy) {
                        (_, Strategy::Null) => 'N',
                        ("pii-email", _) => 'E',
                        ("pii-card", _) => 'C',
                        ("pii-ssn", _) => 'S',
                        ("pii-phone", _) => 'P',
                        _ => '?',
                    },
                })
                .collect(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// [`shape`] against another catalog.
fn shape_with(catalog: &MemoryCatalog, sql: &str) -> String {
    let plans = masker().plan(&who("agent", &[]), Dialect::Postgres, sql, &ctx(), catalog);
    match plans.as_slice() {
        [StatementPlan::Columns(cols)] => cols
            .iter()
            .map(|c| match c {
                ColumnMask::Mask { rule, .. } if rule == "pii-email" => 'E',
                ColumnMask::Mask { .. } => '?',
                _ => '.',
            })
            .collect(),
        other => format!("{other:?}"),
    }
}

fn shape(sql: &str) -> String {
    shape_as(&masker(), &who("agent", &[]), Dialect::Postgres, sql)
}

/// `sql` (Postgres, for the agent) returns one column, redacted whole
/// under `rule`: a value computed from masked data.
fn assert_redacted_whole(sql: &str, rule: &str) {
    let plans = masker().plan(
        &who("agent", &[]),
        Dialect::Postgres,
        sql,
        &ctx(),
        &catalog(),
    );
    match plans.as_slice() {
        [StatementPlan::Columns(cols)] => assert_eq!(
            cols.as_slice(),
            [ColumnMask::Mask {
                rule: rule.into(),
                strategy: Strategy::Redact
            }],
            "{sql}"
        ),
        other => panic!("{sql}: {other:?}"),
    }
}

/// Each statement is refused by a masking rule (for the agent).
fn assert_blocked_by_a_mask(d: Dialect, sqls: &[&str]) {
    let (m, p) = (masker(), who("agent", &[]));
    for sql in sqls {
        let got = shape_as(&m, &p, d, sql);
        assert!(got.starts_with("BLOCK:pii-"), "{sql}: {got}");
    }
}

#[test]
fn masking_lineage_direct_and_star() {
    assert_eq!(shape("select id, email, name from customers"), ".E.");
    assert_eq!(shape("select * from customers"), "..E.SC");
    assert_eq!(
        shape("select c.* , o.amount from customers c join orders o on o.customer_id = c.id"),
        "..E.SC."
    );
    assert_eq!(
        shape("select public.customers.email from public.customers"),
        "E"
    );
    assert_eq!(shape("TABLE customers"), "..E.SC");
    assert_eq!(shape("select o.* from orders o"), "...");
}

#[test]
fn masking_lineage_expressions() {
    for sql in [
        "select email || 'x' from customers",
        "select concat(name, email) from customers",
        "select email::varchar(10) from customers",
        "select cast(email as text) from customers",
        "select lower(upper(email)) from customers",
        "select substr(email, 1, 3) from customers",
        "select format('%s', email) from customers",
        "select encode(email::bytea, 'base64') from customers",
        "select md5(email) from customers",
        "select case when id > 1 then email else 'x' end from customers",
        "select coalesce(null, email) from customers",
        "select json_build_object('e', email) from customers",
        "select array[email] from customers",
        "select string_agg(email, ',') from customers",
        "select array_agg(email) from customers",
        "select lag(email) over (order by id) from customers",
        "select first_value(email) over (partition by name) from customers",
        "select (select email from customers limit 1)",
        "select (select max(c.email) from customers c where c.id = o.customer_id) from orders o",
    ] {
        assert_eq!(shape(sql), "E", "{sql}");
    }
    assert_eq!(shape("select count(email), count(*) from customers"), "..");
    assert_eq!(shape("select 'alice@example.com', 1"), "..");
}

#[test]
fn masking_lineage_set_ops_ctes_derived() {
    assert_eq!(
        shape("select name from customers union select email from customers"),
        "E"
    );
    assert_eq!(
        shape("select id, name from customers intersect select id, email from customers"),
        ".E"
    );
    assert_eq!(
        shape("select name from customers except all select ssn from customers"),
        "S"
    );
    assert_eq!(
        shape("with x as (select email as e, id from customers) select id, e from x"),
        ".E"
    );
    assert_eq!(
        shape("with x(a, b) as (select id, email from customers) select b, a from x"),
        "E."
    );
    assert_eq!(
        shape("with recursive r(n, e) as (select 1, 'x' union all select n + 1, c.email from r join customers c on c.id = r.n) select e, n from r"),
        "E."
    );
    assert_eq!(
        shape("select z.e from (select email as e from customers) z"),
        "E"
    );
    assert_eq!(
        shape("select u.b from (select id, email from customers) as u(a, b)"),
        "E"
    );
    assert_eq!(
        shape("select * from (select id, email from customers) as u(a, b)"),
        ".E"
    );
    assert_eq!(
        shape("select c.id, l.x from customers c, lateral (select c.email as x) l"),
        ".E"
    );
    assert_eq!(
        shape("select x from customers c cross join lateral unnest(array[c.email]) as u(x)"),
        "E"
    );
    assert_eq!(
        shape("select * from customers join orders using (id)"),
        "..E.SC.."
    );
    assert_eq!(
        shape("select * from customers natural join orders"),
        "..E.SC.."
    );
}

#[test]
fn masking_lineage_views() {
    assert_eq!(shape("select * from v_customers"), ".E");
    assert_eq!(shape("select email from public.v_customers"), "E");
    assert_eq!(shape("select upper(v.email) from v_customers v"), "E");
}

/// Reading a partition or an inheritance child reads the parent's rows
/// under another name: the parent's masks cover it, at any depth.
#[test]
fn masking_follows_partitions_and_inheritance() {
    assert_eq!(shape("select email, name from customers_eu"), "E.");
    assert_eq!(shape("select * from customers_eu"), "..E.SC");
    assert_eq!(shape("select lower(e.email) from customers_eu e"), "E");
    assert_eq!(shape("select email from archive.customers_eu_2020"), "E");
    assert_eq!(shape("select email, tier from vip"), "E.");
    assert_eq!(
        shape("select email from customers_eu union all select email from vip"),
        "E"
    );
    assert_redacted_whole(
        "select concat(email, '') from archive.customers_eu_2020",
        "pii-email",
    );
    assert_blocked_by_a_mask(Dialect::Postgres, &[
        "select e from customers_eu e",
        "select to_json(v) from vip v",
        "insert into orders (id, customer_id, amount) select id, length(email), 1 from customers_eu",
        "alter table customers_eu rename column email to e",
        "alter table vip rename to vip2",
        // A new child's generated column or default computed from an
        // inherited masked column (red-team finding: copied raw by an
        // INSERT of the parent's rows, a same-rule copy).
        "create table k (g text generated always as (email) stored) inherits (customers)",
        "create table k (g text generated always as (upper(email)) stored) inherits (orders, customers_eu)",
        "create table k (phone text, g text generated always as (card_number || '') stored) inherits (archive.customers_eu_2020)",
        "create table k (g text default 'x', h text generated always as (ssn) stored) inherits (vip)",
            // Copied into a child that an unmasked parent also reads
        // (review finding: INSERT ... SELECT email was a same-rule copy,
        // and SELECT email FROM plain showed it).
        "create table k (email text, g text generated always as (email) stored) inherits (vip)",
        "insert into launder (id, email) select id, email from customers",
        "update launder set email = c.email from customers c where c.id = launder.id",
    ]);
    // Read from that child, the column is masked whole.
    assert_redacted_whole("select email from launder", "pii-email");
    // Re-check findings: such a child cannot be made; a generated column
    // naming the new table itself is judged; `TABLE ONLY` is refused;
    // temporary relations cannot be made.
    for sql in [
        "create table k () inherits (customers, plain)",
        "create table k (x int) inherits (plain, orders, customers_eu)",
        "create table k (g text generated always as (upper(k.email)) stored) inherits (customers)",
        "create table public.k (g text generated always as (public.k.email) stored) inherits (customers)",
        "with c as (select 1) table only customers",
        "create temp table t (x int)",
        "create table pg_temp.t (x int)",
        "create temporary view v as select 1",
        "select 1 into temp t",
        "select 1 into app.pg_temp.t",
        "select 1 into \"app\".\"pg_temp\".t",
        // A column added to the unmasked parent of a child that has it
        // masked: merged with the child's (re-check finding).
        "alter table plain add column ssn text",
    ] {
        assert!(shape(sql).starts_with("BLOCK:"), "{sql}: {}", shape(sql));
    }
    assert_eq!(
        shape("create table k (x int) inherits (plain, orders)"),
        "DDL"
    );
    assert_eq!(shape("alter table plain add column note text"), "DDL");
    // A child's own columns are its own in its generated columns.
    assert_eq!(
        shape(
            "create table k (x int, g int generated always as (x * 2) stored) inherits (customers)"
        ),
        "DDL"
    );
    assert_eq!(
        shape("create table k (g int generated always as (id * 2) stored) inherits (customers)"),
        "DDL"
    );
}

#[test]
fn masking_lineage_blocks_unsafe_shapes() {
    for sql in [
        "select c from customers c",
        "select row_to_json(c) from customers c",
        "select to_jsonb(c) from customers c",
        "select c::text from customers c",
        "select json_agg(c) from customers c",
        "select json_agg(email) from customers",
        "select jsonb_object_agg(id, email) from customers",
        "select row_to_json(c.*) from customers c",
        "select customers from customers",
    ] {
        assert!(
            shape(sql).starts_with("BLOCK:pii-"),
            "{sql}: {}",
            shape(sql)
        );
    }
    for sql in [
        "select email into t from customers",
        "create table t as select email from customers",
        "create materialized view mv as select email from customers",
        "insert into orders (id) select ssn::int from customers",
        "update orders set amount = length(c.email) from customers c",
        "update customers set name = email",
        "copy (select email from customers) to stdout",
        "copy customers to stdout",
        "copy customers (id, email) to '/tmp/x'",
        "declare cur cursor for select email from customers",
        "prepare p as select email from customers",
        "explain analyze create table t as select email from customers",
        "merge into orders o using customers c on o.id = c.id when matched then update set amount = 1",
        // Upserts: the UPDATE half writes the existing row's values.
        "insert into customers (id, name) values (1, 'x') on conflict (id) do update set name = replace(customers.email, '@', '#')",
        "insert into customers (id, name) values (1, 'x') on conflict (id) do update set name = 'c:' || customers.card_number",
        "insert into customers (id, name) values (1, 'x') on conflict (id) do update set name = excluded.email",
    ] {
        assert!(shape(sql).starts_with("BLOCK:pii-"), "{sql}: {}", shape(sql));
    }
    assert_blocked_by_a_mask(Dialect::MySql, &[
        "insert into public.customers (id, name) values (1, 'x') on duplicate key update name = replace(email, '@', '#')",
        "insert into public.customers (id, name) values (1, 'x') on duplicate key update name = concat(values(name), card_number)",
    ]);
    // An upsert that moves no masked data is fine.
    assert_eq!(
        shape("insert into customers (id, name) values (1, 'x') on conflict (id) do update set name = excluded.name"),
        "NONE"
    );
    assert_eq!(
        shape("insert into customers (id, email) values (1, 'x') on conflict (id) do update set email = excluded.email"),
        "NONE"
    );
    // Whole-row use of a table with nothing masked is fine.
    assert_eq!(shape("select row_to_json(o) from orders o"), ".");
    assert_eq!(shape("copy orders to stdout"), "...");
    assert_eq!(shape("copy customers (id, name) to stdout"), "..");
    // An unmodified copy into a column of the same rule is fine; a value
    // computed from it is not (see masking_writes_only_bare_same_rule_copies).
    assert_eq!(shape("update customers set email = email"), "NONE");
    assert!(shape("update customers set email = lower(email)").starts_with("BLOCK:pii-email"));
}

/// Bypass: an unqualified column in a subquery over a table outside the
/// catalog snapshot (pg_catalog, information_schema, ...) was taken to be
/// that table's; the server resolves it to the outer query's column.
#[test]
fn masking_unknown_inner_table_does_not_hide_outer_columns() {
    let m = masker();
    let p = who("agent", &[]);
    for sql in [
        "select (select email from pg_catalog.pg_class limit 1) from customers",
        "select (select email from information_schema.tables limit 1) as e from customers",
        "select (select upper(email) from pg_class limit 1) from customers",
        "select (select x from (select 1 as x) d, pg_class where email is not null limit 1),                 (select email from (select * from pg_class) z limit 1) from customers",
        "select (select (select email from nowhere limit 1) from pg_class limit 1) from customers",
        "select id from customers c where exists (select 1 from pg_class)            union all select (select card_number from nowhere limit 1) from customers",
    ] {
        let got = shape(sql);
        assert!(got.contains('E') || got.contains('C'), "{sql}: {got}");
    }
    for sql in [
        "select (select hex(email) from information_schema.ENGINES limit 1) as e from shop.customers",
        "select (select `email` from information_schema.`ENGINES` limit 1) from public.customers",
        "SELECT (SELECT CONCAT(card_number, '') FROM information_schema.CHARACTER_SETS LIMIT 1) FROM public.customers",
    ] {
        let got = shape_as(&m, &p, Dialect::MySql, sql);
        assert!(got == "E" || got == "C" || got == ".", "{sql}: {got}");
        if sql.contains("public.") {
            assert!(got == "E" || got == "C", "{sql}: {got}");
        }
    }
    // Derived from the outer column: masked whole.
    assert_redacted_whole(
        "select (select email from pg_class limit 1) from customers",
        "pii-email",
    );
    // Pinned where a known source lists the column: the inner table's.
    assert_eq!(
        shape("select (select o.id from orders o, pg_class where amount > 0 limit 1), (select amount from orders, pg_class limit 1) from customers"),
        ".."
    );
    // Qualified to the unknown table: that table's column.
    assert_eq!(
        shape("select (select k.email from pg_class k limit 1) from customers"),
        "."
    );
    // Writes resolve the same way.
    assert!(shape(
        "update orders set amount = (select length(email) from pg_class limit 1) from customers c where c.id = orders.id"
    )
    .starts_with("BLOCK:pii-email"));
}

/// Bypass: a value computed from a masked column was accepted into any
/// masked column, where a weaker strategy showed it (`email` keeps what
/// follows the last `@`). Only an unmodified copy into a column of the
/// same rule may be written; everything else that carries masked data is
/// refused, in every statement that writes.
#[test]
fn masking_writes_only_bare_same_rule_copies() {
    let m = masker();
    let p = who("agent", &[]);
    assert_blocked_by_a_mask(Dialect::Postgres, &[
        "update customers set email = concat('x@', card_number) where id = 2",
        "update customers set email = card_number where id = 2",
        "update customers set email = 'x@' || replace(email, '@', '_')",
        "update customers set email = (select email from customers c2 where c2.id = 1)",
        "update customers set card_number = email",
        "update customers set ssn = ssn || ''",
        "update customers set (email, name) = (select email, 'x' from customers limit 1)",
        "insert into customers (id, email) select id + 100, concat('x@', replace(email, '@', '_')) from customers",
        "insert into customers (id, email) select id + 100, card_number from customers",
        "insert into customers (id, email) select id + 100, email from customers union all select id, card_number from customers",
        "insert into customers (id, email) values (100, (select card_number from customers limit 1))",
        "insert into customers (id, email) values (100, 'x@' || replace((select email from customers limit 1), '@', '_'))",
        "insert into customers (id, email) values (1, 'x') on conflict (id) do update set email = customers.card_number",
        "insert into customers (id, email) values (1, 'x') on conflict (id) do update set email = lower(customers.email)",
        "insert into customers as c (id, email) values (1, 'x') on conflict (id) do update set email = 'x@' || c.card_number",
        "merge into customers t using orders s on t.id = s.id when matched then update set email = 'x@' || t.card_number",
        "merge into customers t using orders s on t.id = s.id when matched then update set name = t.email",
        "merge into customers t using (select 1 as id) s on t.id = s.id when not matched then insert (id, email) values (s.id, (select card_number from customers limit 1))",
    ]);
    assert_blocked_by_a_mask(Dialect::MySql, &[
        "update public.customers set email = concat('x@', card_number) where id = 2",
        "insert into public.customers (id, email) select id + 100, concat('x@', replace(email, '@', '_')) from public.customers",
        "replace into public.customers (id, email) select id + 100, lower(email) from public.customers",
        "insert into public.customers (id, email) values (1, 'x') on duplicate key update email = concat('x@', card_number)",
        "insert into public.customers (id, email) values (1, 'x') on duplicate key update email = `values`(card_number)",
        "insert into public.customers (id, email) values (1, 'x') on duplicate key update name = values(email)",
        "insert into public.customers set id = 100, email = concat('x@', (select card_number from public.customers limit 1))",
        "insert into public.orders set id = 100, customer_id = (select length(email) from public.customers limit 1)",
    ]);
    // Unmodified copies under the same rule, and unmasked values, are fine.
    for sql in [
        "update customers set email = email, name = 'x' where id = 1",
        "update customers c set email = (c.email) where id = 1",
        "update customers set email = 'someone@else.test', card_number = '1' where id = 1",
        "insert into customers (id, email, card_number) select id + 100, email, card_number from customers",
        "insert into customers (id, email) values (1, 'x') on conflict (id) do update set email = excluded.email",
    ] {
        assert_eq!(shape(sql), "NONE", "{sql}");
    }
    assert_eq!(
        shape("merge into customers t using orders s on t.id = s.id when matched then update set email = t.email, name = 'x'"),
        "OPAQUE"
    );
    // MySQL cuts a copied value to the destination's length (INSERT
    // IGNORE, non-strict modes, non-transactional tables): a copy of a
    // `partial`, `email`, `hash` or `fake` masked value into another
    // column is refused there (red-team finding: a card number copied into
    // a VARCHAR(8) showed digits 5 to 8); a copy of a `redact` one, and a
    // column into itself, still run. Postgres refuses to cut a string.
    assert_blocked_by_a_mask(Dialect::MySql, &[
        "insert ignore into public.customers (id, card_number) select id + 100, card_number from public.customers",
        "insert into public.customers (id, email) select id + 100, email from public.customers",
        "insert into public.customers (id, ssn) select id + 100, ssn from public.customers",
        "update public.customers c join public.customers k on k.id = 1 set c.card_number = k.email where c.id = 2",
    ]);
    let sql = "insert into customers (id, email, card_number, ssn) select id + 100, email, card_number, ssn from customers";
    assert_eq!(shape(sql), "NONE", "{sql}");
    for sql in [
        "insert ignore into public.customers (id, phone) select id + 100, phone from public.customers",
        "insert into public.orders (id, phone) select id, phone from public.customers",
        "update public.customers set card_number = card_number, email = (email)",
        "update public.customers c join public.customers k on k.id = 1 set c.card_number = k.card_number where c.id = 2",
        "insert into public.customers (id, email) values (1, 'x') on duplicate key update email = values(email)",
        "insert into public.customers (id, email) values (1, 'x') on duplicate key update email = VALUES(`email`), name = values(name)",
        "insert into public.customers set id = 100, email = 'a@b.test'",
    ] {
        assert_eq!(shape_as(&m, &p, Dialect::MySql, sql), "NONE", "{sql}");
    }
}

/// Bypass: the SET target of a multi-table UPDATE was looked up by bare
/// name in the first table only. It is resolved through its qualifier
/// among the UPDATE's tables; an unqualified target several tables may
/// hold, or one that cannot be resolved, is refused when the value
/// carries masked data.
#[test]
fn masking_multi_table_update_targets_resolve_through_qualifiers() {
    let m = masker();
    let p = who("agent", &[]);
    let my = |sql: &str| shape_as(&m, &p, Dialect::MySql, sql);
    for sql in [
        "update public.customers c join shop.customers k on k.id = c.id set k.email = c.email where c.id = 1",
        "update public.customers c join shop.customers k on k.id = c.id set k.email = hex(c.email) where c.id = 1",
        "update public.customers c join shop.customers k on k.id = c.id set `K`.`EMAIL` = c.email where c.id = 1",
        "update public.customers join shop.customers k on k.id = public.customers.id set shop.k.email = public.customers.email where k.id = 1",
        "update shop.customers k join public.customers c on k.id = c.id set k.email = c.email where c.id = 1",
        "update public.customers c join shop.customers k on k.id = c.id set email = c.email where c.id = 1",
        "update public.customers c join nowhere n on n.id = c.id set email = c.email where c.id = 1",
        "update public.customers c join nowhere n on n.id = c.id set n.email = c.email where c.id = 1",
        "update public.customers c join public.orders o on o.customer_id = c.id set o.amount = c.card_number where c.id = 1",
        "update public.customers c join public.orders o on o.customer_id = c.id set amount = c.card_number where c.id = 1",
        "update public.customers c join public.orders o on o.customer_id = c.id set x.amount = c.card_number where c.id = 1",
        "update (public.customers c join shop.customers k on k.id = c.id) set k.email = c.email where c.id = 1",
    ] {
        let got = my(sql);
        assert!(got.starts_with("BLOCK:pii-"), "{sql}: {got}");
    }
    // Postgres: only the UPDATE's table is written; a qualified target is
    // not a table's column there.
    assert_blocked_by_a_mask(
        Dialect::Postgres,
        &[
            "update orders set amount = c.card_number from customers c where c.id = orders.id",
            "update shop.customers k set email = c.email from public.customers c where c.id = k.id",
            "update customers set customers.email = c.card_number from customers c where c.id = 1",
        ],
    );
    for sql in [
        "update public.customers c join public.customers k on k.id = 1 set c.email = k.email where c.id = 2",
        "update public.customers c join shop.customers k on k.id = c.id set k.email = 'x', c.name = k.name where c.id = 1",
        "update public.customers c join public.orders o on o.customer_id = c.id set o.amount = c.id + 1 where c.id = 1",
        "update public.customers c join public.orders o on o.customer_id = c.id set c.email = c.email where c.id = 1",
    ] {
        assert_eq!(my(sql), "NONE", "{sql}");
    }
    assert_eq!(
        shape("update customers set email = c.email from customers c where c.id = 1"),
        "NONE"
    );
}

/// Two columns of different rules in one output column (a UNION) are
/// masked whole: neither rule's strategy fits the other's data.
#[test]
fn masking_mixed_rules_are_masked_whole() {
    assert_eq!(
        taint::Taint::Masked(0).join(taint::Taint::Masked(1)),
        taint::Taint::Derived(0)
    );
    assert_eq!(
        taint::Taint::Masked(1).join(taint::Taint::Masked(1)),
        taint::Taint::Masked(1)
    );
    assert_redacted_whole(
        "select card_number from customers union all select email from customers",
        "pii-card",
    );
    // A computed VALUES cell is masked whole too.
    assert_redacted_whole("select * from (values ('x@' || replace((select email from customers limit 1), '@', '_'))) v(e)", "pii-email");
}

#[test]
fn masking_lineage_writes_returning_and_filters() {
    assert_eq!(
        shape("insert into customers (id, name) values (1, 'a') returning email, id"),
        "E."
    );
    assert_eq!(
        shape("update customers set name = 'x' where id = 1 returning *"),
        "..E.SC"
    );
    assert_eq!(
        shape("delete from customers where email like 'a%' returning ssn"),
        "S"
    );
    assert_eq!(
        shape("select id from customers where email like 'a%' order by email"),
        "."
    );
    assert_eq!(shape("insert into orders values (1, 2, 3)"), "NONE");
    assert_eq!(
        shape("begin; select email from customers; commit"),
        "NONE;E;NONE"
    );
    assert_eq!(shape("execute p"), "OPAQUE");
}

#[test]
fn masking_lineage_unknown_tables() {
    // Unknown table: name patterns only.
    assert_eq!(
        shape("select contact_email, email, x.phone from nowhere x"),
        "E.P".replace('P', ".")
    );
    assert_eq!(
        shape_as(
            &masker(),
            &who("agent", &["support"]),
            Dialect::Postgres,
            "select phone from nowhere"
        ),
        "P"
    );
    assert_eq!(shape("select * from nowhere"), "");
    assert!(shape("select t from nowhere t").starts_with("BLOCK:"));
    // After a `*` of an unknown table, positions are unknown: a masked
    // value there cannot be lined up with its result column.
    assert!(shape("select t.*, upper(contact_email) from nowhere t").starts_with("BLOCK:"));
    assert!(shape("select *, contact_email from nowhere").starts_with("BLOCK:"));
}

/// A complete catalog (a live snapshot) knows every user relation there
/// was: one it does not know (made outside airlock since) may be a
/// partition of a masked table or a view over one, so a statement that
/// reads, writes or alters it is refused until the catalog is read again
/// (red-team finding: a partition a maintenance job created returned
/// `phone || ''` raw). Temporary relations are never in a snapshot: a
/// name some session's temporary relation has is taken for one.
#[test]
fn masking_refuses_relations_a_complete_catalog_lacks() {
    let mut complete = catalog();
    complete.complete = true;
    complete.system = vec![
        ("pg_catalog".into(), "pg_class".into()),
        ("information_schema".into(), "tables".into()),
    ];
    let plan = |sql: &str| {
        let plans = masker().plan(
            &who("agent", &[]),
            Dialect::Postgres,
            sql,
            &ctx(),
            &complete,
        );
        match plans.as_slice() {
            [p] if is_unknown_relation(p) => "UNKNOWN".to_string(),
            [StatementPlan::Block { rule, .. }] => format!("BLOCK:{rule}"),
            [StatementPlan::Columns(_) | StatementPlan::OpenColumns(_)] => "COLUMNS".to_string(),
            [StatementPlan::NoResult] => "NONE".to_string(),
            [StatementPlan::Ddl] => "DDL".to_string(),
            other => format!("{other:?}"),
        }
    };
    for sql in [
        "select phone || '', lower(email), 1 from customers_new",
        "select c.name, n.x from customers c join customers_new n on n.id = c.id",
        "select name, (select phone from public.customers_new limit 1) from customers",
        "select * from public.customers_new",
        "insert into orders (id, customer_id, amount) select id, length(phone), 1 from customers_new",
        "insert into customers_new (id) values (1)",
        "create table t2 as select phone from customers_new",
        // Temporary relations are never in a snapshot.
        "select x || '' from pg_temp.scratch",
        "insert into scratch (x) values (1)",
        // A name starting with pg_ is looked for in pg_catalog too, which
        // does not have it (review finding: every pg_ name was exempt).
        "select phone || '' from pg_new_partition",
        "select x from pg_catalog.pg_nothing",
        // `TABLE x` is read as FROM x (review finding: CTEs were skipped).
        "with c as (select 1) table customers_new",
    ] {
        assert_eq!(plan(sql), "UNKNOWN", "{sql}");
    }
    // The server's own relations are not described in the snapshot, and
    // are not unknown; nor are CTEs, functions and VALUES in FROM.
    for sql in [
        "select relname from pg_class",
        "select table_name from information_schema.tables",
        "select email, name from customers",
        "with customers_new as (select 1 as x) select x from customers_new",
        "with customers_new as (select 1 as x) table customers_new",
        "select * from generate_series(1, 3) g",
        "select * from (values (1)) v (x)",
    ] {
        assert_eq!(plan(sql), "COLUMNS", "{sql}");
    }
    assert_eq!(
        shape_with(&complete, "select email, name from customers"),
        "E."
    );
    // Not complete (tests, `airlock explain`): unknown relations are
    // planned by name patterns, as before.
    assert_eq!(shape("select phone || '' from customers_new"), ".");
}

#[test]
fn masking_lineage_principals() {
    let m = masker();
    let sql = "select email, phone, ssn from customers";
    assert_eq!(
        shape_as(&m, &who("agent", &[]), Dialect::Postgres, sql),
        "E.S"
    );
    assert_eq!(
        shape_as(&m, &who("agent", &["support"]), Dialect::Postgres, sql),
        "EPS"
    );
    assert_eq!(
        shape_as(&m, &who("dba-human", &[]), Dialect::Postgres, sql),
        "..S"
    );
    assert_eq!(
        shape_as(&m, &who("x", &["privileged"]), Dialect::Postgres, sql),
        "..S"
    );
}

#[test]
fn masking_lineage_mysql() {
    let m = masker();
    let p = who("agent", &[]);
    // shop.customers is not public.customers: only name patterns apply.
    assert_eq!(
        shape_as(&m, &p, Dialect::MySql, "select `email`, ssn from customers"),
        ".."
    );
    assert_eq!(
        shape_as(
            &m,
            &p,
            Dialect::MySql,
            "select c.email from `public`.`customers` c"
        ),
        "E"
    );
    assert_eq!(
        shape_as(&m, &p, Dialect::MySql, "select * from public.customers"),
        "..E.SC"
    );
}

#[test]
fn masking_on_unsafe_null() {
    let text = "[[mask]]\nid = \"e\"\ncolumns = [\"public.customers.email\"]\nstrategy = \"redact\"\non_unsafe = \"null\"\n";
    let rules = load_masking(&[(Path::new("r.toml"), text)]).expect("rules");
    let m = Masker::new(rules, None, Limits::default());
    assert_eq!(
        m.plan(
            &who("a", &[]),
            Dialect::Postgres,
            "select c, id from customers c",
            &ctx(),
            &catalog()
        ),
        vec![StatementPlan::Columns(vec![
            ColumnMask::Mask {
                rule: "e".into(),
                strategy: Strategy::Null
            },
            ColumnMask::Clear
        ])]
    );
}

#[test]
fn masking_plan_cache_and_apply() {
    let m = masker();
    let p = who("agent", &[]);
    let a = m.plan(
        &p,
        Dialect::Postgres,
        "select email, id from customers",
        &ctx(),
        &catalog(),
    );
    let b = m.plan(
        &p,
        Dialect::Postgres,
        "select email, id from customers",
        &ctx(),
        &catalog(),
    );
    assert_eq!(a, b);
    assert_eq!(m.cache.len(), 1);
    let StatementPlan::Columns(cols) = &a[0] else {
        panic!("{a:?}")
    };
    let d = m.detectors_for(&p);
    assert_eq!(
        m.apply(&cols[0], Some(b"bob@example.com"), true, d)
            .as_deref(),
        Some(&b"****@example.com"[..])
    );
    assert_eq!(m.apply(&cols[0], None, true, d), None);
    assert_eq!(m.apply(&cols[0], Some(b"bob@example.com"), false, d), None);
    assert_eq!(
        m.apply(&ColumnMask::Detect, Some(b"call 415-555-2671"), true, d)
            .as_deref(),
        Some(&b"call [phone]"[..])
    );
    assert!(matches!(
        m.apply(&ColumnMask::Detect, Some(b"clean"), true, d),
        Some(Cow::Borrowed(_))
    ));
    assert_eq!(
        m.mask_for_name(&p, "Contact_Email"),
        ColumnMask::Mask {
            rule: "pii-email".into(),
            strategy: Strategy::Email
        }
    );
}

#[test]
fn masking_rules_errors_name_file_line_key() {
    let load = |t: &str| load_masking(&[(Path::new("r.toml"), t)]);
    let e = load("[[mask]]\nid = \"a\"\ncolumns = [\"x.y\"]\nstrategy = \"blur\"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (4, "mask[0].strategy"), "{e}");
    let e = load("[[mask]]\nid = \"a\"\ncolumns = [\"x.y\"]\nstrategy = \"hash\"\ncolour = 1\n")
        .unwrap_err();
    assert_eq!(e.line, 5, "{e}");
    assert!(
        e.to_string().starts_with("r.toml:5: mask[0].colour:"),
        "{e}"
    );
    let e = load("[masking]\ndetectors = [\"email\",\n \"dna\"]\n").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (3, "masking.detectors"), "{e}");
    let e = load(
        "[[mask]]\nid = \"a\"\ncolumns = [\"x.y\"]\nstrategy = \"redact\"\non_unsafe = \"shrug\"\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (5, "mask[0].on_unsafe"), "{e}");
    let e = load(
        "[[mask]]\nid = \"builtin.unknown-source\"\ncolumns = [\"x.y\"]\nstrategy = \"redact\"\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (2, "mask[0].id"), "{e}");
    assert!(e.to_string().contains("reserved"), "{e}");
    // Guardrail tables are ignored.
    let r = load("[settings]\nmax_tokens = 5\n[[policy]]\nid = \"p\"\n").expect("ok");
    assert!(r.rules.is_empty());
}

/// A strategy that keeps part of a value keeps the part the agent chose
/// when the value is computed: the card in `substr` windows, the email's
/// local part after `reverse` or `concat(local, '@', local)`. Computed
/// values are masked whole; the column itself keeps its strategy.
#[test]
fn masking_derived_values_are_masked_whole() {
    let m = masker();
    let p = who("agent", &[]);
    let strategies = |sql: &str| -> Vec<Strategy> {
        match m
            .plan(&p, Dialect::Postgres, sql, &ctx(), &catalog())
            .as_slice()
        {
            [StatementPlan::Columns(cols)] => cols
                .iter()
                .map(|c| match c {
                    ColumnMask::Mask { strategy, .. } => *strategy,
                    other => panic!("{sql}: {other:?}"),
                })
                .collect(),
            other => panic!("{sql}: {other:?}"),
        }
    };
    assert_eq!(
        strategies("select email, c.card_number, (email) from customers c"),
        [
            Strategy::Email,
            Strategy::Partial {
                keep_first: 0,
                keep_last: 4
            },
            Strategy::Email
        ]
    );
    assert_eq!(
        strategies(
            "select substr(card_number, 1, 8), substr(card_number, 5, 8), reverse(email), \
             concat(split_part(email, '@', 1), '@', split_part(email, '@', 1)), lower(email) \
             from customers"
        ),
        [Strategy::Redact; 5]
    );
    // Through a subquery or CTE: bare there and here keeps the strategy,
    // computed anywhere on the way masks whole.
    assert_eq!(
        strategies("with x as (select email as m from customers) select m from x"),
        [Strategy::Email]
    );
    assert_eq!(
        strategies("select m from (select reverse(email) as m from customers) s"),
        [Strategy::Redact]
    );
    assert_eq!(
        strategies("select email from customers union select reverse(email) from customers"),
        [Strategy::Redact]
    );
    // A hash of a computed value is masked whole too: hashes of
    // `substr(ssn, k, 1)` and of `'5'` would make a codebook.
    assert_eq!(
        strategies("select substr(ssn, 1, 3) from customers"),
        [Strategy::Redact]
    );
}

/// MySQL's SHOW WARNINGS quotes values a statement computed from masked
/// columns; it is refused while masking applies.
#[test]
fn masking_show_warnings_refused_while_masking_applies() {
    let m = masker();
    for sql in ["show warnings", "SHOW ERRORS", "show warnings limit 5"] {
        let got = shape_as(&m, &who("agent", &[]), Dialect::MySql, sql);
        assert!(got.starts_with("BLOCK:pii-"), "{sql}: {got}");
    }
    assert_eq!(
        shape_as(&m, &who("agent", &[]), Dialect::MySql, "show tables"),
        "OPAQUE"
    );
}

#[test]
fn masking_ddl_cannot_move_masked_data_out_from_under_its_rules() {
    let m = masker();
    let p = who("agent", &[]);
    assert_blocked_by_a_mask(
        Dialect::Postgres,
        &[
            "alter table customers rename column email to mail",
            "ALTER TABLE public.customers RENAME email TO mail",
            "alter table customers rename to c2",
            "alter table customers add column e2 text generated always as (upper(email)) stored",
        ],
    );
    assert_blocked_by_a_mask(
        Dialect::MySql,
        &[
            "RENAME TABLE public.customers TO public.c2",
            "RENAME TABLE public.orders TO o2, public.customers TO c2",
            "ALTER TABLE public.customers RENAME COLUMN email TO mail",
            "ALTER TABLE `public`.`customers` CHANGE `EMAIL` mail varchar(99)",
            "ALTER TABLE public.customers ADD COLUMN e2 varchar(99) AS (HEX(email)) VIRTUAL",
            "ALTER TABLE public.customers MODIFY name varchar(99) AS (REVERSE(card_number)) STORED",
            // MySQL fills existing rows with a new column's default, and
            // `SET c = DEFAULT` computes it.
            "ALTER TABLE public.customers ADD COLUMN e3 varchar(200) DEFAULT (REVERSE(email))",
            "ALTER TABLE `public`.`customers` ADD e3 text DEFAULT (CONCAT(`EMAIL`, ''))",
            "ALTER TABLE public.customers ALTER COLUMN name SET DEFAULT (REVERSE(card_number))",
            "ALTER TABLE public.customers MODIFY name varchar(99) DEFAULT (LEFT(card_number, 6))",
            "ALTER TABLE public.customers CHANGE name nm varchar(99) DEFAULT (email)",
            "ALTER TABLE public.customers ADD COLUMN n5 int, ALTER COLUMN name SET DEFAULT (HEX(email))",
            "ALTER TABLE public.customers RENAME TO public.c2",
            // A table the catalog does not know: any rule whose table pattern
            // matches it (`customers.card_number`: any schema's) refuses.
            "ALTER TABLE other.customers RENAME TO other.c2",
        ],
    );
    // DDL that moves nothing masked is fine.
    for sql in [
        "alter table customers rename column name to full_name",
        "alter table customers add column note text",
        "alter table customers add column n2 text generated always as (upper(name)) stored",
        "alter table customers add column n3 text default 'x'",
        "alter table customers alter column name set default 'nobody'",
        "alter table orders rename to orders_old",
        "alter table customers drop column email",
    ] {
        assert_eq!(shape(sql), "DDL", "{sql}");
    }
    for sql in [
        // shop.customers has no masked column under these rules.
        "RENAME TABLE customers TO c2",
        "ALTER TABLE customers RENAME COLUMN email TO mail",
        "ALTER TABLE public.customers ADD COLUMN n3 varchar(20) DEFAULT (UPPER(name))",
        "ALTER TABLE public.customers ALTER COLUMN name SET DEFAULT ('nobody')",
    ] {
        assert_eq!(shape_as(&m, &p, Dialect::MySql, sql), "DDL", "{sql}");
    }
}

/// `(sql, the mask rule that must refuse it)`, as the agent on Postgres.
fn assert_blocked_by(cases: &[(&str, &str)]) {
    for (sql, rule) in cases {
        assert_eq!(shape(sql), format!("BLOCK:{rule}"), "{sql}");
    }
}

#[test]
fn masking_ddl_type_change_is_checked_as_a_write_of_its_using_expression() {
    assert_blocked_by(&[
        // Masked data into an unmasked (here: not yet known) column.
        (
            "alter table customers alter column note type varchar using email || ' ' || note",
            "pii-email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN note TYPE varchar USING card_number || ' ' || name",
            "pii-card",
        ),
        ("alter table customers alter note type text using email", "pii-email"),
        ("ALTER TABLE customers ALTER COLUMN name TYPE text USING email", "pii-email"),
        (
            r#"ALTER TABLE "public"."customers" ALTER COLUMN "name" SET DATA TYPE text USING "email""#,
            "pii-email",
        ),
        (
            "ALTER TABLE Public.Customers ALTER COLUMN Name TYPE TEXT USING EMAIL",
            "pii-email",
        ),
        (
            "alter table customers alter column name type text using customers.email",
            "pii-email",
        ),
        // A masked column rewritten in place: the strategy would show the
        // part the agent chose.
        (
            "ALTER TABLE customers ALTER COLUMN email TYPE varchar USING reverse(email)",
            "pii-email",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN card_number TYPE text USING right(card_number,4) || left(card_number,-4)",
            "pii-card",
        ),
        (
            "alter table customers alter column card_number set data type varchar(40) using lower(card_number)",
            "pii-card",
        ),
        (
            "alter table customers alter column email type text using (select max(email) from customers)",
            "pii-email",
        ),
        // Data of another rule, even unmodified.
        (
            "ALTER TABLE customers ALTER COLUMN email TYPE text USING card_number",
            "pii-card",
        ),
        // A conversion that is not to a character type computes.
        (
            r#"ALTER TABLE customers ALTER COLUMN card_number TYPE "char""#,
            "pii-card",
        ),
        (
            "ALTER TABLE customers ALTER COLUMN card_number TYPE bigint USING card_number::bigint",
            "pii-card",
        ),
        (
            "alter table customers alter column ssn type numeric using ssn",
            "pii-ssn",
        ),
        // Several operations in one statement: each is checked.
        (
            "ALTER TABLE customers ADD COLUMN note text, ALTER COLUMN note TYPE varchar USING email",
            "pii-email",
        ),
        (
            "alter table customers alter column name type varchar, alter column phone type text using ssn",
            "pii-ssn",
        ),
        (
            "alter table customers alter column email type varchar using email, alter column name type text using reverse(card_number)",
            "pii-card",
        ),
        // A table the catalog does not know: the rules' patterns count.
        (
            "alter table other.customers alter column x type text using card_number",
            "pii-card",
        ),
    ]);
    // A type change that moves nothing masked, or copies a masked column
    // unmodified into itself (as `UPDATE ... SET email = email` may).
    for sql in [
        "alter table customers alter column name type varchar using name::varchar",
        "ALTER TABLE customers ALTER COLUMN name TYPE text USING upper(name)",
        "ALTER TABLE customers ALTER COLUMN name SET DATA TYPE varchar(200)",
        "ALTER TABLE customers ALTER COLUMN id TYPE bigint USING id + 1",
        "alter table customers alter column email type varchar(200) using email",
        r#"ALTER TABLE "customers" ALTER COLUMN "email" TYPE text USING customers.email"#,
        "ALTER TABLE customers ALTER COLUMN card_number SET DATA TYPE varchar(40)",
        "ALTER TABLE customers ALTER COLUMN card_number TYPE char(16)",
        "alter table customers alter column email set not null, alter column name type text using name || '!'",
        "alter table orders alter column amount type numeric(12,2) using amount * 100",
    ] {
        assert_eq!(shape(sql), "DDL", "{sql}");
    }
    // Not Postgres's syntax for MySQL: refused as unparseable there.
    let (m, p) = (masker(), who("agent", &[]));
    let got = shape_as(
        &m,
        &p,
        Dialect::MySql,
        "ALTER TABLE customers ALTER COLUMN note TYPE text USING email",
    );
    assert!(got.starts_with("BLOCK:"), "{got}");
}

#[test]
fn masking_ddl_schema_rename_cannot_move_masked_tables_out_from_under_their_rules() {
    // `*.contact_email` and `customers.card_number` may match a column of
    // any schema: every schema rename is refused (fail-closed), on either
    // dialect.
    for sql in [
        "ALTER SCHEMA public RENAME TO pub2",
        r#"alter schema "public" rename to "pub2""#,
        "ALTER SCHEMA IF EXISTS shop RENAME TO s2",
        "alter schema scratch rename to scratch2",
    ] {
        assert!(
            shape(sql).starts_with("BLOCK:pii-"),
            "{sql}: {}",
            shape(sql)
        );
    }
    assert_blocked_by_a_mask(Dialect::MySql, &["ALTER SCHEMA shop RENAME TO s2"]);
    // Moving one table to another schema would do the same; sqlparser
    // 0.63 does not parse it, so it stays refused as unparseable. Should
    // a newer sqlparser parse it, it must be refused as renaming the
    // table is.
    for sql in [
        "ALTER TABLE customers SET SCHEMA other",
        "alter table if exists public.customers set schema other",
        "ALTER VIEW v_customers SET SCHEMA other",
    ] {
        assert_eq!(shape(sql), "BLOCK:builtin.unparseable", "{sql}");
    }

    // With schema-qualified patterns only, the schema decides.
    const QUALIFIED: &str = r#"
[[mask]]
id = "m-email"
columns = ["public.customers.email"]
strategy = "email"
unmasked = { identities = ["dba"] }

[[mask]]
id = "m-tenant"
columns = ["tenant_a.users.ssn"]
strategy = "redact"

[[mask]]
id = "m-tenants"
columns = ["tenant_*.users.ssn"]
strategy = "redact"
applies_to = { groups = ["tenants"] }
"#;
    let rules = load_masking(&[(Path::new("q.toml"), QUALIFIED)]).expect("rules load");
    let m = Masker::new(rules, Some(b"test-key"), Limits::default());
    let cat = catalog().view(
        "reports",
        "mail",
        &["email"],
        "SELECT email FROM public.customers",
    );
    let plan = |identity: &str, groups: &[&str], sql: &str| {
        let plans = m.plan(&who(identity, groups), Dialect::Postgres, sql, &ctx(), &cat);
        match plans.as_slice() {
            [StatementPlan::Ddl] => "DDL".to_string(),
            [StatementPlan::Block { rule, .. }] => format!("BLOCK:{rule}"),
            other => format!("{other:?}"),
        }
    };
    for (sql, want) in [
        ("ALTER SCHEMA public RENAME TO pub2", "BLOCK:m-email"),
        ("alter schema PUBLIC rename to pub2", "BLOCK:m-email"),
        (r#"ALTER SCHEMA "public" RENAME TO x"#, "BLOCK:m-email"),
        ("ALTER SCHEMA tenant_a RENAME TO t2", "BLOCK:m-tenant"),
        // A view whose lineage reads masked data.
        ("ALTER SCHEMA reports RENAME TO r2", "BLOCK:m-email"),
        // A schema name with a dot may be matched by anything.
        (r#"ALTER SCHEMA "public.x" RENAME TO y"#, "BLOCK:m-email"),
        // shop.customers.email is not masked by these rules.
        ("ALTER SCHEMA shop RENAME TO s2", "DDL"),
        ("ALTER SCHEMA staging RENAME TO staging_old", "DDL"),
        ("ALTER SCHEMA public OWNER TO someone", "DDL"),
    ] {
        assert_eq!(plan("agent", &[], sql), want, "{sql}");
    }
    // A schema part with glob syntax may match any schema.
    assert_eq!(
        plan("agent", &["tenants"], "ALTER SCHEMA staging RENAME TO x"),
        "BLOCK:m-tenants"
    );
    // A new table's own columns are covered by the patterns matching
    // them: a generated column computed from one would hold it unmasked
    // (MySQL red-team finding; Postgres alike).
    for (sql, want) in [
        (
            "CREATE TABLE tenant_b.users (ssn text, x text GENERATED ALWAYS AS (reverse(ssn)) STORED)",
            "BLOCK:m-tenants",
        ),
        (
            "create table tenant_a.users (ssn text, x text generated always as (upper(users.ssn)) stored)",
            "BLOCK:m-tenant",
        ),
        (
            "CREATE TABLE tenant_b.users (ssn text, note text, x text GENERATED ALWAYS AS (upper(note)) STORED)",
            "DDL",
        ),
        (
            "CREATE TABLE tenant_b.people (ssn text, x text GENERATED ALWAYS AS (reverse(ssn)) STORED)",
            "DDL",
        ),
    ] {
        assert_eq!(plan("agent", &["tenants"], sql), want, "{sql}");
    }
    // Only the rules active for the principal count.
    assert_eq!(
        plan("dba", &[], "ALTER SCHEMA public RENAME TO pub2"),
        "DDL"
    );
    assert_eq!(
        plan("dba", &[], "ALTER SCHEMA tenant_a RENAME TO t2"),
        "BLOCK:m-tenant"
    );
}

#[test]
fn masking_refuses_what_follows_ddl_in_one_request() {
    // Planned before the DDL runs, the SELECT would follow the old view.
    for sql in [
        "create or replace view v_customers as select id, reverse(email) as email from customers; select * from v_customers",
        "alter table customers rename column email to mail; select mail from customers",
        "create table t2 (a text); insert into t2 select name from customers",
        "drop view v_customers; select 1",
        // EXECUTE runs a statement prepared against the old view.
        "create or replace view v_customers as select id, reverse(email) as email from customers; execute s1",
    ] {
        let got = shape(sql);
        assert!(got.contains("BLOCK:mask.unanalyzable"), "{sql}: {got}");
    }
    // Transaction and session statements may follow; DDL alone is fine.
    assert_eq!(
        shape("begin; create table t2 (a text); commit"),
        "NONE;DDL;NONE"
    );
    assert_eq!(
        shape("select email from customers; create table t2 (a text)"),
        "E;DDL"
    );
}

#[test]
fn masking_after_unsettled_ddl_allows_only_transaction_and_session_statements() {
    // The session's own DDL ran in a transaction that is still open: the
    // catalog airlock reads cannot see it yet.
    let m = masker();
    let p = who("agent", &[]);
    let plan = |sql: &str| {
        let audience = m.audience(&p);
        m.plan_after_ddl(
            &audience,
            Dialect::Postgres,
            sql,
            &ctx(),
            &catalog(),
            UnseenDdl::Own,
        )
    };
    for sql in [
        "select email from customers",
        "select 1",
        "select a from v_customers",
        "insert into orders values (1, 2, 3)",
        "with x as (select 1) select * from x",
        "create view v2 as select 1",
        "execute s1",
        "copy customers to stdout",
        "fetch all from c1",
        "declare c1 cursor for select email from customers",
        "commit; select email from customers",
    ] {
        let got = plan(sql);
        assert!(
            matches!(got.last(), Some(StatementPlan::Block { rule, message, .. }) if rule == "mask.unanalyzable" && message.contains("until its transaction ends")),
            "{sql}: {got:?}"
        );
    }
    for sql in [
        "commit",
        "rollback",
        "end",
        "abort",
        "savepoint s",
        "release savepoint s",
        "set search_path = public",
        "reset all",
    ] {
        let got = plan(sql);
        assert!(
            !got.iter().any(|p| matches!(p, StatementPlan::Block { .. })),
            "{sql}: {got:?}"
        );
    }
    // A session statement that reads a table (MySQL) does not count.
    let my = |sql: &str| {
        let mut c = ctx();
        c.current_database = Some("shop".into());
        m.plan_after_ddl(
            &m.audience(&p),
            Dialect::MySql,
            sql,
            &c,
            &catalog(),
            UnseenDdl::Own,
        )
    };
    let got = my("SET @x = (SELECT email FROM customers LIMIT 1)");
    assert!(
        matches!(got.last(), Some(StatementPlan::Block { .. })),
        "{got:?}"
    );
    let got = my("SET @x = 1");
    assert_eq!(got, vec![StatementPlan::NoResult]);
}

/// A name no source lists counts every column in sight (the server may
/// have named a computed column so), but value keywords that parse like
/// names (`session_user`, `current_date`) are values: left clear.
#[test]
fn masking_unknown_names_count_every_column_but_value_keywords_do_not() {
    assert_eq!(
        shape("select lower from (select lower(email) from customers) s"),
        "E"
    );
    assert_eq!(
        shape("select session_user, current_date, email from customers"),
        "..E"
    );
}
