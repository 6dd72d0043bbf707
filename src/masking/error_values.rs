//! Data values in database error messages.
//!
//! Errors of SQLSTATE class 22 (data exception) and 23 (integrity
//! constraint violation) quote the offending value: `invalid input syntax
//! for type integer: "alice@example.com"` after `email::int`, `Failing
//! row contains (...)` with every column of a row after an UPDATE that
//! broke a constraint. A statement may read a masked or denied column
//! that way, and the value detectors cannot be relied on to recognise it
//! (`card_number || 'x'` is no longer a card number). For sessions that
//! masking or denied columns protect, such errors keep their SQLSTATE and
//! wording, and lose their values: the quoted part of the message, and
//! the detail and context fields whole.

/// What replaces a withheld value or field.
pub const WITHHELD: &[u8] = b"[withheld by airlock]";

/// Whether errors with this SQLSTATE quote data values.
pub fn quotes_values(sqlstate: &[u8]) -> bool {
    sqlstate.starts_with(b"22") || sqlstate.starts_with(b"23")
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
