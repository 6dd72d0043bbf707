//! The inner loop of the shape scanner ([`super::shape`]): how far a
//! statement goes on in bytes the scanner copies without a second look.
//!
//! A byte *passes* when it is plain (printable ASCII, tab, CR or LF, but
//! not a quote, digit, `\`, `$`, `@`, `#`, `-` or `/`), or when it is a
//! digit right after a letter, digit or `_`: such a digit continues a name
//! or a number (`f12`, `x1e5`, `123`) and never starts a literal, so the
//! scanner has nothing to decide there. [`skip_plain`] finds the first
//! byte that does not pass.
//!
//! Most of a statement passes, so this is where a cached decision on a
//! long statement spends its time. [`skip_plain`] takes sixteen bytes at a
//! time with SSE2 on x86-64 (every x86-64 CPU has it) and eight at a time
//! through a class table elsewhere; both are checked against `passes`
//! byte by byte in the tests, including bytes above 0x7f, which SSE2
//! compares as negative numbers.

/// [`CLASS`] bit: the byte is plain.
const PLAIN_BIT: u8 = 1;
/// [`CLASS`] bit: an ASCII digit.
const DIGIT_BIT: u8 = 2;
/// [`CLASS`] bit: a letter, digit or `_`, after which a digit passes.
const WORD_BIT: u8 = 4;

/// Each byte's class: [`PLAIN_BIT`], [`DIGIT_BIT`] and [`WORD_BIT`] as
/// the module documentation defines them.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if (c >= 0x20 && c <= 0x7e) || c == b'\t' || c == b'\n' || c == b'\r' {
            t[b] = PLAIN_BIT;
        }
        if c.is_ascii_alphanumeric() || c == b'_' {
            t[b] |= WORD_BIT;
        }
        if c.is_ascii_digit() {
            t[b] = DIGIT_BIT | WORD_BIT;
        }
        b += 1;
    }
    let special = b"'\"`\\$@#-/";
    let mut k = 0;
    while k < special.len() {
        t[special[k] as usize] = 0;
        k += 1;
    }
    t
};

/// Whether byte `b` passes after byte `prev` (see the module
/// documentation). At the start of a text, `prev` is a space. (The
/// reference the scans are tested against.)
#[cfg(test)]
pub fn passes(prev: u8, b: u8) -> bool {
    pass_bit(CLASS[prev as usize], CLASS[b as usize]) == 1
}

/// Whether `b` is plain: it passes whatever comes before it.
#[cfg(test)]
pub fn is_plain(b: u8) -> bool {
    CLASS[b as usize] & PLAIN_BIT != 0
}

/// 1 when a byte of class `c` after one of class `prev` passes, else 0.
#[inline(always)]
fn pass_bit(prev: u8, c: u8) -> u8 {
    (c | ((c >> 1) & (prev >> 2))) & 1
}

/// The lowest bit of each of a word's eight bytes.
const EVERY_BYTE: u64 = 0x0101_0101_0101_0101;

/// The first byte at or after `i` that does not pass, or the length.
#[inline]
pub fn skip_plain(sql: &[u8], mut i: usize) -> usize {
    let mut prev = match i.checked_sub(1).and_then(|p| sql.get(p)) {
        Some(&b) => b,
        None => b' ',
    };
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = sql.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        // SAFETY: SSE2 is part of x86-64 itself: every CPU this code can
        // run on has it. (The intrinsics touch no memory.)
        let n = unsafe { sse2::passing(chunk, prev) };
        if n < 16 {
            return i + n as usize;
        }
        prev = chunk[15];
        i += 16;
    }
    skip_plain_portable(sql, i, prev)
}

/// [`skip_plain`] without SSE2: eight bytes at a time while whole chunks
/// pass (their classes side by side in one word, and their predecessors'
/// beside them, so one test covers the chunk), then byte by byte.
fn skip_plain_portable(sql: &[u8], mut i: usize, prev: u8) -> usize {
    let mut prev = CLASS[prev as usize];
    while let Some(chunk) = sql.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let class = |k: usize| u64::from(CLASS[chunk[k] as usize]) << (8 * k);
        let classes =
            class(0) | class(1) | class(2) | class(3) | class(4) | class(5) | class(6) | class(7);
        let before = (classes << 8) | u64::from(prev);
        // The bits shifted across byte boundaries land above each byte's
        // lowest bit and are masked off.
        let pass = (classes | ((classes >> 1) & (before >> 2))) & EVERY_BYTE;
        if pass != EVERY_BYTE {
            break;
        }
        prev = classes.to_le_bytes()[7];
        i += 8;
    }
    while let Some(&b) = sql.get(i) {
        let c = CLASS[b as usize];
        if pass_bit(prev, c) == 0 {
            break;
        }
        prev = c;
        i += 1;
    }
    i
}

