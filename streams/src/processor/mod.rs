//! The Processor API, and the operators the DSL is made of.
//!
//! A [`Processor`] gets each record with a [`ProcessorContext`] through which it forwards
//! records downstream (with any key, value, timestamp and headers), reaches the state stores
//! it was connected to, and schedules punctuations on stream time or wall-clock time. A
//! [`FixedKeyProcessor`] (`process_values`) may change values but not keys, so the stream
//! stays partitioned as it was and no repartition follows.
//!
//! Inside a task, operators call each other directly: a record is a plain value handed down
//! by move, and an operator reaches its children through one pointer each, so there is no
//! queue, no allocation and no type check between operators.

pub(crate) mod nodes;
pub(crate) mod stateful;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::record::{Headers, Record, RecordContext, TaskId};
use crate::state::KeyValueStore;
use crate::task::context::TaskContext;

/// What drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// Stream time: the largest record timestamp the task has processed. Fires only as
    /// records arrive.
    StreamTime,
    /// The system clock (the test driver's clock in tests).
    WallClockTime,
}

/// A scheduled punctuation, to tell several apart in [`Processor::punctuate`] or to cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Punctuator(pub(crate) u64);

/// A processor of the Processor API. One instance runs per task, created by the supplier
/// given to [`KStream::process`](crate::KStream::process).
pub trait Processor<KIn, VIn, KOut, VOut> {
    /// Called once before the first record: get stores, schedule punctuations.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        Ok(())
    }

    /// Processes one record.
    fn process(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, record: Record<KIn, VIn>) -> Result<()>;

    /// A punctuation this processor scheduled is due; `timestamp` is the stream time or the
    /// wall-clock time that triggered it.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_, KOut, VOut>,
        _punctuator: Punctuator,
        _timestamp: i64,
    ) -> Result<()> {
        Ok(())
    }

    /// Called when the task closes.
    fn close(&mut self) {}
}

/// A processor that keeps keys as they are ([`KStream::process_values`](crate::KStream::process_values)).
pub trait FixedKeyProcessor<K, VIn, VOut> {
    /// Called once before the first record.
    fn init(&mut self, _ctx: &mut FixedKeyContext<'_, K, VOut>) -> Result<()> {
        Ok(())
    }

    /// Processes one record.
    fn process(&mut self, ctx: &mut FixedKeyContext<'_, K, VOut>, record: FixedKeyRecord<K, VIn>) -> Result<()>;

    /// A punctuation this processor scheduled is due.
    fn punctuate(
        &mut self,
        _ctx: &mut FixedKeyContext<'_, K, VOut>,
        _punctuator: Punctuator,
        _timestamp: i64,
    ) -> Result<()> {
        Ok(())
    }

    /// Called when the task closes.
    fn close(&mut self) {}
}

/// A record whose key cannot change: only values, timestamps and headers.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedKeyRecord<K, V> {
    key: K,
    /// The value.
    pub value: V,
    /// The timestamp (ms).
    pub timestamp: i64,
    /// The headers.
    pub headers: Headers,
}

impl<K, V> FixedKeyRecord<K, V> {
    /// The key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> FixedKeyRecord<K, V2> {
        FixedKeyRecord { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    pub(crate) fn from_record(record: Record<K, V>) -> Self {
        FixedKeyRecord { key: record.key, value: record.value, timestamp: record.timestamp, headers: record.headers }
    }

    pub(crate) fn into_record(self) -> Record<K, V> {
        Record { key: self.key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }
}

/// What every processor context offers besides forwarding.
#[derive(Debug)]
pub struct ContextCore<'a> {
    pub(crate) task: &'a mut TaskContext,
    pub(crate) node: usize,
    pub(crate) name: &'a str,
    pub(crate) stores: &'a [String],
    pub(crate) in_init: bool,
}

impl ContextCore<'_> {
    /// The store `name`, which must have been connected to this processor.
    pub fn get_state_store<K: 'static, V: 'static>(&mut self, name: &str) -> Result<KeyValueStore<K, V>> {
        if !self.stores.iter().any(|s| s == name) {
            return Err(StreamsError::Topology(format!(
                "processor {} uses store '{name}' but was not connected to it; name it in process(..., &[\"{name}\"])",
                self.name
            )));
        }
        let store = self.task.stores.get(name).ok_or_else(|| {
            StreamsError::Topology(format!("processor {}: store '{name}' was never added to the topology", self.name))
        })?;
        let serdes = store.spec.serdes::<K, V>(self.name)?;
        Ok(KeyValueStore::new(store.store.clone(), store.changelog.clone(), serdes, self.task.clock.clone()))
    }

