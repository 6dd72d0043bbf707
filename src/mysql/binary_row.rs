//! Binary-protocol result rows (the rows of COM_STMT_EXECUTE and
//! COM_STMT_FETCH replies): decoding a row into its values and re-encoding
//! it with some of them replaced.
//!
//! A binary row is `0x00`, a NULL bitmap of `(columns + 7 + 2) / 8` bytes
//! (bit `i + 2` set: column `i` is NULL), then the non-NULL values one after
//! another, each in its column type's encoding:
//!
//! * fixed width, little endian: TINY 1, SHORT/YEAR 2, LONG/INT24/FLOAT 4,
//!   LONGLONG/DOUBLE 8 bytes;
//! * date and time structs (DATE, DATETIME, TIMESTAMP, TIME and their
//!   `*2` forms): a length byte (0, 4, 7, 8, 11 or 12) and that many bytes;
//! * everything else (strings, BLOBs, DECIMAL, BIT, ENUM, SET, JSON,
//!   GEOMETRY): a length-encoded string.
//!
//! Only the row layout is known here; what to replace is the caller's
//! decision ([`rewrite`]). A replacement is either NULL (valid for every
//! type) or a string, which only a length-encoded column can hold: asking
//! for a string in any other column is an error, never a malformed row.
//! mysql_common can read binary rows only against its own column and
//! value types and cannot write them, hence this module.

use bytes::{BufMut, BytesMut};

use airlock_protocol::mysql::wire::{self, Reader};

/// How a column's values are laid out in a binary row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// This many bytes.
    Fixed(usize),
    /// A length byte, then that many bytes (date and time structs).
    Temporal,
    /// A length-encoded string.
    LenEnc,
}

/// The layout of a column type code (`enum_field_types`); `None` for codes
/// airlock does not know (the row cannot be walked safely).
pub fn layout(type_code: u8) -> Option<Layout> {
    Some(match type_code {
        1 => Layout::Fixed(1),                               // TINY
        2 | 13 => Layout::Fixed(2),                          // SHORT, YEAR
        3 | 4 | 9 => Layout::Fixed(4),                       // LONG, FLOAT, INT24
        5 | 8 => Layout::Fixed(8),                           // DOUBLE, LONGLONG
        6 => Layout::Fixed(0),                               // NULL
        7 | 10 | 11 | 12 | 14 | 17..=19 => Layout::Temporal, // dates and times
        0 | 15 | 16 | 242 | 245..=255 => Layout::LenEnc, // DECIMAL, VARCHAR, BIT, VECTOR, JSON.. GEOMETRY
        _ => return None,
    })
}

/// What to do with one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Keep,
    /// SQL NULL.
    Null,
    /// A new string value (length-encoded columns only).
    Text(Vec<u8>),
}

/// A row that does not match its column definitions, or a replacement the
/// column cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("malformed binary row from the server: {0}")]
    Malformed(&'static str),
    #[error("binary row column {0} has a type airlock does not know ({1})")]
    UnknownType(usize, u8),
    #[error("binary row column {0} cannot hold a string replacement")]
    NotText(usize),
}

fn bitmap_len(columns: usize) -> usize {
    (columns + 7 + 2) / 8
}

/// The values of a binary row: for each column `None` (NULL) or the value's
/// bytes (for length-encoded columns, without the length prefix; for date
/// and time structs, without the length byte).
pub fn values<'r>(row: &'r [u8], types: &[u8]) -> Result<Vec<Option<&'r [u8]>>, RowError> {
    let mut r = Reader::new(row);
    if r.u8() != Some(0) {
        return Err(RowError::Malformed("a binary row must start with 0x00"));
    }
    let bitmap = r
        .bytes(bitmap_len(types.len()))
        .ok_or(RowError::Malformed("truncated NULL bitmap"))?;
    let mut out = Vec::with_capacity(types.len());
    for (i, &t) in types.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            out.push(None);
            continue;
        }
        let v = match layout(t).ok_or(RowError::UnknownType(i, t))? {
            Layout::Fixed(n) => r.bytes(n),
            Layout::Temporal => r.u8().and_then(|n| r.bytes(usize::from(n))),
            Layout::LenEnc => r.lenenc_str(),
        }
        .ok_or(RowError::Malformed("a value runs past the end of the row"))?;
        out.push(Some(v));
    }
    if !r.is_empty() {
        return Err(RowError::Malformed("bytes left after the last value"));
    }
    Ok(out)
}

