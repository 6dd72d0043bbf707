//! Postgres's lexer (`src/backend/parser/scan.l`), as far as where
//! strings, quoted names and comments begin and end. The session runs with
//! `standard_conforming_strings = on`: sessions where it is off are
//! refused ([`crate::pg::lexer_guard`]), so only `E'...'` strings take
//! backslash escapes.
//!
//! What Postgres reads, byte by byte in code:
//! - `--` starts a comment to the next `\n` or `\r`, and `/*` a comment
//!   to its matching `*/` (they nest), wherever they are: an operator
//!   ends before them;
//! - `'` a string (`''` is a quote), `"` a quoted name (`""` is a quote);
//!   a string continues past a closing quote when white space with a
//!   newline (and line comments) separates it from another quote;
//! - at the start of a token, `E'`/`e'` a string with backslash escapes,
//!   `B'`/`X'` one that ends at the next quote, `N'` an ordinary one,
//!   `U&'` and `U&"` ordinary ones with Unicode escapes;
//! - `$tag$` (tag: letters, `_`, bytes above 0x7f, then digits too) starts
//!   a string that ends at the same `$tag$`, when the `$` starts a token (it
//!   does not inside a name, which may hold `$`).
//!
//! A number run directly into a quote is refused: Postgres 15 and later
//! refuse it ("trailing junk"), and earlier versions read `1E'...'` as the
//! number 1 and an escaped string.

use super::{Region, RegionKind};

/// How a string's closing quote is found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    /// `''` is a quote.
    Standard,
    /// `''` is a quote, and a backslash escapes the next byte.
    Escaped,
    /// Ends at the next quote (`B'...'`, `X'...'`).
    BitOrHex,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// The regions of `s`, in order.
pub fn regions(s: &[u8]) -> Result<Vec<Region>, String> {
    let mut out = Vec::new();
    let mut push = |start: usize, end: usize, kind: RegionKind| {
        out.push(Region { start, end, kind });
        end
    };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        i = match c {
            b'-' if next == Some(b'-') => {
                let end = s[i..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .map_or(s.len(), |p| i + p);
                push(i, end, RegionKind::Comment)
            }
            b'/' if next == Some(b'*') => push(i, block_comment_end(s, i)?, RegionKind::Comment),
            b'\'' => push(i, string_end(s, i, Body::Standard)?, RegionKind::Quoted),
            b'"' => push(i, quoted_name_end(s, i)?, RegionKind::Quoted),
            b'$' => match dollar_delimiter(s, i) {
                Some(len) => {
                    let delim = &s[i..i + len];
                    let close = memchr::memmem::find(&s[i + len..], delim)
                        .ok_or("an unterminated dollar-quoted string")?;
                    push(i, i + len + close + len, RegionKind::Quoted)
                }
                None => i + 1,
            },
            c if is_ident_start(c) => {
                let lower = c.to_ascii_lowercase();
                let body = match (lower, next) {
                    (b'e', Some(b'\'')) => Some(Body::Escaped),
                    (b'b' | b'x', Some(b'\'')) => Some(Body::BitOrHex),
                    (b'n', Some(b'\'')) => Some(Body::Standard),
                    _ => None,
                };
                let unicode = lower == b'u' && next == Some(b'&');
                if let Some(body) = body {
                    push(i + 1, string_end(s, i + 1, body)?, RegionKind::Quoted)
                } else if unicode && s.get(i + 2) == Some(&b'\'') {
                    push(
                        i + 2,
                        string_end(s, i + 2, Body::Standard)?,
                        RegionKind::Quoted,
                    )
                } else if unicode && s.get(i + 2) == Some(&b'"') {
                    push(i + 2, quoted_name_end(s, i + 2)?, RegionKind::Quoted)
                } else {
                    let mut j = i + 1;
                    while j < s.len() && is_ident_cont(s[j]) {
                        j += 1;
                    }
                    j
                }
            }
            c if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let end = number_end(s, i);
                let lettered = s[i..end].iter().any(u8::is_ascii_alphabetic);
                if lettered && matches!(s.get(end), Some(b'\'' | b'"' | b'&')) {
                    return Err("a number directly followed by a quote".into());
                }
                end
            }
            _ => i + 1,
        };
    }
    Ok(out)
}

/// The end of a number (and of any letters run into it, which Postgres
/// reads as part of it or refuses): digits, letters, `_` and `.`, and a
/// sign right after an exponent's `e` when a digit follows.
fn number_end(s: &[u8], mut i: usize) -> usize {
    while let Some(&c) = s.get(i) {
        let signed_exponent = matches!(c, b'+' | b'-')
            && matches!(s.get(i.wrapping_sub(1)), Some(b'e' | b'E'))
            && s.get(i + 1).is_some_and(u8::is_ascii_digit);
        if !(c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || signed_exponent) {
            break;
        }
        i += 1;
    }
    i
}

