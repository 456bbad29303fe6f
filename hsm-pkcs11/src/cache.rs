//! Bounded LRU map from "SHA-256 of a sealed blob" to an unwrapped key handle.
//!
//! Why cache at all: on SoftHSM2 2.6.1 C_UnwrapKey runs at ~28k/s while AES-GCM with an
//! already-unwrapped session key runs at ~100k/s, so unwrapping on every request would cap
//! throughput at a quarter. Each pooled session owns one cache because session objects die
//! with the session that created them.
//!
//! The cache does not touch the token itself: `insert` hands the evicted value back so the
//! caller can destroy the object on the session it belongs to. That keeps this module pure
//! and unit-testable.

use std::collections::{BTreeMap, HashMap};

/// Cache key: SHA-256 of the whole sealed blob (format byte included).
pub(crate) type BlobDigest = [u8; 32];

/// Default number of unwrapped keys kept per pooled session.
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

/// Least-recently-used map with O(log n) operations.
///
/// `order` maps a monotonically increasing use stamp to the key, so its first entry is the
/// least recently used one. 1024 entries per session is small enough that the BTreeMap is
/// not a bottleneck next to a PKCS#11 call.
#[derive(Debug)]
pub(crate) struct LruCache<V: Copy> {
    capacity: usize,
    entries: HashMap<BlobDigest, (V, u64)>,
    order: BTreeMap<u64, BlobDigest>,
    clock: u64,
}

impl<V: Copy> LruCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        LruCache {
            // A zero-capacity cache would evict the entry it just inserted, i.e. destroy the
            // key the caller is about to use; one entry is the minimum that makes sense.
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Look up and mark as most recently used.
    pub(crate) fn get(&mut self, key: &BlobDigest) -> Option<V> {
        let stamp = self.tick();
        let (value, old_stamp) = self.entries.get_mut(key)?;
        let old = std::mem::replace(old_stamp, stamp);
        let value = *value;
        self.order.remove(&old);
        self.order.insert(stamp, *key);
        Some(value)
    }

    /// Insert (or replace) an entry. Returns the values that dropped out of the cache — the
    /// least recently used entry when full, or the previous value for the same key — so the
    /// caller can release them.
    pub(crate) fn insert(&mut self, key: BlobDigest, value: V) -> Vec<V> {
        let mut released = Vec::new();
        if let Some(old) = self.remove(&key) {
            released.push(old);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((v, _)) = self.entries.remove(&victim) {
                released.push(v);
            }
        }
        let stamp = self.tick();
        self.entries.insert(key, (value, stamp));
        self.order.insert(stamp, key);
        released
    }

    /// Forget an entry without releasing it (used when the handle is already invalid).
    pub(crate) fn remove(&mut self, key: &BlobDigest) -> Option<V> {
        let (value, stamp) = self.entries.remove(key)?;
        self.order.remove(&stamp);
        Some(value)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> BlobDigest {
        [n; 32]
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut c = LruCache::new(2);
        assert!(c.insert(k(1), 10).is_empty());
        assert!(c.insert(k(2), 20).is_empty());
        // Touch 1 so that 2 becomes the LRU entry.
        assert_eq!(c.get(&k(1)), Some(10));
        assert_eq!(c.insert(k(3), 30), vec![20]);
        assert_eq!(c.get(&k(2)), None);
        assert_eq!(c.get(&k(1)), Some(10));
        assert_eq!(c.get(&k(3)), Some(30));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn replacing_a_key_releases_the_old_value() {
        let mut c = LruCache::new(4);
        assert!(c.insert(k(1), 10).is_empty());
        assert_eq!(c.insert(k(1), 11), vec![10]);
        assert_eq!(c.get(&k(1)), Some(11));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn remove_forgets_without_release() {
        let mut c = LruCache::new(1);
        c.insert(k(1), 10);
        assert_eq!(c.remove(&k(1)), Some(10));
        assert!(c.insert(k(2), 20).is_empty());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn zero_capacity_still_holds_one() {
        let mut c = LruCache::new(0);
        assert!(c.insert(k(1), 10).is_empty());
        assert_eq!(c.get(&k(1)), Some(10));
        assert_eq!(c.insert(k(2), 20), vec![10]);
    }
}
