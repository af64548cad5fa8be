//! The record cache in front of a store. Writes land here first; repeated updates of one
//! key replace each other, and only the last reaches the store, the changelog and the
//! operators downstream when the cache is flushed: at each commit, or when it outgrows its
//! share of `cache.max.bytes`. Reads see the cache first.
//!
//! The cache sits on the path of every record an aggregation takes, so a lookup is one
//! hash probe. Entries live in a slab that only grows until the cache is emptied; a
//! hash table maps keys to slots. Two orders are kept on the side, each paid for only
//! when it is needed:
//!
//! - flushes hand out dirty entries in the order of their last update, as Kafka's
//!   `NamedCache` does, by sorting the dirty slots by an update counter;
//! - range reads, which merge the cache with the store, need key order: the slots are
//!   sorted when a range is asked for, and new slots are merged into that order the next
//!   time. An aggregation over a settled set of keys adds no slots, so its range reads
//!   cost no sorting at all.
//!
//! A lookup is bound by memory latency, not by work: the keys of a busy aggregation are
//! spread over more than a core's L2. Short keys and values (most are: words, ids,
//! counts) are stored inside their slot, and a slot, with its flush bookkeeping, is one
//! 64-byte cache line: a hit reads the table and one line, the write that follows touches
//! no other, and rewriting a count allocates nothing.

use std::hash::BuildHasher;
use std::ops::Bound;

use hashbrown::HashTable;

/// Bytes an entry costs beyond its key and value: its slot, index entry and bookkeeping.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Bytes stored inline up to this length (a `SmallBytes` is then 24 bytes, as a `Vec`).
const INLINE_BYTES: usize = 22;

/// A byte string kept inline when it is short.
#[derive(Clone)]
pub(crate) enum SmallBytes {
    Inline(u8, [u8; INLINE_BYTES]),
    Heap(Box<[u8]>),
}

impl SmallBytes {
    fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_BYTES {
            let mut buf = [0; INLINE_BYTES];
            buf[..bytes.len()].copy_from_slice(bytes);
            SmallBytes::Inline(bytes.len() as u8, buf)
        } else {
            SmallBytes::Heap(bytes.into())
        }
    }

    /// Replaces the contents, in place when the new bytes fit inline.
    fn set(&mut self, bytes: &[u8]) {
        match self {
            SmallBytes::Inline(len, buf) if bytes.len() <= INLINE_BYTES => {
                buf[..bytes.len()].copy_from_slice(bytes);
                *len = bytes.len() as u8;
            }
            SmallBytes::Heap(heap) if heap.len() == bytes.len() => heap.copy_from_slice(bytes),
            other => *other = SmallBytes::new(bytes),
        }
    }
}

impl std::ops::Deref for SmallBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            SmallBytes::Inline(len, buf) => &buf[..usize::from(*len)],
            SmallBytes::Heap(heap) => heap,
        }
    }
}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// One entry, in one cache line.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    key: SmallBytes,
    /// `None`: a delete.
    value: Option<SmallBytes>,
    /// The timestamp of the record that wrote it, for the changelog and for forwarding.
    timestamp: i64,
    /// When it was last written, on the cache's update counter; [`CLEAN`] once it is in
    /// the store.
    updated: u64,
}

/// `Slot::updated` of an entry the store already has (the update counter starts above it).
const CLEAN: u64 = 0;

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

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
    hasher: foldhash::fast::RandomState,
    /// Key -> index into `slots`.
    index: HashTable<u32>,
    slots: Vec<Slot>,
    /// Slots that became dirty since the last flush, each once.
    dirty: Vec<usize>,
    /// Slots `0..sorted.len()`, in key order.
    sorted: Vec<usize>,
    updates: u64,
}

fn cost(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD_BYTES
}

fn write_value(slot: &mut Option<SmallBytes>, value: Option<&[u8]>) {
    match (slot, value) {
        // In place: an aggregation rewrites the same keys over and over.
        (Some(old), Some(new)) => old.set(new),
        (slot, new) => *slot = new.map(SmallBytes::new),
    }
}

impl RecordCache {
    pub fn new(max_bytes: usize) -> Self {
        RecordCache {
            max_bytes,
            bytes: 0,
            hasher: foldhash::fast::RandomState::default(),
            index: HashTable::new(),
            slots: Vec::new(),
            dirty: Vec::new(),
            sorted: Vec::new(),
            updates: 0,
        }
    }

