//! sql_mode, which changes how statement text must be read: with
//! `ANSI_QUOTES` a `"..."` is an identifier, with `NO_BACKSLASH_ESCAPES` a
//! backslash no longer escapes a quote. airlock parses with the default
//! rules, so:
//!
//! * at login (and after a reset) the upstream session's sql_mode must have
//!   neither flag (nor `ORACLE`), or the session is refused
//!   ([`check_session`]);
//! * a statement may set sql_mode only with `SET [SESSION|LOCAL] sql_mode`,
//!   `SET @@[session.|local.]sql_mode` or `SET STATEMENT sql_mode = ... FOR`,
//!   to one plain string literal naming only modes that do not change
//!   lexing ([`check_statements`]). Any other mention of sql_mode outside
//!   SELECT and SHOW (including inside string literals, which PREPARE or
//!   EXECUTE IMMEDIATE could run) is refused.
//!
//! [`check_statements`] reads comment-free text, as
//! [`super::exec_comments::canonical`] produces.

use super::error::MyError;
use crate::policy::server_lexer::mysql::quoted_end;

/// Modes under which airlock cannot read statements correctly.
const UNSAFE_SESSION_MODES: &[&str] = &["ANSI_QUOTES", "NO_BACKSLASH_ESCAPES", "ORACLE"];

