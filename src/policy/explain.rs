//! `airlock explain`: facts, decision and the deciding rule, as text.

use std::fmt::Write;

use super::engine::Engine;
use super::{Dialect, Principal, Request, SessionContext, Source};

/// Judges `sql` for `who` (uncached) and describes how. `database`: the
/// MySQL current database a session of the target starts in (the
/// target's), against which unqualified names resolve.
pub fn explain(
    engine: &Engine,
    who: &Principal,
    dialect: Dialect,
    sql: &str,
    database: Option<&str>,
) -> String {
    explain_and_judge(engine, who, dialect, sql, database).0
}

/// [`explain`], and whether the statement would run as sent: allowed, not
/// blocked nor held (`airlock explain --exit-code`).
pub fn explain_and_judge(
    engine: &Engine,
    who: &Principal,
    dialect: Dialect,
    sql: &str,
    database: Option<&str>,
) -> (String, bool) {
    let ctx = SessionContext {
        search_path: vec!["public".into()],
        current_database: database.map(str::to_owned),
        ..SessionContext::default()
    };
    let req = Request {
        dialect,
        source: Source::Query,
        sql: sql.as_bytes(),
        session: &ctx,
    };
    let a = engine.analyze(who, &req);
    let mut out = String::new();
    let _ = writeln!(out, "rules version: {}", engine.version());
    let _ = writeln!(
        out,
        "policy: {}",
        a.policy
            .as_deref()
            .unwrap_or("(none: everything is denied)")
    );
    for (i, f) in a.statements.iter().enumerate() {
        let _ = writeln!(out, "statement {}: {}", i + 1, f.kind);
        let class = f.class.map(|c| c.to_string()).unwrap_or_default();
        let _ = writeln!(out, "  class: {class}");
        let list = |rels: &std::collections::BTreeSet<super::facts::Relation>| {
            rels.iter()
                .map(|r| r.candidates().collect::<Vec<_>>().join("|"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  reads: {}", list(&f.reads));
        let _ = writeln!(out, "  writes: {}", list(&f.writes));
        let cols: Vec<String> = f
            .columns
            .iter()
            .map(|c| {
                let q = c
                    .qualifier
                    .as_deref()
                    .map(|q| format!("{q}."))
                    .unwrap_or_default();
                format!("{q}{} ({:?})", c.name, c.location)
            })
            .collect();
        if !f.renamed_schemas.is_empty() {
            let names: Vec<&str> = f.renamed_schemas.iter().map(String::as_str).collect();
            let _ = writeln!(out, "  renames schemas: {}", names.join(", "));
        }
        if !f.listed_schemas.is_empty() {
            let names: Vec<&str> = f.listed_schemas.iter().map(String::as_str).collect();
            let _ = writeln!(out, "  lists schemas: {}", names.join(", "));
        }
        if !f.granted_schemas.is_empty() {
            let names: Vec<&str> = f.granted_schemas.iter().map(String::as_str).collect();
            let _ = writeln!(out, "  every table of schemas: {}", names.join(", "));
        }
        let _ = writeln!(out, "  columns: {}", cols.join(", "));
        let funcs: Vec<String> = f
            .functions
            .iter()
            .map(|x| match &x.schema {
                Some(s) => format!("{s}.{}", x.name),
                None => x.name.clone(),
            })
            .collect();
        let _ = writeln!(out, "  functions: {}", funcs.join(", "));
        let mut flags = Vec::new();
        for (on, name) in [
            (f.has_where, "has_where"),
            (f.constant_true_where, "constant_true_where"),
            (f.unconstrained_where, "unconstrained_where"),
            (f.unbounded_write, "unbounded_write"),
            (f.data_modifying_cte, "data_modifying_cte"),
            (f.whole_row, "whole_row"),
            (f.implicit_columns, "implicit_columns"),
            (f.row_locks, "row_locks"),
            (f.explain, "explain"),
            (f.explain_analyze, "explain_analyze"),
            (f.multi_statement, "multi_statement"),
            (f.session.enables_writes, "enables_writes"),
        ] {
            if on {
                flags.push(name);
            }
        }
        let _ = writeln!(out, "  flags: {}", flags.join(", "));
        for (rule, msg) in &f.violations {
            let _ = writeln!(out, "  built-in: {rule}: {msg}");
        }
    }
    let _ = writeln!(out, "decision: {}", a.judgement.decision);
    if let Some(w) = &a.judgement.would {
        let _ = writeln!(out, "observe mode; would have been: {w}");
    }
    (out, a.judgement.decision.is_allow())
}
