//! Refuses text whose strings, quoted names and comments sqlparser's
//! tokenizer places otherwise than the server's lexer.
//!
//! [`check`] reads the text twice: as sqlparser tokenized it (every string
//! constant, quoted name and comment token, at its position in the text)
//! and as the server would ([`super::server_lexer`]). The two lists of
//! regions must be equal. Where they are, the code between them is the
//! same bytes to both, so nothing the server runs can be, to airlock,
//! inside a string or a comment. Where they are not, the statement is
//! refused as `builtin.unparseable`, naming the first place they part.
//!
//! This is the general form of the particular checks in
//! [`super::parse`] (which stay, for their clearer messages): each lexing
//! finding of the red-team audits was a place where the two readings part.

use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Whitespace};

use super::builtin::ids;
use super::parse::Blocked;
use super::server_lexer::{self, Region, RegionKind};
use super::Dialect;

/// `Ok` when sqlparser's `tokens` of `text` hold the same strings, quoted
/// names and comments, at the same places, as the server's reading.
pub fn check(dialect: Dialect, text: &str, tokens: &[TokenWithSpan]) -> Result<(), Blocked> {
    let server_name = match dialect {
        Dialect::Postgres => "Postgres",
        Dialect::MySql => "MySQL",
    };
    let server = server_lexer::regions(dialect, text.as_bytes()).map_err(|why| {
        Blocked::new(
            ids::UNPARSEABLE,
            format!(
                "{why}: airlock cannot be sure how {server_name} reads this text; write it otherwise"
            ),
        )
    })?;
    let ours = token_regions(text, tokens).ok_or_else(|| {
        Blocked::new(
            ids::UNPARSEABLE,
            "airlock could not place the statement's tokens in its text",
        )
    })?;
    let Some(at) = (0..server.len().max(ours.len())).find(|&k| server.get(k) != ours.get(k)) else {
        return Ok(());
    };
    let describe = |r: Option<&Region>| match r {
        None => "code".to_owned(),
        Some(r) => format!(
            "{} from byte {} to {}",
            match r.kind {
                RegionKind::Comment => "a comment",
                RegionKind::Quoted => "a string or quoted name",
            },
            r.start,
            r.end
        ),
    };
    let (s, o) = (server.get(at), ours.get(at));
    let from = s
        .map_or(usize::MAX, |r| r.start)
        .min(o.map_or(usize::MAX, |r| r.start));
    Err(Blocked::new(
        ids::UNPARSEABLE,
        format!(
            "the text at byte {from} ({}) is read differently by {server_name} ({}) and airlock ({}); write it otherwise",
            snippet(text, from),
            describe(s),
            describe(o),
        ),
    ))
}