/// Refuses a session whose sql_mode (as `SELECT @@SESSION.sql_mode`
/// returns it, combination modes expanded) changes lexing.
pub fn check_session(mode: &str) -> Result<(), MyError> {
    let bad: Vec<&str> = mode
        .split(',')
        .map(str::trim)
        .filter(|m| {
            UNSAFE_SESSION_MODES
                .iter()
                .any(|u| u.eq_ignore_ascii_case(m))
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    tracing::error!(
        sql_mode = mode,
        "upstream session sql_mode changes how SQL is lexed; session refused"
    );
    Err(MyError::refused(
        1105,
        "HY000",
        format!(
            "airlock: the server session's sql_mode contains {}, which changes how statements are parsed; airlock refuses such sessions (remove it from the server's global sql_mode)",
            bad.join(", ")
        ),
    ))
}

/// True when `sql` mentions sql_mode at all (case-insensitively, anywhere);
/// only such texts need [`check_statements`].
pub fn mentions(sql: &[u8]) -> bool {
    memchr::memchr_iter(b'_', sql).any(|i| mention_at(sql, i))
}

/// True when the `_` at `sql[i]` is the one of a `sql_mode` (see
/// [`mentions`]).
pub fn mention_at(sql: &[u8], i: usize) -> bool {
    i >= 3
        && sql
            .get(i - 3..i + 5)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"sql_mode"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    /// A word or backtick-quoted identifier, unquoted.
    Word(&'a [u8]),
    /// A `'...'` or `"..."` literal, quotes included.
    Str(&'a [u8]),
    /// Any other single byte.
    Punct(u8),
}

fn tokens(s: &[u8]) -> Result<Vec<Tok<'_>>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' {
            let end = quoted_end(s, i).ok_or("unterminated string")?;
            out.push(Tok::Str(&s[i..end]));
            i = end;
        } else if c == b'`' {
            let end = quoted_end(s, i).ok_or("unterminated identifier")?;
            out.push(Tok::Word(&s[i + 1..end - 1]));
            i = end;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < s.len()
                && (s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] == b'$' || s[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Tok::Word(&s[start..i]));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

fn is_word(t: Option<&Tok<'_>>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w.as_bytes()))
}

/// Checks every statement of a comment-free text; `Err` says why one was
/// refused.
pub fn check_statements(text: &[u8]) -> Result<(), String> {
    let toks = tokens(text)?;
    for stmt in toks.split(|t| *t == Tok::Punct(b';')) {
        check_statement(stmt)?;
    }
    Ok(())
}

fn check_statement(t: &[Tok<'_>]) -> Result<(), String> {
    let named = |i: usize| is_word(t.get(i), "sql_mode");
    let in_string = t.iter().any(|x| matches!(x, Tok::Str(s) if mentions(s)));
    let assigns = |i: usize| match (t.get(i + 1), t.get(i + 2)) {
        (Some(Tok::Punct(b'=')), _) => Some(i + 2),
        (Some(Tok::Punct(b':')), Some(Tok::Punct(b'='))) => Some(i + 3),
        _ => None,
    };
    let first = t.first();
    if is_word(first, "select") || is_word(first, "show") {
        if (0..t.len()).any(|i| named(i) && assigns(i).is_some()) {
            return Err("sql_mode may not be compared or assigned here".into());
        }
        return Ok(());
    }
    if !is_word(first, "set") {
        if in_string || (0..t.len()).any(named) {
            return Err("only SET, SELECT and SHOW may mention sql_mode".into());
        }
        return Ok(());
    }
    if in_string {
        return Err("string literals that mention sql_mode are not allowed in SET".into());
    }
    for i in (0..t.len()).filter(|&i| named(i)) {
        let user_var =
            i >= 1 && t[i - 1] == Tok::Punct(b'@') && (i < 2 || t[i - 2] != Tok::Punct(b'@'));
        if user_var {
            continue;
        }
        let Some(v) = assigns(i) else {
            // A read (`@@sql_mode` on the right-hand side).
            if i >= 2 && t[i - 1] == Tok::Punct(b'@') {
                continue;
            }
            if i >= 4 && t[i - 1] == Tok::Punct(b'.') && t[i - 3] == Tok::Punct(b'@') {
                continue;
            }
            return Err("sql_mode used in a way airlock cannot check".into());
        };
        // Scope: the words before the name, back to the assignment start.
        let mut k = i;
        while k > 0 && !matches!(t[k - 1], Tok::Punct(b',')) && !is_word(t.get(k - 1), "set") {
            k -= 1;
            if ["global", "persist", "persist_only"]
                .iter()
                .any(|w| is_word(t.get(k), w))
            {
                return Err("the global sql_mode may not be changed".into());
            }
        }
        let (lit, v) = match t.get(v) {
            Some(Tok::Str(lit)) => (*lit, v),
            _ => match appended_modes(&t[v..]) {
                Some((lit, used)) => (lit, v + used - 1),
                None => return Err("sql_mode may only be set to a string literal, or to CONCAT(@@sql_mode, a string literal)".into()),
            },
        };
        match t.get(v + 1) {
            None | Some(Tok::Punct(b',')) => {}
            Some(x) if is_word(Some(x), "for") => {}
            _ => return Err("sql_mode may only be set to a single string literal".into()),
        }
        check_value(&lit[1..lit.len() - 1])?;
    }
    Ok(())
}

/// `CONCAT(@@sql_mode, '...')` (or `@@session.sql_mode`, `@@local.`) at
/// the start of `t`: the literal, and how many tokens the call takes.
/// MariaDB Connector/J logs in with `SET ... sql_mode =
/// CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')` (compatibility finding:
/// it could not connect). The session's own mode is one airlock accepts
/// (see [`check_session`] and this check), so adding safe modes to it
/// keeps it so.
fn appended_modes<'a>(t: &[Tok<'a>]) -> Option<(&'a [u8], usize)> {
    if !is_word(t.first(), "concat") || t.get(1) != Some(&Tok::Punct(b'(')) {
        return None;
    }
    let at = Tok::Punct(b'@');
    if t.get(2) != Some(&at) || t.get(3) != Some(&at) {
        return None;
    }
    let mut i = 4;
    if (is_word(t.get(i), "session") || is_word(t.get(i), "local"))
        && t.get(i + 1) == Some(&Tok::Punct(b'.'))
    {
        i += 2;
    }
    if !is_word(t.get(i), "sql_mode") || t.get(i + 1) != Some(&Tok::Punct(b',')) {
        return None;
    }
    match (t.get(i + 2), t.get(i + 3)) {
        (Some(Tok::Str(lit)), Some(Tok::Punct(b')'))) => Some((lit, i + 4)),
        _ => None,
    }
}

fn check_value(v: &[u8]) -> Result<(), String> {
    let v = String::from_utf8_lossy(v);
    crate::policy::builtin::mysql_sql_mode_value_is_safe(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> bool {
        check_statements(sql.as_bytes()).is_ok()
    }

    #[test]
    fn mentions_finds_any_case() {
        assert!(mentions(b"SET SQL_MODE=1"));
        assert!(mentions(b"sql_mode"));
        assert!(mentions(b"x @@Sql_Mode"));
        assert!(!mentions(b"sql_mod"));
        assert!(!mentions(b"_mode sqlmode"));
    }

    #[test]
    fn session_modes() {
        assert!(check_session("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO").is_ok());
        assert!(check_session("").is_ok());
        assert!(
            check_session("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI").is_err()
        );
        assert!(check_session("NO_BACKSLASH_ESCAPES").is_err());
        assert!(check_session("PIPES_AS_CONCAT,ORACLE").is_err());
    }

    #[test]
    fn safe_changes_pass() {
        for sql in [
            "SET sql_mode = 'STRICT_TRANS_TABLES'",
            "SET SESSION sql_mode='TRADITIONAL,NO_ENGINE_SUBSTITUTION'",
            "SET @@sql_mode := ''",
            "SET @@session.sql_mode = 'ONLY_FULL_GROUP_BY'",
            "SET LOCAL SQL_MODE = \"NO_ZERO_DATE\", autocommit = 1",
            "SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO'",
            "SET STATEMENT sql_mode='STRICT_ALL_TABLES' FOR SELECT 1",
            "set autocommit=1, sql_mode = concat(@@sql_mode,',STRICT_TRANS_TABLES')",
            "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_ZERO_DATE'), autocommit = 0",
            "SET @sql_mode = 'ANSI_QUOTES'",
            "SELECT @@sql_mode",
            "SELECT @@SESSION.sql_mode, @@GLOBAL.sql_mode",
            "SHOW VARIABLES LIKE 'sql_mode'",
            "SELECT 'sql_mode=ANSI_QUOTES'",
            "SET autocommit = 1",
        ] {
            assert!(ok(sql), "{sql}");
        }
    }

    #[test]
    fn bypasses_are_refused() {
        for sql in [
            "SET sql_mode = 'ANSI_QUOTES'",
            "SET sql_mode='NO_BACKSLASH_ESCAPES'",
            "SET sql_mode = 'ANSI'",
            "SET sql_mode = 'oracle'",
            "SET sql_mode = 'STRICT_ALL_TABLES,ansi_quotes'",
            "SET SESSION sql_mode = 'POSTGRESQL'",
            "SET @@session.sql_mode = 'MSSQL'",
            "SET @@sql_mode := 'ANSI_QUOTES'",
            "SET `sql_mode` = 'ANSI_QUOTES'",
            "SET GLOBAL sql_mode = ''",
            "SET @@global.sql_mode = ''",
            "SET PERSIST sql_mode = ''",
            "SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
            "SET sql_mode = CONCAT(@@global.sql_mode, ',STRICT_TRANS_TABLES')",
            "SET sql_mode = CONCAT(@x, ',STRICT_TRANS_TABLES')",
            "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES', ',ANSI_QUOTES')",
            "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES') + 1",
            "SET sql_mode = CONCAT(@@sql_mode, @x)",
            "SET sql_mode = @x",
            "SET sql_mode = DEFAULT",
            "SET sql_mode = 4",
            "SET sql_mode = ('ANSI_QUOTES')",
            "SET sql_mode = 'ANSI_' 'QUOTES'",
            "SET sql_mode = _latin1'ANSI_QUOTES'",
            r"SET sql_mode = 'AN\SI_QUOTES'",
            "SET sql_mode = x'414e53495f51554f544553'",
            "SET autocommit = 1, sql_mode = 'ANSI_QUOTES'",
            "SET STATEMENT sql_mode='ANSI_QUOTES' FOR SELECT \"password\" FROM users",
            "SELECT 1; SET sql_mode = 'ANSI_QUOTES'",
            "PREPARE s FROM 'SET sql_mode = ''ANSI_QUOTES'''",
            "EXECUTE IMMEDIATE 'SET sql_mode=\"ANSI_QUOTES\"'",
            "SET @s = 'SET sql_mode = 1'",
            "SELECT @@sql_mode := 'ANSI'",
            "CALL p(@@sql_mode)",
        ] {
            assert!(!ok(sql), "{sql}");
        }
    }
}
