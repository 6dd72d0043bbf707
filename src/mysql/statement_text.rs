//! The text a statement is judged by: what the upstream server will
//! actually parse. Executable comments are expanded for the server's
//! version ([`super::exec_comments`]) and sql_mode changes are vetted
//! ([`super::sql_mode`]); texts with neither are judged as sent. Under a
//! single-byte client character set, a text the server would split where
//! airlock reads one character is refused ([`super::client_charset`]).

use std::borrow::Cow;

use super::exec_comments;
use super::server_info::ServerInfo;
use super::sql_mode;
use crate::policy::builtin::ids::{LEXER_SETTING, UNPARSEABLE};
use crate::policy::server_lexer::mysql::latin1_space_in_code;

/// The text to judge, or why the statement is refused (a message for the
/// client, without the `airlock: ` prefix, naming the rule: a text whose
/// executable comments airlock cannot expand is `builtin.unparseable`, a
/// sql_mode change that would alter lexing `builtin.lexer-setting`).
///
/// `single_byte`: the session's client character set is (or may be)
/// latin1 or ascii.
pub fn vet<'a>(
    sql: &'a [u8],
    server: &ServerInfo,
    single_byte: bool,
) -> Result<Cow<'a, [u8]>, String> {
    let text = vet_lexing(sql, server)?;
    if single_byte && latin1_space_in_code(&text) {
        return Err(format!(
            "blocked by rule {UNPARSEABLE}: a character with the byte 0xA0 in code, which the server reads as a space under this session's latin1 (or ascii) client character set; quote the name with backticks, or use utf8mb4"
        ));
    }
    Ok(text)
}

fn vet_lexing<'a>(sql: &'a [u8], server: &ServerInfo) -> Result<Cow<'a, [u8]>, String> {
    let (marker, mode) = scan(sql);
    if !marker && !mode {
        return Ok(Cow::Borrowed(sql));
    }
    let canonical = exec_comments::canonical(sql, server)
        .map_err(|e| format!("blocked by rule {UNPARSEABLE}: executable comment refused: {e}"))?;
    sql_mode::check_statements(&canonical)
        .map_err(|e| format!("blocked by rule {LEXER_SETTING}: sql_mode change refused: {e}"))?;
    Ok(if marker {
        Cow::Owned(canonical)
    } else {
        Cow::Borrowed(sql)
    })
}

/// [`exec_comments::has_marker`] and [`sql_mode::mentions`] in one pass.
fn scan(sql: &[u8]) -> (bool, bool) {
    let (mut marker, mut mode) = (false, false);
    for i in memchr::memchr2_iter(b'/', b'_', sql) {
        match sql.get(i) {
            Some(b'/') => marker |= exec_comments::marker_at(sql, i),
            _ => mode |= sql_mode::mention_at(sql, i),
        }
        if marker && mode {
            break;
        }
    }
    (marker, mode)
}

/// A refusal for text that is not what [`vet`] returns for it (a caller
/// judging unexpanded text), or that [`vet`] refuses. `None` when `sql` is
/// its own vetted form.
pub fn unvetted(sql: &[u8], server: &ServerInfo, single_byte: bool) -> Option<String> {
    match vet(sql, server, single_byte) {
        Ok(text) if text.as_ref() == sql => None,
        Ok(_) => Some("airlock: executable comments must be expanded before judging".into()),
        Err(why) => Some(format!("airlock: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_is_marker_and_mention() {
        for sql in [
            &b""[..],
            b"SELECT 1",
            b"/*!",
            b"x /*M! y",
            b"/* ! */ /*M */ /*",
            b"//*!",
            b"SET sql_mode = ''",
            b"set SQL_MODE=1 /*! x */",
            b"_sql_mode_",
            b"ql_mode /",
            b"@@session.sql_mode/*!",
        ] {
            assert_eq!(
                scan(sql),
                (exec_comments::has_marker(sql), sql_mode::mentions(sql)),
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
        assert_eq!(scan(b"set SQL_MODE=1 /*! x */"), (true, true));
    }

    /// Under a single-byte client character set, 0xA0 in code is refused
    /// (red-team finding); under UTF-8 it is part of a character.
    #[test]
    fn a_latin1_space_is_refused_only_where_the_server_reads_one() {
        let m = ServerInfo::from_version("5.5.5-10.11.19-MariaDB");
        let sql = "SELECT 1 AS \u{4ef7}\u{683c}, s, @x\u{e0}FROM secrets".as_bytes();
        assert!(vet(sql, &m, false).is_ok());
        let e = vet(sql, &m, true).unwrap_err();
        assert!(e.contains("latin1"), "{e}");
        assert!(vet("SELECT `\u{e0}`, '\u{e0}'".as_bytes(), &m, true).is_ok());
        assert!(vet(
            "SELECT 1 /*! , @x\u{e0}FROM secrets */".as_bytes(),
            &m,
            true
        )
        .is_err());
    }

    #[test]
    fn vetting() {
        let m = ServerInfo::from_version("5.5.5-10.11.19-MariaDB");
        assert!(matches!(vet(b"SELECT 1", &m, false), Ok(Cow::Borrowed(_))));
        assert!(matches!(
            vet(b"SELECT @@sql_mode", &m, false),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(
            vet(b"SELECT 1 /*!, 2*/", &m, false).unwrap().as_ref(),
            b"SELECT 1  , 2 "
        );
        assert!(vet(b"/*! SET sql_mode='ANSI_QUOTES' */", &m, false).is_err());
        assert!(vet(b"SET /* c */ sql_mode = 'ANSI_QUOTES'", &m, false).is_err());
        assert!(vet(
            b"SET sql_mode = /*!110000 'ANSI_QUOTES', x=*/ ''",
            &m,
            false
        )
        .is_ok());
        assert!(vet(b"SET sql_mode = /*!40000 'ANSI_QUOTES', x=*/ ''", &m, false).is_err());
        // Idempotent on its own output.
        let once = vet(b"SELECT '/*!' /*! , 3 */ --1", &m, false)
            .unwrap()
            .into_owned();
        assert_eq!(vet(&once, &m, false).unwrap().as_ref(), &once[..]);
    }
}
