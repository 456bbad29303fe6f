//! The daemon's in-process caches (key versions, API credentials, parsed policies), kept
//! coherent with a store that other daemons may change (docs/postgres.md, "Several
//! daemons").
//!
//! Two rules make a cache safe to invalidate from outside:
//! - **Generations.** A value loaded from the store is inserted only if no invalidation
//!   happened since the load began (`generation()` before the load, `insert(gen, ..)`
//!   after). Without it a load that read the old row could insert it just after the
//!   invalidation for the change had run, and keep it for good.
//! - **Suspension.** While the store cannot tell us about changes (its notification
//!   connection is down) the cache serves nothing and keeps nothing; it starts empty again
//!   when notifications resume.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

pub struct Cache<K, V> {
    inner: RwLock<Inner<K, V>>,
    /// Bound on entries; the cache is simply emptied when it is full.
    max: usize,
}

struct Inner<K, V> {
    map: HashMap<K, V>,
    generation: u64,
    enabled: bool,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub fn new(max: usize) -> Self {
        Cache {
            inner: RwLock::new(Inner {
                map: HashMap::new(),
                generation: 0,
                enabled: true,
            }),
            max,
        }
    }

    /// Write access even after a panic elsewhere: every update leaves the map consistent.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K, V>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.map.get(key).cloned()
    }

    /// The generation to pass to `insert` for a value about to be loaded.
    pub fn generation(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Keeps `value`, loaded after `generation()` returned `generation`, unless the cache
    /// was invalidated or suspended since.
    pub fn insert(&self, generation: u64, key: K, value: V) {
        let mut inner = self.write();
        if !inner.enabled || inner.generation != generation {
            return;
        }
        if inner.map.len() >= self.max {
            inner.map.clear();
        }
        inner.map.insert(key, value);
    }

    /// Drops the entries `stale` picks.
    pub fn invalidate(&self, stale: impl Fn(&K, &V) -> bool) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.map.retain(|k, v| !stale(k, v));
    }

    pub fn clear(&self) {
        self.invalidate(|_, _| true);
    }

    /// Suspends (`false`) or resumes (`true`) caching; either way the cache is emptied.
    pub fn set_enabled(&self, enabled: bool) {
        let mut inner = self.write();
        inner.generation += 1;
        inner.enabled = enabled;
        inner.map.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_loaded_before_an_invalidation_is_not_kept() {
        let c: Cache<String, u32> = Cache::new(10);
        let gen = c.generation();
        // The change's invalidation runs while the old value is being loaded.
        c.invalidate(|k, _| k == "a");
        c.insert(gen, "a".into(), 1);
        assert_eq!(c.get("a"), None);
        let gen = c.generation();
        c.insert(gen, "a".into(), 2);
        assert_eq!(c.get("a"), Some(2));
        c.invalidate(|k, _| k == "b");
        assert_eq!(c.get("a"), Some(2), "only the named entries go");
        c.invalidate(|k, _| k == "a");
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn a_suspended_cache_keeps_nothing_until_resumed() {
        let c: Cache<u32, u32> = Cache::new(10);
        c.insert(c.generation(), 1, 1);
        c.set_enabled(false);
        assert_eq!(c.get(&1), None);
        c.insert(c.generation(), 1, 1);
        assert_eq!(c.len(), 0);
        c.set_enabled(true);
        c.insert(c.generation(), 1, 1);
        assert_eq!(c.get(&1), Some(1));
    }

    #[test]
    fn a_full_cache_starts_over() {
        let c: Cache<u32, u32> = Cache::new(2);
        for i in 0..3 {
            c.insert(c.generation(), i, i);
        }
        assert_eq!((c.len(), c.get(&2)), (1, Some(2)));
    }
}
