//! The record collector of a stream thread: hands output and changelog records to the
//! thread's producer, remembers the changelog offsets the broker acknowledged (what
//! checkpoints record) and the first send that failed (which fails the next send or
//! commit, so input offsets are never committed past output that was lost).
//!
//! Records are staged, copied into one buffer, and handed to the producer together with
//! `Producer::send_all`: at the end of each pass of the thread's loop, when the stage
//! fills, and before every flush. One hand-off takes the producer's locks and
//! `buffer.memory` once for hundreds of records; sending each on its own cost more than
//! producing it. Staging keeps the order of sends, so each partition's records keep
//! theirs. `send_all` is async only when it must wait (for a topic's metadata, or for
//! room in `buffer.memory`); the collector polls it once, and blocks on it only if it is
//! not done.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use freshet_log::client::{ClientError, DeliveryFuture, Producer, ProducerRecord};
use freshet_log::record::Header;
use tokio::runtime::Handle;

use crate::error::{Result, StreamsError};
use crate::task::context::{OutRecord, RecordCollector};

/// Pending deliveries are checked for their outcome every this many sends.
const SWEEP_EVERY: usize = 4096;

/// How many of the newest pending deliveries a send looks through for its own batch.
const RECENT_BATCHES: usize = 4;

/// The stage is handed to the producer once it holds this many records...
const STAGE_RECORDS: usize = 1024;

/// ... or this many bytes of keys, values and headers.
const STAGE_BYTES: usize = 256 * 1024;

struct Pending {
    /// Index into `topics`.
    topic: usize,
    /// Whether the topic is a changelog (whose acknowledged offsets checkpoints need).
    changelog: bool,
    delivery: DeliveryFuture,
}

/// A record waiting to be handed to the producer; its bytes are in `Stage::data`.
struct Staged {
    /// Index into `State::topics`.
    topic: usize,
    partition: Option<i32>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    /// Into `Stage::headers`.
    headers: Range<usize>,
    timestamp: i64,
}

#[derive(Default)]
struct Stage {
    records: Vec<Staged>,
    data: Vec<u8>,
    /// Header keys and values, as ranges of `data`.
    headers: Vec<(Range<usize>, Option<Range<usize>>)>,
}

impl Stage {
    fn copy(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        start..self.data.len()
    }

    fn is_full(&self) -> bool {
        self.records.len() >= STAGE_RECORDS || self.data.len() >= STAGE_BYTES
    }

    fn clear(&mut self) {
        self.records.clear();
        self.data.clear();
        self.headers.clear();
    }
}

struct State {
    producer: Producer,
    handle: Handle,
    stage: Stage,
    pending: Vec<Pending>,
    /// Topics sent to, for `Staged::topic` and `Pending::topic`.
    topics: Vec<String>,
    /// The last topic sent to, checked before searching `topics`.
    last_topic: usize,
    /// (changelog, partition) -> the offset after the last acknowledged record.
    acked: HashMap<(String, i32), i64>,
    /// The first failed send, with the topic it was for.
    error: Option<(String, ClientError)>,
    sends: usize,
}

/// A stream thread's collector; its tasks hold clones.
#[derive(Clone)]
pub(crate) struct ProducerCollector(Rc<RefCell<State>>);

impl ProducerCollector {
    pub fn new(producer: Producer, handle: Handle) -> Self {
        ProducerCollector(Rc::new(RefCell::new(State {
            producer,
            handle,
            stage: Stage::default(),
            pending: Vec::new(),
            topics: Vec::new(),
            last_topic: 0,
            acked: HashMap::new(),
            error: None,
            sends: 0,
        })))
    }

    pub fn boxed(&self) -> Box<dyn RecordCollector> {
        Box::new(self.clone())
    }

    /// Hands the staged records to the producer.
    pub fn dispatch(&self) {
        self.0.borrow_mut().dispatch();
    }

    /// Waits until everything sent so far is acknowledged or failed; the first failure is
    /// the error.
    pub fn flush(&self) -> Result<()> {
        let (producer, handle) = {
            let mut state = self.0.borrow_mut();
            state.dispatch();
            (state.producer.clone(), state.handle.clone())
        };
        handle.block_on(producer.flush());
        let mut state = self.0.borrow_mut();
        state.sweep();
        state.failure()
    }

    /// The offset after the last acknowledged record of a changelog partition.
    pub fn acked(&self, changelog: &str, partition: i32) -> Option<i64> {
        self.0.borrow().acked.get(&(changelog.to_string(), partition)).copied()
    }