/// Sixteen bytes at a time. Every x86-64 CPU has SSE2, so these
/// intrinsics need no runtime check; the one `unsafe` is the call into
/// them, which Rust requires of a `target_feature` function. They touch
/// no memory: the chunk is loaded from two integers, not through a
/// pointer.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_cmplt_epi8,
        _mm_cvtsi32_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
        _mm_slli_si128,
    };

    #[target_feature(enable = "sse2")]
    fn splat(b: u8) -> __m128i {
        _mm_set1_epi8(b as i8)
    }

    #[target_feature(enable = "sse2")]
    fn eq(x: __m128i, b: u8) -> __m128i {
        _mm_cmpeq_epi8(x, splat(b))
    }

    /// Bytes in `lo..=hi`, both in `1..0x7f`. The comparison is signed,
    /// so bytes above 0x7f (negative) are below `lo` and never in range.
    #[target_feature(enable = "sse2")]
    fn within(x: __m128i, lo: u8, hi: u8) -> __m128i {
        _mm_and_si128(
            _mm_cmpgt_epi8(x, splat(lo - 1)),
            _mm_cmplt_epi8(x, splat(hi + 1)),
        )
    }

    #[target_feature(enable = "sse2")]
    fn or(a: __m128i, b: __m128i) -> __m128i {
        _mm_or_si128(a, b)
    }

    /// How many bytes of `chunk` pass, counted from its first up to the
    /// first that does not (16 when all do); `prev` is the byte before
    /// the chunk.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub fn passing(chunk: &[u8; 16], prev: u8) -> u32 {
        let word = u128::from_le_bytes(*chunk);
        let v = _mm_set_epi64x((word >> 64) as u64 as i64, word as u64 as i64);
        // Each byte's predecessor: the chunk moved up one byte, `prev`
        // in the first place.
        let p = or(_mm_slli_si128::<1>(v), _mm_cvtsi32_si128(i32::from(prev)));
        let printable = or(
            or(within(v, 0x20, 0x7e), eq(v, b'\t')),
            or(eq(v, b'\n'), eq(v, b'\r')),
        );
        let digit = within(v, b'0', b'9');
        let special = or(
            or(or(digit, eq(v, b'\'')), or(eq(v, b'"'), eq(v, b'`'))),
            or(
                or(eq(v, b'\\'), eq(v, b'$')),
                or(or(eq(v, b'@'), eq(v, b'#')), or(eq(v, b'-'), eq(v, b'/'))),
            ),
        );
        let plain = _mm_andnot_si128(special, printable);
        let after_word = or(
            or(within(p, b'0', b'9'), eq(p, b'_')),
            or(within(p, b'A', b'Z'), within(p, b'a', b'z')),
        );
        let pass = or(plain, _mm_and_si128(digit, after_word));
        let mask = _mm_movemask_epi8(pass) as u32;
        (!mask | 0x1_0000).trailing_zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: [`passes`], byte by byte.
    fn naive(sql: &[u8], i: usize) -> usize {
        (i..sql.len())
            .find(|&k| {
                let prev = k.checked_sub(1).map_or(b' ', |p| sql[p]);
                !passes(prev, sql[k])
            })
            .unwrap_or(sql.len().max(i))
    }

    #[test]
    fn the_classes_say_what_the_documentation_says() {
        for b in 0..=255u8 {
            let printable = (0x20..=0x7e).contains(&b) || b"\t\n\r".contains(&b);
            let special = b"'\"`\\$@#-/".contains(&b) || b.is_ascii_digit();
            assert_eq!(is_plain(b), printable && !special, "{b:#x}");
            for prev in [b'a', b'Z', b'_', b'0', b'9', b' ', b'.', b'$', 0x80, 0xff] {
                let word = prev.is_ascii_alphanumeric() || prev == b'_';
                assert_eq!(
                    passes(prev, b),
                    is_plain(b) || (b.is_ascii_digit() && word),
                    "{prev:#x} {b:#x}"
                );
            }
        }
    }

    #[test]
    fn a_special_byte_stops_the_scan_wherever_it_is() {
        // Every position of a stopping byte (a quote; a digit, which stops
        // after a space but not after a letter) relative to the chunks,
        // from every start, in both implementations.
        for (filler, special) in [
            (b'a', b'\''),
            (b' ', b'\''),
            (b' ', b'7'),
            (b'a', b'7'),
            (b'_', b'7'),
            (b'(', b'7'),
            (b'a', 0x80),
            (b'a', 0xff),
            (b'a', 0x7f),
            (b'a', 0),
        ] {
            for len in 0..40 {
                for at in 0..=len {
                    let mut text = vec![filler; len];
                    if at < len {
                        text[at] = special;
                    }
                    for start in 0..=len {
                        let want = naive(&text, start);
                        assert_eq!(skip_plain(&text, start), want, "{text:?} from {start}");
                        let prev = start.checked_sub(1).map_or(b' ', |p| text[p]);
                        assert_eq!(
                            skip_plain_portable(&text, start, prev),
                            want,
                            "{text:?} from {start}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn both_scans_agree_with_the_byte_rule_on_any_bytes() {
        let mut seed = 0x853C_49E6_748F_EA9Bu64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Mostly passing bytes, so that runs are long, with any byte at
        // all now and then.
        let common = b"abcXYZ_ 09(),.=*:;\t\n";
        for _ in 0..20_000 {
            let len = (next() % 70) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 8 == 0 {
                        (r >> 8) as u8
                    } else {
                        common[(r >> 8) as usize % common.len()]
                    }
                })
                .collect();
            let start = (next() % (len as u64 + 1)) as usize;
            let want = naive(&text, start);
            assert_eq!(skip_plain(&text, start), want, "{text:?} from {start}");
            let prev = start.checked_sub(1).map_or(b' ', |p| text[p]);
            assert_eq!(skip_plain_portable(&text, start, prev), want);
        }
    }
}
