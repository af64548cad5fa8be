//! State stores. A task's store is a stack, as in Kafka Streams:
//!
//! ```text
//! typed handle (serdes)  ->  record cache  ->  changelog logging  ->  RocksDB or in-memory map
//! ```
//!
//! - [`BytesStore`] is the bottom: sorted bytes, on RocksDB ([`rocks`]) or in memory.
//! - [`StoreInner`] stacks the cache and the changelog on it. Writes the cache lets through
//!   are queued as changelog records, which the task hands to its producer; restoration
//!   writes to the bottom directly.
//! - [`KeyValueStore`] is what a processor holds: typed, with its serdes.
//! - [`ReadOnlyKeyValueStore`] is what interactive queries get: every local task's
//!   instance of one store, read-only.
//!
//! A store is shared between the thread that processes its task and the threads that query
//! it, behind one mutex that the processing thread takes per operation.

pub(crate) mod cache;
pub(crate) mod checkpoint;
pub(crate) mod memory;
pub(crate) mod rocks;

use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::Bound;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Result, StreamsError};
use crate::serde::{DynSerde, Serde};
use cache::RecordCache;

/// A key and a value, as bytes.
pub(crate) type KeyValueBytes = (Vec<u8>, Vec<u8>);

/// How many entries a range read takes under the store's lock at a time.
const RANGE_CHUNK_ENTRIES: usize = 1024;

/// The bottom of a store: sorted bytes.
pub(crate) trait BytesStore: Send {
    /// Calls `f` with the value of `key`, or `None`.
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<()>;
    /// Applies puts (`Some`) and deletes (`None`) as one batch.
    fn write(&mut self, batch: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()>;
    /// Up to `limit` entries within the bounds, in key order.
    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValueBytes>>;
    fn approximate_num_entries(&self) -> u64;
    /// Makes what was written durable (RocksDB: flushes memtables).
    fn flush(&mut self) -> Result<()>;
}

/// Where a store keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// RocksDB under the state directory.
    Persistent,
    /// A map in memory, rebuilt from the changelog after a restart.
    InMemory,
}

/// A cache entry written down to the store by a flush: what the operators downstream of a
/// cached table or aggregation are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub key: Vec<u8>,
    pub new: Option<Vec<u8>>,
    pub old: Option<Vec<u8>>,
    pub timestamp: i64,
}

/// A write waiting to be sent to the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

/// One task's instance of a store: cache, changelog queue and the bytes underneath.
pub(crate) struct StoreInner {
    name: Arc<str>,
    bytes: Box<dyn BytesStore>,
    cache: RecordCache,
    /// Logging on: writes waiting to be sent to the changelog.
    log: Option<Vec<LogEntry>>,
    /// Set while `log` has entries, so that the task can skip the lock when it has none.
    log_queued: Arc<AtomicBool>,
    /// Closed when its task moved away: interactive queries must look elsewhere.
    open: bool,
}

impl std::fmt::Debug for StoreInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreInner").field("name", &self.name).field("open", &self.open).finish()
    }
}

pub(crate) type SharedStore = Arc<Mutex<StoreInner>>;

impl StoreInner {
    pub fn new(name: &str, bytes: Box<dyn BytesStore>, cache_bytes: usize, logging: bool) -> Self {
        StoreInner {
            name: name.into(),
            bytes,
            cache: RecordCache::new(cache_bytes),
            log: logging.then(Vec::new),
            log_queued: Arc::default(),
            open: true,
        }
    }

    /// Opens the bottom layer: RocksDB at `dir/rocksdb/<name>`, or a map.
    pub fn open_bytes(kind: StoreKind, name: &str, task_dir: Option<&Path>) -> Result<Box<dyn BytesStore>> {
        Ok(match (kind, task_dir) {
            (StoreKind::Persistent, Some(dir)) => {
                Box::new(rocks::RocksDbStore::open(name, &dir.join("rocksdb").join(name))?)
            }
            _ => Box::new(memory::InMemoryStore::default()),
        })
    }

