//! The client character set a MySQL session's statements are read in, as
//! far as lexing goes: UTF-8 (utf8mb4, utf8mb3) or a single-byte set
//! (latin1, ascii; the only others a client may log in with or name in
//! `SET NAMES`, see [`super::client_auth::check_charset`] and
//! `policy::classify`).
//!
//! airlock reads statements as UTF-8. Under latin1 the server reads the
//! byte 0xA0, a continuation byte of many UTF-8 characters, as a space, so
//! a session that may be under latin1 has statements with that byte in
//! code refused ([`crate::policy::server_lexer::mysql::latin1_space_in_code`]).
//! A session is taken to be under a single-byte set from a login or
//! COM_CHANGE_USER with such a collation, or from the first statement
//! that may set one with `SET NAMES` (that statement's own text included),
//! for the rest of the session: a COM_RESET_CONNECTION that goes back to
//! the login's set is not tracked, which only refuses more.

/// Collation ids of latin1 (5, 8, 15, 31, 47, 48, 49, 94) and ascii (11,
/// 65): the single-byte sets among those a client may log in with.
const SINGLE_BYTE_COLLATIONS: [u8; 10] = [5, 8, 11, 15, 31, 47, 48, 49, 65, 94];

/// Whether a login's (or COM_CHANGE_USER's) collation id is single-byte.
pub fn single_byte_collation(collation: u8) -> bool {
    SINGLE_BYTE_COLLATIONS.contains(&collation)
}

/// Whether `sql` may set a single-byte client character set: it has the
/// word `NAMES` not followed by a UTF-8 set's name (`utf8mb4`, `utf8mb3`,
/// `utf8`, bare or quoted). Anything else after it (`latin1`, `ascii`,
/// `DEFAULT`, a comment) counts, so this may say yes where no `SET NAMES`
/// is, never the other way round.
pub fn may_set_single_byte_names(sql: &[u8]) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    for at in memchr::memchr2_iter(b'n', b'N', sql) {
        let word = sql.get(at..at + 5);
        if !word.is_some_and(|w| w.eq_ignore_ascii_case(b"names")) {
            continue;
        }
        if at > 0 && ident(sql[at - 1]) || sql.get(at + 5).copied().is_some_and(ident) {
            continue;
        }
        let rest = &sql[at + 5..];
        let start = rest
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let rest = &rest[start..];
        let rest = rest
            .strip_prefix(b"'")
            .or_else(|| rest.strip_prefix(b"\""))
            .or_else(|| rest.strip_prefix(b"`"))
            .unwrap_or(rest);
        let name_len = rest.iter().take_while(|c| ident(**c)).count();
        let name = &rest[..name_len];
        let utf8 = [b"utf8mb4".as_slice(), b"utf8mb3", b"utf8"]
            .iter()
            .any(|u| name.eq_ignore_ascii_case(u));
        if !utf8 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_to_a_single_byte_set_is_seen() {
        for sql in [
            "SET NAMES latin1",
            "set names 'ascii'",
            "SET NAMES `latin1` COLLATE latin1_bin",
            "SET NAMES DEFAULT",
            "SET @a = 1, NAMES latin1",
            "SET NAMES /* x */ utf8mb4",
            "SET NAMES utf8mb4; SET NAMES latin1",
            "/*!40101 SET NAMES latin1 */",
        ] {
            assert!(may_set_single_byte_names(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SET NAMES utf8mb4",
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'",
            "set names utf8",
            "SELECT names FROM t",
            "SELECT first_names, names_x FROM t",
            "SELECT 1",
        ] {
            let seen = may_set_single_byte_names(sql.as_bytes());
            assert_eq!(seen, sql == "SELECT names FROM t", "{sql}");
        }
        assert!(single_byte_collation(8) && single_byte_collation(11));
        assert!(!single_byte_collation(45) && !single_byte_collation(255));
    }
}
