//! The producer: `send` puts a record in its partition's batch and returns a future for
//! its offset; a background sender turns ready batches into Produce requests, pipelined
//! up to `max.in.flight.requests.per.connection` per broker, and retries what fails with
//! a retriable error until `delivery.timeout.ms`.
//!
//! ```no_run
//! # async fn example() -> freshet_log::client::Result<()> {
//! use freshet_log::client::{Producer, ProducerConfig, ProducerRecord};
//!
//! let producer = Producer::connect(ProducerConfig::new("localhost:9092")).await?;
//! let delivery = producer.send(ProducerRecord::new("events").key(b"user-1").value(b"clicked")).await?;
//! let metadata = delivery.await?;
//! println!("written at partition {} offset {}", metadata.partition, metadata.offset);
//! producer.close().await?;
//! # Ok(()) }
//! ```
//!
//! Memory: records wait in at most `buffer.memory` bytes; `send` waits up to
//! `max.block.ms` for room, then fails. Idempotence (on by default) stamps batches with a
//! producer id and sequence numbers, so retries never duplicate or reorder records.

mod accumulator;
mod config;
mod sender;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};

pub use config::{Acks, ProducerConfig};

use self::accumulator::{Accumulator, Append, Appended, BatchCompletion};
use super::cluster::{Cluster, TopicInfo};
use super::error::{ClientError, Result};
use super::partitioner::DefaultPartitioner;
use crate::codes;
use crate::record::{Header, RECORD_BATCH_OVERHEAD};
use crate::time::{Clock, SystemClock};

/// A record to send. Its bytes are copied into a batch by `send`, so they are borrowed.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition, or `None` for the partitioner to choose.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: Vec<Header<'a>>,
    /// The timestamp in ms; `None` is the time of `send`.
    pub timestamp: Option<i64>,
}

impl<'a> ProducerRecord<'a> {
    /// A record for `topic` with no key and no value.
    pub fn new(topic: &'a str) -> Self {
        Self { topic, ..Self::default() }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.value = Some(value.as_ref());
        self
    }

    /// Sends to this partition instead of letting the partitioner choose.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: &'a (impl AsRef<[u8]> + ?Sized), value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.headers.push(Header { key: key.as_ref(), value: Some(value.as_ref()) });
        self
    }

    /// Bytes the record takes in a batch, at most (varints at their widest).
    fn size_bytes(&self) -> usize {
        let headers: usize = self.headers.iter().map(|h| 10 + h.key.len() + h.value.map_or(0, <[u8]>::len)).sum();
        26 + self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + headers
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition.
    pub partition: i32,
    /// The offset, or -1 with `acks=0`.
    pub offset: i64,
    /// The record's timestamp, or the broker's with LogAppendTime topics.
    pub timestamp: i64,
}

/// Resolves when the record's batch is acknowledged or has failed for good.
#[derive(Debug)]
#[must_use = "a delivery future says whether the record was written"]
pub struct DeliveryFuture {
    completion: Arc<BatchCompletion>,
    partition: i32,
    index: i32,
    timestamp: i64,
}

impl DeliveryFuture {
    /// The partition the record went to.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    fn metadata(&self, outcome: &Result<accumulator::BatchAck>) -> Result<RecordMetadata> {
        match outcome {
            Ok(ack) => Ok(RecordMetadata {
                partition: self.partition,
                offset: if ack.base_offset >= 0 { ack.base_offset + i64::from(self.index) } else { -1 },
                timestamp: if ack.log_append_time >= 0 { ack.log_append_time } else { self.timestamp },
            }),
            Err(e) => Err(e.clone()),
        }
    }

    /// Whether `other` is a record of the same batch: the two share their outcome, and the
    /// later one has the larger offset.
    pub fn same_batch(&self, other: &DeliveryFuture) -> bool {
        Arc::ptr_eq(&self.completion, &other.completion)
    }

    /// The outcome if it is already known, without waiting.
    pub fn try_result(&self) -> Option<Result<RecordMetadata>> {
        self.completion.outcome().map(|outcome| self.metadata(outcome))
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.completion.poll_outcome(cx.waker()) {
            Some(outcome) => Poll::Ready(self.metadata(outcome)),
            None => Poll::Pending,
        }
    }
}

