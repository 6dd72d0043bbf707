//! Output: a human-readable table and JSON lines, with a small RFC 3339
//! formatter and JSON encoder (no chrono, no serde_json at runtime).

use std::fmt::Write as _;

use super::{AuditDecision, AuditRecord, EventKind};

/// Longest statement / fingerprint shown in a table row, in characters.
const TABLE_SQL: usize = 100;
/// Characters of a reason shown under a record in the table.
const TABLE_REASON: usize = 200;

/// Unix milliseconds as RFC 3339 UTC, e.g. `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A header, then one line per record: time, session, identity/model
/// (and, in parentheses, the person it acts for),
/// kind or decision, rule, fingerprint (or statement) truncated; under a
/// refusal (or a held statement, a failed login) a second line with the
/// reason, so that the table says why without `--json`.
pub fn format_table(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    if !records.is_empty() {
        let _ = writeln!(
            out,
            "{:>6} {:<24} {:<7} {:<24} {:<11} {:<24} statement",
            "seq", "time", "session", "identity/model", "decision", "rule"
        );
    }
    for r in records {
        let e = &r.event;
        // A model only the client declared is marked as such: `?`.
        let mut who = match (e.model.as_deref(), e.declared_model.as_deref()) {
            (Some(model), _) => format!("{}/{model}", e.identity),
            (None, Some(declared)) => format!("{}/{declared}?", e.identity),
            (None, None) => e.identity.to_string(),
        };
        if let Some(user) = e.user.as_deref() {
            let _ = write!(who, " ({user})");
        }
        let what = match e.decision {
            Some(d) => d.as_str(),
            None => e.kind.as_str(),
        };
        let sql = r
            .fingerprint
            .as_deref()
            .or(e.statement.as_deref())
            .unwrap_or("");
        // Every field a client can write (its user, model, statement) is
        // shown with control and bidi characters escaped: a record must
        // not draw another record's line, or move the cursor.
        let _ = writeln!(
            out,
            "{:>6} {} s{:<6} {:<24} {:<11} {:<24} {}",
            r.seq,
            rfc3339(e.time_ms),
            e.session,
            printable(&who),
            what,
            printable(e.rule.as_deref().unwrap_or("-")),
            truncate(&printable(&sql.replace(['\n', '\r', '\t'], " ")), TABLE_SQL)
        );
        let explained = matches!(
            e.decision,
            Some(AuditDecision::Block | AuditDecision::WouldBlock | AuditDecision::Approval)
        ) || matches!(e.kind, EventKind::AuthFailed | EventKind::Pruned);
        if let Some(reason) = e.reason.as_deref().filter(|_| explained) {
            let reason = reason.replace(['\n', '\r', '\t'], " ");
            let _ = writeln!(
                out,
                "{:>6} why: {}",
                "",
                truncate(&printable(&reason), TABLE_REASON)
            );
        }
    }
    out
}

/// `s` with control characters, bidi controls (which reorder what a
/// terminal shows) and invisible characters (zero-width spaces and joiners,
/// the word joiner and invisible operators, the byte order mark, the
/// Arabic letter mark, the soft hyphen, Hangul and Mongolian fillers,
/// variation selectors, line and paragraph separators, tag characters)
/// written as `\u{..}` escapes.
pub fn printable(s: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{00ad}'
                    | '\u{034f}'
                    | '\u{061c}'
                    | '\u{115f}'
                    | '\u{1160}'
                    | '\u{17b4}'
                    | '\u{17b5}'
                    | '\u{180b}'..='\u{180f}'
                    | '\u{200b}'..='\u{200f}'
                    | '\u{2028}'
                    | '\u{2029}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2064}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{3164}'
                    | '\u{fe00}'..='\u{fe0f}'
                    | '\u{feff}'
                    | '\u{ffa0}'
                    | '\u{e0000}'..='\u{e007f}'
            )
    };
    if !s.chars().any(hidden) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| match hidden(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// One JSON object per line.
pub fn format_json(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&record_json(r));
        out.push('\n');
    }
    out
}

/// One record as a JSON object (no trailing newline).
pub fn record_json(r: &AuditRecord) -> String {
    let e = &r.event;
    let mut o = Obj::default();
    o.int("seq", Some(r.seq));
    o.str("time", Some(&rfc3339(e.time_ms)));
    o.int("time_ms", Some(e.time_ms));
    o.uint("session", Some(e.session));
    o.str("kind", Some(e.kind.as_str()));
    o.str("identity", Some(&e.identity));
    o.str("user", e.user.as_deref());
    o.str("model", e.model.as_deref());
    o.str("declared_model", e.declared_model.as_deref());
    o.str("client_addr", e.client_addr.as_deref());
    o.str("application_name", e.application_name.as_deref());
    o.str("protocol", Some(&e.protocol));
    o.str("target", Some(&e.target));
    o.str("database", e.database.as_deref());
    o.str("statement", e.statement.as_deref());
    o.str("fingerprint", r.fingerprint.as_deref());
    o.str("decision", e.decision.map(|d| d.as_str()));
    o.str("rule", e.rule.as_deref());
    o.str("reason", e.reason.as_deref());
    o.str("masked_columns", e.masked_columns.as_deref());
    o.uint("rows", e.rows);
    o.uint("duration_us", e.duration_us);
    o.str("prev_hash", Some(&r.prev_hash));
    o.str("hash", Some(&r.hash));
    o.finish()
}

#[derive(Default)]
struct Obj(String);

impl Obj {
    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        json_string(&mut self.0, k);
        self.0.push(':');
    }

    fn str(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match v {
            Some(v) => json_string(&mut self.0, v),
            None => self.0.push_str("null"),
        }
    }

    fn int(&mut self, k: &str, v: Option<i64>) {
        self.key(k);
        match v {
            Some(v) => {
                let _ = write!(self.0, "{v}");
            }
            None => self.0.push_str("null"),
        }
    }

    fn uint(&mut self, k: &str, v: Option<u64>) {
        self.key(k);
        match v {
            Some(v) => {
                let _ = write!(self.0, "{v}");
            }
            None => self.0.push_str("null"),
        }
    }

    fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push('{');
        }
        self.0.push('}');
        self.0
    }
}

/// Appends `s` as a JSON string literal.
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_and_bidi_characters() {
        assert_eq!(printable("agent/gpt-5"), "agent/gpt-5");
        assert_eq!(
            printable("ghost\n    999 allow"),
            "ghost\\u{a}    999 allow"
        );
        assert_eq!(printable("a\u{1b}[2Kb\u{202e}c"), "a\\u{1b}[2Kb\\u{202e}c");
        // Invisible characters too (red-team note).
        assert_eq!(
            printable("a\u{200b}b\u{feff}c\u{61c}"),
            "a\\u{200b}b\\u{feff}c\\u{61c}"
        );
        // Fillers, variation selectors, separators and tags (review note).
        assert_eq!(
            printable("a\u{ad}b\u{3164}c\u{fe0f}d\u{2028}e\u{e0041}f"),
            "a\\u{ad}b\\u{3164}c\\u{fe0f}d\\u{2028}e\\u{e0041}f"
        );
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn json_escaping() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn truncation_is_char_safe() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("ab", 2), "ab");
    }
}
