//! Runs the policy corpus in `testdata/policy/*.corpus` against the rules
//! in `testdata/policy/rules/`.
//!
//! Corpus format, one case per line:
//!
//! ```text
//! @dialect postgres|mysql      # directives apply to the following cases
//! @identity ro                 # principal identity
//! @groups a,b                  # principal groups (empty: none)
//! @target app
//! @search_path a,b             # Postgres search_path (default public)
//! @database shop               # MySQL current database (- for none)
//! @prepared p1,p2              # names already prepared in the session
//! @source query|parse|function-call
//! allow | SELECT 1
//! block builtin.dangerous-function | SELECT pg_sleep(1)
//! approve rw.orders-delete | DELETE FROM orders WHERE id = 1
//! would ro.read-only | DELETE FROM t WHERE id = 1   # observe mode
//! ```
//!
//! `\n` in a statement is a newline; `\\` is a backslash.

use std::collections::HashSet;
use std::path::Path;

use airlock::policy::{
    load_rules, Decision, Dialect, Engine, Gate, Principal, Request, SessionContext, Source,
};

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o)
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c)
        }
    }
    out
}

#[test]
fn policy_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/policy");
    let rules = load_rules(&root.join("rules")).expect("corpus rules load");
    // An engine without a cache answers the shape-cache check below.
    let mut uncached_rules = rules.clone();
    uncached_rules.cache_entries = 0;
    let uncached = Engine::new(uncached_rules);
    let engine = Engine::new(rules);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "corpus"))
        .collect();
    files.sort();
    let mut cases = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read corpus");
        let mut dialect = Dialect::Postgres;
        let mut who = Principal {
            identity: "ro".into(),
            target: "app".into(),
            ..Principal::default()
        };
        let mut ctx = SessionContext {
            search_path: vec!["public".into()],
            ..SessionContext::default()
        };
        let mut source = Source::Query;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            if let Some(d) = line.strip_prefix('@') {
                let (k, v) = d.split_once(' ').unwrap_or((d, ""));
                let v = v.trim();
                let list = || -> Vec<String> {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                };
                match k {
                    "dialect" => {
                        dialect = if v == "mysql" {
                            Dialect::MySql
                        } else {
                            Dialect::Postgres
                        }
                    }
                    "identity" => who.identity = v.into(),
                    "groups" => who.groups = list(),
                    "target" => who.target = v.into(),
                    "search_path" => ctx.search_path = list(),
                    "database" => {
                        ctx.current_database = if v == "-" { None } else { Some(v.into()) }
                    }
                    "prepared" => ctx.prepared = list().into_iter().collect::<HashSet<_>>(),
                    "source" => {
                        source = match v {
                            "parse" => Source::Parse,
                            "function-call" => Source::FunctionCall,
                            _ => Source::Query,
                        }
                    }
                    other => panic!("{}:{}: unknown directive {other}", file.display(), n + 1),
                }
                continue;
            }
            let Some((expect, sql)) = line.split_once('|') else {
                panic!("{}:{}: expected `EXPECT | SQL`", file.display(), n + 1);
            };
            let sql = unescape(sql.trim_start());
            let req = Request {
                dialect,
                source,
                sql: sql.as_bytes(),
                session: &ctx,
            };
            cases += 1;
            // Twice: the second answer comes from the cache.
            for round in 0..2 {
                let j = engine.judge(&who, &req);
                let got = match (&j.decision, &j.would) {
                    (Decision::Allow, Some(Decision::Block { rule, .. })) => {
                        format!("would {rule}")
                    }
                    (Decision::Allow, _) => "allow".to_string(),
                    (Decision::Block { rule, .. }, _) => format!("block {rule}"),
                    (Decision::RequireApproval { rule, .. }, _) => format!("approve {rule}"),
                };
                if got != expect.trim() {
                    failures.push(format!(
                        "{}:{}: [{}] expected `{}`, got `{}` ({}) for: {}",
                        file.file_name()
                            .map(|f| f.to_string_lossy().to_string())
                            .unwrap_or_default(),
                        n + 1,
                        who.identity,
                        expect.trim(),
                        got,
                        j.decision,
                        sql
                    ));
                    break;
                }
                let _ = round;
            }
            // The shape cache must never answer a text differently from a
            // fresh analysis: judge variants that differ only in numbers
            // (all 0, all 1, all distinct) through the warm cache and
            // without one.
            if let Some(shape) = airlock::policy::shape::of(sql.as_bytes()) {
                for variant in 0..3u32 {
                    let mut k = 0u32;
                    let text: Vec<u8> = shape
                        .iter()
                        .flat_map(|&b| {
                            if b == airlock::policy::shape::MARKER {
                                k += 1;
                                let n = match variant {
                                    0 => 0,
                                    1 => 1,
                                    _ => k + 1,
                                };
                                n.to_string().into_bytes()
                            } else {
                                vec![b]
                            }
                        })
                        .collect();
                    let req = Request { sql: &text, ..req };
                    let warm = engine.judge(&who, &req);
                    let fresh = uncached.judge(&who, &req);
                    if warm != fresh {
                        failures.push(format!(
                            "{}:{}: shape cache answered `{}` but a fresh analysis `{}` for: {}",
                            file.display(),
                            n + 1,
                            warm.decision,
                            fresh.decision,
                            String::from_utf8_lossy(&text)
                        ));
                    }
                }
            }
        }
    }
    assert!(cases > 0, "no corpus cases found");
    if !failures.is_empty() {
        panic!(
            "{} of {cases} corpus cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    eprintln!("policy corpus: {cases} cases passed");
}

#[test]
fn policy_example_rules_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = load_rules(&root).expect("rules/ loads");
    assert!(!rules.policies.is_empty());
}
