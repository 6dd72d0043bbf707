//! Masking strategies: how one text-format value is replaced.
//!
//! Every strategy works on the value's text form and must produce text that
//! is valid for the column type. For non-text types (numbers, dates, UUIDs,
//! JSON, bytea, ...) a masked string would be invalid, so every strategy
//! yields NULL there.

use std::fmt;

use super::hmac::HashKey;

/// The fixed token `redact` writes.
pub const REDACTED: &[u8] = b"****";

/// How a masked column's values are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// A fixed token (`****`).
    Redact,
    /// Keep the first/last N letters or digits, `*` for the rest;
    /// punctuation and spaces are kept (`****-****-****-1111`). A value too
    /// short to hide anything is fully starred.
    Partial { keep_first: usize, keep_last: usize },
    /// `h:` + 20 hex digits of HMAC-SHA256(key, value): deterministic, so
    /// equal values stay equal.
    Hash,
    /// `****@domain`; values without `@` are redacted.
    Email,
    /// SQL NULL.
    Null,
    /// Format-preserving: each digit becomes a keyed pseudo-random digit,
    /// each ASCII letter a letter of the same case, everything else is
    /// kept (`123-45-6789` → `804-17-2291`). Deterministic per key.
    Fake,
}

impl Strategy {
    /// The strategy for a value computed from a masked column (see
    /// [`super::taint::Taint::Derived`]): the ones that keep part of the
    /// value, or map it piece by piece, mask it whole instead. A hash
    /// stays a hash, so that computed values still join and group.
    pub fn for_derived(self) -> Strategy {
        match self {
            // A hash of a computed value is a codebook entry: hashing
            // `substr(phone, k, 1)` and `'5'` alike reads a number digit
            // by digit.
            Strategy::Partial { .. } | Strategy::Email | Strategy::Fake | Strategy::Hash => {
                Strategy::Redact
            }
            s => s,
        }
    }
    /// Parses a rule-file name; `keep_*` apply to `partial` only.
    pub fn parse(name: &str, keep_first: usize, keep_last: usize) -> Option<Strategy> {
        Some(match name {
            "redact" => Strategy::Redact,
            "partial" => Strategy::Partial {
                keep_first,
                keep_last,
            },
            "hash" => Strategy::Hash,
            "email" => Strategy::Email,
            "null" => Strategy::Null,
            "fake" => Strategy::Fake,
            _ => return None,
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Redact => "redact",
            Strategy::Partial { .. } => "partial",
            Strategy::Hash => "hash",
            Strategy::Email => "email",
            Strategy::Null => "null",
            Strategy::Fake => "fake",
        })
    }
}

/// The replacement for one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskedValue {
    Text(Vec<u8>),
    Null,
}

/// What is known about the column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeHint {
    /// A free-form text type (see [`super::types`]).
    Text,
    /// Anything else: masking yields NULL.
    Other,
}

impl TypeHint {
    pub fn from_text_like(text_like: bool) -> Self {
        if text_like {
            TypeHint::Text
        } else {
            TypeHint::Other
        }
    }
}

/// Masks one text-format value.
pub fn mask_text(value: &[u8], strategy: Strategy, hint: TypeHint, key: &HashKey) -> MaskedValue {
    crate::metrics::masked_value();
    if hint == TypeHint::Other {
        return MaskedValue::Null;
    }
    MaskedValue::Text(match strategy {
        Strategy::Null => return MaskedValue::Null,
        Strategy::Redact => REDACTED.to_vec(),
        Strategy::Partial {
            keep_first,
            keep_last,
        } => partial(value, keep_first, keep_last),
        Strategy::Hash => hash(value, key),
        Strategy::Email => email(value),
        Strategy::Fake => fake(value, key),
    })
}

fn partial(value: &[u8], keep_first: usize, keep_last: usize) -> Vec<u8> {
    let Ok(s) = std::str::from_utf8(value) else {
        return REDACTED.to_vec();
    };
    let total = s.chars().filter(|c| c.is_alphanumeric()).count();
    // Never reveal more than half of the characters.
    let reveal = keep_first + keep_last <= total / 2;
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    for c in s.chars() {
        if !c.is_alphanumeric() {
            out.push(c);
            continue;
        }
        let keep = reveal && (i < keep_first || i >= total - keep_last);
        out.push(if keep { c } else { '*' });
        i += 1;
    }
    out.into_bytes()
}

