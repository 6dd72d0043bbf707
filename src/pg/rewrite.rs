//! Rebuilding a DataRow with some values replaced.
//!
//! Only rows of results that have a masked column come here; every other
//! DataRow is forwarded as the bytes it came as. The row is walked once;
//! untouched values are copied as they are, replaced ones are written with
//! their new length (or -1 for NULL).

use bytes::{BufMut, Bytes, BytesMut};

use airlock_protocol::pg::frame::encode;

/// What to do with one value.
pub enum Change {
    Keep,
    /// The new value; `None` is SQL NULL.
    Set(Option<Vec<u8>>),
}

/// Rewrites a DataRow body. `decide` gets each column's index and value
/// (`None` for NULL). Returns the whole new message, or `None` when every
/// value was kept or the row is malformed (then it is forwarded as it came,
/// which is safe only because the caller drops malformed rows itself).
pub fn rewrite_data_row(
    body: &[u8],
    mut decide: impl FnMut(usize, Option<&[u8]>) -> Change,
) -> Result<Option<Bytes>, Malformed> {
    let n = body
        .get(..2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or(Malformed)?;
    let mut pos = 2usize;
    let mut values: Vec<(Option<&[u8]>, Change)> = Vec::with_capacity(n.max(0) as usize);
    let mut changed = false;
    for i in 0..n.max(0) as usize {
        let len = body
            .get(pos..pos + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(Malformed)?;
        pos += 4;
        let value = if len < 0 {
            None
        } else {
            let end = pos.checked_add(len as usize).ok_or(Malformed)?;
            let v = body.get(pos..end).ok_or(Malformed)?;
            pos = end;
            Some(v)
        };
        let change = decide(i, value);
        changed |= matches!(change, Change::Set(_));
        values.push((value, change));
    }
    if pos != body.len() {
        return Err(Malformed);
    }
    if !changed {
        return Ok(None);
    }
    let mut out = BytesMut::with_capacity(body.len() + 5);
    encode(b'D', &mut out, |b| {
        b.put_i16(n);
        for (value, change) in &values {
            let v = match change {
                Change::Keep => *value,
                Change::Set(v) => v.as_deref(),
            };
            match v {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
    });
    Ok(Some(out.freeze()))
}

/// A DataRow whose lengths do not add up.
#[derive(Debug, thiserror::Error)]
#[error("malformed DataRow from the server")]
pub struct Malformed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_what_it_is_told() {
        let body = b"\x00\x03\x00\x00\x00\x01a\xff\xff\xff\xff\x00\x00\x00\x02bc";
        assert!(rewrite_data_row(body, |_, _| Change::Keep)
            .unwrap()
            .is_none());
        let out = rewrite_data_row(body, |i, _| {
            if i == 2 {
                Change::Set(Some(b"XYZ".to_vec()))
            } else {
                Change::Keep
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            &out[5..],
            b"\x00\x03\x00\x00\x00\x01a\xff\xff\xff\xff\x00\x00\x00\x03XYZ"
        );
        assert!(rewrite_data_row(b"\x00\x01\x00\x00\x00\x09ab", |_, _| Change::Keep).is_err());
    }
}