/// When a `send` that has to wait gives up: `max.block.ms` after it began waiting. The clock
/// is read only then, which keeps it off the path of a send that does not wait.
struct BlockDeadline {
    max_block: Duration,
    at: Option<Instant>,
}

impl BlockDeadline {
    fn get(&mut self) -> Instant {
        *self.at.get_or_insert_with(|| Instant::now() + self.max_block)
    }
}

/// What [`Producer::send_all`] did.
#[derive(Debug, Default)]
pub struct SendAllOutcome {
    /// The records that could not be sent, by index, with why.
    pub failed: Vec<(usize, ClientError)>,
    /// One delivery per batch the records went to, with the index of the record it is
    /// for: the last one appended to that batch. It resolves with that record's offset,
    /// the batch's largest; the batch's other records share its outcome.
    pub deliveries: Vec<(usize, DeliveryFuture)>,
}

impl SendAllOutcome {
    /// Keeps `delivery`, replacing the one of an earlier record of the same batch.
    fn delivered(&mut self, index: usize, delivery: DeliveryFuture) {
        match self.deliveries.iter_mut().rev().take(8).find(|(_, d)| d.same_batch(&delivery)) {
            Some(same) => *same = (index, delivery),
            None => self.deliveries.push((index, delivery)),
        }
    }
}

/// State shared by `send` callers and the sender task.
pub(crate) struct Core {
    config: ProducerConfig,
    idempotent: bool,
    cluster: Cluster,
    accumulator: Mutex<Accumulator>,
    partitioner: Mutex<DefaultPartitioner>,
    /// `buffer.memory`, in bytes: taken by `send`, given back when a batch completes.
    memory: Semaphore,
    /// Wakes the sender: a batch is ready, a flush began, or the producer is closing.
    wake: Notify,
    /// Wakes flushers: some batch completed.
    completed: Notify,
    closing: AtomicBool,
}

/// Owns the sender task; when the last `Producer` clone is dropped, the sender sends
/// what is left and stops.
struct Handle {
    core: Arc<Core>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.core.closing.store(true, Ordering::Release);
        self.core.wake.notify_one();
    }
}

/// A Kafka producer. Cheap to clone; clones share batches and connections.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("idempotent", &self.handle.core.idempotent).finish_non_exhaustive()
    }
}

impl Producer {
    /// Checks the config, reaches the cluster (within `socket.connection.setup.timeout.ms`
    /// per bootstrap server) and, when idempotent, gets a producer id.
    pub async fn connect(config: ProducerConfig) -> Result<Self> {
        let idempotent = config.validate()?;
        let cluster = Cluster::new(config.client.clone())?;
        cluster.refresh(Some(&[])).await?;
        let producer_id = if idempotent { Some(sender::init_producer_id(&cluster, None).await?) } else { None };
        let accumulator = Accumulator::new(config.batch_size, config.linger, config.compression, idempotent);
        let core = Arc::new(Core {
            memory: Semaphore::new(config.buffer_memory.min(Semaphore::MAX_PERMITS)),
            config,
            idempotent,
            cluster,
            accumulator: Mutex::new(accumulator),
            partitioner: Mutex::new(DefaultPartitioner::default()),
            wake: Notify::new(),
            completed: Notify::new(),
            closing: AtomicBool::new(false),
        });
        let sender = tokio::spawn(sender::run(core.clone(), producer_id));
        Ok(Self { handle: Arc::new(Handle { core, sender: Mutex::new(Some(sender)) }) })
    }

