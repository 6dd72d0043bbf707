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

/// What replaces a withheld value or field.
pub const WITHHELD: &[u8] = b"[withheld by airlock]";

/// Whether errors with this SQLSTATE quote data values.
pub fn quotes_values(sqlstate: &[u8]) -> bool {
    sqlstate.starts_with(b"22") || sqlstate.starts_with(b"23")
}

/// Whether a Postgres error's quoted text may come from data rather than
/// from the statement's own text. Only an unknown column (42703) is known
/// to quote nothing but what the agent wrote, and keeps its text so that
/// an agent can correct itself. Every other may quote a value the
/// statement computed: `current_setting(email)` (42704),
/// `email::regclass` (42P01, 3F000), `email::regproc` (42883), and even
/// syntax errors (42601): `phone::regtype` parses the value as a type
/// name and reports `syntax error at or near "+"`, `to_tsquery(email)`
/// reports the whole value. (The statement's own syntax errors rarely
/// reach the server: airlock refuses what it cannot parse.)
pub fn pg_may_quote_data(sqlstate: &[u8]) -> bool {
    !matches!(sqlstate, b"42703" | b"42501")
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

/// `message` with everything from its first `quote` to its last replaced
/// by [`WITHHELD`] (between the two quotes): a value may itself hold
/// quotes, so no span inside is trusted. `None` when it has no quote.
pub fn withhold_quoted(message: &[u8], quote: u8) -> Option<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
