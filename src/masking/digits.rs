//! Number-shaped detectors: payment cards (Luhn + issuer prefix), US SSNs,
//! phone numbers (E.164 and NANP layouts only) and IBANs (mod-97).
//!
//! Numbers are read as runs of digit groups joined by single separators
//! (space, `-`, `.`, or the `(415) ` area-code form), then each run is
//! checked against the shapes in turn. Bare digit strings are only ever
//! cards (with a valid prefix and checksum) or `+`-prefixed phones, so
//! ids, timestamps and amounts do not trip the detectors.

use super::detect::{DetectorSet, Finding, Kind};

const MAX_GROUPS: usize = 8;

/// A run of digit groups.
struct Run {
    start: usize,
    end: usize,
    /// (offset, length) of each group.
    groups: [(usize, usize); MAX_GROUPS],
    /// Separator before group i (index 0 unused); `b'p'` for `) `.
    seps: [u8; MAX_GROUPS],
    n: usize,
    digits: usize,
    plus: bool,
}

impl Run {
    fn lens(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups[..self.n].iter().map(|g| g.1)
    }

    fn shape(&self, want: &[usize]) -> bool {
        self.n == want.len() && self.lens().zip(want).all(|(a, b)| a == *b)
    }

    fn digit_iter<'a>(&'a self, text: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
        text[self.start..self.end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
    }

    fn group<'a>(&self, text: &'a [u8], i: usize) -> &'a [u8] {
        let (o, l) = self.groups[i];
        &text[o..o + l]
    }
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Reads the run of digit groups starting at the digit `text[i]`.
fn read_run(text: &[u8], i: usize) -> Run {
    let mut run = Run {
        start: i,
        end: i,
        groups: [(0, 0); MAX_GROUPS],
        seps: [0; MAX_GROUPS],
        n: 0,
        digits: 0,
        plus: i > 0 && text[i - 1] == b'+',
    };
    if run.plus {
        run.start = i - 1;
    }
    let paren = i > 0 && text[i - 1] == b'(';
    let mut pos = i;
    loop {
        let g = pos;
        while pos < text.len() && text[pos].is_ascii_digit() {
            pos += 1;
        }
        run.groups[run.n] = (g, pos - g);
        run.digits += pos - g;
        run.n += 1;
        run.end = pos;
        if run.n == MAX_GROUPS || run.digits > 19 {
            break;
        }
        let next_digit = |p: usize| text.get(p).is_some_and(u8::is_ascii_digit);
        match text.get(pos) {
            Some(b')') if paren && run.n == 1 && pos - g == 3 => {
                let skip = if text.get(pos + 1) == Some(&b' ') {
                    2
                } else {
                    1
                };
                if !next_digit(pos + skip) {
                    break;
                }
                run.start = i - 1;
                run.seps[run.n] = b'p';
                pos += skip;
            }
            Some(&s @ (b' ' | b'-' | b'.')) if next_digit(pos + 1) => {
                run.seps[run.n] = s;
                pos += 1;
            }
            _ => break,
        }
    }
    run
}

/// Scans for cards, SSNs and phones.
pub fn scan_numbers(text: &[u8], enabled: DetectorSet, out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let run = read_run(text, i);
        i = run.end.max(i + 1);
        let before_ok = run.start == 0 || !word_byte(text[run.start - 1]);
        let after_ok = run.end == text.len() || !word_byte(text[run.end]);
        if !before_ok || !after_ok || run.digits > 19 {
            // Skip the rest of an over-long or embedded run.
            while i < text.len() && (word_byte(text[i]) || text[i] == b'-' || text[i] == b'.') {
                i += 1;
            }
            continue;
        }
        let kind = if enabled.has(Kind::Ssn) && is_ssn(text, &run) {
            Some(Kind::Ssn)
        } else if enabled.has(Kind::Card) && is_card(text, &run) {
            Some(Kind::Card)
        } else if enabled.has(Kind::Phone) && is_phone(text, &run) {
            Some(Kind::Phone)
        } else {
            None
        };
        if let Some(kind) = kind {
            out.push(Finding {
                kind,
                start: run.start,
                end: run.end,
            });
        }
    }
}

fn is_ssn(text: &[u8], run: &Run) -> bool {
    if run.plus || !run.shape(&[3, 2, 4]) || run.seps[1] != b'-' || run.seps[2] != b'-' {
        return false;
    }
    let area = run.group(text, 0);
    area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && run.group(text, 1) != b"00"
        && run.group(text, 2) != b"0000"
}

