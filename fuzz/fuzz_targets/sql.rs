//! Fuzzes the policy engine's judge entry point with arbitrary bytes, for
//! both dialects and all request sources. Seeds: `testdata/fuzz/sql/`.
//!
//! cargo +nightly fuzz run sql ../testdata/fuzz/sql

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use airlock::policy::rules::parse_rules;
use airlock::policy::{Dialect, Engine, Gate, Principal, Request, SessionContext, Source};
use libfuzzer_sys::fuzz_target;

const RULES: &str = r#"
[[policy]]
id = "ro"
applies_to = { identities = ["bot"] }
read_only = true
deny_tables = ["public.payments"]
deny_columns = ["public.customers.ssn"]
require_approval = [{ id = "a", statements = ["read"], tables = ["public.orders"] }]
"#;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let mut rules = parse_rules(&[(Path::new("fuzz.toml"), RULES)]).expect("rules");
        rules.cache_entries = 0;
        Engine::new(rules)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, sql)) = data.split_first() else {
        return;
    };
    let dialect = if selector & 1 == 0 {
        Dialect::Postgres
    } else {
        Dialect::MySql
    };
    let source = match (selector >> 1) % 3 {
        0 => Source::Query,
        1 => Source::Parse,
        _ => Source::FunctionCall,
    };
    let ctx = SessionContext {
        search_path: vec!["public".into()],
        current_database: Some("shop".into()),
        prepared: ["p".to_string()].into_iter().collect(),
    };
    let who = Principal {
        identity: "bot".into(),
        target: "app".into(),
        ..Principal::default()
    };
    let _ = engine().judge(
        &who,
        &Request {
            dialect,
            source,
            sql,
            session: &ctx,
        },
    );
});
