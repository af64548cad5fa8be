//! The record cache in front of a store. Writes land here first; repeated updates of one
//! key replace each other, and only the last reaches the store, the changelog and the
//! operators downstream when the cache is flushed: at each commit, or when it outgrows its
//! share of `cache.max.bytes`. Reads see the cache first.
//!
//! Entries are kept in key order, so range reads can merge the cache with the store.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Bytes an entry costs beyond its key and value: the tree node and bookkeeping.
const ENTRY_OVERHEAD_BYTES: usize = 64;

#[derive(Debug)]
pub(crate) struct CacheEntry {
    /// The value; `None` is a delete.
    pub value: Option<Vec<u8>>,
    /// Not yet written to the store.
    pub dirty: bool,
    /// The timestamp of the record that wrote it, for the changelog and for forwarding.
    pub timestamp: i64,
}

/// A dirty entry taken out for flushing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dirty {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

#[derive(Debug)]
pub(crate) struct RecordCache {
    max_bytes: usize,
    bytes: usize,
    entries: BTreeMap<Vec<u8>, CacheEntry>,
    dirty: usize,
}

fn cost(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.len()) + ENTRY_OVERHEAD_BYTES
}

impl RecordCache {
    pub fn new(max_bytes: usize) -> Self {
        RecordCache { max_bytes, bytes: 0, entries: BTreeMap::new(), dirty: 0 }
    }

    /// Whether the cache holds anything at all (a zero budget turns it off).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    pub fn get(&self, key: &[u8]) -> Option<&CacheEntry> {
        self.entries.get(key)
    }

    /// Writes `value` for `key`, dirty. Returns whether the cache is now over its budget
    /// (the owner should flush it).
    pub fn put(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) => {
                self.bytes -= cost(key, &entry.value);
                // Reuse the value's allocation: the hot path of an aggregation rewrites the
                // same keys over and over.
                match (&mut entry.value, value) {
                    (Some(old), Some(new)) => {
                        old.clear();
                        old.extend_from_slice(new);
                    }
                    (slot, new) => *slot = new.map(<[u8]>::to_vec),
                }
                if !entry.dirty {
                    entry.dirty = true;
                    self.dirty += 1;
                }
                entry.timestamp = timestamp;
                self.bytes += cost(key, &entry.value);
            }
            None => {
                let entry = CacheEntry { value: value.map(<[u8]>::to_vec), dirty: true, timestamp };
                self.bytes += cost(key, &entry.value);
                self.dirty += 1;
                self.entries.insert(key.to_vec(), entry);
            }
        }
        self.bytes > self.max_bytes
    }

    /// Remembers a value read from the store, clean, if there is room.
    pub fn put_clean(&mut self, key: &[u8], value: Option<&[u8]>) {
        let value = value.map(<[u8]>::to_vec);
        let size = cost(key, &value);
        if self.bytes + size > self.max_bytes || self.entries.contains_key(key) {
            return;
        }
        self.bytes += size;
        self.entries.insert(key.to_vec(), CacheEntry { value, dirty: false, timestamp: -1 });
    }

    #[cfg(test)]
    pub fn dirty_count(&self) -> usize {
        self.dirty
    }

    /// The dirty entries in key order, marked clean. When the cache is over budget it is
    /// emptied instead, so the next writes start from nothing.
    pub fn take_dirty(&mut self) -> Vec<Dirty> {
        let mut out = Vec::with_capacity(self.dirty);
        if self.bytes > self.max_bytes {
            for (key, entry) in std::mem::take(&mut self.entries) {
                if entry.dirty {
                    out.push(Dirty { key, value: entry.value, timestamp: entry.timestamp });
                }
            }
            self.bytes = 0;
        } else if self.dirty > 0 {
            for (key, entry) in self.entries.iter_mut() {
                if entry.dirty {
                    entry.dirty = false;
                    out.push(Dirty { key: key.clone(), value: entry.value.clone(), timestamp: entry.timestamp });
                }
            }
        }
        self.dirty = 0;
        out
    }

    /// Entries in `[from, to]` order, for merging with the store.
    pub fn range<'a>(
        &'a self,
        from: Bound<&'a [u8]>,
        to: Bound<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a CacheEntry)> + 'a {
        self.entries.range::<[u8], _>((from, to))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.dirty = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_writes_of_a_key_leave_one_dirty_entry() {
        let mut cache = RecordCache::new(10_000);
        for i in 0..100u8 {
            assert!(!cache.put(b"word", Some(&[i]), i64::from(i)));
        }
        cache.put(b"gone", None, 7);
        assert_eq!(cache.dirty_count(), 2);
        let dirty = cache.take_dirty();
        assert_eq!(
            dirty,
            vec![
                Dirty { key: b"gone".to_vec(), value: None, timestamp: 7 },
                Dirty { key: b"word".to_vec(), value: Some(vec![99]), timestamp: 99 }
            ]
        );
        assert!(cache.take_dirty().is_empty(), "flushed entries are clean");
        assert_eq!(cache.get(b"word").unwrap().value.as_deref(), Some(&[99][..]), "and still readable");
    }

    #[test]
    fn an_overflowing_cache_reports_it_and_empties_on_flush() {
        let mut cache = RecordCache::new(3 * (ENTRY_OVERHEAD_BYTES + 2));
        assert!(!cache.put(b"a", Some(b"1"), 0));
        assert!(!cache.put(b"b", Some(b"1"), 0));
        assert!(!cache.put(b"c", Some(b"1"), 0));
        assert!(cache.put(b"d", Some(b"1"), 0));
        assert_eq!(cache.take_dirty().len(), 4);
        assert!(cache.get(b"a").is_none());
        cache.put_clean(b"x", Some(b"1"));
        assert!(cache.take_dirty().is_empty());
        assert!(cache.get(b"x").is_some());
    }
}
