//! Postgres `VACUUM` and `ANALYZE` in the forms the server takes.
//!
//! sqlparser 0.63 reads Redshift's VACUUM (`VACUUM [FULL] [table]`), not
//! Postgres's: `VACUUM ANALYZE t` (which `pgbench -i` sends) and `VACUUM
//! (VERBOSE) t` were refused as unparseable, and the one table the
//! Redshift form names is not visited as a relation, so table rules never
//! saw it. Its ANALYZE takes one table. This reads Postgres's grammar:
//!
//! ```text
//! VACUUM [ ( option [, ...] ) ] [ table_and_columns [, ...] ]
//! VACUUM [ FULL ] [ FREEZE ] [ VERBOSE ] [ ANALYZE ] [ table_and_columns [, ...] ]
//! ANALYZE [ ( option [, ...] ) ] [ table_and_columns [, ...] ]
//! ANALYZE [ VERBOSE ] [ table_and_columns [, ...] ]
//!
//! option            = name [ word | number | 'string' ]
//! table_and_columns = [ ONLY ] name [ ( column [, ...] ) ]
//! ```
//!
//! (`ANALYSE` is `ANALYZE`.) An option's value is a word, a number or a
//! string, never an expression, so nothing that runs code can hide in
//! one. What the statement does to its tables does not matter to policy,
//! only which tables and columns it names: those become the statement's
//! facts (see [`crate::policy::extract::extract_parsed`]). Only the text
//! that is judged is read here; the client's bytes go to the server as
//! they came. A statement that starts with one of these words and has any
//! other shape is refused as unparseable.

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Word};

/// The options of VACUUM and ANALYZE in parentheses, up to Postgres 17
/// (the server refuses those that are not its version's, or not the
/// statement's). A name not listed is refused: a later server's option
/// is judged only once airlock knows what it does.
const OPTIONS: &[&str] = &[
    "analyze",
    "analyse",
    "buffer_usage_limit",
    "disable_page_skipping",
    "freeze",
    "full",
    "index_cleanup",
    "only_database_stats",
    "parallel",
    "process_main",
    "process_toast",
    "skip_database_stats",
    "skip_locked",
    "truncate",
    "verbose",
];

/// A Postgres VACUUM or ANALYZE statement: what it does and what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    /// VACUUM (else ANALYZE alone).
    pub vacuum: bool,
    /// Whether it analyzes (ANALYZE, or VACUUM with the ANALYZE option).
    /// A VACUUM that names the option at all counts, `(ANALYZE false)`
    /// too: it only adds the tables to what the statement reads.
    pub analyze: bool,
    /// The tables it names; none means every table the user may vacuum or
    /// analyze (the server skips, with a warning, the others).
    pub tables: Vec<MaintainedTable>,
}

/// One `table_and_columns` of a VACUUM or ANALYZE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainedTable {
    pub name: ObjectName,
    pub columns: Vec<Ident>,
}

/// The statement `segment` is, when it starts with VACUUM, ANALYZE or
/// ANALYSE: `Some(Err(why))` when the rest is not a form the server
/// takes. `None` for every other statement.
pub(super) fn maintenance(segment: &[TokenWithSpan]) -> Option<Result<Maintenance, String>> {
    let toks: Vec<&TokenWithSpan> = segment
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let (first, rest) = toks.split_first()?;
    let vacuum = plain(&first.token, Keyword::VACUUM);
    if !vacuum && !is_analyze(&first.token) {
        return None;
    }
    let what = if vacuum { "VACUUM" } else { "ANALYZE" };
    Some(read(vacuum, rest).map_err(|why| format!("{what}: {why}")))
}

fn read(vacuum: bool, mut rest: &[&TokenWithSpan]) -> Result<Maintenance, String> {
    let mut analyze = !vacuum;
    if rest.first().is_some_and(|t| t.token == Token::LParen) {
        let close = rest
            .iter()
            .position(|t| t.token == Token::RParen)
            .ok_or("the option list is not closed")?;
        for option in rest[1..close].split(|t| t.token == Token::Comma) {
            let (name, value) = match option {
                [name] => (name, None),
                [name, value] => (name, Some(value)),
                // `PARALLEL -1`: the server takes a signed number.
                [name, sign, n]
                    if matches!(sign.token, Token::Minus | Token::Plus)
                        && matches!(n.token, Token::Number(..)) =>
                {
                    (name, Some(n))
                }
                _ => return Err("each option is a name and at most one value".into()),
            };
            let known = |w: &Word| OPTIONS.iter().any(|o| w.value.eq_ignore_ascii_case(o));
            match &name.token {
                Token::Word(w) if known(w) => {}
                t => return Err(format!("{t} is not an option airlock knows")),
            }
            if value.is_some_and(|v| {
                !matches!(
                    v.token,
                    Token::Word(_) | Token::Number(..) | Token::SingleQuotedString(_)
                )
            }) {
                return Err("an option's value is a word, a number or a string".into());
            }
            if vacuum && is_analyze(&name.token) {
                analyze = true;
            }
        }
        rest = &rest[close + 1..];
    } else {
        // The old keyword options, in the server's order.
        let keywords: &[Keyword] = if vacuum {
            &[Keyword::FULL, Keyword::FREEZE, Keyword::VERBOSE]
        } else {
            &[Keyword::VERBOSE]
        };
        for kw in keywords {
            if rest.first().is_some_and(|t| plain(&t.token, *kw)) {
                rest = &rest[1..];
            }
        }
        if vacuum && rest.first().is_some_and(|t| is_analyze(&t.token)) {
            analyze = true;
            rest = &rest[1..];
        }
    }
    let mut tables = Vec::new();
    while !rest.is_empty() {
        let (table, after) = table_and_columns(rest)?;
        tables.push(table);
        rest = match after.split_first() {
            None => after,
            Some((comma, more)) if comma.token == Token::Comma && !more.is_empty() => more,
            Some((t, _)) => return Err(format!("unexpected {} after a table name", t.token)),
        };
    }
    Ok(Maintenance {
        vacuum,
        analyze,
        tables,
    })
}

