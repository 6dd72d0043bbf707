//! Policy engine benchmarks: cached judge, uncached 200-byte and 2 KB
//! statements, and the lexing cross-check (part of every uncached judge)
//! on its own.

use std::path::Path;

use airlock::policy::rules::parse_rules;
use airlock::policy::{Dialect, Engine, Gate, Principal, Request, SessionContext, Source};
use criterion::{criterion_group, criterion_main, Criterion};

const RULES: &str = r#"
[[policy]]
id = "ro"
applies_to = { identities = ["bot"] }
read_only = true
deny_tables = ["public.payments", "audit.*"]
allow_tables = ["public.*"]
deny_columns = ["public.customers.ssn"]
"#;

fn stmt_200() -> String {
    let s = "SELECT c.id, c.name, o.total FROM customers c JOIN orders o ON o.customer_id = c.id \
             WHERE c.id = 42 AND o.created_at > now() - interval '7 days' ORDER BY o.total DESC LIMIT 10"
        .to_string();
    assert!(s.len() >= 150);
    s
}

fn stmt_2k() -> String {
    let mut s = String::from("SELECT c.id, c.name");
    let mut i = 0;
    while s.len() < 1900 {
        s.push_str(&format!(
            ", coalesce(o.f{i}, 0) + lower(c.n{i})::int AS x{i}"
        ));
        i += 1;
    }
    s.push_str(" FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id IN (SELECT customer_id FROM orders WHERE total > 10)");
    s
}

fn req<'a>(sql: &'a str, ctx: &'a SessionContext) -> Request<'a> {
    Request {
        dialect: Dialect::Postgres,
        source: Source::Query,
        sql: sql.as_bytes(),
        session: ctx,
    }
}

fn bench(c: &mut Criterion) {
    let rules = parse_rules(&[(Path::new("bench.toml"), RULES)]).expect("rules");
    let who = Principal {
        identity: "bot".into(),
        target: "app".into(),
        ..Principal::default()
    };
    let ctx = SessionContext {
        search_path: vec!["public".into()],
        ..SessionContext::default()
    };
    let s200 = stmt_200();
    let s2k = stmt_2k();

    let cached = Engine::new(rules.clone());
    cached.judge(&who, &req(&s200, &ctx));
    c.bench_function("policy/judge_cached_200b", |b| {
        b.iter(|| cached.judge(&who, &req(&s200, &ctx)))
    });
    cached.judge(&who, &req(&s2k, &ctx));
    c.bench_function("policy/judge_cached_2kb", |b| {
        b.iter(|| cached.judge(&who, &req(&s2k, &ctx)))
    });

    let mut no_cache = rules;
    no_cache.cache_entries = 0;
    let uncached = Engine::new(no_cache);
    c.bench_function("policy/judge_uncached_200b", |b| {
        b.iter(|| uncached.judge(&who, &req(&s200, &ctx)))
    });
    c.bench_function("policy/judge_uncached_2kb", |b| {
        b.iter(|| uncached.judge(&who, &req(&s2k, &ctx)))
    });
}

/// The lexing cross-check alone (`policy::lex_agreement`): the server
/// lexer's pass and the comparison with sqlparser's tokens, which every
/// uncached judgement pays on top of tokenizing and parsing.
fn lex_check(c: &mut Criterion) {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;
    for (name, sql) in [
        ("policy/lex_check_200b", stmt_200()),
        ("policy/lex_check_2kb", stmt_2k()),
    ] {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, &sql)
            .tokenize_with_location()
            .expect("tokens");
        c.bench_function(name, |b| {
            b.iter(|| airlock::policy::lex_agreement::check(Dialect::Postgres, &sql, &tokens))
        });
    }
}

criterion_group!(benches, bench, lex_check);
criterion_main!(benches);
