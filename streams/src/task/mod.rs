//! A task: one partition of one sub-topology, with its operators and its stores.
//!
//! The same task runs inside an application's stream thread and inside the
//! [`TopologyTestDriver`](crate::TopologyTestDriver). It takes records one at a time, keeps
//! stream time, runs punctuations, hands changelog writes to the record collector, and at a
//! commit flushes its caches. What it has consumed is what the thread commits once the
//! collector's writes are acknowledged.

pub(crate) mod context;

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use freshet_log::client::ConsumerRecord;

use crate::config::DeserializationHandler;
use crate::error::{Result, StreamsError};
use crate::processor::nodes::RawSource;
use crate::processor::{Flush, Lifecycle, PunctuationType, Punctuator};
use crate::record::{RecordContext, TaskId};
use crate::state::SharedStore;
use crate::topology::{Built, Instantiator, Subtopology, Topology};
use context::{OutRecord, RecordCollector, TaskContext, TaskMetrics, TaskStore};

/// Opens a store of a task: `(spec, changelog topic) -> store`.
pub(crate) type OpenStore<'a> = &'a mut dyn FnMut(&crate::state::StoreSpec, &str) -> Result<SharedStore>;

pub(crate) struct StreamTask {
    pub id: TaskId,
    pub ctx: TaskContext,
    sources: Vec<Box<dyn RawSource>>,
    /// The input partitions records came from, found per record by a short scan.
    inputs: Vec<Input>,
    subtopology: Subtopology,
    topology: Arc<Topology>,
    lifecycles: Vec<Rc<RefCell<dyn Lifecycle>>>,
    /// Operators with caches, parents before children.
    flushers: Vec<Rc<RefCell<dyn Flush>>>,
}

/// An input partition of a task.
#[derive(Debug)]
struct Input {
    topic: Arc<str>,
    partition: i32,
    /// Index into the task's sources.
    source: usize,
    /// The next offset to consume (what a commit stores); `None` before the first record.
    next_offset: Option<i64>,
    /// The largest timestamp seen, for timestamp extractors; -1 before the first.
    partition_time: i64,
}

impl std::fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask").field("id", &self.id).field("stream_time", &self.ctx.stream_time).finish()
    }
}