    /// Closes the store: RocksDB is closed now (releasing its lock for the task's next
    /// owner), even while interactive queries still hold this instance.
    pub fn close(&mut self) {
        self.open = false;
        self.cache.clear();
        self.bytes = Box::new(memory::InMemoryStore::default());
    }

    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(StreamsError::store(
                &self.name,
                "this instance of the store was closed (its task moved); look the key up again",
            ))
        }
    }

    /// Starts loading the cache slot of `key` (see [`RecordCache::prefetch`]).
    pub fn prefetch(&self, key: &[u8]) {
        if self.open && self.cache.enabled() {
            self.cache.prefetch(key);
        }
    }

    pub fn cache_enabled(&self) -> bool {
        self.cache.enabled()
    }

    pub fn set_cache_bytes(&mut self, bytes: usize) {
        self.cache.set_max_bytes(bytes);
    }

    /// Calls `f` with the current value of `key`: the cache's if it has one, else the store's.
    pub fn get<T>(&mut self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> T) -> Result<T> {
        self.check_open()?;
        if let Some(value) = self.cache.get(key) {
            return Ok(f(value));
        }
        let mut f = Some(f);
        let mut out = None;
        let cache = &mut self.cache;
        self.bytes.get(key, &mut |value| {
            if cache.enabled() {
                cache.put_clean(key, value);
            }
            if let Some(f) = f.take() {
                out = Some(f(value));
            }
        })?;
        out.ok_or_else(|| StreamsError::store(&self.name, "the store did not answer a get"))
    }

    /// Writes `value` (`None` deletes). With the cache on, the write waits in the cache and
    /// the result says whether the cache is over budget (the caller must then flush it);
    /// with the cache off it goes through to the store and the changelog.
    pub fn put(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<bool> {
        self.check_open()?;
        if self.cache.enabled() {
            return Ok(self.cache.put(key, value, timestamp));
        }
        self.bytes.write(&mut std::iter::once((key, value)))?;
        if let Some(log) = &mut self.log {
            log.push(LogEntry { key: key.to_vec(), value: value.map(<[u8]>::to_vec), timestamp });
            self.log_queued.store(true, Ordering::Relaxed);
        }
        Ok(false)
    }

    /// Writes the cache's dirty entries to the store and the changelog queue, and returns
    /// them with the values they replaced when `with_old` (for forwarding a table's changes).
    pub fn flush_cache(&mut self, with_old: bool) -> Result<Vec<Flushed>> {
        let dirty = self.cache.take_dirty();
        if dirty.is_empty() {
            return Ok(Vec::new());
        }
        let mut flushed = Vec::with_capacity(dirty.len());
        for entry in dirty {
            let mut old = None;
            if with_old {
                self.bytes.get(&entry.key, &mut |v| old = v.map(<[u8]>::to_vec))?;
            }
            flushed.push(Flushed { key: entry.key, new: entry.value, old, timestamp: entry.timestamp });
        }
        self.bytes.write(&mut flushed.iter().map(|f| (f.key.as_slice(), f.new.as_deref())))?;
        if let Some(log) = &mut self.log {
            log.extend(flushed.iter().map(|f| LogEntry {
                key: f.key.clone(),
                value: f.new.clone(),
                timestamp: f.timestamp,
            }));
            self.log_queued.store(true, Ordering::Relaxed);
        }
        Ok(flushed)
    }

    /// A flag that is set while writes wait for the changelog; it can be read without the
    /// store's lock.
    pub fn log_queued(&self) -> Arc<AtomicBool> {
        self.log_queued.clone()
    }

    /// Hands the queued changelog writes to `send`, in the order they were made.
    pub fn drain_log(&mut self, mut send: impl FnMut(&LogEntry) -> Result<()>) -> Result<()> {
        self.log_queued.store(false, Ordering::Relaxed);
        if let Some(log) = &mut self.log {
            for entry in log.drain(..) {
                send(&entry)?;
            }
        }
        Ok(())
    }

    /// Restoration: writes changelog records straight to the bottom layer.
    pub fn restore(&mut self, batch: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()> {
        self.bytes.write(batch)
    }

    /// Makes the bottom layer durable (before a checkpoint is written).
    pub fn flush_bytes(&mut self) -> Result<()> {
        self.bytes.flush()
    }

    pub fn approximate_num_entries(&self) -> u64 {
        self.bytes.approximate_num_entries()
    }

    /// Entries within the bounds, in key order, the cache's over the store's, deletes left
    /// out. Returns at least `RANGE_CHUNK_ENTRIES` entries unless the range has fewer; the
    /// caller continues after the last key.
    pub fn range_chunk(&mut self, from: Bound<&[u8]>, to: Bound<&[u8]>) -> Result<Vec<KeyValueBytes>> {
        self.check_open()?;
        let stored = self.bytes.range(from, to, RANGE_CHUNK_ENTRIES)?;
        // A full chunk from the store ends at its last key; cache entries past it belong to
        // the next chunk.
        let last = (stored.len() == RANGE_CHUNK_ENTRIES).then(|| stored.last().map(|(k, _)| k.clone())).flatten();
        let end: Bound<&[u8]> = match &last {
            Some(last) => Bound::Included(last.as_slice()),
            None => to,
        };
        let mut cached = self.cache.range(from, end).peekable();
        let mut out = Vec::with_capacity(stored.len());
        let mut stored = stored.into_iter().peekable();
        loop {
            let take_cache = match (cached.peek(), stored.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ck, _)), Some((sk, _))) => *ck <= sk.as_slice(),
            };
            if take_cache {
                let Some((key, value)) = cached.next() else { break };
                if stored.peek().is_some_and(|(sk, _)| sk.as_slice() == key) {
                    stored.next();
                }
                if let Some(value) = value {
                    out.push((key.to_vec(), value.to_vec()));
                }
            } else if let Some(kv) = stored.next() {
                out.push(kv);
            }
        }
        Ok(out)
    }
}

