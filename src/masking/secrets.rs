//! Secret detectors: AWS access key ids, PEM private keys, JWTs and
//! vendor-prefixed API tokens. One Aho-Corasick pass finds every place
//! where any of them may start (a prefix, `-----BEGIN ` or `eyJ`); each
//! candidate is then checked by hand.

use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};

use super::detect::{Finding, Kind};

/// Token prefixes and the fewest token characters that must follow.
const PREFIXES: &[(&str, usize)] = &[
    ("sk_live_", 16),
    ("sk_test_", 16),
    ("rk_live_", 16),
    ("ghp_", 30),
    ("gho_", 30),
    ("ghu_", 30),
    ("ghs_", 30),
    ("ghr_", 30),
    ("github_pat_", 22),
    ("xoxb-", 16),
    ("xoxp-", 16),
    ("xoxa-", 16),
    ("xoxs-", 16),
    ("glpat-", 20),
    ("AIza", 35),
    ("AKIA", 16),
    ("ASIA", 16),
];
/// Where a PEM block starts.
const PEM: &str = "-----BEGIN ";
/// How a JWT starts (`{"` in base64url).
const JWT: &str = "eyJ";

/// Every start pattern: [`PREFIXES`] by index, then [`PEM`], then [`JWT`].
///
/// No pattern occurs inside another or starts another, so at most one
/// starts at any position, and searching leftmost-first again from one
/// past each match's start finds every occurrence of every pattern, as
/// one search per pattern would (overlaps included: the dashes of
/// `xoxb-----BEGIN `).
fn starts() -> &'static AhoCorasick {
    static AC: OnceLock<AhoCorasick> = OnceLock::new();
    AC.get_or_init(|| {
        let patterns = PREFIXES.iter().map(|(p, _)| *p).chain([PEM, JWT]);
        // Leftmost-first lets the search use its SIMD prefilter.
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(patterns)
            .unwrap_or_else(|e| {
                // The patterns are constants: this cannot fail.
                unreachable!("secret start patterns: {e}")
            })
    })
}

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Appends every secret in `text` to `out`.
pub fn scan(text: &[u8], out: &mut Vec<Finding>) {
    let pem = PREFIXES.len();
    let jwt_id = pem + 1;
    let ac = starts();
    let mut from = 0;
    while let Some(m) = ac.find(Input::new(text).span(from..text.len())) {
        let at = m.start();
        from = at + 1;
        let id = m.pattern().as_usize();
        let end = if id == pem {
            pem_key(text, at)
        } else if id == jwt_id {
            if at > 0 && b64url(text[at - 1]) {
                continue;
            }
            jwt(text, at)
        } else {
            if at > 0 && token_byte(text[at - 1]) {
                continue;
            }
            let (prefix, min) = PREFIXES[id];
            prefixed_token(text, at + prefix.len(), prefix, min)
        };
        if let Some(end) = end {
            out.push(Finding {
                kind: Kind::Secret,
                start: at,
                end,
            });
        }
    }
}

/// The end of a token whose body starts at `body`, after `prefix`.
fn prefixed_token(text: &[u8], body: usize, prefix: &str, min: usize) -> Option<usize> {
    let mut end = body;
    if prefix == "AKIA" || prefix == "ASIA" {
        // Exactly 16 capitals/digits.
        while end < text.len()
            && end - body < 17
            && (text[end].is_ascii_uppercase() || text[end].is_ascii_digit())
        {
            end += 1;
        }
        (end - body == 16 && !text.get(end).copied().is_some_and(token_byte)).then_some(end)
    } else {
        while end < text.len() && token_byte(text[end]) {
            end += 1;
        }
        (end - body >= min).then_some(end)
    }
}

/// `-----BEGIN [X ]PRIVATE KEY-----` … through the matching END line (or
/// the end of the text when it is cut off).
fn pem_key(text: &[u8], at: usize) -> Option<usize> {
    let rest = &text[at..];
    let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len()).min(80);
    let header = &rest[..line_end];
    let close = memchr::memmem::find(header, b"PRIVATE KEY-----")?;
    let after_header = close + "PRIVATE KEY-----".len();
    match memchr::memmem::find(&rest[after_header..], b"-----END ") {
        Some(e) => {
            let from = after_header + e;
            let tail = memchr::memmem::find(&rest[from..], b"PRIVATE KEY-----")?;
            Some(at + from + tail + "PRIVATE KEY-----".len())
        }
        None => Some(text.len()),
    }
}

/// Three base64url segments separated by dots, the first two at least 10
/// characters long.
fn jwt(text: &[u8], at: usize) -> Option<usize> {
    let mut pos = at;
    for seg in 0..3 {
        let s = pos;
        while pos < text.len() && b64url(text[pos]) {
            pos += 1;
        }
        let len = pos - s;
        if (seg < 2 && len < 10) || (seg == 2 && len == 0) {
            return None;
        }
        if seg < 2 {
            if text.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`scan`] must find: every occurrence of every start pattern,
    /// found by trying each pattern at each position.
    fn reference(text: &[u8]) -> Vec<Finding> {
        let mut out = Vec::new();
        for at in 0..text.len() {
            let rest = &text[at..];
            for (prefix, min) in PREFIXES {
                if rest.starts_with(prefix.as_bytes()) && !(at > 0 && token_byte(text[at - 1])) {
                    if let Some(end) = prefixed_token(text, at + prefix.len(), prefix, *min) {
                        out.push(Finding {
                            kind: Kind::Secret,
                            start: at,
                            end,
                        });
                    }
                }
            }
            if rest.starts_with(PEM.as_bytes()) {
                if let Some(end) = pem_key(text, at) {
                    out.push(Finding {
                        kind: Kind::Secret,
                        start: at,
                        end,
                    });
                }
            }
            if rest.starts_with(JWT.as_bytes()) && !(at > 0 && b64url(text[at - 1])) {
                if let Some(end) = jwt(text, at) {
                    out.push(Finding {
                        kind: Kind::Secret,
                        start: at,
                        end,
                    });
                }
            }
        }
        out
    }

    /// Texts stitched from pieces of the patterns, separators and token
    /// characters (a fixed xorshift sequence): one search for all patterns
    /// finds exactly what a search per pattern finds.
    #[test]
    fn one_search_finds_what_a_search_per_pattern_finds() {
        // Each pattern, and each without its last character (whose end
        // another pattern may then supply: `xoxb` + `-----BEGIN `).
        let pieces: Vec<&str> = PREFIXES
            .iter()
            .map(|(p, _)| *p)
            .chain([PEM, JWT])
            .flat_map(|p| [p, &p[..p.len() - 1]])
            .chain([
                "PRIVATE KEY-----",
                "-----END ",
                "\n",
                " ",
                "-",
                "_",
                ".",
                "A",
                "K",
                "IA",
                "xox",
                "abcdefghij0123456789",
                "ABCDEFGHIJKLMNOP",
                "eyJhbGciOiJIUzI1NiJ9",
            ])
            .collect();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut found = 0;
        for _ in 0..3000 {
            let n = 1 + next() % 12;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let mut got = Vec::new();
            scan(text.as_bytes(), &mut got);
            got.sort_by_key(|f| (f.start, f.end));
            let mut want = reference(text.as_bytes());
            want.sort_by_key(|f| (f.start, f.end));
            assert_eq!(got, want, "{text:?}");
            found += want.len();
        }
        // The texts do hold secrets, so the comparison is not vacuous.
        assert!(found > 100, "only {found} findings");
    }
}
