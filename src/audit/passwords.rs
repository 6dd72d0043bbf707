//! Passwords written into SQL, taken out of what the audit log and
//! airlock's log lines keep.
//!
//! `CREATE ROLE ... PASSWORD 'x'`, `ALTER USER ... IDENTIFIED BY 'x'`,
//! `SET PASSWORD = PASSWORD('x')`, `IDENTIFIED VIA ed25519 USING 'hash'`,
//! `OPTIONS (password 'x')`: the value detectors do not know a password
//! when they see one, and these statements are stored whether they ran or
//! were refused (audit finding: six forms were kept in clear). This finds
//! them by the words before the literal, on a scan of the text that knows
//! quotes and comments, not on a parse: MySQL's forms do not parse.
//!
//! A string literal is replaced by `'[secret]'` when the word before it
//! (past `=`, `(` and `,`) is `PASSWORD`, or is `BY` after `IDENTIFIED`
//! (`IDENTIFIED BY [PASSWORD] 'x'`), or is `USING` in a statement that
//! says `IDENTIFIED`.

/// `sql` with the password literals replaced, or `None` when it has none.
pub fn redact_passwords(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    // Cheap: most statements never say it.
    if !contains_word_ci(b, b"password") && !contains_word_ci(b, b"identified") {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut i = 0;
    // The last two words seen, upper-cased, and whether `IDENTIFIED` was.
    let mut last: [String; 2] = [String::new(), String::new()];
    let mut identified = false;
    let mut changed = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => i = skip_line(b, i),
            b'#' => i = skip_line(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block(b, i),
            b'\'' | b'"' | b'$' | b'`' => {
                let end = match c {
                    b'$' => match dollar_end(b, i) {
                        Some(e) => e,
                        None => {
                            i += 1;
                            continue;
                        }
                    },
                    _ => skip_quoted(b, i, c),
                };
                let secret = c != b'`'
                    && c != b'"'
                    && (last[1] == "PASSWORD"
                        || (last[1] == "BY" && (last[0] == "IDENTIFIED" || last[0] == "PASSWORD"))
                        || (last[1] == "USING" && identified));
                if c == b'"' && (last[1] == "PASSWORD" || last[1] == "BY") {
                    // MySQL reads "x" as a string where ANSI_QUOTES is off.
                    out.push_str(&sql[copied..i]);
                    out.push_str("\"[secret]\"");
                    copied = end;
                    changed = true;
                } else if secret {
                    // An `E'...'`/`N'...'`/`_utf8'...'` prefix stays.
                    out.push_str(&sql[copied..i]);
                    out.push_str("'[secret]'");
                    copied = end;
                    changed = true;
                }
                last = [std::mem::take(&mut last[1]), String::from("'")];
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = sql[start..i].to_ascii_uppercase();
                // A string prefix (`E'x'`, `N'x'`, `_utf8mb4'x'`) is not a word.
                if matches!(b.get(i), Some(b'\'')) && (word.len() == 1 || word.starts_with('_')) {
                    continue;
                }
                if word == "IDENTIFIED" {
                    identified = true;
                }
                last = [std::mem::take(&mut last[1]), word];
            }
            b'=' | b'(' | b',' | b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            _ => {
                last = [std::mem::take(&mut last[1]), String::new()];
                i += 1;
            }
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Some(out)
}

fn contains_word_ci(b: &[u8], word: &[u8]) -> bool {
    b.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
}

fn skip_line(b: &[u8], i: usize) -> usize {
    memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n + 1)
}

fn skip_block(b: &[u8], i: usize) -> usize {
    memchr::memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |n| i + 2 + n + 2)
}

/// Past the closing quote of the literal or identifier opening at `i`
/// (doubled quotes and backslash escapes stay inside it).
fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'\\' && q != b'`' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Past the end of a dollar-quoted string opening at `i`
/// (`$tag$...$tag$`), or `None` when `$` opens none there.
fn dollar_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') || b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    Some(memchr::memmem::find(&b[body..], tag).map_or(b.len(), |n| body + n + tag.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_every_form_are_taken_out() {
        for (sql, want) in [
            (
                "CREATE ROLE foo LOGIN PASSWORD 'SuperSecretPw1'",
                "CREATE ROLE foo LOGIN PASSWORD '[secret]'",
            ),
            (
                "alter role svc encrypted password 'An''other' valid until 'infinity'",
                "alter role svc encrypted password '[secret]' valid until 'infinity'",
            ),
            (
                "ALTER ROLE x PASSWORD $p$dollar$p$",
                "ALTER ROLE x PASSWORD '[secret]'",
            ),
            (
                "CREATE USER evil@'%' IDENTIFIED BY 'MyPlainPw123'",
                "CREATE USER evil@'%' IDENTIFIED BY '[secret]'",
            ),
            (
                "ALTER USER u IDENTIFIED BY PASSWORD '*AB12'",
                "ALTER USER u IDENTIFIED BY PASSWORD '[secret]'",
            ),
            (
                "SET PASSWORD FOR u = PASSWORD('MyPlainPw789')",
                "SET PASSWORD FOR u = PASSWORD('[secret]')",
            ),
            ("SET PASSWORD = 'x\\'y'", "SET PASSWORD = '[secret]'"),
            (
                "GRANT ALL ON *.* TO g IDENTIFIED BY \"GrantPw000\"",
                "GRANT ALL ON *.* TO g IDENTIFIED BY \"[secret]\"",
            ),
            (
                "CREATE USER e IDENTIFIED VIA ed25519 USING PASSWORD('pw')",
                "CREATE USER e IDENTIFIED VIA ed25519 USING PASSWORD('[secret]')",
            ),
            (
                "CREATE USER e IDENTIFIED VIA mysql_native_password USING '*6BB4'",
                "CREATE USER e IDENTIFIED VIA mysql_native_password USING '[secret]'",
            ),
            (
                "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'a', password 'pw')",
                "CREATE USER MAPPING FOR a SERVER s OPTIONS (user 'a', password '[secret]')",
            ),
            // A comparison with a password column: kept out too.
            (
                "SELECT * FROM users WHERE password = 'x'",
                "SELECT * FROM users WHERE password = '[secret]'",
            ),
            (
                "ALTER USER u IDENTIFIED BY /* c */ _utf8mb4'pw'",
                "ALTER USER u IDENTIFIED BY /* c */ _utf8mb4'[secret]'",
            ),
        ] {
            assert_eq!(redact_passwords(sql).as_deref(), Some(want), "{sql}");
        }
    }

    #[test]
    fn other_statements_are_left_alone() {
        for sql in [
            "SELECT 'password' FROM t",
            "UPDATE t SET password_hash = 'x' WHERE id = 1",
            "SELECT 1 -- PASSWORD 'x'",
            "SELECT id FROM t USING (id)",
            "CREATE ROLE r LOGIN",
            "",
            "PASSWORD",
            "PASSWORD 'unterminated",
        ] {
            let got = redact_passwords(sql);
            let keeps = got.is_none() || sql == "PASSWORD 'unterminated";
            assert!(keeps, "{sql}: {got:?}");
        }
        // Unterminated: to the end.
        assert_eq!(
            redact_passwords("PASSWORD 'unterminated").as_deref(),
            Some("PASSWORD '[secret]'")
        );
    }
}
