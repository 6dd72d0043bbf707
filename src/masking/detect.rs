//! Value detectors: find PII and secrets in free text without regexes.
//!
//! Used on text values of columns no rule classifies, and on error, notice
//! and notification text. Each detector is a small hand-written scanner
//! behind a cheap prefilter (`memchr` for `@`, a digit scan, `memmem` for
//! secret prefixes), so clean text costs a few linear passes and no
//! allocation: [`scan`] returns an empty `Vec` (which does not allocate)
//! and [`scrub`] returns `None`.

use std::fmt;

use super::digits;
use super::secrets;

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Email,
    Card,
    Ssn,
    Phone,
    Iban,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Email,
        Kind::Card,
        Kind::Ssn,
        Kind::Phone,
        Kind::Iban,
        Kind::Secret,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Card => "card",
            Kind::Ssn => "ssn",
            Kind::Phone => "phone",
            Kind::Iban => "iban",
            Kind::Secret => "secret",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The token a finding is replaced with by [`scrub`].
    pub fn token(self) -> &'static [u8] {
        match self {
            Kind::Email => b"[email]",
            Kind::Card => b"[card]",
            Kind::Ssn => b"[ssn]",
            Kind::Phone => b"[phone]",
            Kind::Iban => b"[iban]",
            Kind::Secret => b"[secret]",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of enabled detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DetectorSet(u8);

impl DetectorSet {
    pub const NONE: DetectorSet = DetectorSet(0);
    pub const ALL: DetectorSet = DetectorSet(0b11_1111);

    pub fn with(self, k: Kind) -> Self {
        DetectorSet(self.0 | k.bit())
    }

    pub fn has(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Kind> for DetectorSet {
    fn from_iter<I: IntoIterator<Item = Kind>>(iter: I) -> Self {
        iter.into_iter().fold(DetectorSet::NONE, DetectorSet::with)
    }
}

/// One detected span, `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// All non-overlapping findings, in text order.
pub fn scan(text: &[u8], enabled: DetectorSet) -> Vec<Finding> {
    let mut out = Vec::new();
    if enabled.is_empty() || text.is_empty() {
        return out;
    }
    if enabled.has(Kind::Secret) {
        secrets::scan(text, &mut out);
    }
    if enabled.has(Kind::Email) {
        scan_emails(text, &mut out);
    }
    if enabled.has(Kind::Iban) {
        digits::scan_ibans(text, &mut out);
    }
    if enabled.has(Kind::Card) || enabled.has(Kind::Ssn) || enabled.has(Kind::Phone) {
        digits::scan_numbers(text, enabled, &mut out);
    }
    if out.len() > 1 {
        // Earlier detectors win ties (secrets first); drop overlaps.
        out.sort_by_key(|f| f.start);
        let mut kept: Vec<Finding> = Vec::with_capacity(out.len());
        for f in out {
            match kept.last() {
                Some(k) if f.start < k.end => {}
                _ => kept.push(f),
            }
        }
        out = kept;
    }
    out
}

/// `text` with every finding replaced by its token, or `None` when there
/// is nothing to replace.
pub fn scrub(text: &[u8], enabled: DetectorSet) -> Option<Vec<u8>> {
    let found = scan(text, enabled);
    if found.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for f in &found {
        out.extend_from_slice(&text[at..f.start]);
        out.extend_from_slice(f.kind.token());
        at = f.end;
    }
    out.extend_from_slice(&text[at..]);
    Some(out)
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

fn scan_emails(text: &[u8], out: &mut Vec<Finding>) {
    for at in memchr::memchr_iter(b'@', text) {
        let mut start = at;
        while start > 0 && is_local(text[start - 1]) {
            start -= 1;
        }
        while start < at && text[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < text.len() && is_domain(text[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(text[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start == at || end <= at + 1 {
            continue;
        }
        let domain = &text[at + 1..end];
        let Some(dot) = memchr::memrchr(b'.', domain) else {
            continue;
        };
        let tld = &domain[dot + 1..];
        if tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) || domain[0] == b'.' {
            continue;
        }
        out.push(Finding {
            kind: Kind::Email,
            start,
            end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Kind, String)> {
        scan(s.as_bytes(), DetectorSet::ALL)
            .into_iter()
            .map(|f| (f.kind, s[f.start..f.end].to_string()))
            .collect()
    }

    fn one(s: &str) -> Option<Kind> {
        let k = kinds(s);
        assert!(k.len() <= 1, "{s}: {k:?}");
        k.first().map(|x| x.0)
    }

    #[test]
    fn masking_detect_true_positives() {
        assert_eq!(
            kinds("mail alice.b+x@mail.example.com. now"),
            vec![(Kind::Email, "alice.b+x@mail.example.com".into())]
        );
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
            "6011111111111117",
        ] {
            assert_eq!(one(&format!("card {card}!")), Some(Kind::Card), "{card}");
        }
        assert_eq!(
            kinds("ssn: 123-45-6789"),
            vec![(Kind::Ssn, "123-45-6789".into())]
        );
        for phone in [
            "+14155552671",
            "+44 20 7946 0958",
            "(415) 555-2671",
            "415-555-2671",
            "415.555.2671",
            "+1 415 555 2671",
            "1-415-555-2671",
        ] {
            assert_eq!(
                kinds(&format!("call {phone} now")),
                vec![(Kind::Phone, phone.to_string())],
                "{phone}"
            );
        }
        assert_eq!(
            kinds("iban GB82 WEST 1234 5698 7654 32 ok"),
            vec![(Kind::Iban, "GB82 WEST 1234 5698 7654 32".into())]
        );
        assert_eq!(one("DE89370400440532013000"), Some(Kind::Iban));
    }

    #[test]
    fn masking_detect_secrets() {
        for s in [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0abcdefghijklmnopqrstuv",
            "xoxb-123456789012-abcdefghijklmnop",
            "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ] {
            assert_eq!(
                kinds(&format!("token={s} end")),
                vec![(Kind::Secret, s.to_string())],
                "{s}"
            );
        }
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            kinds(&format!("key:\n{pem}\nbye")),
            vec![(Kind::Secret, pem.to_string())]
        );
        assert!(kinds("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----").is_empty());
    }

    /// Secrets that touch or overlap other start patterns: one pass over
    /// all patterns must find what a search per pattern finds.
    #[test]
    fn masking_detect_adjacent_secrets() {
        let pem =
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34\n-----END RSA PRIVATE KEY-----";
        // A PEM block whose dashes continue a short Slack prefix: the
        // prefix is no token, the PEM block is still found.
        assert_eq!(
            kinds(&format!("xoxb{pem}")),
            vec![(Kind::Secret, pem.to_string())]
        );
        // Two tokens side by side, and the same prefix twice.
        let a = "AKIAIOSFODNN7EXAMPLE";
        let b = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
        assert_eq!(
            kinds(&format!("{a} {b} {a}")),
            vec![
                (Kind::Secret, a.to_string()),
                (Kind::Secret, b.to_string()),
                (Kind::Secret, a.to_string())
            ]
        );
        // A prefix inside a longer token is no start.
        assert!(kinds("xAKIAIOSFODNN7EXAMPLE").is_empty());
        assert!(kinds("AKIAKIAIOSFODNN7EXAMPLE").is_empty());
    }

    #[test]
    fn masking_detect_clean_negatives() {
        for s in [
            "4111111111111112",            // Luhn fails
            "1700000000000",               // ms timestamp, no card prefix
            "order 12345678 shipped",      // plain number
            "4155552671",                  // bare 10 digits: not a phone
            "2024-01-15 10:00:00",         // date
            "192.168.100.200",             // IP
            "000-12-3456 666-12-3456",     // invalid SSN areas
            "price 1234.5678",             // decimal
            "GB82 WEST 1234 5698 7654 33", // IBAN checksum fails
            "the quick brown fox @ home",
            "user@localhost",
            "AKIA too short",
            "sk_live_short",
            "eyJ not a jwt",
            "ordinary words and SKUs like ABC-123",
        ] {
            assert_eq!(kinds(s), vec![], "{s}");
            assert_eq!(scrub(s.as_bytes(), DetectorSet::ALL), None, "{s}");
        }
    }

    #[test]
    fn masking_detect_scrub() {
        let s = b"contact bob@example.com or 415-555-2671, card 4111 1111 1111 1111";
        assert_eq!(
            scrub(s, DetectorSet::ALL).as_deref(),
            Some(&b"contact [email] or [phone], card [card]"[..])
        );
        let only_email: DetectorSet = [Kind::Email].into_iter().collect();
        assert_eq!(
            scrub(s, only_email).as_deref(),
            Some(&b"contact [email] or 415-555-2671, card 4111 1111 1111 1111"[..])
        );
        assert_eq!(scrub(s, DetectorSet::NONE), None);
    }
}