/// `[ONLY] name [(column, ...)]` at the start of `toks`, and what follows.
fn table_and_columns<'a, 'b>(
    mut toks: &'a [&'b TokenWithSpan],
) -> Result<(MaintainedTable, &'a [&'b TokenWithSpan]), String> {
    if toks.first().is_some_and(|t| plain(&t.token, Keyword::ONLY)) {
        toks = &toks[1..];
    }
    let mut parts = Vec::new();
    loop {
        let Some((
            TokenWithSpan {
                token: Token::Word(w),
                span,
            },
            after,
        )) = toks.split_first().map(|(t, a)| (*t, a))
        else {
            return Err(match toks.first() {
                Some(t) => format!("expected a table name, found {}", t.token),
                None => "expected a table name".into(),
            });
        };
        parts.push(w.to_ident(*span));
        toks = after;
        match toks.split_first() {
            Some((dot, after)) if dot.token == Token::Period => toks = after,
            _ => break,
        }
    }
    if parts.len() > 3 {
        return Err("a table name has at most three parts".into());
    }
    let mut columns = Vec::new();
    if toks.first().is_some_and(|t| t.token == Token::LParen) {
        let close = toks
            .iter()
            .position(|t| t.token == Token::RParen)
            .ok_or("the column list is not closed")?;
        for column in toks[1..close].split(|t| t.token == Token::Comma) {
            match column {
                [TokenWithSpan {
                    token: Token::Word(w),
                    span,
                }] => columns.push(w.to_ident(*span)),
                _ => return Err("a column list holds column names".into()),
            }
        }
        toks = &toks[close + 1..];
    }
    Ok((
        MaintainedTable {
            name: ObjectName::from(parts),
            columns,
        },
        toks,
    ))
}

/// An unquoted keyword.
fn plain(token: &Token, kw: Keyword) -> bool {
    matches!(token, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == kw)
}

/// ANALYZE or its British spelling, unquoted.
fn is_analyze(token: &Token) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none()
        && (w.keyword == Keyword::ANALYZE || w.value.eq_ignore_ascii_case("analyse")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    /// VACUUM, ANALYZE, and the tables named (with their columns).
    type Read = (bool, bool, Vec<String>);

    fn read(sql: &str) -> Option<Result<Read, String>> {
        let toks = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .ok()?;
        maintenance(&toks).map(|r| {
            r.map(|m| {
                let tables = m
                    .tables
                    .iter()
                    .map(|t| {
                        let cols: Vec<String> = t.columns.iter().map(|c| c.to_string()).collect();
                        if cols.is_empty() {
                            t.name.to_string()
                        } else {
                            format!("{}({})", t.name, cols.join(","))
                        }
                    })
                    .collect();
                (m.vacuum, m.analyze, tables)
            })
        })
    }

    fn ok(sql: &str) -> Read {
        match read(sql) {
            Some(Ok(m)) => m,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn server_forms_name_their_tables() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ok("VACUUM"), (true, false, t(&[])));
        assert_eq!(
            ok("vacuum analyze pgbench_branches"),
            (true, true, t(&["pgbench_branches"]))
        );
        assert_eq!(
            ok("VACUUM FULL FREEZE VERBOSE ANALYSE public.a (x, \"Y\"), b"),
            (true, true, t(&["public.a(x,\"Y\")", "b"]))
        );
        assert_eq!(
            ok("VACUUM (VERBOSE, PARALLEL -1, INDEX_CLEANUP auto, BUFFER_USAGE_LIMIT '1MB', SKIP_LOCKED true) db.s.t"),
            (true, false, t(&["db.s.t"]))
        );
        assert_eq!(ok("VACUUM (ANALYZE false) t"), (true, true, t(&["t"])));
        assert_eq!(ok("ANALYZE"), (false, true, t(&[])));
        assert_eq!(
            ok("analyse verbose only t (a), u"),
            (false, true, t(&["t(a)", "u"]))
        );
        assert_eq!(
            ok("ANALYZE (VERBOSE, SKIP_LOCKED) /* c */ t"),
            (false, true, t(&["t"]))
        );
    }

    #[test]
    fn other_statements_are_not_read_here() {
        assert_eq!(read("SELECT 1"), None);
        assert_eq!(read("\"vacuum\""), None);
        assert_eq!(read("EXPLAIN ANALYZE SELECT 1"), None);
    }

    #[test]
    fn other_shapes_are_refused() {
        for sql in [
            "VACUUM t verbose",
            "VACUUM (VERBOSE t",
            "VACUUM (PARALLEL 1 + 1) t",
            "VACUUM (PARALLEL (1)) t",
            "VACUUM (VERBOSE) t (a",
            "VACUUM t (a + b)",
            "VACUUM t,",
            "VACUUM , t",
            "VACUUM a.b.c.d",
            "VACUUM t; SELECT 1",
            "ANALYZE t FOR COLUMNS a",
            "ANALYZE (SELECT 1)",
            "ANALYZE (ROWS 5) t",
            "VACUUM FULL t WHERE true",
        ] {
            assert!(matches!(read(sql), Some(Err(_))), "{sql}: {:?}", read(sql));
        }
    }
}
