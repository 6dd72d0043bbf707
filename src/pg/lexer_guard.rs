//! The lexer guard: airlock reads SQL as Postgres does only while the
//! server runs with `standard_conforming_strings = on` and a client
//! encoding whose bytes below 0x80 are always ASCII.
//!
//! The policy refuses every statement that changes either setting (SET,
//! SET NAMES, set_config, startup options, `UPDATE pg_settings` and views
//! over it). This guard is the second line: the server reports both
//! settings in ParameterStatus, at login and whenever they change. When a
//! report says the server now reads strings differently (`'\''` is then
//! one quote, not the start of a new string), the session ends at once:
//! statements the client pipelined behind the one that changed it were
//! judged as airlock reads SQL, and nothing the server sends for them is
//! relayed. (What they wrote is written; the policy is the first line.)
//! Postgres 14 and later send the report at the end of the request, just
//! before its ReadyForQuery: for a simple Query that is before anything of
//! the next Query, but within one extended-protocol batch (up to its Sync)
//! the results of statements after the change come first, and are relayed
//! before the report arrives (review finding). There the policy's refusal
//! of every statement that changes these settings is all there is.
//! At login such a setting (from `ALTER ROLE/DATABASE ... SET`) refuses
//! the session.

/// What is wrong with a ParameterStatus body, if it reports a setting
/// under which airlock's tokenizer and the server's disagree.
pub fn hazard(body: &[u8]) -> Option<String> {
    let mut fields = body.split(|&b| b == 0);
    let name = fields.next()?;
    let value = fields.next()?;
    let value_str = String::from_utf8_lossy(value);
    if name.eq_ignore_ascii_case(b"standard_conforming_strings") {
        return (!value.eq_ignore_ascii_case(b"on"))
            .then(|| format!("the server's standard_conforming_strings is {value_str}"));
    }
    if name.eq_ignore_ascii_case(b"client_encoding") && !ascii_safe(value) {
        return Some(format!("the server's client_encoding is {value_str}"));
    }
    None
}

/// Client encodings whose multibyte characters never contain a byte
/// below 0x80, so a quote or backslash byte is always that character.
/// The others (SJIS, BIG5, GBK, UHC, GB18030, JOHAB, ...) can hide one
/// inside a character.
fn ascii_safe(encoding: &[u8]) -> bool {
    let e = String::from_utf8_lossy(encoding).to_ascii_uppercase();
    let e = e.replace(['_', '-'], "");
    matches!(
        e.as_str(),
        "UTF8" | "UNICODE" | "SQLASCII" | "MULEINTERNAL" | "KOI8R" | "KOI8U"
    ) || ["EUC", "LATIN", "WIN", "ISO8859"]
        .iter()
        .any(|p| e.starts_with(p))
}

/// The refusal for statements after a hazard was reported.
pub fn refusal(hazard: &str) -> String {
    format!(
        "{hazard}, so the server no longer reads SQL as airlock does; \
         this session is ended: reconnect"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, value: &str) -> Vec<u8> {
        format!("{name}\0{value}\0").into_bytes()
    }

    #[test]
    fn standard_conforming_strings_off_is_a_hazard() {
        assert!(hazard(&status("standard_conforming_strings", "on")).is_none());
        assert!(hazard(&status("standard_conforming_strings", "off")).is_some());
        assert!(hazard(&status("standard_conforming_strings", "")).is_some());
    }

    #[test]
    fn only_ascii_unsafe_encodings_are_hazards() {
        for ok in [
            "UTF8",
            "utf8",
            "SQL_ASCII",
            "LATIN1",
            "WIN1252",
            "EUC_JP",
            "ISO_8859_5",
        ] {
            assert!(hazard(&status("client_encoding", ok)).is_none(), "{ok}");
        }
        for bad in [
            "SJIS",
            "BIG5",
            "GBK",
            "UHC",
            "GB18030",
            "JOHAB",
            "SHIFT_JIS_2004",
        ] {
            assert!(hazard(&status("client_encoding", bad)).is_some(), "{bad}");
        }
    }

    #[test]
    fn other_settings_and_malformed_bodies_are_not() {
        assert!(hazard(&status("application_name", "off")).is_none());
        assert!(hazard(b"standard_conforming_strings").is_none());
    }
}
