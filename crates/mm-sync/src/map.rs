//! A concurrent hash map: dashmap in std, `Mutex<HashMap>` under loom and shuttle.
//!
//! It is looked up, never iterated for output (iteration order is not deterministic).

use std::fmt;
use std::hash::Hash;

/// A concurrent map from `K` to `V`.
pub struct ConcurrentMap<K, V> {
    #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
    inner: dashmap::DashMap<K, V>,
    #[cfg(any(mm_loom, feature = "shuttle"))]
    inner: crate::sync::Mutex<std::collections::HashMap<K, V>>,
}

impl<K, V> fmt::Debug for ConcurrentMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrentMap").finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V> Default for ConcurrentMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash, V> ConcurrentMap<K, V> {
    /// Creates an empty map.
    pub fn new() -> Self {
        ConcurrentMap {
            inner: Default::default(),
        }
    }

    /// Inserts a value, returning the previous one.
    pub fn insert(&self, k: K, v: V) -> Option<V> {
        #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
        {
            self.inner.insert(k, v)
        }
        #[cfg(any(mm_loom, feature = "shuttle"))]
        {
            self.inner.lock().insert(k, v)
        }
    }

    /// Removes a key, returning its value.
    pub fn remove(&self, k: &K) -> Option<V> {
        #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
        {
            self.inner.remove(k).map(|(_, v)| v)
        }
        #[cfg(any(mm_loom, feature = "shuttle"))]
        {
            self.inner.lock().remove(k)
        }
    }

    /// Runs `f` on the value of `k`, if present, while holding that entry.
    pub fn with<R>(&self, k: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
        {
            self.inner.get(k).map(|v| f(&v))
        }
        #[cfg(any(mm_loom, feature = "shuttle"))]
        {
            self.inner.lock().get(k).map(f)
        }
    }

    /// Returns true if `k` is present.
    pub fn contains_key(&self, k: &K) -> bool {
        #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
        {
            self.inner.contains_key(k)
        }
        #[cfg(any(mm_loom, feature = "shuttle"))]
        {
            self.inner.lock().contains_key(k)
        }
    }

    /// Returns the number of entries.
    pub fn len(&self) -> usize {
        #[cfg(all(not(mm_loom), not(feature = "shuttle")))]
        {
            self.inner.len()
        }
        #[cfg(any(mm_loom, feature = "shuttle"))]
        {
            self.inner.lock().len()
        }
    }

    /// Returns true if the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, not(mm_loom), not(feature = "shuttle")))]
mod tests {
    use super::ConcurrentMap;

    #[test]
    fn map_inserts_replaces_and_removes() {
        let m = ConcurrentMap::new();
        assert_eq!(m.insert(1u64, "a"), None);
        assert_eq!(m.insert(1u64, "b"), Some("a"));
        assert_eq!(m.with(&1, |v| v.len()), Some(1));
        assert!(m.contains_key(&1));
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(&1), Some("b"));
        assert!(m.is_empty());
    }
}
