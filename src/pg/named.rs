//! Maps keyed by a prepared statement's or portal's name.
//!
//! Most extended-protocol traffic uses the *unnamed* statement and portal
//! (the empty name): drivers that do not prepare server-side, or not yet
//! (psycopg, JDBC below its prepare threshold, node-postgres without a
//! name, `pgbench -M extended`), and the portal of nearly every Bind.
//! Postgres keeps the unnamed ones apart, and so does [`Named`]: the empty
//! name has a slot of its own and only other names are hashed. Each
//! Parse, Bind, Describe and Execute looks its names up in a few such maps
//! (the client side's audit and plan books, the reply tracker's
//! descriptions), so this saves several hash lookups and insertions per
//! extended-protocol statement.

use crate::fasthash::FastMap;

/// A map from statement or portal name to `V`.
pub struct Named<V> {
    /// The entry of the empty name.
    unnamed: Option<V>,
    /// Every other name.
    named: FastMap<Vec<u8>, V>,
}

impl<V> Default for Named<V> {
    fn default() -> Self {
        Named {
            unnamed: None,
            named: FastMap::default(),
        }
    }
}

impl<V> Named<V> {
    pub fn get(&self, name: &[u8]) -> Option<&V> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }

    pub fn get_mut(&mut self, name: &[u8]) -> Option<&mut V> {
        if name.is_empty() {
            self.unnamed.as_mut()
        } else {
            self.named.get_mut(name)
        }
    }

    /// Sets `name`'s entry, returning the one it replaces.
    pub fn insert(&mut self, name: &[u8], value: V) -> Option<V> {
        if name.is_empty() {
            self.unnamed.replace(value)
        } else {
            self.named.insert(name.to_vec(), value)
        }
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<V> {
        if name.is_empty() {
            self.unnamed.take()
        } else {
            self.named.remove(name)
        }
    }

    /// How many names other than the empty one have an entry.
    pub fn named_len(&self) -> usize {
        self.named.len()
    }

    pub fn contains_key(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// Forgets every name but the empty one, and the memory a large map
    /// took.
    pub fn clear_named(&mut self) {
        if self.named.capacity() > 64 {
            self.named = FastMap::default();
        } else {
            self.named.clear();
        }
    }

    pub fn clear(&mut self) {
        self.unnamed = None;
        self.named.clear();
    }

    /// Every name that has an entry (the empty name first, if it has one).
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        let unnamed = self.unnamed.as_ref().map(|_| &b""[..]);
        unnamed
            .into_iter()
            .chain(self.named.keys().map(|k| k.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::Named;

    #[test]
    fn the_unnamed_entry_is_kept_apart_from_named_ones() {
        let mut m = Named::default();
        assert_eq!(m.insert(b"", 1), None);
        assert_eq!(m.insert(b"s1", 2), None);
        assert_eq!(m.get(b""), Some(&1));
        assert_eq!(m.get(b"s1"), Some(&2));
        assert_eq!(m.get(b"s2"), None);
        assert_eq!(m.insert(b"", 3), Some(1));
        if let Some(v) = m.get_mut(b"s1") {
            *v = 4;
        }
        assert_eq!(m.remove(b"s1"), Some(4));
        assert!(!m.contains_key(b"s1"));
        assert!(m.contains_key(b""));
        assert_eq!(m.remove(b""), Some(3));
        assert_eq!(m.get(b""), None);
        m.insert(b"", 5);
        m.insert(b"x", 6);
        m.clear();
        assert_eq!((m.get(b""), m.get(b"x")), (None, None));
    }
}