/// Rewrites a binary row. `decide` gets each column's index and value (as
/// [`values`] gives it). `Ok(None)` when every value is kept.
pub fn rewrite(
    row: &[u8],
    types: &[u8],
    mut decide: impl FnMut(usize, Option<&[u8]>) -> Change,
) -> Result<Option<Vec<u8>>, RowError> {
    let vals = values(row, types)?;
    let changes: Vec<Change> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            None => Change::Keep,
            Some(v) => decide(i, Some(v)),
        })
        .collect();
    if changes.iter().all(|c| *c == Change::Keep) {
        return Ok(None);
    }
    let n = bitmap_len(types.len());
    let mut bitmap = row[1..1 + n].to_vec();
    let mut out = BytesMut::with_capacity(row.len());
    for (i, ((v, c), &t)) in vals.iter().zip(&changes).zip(types).enumerate() {
        let Some(v) = v else { continue };
        let lay = layout(t).ok_or(RowError::UnknownType(i, t))?;
        match c {
            Change::Keep => match lay {
                Layout::Fixed(_) => out.put_slice(v),
                Layout::Temporal => {
                    out.put_u8(v.len() as u8);
                    out.put_slice(v);
                }
                Layout::LenEnc => wire::put_lenenc_str(&mut out, v),
            },
            Change::Null => {
                let bit = i + 2;
                bitmap[bit / 8] |= 1 << (bit % 8);
            }
            Change::Text(new) if lay == Layout::LenEnc => wire::put_lenenc_str(&mut out, new),
            Change::Text(_) => return Err(RowError::NotText(i)),
        }
    }
    let mut row_out = Vec::with_capacity(1 + n + out.len());
    row_out.push(0);
    row_out.extend_from_slice(&bitmap);
    row_out.extend_from_slice(&out);
    Ok(Some(row_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: u8 = 3;
    const VAR_STRING: u8 = 253;
    const DATETIME: u8 = 12;
    const DOUBLE: u8 = 5;
    const TINY: u8 = 1;

    /// id LONG, email VAR_STRING, born DATETIME, score DOUBLE, note VAR_STRING (NULL), flag TINY
    fn sample() -> (Vec<u8>, Vec<u8>) {
        let types = vec![LONG, VAR_STRING, DATETIME, DOUBLE, VAR_STRING, TINY];
        let mut row = vec![0u8];
        // 6 columns: a bitmap of (6 + 9) / 8 = 1 byte; column 4 NULL: bit 6.
        row.push(0b0100_0000);
        row.extend_from_slice(&7i32.to_le_bytes());
        row.push(9);
        row.extend_from_slice(b"a@ex.com!");
        row.extend_from_slice(&[7, 0xe8, 0x07, 1, 2, 3, 4, 5]);
        row.extend_from_slice(&1.5f64.to_le_bytes());
        row.push(1);
        (row, types)
    }

    #[test]
    fn decodes_every_layout() {
        let (row, types) = sample();
        let v = values(&row, &types).unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(v[0], Some(&7i32.to_le_bytes()[..]));
        assert_eq!(v[1], Some(&b"a@ex.com!"[..]));
        assert_eq!(v[2], Some(&[0xe8, 0x07, 1, 2, 3, 4, 5][..]));
        assert_eq!(v[3], Some(&1.5f64.to_le_bytes()[..]));
        assert_eq!(v[4], None);
        assert_eq!(v[5], Some(&[1][..]));
    }

    #[test]
    fn keeping_everything_changes_nothing() {
        let (row, types) = sample();
        assert_eq!(rewrite(&row, &types, |_, _| Change::Keep).unwrap(), None);
    }

    #[test]
    fn replaces_strings_and_nulls_fixed_values() {
        let (row, types) = sample();
        let out = rewrite(&row, &types, |i, _| match i {
            1 => Change::Text(b"****@ex.com".to_vec()),
            2 | 3 => Change::Null,
            _ => Change::Keep,
        })
        .unwrap()
        .unwrap();
        let v = values(&out, &types).unwrap();
        assert_eq!(v[0], Some(&7i32.to_le_bytes()[..]));
        assert_eq!(v[1], Some(&b"****@ex.com"[..]));
        assert_eq!((v[2], v[3], v[4]), (None, None, None));
        assert_eq!(v[5], Some(&[1][..]));
        // Bitmap: columns 2, 3, 4 NULL = bits 4, 5, 6.
        assert_eq!(out[1], 0b0111_0000);
    }

    #[test]
    fn long_replacements_get_longer_length_prefixes() {
        let types = [VAR_STRING];
        let row = [0, 0, 1, b'x'];
        let big = vec![b'*'; 300];
        let out = rewrite(&row, &types, |_, _| Change::Text(big.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(&out[..4], &[0, 0, 0xfc, 44]);
        assert_eq!(values(&out, &types).unwrap()[0], Some(&big[..]));
    }

    #[test]
    fn bitmap_spans_bytes() {
        // 7 columns: (7 + 9) / 8 = 2 bytes; the last column's bit is 8.
        let types = [TINY; 7];
        let mut row = vec![0, 0, 0b0000_0001];
        row.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let v = values(&row, &types).unwrap();
        assert_eq!(v[6], None);
        assert_eq!(v[5], Some(&[6][..]));
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        let (row, types) = sample();
        for cut in 0..row.len() {
            assert!(values(&row[..cut], &types).is_err(), "cut at {cut}");
        }
        let mut extra = row.clone();
        extra.push(0);
        assert!(values(&extra, &types).is_err());
        assert!(values(&[1, 0, 0], &[TINY]).is_err());
        assert_eq!(
            values(&[0, 0, 0], &[100]),
            Err(RowError::UnknownType(0, 100))
        );
        assert_eq!(
            rewrite(&[0, 0, 5], &[TINY], |_, _| Change::Text(b"x".to_vec())),
            Err(RowError::NotText(0))
        );
        // A 0xfb (NULL marker) where a length belongs.
        assert!(values(&[0, 0, 0xfb], &[VAR_STRING]).is_err());
    }
}
