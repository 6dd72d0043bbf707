//! Data values in database error messages.
//!
//! Errors quote values: `invalid input syntax for type integer:
//! "alice@example.com"` after `email::int`, `Failing row contains (...)`
//! with every column of a row after an UPDATE that broke a constraint,
//! `unrecognized configuration parameter "alice@example.com"` after
//! `current_setting(email)`. A statement may read a masked or denied
//! column that way, and the value detectors cannot be relied on to
//! recognise it (`card_number || 'x'` is no longer a card number). In
//! sessions that masking or denied columns protect, errors keep their
//! SQLSTATE and wording and lose what they quote, and the detail and
//! context fields whole, unless the error is known to quote only the
//! statement's own text ([`pg_may_quote_data`], [`mysql_may_quote_data`]).
//!
//! Some values come unquoted: `make_date(ascii(substr(email, 1, 1)), 13,
//! 1)` fails with `date field value out of range: 97-13-01`, and
//! `setseed(x)` with `setseed parameter 97 is out of allowed range
//! [-1,1]`. Numbers take many shapes (`5550101-13-01`, `-12.5`, `1e10`,
//! `0:00:97`, `{1,2}`, `0x80`, `2020-01-01 10:00:00+02`), so no shape is
//! parsed: such messages also lose everything from the first word that
//! holds a digit (or a backslash, as in `\x41`) to the last.

/// What replaces a withheld value or field.
pub const WITHHELD: &[u8] = b"[withheld by airlock]";

/// Whether errors with this SQLSTATE quote data values.
pub fn quotes_values(sqlstate: &[u8]) -> bool {
    sqlstate.starts_with(b"22") || sqlstate.starts_with(b"23")
}

/// Whether a Postgres error's quoted text may come from data rather than
/// from the statement's own text. Only a permission error (42501) is
/// known to quote nothing but what the agent wrote. Even an unknown column
/// (42703) may quote data: `has_column_privilege('t', c.phone, 'SELECT')`
/// reports `column "<the phone number>" of relation "t" does not exist`
/// (ground-truth red team), so it loses its quoted name too, though the
/// statement usually wrote it. Every other may quote a value the
/// statement computed: `current_setting(email)` (42704),
/// `email::regclass` (42P01, 3F000), `email::regproc` (42883), and even
/// syntax errors (42601): `phone::regtype` parses the value as a type
/// name and reports `syntax error at or near "+"`, `to_tsquery(email)`
/// reports the whole value. (The statement's own syntax errors rarely
/// reach the server: airlock refuses what it cannot parse.)
pub fn pg_may_quote_data(sqlstate: &[u8]) -> bool {
    sqlstate != b"42501"
}

/// Whether a MySQL/MariaDB error's quoted text may come from data (see
/// [`pg_may_quote_data`]). Known to quote only the statement's own text:
/// syntax errors (1064), unknown column (1054), table (1146, 1109) or
/// function (1305), and access errors (1044, 1045, 1142, 1143).
pub fn mysql_may_quote_data(code: u16) -> bool {
    !matches!(
        code,
        1044 | 1045 | 1054 | 1064 | 1109 | 1142 | 1143 | 1146 | 1305
    )
}

/// `message` without the values it may hold: everything from its first
/// `quote` to its last, then everything from its first word holding a
/// digit (or a backslash) to its last (`withhold_quoted_stretch`,
/// `withhold_numbers`). `None` when neither is there.
pub fn withhold_quoted(message: &[u8], quote: u8) -> Option<Vec<u8>> {
    let quoted = withhold_quoted_stretch(message, quote);
    let text = quoted.as_deref().unwrap_or(message);
    withhold_numbers(text, quote).or(quoted)
}

/// A Postgres error message or hint without the values it may hold, in a
/// session that masking or denied columns protect: [`withhold_quoted`],
/// then [`withhold_after_colon`], then [`withhold_leading_value`].
/// `None` when nothing changes.
pub fn withhold_pg_text(message: &[u8], sqlstate: &[u8]) -> Option<Vec<u8>> {
    let quoted = withhold_quoted(message, b'"');
    let text = quoted.as_deref().unwrap_or(message);
    let after = withhold_after_colon(text);
    let text = after.as_deref().unwrap_or(text);
    withhold_leading_value(text, sqlstate).or(after).or(quoted)
}

/// `message` with everything after its first `": "` replaced by
/// [`WITHHELD`], unless what follows holds nothing but withheld markers,
/// blanks and quotes. Postgres prints some values unquoted after a
/// colon, letters only as often as not: `cross-database references are
/// not implemented: x.y.<value>` (`::regtype`), `operator does not exist:
/// <value>` (`::regoper`), `improper relation name (too many dotted names):
/// <value>` (`::regclass`), which [`withhold_numbers`] misses once the
/// value's digits are mapped to letters (ground-truth red team). Applied
/// after [`withhold_quoted`]; a template's own words after a colon go too
/// (`operator does not exist: text ### integer`). `None` when nothing
/// changes.
pub fn withhold_after_colon(message: &[u8]) -> Option<Vec<u8>> {
    let colon = memchr::memmem::find(message, b": ")?;
    let rest = &message[colon + 2..];
    let mut left = rest.to_vec();
    while let Some(i) = memchr::memmem::find(&left, WITHHELD) {
        left.drain(i..i + WITHHELD.len());
    }
    // Only blanks and the quotes of a withheld stretch may stay: a value
    // may be written in punctuation alone (review finding:
    // `translate(phone, '0123456789', '!#$%&*+,;<')::regoper`).
    if left.iter().all(|b| b.is_ascii_whitespace() || *b == b'"') {
        return None;
    }
    let mut out = message[..colon + 2].to_vec();
    out.extend_from_slice(WITHHELD);
    Some(out)
}