    /// Closes the producer after sending what is buffered.
    pub fn close(&self) {
        let (producer, handle) = {
            let mut state = self.0.borrow_mut();
            state.dispatch();
            (state.producer.clone(), state.handle.clone())
        };
        if let Err(e) = handle.block_on(producer.close()) {
            tracing::warn!(error = %e, "closing the producer");
        }
    }
}

impl State {
    /// Takes the outcomes of finished deliveries.
    fn sweep(&mut self) {
        let State { pending, topics, acked, error, .. } = self;
        pending.retain(|p| match p.delivery.try_result() {
            None => true,
            Some(Ok(meta)) => {
                if p.changelog && meta.offset >= 0 {
                    let next = acked.entry((topics[p.topic].clone(), meta.partition)).or_insert(0);
                    *next = (*next).max(meta.offset + 1);
                }
                false
            }
            Some(Err(e)) => {
                if error.is_none() {
                    *error = Some((topics[p.topic].clone(), e));
                }
                false
            }
        });
    }

    fn failure(&self) -> Result<()> {
        match &self.error {
            None => Ok(()),
            Some((topic, e)) => Err(collector_error(format!(
                "a write to {topic} failed, so the input it came from is not committed: {e}"
            ))),
        }
    }

    fn topic_index(&mut self, topic: &str) -> usize {
        if self.topics.get(self.last_topic).is_some_and(|t| t == topic) {
            return self.last_topic;
        }
        let index = match self.topics.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        self.last_topic = index;
        index
    }

    /// Hands the staged records to the producer in one `send_all`, and keeps one pending
    /// delivery per batch they went to.
    fn dispatch(&mut self) {
        if self.stage.records.is_empty() {
            return;
        }
        let State { producer, handle, stage, pending, topics, error, .. } = self;
        let data = &stage.data;
        let records: Vec<ProducerRecord<'_>> = stage
            .records
            .iter()
            .map(|staged| ProducerRecord {
                topic: &topics[staged.topic],
                partition: staged.partition,
                key: staged.key.clone().map(|r| &data[r]),
                value: staged.value.clone().map(|r| &data[r]),
                headers: stage.headers[staged.headers.clone()]
                    .iter()
                    .map(|(k, v)| Header { key: &data[k.clone()], value: v.clone().map(|r| &data[r]) })
                    .collect(),
                timestamp: Some(staged.timestamp),
            })
            .collect();
        let outcome = {
            let future = producer.send_all(&records);
            let mut future = std::pin::pin!(future);
            match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => handle.block_on(future),
            }
        };
        if let Some((i, e)) = outcome.failed.into_iter().next()
            && error.is_none()
        {
            *error = Some((topics[stage.records[i].topic].clone(), e));
        }
        // One delivery per batch: a batch's records share one outcome, and the one kept
        // is for its last record, whose offset is the largest. Records of a thread go to
        // few batches at a time (a topic's, its changelog's), so a batch that already has
        // a pending delivery is among the newest few.
        for (i, delivery) in outcome.deliveries {
            let staged = &stage.records[i];
            let recent = pending.len().saturating_sub(RECENT_BATCHES);
            match pending[recent..].iter_mut().rev().find(|p| p.delivery.same_batch(&delivery)) {
                Some(same) => same.delivery = delivery,
                None => pending.push(Pending {
                    topic: staged.topic,
                    // Changelog records are the ones sent to a fixed partition (the task's).
                    changelog: staged.partition.is_some(),
                    delivery,
                }),
            }
        }
        stage.clear();
    }
}

fn collector_error(reason: String) -> StreamsError {
    StreamsError::Processing { task: "-".into(), operator: "record collector".into(), reason }
}

impl RecordCollector for ProducerCollector {
    fn send(&mut self, record: OutRecord<'_>) -> Result<()> {
        let mut state = self.0.borrow_mut();
        if let Some((topic, e)) = &state.error {
            return Err(collector_error(format!("an earlier write to {topic} failed: {e}")));
        }
        let topic = state.topic_index(record.topic);
        let stage = &mut state.stage;
        let key = record.key.map(|k| stage.copy(k));
        let value = record.value.map(|v| stage.copy(v));
        let first_header = stage.headers.len();
        for (k, v) in record.headers {
            let header = (stage.copy(k.as_bytes()), v.as_deref().map(|v| stage.copy(v)));
            stage.headers.push(header);
        }
        let headers = first_header..stage.headers.len();
        let timestamp = record.timestamp.max(0);
        stage.records.push(Staged { topic, partition: record.partition, key, value, headers, timestamp });
        if stage.is_full() {
            state.dispatch();
        }
        state.sends += 1;
        if state.sends.is_multiple_of(SWEEP_EVERY) {
            state.sweep();
        }
        Ok(())
    }
}
