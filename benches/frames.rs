//! Frame throughput: how fast the relay walks and forwards DataRows that
//! policy passes through unchanged (issue 8 reports MB/s from this).
//!
//! It walks frame headers exactly as the relay's `process` does for a run of
//! passed-through frames, so it measures airlock's per-message cost without
//! the network or the socket writes.

use std::hint::black_box;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use airlock_protocol::pg::frame::{encode, peek_header};

/// A result set of `rows` DataRows with two text columns of `width` bytes.
fn result_set(rows: usize, width: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    let value = vec![b'x'; width];
    for _ in 0..rows {
        encode(b'D', &mut buf, |b| {
            b.put_i16(2);
            for _ in 0..2 {
                b.put_i32(width as i32);
                b.put_slice(&value);
            }
        });
    }
    buf
}

fn walk(buf: &[u8]) -> usize {
    let mut pos = 0;
    let mut frames = 0;
    while let Ok(Some(h)) = peek_header(&buf[pos..], usize::MAX) {
        if buf.len() - pos < h.total_len {
            break;
        }
        pos += h.total_len;
        frames += 1;
    }
    frames
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frames");
    for (rows, width) in [(10_000, 16), (1_000, 512)] {
        let data = result_set(rows, width);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("walk_datarows_{width}B"), |b| {
            b.iter(|| black_box(walk(black_box(&data))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
