//! Masking costs: detectors over 1 MB of clean and of PII-laden text, one
//! masked value per strategy, and a plan-cache hit.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use airlock::masking::detect::{scan, scrub, DetectorSet};
use airlock::masking::{load_masking, ColumnMask, Masker, MemoryCatalog, Strategy};
use airlock::policy::parse::Limits;
use airlock::policy::{Dialect, Principal, SessionContext};

fn text(pii: bool) -> Vec<u8> {
    let line: &[u8] = if pii {
        b"order 1234 for bob@example.com paid with 4111 1111 1111 1111, call 415-555-2671 ok\n"
    } else {
        b"order 1234 shipped to the warehouse on 2024-01-15; status: delivered, ref ABC-998\n"
    };
    line.iter().copied().cycle().take(1 << 20).collect()
}

fn detectors(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Bytes(1 << 20));
    let clean = text(false);
    let dirty = text(true);
    g.bench_function("scan_clean_1MiB", |b| {
        b.iter(|| scan(black_box(&clean), DetectorSet::ALL))
    });
    g.bench_function("scrub_pii_1MiB", |b| {
        b.iter(|| scrub(black_box(&dirty), DetectorSet::ALL))
    });
    g.finish();
    let short = b"Jane Doe, 12 Main Street";
    c.bench_function("detect/scrub_short_clean_value", |b| {
        b.iter(|| scrub(black_box(short), DetectorSet::ALL))
    });
}

fn values(c: &mut Criterion) {
    let rules = load_masking(&[(
        Path::new("r.toml"),
        "[[mask]]\nid = \"e\"\ncolumns = [\"*.email\"]\nstrategy = \"email\"\n",
    )])
    .expect("rules");
    let m = Masker::new(rules, Some(b"k"), Limits::default());
    for s in [
        Strategy::Redact,
        Strategy::Partial {
            keep_first: 0,
            keep_last: 4,
        },
        Strategy::Hash,
        Strategy::Email,
        Strategy::Fake,
    ] {
        let mask = ColumnMask::Mask {
            rule: "e".into(),
            strategy: s,
        };
        c.bench_function(&format!("mask_value/{s}"), |b| {
            b.iter(|| {
                m.apply(
                    &mask,
                    Some(black_box(b"alice.smith@example.com")),
                    true,
                    DetectorSet::NONE,
                )
            })
        });
    }
    let cat = MemoryCatalog::new().table("public", "customers", &["id", "name", "email"]);
    let who = Principal::default();
    let ctx = SessionContext {
        search_path: vec!["public".into()],
        ..SessionContext::default()
    };
    let sql = "select c.id, lower(c.email) from customers c where c.id = $1";
    c.bench_function("plan/cache_hit", |b| {
        b.iter(|| m.plan(&who, Dialect::Postgres, black_box(sql), &ctx, &cat))
    });
    let mut n = 0u64;
    c.bench_function("plan/miss", |b| {
        b.iter(|| {
            n += 1;
            let q = format!("{sql} and {n} = {n}");
            m.plan(&who, Dialect::Postgres, &q, &ctx, &cat)
        })
    });
}

criterion_group!(benches, detectors, values);
criterion_main!(benches);
