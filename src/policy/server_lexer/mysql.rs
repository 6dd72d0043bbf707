//! The pieces of MySQL's lexer that decide where strings, quoted
//! identifiers and comments end, as the server's lexer does under the
//! default sql_mode (backslash escapes on, `"` quotes a string). Sessions
//! whose sql_mode changes that are refused ([`super::sql_mode`]).

/// The end (exclusive) of the quoted string or identifier starting at
/// `s[i]` (a `'`, `"` or backtick); `None` if it is not terminated.
/// Quotes are escaped by doubling; in strings also by a backslash, which
/// escapes any byte.
pub fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let q = *s.get(i)?;
    let backslash = q != b'`';
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' if backslash => j += 2,
            c if c == q => {
                if s.get(j + 1) == Some(&q) {
                    j += 2;
                } else {
                    return Some(j + 1);
                }
            }
            _ => j += 1,
        }
    }
    None
}

/// True when `s[i..]` starts a `-- ` comment: two dashes and then white
/// space, a control character or the end of the text.
pub fn is_dash_comment(s: &[u8], i: usize) -> bool {
    s.get(i) == Some(&b'-')
        && s.get(i + 1) == Some(&b'-')
        && match s.get(i + 2) {
            None => true,
            Some(&c) => c <= b' ' || c == 0x7f,
        }
}

/// The end (exclusive) of the line comment starting at `i`: the newline is
/// not part of it.
pub fn line_comment_end(s: &[u8], i: usize) -> usize {
    s[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(s.len(), |p| i + p)
}

/// The position of the first `*/` at or after `from`.
pub fn find_close(s: &[u8], from: usize) -> Option<usize> {
    s.get(from..)?
        .windows(2)
        .position(|w| w == b"*/")
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_identifiers() {
        assert_eq!(quoted_end(b"'abc' x", 0), Some(5));
        assert_eq!(quoted_end(b"'a''b' x", 0), Some(6));
        assert_eq!(quoted_end(br"'a\'b' x", 0), Some(6));
        assert_eq!(quoted_end(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(quoted_end(br"`a\` x", 0), Some(4));
        assert_eq!(quoted_end(b"`a``b` x", 0), Some(6));
        assert_eq!(quoted_end(b"'abc", 0), None);
        assert_eq!(quoted_end(br"'abc\'", 0), None);
        assert!(is_dash_comment(b"-- x", 0));
        assert!(is_dash_comment(b"--\tx", 0));
        assert!(is_dash_comment(b"--", 0));
        assert!(!is_dash_comment(b"--x", 0));
        assert_eq!(line_comment_end(b"# a\nb", 0), 3);
        assert_eq!(find_close(b"/* a */", 2), Some(5));
    }
}
