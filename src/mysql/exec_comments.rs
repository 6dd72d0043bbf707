//! Executable comments, expanded as the upstream server would.
//!
//! `/*! ... */` runs on MySQL and MariaDB; `/*!NNNNN ... */` (five digits,
//! six on MariaDB) only when the server's version is at least NNNNN;
//! `/*M! ... */` and `/*M!NNNNNN ... */` only on MariaDB. The server lexes
//! the content of an executed comment as code (so a `*/` inside a string
//! does not close it) and skips a comment it does not execute up to the
//! first `*/`.
//!
//! [`expand`] returns the text the server effectively parses, for the
//! policy to judge: executed comments unwrapped, skipped ones and ordinary
//! comments replaced by a space, and `--` that does not start a comment
//! spaced out as `- -`. Anything whose meaning is not certain is refused
//! (fail closed): unterminated strings or comments, comments nested in
//! executable ones, line comments inside them, `/*M!` on MySQL, six-digit
//! versions on MySQL, an unknown server version, and on MariaDB the MySQL
//! version range 50700–99999 (which MariaDB treats specially).

use std::borrow::Cow;

use super::server_info::ServerInfo;
use crate::policy::server_lexer::mysql::{
    find_close, is_dash_comment, line_comment_end, quoted_end,
};

/// True when `sql` contains an executable-comment marker anywhere (even in
/// a string); texts without one need no expansion.
pub fn has_marker(sql: &[u8]) -> bool {
    // memchr on one byte: a memmem searcher costs more to set up than a
    // short statement takes to scan.
    memchr::memchr_iter(b'/', sql).any(|i| marker_at(sql, i))
}

/// True when the `/` at `sql[i]` starts a marker (see [`has_marker`]).
pub fn marker_at(sql: &[u8], i: usize) -> bool {
    let rest = sql.get(i + 1..).unwrap_or_default();
    rest.starts_with(b"*!") || rest.starts_with(b"*M!")
}

/// The text the server would parse; borrowed when there is no marker.
pub fn expand<'a>(sql: &'a [u8], server: &ServerInfo) -> Result<Cow<'a, [u8]>, String> {
    if !has_marker(sql) {
        return Ok(Cow::Borrowed(sql));
    }
    canonical(sql, server).map(Cow::Owned)
}

/// The text with executable comments resolved and every comment removed.
pub fn canonical(s: &[u8], server: &ServerInfo) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut in_exec = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let end = quoted_end(s, i).ok_or("unterminated string or quoted identifier")?;
                out.extend_from_slice(&s[i..end]);
                i = end;
            }
            b'#' => {
                if in_exec {
                    return Err("line comment inside an executable comment".into());
                }
                out.push(b' ');
                i = line_comment_end(s, i);
            }
            b'-' if is_dash_comment(s, i) => {
                if in_exec {
                    return Err("line comment inside an executable comment".into());
                }
                out.push(b' ');
                i = line_comment_end(s, i);
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                out.extend_from_slice(b"- ");
                i += 1;
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                if in_exec {
                    return Err("comment nested inside an executable comment".into());
                }
                let maria = s.get(i + 2) == Some(&b'M') && s.get(i + 3) == Some(&b'!');
                if s.get(i + 2) == Some(&b'!') || maria {
                    let start = i + if maria { 4 } else { 3 };
                    match open(s, start, maria, server)? {
                        Open::Execute(content) => {
                            out.push(b' ');
                            in_exec = true;
                            i = content;
                        }
                        Open::Skip(content) => {
                            let close =
                                find_close(s, content).ok_or("unterminated executable comment")?;
                            if s[content..close].windows(2).any(|w| w == b"/*") {
                                return Err("comment nested inside an executable comment".into());
                            }
                            out.push(b' ');
                            i = close + 2;
                        }
                    }
                } else {
                    let close = find_close(s, i + 2).ok_or("unterminated comment")?;
                    out.push(b' ');
                    i = close + 2;
                }
            }
            b'*' if in_exec && s.get(i + 1) == Some(&b'/') => {
                out.push(b' ');
                in_exec = false;
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if in_exec {
        return Err("unterminated executable comment".into());
    }
    Ok(out)
}

enum Open {
    /// Executed; its content starts here.
    Execute(usize),
    /// Skipped; its content starts here.
    Skip(usize),
}

