//! Masking through the public API: rule files from testdata, and a rough
//! timing smoke check of the detectors (run with `--ignored --nocapture`).

use std::path::Path;
use std::time::Instant;

use airlock::masking::detect::{scan, DetectorSet};
use airlock::masking::load_masking_path;

#[test]
fn masking_rules_load_from_testdata() {
    let r = load_masking_path(Path::new("testdata/masking/rules.toml")).expect("rules");
    assert_eq!(r.rules.len(), 4);
    assert_eq!(r.detectors, DetectorSet::ALL);
    assert_eq!(r.hash_key_env.as_deref(), Some("AIRLOCK_MASK_KEY"));
    // The guardrails' own test rules have no masking tables.
    let g = load_masking_path(Path::new("testdata/policy/rules")).expect("rules");
    assert!(g.rules.is_empty());
}

#[test]
#[ignore]
fn masking_detector_timing() {
    let line: &[u8] =
        b"order 1234 shipped to the warehouse on 2024-01-15; status: delivered, ref ABC-998\n";
    let text: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
    let t = Instant::now();
    for _ in 0..20 {
        assert!(scan(&text, DetectorSet::ALL).is_empty());
    }
    eprintln!("scan clean 1 MiB: {:?}", t.elapsed() / 20);
}