impl StreamTask {
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        topology: Arc<Topology>,
        subtopology: &Subtopology,
        application_id: Arc<str>,
        id: TaskId,
        collector: Box<dyn RecordCollector>,
        handler: DeserializationHandler,
        open_store: OpenStore<'_>,
        wall_clock_ms: i64,
    ) -> Result<Self> {
        let mut inst = Instantiator::new(&topology, application_id.clone(), open_store);
        let mut sources = Vec::new();
        for &source in &subtopology.sources {
            let build = topology.nodes[source].build.clone();
            match build(&mut inst, source)? {
                Built::Source(s) => sources.push(s),
                Built::Node(_) => {
                    return Err(StreamsError::Topology(format!("{} is not a source", topology.nodes[source].name)));
                }
            }
        }
        let lifecycles = std::mem::take(&mut inst.lifecycles);
        let mut flushers = std::mem::take(&mut inst.flushers);
        // Operators were made children first; caches flush parents first, so what a parent
        // flushes reaches its children's caches before they flush.
        flushers.reverse();
        let stores = std::mem::take(&mut inst.stores);
        drop(inst);
        let mut ctx = TaskContext::new(id, application_id, collector, handler, wall_clock_ms);
        ctx.stores = stores;
        let mut task = StreamTask {
            id,
            ctx,
            sources,
            inputs: Vec::new(),
            subtopology: subtopology.clone(),
            topology,
            lifecycles,
            flushers,
        };
        // Parents first, as Kafka initializes processors in topological order.
        for i in (0..task.lifecycles.len()).rev() {
            let node = task.lifecycles[i].clone();
            node.borrow_mut().init(&mut task.ctx, i)?;
        }
        Ok(task)
    }

    pub fn stores(&self) -> impl Iterator<Item = &TaskStore> {
        self.ctx.stores.values()
    }

    pub fn metrics(&self) -> TaskMetrics {
        self.ctx.metrics
    }

    /// The index of `topic` (resolved) in the task's sources.
    fn source_for(&self, topic: &str) -> Option<usize> {
        let node = self.subtopology.source_for(topic, &self.ctx.application_id, &self.topology.nodes)?;
        self.subtopology.sources.iter().position(|&s| s == node)
    }

    /// The input partition a record came from. The records of one fetch share their topic
    /// name's allocation, so the scan is a pointer comparison per input; a new fetch's
    /// allocation is compared by name once and then remembered.
    fn input(&mut self, topic: &Arc<str>, partition: i32) -> Option<usize> {
        if let Some(i) = self.inputs.iter().position(|p| Arc::ptr_eq(&p.topic, topic) && p.partition == partition) {
            return Some(i);
        }
        if let Some(i) = self.inputs.iter().position(|p| p.topic == *topic && p.partition == partition) {
            self.inputs[i].topic = topic.clone();
            return Some(i);
        }
        let source = self.source_for(topic)?;
        let input = Input { topic: topic.clone(), partition, source, next_offset: None, partition_time: -1 };
        self.inputs.push(input);
        Some(self.inputs.len() - 1)
    }

    /// Whether one of the task's sources reads `topic` (resolved).
    pub fn accepts(&mut self, topic: &Arc<str>, partition: i32) -> bool {
        self.input(topic, partition).is_some()
    }

    /// Input partition -> the next offset to consume: what a commit stores.
    pub fn consumed(&self) -> impl Iterator<Item = (&Arc<str>, i32, i64)> {
        self.inputs.iter().filter_map(|p| Some((&p.topic, p.partition, p.next_offset?)))
    }

    /// The event time of `record`, or `None` if its topic is not an input of this task.
    pub fn timestamp_of(&mut self, record: &ConsumerRecord) -> Option<i64> {
        let index = self.input(&record.topic, record.partition)?;
        let input = &self.inputs[index];
        Some(self.sources[input.source].extract_timestamp(record, input.partition_time))
    }

    /// Processes one input record through the topology.
    pub fn process(&mut self, record: ConsumerRecord) -> Result<()> {
        let Some(index) = self.input(&record.topic, record.partition) else {
            return Err(StreamsError::IllegalState(format!(
                "task {} got a record of topic {}, which none of its sources reads",
                self.id, record.topic
            )));
        };
        let input = &mut self.inputs[index];
        let timestamp = self.sources[input.source].extract_timestamp(&record, input.partition_time);
        input.next_offset = Some(record.offset + 1);
        if timestamp < 0 {
            self.ctx.metrics.skipped += 1;
            tracing::warn!(
                task = %self.id, topic = %record.topic, partition = record.partition, offset = record.offset, timestamp,
                "skipping a record with a negative timestamp"
            );
            return Ok(());
        }
        input.partition_time = input.partition_time.max(timestamp);
        let source = input.source;
        // The topic is set only when it changes: cloning the name's Arc per record would
        // be two atomic operations on a count the fetcher thread is updating too.
        if !self.ctx.record.topic.as_ref().is_some_and(|t| Arc::ptr_eq(t, &record.topic)) {
            self.ctx.record.topic = Some(record.topic.clone());
        }
        self.ctx.record.partition = record.partition;
        self.ctx.record.offset = record.offset;
        self.ctx.clock.set(timestamp);
        self.ctx.stream_time = self.ctx.stream_time.max(timestamp);
        let (partition, offset) = (record.partition, record.offset);
        let sources = &mut self.sources;
        let ctx = &mut self.ctx;
        catch_unwind(AssertUnwindSafe(|| sources[source].process_raw(ctx, record, timestamp))).unwrap_or_else(
            |payload| {
                let topic = self.ctx.record.topic.as_deref().unwrap_or("?");
                let during = format!("processing the record at {topic}-{partition}@{offset}");
                Err(StreamsError::panicked(self.id, during, &*payload))
            },
        )?;
        self.drain_changelogs()
    }

    /// A hint that `records`, all of one input partition, are processed soon (see
    /// [`RawSource::prefetch`]).
    pub fn prefetch(&mut self, records: &[ConsumerRecord]) {
        if let Some(first) = records.first()
            && let Some(index) = self.input(&first.topic, first.partition)
        {
            self.sources[self.inputs[index].source].prefetch(records);
        }
    }

    /// Runs the punctuations of `kind` due at `now` (stream time or wall-clock time).
    /// Returns whether any ran.
    pub fn punctuate(&mut self, kind: PunctuationType) -> Result<bool> {
        let now = match kind {
            PunctuationType::StreamTime => self.ctx.stream_time,
            PunctuationType::WallClockTime => self.ctx.wall_clock_ms,
        };
        if now < 0 {
            return Ok(false);
        }
        let due = |s: &context::Schedule| !s.cancelled && s.kind == kind && s.next_ms <= now;
        if !self.ctx.schedules.iter().any(due) {
            return Ok(false);
        }
        let mut fired = false;
        let mut i = 0;
        while i < self.ctx.schedules.len() {
            let schedule = &mut self.ctx.schedules[i];
            i += 1;
            if schedule.cancelled || schedule.kind != kind || schedule.next_ms > now {
                continue;
            }
            schedule.advance(now);
            let (node, id) = (schedule.node, schedule.id);
            self.ctx.record = RecordContext { topic: None, partition: -1, offset: -1 };
            self.ctx.clock.set(now);
            let processor = self.lifecycles[node].clone();
            let ctx = &mut self.ctx;
            catch_unwind(AssertUnwindSafe(|| processor.borrow_mut().punctuate(ctx, node, Punctuator(id), now)))
                .unwrap_or_else(|payload| {
                    let during = format!("in a {kind:?} punctuation at {now}");
                    Err(StreamsError::panicked(self.id, during, &*payload))
                })?;
            self.ctx.metrics.punctuations += 1;
            fired = true;
        }
        self.ctx.schedules.retain(|s| !s.cancelled);
        self.drain_changelogs()?;
        Ok(fired)
    }

    pub fn set_wall_clock(&mut self, now_ms: i64) {
        self.ctx.wall_clock_ms = now_ms;
    }

    /// Sends the stores' queued changelog writes to the collector.
    fn drain_changelogs(&mut self) -> Result<()> {
        let partition = self.id.partition;
        let collector = &mut self.ctx.collector;
        for store in self.ctx.stores.values() {
            if !store.log_queued.load(Ordering::Relaxed) {
                continue;
            }
            store.store.lock().drain_log(|entry| {
                collector.send(OutRecord {
                    topic: &store.changelog,
                    partition: Some(partition),
                    key: Some(&entry.key),
                    value: entry.value.as_deref(),
                    timestamp: entry.timestamp,
                    headers: &Vec::new(),
                })
            })?;
        }
        Ok(())
    }

    /// Flushes the caches, which forwards what they held back and queues their writes to the
    /// changelogs, and hands those to the collector. The first half of a commit.
    pub fn flush(&mut self) -> Result<()> {
        for flusher in self.flushers.clone() {
            // Flushing forwards what the caches held back, through user functions.
            let ctx = &mut self.ctx;
            catch_unwind(AssertUnwindSafe(|| flusher.borrow_mut().flush(ctx))).unwrap_or_else(|payload| {
                Err(StreamsError::panicked(self.id, "flushing its caches".to_string(), &*payload))
            })?;
        }
        // A store the Processor API writes through has no operator to flush it. Its cache is
        // written down after the operators' flushes, which may still write to it; for the
        // operators' own stores this finds nothing dirty.
        for store in self.ctx.stores.values().filter(|s| s.spec.caching) {
            store.store.lock().flush_cache(false)?;
        }
        self.ctx.commit_requested = false;
        self.drain_changelogs()
    }

    /// Makes the stores durable, so that a checkpoint may be written.
    pub fn flush_stores(&mut self) -> Result<()> {
        for store in self.ctx.stores.values() {
            store.store.lock().flush_bytes()?;
        }
        Ok(())
    }

    /// Closes operators and stores. Queries of this task's stores fail from now on.
    pub fn close(&mut self) {
        for processor in &self.lifecycles {
            // The stores below are closed (and their locks let go) whatever a processor's
            // `close` does.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| processor.borrow_mut().close())) {
                let e = StreamsError::panicked(self.id, "closing a processor".to_string(), &*payload);
                tracing::warn!(task = %self.id, error = %e, "closing the task");
            }
        }
        for store in self.ctx.stores.values() {
            store.store.lock().close();
        }
    }
}