/// Builds a store for the Processor API ([`crate::StreamsBuilder::add_state_store`]).
/// Logging is on and caching off by default, as in Kafka Streams.
pub struct StoreBuilder<KS, VS> {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) changelog_config: BTreeMap<String, String>,
    pub(crate) keys: KS,
    pub(crate) values: VS,
}

impl<KS: std::fmt::Debug, VS: std::fmt::Debug> std::fmt::Debug for StoreBuilder<KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

impl<KS: Serde, VS: Serde> StoreBuilder<KS, VS> {
    /// A RocksDB key-value store.
    pub fn persistent(name: impl Into<String>, keys: KS, values: VS) -> Self {
        Self::new(name.into(), StoreKind::Persistent, keys, values)
    }

    /// An in-memory key-value store.
    pub fn in_memory(name: impl Into<String>, keys: KS, values: VS) -> Self {
        Self::new(name.into(), StoreKind::InMemory, keys, values)
    }

    fn new(name: String, kind: StoreKind, keys: KS, values: VS) -> Self {
        StoreBuilder { name, kind, caching: false, logging: true, changelog_config: BTreeMap::new(), keys, values }
    }

    /// Puts a record cache in front of the store (off by default).
    pub fn caching(mut self, on: bool) -> Self {
        self.caching = on;
        self
    }

    /// Logs every write to `<application.id>-<store>-changelog` (on by default). Without it,
    /// the store does not move with its task and a persistent one is not restored.
    pub fn logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// A topic config for the changelog (it is always compacted).
    pub fn changelog_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.changelog_config.insert(key.into(), value.into());
        self
    }

    pub(crate) fn into_spec(self) -> StoreSpec {
        let keys: Arc<dyn DynSerde<KS::Target>> = Arc::new(self.keys);
        let values: Arc<dyn DynSerde<VS::Target>> = Arc::new(self.values);
        let serdes = StoreSerdes { keys, values };
        StoreSpec {
            name: self.name,
            kind: self.kind,
            caching: self.caching,
            logging: self.logging,
            changelog_config: self.changelog_config,
            types: (std::any::type_name::<KS::Target>(), std::any::type_name::<VS::Target>()),
            serdes: Arc::new(serdes),
        }
    }
}

