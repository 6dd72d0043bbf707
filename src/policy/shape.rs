//! Literal-insensitive statement shapes, so that the decision and masking
//! caches can serve `... WHERE aid = 17` from the analysis of
//! `... WHERE aid = 42` instead of parsing every simple-protocol query.
//!
//! [`of`] copies the text byte for byte except that each unsigned decimal
//! number it is *sure* is a numeric literal becomes one marker byte (NUL).
//! It is deliberately timid: it gives up (returns `None`, and callers fall
//! back to keying by the exact text) on anything whose lexing it could get
//! wrong or that differs between Postgres and MySQL:
//!
//! - bytes outside printable ASCII plus tab/CR/LF (so no NUL, which is the
//!   marker, and no multi-byte encodings whose trailing bytes can look like
//!   quotes or backslashes);
//! - backslashes, double quotes, backticks, `$` (dollar quoting and `$1`
//!   parameters), `@` (MySQL variables), `#`, `--` and `/*` (comments and
//!   executable comments);
//! - a quote directly after an identifier character (`E'..'`, `N'..'`,
//!   `X'..'`, `_utf8'..'`) and an unterminated string.
//!
//! Strings (`'...'` with `''` escapes) are copied verbatim, so string
//! literals still distinguish shapes: only numbers are abstracted. A digit
//! run counts as a literal only when it starts a token (after whitespace
//! or an operator, not after an identifier character, `.` or `:`) and
//! ends one (before whitespace, `)`, `,`, `;` or an operator, not before
//! an identifier character, `.`, `:` or an exponent). `12abc` (a MySQL
//! identifier), `t.1`, `1e5`, `0x1F`, `1_000` and `5::int` are therefore
//! copied verbatim.
//!
//! A shape only says two texts differ in numeric literal values. Whether a
//! decision may be shared between them is the caller's call: the policy
//! engine shares only decisions that never looked at a literal's value
//! (see [`super::facts::Facts::literal_sensitive`]).

/// The byte that stands for one numeric literal in a shape.
pub const MARKER: u8 = 0;

/// A statement's shape, worked out once per statement and handed to each
/// cache that keys by it (the decision cache and masking's plan cache). It
/// borrows the text it was computed from, and [`Shape::text_for`] answers
/// only for that very text, so a shape can never key another statement.
#[derive(Debug)]
pub struct Shape<'a> {
    sql: &'a [u8],
    text: Option<Vec<u8>>,
}

impl<'a> Shape<'a> {
    /// The shape of `sql` (see [`of`]), written into this thread's spare
    /// buffer ([`SPARE`]) rather than a new allocation.
    pub fn of(sql: &'a [u8]) -> Self {
        let mut buf = SPARE.take();
        let text = if of_into(sql, &mut buf) {
            Some(buf)
        } else {
            keep_spare(buf);
            None
        };
        Shape { sql, text }
    }

    /// No shape: caches key `sql` by its exact text.
    pub fn none(sql: &'a [u8]) -> Self {
        Shape { sql, text: None }
    }

    /// The shape, if `sql` is the text this was computed from (the same
    /// slice, not merely equal bytes) and it has one.
    pub fn text_for(&self, sql: &[u8]) -> Option<&[u8]> {
        if std::ptr::eq(sql, self.sql) {
            self.text.as_deref()
        } else {
            None
        }
    }
}

impl Drop for Shape<'_> {
    fn drop(&mut self) {
        if let Some(buf) = self.text.take() {
            keep_spare(buf);
        }
    }
}