/// A Postgres `message` whose value comes first, unquoted, with no colon
/// after it: `to_ascii('a', <value>)` fails with `<value> is not a valid
/// encoding name` (42704; re-check finding: the letter-mapped phone came
/// back whole). That template keeps its words with the value withheld;
/// any other 42704 (undefined object) message without a quote is withheld
/// whole, as its object's name may be anywhere in it. `None` when neither.
pub fn withhold_leading_value(message: &[u8], sqlstate: &[u8]) -> Option<Vec<u8>> {
    const ENCODING: &[u8] = b" is not a valid encoding name";
    if message.ends_with(ENCODING) && !message.starts_with(WITHHELD) {
        let mut out = WITHHELD.to_vec();
        out.extend_from_slice(ENCODING);
        return Some(out);
    }
    let withheld = memchr::memmem::find(message, WITHHELD).is_some();
    (sqlstate == b"42704" && !withheld && memchr::memchr(b'"', message).is_none())
        .then(|| WITHHELD.to_vec())
}

/// `message` with everything from its first `quote` to its last replaced
/// by [`WITHHELD`] (between the two quotes): a value may itself hold
/// quotes, so no span inside is trusted. `None` when it has no quote.
fn withhold_quoted_stretch(message: &[u8], quote: u8) -> Option<Vec<u8>> {
    let first = memchr::memchr(quote, message)?;
    let last = memchr::memrchr(quote, message)?;
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(&message[..=first]);
    out.extend_from_slice(WITHHELD);
    if last > first {
        out.extend_from_slice(&message[last..]);
    } else {
        // A lone quote: everything after it may be the value.
        out.push(quote);
    }
    Some(out)
}

/// `message` with everything from the start of its first numeric word to
/// the end of its last replaced by one [`WITHHELD`]. A word is a run of
/// bytes other than ASCII whitespace and `quote`; it is numeric when it
/// holds an ASCII digit or a backslash. Whole words, and all between
/// them, go: a number's sign, point, exponent, separators and the words
/// between its parts (`2020-01-01 10:00:00`, `1 day 02:00:00`) are not
/// told apart from it. `None` when no word is numeric.
fn withhold_numbers(message: &[u8], quote: u8) -> Option<Vec<u8>> {
    let mut span: Option<(usize, usize)> = None;
    for (start, end) in words(message, quote) {
        if message[start..end]
            .iter()
            .any(|b| b.is_ascii_digit() || *b == b'\\')
        {
            span = Some(span.map_or((start, end), |(s, _)| (s, end)));
        }
    }
    let (start, end) = span?;
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(&message[..start]);
    out.extend_from_slice(WITHHELD);
    out.extend_from_slice(&message[end..]);
    Some(out)
}

