//! What an approval window matches on: the statement as airlock parsed it,
//! with every literal replaced by `?`.
//!
//! A window releases later statements "of the same shape" without asking
//! a human again, so the shape must be what the server will run. A
//! hand-written tokenizer gets that wrong where the dialects disagree: `#`
//! is a comment to MySQL and XOR to Postgres, `1--1` is arithmetic to
//! MySQL, and a backslash ends no Postgres string. Text that hid
//! `OR id > 1` from it matched an approved `WHERE id = 1`. The key is
//! therefore made from airlock's own parse (the one its rules judged),
//! printed back with each literal as its kind (`?` for a number, `'?'`
//! for a string: see `literal_kind`): comments are gone, and everything
//! that runs is there. A text that does not parse, or is too long to
//! parse here, keys on its exact bytes (a long one on their SHA-256).

use sqlparser::ast::{visit_expressions_mut, Expr, Value};
use std::ops::ControlFlow;

use crate::policy::parse::{parse, Limits};
use crate::policy::Dialect;

/// Texts longer than this key on their exact bytes: this is called on
/// session and audit-writer threads, whose stacks parse only what the
/// policy engine parses inline (longer texts need a big stack; they are
/// rare among held statements).
const MAX_PARSED: usize = crate::policy::engine::INLINE_PARSE_BYTES;

/// The window key of `sql` in `protocol`'s dialect (`"postgres"` or
/// `"mysql"`).
pub fn window_key(protocol: &str, sql: &str) -> String {
    if sql.len() > MAX_PARSED {
        // Long texts key on their digest: the key is kept, and listed,
        // with each pending request (red-team finding: a copy of each 1 MB
        // statement doubled what every approvals poll returned).
        use sha2::{Digest, Sha256};
        let hex = crate::hex::encode(&Sha256::digest(sql.as_bytes()));
        return format!("text-sha256:{hex}");
    }
    parsed(dialect(protocol), sql).unwrap_or_else(|| format!("text:{sql}"))
}

/// The statement as airlock parses it (`sql:...`, as [`window_key`]
/// prints it), whatever its length: a long text is parsed on a big stack
/// ([`crate::big_stack`]). For what shows a text whose plain reading
/// misleads (the audit log's fingerprint, reviewers' view): padding it
/// past [`MAX_PARSED`] must not bring the misleading reading back (review
/// finding). `None` when it does not parse.
pub fn parsed_form(protocol: &str, sql: &str) -> Option<String> {
    let dialect = dialect(protocol);
    match sql.len() > MAX_PARSED {
        true => crate::big_stack::run("airlock-key", || parsed(dialect, sql)).flatten(),
        false => parsed(dialect, sql),
    }
}

fn dialect(protocol: &str) -> Dialect {
    match protocol {
        "mysql" => Dialect::MySql,
        _ => Dialect::Postgres,
    }
}

/// `sql` parsed and printed back with each literal as its kind
/// ([`literal_kind`]).
fn parsed(dialect: Dialect, sql: &str) -> Option<String> {
    let parsed = parse(dialect, sql, &Limits::default()).ok()?;
    let mut out = Vec::with_capacity(parsed.len());
    for p in parsed {
        let mut st = p.statement;
        let _ = visit_expressions_mut(&mut st, |e| {
            if let Expr::Value(v) = e {
                if let Some(kind) = literal_kind(&v.value) {
                    v.value = Value::Placeholder(kind.into());
                }
            }
            ControlFlow::<()>::Continue(())
        });
        out.push(st.to_string());
    }
    Some(format!("sql:{}", out.join("; ")))
}

/// What a literal becomes in the key: its kind, not its value. A number
/// is `?`, a string `'?'` (with its prefix: `E'?'`, `N'?'`, `X'?'`, ...),
/// so that a window approved for `status = 'new'` does not release
/// `status = 0`, which MySQL compares as a number and so matches nearly
/// every row (red-team finding). `TRUE`, `FALSE` and `NULL` stay as they
/// are; so do parameters (`$1`), except MySQL's `?`, written `?param` so
/// that it reads apart from a number. `None`: keep the value.
fn literal_kind(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Number(..) => "?",
        Value::SingleQuotedString(_)
        | Value::DoubleQuotedString(_)
        | Value::DollarQuotedString(_)
        | Value::TripleSingleQuotedString(_)
        | Value::TripleDoubleQuotedString(_)
        | Value::SingleQuotedRawStringLiteral(_)
        | Value::DoubleQuotedRawStringLiteral(_)
        | Value::TripleSingleQuotedRawStringLiteral(_)
        | Value::TripleDoubleQuotedRawStringLiteral(_)
        | Value::UnicodeStringLiteral(_) => "'?'",
        Value::EscapedStringLiteral(_) => "E'?'",
        Value::NationalStringLiteral(_) => "N'?'",
        Value::HexStringLiteral(_) => "X'?'",
        Value::SingleQuotedByteStringLiteral(_)
        | Value::DoubleQuotedByteStringLiteral(_)
        | Value::TripleSingleQuotedByteStringLiteral(_)
        | Value::TripleDoubleQuotedByteStringLiteral(_) => "B'?'",
        Value::Placeholder(p) if p == "?" => "?param",
        Value::Boolean(_) | Value::Null | Value::Placeholder(_) => return None,
        _ => "'?'",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_key_on_their_digest() {
        let long = format!(
            "UPDATE t SET a = 1 WHERE id = 1 /* {} */",
            "x".repeat(20_000)
        );
        let k = window_key("postgres", &long);
        assert!(k.starts_with("text-sha256:") && k.len() < 100, "{k}");
        assert_eq!(k, window_key("postgres", &long));
        assert_ne!(k, window_key("postgres", &long.replace("id = 1", "id = 2")));
    }

    #[test]
    fn literals_go_and_everything_that_runs_stays() {
        let k = |sql| window_key("postgres", sql);
        assert_eq!(
            k("UPDATE orders SET note = 'a' WHERE id = 1"),
            k("update orders set note='b' where id=2 -- why")
        );
        // Postgres `#` is XOR, not a comment; a backslash ends no string.
        assert_ne!(
            k("UPDATE orders SET note = 'a' WHERE id = 1 # 0"),
            k("UPDATE orders SET note = 'a' WHERE id = 1 # 0 OR id > 1")
        );
        assert_ne!(
            k("UPDATE t SET a = 'x' WHERE id = 1"),
            k("UPDATE t SET a = '\\' WHERE id = 1 OR 1=1 --' WHERE id = 1")
        );
        // MySQL: `1--1` is arithmetic, `/*! ... */` runs.
        let m = |sql| window_key("mysql", sql);
        assert_ne!(
            m("UPDATE t SET a = 1 WHERE id = 1"),
            m("UPDATE t SET a = 1 WHERE id = 1--1 OR 1=1")
        );
        assert_ne!(
            m("UPDATE t SET a = 1 WHERE id = 1"),
            m("UPDATE t SET a = 1 WHERE id = 1 /*! OR 1=1 */")
        );
        // Unparseable text keys on its bytes.
        assert_eq!(k("DO $$ x $$"), "text:DO $$ x $$");
    }
}
