//! Statement fingerprints: the SQL with every literal replaced by `?`.
//!
//! A cheap hand-written tokenizer, not a parser: quoted strings (with `''`
//! escapes, `E'..'` backslash escapes, `B/X/N/U&` prefixes), dollar-quoted
//! strings, numbers and `$n` parameters become `?`; comments are dropped;
//! runs of whitespace collapse to one space; unquoted words are lower-cased.
//! Quoted identifiers (`"..."`, `` `...` ``) are kept as written. Works on
//! Postgres and MySQL text alike (MySQL backslash escapes in `'..'` are
//! honoured too, which only matters for strings that end in a backslash).

/// The fingerprint of `sql`.
pub fn fingerprint(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut space = false;
    // Emits `tok`, preceded by one space if whitespace came before it.
    let emit = |out: &mut String, space: &mut bool, tok: &str| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push_str(tok);
    };
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => {
                space = true;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = skip_line(b, i);
                space = true;
            }
            b'#' if out.is_empty()
                || matches!(b.get(i + 1), None | Some(b' ' | b'\t' | b'\n' | b'\r')) =>
            {
                // A MySQL comment (Postgres `#` operators are followed by
                // an operand, or by `>` / `-`).
                i = skip_line(b, i);
                space = true;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(b, i);
                space = true;
            }
            b'\'' => {
                i = skip_quoted(b, i, false);
                emit(&mut out, &mut space, "?");
            }
            b'"' | b'`' => {
                let end = skip_ident(b, i, c);
                emit(&mut out, &mut space, &sql[i..end]);
                i = end;
            }
            b'$' => {
                if let Some(end) = dollar_quote_end(b, i) {
                    i = end;
                    emit(&mut out, &mut space, "?");
                } else if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    emit(&mut out, &mut space, "?");
                } else {
                    emit(&mut out, &mut space, "$");
                    i += 1;
                }
            }
            b'0'..=b'9' => {
                i = skip_number(b, i);
                emit(&mut out, &mut space, "?");
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = skip_number(b, i);
                emit(&mut out, &mut space, "?");
            }
            _ if is_word_start(c) => {
                let start = i;
                while i < b.len() && is_word_char(b[i]) {
                    i += 1;
                }
                let word = &sql[start..i];
                if b.get(i) == Some(&b'\'') && is_string_prefix(word) {
                    let backslash = word.eq_ignore_ascii_case("e");
                    i = skip_quoted(b, i, backslash);
                    emit(&mut out, &mut space, "?");
                } else if word.eq_ignore_ascii_case("u")
                    && b.get(i) == Some(&b'&')
                    && b.get(i + 1) == Some(&b'\'')
                {
                    i = skip_quoted(b, i + 1, false);
                    emit(&mut out, &mut space, "?");
                } else {
                    emit(&mut out, &mut space, &word.to_ascii_lowercase());
                }
            }
            _ => {
                // One character (possibly multi-byte UTF-8) of punctuation.
                let len = utf8_len(c);
                let end = (i + len).min(b.len());
                emit(&mut out, &mut space, sql.get(i..end).unwrap_or("?"));
                i = end;
            }
        }
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_string_prefix(word: &str) -> bool {
    ["e", "b", "x", "n"]
        .iter()
        .any(|p| word.eq_ignore_ascii_case(p))
}

fn skip_line(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// Skips a (Postgres-style, nesting) block comment starting at `i`.
fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    i
}

/// Skips a `'...'` string starting at the quote at `i`; `''` is an
/// escaped quote, and `\'` too when `backslash`.
fn skip_quoted(b: &[u8], mut i: usize, backslash: bool) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' if backslash => i += 2,
            b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Skips a quoted identifier; a doubled quote is an escaped one.
fn skip_ident(b: &[u8], mut i: usize, q: u8) -> usize {
    i += 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// If a dollar-quoted string (`$$...$$`, `$tag$...$tag$`) starts at `i`,
/// the index just past it (or the end of the text if unterminated).
fn dollar_quote_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return None;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    let close = memchr::memmem::find(&b[body..], tag);
    Some(close.map_or(b.len(), |at| body + at + tag.len()))
}

/// Skips a numeric literal: digits, a fraction, an exponent, or a hex /
/// binary literal (`0x1F`).
fn skip_number(b: &[u8], mut i: usize) -> usize {
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X' | b'b' | b'B' | b'o' | b'O')) {
        i += 2;
        while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b'_') {
            i += 1;
        }
        return i;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn strips_literals() {
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE a = 'x' AND b = 42"),
            "select * from t where a = ? and b = ?"
        );
    }

    #[test]
    fn escapes_and_prefixes() {
        assert_eq!(
            fingerprint("select 'it''s', E'a\\'b', x'1F'"),
            "select ?, ?, ?"
        );
        assert_eq!(fingerprint("select U&'d\\0061t'"), "select ?");
        assert_eq!(
            fingerprint("select $$ a ' b $$, $fn$ $$ x $fn$"),
            "select ?, ?"
        );
        assert_eq!(fingerprint("select $1, $22::int"), "select ?, ?::int");
        assert_eq!(fingerprint("select 1.5e-3, .5, 0xFF"), "select ?, ?, ?");
    }

    #[test]
    fn comments_whitespace_identifiers() {
        assert_eq!(
            fingerprint(
                "SELECT  a -- 'secret'\n FROM /* x /* nested */ 'y' */ \"T1\"\t WHERE c1=2"
            ),
            "select a from \"T1\" where c1=?"
        );
        assert_eq!(fingerprint("select `Col` from t2"), "select `Col` from t2");
        assert_eq!(fingerprint("select a->>'k' from t"), "select a->>? from t");
    }

    #[test]
    fn unterminated_and_odd_input() {
        assert_eq!(fingerprint("select 'abc"), "select ?");
        assert_eq!(fingerprint("select $$abc"), "select ?");
        assert_eq!(fingerprint("select ünï, 'é'"), "select ünï, ?");
        assert_eq!(fingerprint(""), "");
    }
}
