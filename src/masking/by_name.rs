//! Statements that read rows by name from a session object: SQL `EXECUTE
//! name` (a prepared statement) and `FETCH ... name` (a cursor or a
//! portal), also under EXPLAIN.
//!
//! Their rows are opaque to lineage: the text does not say what they
//! return. For SQL-level objects that is safe, because airlock judged
//! what they run when they were made (`PREPARE` and `DECLARE` of masked
//! data are refused). But Postgres keeps the statements and portals a
//! client makes through the protocol (Parse, Bind) in the same namespaces,
//! so `EXECUTE s` or `FETCH ALL FROM p` would read a protocol-level
//! statement or portal without its masking plan. The Postgres session
//! looks each name up ([`crate::pg::masking::PlanBook`]) and refuses the
//! read when that object masks columns.

use std::ops::ControlFlow;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Statement};

use crate::policy::classify::{pg_identifier, statement_name};
use crate::policy::parse::{self, Limits};
use crate::policy::Dialect;

use super::StatementPlan;

/// A session object a statement reads rows from, with every name the
/// server may resolve it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadByName {
    /// `EXECUTE name`: a prepared statement.
    Statement(Vec<String>),
    /// `FETCH ... name`: a cursor or a portal.
    Portal(Vec<String>),
}

impl ReadByName {
    /// The names, for messages.
    pub fn name(&self) -> &str {
        match self {
            ReadByName::Statement(n) | ReadByName::Portal(n) => {
                n.first().map_or("", String::as_str)
            }
        }
    }
}

/// Whether `sql` may read by name: it spells EXECUTE or FETCH (SQL
/// keywords have no escapes, so a statement that does is spelled so).
/// Cheap; only texts that pass are parsed by [`reads`].
pub fn may_read_by_name(sql: &[u8]) -> bool {
    sql.iter().enumerate().any(|(i, &b)| match b | 0x20 {
        b'e' => starts_with_word(&sql[i..], b"execute"),
        b'f' => starts_with_word(&sql[i..], b"fetch"),
        _ => false,
    })
}

/// Whether `text` starts with `word`, in any case.
pub(crate) fn starts_with_word(text: &[u8], word: &[u8]) -> bool {
    text.get(..word.len())
        .is_some_and(|t| t.eq_ignore_ascii_case(word))
}

/// Whether a statement with these plans may read rows by name: only
/// opaque plans can (EXECUTE, FETCH), and only texts that spell the
/// keyword ([`may_read_by_name`]).
pub fn plans_may_read<'a>(plans: impl IntoIterator<Item = &'a StatementPlan>, sql: &[u8]) -> bool {
    plans
        .into_iter()
        .any(|p| matches!(p, StatementPlan::Opaque))
        && may_read_by_name(sql)
}

/// Whether a plan of a statement or portal made through the protocol
/// masks columns, or is opaque (it may itself read another object by
/// name): reading its rows by name is refused.
pub fn guards_rows(plan: &StatementPlan) -> bool {
    match plan {
        StatementPlan::Columns(cols) => cols
            .iter()
            .any(|c| matches!(c, super::ColumnMask::Mask { .. })),
        StatementPlan::Opaque | StatementPlan::OpenColumns(_) => true,
        StatementPlan::NoResult | StatementPlan::Ddl | StatementPlan::Block { .. } => false,
    }
}

/// What `sql` reads by name. `None` when the text does not parse (the
/// policy refuses such a text anyway). Parses on the caller's stack:
/// callers keep texts longer than the inline parse limit off it.
pub fn reads(dialect: Dialect, sql: &str, limits: &Limits) -> Option<Vec<ReadByName>> {
    let parsed = parse::parse(dialect, sql, limits).ok()?;
    let mut reads = Vec::new();
    for p in &parsed {
        let _ = sqlparser::ast::visit_statements(&p.statement, |st| {
            match st {
                Statement::Execute { name, .. } => {
                    reads.push(ReadByName::Statement(
                        name.as_ref().map(object_names).unwrap_or_default(),
                    ));
                }
                Statement::Fetch { name, .. } => reads.push(ReadByName::Portal(names(name))),
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
    }
    Some(reads)
}

/// The names Postgres may resolve an identifier to: a quoted one as
/// written; an unquoted one with ASCII letters folded to lower case (and,
/// to fail closed, also as written); each cut to 63 bytes as the server
/// cuts identifiers.
fn names(ident: &Ident) -> Vec<String> {
    let read = statement_name(Dialect::Postgres, ident);
    let written = pg_identifier(ident.value.clone());
    match read == written {
        true => vec![read],
        false => vec![read, written],
    }
}

fn object_names(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(names(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(sql: &str) -> Vec<ReadByName> {
        reads(Dialect::Postgres, sql, &Limits::default()).unwrap()
    }

    #[test]
    fn names_are_resolved_as_postgres_does() {
        assert_eq!(
            r("FETCH ALL FROM Leak"),
            vec![ReadByName::Portal(vec!["leak".into(), "Leak".into()])]
        );
        assert_eq!(
            r("fetch next in \"Leak\""),
            vec![ReadByName::Portal(vec!["Leak".into()])]
        );
        assert_eq!(
            r("EXPLAIN ANALYZE EXECUTE s(1); SELECT 1"),
            vec![ReadByName::Statement(vec!["s".into()])]
        );
        assert_eq!(r("SELECT 'fetch all from p'"), vec![]);
    }

    #[test]
    fn the_text_check_finds_the_keywords_in_any_case() {
        for sql in [
            "FETCH ALL FROM p",
            "x; execute s",
            "/* */ExEcUtE s",
            "fetch",
        ] {
            assert!(may_read_by_name(sql.as_bytes()), "{sql}");
        }
        for sql in ["SELECT 1", "SELECT fetc", "exec s", ""] {
            assert!(!may_read_by_name(sql.as_bytes()), "{sql}");
        }
    }
}
