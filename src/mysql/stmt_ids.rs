//! Sets and maps keyed by prepared statement ids, with a cheap hash.
//!
//! Statement ids are assigned by the upstream server (sequential numbers),
//! never chosen by the client: a table holds only ids the server handed
//! out, so a client cannot make its keys collide, and SipHash (the
//! standard, flood-resistant hasher) is not needed on every
//! COM_STMT_EXECUTE. A client naming an arbitrary id only looks one up.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of a `u32`: the product spreads an id's bits into
/// the high bits hashbrown takes its control tags from.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// 2^64 / φ, odd.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used for `u32` keys; correct for anything else.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(GOLDEN);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s.
pub type Ids = BuildHasherDefault<IdHasher>;

/// A set of statement ids.
pub type IdSet = HashSet<u32, Ids>;

/// A map from statement ids.
pub type IdMap<V> = HashMap<u32, V, Ids>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_maps_work() {
        let mut s = IdSet::default();
        for id in 0..1000 {
            assert!(s.insert(id));
        }
        assert!(s.contains(&999) && !s.contains(&1000) && !s.contains(&u32::MAX));
        let mut m = IdMap::default();
        m.insert(u32::MAX, "last");
        m.insert(1, "one");
        assert_eq!(m.get(&1), Some(&"one"));
        assert_eq!(m.remove(&u32::MAX), Some("last"));
    }
}
