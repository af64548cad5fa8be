//! What every operator of a task shares while it runs: where the current record came from,
//! stream time, the stores, the punctuation schedule, and the record collector that takes
//! output records to topics.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::DeserializationHandler;
use crate::error::Result;
use crate::processor::PunctuationType;
use crate::record::{Headers, RecordContext, TaskId};
use crate::state::{SharedStore, StoreSpec};

/// A record on its way out of the topology, as bytes.
#[derive(Debug)]
pub(crate) struct OutRecord<'a> {
    pub topic: &'a str,
    /// `None`: the producer's partitioner decides (murmur2 of the key, as Kafka's).
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
    pub headers: &'a Headers,
}

/// Where output records go: a producer in a running application, a list in the test driver.
pub(crate) trait RecordCollector {
    fn send(&mut self, record: OutRecord<'_>) -> Result<()>;
}

/// A store as the task holds it.
#[derive(Debug, Clone)]
pub(crate) struct TaskStore {
    pub spec: StoreSpec,
    pub store: SharedStore,
    /// `<application.id>-<store>-changelog`, also the topic name its serdes are told.
    pub changelog: Arc<str>,
    /// The store's flag for writes waiting to be sent to the changelog.
    pub log_queued: Arc<AtomicBool>,
}

/// A scheduled punctuation.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub id: u64,
    /// Index of the processor in the task's processor list.
    pub node: usize,
    pub kind: PunctuationType,
    pub interval_ms: i64,
    pub next_ms: i64,
    pub cancelled: bool,
}

impl Schedule {
    /// Kafka's `PunctuationSchedule.next`: the next time after `now`, on the grid of
    /// `interval_ms` from the last, skipping the intervals that were missed.
    pub fn advance(&mut self, now: i64) {
        let missed = (now - self.next_ms) / self.interval_ms;
        self.next_ms += (missed.max(0) + 1) * self.interval_ms;
    }
}

/// Counters a task keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Records that reached a source operator.
    pub processed: u64,
    /// Records skipped because they did not deserialize (handler said continue) or had an
    /// invalid timestamp.
    pub skipped: u64,
    /// Punctuations run.
    pub punctuations: u64,
}

pub(crate) struct TaskContext {
    pub task: TaskId,
    pub application_id: Arc<str>,
    pub record: RecordContext,
    /// The timestamp of the record being processed (or of the punctuation), shared with the
    /// store handles processors hold, which log their writes with it.
    pub clock: Rc<Cell<i64>>,
    /// The largest timestamp processed so far; -1 before the first record.
    pub stream_time: i64,
    /// The wall-clock time as of the last check (ms since the epoch, or the test driver's).
    pub wall_clock_ms: i64,
    pub collector: Box<dyn RecordCollector>,
    pub stores: HashMap<String, TaskStore>,
    pub schedules: Vec<Schedule>,
    next_schedule_id: u64,
    pub deserialization_handler: DeserializationHandler,
    pub metrics: TaskMetrics,
    /// A processor asked for a commit.
    pub commit_requested: bool,
    /// Reused serialization buffers, so a record costs no allocation on its way out.
    pub key_buf: Vec<u8>,
    pub value_buf: Vec<u8>,
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext").field("task", &self.task).field("stream_time", &self.stream_time).finish()
    }
}

impl TaskContext {
    pub fn new(
        task: TaskId,
        application_id: Arc<str>,
        collector: Box<dyn RecordCollector>,
        deserialization_handler: DeserializationHandler,
        wall_clock_ms: i64,
    ) -> Self {
        TaskContext {
            task,
            application_id,
            record: RecordContext { topic: None, partition: -1, offset: -1 },
            clock: Rc::new(Cell::new(-1)),
            stream_time: -1,
            wall_clock_ms,
            collector,
            stores: HashMap::new(),
            schedules: Vec::new(),
            next_schedule_id: 0,
            deserialization_handler,
            metrics: TaskMetrics::default(),
            commit_requested: false,
            key_buf: Vec::with_capacity(64),
            value_buf: Vec::with_capacity(256),
        }
    }

    /// Schedules a punctuation for processor `node`; Kafka's alignment: stream time from 0,
    /// so the first record fires it, wall-clock time one interval from now.
    pub fn schedule(&mut self, node: usize, interval_ms: i64, kind: PunctuationType) -> u64 {
        let id = self.next_schedule_id;
        self.next_schedule_id += 1;
        let next_ms = match kind {
            PunctuationType::StreamTime => 0,
            PunctuationType::WallClockTime => self.wall_clock_ms + interval_ms,
        };
        self.schedules.push(Schedule { id, node, kind, interval_ms: interval_ms.max(1), next_ms, cancelled: false });
        id
    }

    pub fn cancel(&mut self, id: u64) {
        for s in &mut self.schedules {
            if s.id == id {
                s.cancelled = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_skips_missed_intervals_as_kafka_does() {
        let mut s = Schedule {
            id: 0,
            node: 0,
            kind: PunctuationType::StreamTime,
            interval_ms: 10,
            next_ms: 0,
            cancelled: false,
        };
        s.advance(3);
        assert_eq!(s.next_ms, 10);
        s.advance(10);
        assert_eq!(s.next_ms, 20);
        s.advance(57);
        assert_eq!(s.next_ms, 60, "one punctuation for the gap, then back on the grid");
    }
}
