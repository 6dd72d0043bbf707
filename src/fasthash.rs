//! Fast hashing for the per-statement hot path: caches keyed by statement
//! text and the per-session maps of prepared statements and portals.
//!
//! std's default SipHash costs about as much per statement as the rest of a
//! cached decision. foldhash is several times faster and still seeded at
//! random once per process, so an agent cannot precompute collisions. It is
//! not a cryptographic hash: every cache keyed through [`hash64`] stores and
//! compares its full key (statement text and session context alike), so a
//! collision is only ever a miss (and an eviction), never a wrong answer.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::LazyLock;

/// The hasher state for maps on the hot path.
pub type FastState = foldhash::fast::RandomState;

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// A `HashSet` with [`FastState`].
pub type FastSet<T> = HashSet<T, FastState>;

/// One seed for the whole process, so that [`hash64`] of equal values is
/// equal everywhere (cache keys are hashed in one place and looked up in
/// another).
static STATE: LazyLock<FastState> = LazyLock::new(FastState::default);

/// A 64-bit hash of `value`, stable for the life of the process.
pub fn hash64<T: Hash + ?Sized>(value: &T) -> u64 {
    STATE.hash_one(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_hash_equal_and_maps_work() {
        assert_eq!(
            hash64(b"select 1".as_slice()),
            hash64(b"select 1".as_slice())
        );
        assert_ne!(
            hash64(b"select 1".as_slice()),
            hash64(b"select 2".as_slice())
        );
        let mut m: FastMap<Vec<u8>, u32> = FastMap::default();
        m.insert(b"s1".to_vec(), 1);
        assert_eq!(m.get(b"s1".as_slice()), Some(&1));
    }
}