    /// Whether the cache holds anything at all (a zero budget turns it off).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(self.hasher.hash_one(key), |&i| *slots[i as usize].key == *key).map(|&i| i as usize)
    }

    /// Adds a slot for a key the cache does not hold.
    fn insert(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64, updated: u64) -> usize {
        let slot = self.slots.len();
        self.bytes += cost(key, value);
        let RecordCache { hasher, index, slots, .. } = self;
        index.insert_unique(hasher.hash_one(key), slot as u32, |&i| hasher.hash_one(&*slots[i as usize].key));
        slots.push(Slot { key: SmallBytes::new(key), value: value.map(SmallBytes::new), timestamp, updated });
        slot
    }

    /// Starts loading the slot `key` is likely in, for a lookup soon after. The probe
    /// takes the first slot whose hash tag matches without comparing keys (comparing
    /// would wait for the very line being prefetched); a wrong guess, 1 in 128, costs a
    /// wasted load.
    pub fn prefetch(&self, key: &[u8]) {
        if let Some(&slot) = self.index.find(self.hasher.hash_one(key), |_| true) {
            prefetch_index::prefetch_index(&self.slots, slot as usize);
        }
    }

    /// `None` if the cache does not hold `key`; else its value, `None` for a delete.
    pub fn get(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.find(key).map(|i| self.slots[i].value.as_deref())
    }

    /// Writes `value` for `key`, dirty. Returns whether the cache is now over its budget
    /// (the owner should flush it).
    pub fn put(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> bool {
        self.updates += 1;
        let updated = self.updates;
        match self.find(key) {
            Some(i) => {
                let slot = &mut self.slots[i];
                self.bytes -= cost(key, slot.value.as_deref());
                write_value(&mut slot.value, value);
                self.bytes += cost(key, slot.value.as_deref());
                slot.timestamp = timestamp;
                if slot.updated == CLEAN {
                    self.dirty.push(i);
                }
                slot.updated = updated;
            }
            None => {
                let slot = self.insert(key, value, timestamp, updated);
                self.dirty.push(slot);
            }
        }
        self.bytes > self.max_bytes
    }

    /// Remembers a value read from the store, clean, if there is room.
    pub fn put_clean(&mut self, key: &[u8], value: Option<&[u8]>) {
        if self.bytes + cost(key, value) > self.max_bytes || self.find(key).is_some() {
            return;
        }
        self.insert(key, value, -1, CLEAN);
    }

    #[cfg(test)]
    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// The dirty entries in the order of their last update, marked clean. When the cache
    /// is over budget it is emptied instead, so the next writes start from nothing.
    pub fn take_dirty(&mut self) -> Vec<Dirty> {
        let mut dirty = std::mem::take(&mut self.dirty);
        let slots = &mut self.slots;
        dirty.sort_unstable_by_key(|&i| slots[i].updated);
        let out = dirty
            .iter()
            .map(|&i| {
                let slot = &mut slots[i];
                slot.updated = CLEAN;
                Dirty {
                    key: slot.key.to_vec(),
                    value: slot.value.as_deref().map(<[u8]>::to_vec),
                    timestamp: slot.timestamp,
                }
            })
            .collect();
        if self.bytes > self.max_bytes {
            self.clear();
        }
        // Keep the allocation for the next round of writes.
        dirty.clear();
        self.dirty = dirty;
        out
    }

    /// Brings `sorted` up to date: the slots added since the last range read are sorted
    /// and merged in.
    fn sort(&mut self) {
        let done = self.sorted.len();
        if done == self.slots.len() {
            return;
        }
        let slots = &self.slots;
        let by_key = |&a: &usize, &b: &usize| slots[a].key.cmp(&slots[b].key);
        let mut fresh: Vec<usize> = (done..slots.len()).collect();
        fresh.sort_unstable_by(by_key);
        if done == 0 {
            self.sorted = fresh;
            return;
        }
        let mut merged = Vec::with_capacity(slots.len());
        let (mut old, mut new) = (self.sorted.iter().peekable(), fresh.iter().peekable());
        while let (Some(&&a), Some(&&b)) = (old.peek(), new.peek()) {
            if by_key(&a, &b).is_le() {
                merged.push(a);
                old.next();
            } else {
                merged.push(b);
                new.next();
            }
        }
        merged.extend(old);
        merged.extend(new);
        self.sorted = merged;
    }

    /// Entries within the bounds, in key order, for merging with the store.
    pub fn range<'a>(
        &'a mut self,
        from: Bound<&'a [u8]>,
        to: Bound<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        self.sort();
        let slots = &self.slots;
        let start = self.sorted.partition_point(|&i| match from {
            Bound::Included(from) => *slots[i].key < *from,
            Bound::Excluded(from) => *slots[i].key <= *from,
            Bound::Unbounded => false,
        });
        self.sorted[start..].iter().map(move |&i| (&*slots[i].key, slots[i].value.as_deref())).take_while(
            move |(key, _)| match to {
                Bound::Included(to) => *key <= to,
                Bound::Excluded(to) => *key < to,
                Bound::Unbounded => true,
            },
        )
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.dirty.clear();
        self.sorted.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_writes_of_a_key_leave_one_dirty_entry_in_last_update_order() {
        let mut cache = RecordCache::new(10_000);
        for i in 0..100u8 {
            assert!(!cache.put(b"word", Some(&[i]), i64::from(i)));
        }
        cache.put(b"gone", None, 7);
        cache.put(b"again", Some(b"1"), 8);
        cache.put(b"word", Some(&[200]), 9);
        assert_eq!(cache.dirty_count(), 3);
        let dirty = cache.take_dirty();
        assert_eq!(
            dirty,
            vec![
                Dirty { key: b"gone".to_vec(), value: None, timestamp: 7 },
                Dirty { key: b"again".to_vec(), value: Some(b"1".to_vec()), timestamp: 8 },
                Dirty { key: b"word".to_vec(), value: Some(vec![200]), timestamp: 9 },
            ]
        );
        assert!(cache.take_dirty().is_empty(), "flushed entries are clean");
        assert_eq!(cache.get(b"word").unwrap(), Some(&[200][..]), "and still readable");
        cache.put(b"again", Some(b"2"), 10);
        assert_eq!(cache.take_dirty().len(), 1, "a clean entry written again is dirty again");
    }

    #[test]
    fn prefetching_is_only_a_hint() {
        let mut cache = RecordCache::new(1 << 20);
        cache.prefetch(b"nothing yet");
        for i in 0..1000u32 {
            cache.put(&i.to_be_bytes(), Some(b"v"), 0);
        }
        for i in 0..2000u32 {
            cache.prefetch(&i.to_be_bytes());
        }
        assert_eq!(cache.get(&7u32.to_be_bytes()).unwrap(), Some(&b"v"[..]));
        assert!(cache.get(&1500u32.to_be_bytes()).is_none());
        cache.clear();
        cache.prefetch(&7u32.to_be_bytes());
        assert!(cache.get(&7u32.to_be_bytes()).is_none());
    }

    #[test]
    fn an_overflowing_cache_reports_it_and_empties_on_flush() {
        let mut cache = RecordCache::new(3 * (ENTRY_OVERHEAD_BYTES + 2));
        assert!(!cache.put(b"a", Some(b"1"), 0));
        assert!(!cache.put(b"b", Some(b"1"), 0));
        assert!(!cache.put(b"c", Some(b"1"), 0));
        assert!(cache.put(b"d", Some(b"1"), 0));
        let keys: Vec<_> = cache.take_dirty().into_iter().map(|d| d.key).collect();
        assert_eq!(keys, [b"a", b"b", b"c", b"d"]);
        assert!(cache.get(b"a").is_none());
        cache.put_clean(b"x", Some(b"1"));
        assert!(cache.take_dirty().is_empty());
        assert!(cache.get(b"x").is_some());
        cache.put_clean(b"x", Some(b"2"));
        assert_eq!(cache.get(b"x").unwrap(), Some(&b"1"[..]), "a cached key is not replaced");
    }

    #[test]
    fn long_and_short_keys_and_values_live_together() {
        let mut cache = RecordCache::new(1 << 20);
        let long = vec![7u8; 100];
        cache.put(&long, Some(b"short"), 1);
        cache.put(b"short", Some(&long), 2);
        assert_eq!(cache.get(&long).unwrap(), Some(&b"short"[..]));
        // A value grows past the inline size, shrinks back, and changes length.
        for value in [&long[..], b"x", &long[..40], &long[..41]] {
            cache.put(b"short", Some(value), 3);
            assert_eq!(cache.get(b"short").unwrap(), Some(value));
        }
        let dirty = cache.take_dirty();
        assert_eq!(dirty[0].key, long);
        assert_eq!(dirty[1].value.as_deref(), Some(&long[..41]));
    }

    #[test]
    fn ranges_stay_in_key_order_as_keys_arrive_between_reads() {
        let mut cache = RecordCache::new(1 << 20);
        let range = |cache: &mut RecordCache, from: Bound<&[u8]>, to: Bound<&[u8]>| -> Vec<String> {
            cache.range(from, to).map(|(k, _)| String::from_utf8(k.to_vec()).unwrap()).collect()
        };
        for k in ["m", "c", "x"] {
            cache.put(k.as_bytes(), Some(b"v"), 0);
        }
        assert_eq!(range(&mut cache, Bound::Unbounded, Bound::Unbounded), ["c", "m", "x"]);
        for k in ["a", "n", "z", "d"] {
            cache.put(k.as_bytes(), Some(b"v"), 0);
        }
        cache.put_clean(b"b", Some(b"v"));
        cache.put(b"m", None, 0);
        assert_eq!(range(&mut cache, Bound::Unbounded, Bound::Unbounded), ["a", "b", "c", "d", "m", "n", "x", "z"]);
        assert_eq!(range(&mut cache, Bound::Included(b"c"), Bound::Included(b"n")), ["c", "d", "m", "n"]);
        assert_eq!(range(&mut cache, Bound::Excluded(b"c"), Bound::Excluded(b"n")), ["d", "m"]);
        assert_eq!(range(&mut cache, Bound::Excluded(b"zz"), Bound::Unbounded), Vec::<String>::new());
        cache.clear();
        assert!(range(&mut cache, Bound::Unbounded, Bound::Unbounded).is_empty());
        cache.put(b"q", Some(b"v"), 0);
        assert_eq!(range(&mut cache, Bound::Unbounded, Bound::Unbounded), ["q"]);
    }
}