fn hash(value: &[u8], key: &HashKey) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mac = key.mac(value);
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(b"h:");
    for b in &mac[..10] {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out
}

fn email(value: &[u8]) -> Vec<u8> {
    match memchr::memrchr(b'@', value) {
        Some(at) if at + 1 < value.len() => {
            let mut out = REDACTED.to_vec();
            out.extend_from_slice(&value[at..]);
            out
        }
        _ => REDACTED.to_vec(),
    }
}

fn fake(value: &[u8], key: &HashKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut block = key.mac(value);
    let mut counter = 0u32;
    let mut used = 0;
    for &b in value {
        if !b.is_ascii_alphanumeric() {
            out.push(b);
            continue;
        }
        if used == block.len() {
            counter += 1;
            let mut seed = block.to_vec();
            seed.extend_from_slice(&counter.to_be_bytes());
            block = key.mac(&seed);
            used = 0;
        }
        let r = block[used];
        used += 1;
        out.push(match b {
            b'0'..=b'9' => b'0' + r % 10,
            b'a'..=b'z' => b'a' + r % 26,
            _ => b'A' + r % 26,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &str, s: Strategy) -> MaskedValue {
        mask_text(v.as_bytes(), s, TypeHint::Text, &HashKey::new(b"k"))
    }

    fn t(v: &str, s: Strategy) -> String {
        match m(v, s) {
            MaskedValue::Text(b) => String::from_utf8(b).unwrap_or_default(),
            MaskedValue::Null => "NULL".into(),
        }
    }

    const LAST4: Strategy = Strategy::Partial {
        keep_first: 0,
        keep_last: 4,
    };

    #[test]
    fn masking_strategy_redact_null_email() {
        assert_eq!(t("alice", Strategy::Redact), "****");
        assert_eq!(m("alice", Strategy::Null), MaskedValue::Null);
        assert_eq!(t("alice@example.com", Strategy::Email), "****@example.com");
        assert_eq!(t("not an email", Strategy::Email), "****");
        assert_eq!(t("trailing@", Strategy::Email), "****");
    }

    #[test]
    fn masking_strategy_partial_keeps_last_four() {
        assert_eq!(t("4111111111111111", LAST4), "************1111");
        assert_eq!(t("4111-1111-1111-1111", LAST4), "****-****-****-1111");
        assert_eq!(t("123-45-6789", LAST4), "***-**-6789");
        // Too short to hide anything: fully starred.
        assert_eq!(t("12345", LAST4), "*****");
        let first = Strategy::Partial {
            keep_first: 2,
            keep_last: 0,
        };
        assert_eq!(t("Jönsson", first), "Jö*****");
    }

    #[test]
    fn masking_strategy_hash_is_keyed_and_deterministic() {
        let a = t("alice@example.com", Strategy::Hash);
        assert_eq!(a, t("alice@example.com", Strategy::Hash));
        assert_ne!(a, t("bob@example.com", Strategy::Hash));
        assert!(a.starts_with("h:") && a.len() == 22, "{a}");
        let other = mask_text(
            b"alice@example.com",
            Strategy::Hash,
            TypeHint::Text,
            &HashKey::new(b"other"),
        );
        assert_ne!(other, MaskedValue::Text(a.into_bytes()));
    }

    #[test]
    fn masking_strategy_fake_preserves_format() {
        let f = t("123-45-6789", Strategy::Fake);
        assert_eq!(f.len(), 11);
        assert_eq!(&f[3..4], "-");
        assert!(f.bytes().filter(|b| *b != b'-').all(|b| b.is_ascii_digit()));
        assert_ne!(f, "123-45-6789");
        assert_eq!(f, t("123-45-6789", Strategy::Fake));
        let long = "x".repeat(100);
        let g = t(&long, Strategy::Fake);
        assert_eq!(g.len(), 100);
        assert!(g.bytes().all(|b| b.is_ascii_lowercase()));
    }

    #[test]
    fn masking_strategy_non_text_types_become_null() {
        for s in [
            Strategy::Redact,
            LAST4,
            Strategy::Hash,
            Strategy::Email,
            Strategy::Fake,
            Strategy::Null,
        ] {
            assert_eq!(
                mask_text(b"42", s, TypeHint::Other, &HashKey::new(b"k")),
                MaskedValue::Null,
                "{s}"
            );
        }
    }
}