thread_local! {
    /// A buffer for the next [`Shape::of`] on this thread, handed back when
    /// the shape is dropped. A statement's shape lives only while it is
    /// judged, so one buffer per thread serves every session on it: the
    /// judgement of a simple-protocol query then allocates nothing (a
    /// malloc and a free were about 150 of the ~7.7k instructions airlock
    /// spends on a `pgbench -S` round trip).
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Buffers larger than this are let go rather than kept as the spare, so
/// one huge statement does not pin its size to the thread.
const SPARE_MAX: usize = 16 * 1024;

fn keep_spare(buf: Vec<u8>) {
    if buf.capacity() <= SPARE_MAX {
        SPARE.set(buf);
    }
}

/// The shape of `sql`, when it holds at least one numeric literal and the
/// scanner is sure of its lexing; `None` otherwise.
pub fn of(sql: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    of_into(sql, &mut out).then_some(out)
}

/// [`of`] into `out` (cleared first): whether `sql` has a shape, which is
/// then `out`'s contents.
fn of_into(sql: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(sql.len());
    let mut literals = 0usize;
    // Start of the run of bytes not yet copied to `out`.
    let mut run = 0;
    let mut i = 0;
    loop {
        i = super::plain_scan::skip_plain(sql, i);
        let Some(&b) = sql.get(i) else { break };
        match b {
            b'\'' => {
                if i > 0 && is_ident(sql[i - 1]) {
                    return false;
                }
                let Some(end) = string_end(sql, i) else {
                    return false;
                };
                i = end;
            }
            b'0'..=b'9' => {
                let end = number_end(sql, i);
                if starts_token(sql, i) && ends_token(sql, end) {
                    out.extend_from_slice(&sql[run..i]);
                    out.push(MARKER);
                    literals += 1;
                    run = end;
                }
                i = end;
            }
            b'-' if sql.get(i + 1) == Some(&b'-') => return false,
            b'/' if sql.get(i + 1) == Some(&b'*') => return false,
            b'-' | b'/' => i += 1,
            _ => return false,
        }
    }
    if literals == 0 {
        return false;
    }
    out.extend_from_slice(&sql[run..]);
    true
}

/// Letters, digits, `_` and `$`: characters that continue an identifier in
/// either dialect.
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// [`fits_at`], with the markers worked out here (tests).
#[cfg(test)]
pub fn fits(shape: &[u8], sql: &[u8]) -> bool {
    fits_at(shape, &markers(shape), sql)
}

/// Where the markers are in `shape` (worked out once, for [`fits_at`]).
/// Empty when `shape` is longer than a `u16` can index: such a shape
/// never fits anything.
pub fn markers(shape: &[u8]) -> Box<[u16]> {
    if shape.len() > usize::from(u16::MAX) {
        return Box::default();
    }
    shape
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == MARKER)
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect()
}

/// Whether `sql`'s shape ([`of`]) is `shape`, a shape [`of`] gave for
/// another text, decided without scanning `sql` afresh: `sql` must be
/// `shape` with each marker replaced by one numeric literal as [`of`]
/// reads them (digits, and one `.digits` fraction). The bytes between the
/// markers are the other text's own, in which [`of`] found nothing it
/// doubted, and a literal is followed by a byte that ends a token and
/// preceded by one that starts a token (both there, unchanged): so [`of`]
/// lexes `sql` exactly as it lexed that text, literal for literal.
/// A memo hit for a simple-protocol query with other numbers in it costs
/// a comparison instead of a scan (about 400 of the ~7.6k instructions
/// airlock spends on a `pgbench -S` round trip).
/// `markers` are those of `shape` ([`markers`]), kept with it.
pub fn fits_at(shape: &[u8], markers: &[u16], sql: &[u8]) -> bool {
    if markers.is_empty() {
        return false;
    }
    let mut from = 0usize; // start of the next segment of `shape`
    let mut at = 0usize; // where that segment must be in `sql`
    for &m in markers {
        let m = usize::from(m);
        let Some(segment) = shape.get(from..m) else {
            return false;
        };
        if sql.get(at..at + segment.len()) != Some(segment) {
            return false;
        }
        at += segment.len();
        if !sql.get(at).is_some_and(u8::is_ascii_digit) {
            return false;
        }
        at = number_end(sql, at);
        from = m + 1;
    }
    shape.get(from..) == sql.get(at..)
}

fn starts_token(sql: &[u8], i: usize) -> bool {
    match i.checked_sub(1).map(|p| sql[p]) {
        None => true,
        Some(p) => matches!(
            p,
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b'('
                | b','
                | b'='
                | b'<'
                | b'>'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'['
                | b'|'
        ),
    }
}

fn ends_token(sql: &[u8], end: usize) -> bool {
    match sql.get(end) {
        None => true,
        Some(n) => matches!(
            n,
            b' ' | b'\t'
                | b'\n'
                | b'\r'
                | b')'
                | b','
                | b';'
                | b'='
                | b'<'
                | b'>'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b']'
                | b'|'
        ),
    }
}

