//! Where the server's own lexer puts strings, quoted names and comments.
//!
//! airlock judges SQL through sqlparser's tokenizer, which is not the
//! server's. Where the two disagree on where a string, a quoted name or a
//! comment starts or ends, text the server runs is, to airlock, inside a
//! string or a comment, and runs unjudged (every lexing finding of the
//! red-team audits was of this kind). This module is an independent
//! reading of the text that follows the server's lexer (Postgres's
//! `scan.l`, MariaDB's and MySQL's `sql_lex.cc`) only as far as those
//! boundaries: it returns the [`Region`]s where the server does not read
//! code. [`super::lex_agreement`] refuses a statement whose regions
//! differ from sqlparser's tokens in any way.
//!
//! Where the server's reading is not certain (it depends on the server's
//! version, or the server refuses the text), [`regions`] returns an
//! error and the statement is refused: nothing here has to be right about
//! text the server would not run.

pub mod mysql;
pub mod postgres;

use super::Dialect;

/// What a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    /// A comment (for MySQL also an executable comment `/*! ... */`, as a
    /// whole: what is inside is read separately).
    Comment,
    /// A string constant or a quoted name.
    Quoted,
}

/// Bytes of the text that the server does not read as code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The opening quote, `$` or comment opener (a prefix such as `E` in
    /// `E'...'` is not part of the region).
    pub start: usize,
    /// Just past the closing quote or comment closer; a line comment ends
    /// before its newline.
    pub end: usize,
    pub kind: RegionKind,
}

/// The regions of `text` as the server reads it, in order; `Err` with a
/// reason when that reading is not certain.
pub fn regions(dialect: Dialect, text: &[u8]) -> Result<Vec<Region>, String> {
    match dialect {
        Dialect::Postgres => postgres::regions(text),
        Dialect::MySql => mysql::regions(text),
    }
}

/// The regions of `sql` as (kind letter, text) pairs: `c` a comment, `q`
/// a string or quoted name. For tests.
#[cfg(test)]
pub(crate) fn regions_as_text(dialect: Dialect, sql: &str) -> Result<Vec<(char, &str)>, String> {
    regions(dialect, sql.as_bytes()).map(|v| {
        v.iter()
            .map(|r| {
                let k = match r.kind {
                    RegionKind::Comment => 'c',
                    RegionKind::Quoted => 'q',
                };
                (k, &sql[r.start..r.end])
            })
            .collect()
    })
}