fn luhn(digits: impl Iterator<Item = u8>, count: usize) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.enumerate() {
        let d = u32::from(d);
        sum += if (count - i) & 1 == 0 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
    }
    matches!(sum % 10, 0)
}

fn is_card(text: &[u8], run: &Run) -> bool {
    if run.plus || !(13..=19).contains(&run.digits) {
        return false;
    }
    if run.n > 1 {
        let sep = run.seps[1];
        if sep == b'.' || sep == b'p' || run.seps[2..run.n].iter().any(|s| *s != sep) {
            return false;
        }
        if run.lens().any(|l| l < 3) {
            return false;
        }
    }
    let mut p = 0u32;
    for d in run.digit_iter(text).take(4) {
        p = p * 10 + u32::from(d);
    }
    let (p1, p2, p3) = (p / 1000, p / 100, p / 10);
    let n = run.digits;
    let prefix_ok = match p1 {
        4 => matches!(n, 13 | 16 | 19),
        _ => {
            ((51..=55).contains(&p2) || (2221..=2720).contains(&p)) && n == 16
                || (p2 == 34 || p2 == 37) && n == 15
                || (p == 6011 || p2 == 65 || (644..=649).contains(&p3) || p2 == 62 || p2 == 35)
                    && n >= 16
                || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && n >= 14
        }
    };
    prefix_ok && luhn(run.digit_iter(text), n)
}

fn is_phone(text: &[u8], run: &Run) -> bool {
    if run.plus {
        return (8..=15).contains(&run.digits)
            && text[run.start + 1] != b'0'
            && run.seps[1..run.n].iter().all(|s| *s != b'p')
            && run.lens().all(|l| l >= 1);
    }
    let nanp = |first: usize| {
        let area = run.group(text, first);
        let exch = run.group(text, first + 1);
        area[0] >= b'2' && exch[0] >= b'2'
    };
    if run.shape(&[3, 3, 4]) {
        let (a, b) = (run.seps[1], run.seps[2]);
        return nanp(0) && (a == b || (a == b'p' && matches!(b, b'-' | b' ')));
    }
    if run.shape(&[1, 3, 3, 4]) && run.group(text, 0) == b"1" {
        let s = &run.seps[1..4];
        return nanp(1) && s[0] != b'p' && s[1] == s[2];
    }
    false
}

/// Scans for IBANs: two capital letters, two check digits, 11–30 more
/// capitals/digits (optionally in space-separated groups), mod-97 valid.
pub fn scan_ibans(text: &[u8], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i + 4 <= text.len() {
        let ok = text[i].is_ascii_uppercase()
            && text[i + 1].is_ascii_uppercase()
            && text[i + 2].is_ascii_digit()
            && text[i + 3].is_ascii_digit()
            && (i == 0 || !word_byte(text[i - 1]));
        if !ok {
            i += 1;
            continue;
        }
        match iban_at(text, i) {
            Some(end) => {
                out.push(Finding {
                    kind: Kind::Iban,
                    start: i,
                    end,
                });
                i = end;
            }
            None => i += 1,
        }
    }
}

fn iban_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// End of a valid IBAN starting at `start`, trying the longest candidate
/// first (a candidate ends at a group boundary).
fn iban_at(text: &[u8], start: usize) -> Option<usize> {
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut ends: [(usize, usize); 34] = [(0, 0); 34];
    let mut ne = 0;
    let mut pos = start;
    while pos < text.len() && n < 34 {
        let b = text[pos];
        if iban_char(b) {
            chars[n] = b;
            n += 1;
            pos += 1;
            continue;
        }
        if b == b' ' && text.get(pos + 1).copied().is_some_and(iban_char) {
            ends[ne] = (pos, n);
            ne += 1;
            pos += 1;
            continue;
        }
        break;
    }
    if pos < text.len() && word_byte(text[pos]) {
        return None;
    }
    ends[ne] = (pos, n);
    ne += 1;
    ends[..ne]
        .iter()
        .rev()
        .find(|(_, len)| (15..=34).contains(len) && mod97(&chars[..*len]))
        .map(|(end, _)| *end)
}

fn mod97(iban: &[u8]) -> bool {
    let mut r = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    r == 1
}