/// A store's serdes, kept type-erased in the topology and recovered by type.
pub(crate) struct StoreSerdes<K, V> {
    pub keys: Arc<dyn DynSerde<K>>,
    pub values: Arc<dyn DynSerde<V>>,
}

impl<K, V> Clone for StoreSerdes<K, V> {
    fn clone(&self) -> Self {
        StoreSerdes { keys: self.keys.clone(), values: self.values.clone() }
    }
}

/// A store as the topology describes it.
#[derive(Clone)]
pub(crate) struct StoreSpec {
    pub name: String,
    pub kind: StoreKind,
    pub caching: bool,
    pub logging: bool,
    pub changelog_config: BTreeMap<String, String>,
    /// Key and value type names, for error messages.
    pub types: (&'static str, &'static str),
    /// `StoreSerdes<K, V>`.
    pub serdes: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("caching", &self.caching)
            .field("logging", &self.logging)
            .finish()
    }
}

impl StoreSpec {
    /// The serdes, if the store holds `K` keys and `V` values; else an error naming both
    /// sides' types.
    pub fn serdes<K: 'static, V: 'static>(&self, wanted_by: &str) -> Result<StoreSerdes<K, V>> {
        self.serdes.downcast_ref::<StoreSerdes<K, V>>().cloned().ok_or_else(|| {
            StreamsError::Topology(format!(
                "operator {wanted_by} asks for store '{}' as <{}, {}>, but it holds <{}, {}>",
                self.name,
                std::any::type_name::<K>(),
                std::any::type_name::<V>(),
                self.types.0,
                self.types.1
            ))
        })
    }
}

/// A key-value store as a processor uses it: typed, read and write.
pub struct KeyValueStore<K, V> {
    inner: SharedStore,
    /// The store's name, for errors (kept here so that errors need not take the lock).
    name: Arc<str>,
    /// The timestamp of the record being processed: what writes are logged with.
    clock: Rc<Cell<i64>>,
    /// The topic name the serdes are told (the changelog's).
    topic: Arc<str>,
    serdes: StoreSerdes<K, V>,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore").field("topic", &self.topic).finish()
    }
}

impl<K, V> KeyValueStore<K, V> {
    pub(crate) fn new(inner: SharedStore, topic: Arc<str>, serdes: StoreSerdes<K, V>, clock: Rc<Cell<i64>>) -> Self {
        let name = inner.lock().name.clone();
        KeyValueStore { inner, name, clock, topic, serdes, key_buf: Vec::new(), value_buf: Vec::new() }
    }