/// The end of the `/* ... */` comment at `i`, nested comments included.
fn block_comment_end(s: &[u8], i: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut j = i;
    while j + 1 < s.len() {
        match (s[j], s[j + 1]) {
            (b'/', b'*') => {
                depth += 1;
                j += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => j += 1,
        }
    }
    Err("an unterminated /* comment".into())
}

/// The end of the string whose opening quote is at `q`, continuations
/// included.
fn string_end(s: &[u8], q: usize, body: Body) -> Result<usize, String> {
    let mut j = q + 1;
    loop {
        match s.get(j) {
            None => return Err("an unterminated string".into()),
            Some(b'\\') if body == Body::Escaped => j += 2,
            Some(b'\'') if body != Body::BitOrHex && s.get(j + 1) == Some(&b'\'') => j += 2,
            Some(b'\'') => match continuation(s, j + 1)? {
                Some(next_quote) => j = next_quote + 1,
                None => return Ok(j + 1),
            },
            Some(_) => j += 1,
        }
    }
}

/// Where a string that closed just before `i` continues: the quote after
/// white space (and `--` comments) holding a newline, as in
/// `'a'` newline `'b'`.
fn continuation(s: &[u8], mut i: usize) -> Result<Option<usize>, String> {
    let mut newline = false;
    while let Some(&c) = s.get(i) {
        match c {
            b' ' | b'\t' | 0x0c => i += 1,
            // Postgres 16 reads a vertical tab as white space, 15 as an
            // error: which one the server is, airlock does not know.
            0x0b => return Err("a vertical tab after a string".into()),
            b'\n' | b'\r' => {
                newline = true;
                i += 1;
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                i += s[i..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .unwrap_or(s.len() - i);
            }
            b'\'' if newline => return Ok(Some(i)),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// The end of the quoted name whose opening `"` is at `q`.
fn quoted_name_end(s: &[u8], q: usize) -> Result<usize, String> {
    let mut j = q + 1;
    loop {
        match s.get(j) {
            None => return Err("an unterminated quoted name".into()),
            Some(b'"') if s.get(j + 1) == Some(&b'"') => j += 2,
            Some(b'"') => return Ok(j + 1),
            Some(_) => j += 1,
        }
    }
}

/// The length of the dollar-quote delimiter (`$$` or `$tag$`) at `i`.
fn dollar_delimiter(s: &[u8], i: usize) -> Option<usize> {
    let start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80;
    let mut j = i + 1;
    if s.get(j).is_some_and(|&c| start(c)) {
        j += 1;
        while s.get(j).is_some_and(|&c| start(c) || c.is_ascii_digit()) {
            j += 1;
        }
    }
    (s.get(j) == Some(&b'$')).then_some(j + 1 - i)
}

#[cfg(test)]
mod tests {

    fn r(sql: &str) -> Result<Vec<(char, &str)>, String> {
        super::super::regions_as_text(crate::policy::Dialect::Postgres, sql)
    }

    #[test]
    fn strings_names_and_comments() {
        assert_eq!(
            r("SELECT 'a''b', \"x\"\"y\" FROM t").unwrap(),
            [('q', "'a''b'"), ('q', "\"x\"\"y\"")]
        );
        assert_eq!(
            r("SELECT 'a\\' -- c\r, 2").unwrap(),
            [('q', "'a\\'"), ('c', "-- c")]
        );
        assert_eq!(
            r("SELECT E'a\\'b', e'\\\\'").unwrap(),
            [('q', "'a\\'b'"), ('q', "'\\\\'")]
        );
        assert_eq!(
            r("SELECT B'01', x'1F', N'n', U&'u', U&\"v\"")
                .unwrap()
                .len(),
            5
        );
        assert_eq!(
            r("SELECT /* a /* b */ c */ 1").unwrap(),
            [('c', "/* a /* b */ c */")]
        );
        assert_eq!(r("SELECT 1 #/*'*/ 3").unwrap(), [('c', "/*'*/")]);
        assert_eq!(r("SELECT 2 -/* x */ 1").unwrap(), [('c', "/* x */")]);
        assert_eq!(r("SELECT 2 <>-- x\n1").unwrap(), [('c', "-- x")]);
        assert_eq!(
            r("SELECT $$a'b$$, $t$ $$ $t$").unwrap(),
            [('q', "$$a'b$$"), ('q', "$t$ $$ $t$")]
        );
        assert_eq!(r("SELECT $€$ --$€$, ssn").unwrap(), [('q', "$€$ --$€$")]);
        assert_eq!(r("SELECT a$b$c, $1 FROM t").unwrap(), []);
        assert_eq!(r("SELECT 1$a$ x $a$").unwrap(), [('q', "$a$ x $a$")]);
        // `E` inside a name does not start an escaped string.
        assert_eq!(
            r("SELECT typE'a\\' , 1 --'").unwrap(),
            [('q', "'a\\'"), ('c', "--'")]
        );
    }

    #[test]
    fn continued_strings_are_one() {
        // The part after the newline keeps the E string's escapes: `\'`
        // is a quote, and `, x` is code.
        assert_eq!(
            r("SELECT E''\n'\\'' , x --'").unwrap(),
            [('q', "''\n'\\''"), ('c', "--'")]
        );
        assert_eq!(
            r("SELECT 'a' -- c\n 'b'").unwrap(),
            [('q', "'a' -- c\n 'b'")]
        );
        assert_eq!(r("SELECT 'a' 'b'").unwrap(), [('q', "'a'"), ('q', "'b'")]);
        assert_eq!(r("SELECT 'a' /* c */\n'b'").unwrap().len(), 3);
    }

    #[test]
    fn uncertain_or_unterminated_text_is_an_error() {
        for sql in [
            "SELECT 'a",
            "SELECT \"a",
            "SELECT /* a",
            "SELECT $x$ a",
            "SELECT 1E'a'",
            "SELECT 0x'1'",
            "SELECT 'a' \u{b}\n'b'",
        ] {
            assert!(r(sql).is_err(), "{sql}");
        }
        assert!(r("SELECT 1e5, 1.5e-3, .5, 0x1F, 1_000").unwrap().is_empty());
    }
}
