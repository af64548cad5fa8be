//! The record collector of a stream thread: hands output and changelog records to the
//! thread's producer, remembers the changelog offsets the broker acknowledged (what
//! checkpoints record) and the first send that failed (which fails the next commit, so
//! input offsets are never committed past output that was lost).
//!
//! `Producer::send` is async only when it must wait (for a topic's metadata, or for room
//! in `buffer.memory`). The collector polls it once, which appends the record to its
//! batch, and blocks on it only if it is not done: the common path costs no wake-up.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use freshet_log::client::{ClientError, DeliveryFuture, Producer, ProducerRecord};
use tokio::runtime::Handle;

use crate::error::{Result, StreamsError};
use crate::task::context::{OutRecord, RecordCollector};

/// Pending deliveries are checked for their outcome every this many sends.
const SWEEP_EVERY: usize = 4096;

/// How many of the newest pending deliveries a send looks through for its own batch.
const RECENT_BATCHES: usize = 4;

struct Pending {
    /// Index into `topics` for changelog records (whose offsets checkpoints need).
    changelog: Option<usize>,
    delivery: DeliveryFuture,
}

struct State {
    producer: Producer,
    handle: Handle,
    pending: Vec<Pending>,
    /// Changelog topics seen, for `Pending::changelog`.
    topics: Vec<String>,
    /// (changelog, partition) -> the offset after the last acknowledged record.
    acked: HashMap<(String, i32), i64>,
    /// The first failed send, with the topic it was for.
    error: Option<(String, ClientError)>,
    sends: usize,
    /// The last changelog topic sent to, by address, to find its index without hashing.
    last_changelog: Option<(*const u8, usize, usize)>,
}

/// A stream thread's collector; its tasks hold clones.
#[derive(Clone)]
pub(crate) struct ProducerCollector(Rc<RefCell<State>>);

impl ProducerCollector {
    pub fn new(producer: Producer, handle: Handle) -> Self {
        ProducerCollector(Rc::new(RefCell::new(State {
            producer,
            handle,
            pending: Vec::new(),
            topics: Vec::new(),
            acked: HashMap::new(),
            error: None,
            sends: 0,
            last_changelog: None,
        })))
    }

    pub fn boxed(&self) -> Box<dyn RecordCollector> {
        Box::new(self.clone())
    }

    /// Waits until everything sent so far is acknowledged or failed; the first failure is
    /// the error.
    pub fn flush(&self) -> Result<()> {
        let (producer, handle) = {
            let state = self.0.borrow();
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
            let state = self.0.borrow();
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
                if let Some(index) = p.changelog
                    && meta.offset >= 0
                {
                    let next = acked.entry((topics[index].clone(), meta.partition)).or_insert(0);
                    *next = (*next).max(meta.offset + 1);
                }
                false
            }
            Some(Err(e)) => {
                if error.is_none() {
                    let topic = p.changelog.map_or_else(|| "an output topic".to_string(), |i| topics[i].clone());
                    *error = Some((topic, e));
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

    fn changelog_index(&mut self, topic: &str) -> usize {
        let key = (topic.as_ptr(), topic.len());
        if let Some((ptr, len, index)) = self.last_changelog
            && (ptr, len) == key
        {
            return index;
        }
        let index = match self.topics.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        };
        self.last_changelog = Some((key.0, key.1, index));
        index
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
        let mut out = ProducerRecord::new(record.topic);
        out.partition = record.partition;
        out.key = record.key;
        out.value = record.value;
        out.timestamp = Some(record.timestamp.max(0));
        for (k, v) in record.headers {
            out = out.header(k.as_str(), v.as_deref().unwrap_or_default());
        }
        // Changelog records are the ones sent to a fixed partition (the task's).
        let changelog = record.partition.map(|_| state.changelog_index(record.topic));
        let delivery = {
            let future = state.producer.send(out);
            let mut future = std::pin::pin!(future);
            match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => result,
                Poll::Pending => state.handle.block_on(future),
            }
        };
        let delivery = delivery.map_err(|e| collector_error(format!("sending to {}: {e}", record.topic)))?;
        // A batch's records share one outcome, and its last record has the largest
        // offset: one pending delivery per batch is enough. Sends alternate between few
        // batches (a topic's, its changelog's), so the newest few are searched.
        let recent = state.pending.len().saturating_sub(RECENT_BATCHES);
        match state.pending[recent..].iter_mut().rev().find(|p| p.delivery.same_batch(&delivery)) {
            Some(same) => same.delivery = delivery,
            None => state.pending.push(Pending { changelog, delivery }),
        }
        state.sends += 1;
        if state.sends.is_multiple_of(SWEEP_EVERY) {
            state.sweep();
        }
        Ok(())
    }
}