/// End of a digit run, with one `.digits` fraction if present.
fn number_end(sql: &[u8], start: usize) -> usize {
    let digits = |mut j: usize| {
        while sql.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let end = digits(start);
    if sql.get(end) == Some(&b'.') && sql.get(end + 1).is_some_and(u8::is_ascii_digit) {
        digits(end + 1)
    } else {
        end
    }
}

/// End (exclusive) of the string starting at the quote at `start`; `''`
/// is an escaped quote. `None` when unterminated.
fn string_end(sql: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        match sql.get(j)? {
            b'\'' if sql.get(j + 1) == Some(&b'\'') => j += 2,
            b'\'' => return Some(j + 1),
            b'\\' => return None,
            b if *b == b'\t' || *b == b'\n' || *b == b'\r' || (0x20..=0x7e).contains(b) => j += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sql: &str) -> Option<String> {
        of(sql.as_bytes()).map(|v| String::from_utf8_lossy(&v).replace('\0', "?"))
    }

    #[test]
    fn a_shape_answers_only_for_its_own_text() {
        let a = b"SELECT * FROM t WHERE id = 1".to_vec();
        let b = a.clone();
        let shape = Shape::of(&a);
        assert!(shape.text_for(&a).is_some());
        // Equal bytes elsewhere, a prefix of it, or another statement: no
        // shape, so a cache falls back to the exact text.
        assert!(shape.text_for(&b).is_none());
        assert!(shape.text_for(&a[..10]).is_none());
        assert!(Shape::none(&a).text_for(&a).is_none());
    }

    #[test]
    fn shapes_reusing_the_spare_buffer_carry_nothing_over() {
        let texts = [
            "SELECT * FROM a_rather_long_table_name WHERE id = 123456 AND k = 'x'",
            "SELECT 1",
            "SELECT * FROM t WHERE id = 'no numbers here'",
            "UPDATE t SET v = 7 WHERE id = 8",
            "SELECT E'1'",
            "SELECT 2",
        ];
        // Each shape dropped before the next is made (the buffer goes back
        // and is reused), and several alive at once (each its own buffer).
        for t in texts {
            let shape = Shape::of(t.as_bytes());
            assert_eq!(
                shape.text_for(t.as_bytes()),
                of(t.as_bytes()).as_deref(),
                "{t}"
            );
        }
        let alive: Vec<_> = texts.iter().map(|t| Shape::of(t.as_bytes())).collect();
        for (t, shape) in texts.iter().zip(&alive) {
            assert_eq!(
                shape.text_for(t.as_bytes()),
                of(t.as_bytes()).as_deref(),
                "{t}"
            );
        }
    }

    #[test]
    fn abstracts_numeric_literals() {
        assert_eq!(
            s("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = ?;")
        );
        assert_eq!(
            s("UPDATE t SET v = v + 12.5 WHERE id IN (1,2, 3)").as_deref(),
            Some("UPDATE t SET v = v + ? WHERE id IN (?,?, ?)")
        );
        assert_eq!(
            s("SELECT c FROM t WHERE k=-7").as_deref(),
            Some("SELECT c FROM t WHERE k=-?")
        );
    }

    #[test]
    fn texts_differing_only_in_numbers_share_a_shape() {
        assert_eq!(
            s("SELECT 1 FROM t WHERE a = 2"),
            s("SELECT 99 FROM t WHERE a = 100000")
        );
        assert_ne!(
            s("SELECT 1 FROM t1 WHERE a = 2"),
            s("SELECT 1 FROM t2 WHERE a = 2")
        );
        assert_ne!(
            s("SELECT 1 FROM t WHERE a = 'x'"),
            s("SELECT 1 FROM t WHERE a = 'y'")
        );
    }

    #[test]
    fn keeps_digits_that_are_not_literals() {
        // Identifiers, qualified names, exponents, hex, casts.
        assert_eq!(s("SELECT c1 FROM t2"), None);
        assert_eq!(s("SELECT 12abc FROM t"), None);
        assert_eq!(s("SELECT t.1 FROM t"), None);
        assert_eq!(s("SELECT 1e5"), None);
        assert_eq!(s("SELECT 0x1F"), None);
        assert_eq!(s("SELECT 1_000"), None);
        assert_eq!(s("SELECT 5::regclass"), None);
        assert_eq!(s("SELECT '1 and 2' FROM t"), None);
    }

    #[test]
    fn gives_up_on_what_it_cannot_lex_for_sure() {
        for sql in [
            "SELECT 1 -- c",
            "SELECT 1 /* c */",
            "SELECT /*!50000 1 */",
            "SELECT 1 # c",
            "SELECT \"a1\", 1",
            "SELECT `a`, 1",
            "SELECT $1, 1",
            "SELECT $$x$$, 1",
            "SELECT @x := 1",
            "SELECT E'\\'', 1",
            "SELECT 'a\\' 1 '",
            "SELECT N'x', 1",
            "SELECT 'unterminated, 1",
            "SELECT 'é', 1",
            "SELECT 1\0",
        ] {
            assert_eq!(s(sql), None, "{sql}");
        }
    }

    /// The scan as it was written first, byte by byte (stopping at every
    /// digit): the chunked scan that skips digits inside names must give
    /// the same shapes.
    fn of_bytewise(sql: &[u8]) -> Option<Vec<u8>> {
        let plain = super::super::plain_scan::is_plain;
        let mut out = Vec::new();
        let mut literals = 0;
        let mut run = 0;
        let mut i = 0;
        loop {
            while sql.get(i).is_some_and(|&b| plain(b)) {
                i += 1;
            }
            let Some(&b) = sql.get(i) else { break };
            match b {
                b'\'' => {
                    if i > 0 && is_ident(sql[i - 1]) {
                        return None;
                    }
                    i = string_end(sql, i)?;
                }
                b'0'..=b'9' => {
                    let end = number_end(sql, i);
                    if starts_token(sql, i) && ends_token(sql, end) {
                        out.extend_from_slice(&sql[run..i]);
                        out.push(MARKER);
                        literals += 1;
                        run = end;
                    }
                    i = end;
                }
                b'-' if sql.get(i + 1) == Some(&b'-') => return None,
                b'/' if sql.get(i + 1) == Some(&b'*') => return None,
                b'-' | b'/' => i += 1,
                _ => return None,
            }
        }
        if literals == 0 {
            return None;
        }
        out.extend_from_slice(&sql[run..]);
        Some(out)
    }

    #[test]
    fn the_chunked_scan_agrees_with_the_bytewise_one() {
        let alphabet: &[&[u8]] = &[
            b"a", b"x1", b"_", b"0", b"7", b"12", b".", b"e", b" ", b"(", b")", b",", b"=", b"-",
            b"/", b"*", b"'", b"''", b"::", b"$", b"\"", b"\t", b"\xc3", b"SELECT ", b"col12",
            b"1.5", b"t.1", b"-- ", b"/*",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut shaped = 0;
        for _ in 0..20_000 {
            let mut text = Vec::new();
            for _ in 0..next(40) {
                text.extend_from_slice(alphabet[next(alphabet.len())]);
            }
            let want = of_bytewise(&text);
            shaped += usize::from(want.is_some());
            assert_eq!(of(&text), want, "{:?}", String::from_utf8_lossy(&text));
        }
        assert!(shaped > 200, "too few texts had a shape ({shaped})");
    }

    /// [`fits`] answers as comparing [`of`]'s result would, for texts made
    /// from shapeable statements by changing their literals and by
    /// inserting, deleting or replacing bytes anywhere (near literals:
    /// fractions, exponents, signs, identifiers, quotes, comments).
    #[test]
    fn fits_agrees_with_working_the_shape_out() {
        let bases: &[&[u8]] = &[
            b"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
            b"UPDATE t SET a = a + 5 WHERE id = 7",
            b"SELECT 1",
            b"select * from t where a in (1, 22, 333) and b = 'x1' and c = 4.5",
            b"INSERT INTO h VALUES (1,2,3,'a''b',4)",
            b"SELECT x FROM t LIMIT 10 OFFSET 20",
            b"SELECT a-1, b/2, c*3, d%4, e|5 FROM t WHERE f<6 AND g>7",
        ];
        let pieces: &[&[u8]] = &[
            b"0",
            b"9",
            b"42",
            b"1.5",
            b".5",
            b"5.",
            b"1e5",
            b"0x1F",
            b"12abc",
            b"",
            b"-1",
            b"1 2",
            b"'",
            b"''",
            b"\"",
            b"--",
            b"/*",
            b"$1",
            b"@",
            b"#",
            b"\0",
            b"\xc3\xa9",
            b".",
            b"e",
            b"_",
            b" ",
            b")",
            b",",
            b";",
            b"a",
            b"::int",
            b"\\",
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut checked = 0;
        for base in bases {
            let shape = of(base).expect("every base has a shape");
            for _ in 0..4000 {
                let mut text = base.to_vec();
                for _ in 0..1 + next(3) {
                    let at = next(text.len() + 1);
                    let cut = next(3).min(text.len() - at);
                    let piece = pieces[next(pieces.len())];
                    text.splice(at..at + cut, piece.iter().copied());
                }
                assert_eq!(
                    fits(&shape, &text),
                    of(&text).as_deref() == Some(&shape[..]),
                    "{:?} against the shape of {:?}",
                    String::from_utf8_lossy(&text),
                    String::from_utf8_lossy(base)
                );
                checked += usize::from(fits(&shape, &text));
            }
            // Other literals in the same places fit.
            let other: Vec<u8> = String::from_utf8_lossy(base)
                .split(|c: char| c.is_ascii_digit())
                .collect::<Vec<_>>()
                .join("8")
                .into_bytes();
            if of(&other).as_deref() == Some(&shape[..]) {
                assert!(fits(&shape, &other));
            }
        }
        assert!(
            checked > 100,
            "too few variants fit ({checked}): the test checks little"
        );
    }

    #[test]
    fn no_literal_no_shape() {
        assert_eq!(s("SELECT a FROM t WHERE b = 'x'"), None);
    }
}
