//! Secret detectors: AWS access key ids, PEM private keys, JWTs and
//! vendor-prefixed API tokens, each found with a `memmem` prefilter.

use std::sync::OnceLock;

use memchr::memmem::Finder;

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

struct Finders {
    /// (finder, prefix, minimum body length).
    prefixes: Vec<(Finder<'static>, &'static str, usize)>,
    pem: Finder<'static>,
    jwt: Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: OnceLock<Finders> = OnceLock::new();
    F.get_or_init(|| Finders {
        prefixes: PREFIXES
            .iter()
            .map(|(p, min)| (Finder::new(p.as_bytes()), *p, *min))
            .collect(),
        pem: Finder::new(b"-----BEGIN "),
        jwt: Finder::new(b"eyJ"),
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
    let f = finders();
    for (finder, prefix, min) in &f.prefixes {
        let aws = *prefix == "AKIA" || *prefix == "ASIA";
        for at in finder.find_iter(text) {
            if at > 0 && token_byte(text[at - 1]) {
                continue;
            }
            let body = at + prefix.len();
            let mut end = body;
            if aws {
                // Exactly 16 capitals/digits.
                while end < text.len()
                    && end - body < 17
                    && (text[end].is_ascii_uppercase() || text[end].is_ascii_digit())
                {
                    end += 1;
                }
                if end - body != 16 || text.get(end).copied().is_some_and(token_byte) {
                    continue;
                }
            } else {
                while end < text.len() && token_byte(text[end]) {
                    end += 1;
                }
                if end - body < *min {
                    continue;
                }
            }
            out.push(Finding {
                kind: Kind::Secret,
                start: at,
                end,
            });
        }
    }
    for at in f.pem.find_iter(text) {
        if let Some(end) = pem_key(text, at) {
            out.push(Finding {
                kind: Kind::Secret,
                start: at,
                end,
            });
        }
    }
    for at in f.jwt.find_iter(text) {
        if at > 0 && b64url(text[at - 1]) {
            continue;
        }
        if let Some(end) = jwt(text, at) {
            out.push(Finding {
                kind: Kind::Secret,
                start: at,
                end,
            });
        }
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