    fn encode_key(&mut self, key: &K) -> Result<()> {
        self.key_buf.clear();
        match self.serdes.keys.serialize_dyn(&self.topic, key, &mut self.key_buf) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StreamsError::store(&self.name, "a store key cannot be null")),
            Err(e) => Err(StreamsError::Serialization { operator: format!("store {}", self.name), source: e }),
        }
    }

    fn decode_value(&self, bytes: Option<&[u8]>) -> Result<Option<V>> {
        match bytes {
            None => Ok(None),
            Some(b) => self
                .serdes
                .values
                .deserialize_dyn(&self.topic, Some(b))
                .map(Some)
                .map_err(|e| StreamsError::Serialization { operator: format!("store {}", self.topic), source: e }),
        }
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &K) -> Result<Option<V>> {
        self.encode_key(key)?;
        let raw = self.inner.lock().get(&self.key_buf, |v| v.map(<[u8]>::to_vec))?;
        self.decode_value(raw.as_deref())
    }

    /// Sets `key` to `value`; a value the serde writes as null deletes the key.
    pub fn put(&mut self, key: &K, value: &V) -> Result<()> {
        self.encode_key(key)?;
        self.value_buf.clear();
        let present = self
            .serdes
            .values
            .serialize_dyn(&self.topic, value, &mut self.value_buf)
            .map_err(|e| StreamsError::Serialization { operator: format!("store {}", self.topic), source: e })?;
        let mut inner = self.inner.lock();
        if inner.put(&self.key_buf, present.then_some(self.value_buf.as_slice()), self.clock.get())? {
            inner.flush_cache(false)?;
        }
        Ok(())
    }

    /// Sets `key` to `value` unless it has a value; returns the value it had.
    pub fn put_if_absent(&mut self, key: &K, value: &V) -> Result<Option<V>> {
        let old = self.get(key)?;
        if old.is_none() {
            self.put(key, value)?;
        }
        Ok(old)
    }

    /// Deletes `key`; returns the value it had.
    pub fn delete(&mut self, key: &K) -> Result<Option<V>> {
        let old = self.get(key)?;
        self.encode_key(key)?;
        let mut inner = self.inner.lock();
        if inner.put(&self.key_buf, None, self.clock.get())? {
            inner.flush_cache(false)?;
        }
        Ok(old)
    }

    /// Entries with keys from `from` to `to`, both included, in the order of their
    /// serialized bytes (as in Kafka).
    pub fn range(&mut self, from: &K, to: &K) -> Result<KeyValueIterator<K, V>> {
        self.encode_key(from)?;
        let from = self.key_buf.clone();
        self.encode_key(to)?;
        let to = self.key_buf.clone();
        Ok(KeyValueIterator::new(
            vec![self.inner.clone()],
            self.topic.clone(),
            self.serdes.clone(),
            Some(from),
            Some(to),
        ))
    }

    /// Every entry, in key-byte order.
    pub fn all(&self) -> KeyValueIterator<K, V> {
        KeyValueIterator::new(vec![self.inner.clone()], self.topic.clone(), self.serdes.clone(), None, None)
    }

    /// An estimate of the number of keys.
    pub fn approximate_num_entries(&self) -> u64 {
        self.inner.lock().approximate_num_entries()
    }
}

/// Iterates over store entries, reading them in chunks so that the store's lock is held
/// briefly. Yields errors (a closed store, a value that does not deserialize) as items.
pub struct KeyValueIterator<K, V> {
    stores: Vec<SharedStore>,
    topic: Arc<str>,
    serdes: StoreSerdes<K, V>,
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
    /// Where the next chunk of the current store starts (exclusive), if not at `from`.
    after: Option<Vec<u8>>,
    chunk: std::vec::IntoIter<KeyValueBytes>,
    done_with_store: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for KeyValueIterator<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueIterator").field("topic", &self.topic).finish()
    }
}

impl<K, V> KeyValueIterator<K, V> {
    pub(crate) fn new(
        mut stores: Vec<SharedStore>,
        topic: Arc<str>,
        serdes: StoreSerdes<K, V>,
        from: Option<Vec<u8>>,
        to: Option<Vec<u8>>,
    ) -> Self {
        stores.reverse();
        KeyValueIterator {
            stores,
            topic,
            serdes,
            from,
            to,
            after: None,
            chunk: Vec::new().into_iter(),
            done_with_store: false,
            _types: PhantomData,
        }
    }

    fn next_chunk(&mut self) -> Result<bool> {
        loop {
            if self.done_with_store {
                self.stores.pop();
                self.after = None;
                self.done_with_store = false;
            }
            let Some(store) = self.stores.last() else { return Ok(false) };
            let from = match (&self.after, &self.from) {
                (Some(after), _) => Bound::Excluded(after.as_slice()),
                (None, Some(from)) => Bound::Included(from.as_slice()),
                (None, None) => Bound::Unbounded,
            };
            let to = self.to.as_deref().map_or(Bound::Unbounded, Bound::Included);
            let chunk = store.lock().range_chunk(from, to)?;
            if chunk.is_empty() {
                self.done_with_store = true;
                continue;
            }
            self.after = chunk.last().map(|(k, _)| k.clone());
            self.chunk = chunk.into_iter();
            return Ok(true);
        }
    }
}

