//! Statements that may carry a password, cut short in what the audit log,
//! the approvals API and airlock's log lines keep.
//!
//! `CREATE ROLE ... PASSWORD 'x'`, `ALTER USER ... IDENTIFIED BY 'x'`,
//! `SET PASSWORD FOR u@'%' = 'x'`, `CHANGE MASTER TO MASTER_PASSWORD = 'x'`,
//! `OPTIONS (password 'x')`, a connection string's `password=x`: the value
//! detectors do not know a password when they see one, and these
//! statements are kept whether they ran or were refused (audit finding:
//! six forms were kept in clear). Finding the literal that holds the
//! password would need each dialect's lexer (nested comments, `#`, `--`
//! without a space, backslashes, `U&''`, adjacent strings: a review of a
//! first, word-based version found eleven forms it missed), so a statement
//! that names a password anywhere (or `IDENTIFIED`) is kept only up to its
//! first quote, `$` or backquote: what it does is still seen, and its
//! fingerprint (literals as `?`) keeps its shape.

/// Words that mark a statement as one that may hold a password, compared
/// without case, anywhere in its text (literals included); `://` for a
/// connection URI's `user:password@` (re-audit finding: a subscription's,
/// dblink's and a FEDERATED table's URIs were kept whole).
const CREDENTIAL_WORDS: &[&[u8]] = &[b"password", b"passwd", b"identified", b"://"];

/// What replaces the rest of such a statement.
pub const WITHHELD: &str = "[withheld: the statement may hold a password]";

/// `sql` cut short before its first literal when it may hold a password,
/// or `None` when it does not (or holds no literal).
pub fn redact_passwords(sql: &str) -> Option<String> {
    if !may_hold_password(sql) {
        return None;
    }
    cut_at_literal(sql)
}

/// `text` cut short before its first quote, `$` or backquote, or `None`
/// when it has none (for the reason recorded with such a statement: a
/// parse error may quote the token it stopped at).
pub fn cut_at_literal(text: &str) -> Option<String> {
    let cut = text.find(['\'', '"', '$', '`'])?;
    let kept = text[..cut].trim_end();
    Some(match kept.is_empty() {
        true => WITHHELD.to_owned(),
        false => format!("{kept} {WITHHELD}"),
    })
}

/// Whether `text` names a password (or `IDENTIFIED`) anywhere.
pub fn may_hold_password(text: &str) -> bool {
    let b = text.as_bytes();
    CREDENTIAL_WORDS
        .iter()
        .any(|w| b.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_may_hold_a_password_are_cut_at_their_first_literal() {
        for (sql, kept) in [
            (
                "CREATE ROLE foo LOGIN PASSWORD 'SuperSecretPw1'",
                "CREATE ROLE foo LOGIN PASSWORD",
            ),
            (
                "alter role r password /* /* */ */ U&'x' ",
                "alter role r password /* /* */ */ U&",
            ),
            (
                "SELECT 1 # 2; ALTER ROLE r PASSWORD 'x'",
                "SELECT 1 # 2; ALTER ROLE r PASSWORD",
            ),
            ("SET PASSWORD FOR u@'%' = 'x'", "SET PASSWORD FOR u@"),
            (
                "ALTER USER u IDENTIFIED WITH p AS '*AB'",
                "ALTER USER u IDENTIFIED WITH p AS",
            ),
            (
                "CHANGE MASTER TO MASTER_PASSWORD='x'",
                "CHANGE MASTER TO MASTER_PASSWORD=",
            ),
            (
                "CREATE SUBSCRIPTION s CONNECTION 'host=h password=x' PUBLICATION p",
                "CREATE SUBSCRIPTION s CONNECTION",
            ),
            (
                "SELECT dblink_connect('dbname=x password=y')",
                "SELECT dblink_connect(",
            ),
            (
                "ALTER ROLE x PASSWORD $p$dollar$p$",
                "ALTER ROLE x PASSWORD",
            ),
            ("ALTER USER `u` IDENTIFIED BY 'x'", "ALTER USER"),
        ] {
            let got = redact_passwords(sql).unwrap_or_default();
            assert_eq!(got, format!("{kept} {WITHHELD}"), "{sql}");
        }
        assert_eq!(redact_passwords("'x' password").as_deref(), Some(WITHHELD));
    }

    #[test]
    fn other_statements_are_left_alone() {
        for sql in [
            "SELECT 'abc' FROM t WHERE id = 1",
            "SELECT password_hash FROM users",
            "CREATE ROLE r LOGIN",
            "",
        ] {
            assert_eq!(redact_passwords(sql), None, "{sql}");
        }
    }
}