    /// Whether this producer stamps batches for idempotence.
    pub fn is_idempotent(&self) -> bool {
        self.handle.core.idempotent
    }

    /// Adds a record to its partition's batch. Waits (up to `max.block.ms`) for the
    /// topic's metadata and for room in `buffer.memory`; the returned future resolves
    /// when the record is written or has failed for good.
    pub async fn send(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture> {
        let core = &self.handle.core;
        if core.closing.load(Ordering::Acquire) {
            return Err(ClientError::Closed("producer"));
        }
        let mut deadline = BlockDeadline { max_block: core.config.max_block, at: None };
        let topic = self.topic(record.topic, &mut deadline).await?;
        let partitions = topic.partitions.len() as i32;
        let (partition, size) = self.place(&record, partitions)?;
        self.reserve_memory(size, &mut deadline).await?;
        let (appended, timestamp) = Self::append(&mut core.accumulator.lock(), &record, partition, size, true);
        if appended.new_batch && record.key.is_none() && record.partition.is_none() {
            core.partitioner.lock().on_new_batch(record.topic, partitions, partition);
        }
        if appended.wake_sender {
            core.wake.notify_one();
        }
        Ok(Self::delivery(appended, partition, timestamp))
    }

    /// Sends several records, in order, as [`send`](Producer::send) would one by one.
    /// Consecutive records of one topic share one metadata lookup, one reservation of
    /// `buffer.memory` and one turn at the batches, so this costs less per record than
    /// `send` when a caller has many records at hand.
    ///
    /// The records of a batch succeed or fail together, so rather than a future per
    /// record the outcome holds one per batch the records went to: the future of the last
    /// record appended to it, whose offset is the batch's largest. Records that could not
    /// be sent at all are listed with their errors. Records without key and partition are
    /// placed by the sticky partitioner one at a time, exactly as `send` places them.
    /// Each wait (for a topic's metadata, for one record's room in `buffer.memory`) is
    /// bounded by `max.block.ms` on its own, as a `send`'s waits are.
    pub async fn send_all(&self, records: &[ProducerRecord<'_>]) -> SendAllOutcome {
        let core = &self.handle.core;
        let mut outcome = SendAllOutcome::default();
        let mut start = 0;
        while let Some(first) = records.get(start) {
            if core.closing.load(Ordering::Acquire) {
                outcome.failed.extend((start..records.len()).map(|i| (i, ClientError::Closed("producer"))));
                break;
            }
            if first.key.is_none() && first.partition.is_none() {
                match self.send(first.clone()).await {
                    Ok(delivery) => outcome.delivered(start, delivery),
                    Err(e) => outcome.failed.push((start, e)),
                }
                start += 1;
                continue;
            }
            let same_run = |r: &ProducerRecord<'_>| {
                (std::ptr::eq(r.topic, first.topic) || r.topic == first.topic)
                    && (r.key.is_some() || r.partition.is_some())
            };
            let len = records[start..].iter().position(|r| !same_run(r)).unwrap_or(records.len() - start);
            self.send_run(records, start..start + len, &mut outcome).await;
            start += len;
        }
        outcome
    }

    /// Sends `records[run]`: records of one topic that each have a key or a partition.
    async fn send_run(
        &self,
        records: &[ProducerRecord<'_>],
        run: std::ops::Range<usize>,
        outcome: &mut SendAllOutcome,
    ) {
        let core = &self.handle.core;
        let deadline = || BlockDeadline { max_block: core.config.max_block, at: None };
        let topic_name = records[run.start].topic;
        let topic = match self.topic(topic_name, &mut deadline()).await {
            Ok(topic) => topic,
            Err(e) => {
                outcome.failed.extend(run.map(|i| (i, e.clone())));
                return;
            }
        };
        let partitions = topic.partitions.len() as i32;
        let mut placed = Vec::with_capacity(run.len());
        let mut total = 0;
        for i in run {
            match self.place(&records[i], partitions) {
                Ok((partition, size)) => {
                    total += size;
                    placed.push((i, partition, size));
                }
                Err(e) => outcome.failed.push((i, e)),
            }
        }
        // Every appended record gives its bytes back with its batch, so all of them must be
        // taken: a total beyond the semaphore's reach goes record by record too.
        let all_at_once = u32::try_from(total).ok().and_then(|total| core.memory.try_acquire_many(total).ok());
        if let Some(permit) = all_at_once {
            permit.forget();
        } else {
            // Not enough room for all: each record waits for its own, as with `send`.
            for (i, partition, size) in placed {
                if let Err(e) = self.reserve_memory(size, &mut deadline()).await {
                    outcome.failed.push((i, e));
                    continue;
                }
                let (appended, timestamp) =
                    Self::append(&mut core.accumulator.lock(), &records[i], partition, size, true);
                if appended.wake_sender {
                    core.wake.notify_one();
                }
                outcome.delivered(i, Self::delivery(appended, partition, timestamp));
            }
            return;
        }
        // The last record of each batch: (batch id, record, partition, index in batch,
        // timestamp). Records go to few batches, so a short list serves as the map.
        let mut last: Vec<(u64, usize, i32, i32, i64)> = Vec::new();
        let mut wake = false;
        let mut accumulator = core.accumulator.lock();
        for (i, partition, size) in placed {
            let (to, timestamp) = Self::append(&mut accumulator, &records[i], partition, size, false);
            wake |= to.wake_sender;
            let entry = (to.batch, i, partition, to.index, timestamp);
            match last.iter_mut().rev().find(|l| l.0 == to.batch) {
                Some(l) => *l = entry,
                None => last.push(entry),
            }
        }
        for (batch, i, partition, index, timestamp) in last {
            let completion = accumulator.completion(topic_name, partition, batch).expect("a batch just appended to");
            outcome.deliveries.push((i, DeliveryFuture { completion, partition, index, timestamp }));
        }
        drop(accumulator);
        if wake {
            core.wake.notify_one();
        }
    }

    /// The partition a record goes to, and the bytes it holds; or why it cannot be sent.
    fn place(&self, record: &ProducerRecord<'_>, partitions: i32) -> Result<(i32, usize)> {
        let core = &self.handle.core;
        let partition = match record.partition {
            Some(p) if (0..partitions).contains(&p) => p,
            Some(p) => {
                return Err(ClientError::InvalidRecord {
                    topic: record.topic.to_string(),
                    reason: format!("partition {p} does not exist: the topic has {partitions} partitions"),
                });
            }
            None => match record.key {
                // Keyed records need no partitioner state, so no lock.
                Some(key) => crate::client::partitioner::partition_for_key(key, partitions),
                None => core.partitioner.lock().partition(record.topic, None, partitions),
            },
        };
        let size = record.size_bytes();
        let config = &core.config;
        for (limit, setting) in [(config.max_request_size, "max.request.size"), (config.buffer_memory, "buffer.memory")]
        {
            if size + RECORD_BATCH_OVERHEAD > limit {
                let topic = record.topic.to_string();
                return Err(ClientError::RecordTooLarge { topic, size: size + RECORD_BATCH_OVERHEAD, limit, setting });
            }
        }
        Ok((partition, size))
    }

    /// Appends a placed record whose memory is reserved; with `completion`, with a count
    /// on its batch's completion for a delivery future.
    fn append(
        accumulator: &mut Accumulator,
        record: &ProducerRecord<'_>,
        partition: i32,
        size: usize,
        completion: bool,
    ) -> (Appended, i64) {
        let timestamp = record.timestamp.unwrap_or_else(|| SystemClock.now_ms());
        let ProducerRecord { topic, key, value, .. } = *record;
        let headers = &record.headers;
        let append = Append { topic, partition, timestamp, key, value, headers, memory: size, completion };
        (accumulator.append(append, Instant::now), timestamp)
    }

    /// A delivery future for a record appended with its batch's completion.
    fn delivery(appended: Appended, partition: i32, timestamp: i64) -> DeliveryFuture {
        let completion = appended.completion.expect("appended with its completion");
        DeliveryFuture { completion, partition, index: appended.index, timestamp }
    }

    /// The topic's metadata, waiting for a leaderless or just-created topic until
    /// `deadline`. A topic the cluster does not have fails at once.
    async fn topic(&self, topic: &str, deadline: &mut BlockDeadline) -> Result<Arc<TopicInfo>> {
        let cluster = &self.handle.core.cluster;
        if let Some(info) = cluster.cached_topic(topic).filter(|t| !t.partitions.is_empty()) {
            return Ok(info);
        }
        let deadline = deadline.get();
        let what = || format!("waiting for metadata of topic '{topic}'");
        let max_block = self.handle.core.config.max_block.as_millis() as u64;
        loop {
            let lookup = tokio::time::timeout_at(deadline.into(), cluster.topic(topic));
            let Ok(lookup) = lookup.await else {
                return Err(ClientError::Timeout { what: what(), after_ms: max_block });
            };
            let error = match lookup {
                Ok(info) if !info.partitions.is_empty() => return Ok(info),
                Ok(_) => ClientError::Broker {
                    code: codes::LEADER_NOT_AVAILABLE,
                    context: format!("metadata for topic '{topic}'"),
                    message: Some("no partitions yet".into()),
                },
                Err(e) if e.code() == Some(codes::UNKNOWN_TOPIC_OR_PARTITION) => return Err(e),
                Err(e) if !e.is_retriable() => return Err(e),
                Err(e) => e,
            };
            let backoff = cluster.config.retry_backoff;
            if Instant::now() + backoff >= deadline {
                return Err(ClientError::Timeout {
                    what: format!("{} (last error: {error})", what()),
                    after_ms: max_block,
                });
            }
            tokio::time::sleep(backoff).await;
        }
    }

    async fn reserve_memory(&self, size: usize, deadline: &mut BlockDeadline) -> Result<()> {
        let memory = &self.handle.core.memory;
        let permits = size as u32;
        if let Ok(permit) = memory.try_acquire_many(permits) {
            permit.forget();
            return Ok(());
        }
        let deadline = deadline.get();
        match tokio::time::timeout_at(deadline.into(), memory.acquire_many(permits)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(())
            }
            Ok(Err(_)) => Err(ClientError::Closed("producer")),
            Err(_) => Err(ClientError::Timeout {
                what: format!(
                    "waiting for {size} bytes of buffer.memory ({} bytes, all held by unsent records)",
                    self.handle.core.config.buffer_memory
                ),
                after_ms: self.handle.core.config.max_block.as_millis() as u64,
            }),
        }
    }

    /// Sends every record buffered so far without waiting for `linger.ms`, and waits
    /// until each has succeeded or failed.
    pub async fn flush(&self) {
        let core = &self.handle.core;
        let mark = core.accumulator.lock().begin_flush();
        core.wake.notify_one();
        loop {
            let completed = core.completed.notified();
            tokio::pin!(completed);
            completed.as_mut().enable();
            if core.accumulator.lock().completed_below(mark) {
                return;
            }
            completed.await;
        }
    }

    /// Flushes, then stops the sender. Later sends fail with [`ClientError::Closed`].
    pub async fn close(&self) -> Result<()> {
        self.flush().await;
        let core = &self.handle.core;
        core.closing.store(true, Ordering::Release);
        core.wake.notify_one();
        let sender = self.handle.sender.lock().take();
        if let Some(sender) = sender {
            sender
                .await
                .map_err(|e| ClientError::Protocol { addr: String::new(), reason: format!("sender task: {e}") })?;
        }
        Ok(())
    }
}