impl<K, V> Iterator for KeyValueIterator<K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((key, value)) = self.chunk.next() {
                let decoded = self
                    .serdes
                    .keys
                    .deserialize_dyn(&self.topic, Some(&key))
                    .and_then(|k| self.serdes.values.deserialize_dyn(&self.topic, Some(&value)).map(|v| (k, v)));
                return Some(decoded.map_err(|e| StreamsError::Serialization {
                    operator: format!("store {}", self.topic),
                    source: e,
                }));
            }
            match self.next_chunk() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(e) => {
                    self.stores.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A store as interactive queries see it: every instance of it in this application
/// instance's tasks, read-only. Keys are looked up in each; iterators go store by store.
pub struct ReadOnlyKeyValueStore<K, V> {
    pub(crate) stores: Vec<SharedStore>,
    pub(crate) topic: Arc<str>,
    pub(crate) serdes: StoreSerdes<K, V>,
}

impl<K, V> std::fmt::Debug for ReadOnlyKeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyKeyValueStore")
            .field("topic", &self.topic)
            .field("instances", &self.stores.len())
            .finish()
    }
}

impl<K, V> ReadOnlyKeyValueStore<K, V> {
    fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        match self.serdes.keys.serialize_dyn(&self.topic, key, &mut out) {
            Ok(true) => Ok(out),
            Ok(false) => Err(StreamsError::store(&self.topic, "a store key cannot be null")),
            Err(e) => Err(StreamsError::Serialization { operator: format!("store {}", self.topic), source: e }),
        }
    }

    /// The value of `key` in whichever local instance has it.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = self.key_bytes(key)?;
        for store in &self.stores {
            let raw = store.lock().get(&key, |v| v.map(<[u8]>::to_vec))?;
            if let Some(raw) = raw {
                return self
                    .serdes
                    .values
                    .deserialize_dyn(&self.topic, Some(&raw))
                    .map(Some)
                    .map_err(|e| StreamsError::Serialization { operator: format!("store {}", self.topic), source: e });
            }
        }
        Ok(None)
    }

    /// Entries with keys from `from` to `to`, both included: each instance's in key-byte
    /// order, one instance after another.
    pub fn range(&self, from: &K, to: &K) -> Result<KeyValueIterator<K, V>> {
        let (from, to) = (self.key_bytes(from)?, self.key_bytes(to)?);
        Ok(KeyValueIterator::new(self.stores.clone(), self.topic.clone(), self.serdes.clone(), Some(from), Some(to)))
    }

    /// Every entry of every local instance.
    pub fn all(&self) -> KeyValueIterator<K, V> {
        KeyValueIterator::new(self.stores.clone(), self.topic.clone(), self.serdes.clone(), None, None)
    }

    /// An estimate of the number of keys over all local instances.
    pub fn approximate_num_entries(&self) -> u64 {
        self.stores.iter().map(|s| s.lock().approximate_num_entries()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::Serdes;

    fn inner(kind: StoreKind, dir: Option<&Path>, cache_bytes: usize) -> SharedStore {
        let bytes = StoreInner::open_bytes(kind, "s", dir).unwrap();
        Arc::new(Mutex::new(StoreInner::new("s", bytes, cache_bytes, true)))
    }

    fn typed(store: &SharedStore) -> KeyValueStore<String, i64> {
        let spec = StoreBuilder::in_memory("s", Serdes::string(), Serdes::i64()).into_spec();
        KeyValueStore::new(
            store.clone(),
            "app-s-changelog".into(),
            spec.serdes::<String, i64>("test").unwrap(),
            Rc::new(Cell::new(0)),
        )
    }

    #[test]
    fn typed_stores_read_write_and_range_on_both_kinds_with_and_without_cache() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, cache) in [
            (StoreKind::InMemory, 0),
            (StoreKind::InMemory, 1 << 20),
            (StoreKind::Persistent, 0),
            (StoreKind::Persistent, 1 << 20),
        ] {
            let shared = inner(kind, Some(&dir.path().join(format!("{kind:?}{cache}"))), cache);
            let mut store = typed(&shared);
            for (i, k) in ["b", "a", "d", "c"].iter().enumerate() {
                store.put(&k.to_string(), &(i as i64)).unwrap();
            }
            assert_eq!(store.get(&"d".into()).unwrap(), Some(2));
            assert_eq!(store.delete(&"b".into()).unwrap(), Some(0));
            assert_eq!(store.get(&"b".into()).unwrap(), None);
            assert_eq!(store.put_if_absent(&"a".into(), &9).unwrap(), Some(1));
            let range: Vec<_> = store.range(&"a".into(), &"c".into()).unwrap().map(Result::unwrap).collect();
            assert_eq!(range, vec![("a".to_string(), 1), ("c".to_string(), 3)], "{kind:?} cache {cache}");
            let all: Vec<_> = store.all().map(|r| r.unwrap().0).collect();
            assert_eq!(all, ["a", "c", "d"]);
            // Every write reached the changelog queue: directly, or once the cache flushed.
            let mut guard = shared.lock();
            guard.flush_cache(false).unwrap();
            let mut logged = Vec::new();
            guard
                .drain_log(|e| {
                    logged.push((e.key.clone(), e.value.is_some()));
                    Ok(())
                })
                .unwrap();
            let expect_writes = if cache > 0 { 4 } else { 5 };
            assert_eq!(logged.len(), expect_writes, "{kind:?} cache {cache}: {logged:?}");
        }
    }

    #[test]
    fn range_chunks_merge_cache_over_store_across_chunk_boundaries() {
        let shared = inner(StoreKind::InMemory, None, 1 << 30);
        let mut store = typed(&shared);
        // 3000 keys in the store, then cache updates and deletes scattered over them.
        for i in 0..3000 {
            store.put(&format!("k{i:05}"), &i).unwrap();
        }
        shared.lock().flush_cache(false).unwrap();
        for i in (0..3000).step_by(7) {
            store.put(&format!("k{i:05}"), &-i).unwrap();
        }
        for i in (3..3000).step_by(11) {
            store.delete(&format!("k{i:05}")).unwrap();
        }
        store.put(&"k99999".into(), &1).unwrap();
        let got: Vec<(String, i64)> = store.all().map(Result::unwrap).collect();
        let mut want: Vec<(String, i64)> = (0..3000)
            .filter(|i| !(*i >= 3 && (i - 3) % 11 == 0))
            .map(|i| (format!("k{i:05}"), if i % 7 == 0 { -i } else { i }))
            .collect();
        want.push(("k99999".into(), 1));
        assert_eq!(got, want);
    }

    #[test]
    fn a_closed_store_tells_queries_to_look_again() {
        let shared = inner(StoreKind::InMemory, None, 0);
        let mut store = typed(&shared);
        store.put(&"a".into(), &1).unwrap();
        shared.lock().close();
        let e = store.get(&"a".into()).unwrap_err().to_string();
        assert!(e.contains("closed"), "{e}");
        assert!(store.all().next().unwrap().is_err());
    }

    #[test]
    fn asking_for_a_store_with_the_wrong_types_names_both() {
        let spec = StoreBuilder::in_memory("counts", Serdes::string(), Serdes::i64()).into_spec();
        let e = spec.serdes::<String, String>("KSTREAM-PROCESSOR-0000000002").err().unwrap().to_string();
        assert!(e.contains("KSTREAM-PROCESSOR-0000000002") && e.contains("alloc::string::String, i64"), "{e}");
    }
}
