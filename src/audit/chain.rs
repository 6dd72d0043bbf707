//! The hash chain: `hash = sha256(prev_hash || canonical(record))`, hex.
//!
//! The canonical serialization is every stored field except `seq` and the
//! hashes, in a fixed order, each as a presence byte (`0` absent, `1`
//! present) followed by its length (u64 little-endian) and its UTF-8 bytes;
//! integers are written in decimal. The order of records is bound by the
//! chain itself, so `seq` needs no place in the hash; verification checks
//! separately that `seq` has no gaps.
//!
//! Anyone who can write the file can recompute a whole chain: the chain
//! proves the log was not edited *after the fact* only together with an
//! anchor kept elsewhere (the head hash that `airlock audit verify` prints).

use sha2::{Digest, Sha256};

use super::event::AuditEvent;

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record with these fields chained after `prev_hash`.
pub fn record_hash(prev_hash: &str, event: &AuditEvent, fingerprint: Option<&str>) -> String {
    record_hash_raw(
        prev_hash,
        event,
        event.kind.as_str(),
        event.decision.map(|d| d.as_str()),
        fingerprint,
    )
}

/// [`record_hash`] with `kind` and `decision` as stored, so that a value
/// edited into something airlock never writes still changes the hash.
pub fn record_hash_raw(
    prev_hash: &str,
    event: &AuditEvent,
    kind: &str,
    decision: Option<&str>,
    fingerprint: Option<&str>,
) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    let time = event.time_ms.to_string();
    let session = event.session.to_string();
    let rows = event.rows.map(|r| r.to_string());
    let duration = event.duration_us.map(|d| d.to_string());
    let fields: [Option<&str>; 21] = [
        Some(&time),
        Some(&session),
        Some(kind),
        Some(&event.identity),
        event.user.as_deref(),
        event.model.as_deref(),
        event.declared_model.as_deref(),
        event.client_addr.as_deref(),
        event.application_name.as_deref(),
        Some(&event.protocol),
        Some(&event.target),
        event.database.as_deref(),
        event.statement.as_deref(),
        fingerprint,
        decision,
        event.rule.as_deref(),
        event.reason.as_deref(),
        event.masked_columns.as_deref(),
        rows.as_deref(),
        duration.as_deref(),
        // Format version, so the serialization can change without
        // ambiguity.
        Some("v1"),
    ];
    for f in fields {
        match f {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_differ() {
        let mut a = AuditEvent::default();
        let h1 = record_hash(GENESIS, &a, None);
        a.user = Some(String::new());
        let h2 = record_hash(GENESIS, &a, None);
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
        assert_ne!(record_hash(GENESIS, &a, None), record_hash(&h1, &a, None));
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = AuditEvent {
            identity: "ab".into(),
            protocol: "c".into(),
            ..AuditEvent::default()
        };
        let b = AuditEvent {
            identity: "a".into(),
            protocol: "bc".into(),
            ..AuditEvent::default()
        };
        assert_ne!(
            record_hash(GENESIS, &a, None),
            record_hash(GENESIS, &b, None)
        );
    }
}