/// The `(start, end)` byte ranges of `message`'s words: runs of bytes
/// other than ASCII whitespace and `quote`.
fn words(message: &[u8], quote: u8) -> impl Iterator<Item = (usize, usize)> + '_ {
    let is_gap = move |b: &u8| b.is_ascii_whitespace() || *b == quote;
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + message.get(at..)?.iter().position(|b| !is_gap(b))?;
        let len = message[start..]
            .iter()
            .position(is_gap)
            .unwrap_or(message.len() - start);
        at = start + len;
        Some((start, at))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_text_after_a_colon_is_withheld() {
        let w = |m: &str| {
            let out = withhold_pg_text(m.as_bytes(), b"42883").unwrap_or(m.as_bytes().to_vec());
            String::from_utf8_lossy(&out).into_owned()
        };
        assert_eq!(
            w("cross-database references are not implemented: x.y.phcanaryvwb"),
            "cross-database references are not implemented: [withheld by airlock]"
        );
        assert_eq!(
            w("operator does not exist: PHCANARYVWb"),
            "operator does not exist: [withheld by airlock]"
        );
        assert_eq!(
            w("improper relation name (too many dotted names): mailcanary_example.com.x.y"),
            "improper relation name (too many dotted names): [withheld by airlock]"
        );
        // Already withheld, or nothing after a colon: unchanged.
        assert_eq!(
            w("invalid input syntax for type integer: \"abc\""),
            "invalid input syntax for type integer: \"[withheld by airlock]\""
        );
        assert_eq!(
            w("date field value out of range: 97-13-01"),
            "date field value out of range: [withheld by airlock]"
        );
        assert_eq!(w("division by zero"), "division by zero");
        // A value in punctuation alone (digits mapped to symbols).
        assert_eq!(
            w("operator does not exist: !#$%&*+,;<"),
            "operator does not exist: [withheld by airlock]"
        );
        // Non-ASCII letters count as text too.
        assert_eq!(
            w("operator does not exist: ÄÖÜ"),
            "operator does not exist: [withheld by airlock]"
        );
    }

    #[test]
    fn a_value_at_the_start_is_withheld() {
        let w = |m: &str, code: &[u8]| {
            withhold_leading_value(m.as_bytes(), code)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        assert_eq!(
            w("PHCANARYVWc is not a valid encoding name", b"42704").as_deref(),
            Some("[withheld by airlock] is not a valid encoding name")
        );
        assert_eq!(
            w("mailcanary is not a valid encoding name", b"22023").as_deref(),
            Some("[withheld by airlock] is not a valid encoding name")
        );
        assert_eq!(
            w("some object abc is gone", b"42704").as_deref(),
            Some("[withheld by airlock]")
        );
        assert_eq!(
            w("type \"[withheld by airlock]\" does not exist", b"42704"),
            None
        );
        assert_eq!(w("division by zero", b"22012"), None);
    }

    #[test]
    fn classes_22_and_23_quote_values() {
        assert!(quotes_values(b"22P02"));
        assert!(quotes_values(b"23505"));
        assert!(!quotes_values(b"42501"));
        assert!(!quotes_values(b"42703"));
    }

    #[test]
    fn the_whole_quoted_stretch_is_withheld() {
        let w = |m: &str, q: u8| {
            withhold_quoted(m.as_bytes(), q).map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        assert_eq!(
            w(
                "invalid input syntax for type integer: \"+1-202-555-0101\"",
                b'"'
            )
            .as_deref(),
            Some("invalid input syntax for type integer: \"[withheld by airlock]\"")
        );
        assert_eq!(
            w(
                "value \"4111111111111111x\" is out of range for type integer",
                b'"'
            )
            .as_deref(),
            Some("value \"[withheld by airlock]\" is out of range for type integer")
        );
        // A value with quotes inside: nothing between the outer quotes stays.
        assert_eq!(
            w("invalid input: \"a \"secret\" b\"", b'"').as_deref(),
            Some("invalid input: \"[withheld by airlock]\"")
        );
        assert_eq!(
            w("Duplicate entry 'bob@example.com' for key 'email'", b'\'').as_deref(),
            Some("Duplicate entry '[withheld by airlock]'")
        );
        assert_eq!(
            w("cut off: \"4111", b'"').as_deref(),
            Some("cut off: \"[withheld by airlock]\"")
        );
        assert_eq!(w("no quotes here", b'"'), None);
    }

    fn withheld(message: &str) -> String {
        withhold_quoted(message.as_bytes(), b'"')
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|| message.to_owned())
    }

    #[test]
    fn unquoted_numbers_are_withheld_from_the_first_to_the_last() {
        for (message, want) in [
            (
                "date field value out of range: 5550101-13-01",
                "date field value out of range: [withheld by airlock]",
            ),
            (
                "time field value out of range: 0:00:97",
                "time field value out of range: [withheld by airlock]",
            ),
            (
                "setseed parameter 97 is out of allowed range [-1,1]",
                "setseed parameter [withheld by airlock]",
            ),
            (
                "index 97 out of valid range, 0..7",
                "index [withheld by airlock]",
            ),
            ("value -12.5 or 1e10", "value [withheld by airlock]"),
            ("array {1,2} is bad", "array [withheld by airlock] is bad"),
            ("bytes \\xdeadbeef here", "bytes [withheld by airlock] here"),
            (
                "timestamp out of range: 2020-01-01 10:00:00+02",
                "timestamp out of range: [withheld by airlock]",
            ),
            // Words between two numbers go with them.
            (
                "interval 1 day 02:00:00 too long",
                "interval [withheld by airlock] too long",
            ),
            ("division by zero", "division by zero"),
        ] {
            assert_eq!(withheld(message), want, "{message}");
        }
    }

    #[test]
    fn numbers_and_quoted_stretches_are_withheld_together() {
        for (message, want) in [
            // Digits inside the quotes do not widen what goes.
            (
                "value \"4111111111111111\" is out of range for type integer",
                "value \"[withheld by airlock]\" is out of range for type integer",
            ),
            (
                "invalid byte sequence for encoding \"UTF8\": 0xe9 0x80",
                "invalid byte sequence for encoding \"[withheld by airlock]\": [withheld by airlock]",
            ),
            // A number glued to a quote is still a word of its own.
            (
                "bad \"x\"97 here",
                "bad \"[withheld by airlock]\"[withheld by airlock] here",
            ),
            // Numbers on both sides: the quoted stretch goes with them.
            (
                "value 5 for \"x\" at 7",
                "value [withheld by airlock]",
            ),
        ] {
            assert_eq!(withheld(message), want, "{message}");
        }
        assert_eq!(
            withhold_quoted(b"Out of range value for column 'c' at row 1", b'\'')
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .as_deref(),
            Some("Out of range value for column '[withheld by airlock]' at row [withheld by airlock]")
        );
    }
}