/// Decides an executable comment whose marker ends at `at`.
fn open(s: &[u8], at: usize, maria: bool, server: &ServerInfo) -> Result<Open, String> {
    if maria && !server.mariadb {
        return Err("/*M! comments are MariaDB-only; the server is MySQL".into());
    }
    let digit = |k: usize| s.get(at + k).is_some_and(u8::is_ascii_digit);
    if !(0..5).all(digit) {
        // Not a versioned comment: always executed.
        return Ok(Open::Execute(at));
    }
    let len = if digit(5) {
        if !server.mariadb {
            return Err("six-digit executable comment versions are not supported on MySQL".into());
        }
        6
    } else {
        5
    };
    let version: u32 = std::str::from_utf8(&s[at..at + len])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or("bad executable comment version")?;
    let server_id = server.version_id.ok_or(
        "the server's version is unknown, so versioned executable comments cannot be judged",
    )?;
    if server.mariadb && !maria && (50700..=99999).contains(&version) {
        return Err(format!(
            "executable comment version {version} is in the MySQL 5.7+ range MariaDB treats specially"
        ));
    }
    Ok(if version <= server_id {
        Open::Execute(at + len)
    } else {
        Open::Skip(at + len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maria() -> ServerInfo {
        ServerInfo::from_version("5.5.5-10.11.19-MariaDB")
    }

    fn mysql() -> ServerInfo {
        ServerInfo::from_version("8.0.36")
    }

    /// The expansion with runs of white space collapsed (token
    /// separation is what matters, not the number of spaces).
    fn x(sql: &str, server: &ServerInfo) -> Result<String, String> {
        expand(sql.as_bytes(), server).map(|c| {
            String::from_utf8_lossy(&c)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
    }

    #[test]
    fn markers() {
        assert!(has_marker(b"/*!"));
        assert!(has_marker(b"x /*M! y"));
        assert!(!has_marker(b"/* ! */ /*M */ /*"));
        assert!(has_marker(b"//*!"));
        assert!(!has_marker(b"/"));
        assert!(!has_marker(b"a/ *!/"));
    }

    #[test]
    fn unversioned_comments_run_everywhere() {
        assert_eq!(
            x("SELECT 1 /*! , SLEEP(1) */", &maria()).unwrap(),
            "SELECT 1 , SLEEP(1)"
        );
        assert_eq!(x("/*!DROP TABLE t*/", &mysql()).unwrap(), "DROP TABLE t");
        assert_eq!(x("SEL/*!ECT*/ 1", &maria()).unwrap(), "SEL ECT 1");
        assert_eq!(
            x("/*M! DELETE FROM t */", &maria()).unwrap(),
            "DELETE FROM t"
        );
        assert!(x("/*M! DELETE FROM t */", &mysql()).is_err());
    }

    #[test]
    fn versions_above_and_below() {
        let m = maria();
        assert_eq!(x("SELECT 1 /*!40101 , 2 */", &m).unwrap(), "SELECT 1 , 2");
        assert_eq!(x("SELECT 1 /*M!100000 , 2 */", &m).unwrap(), "SELECT 1 , 2");
        assert_eq!(x("SELECT 1 /*M!101119 , 2 */", &m).unwrap(), "SELECT 1 , 2");
        // Above the server: skipped, so the WHERE is not there.
        assert_eq!(
            x("DELETE FROM t /*M!101120 WHERE id = 1 */", &m).unwrap(),
            "DELETE FROM t"
        );
        assert_eq!(
            x("DELETE FROM t /*!110000 WHERE id = 1 */", &m).unwrap(),
            "DELETE FROM t"
        );
        // The MySQL 5.7+ range on MariaDB is refused.
        assert!(x("SELECT 1 /*!50708 , 2 */", &m).is_err());
        assert!(x("SELECT 1 /*M!50708 , 2 */", &m).is_ok());
        let my = mysql();
        assert_eq!(x("SELECT 1 /*!80036 , 2 */", &my).unwrap(), "SELECT 1 , 2");
        assert_eq!(x("SELECT 1 /*!80037 , 2 */", &my).unwrap(), "SELECT 1");
        assert!(x("SELECT 1 /*!800001 , 2 */", &my).is_err());
        // Fewer than five digits: not a version, executed as code.
        assert_eq!(x("SELECT /*!1234*/", &my).unwrap(), "SELECT 1234");
        let unknown = ServerInfo::from_version("weird");
        assert!(x("SELECT 1 /*!40101 , 2 */", &unknown).is_err());
        assert!(x("SELECT 1 /*! , 2 */", &unknown).is_ok());
    }

    #[test]
    fn strings_and_comments_are_respected() {
        let m = maria();
        // Markers inside strings are text, and no expansion is needed.
        assert_eq!(x("SELECT '/*!' , 1", &m).unwrap(), "SELECT '/*!' , 1");
        assert_eq!(
            x("SELECT '/*! */' /*! , 2 */", &m).unwrap(),
            "SELECT '/*! */' , 2"
        );
        // A `*/` inside a string in executed content does not close it.
        assert_eq!(x("/*! SELECT '*/' */", &m).unwrap(), "SELECT '*/'");
        assert_eq!(x(r"/*! SELECT 'a\'*/' */", &m).unwrap(), r"SELECT 'a\'*/'");
        // Ordinary comments hide markers and are removed.
        assert_eq!(
            x("SELECT 1 /* /*! , 2 */ /*! , 3 */", &m).unwrap(),
            "SELECT 1 , 3"
        );
        assert_eq!(
            x("SELECT 1 -- /*! x */\n/*!, 2*/", &m).unwrap(),
            "SELECT 1 , 2"
        );
        assert_eq!(
            x("SELECT 1 # /*! x */\n/*!, 2*/", &m).unwrap(),
            "SELECT 1 , 2"
        );
        // `--x` is not a comment: the marker after it counts.
        assert_eq!(
            x("SELECT 1 --1 /*! , 2 */", &m).unwrap(),
            "SELECT 1 - -1 , 2"
        );
        // A skipped comment ends at the first `*/`, strings or not.
        assert_eq!(x("SELECT 1 /*!999999 '*/ , 2", &m).unwrap(), "SELECT 1 , 2");
    }

    #[test]
    fn uncertain_forms_fail_closed() {
        let m = maria();
        for sql in [
            "SELECT 1 /*! , 2",
            "SELECT 1 /*!999999 , 2",
            "SELECT 1 /*! /*! 2 */ */",
            "SELECT 1 /*! /* c */ , 2 */",
            "SELECT 1 /*!999999 /* c */ , 2 */",
            "SELECT 1 /*! # c */ , 2 \n */",
            "SELECT 1 /*! -- c */ , 2 \n */",
            "SELECT 1 /*! , 'x */",
            "SELECT '/*!' /* unterminated",
            "SELECT 1 /*!*/ /* unterminated",
        ] {
            assert!(x(sql, &m).is_err(), "{sql}");
        }
    }
}