    /// Schedules [`Processor::punctuate`] every `interval` of `kind` time.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Punctuator {
        let interval_ms = interval.as_millis().min(i64::MAX as u128) as i64;
        Punctuator(self.task.schedule(self.node, interval_ms, kind))
    }

    /// Cancels a punctuation.
    pub fn cancel(&mut self, punctuator: Punctuator) {
        self.task.cancel(punctuator.0);
    }

    /// Where the current record was read (no topic inside a punctuation).
    pub fn record_context(&self) -> &RecordContext {
        &self.task.record
    }

    /// The task.
    pub fn task_id(&self) -> TaskId {
        self.task.task
    }

    /// `application.id`.
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }

    /// The task's stream time: the largest record timestamp processed (-1 before any).
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// The wall-clock time the task last read (ms since the epoch; the test driver's clock
    /// in tests).
    pub fn current_system_time_ms(&self) -> i64 {
        self.task.wall_clock_ms
    }

    /// Asks for a commit as soon as the current record is done.
    pub fn commit(&mut self) {
        self.task.commit_requested = true;
    }

    fn check_forward(&self) -> Result<()> {
        if self.in_init {
            return Err(StreamsError::Processing {
                task: self.task.task.to_string(),
                operator: self.name.to_string(),
                reason: "init may not forward records".into(),
            });
        }
        Ok(())
    }
}

/// The context of a [`Processor`]: forwards records of any key.
pub struct ProcessorContext<'a, K, V> {
    core: ContextCore<'a>,
    children: &'a [Child<K, V>],
}

impl<'a, K: Clone + 'static, V: Clone + 'static> ProcessorContext<'a, K, V> {
    pub(crate) fn new(core: ContextCore<'a>, children: &'a [Child<K, V>]) -> Self {
        ProcessorContext { core, children }
    }

    /// Sends `record` to every operator downstream.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<()> {
        self.core.check_forward()?;
        forward(self.children, self.core.task, record)
    }
}

impl<K, V> std::fmt::Debug for ProcessorContext<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext").field("core", &self.core).field("children", &self.children.len()).finish()
    }
}

impl<'a, K, V> std::ops::Deref for ProcessorContext<'a, K, V> {
    type Target = ContextCore<'a>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl<K, V> std::ops::DerefMut for ProcessorContext<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.core
    }
}

/// The context of a [`FixedKeyProcessor`]: forwards records with their keys unchanged.
pub struct FixedKeyContext<'a, K, V> {
    core: ContextCore<'a>,
    children: &'a [Child<K, V>],
}

impl<'a, K: Clone + 'static, V: Clone + 'static> FixedKeyContext<'a, K, V> {
    pub(crate) fn new(core: ContextCore<'a>, children: &'a [Child<K, V>]) -> Self {
        FixedKeyContext { core, children }
    }

    /// Sends `record` to every operator downstream.
    pub fn forward(&mut self, record: FixedKeyRecord<K, V>) -> Result<()> {
        self.core.check_forward()?;
        forward(self.children, self.core.task, record.into_record())
    }
}

impl<K, V> std::fmt::Debug for FixedKeyContext<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixedKeyContext").field("core", &self.core).field("children", &self.children.len()).finish()
    }
}

impl<'a, K, V> std::ops::Deref for FixedKeyContext<'a, K, V> {
    type Target = ContextCore<'a>;
    fn deref(&self) -> &Self::Target {
        &self.core
    }
}

impl<K, V> std::ops::DerefMut for FixedKeyContext<'_, K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.core
    }
}

/// An operator inside a task, taking records of one type.
pub(crate) trait Node<K, V> {
    fn process(&mut self, ctx: &mut TaskContext, record: Record<K, V>) -> Result<()>;

    /// Records whose keys serialize to `keys` are coming soon: an operator that looks
    /// keys up in a store may start loading them. Only a hint; most operators ignore it.
    fn prefetch_keys(&self, _keys: &[&[u8]]) {}
}

/// An operator as its parents hold it. Shared because an operator after a `merge` has
/// several parents; a task runs on one thread, so `Rc` suffices.
pub(crate) type Child<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// Operators with an `init`, punctuations and a `close` (user processors).
pub(crate) trait Lifecycle {
    fn init(&mut self, ctx: &mut TaskContext, me: usize) -> Result<()>;
    fn punctuate(&mut self, ctx: &mut TaskContext, me: usize, punctuator: Punctuator, timestamp: i64) -> Result<()>;
    fn close(&mut self);
}

/// Operators with a record cache to flush at commit (tables and aggregations): flushing
/// forwards what the cache held back.
pub(crate) trait Flush {
    fn flush(&mut self, ctx: &mut TaskContext) -> Result<()>;
}

/// Hands `record` to each child; all but the last get a clone.
pub(crate) fn forward<K: Clone, V: Clone>(
    children: &[Child<K, V>],
    ctx: &mut TaskContext,
    record: Record<K, V>,
) -> Result<()> {
    match children.split_last() {
        None => Ok(()),
        Some((last, rest)) => {
            for child in rest {
                child.borrow_mut().process(ctx, record.clone())?;
            }
            last.borrow_mut().process(ctx, record)
        }
    }
}