/// Up to 20 characters of `text` from byte `at`, on one line.
fn snippet(text: &str, at: usize) -> String {
    let start = (0..=at.min(text.len()))
        .rev()
        .find(|&k| text.is_char_boundary(k))
        .unwrap_or(0);
    text[start..]
        .chars()
        .take(20)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The regions of sqlparser's tokens; `None` if a token's position cannot
/// be found in the text (positions out of order).
fn token_regions(text: &str, tokens: &[TokenWithSpan]) -> Option<Vec<Region>> {
    let mut at = Positions::new(text);
    let mut out = Vec::new();
    for t in tokens {
        let kind = match &t.token {
            Token::Whitespace(Whitespace::SingleLineComment { .. })
            | Token::Whitespace(Whitespace::MultiLineComment(_)) => RegionKind::Comment,
            Token::Word(w) if w.quote_style.is_some() => RegionKind::Quoted,
            other if super::parse::is_string_constant(other) => RegionKind::Quoted,
            _ => continue,
        };
        let start = at.byte(t.span.start)?;
        let mut end = at.byte(t.span.end)?;
        let raw = text.get(start..end)?;
        let open = match kind {
            RegionKind::Comment => 0,
            // A prefix (`E`, `N`, `U&`, `X`) is not part of the region; a
            // constant without quotes (MySQL's `0x1F`) is code.
            RegionKind::Quoted => match raw.find(['\'', '"', '`', '$']) {
                Some(k) => k,
                None => continue,
            },
        };
        if kind == RegionKind::Comment {
            end -= raw.len() - raw.trim_end_matches(['\n', '\r']).len();
        }
        out.push(Region {
            start: start + open,
            end,
            kind,
        });
    }
    Some(out)
}

/// Byte offsets of sqlparser's line and column positions, found moving
/// forward through the text (one pass for all tokens in order). sqlparser
/// counts columns in characters and starts a line after each `\n`.
struct Positions<'a> {
    text: &'a str,
    byte: usize,
    line: u64,
    column: u64,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        Positions {
            text,
            byte: 0,
            line: 1,
            column: 1,
        }
    }

    /// The byte offset of `loc`, at or after the last one asked for.
    fn byte(&mut self, loc: Location) -> Option<usize> {
        let target = (loc.line, loc.column);
        let mut chars = self.text.get(self.byte..)?.chars();
        loop {
            match (self.line, self.column).cmp(&target) {
                std::cmp::Ordering::Equal => return Some(self.byte),
                std::cmp::Ordering::Greater => return None,
                std::cmp::Ordering::Less => {}
            }
            let c = chars.next()?;
            self.byte += c.len_utf8();
            if c == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tokenizer_dialect::tokenizer_dialect;
    use sqlparser::tokenizer::Tokenizer;

    fn agree(dialect: Dialect, sql: &str) -> Result<(), String> {
        let tokens = Tokenizer::new(tokenizer_dialect(dialect), sql)
            .tokenize_with_location()
            .map_err(|e| e.to_string())?;
        check(dialect, sql, &tokens).map_err(|b| b.message)
    }

    #[test]
    fn ordinary_text_agrees() {
        for sql in [
            "SELECT 'a''b', \"x\"\"y\", E'\\'', B'01', X'1F', N'n', U&'\\0041', $$a$$, $t$b$t$ -- c\nFROM t /* d /* e */ */",
            "SELECT 1 -- c\r\n, 2",
            "SELECT 'é', \"ü\", 1 -- ß\n",
            "SELECT a$b, $1, 1e5, 1.5e-3, .5 FROM t WHERE x ~ 'y' AND z::text = 'w'",
            "",
            "-- only a comment",
        ] {
            assert_eq!(agree(Dialect::Postgres, sql), Ok(()), "{sql}");
        }
        for sql in [
            "SELECT `a``b`, \"c\\\"d\", 'e\\'f', x'1F', 0x1F, b'01', N'n', _utf8mb4'x', @a, @@version # c\n, 2",
            "SELECT 1 -- c\n, 2 /* d */, '--', '#'",
            "SELECT 1 /*!40000 , 'x' */, 2 /*M!100000 , 3 */",
            "SELECT 'é', `ü` # ß",
        ] {
            assert_eq!(agree(Dialect::MySql, sql), Ok(()), "{sql}");
        }
    }

    /// The red-team findings of the lexing audits, each of which the
    /// particular checks in `parse` also refuse: the general check
    /// refuses them on its own.
    #[test]
    fn text_read_otherwise_is_refused() {
        for sql in [
            "SELECT E''\n'\\'' , ssn FROM customers --'",
            "SELECT 2 #/*'*/ 3, ssn FROM customers --'",
            "SELECT 1 <>/* ' */ 0, ssn FROM customers --'",
            "SELECT $€$ --$€$, ssn FROM customers",
            "SELECT $1$x$1$, ssn FROM customers",
        ] {
            let why = agree(Dialect::Postgres, sql).expect_err(sql);
            assert!(why.contains("Postgres"), "{sql}: {why}");
        }
        for sql in [
            "SELECT b\"\\\" AS a, \" , ssn FROM customers #\"",
            "SELECT 1 |/* ' */ 0; SELECT ssn FROM customers -- '",
            "SELECT 1 /*!40000 -- */ /* \n , ssn FROM customers \n */",
        ] {
            assert!(agree(Dialect::MySql, sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn positions_follow_sqlparser() {
        let text = "ab\ncé\nd";
        let mut p = Positions::new(text);
        assert_eq!(p.byte(Location { line: 1, column: 1 }), Some(0));
        assert_eq!(p.byte(Location { line: 2, column: 2 }), Some(4));
        assert_eq!(p.byte(Location { line: 2, column: 3 }), Some(6));
        assert_eq!(p.byte(Location { line: 3, column: 2 }), Some(8));
        assert_eq!(p.byte(Location { line: 1, column: 1 }), None);
    }
}
