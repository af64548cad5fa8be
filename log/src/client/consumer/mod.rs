//! The consumer: a background fetcher keeps one Fetch in flight per broker for the
//! assigned partitions that have nothing buffered, so records are fetched while the
//! application processes the previous ones; `poll` hands out what was fetched.
//!
//! ```no_run
//! # async fn example() -> freshet_log::client::Result<()> {
//! use std::time::Duration;
//! use freshet_log::client::{Consumer, ConsumerConfig};
//!
//! let mut config = ConsumerConfig::new("localhost:9092");
//! config.set("auto.offset.reset", "earliest")?;
//! let mut consumer = Consumer::connect(config).await?;
//! consumer.assign(&[("events".to_string(), 0)]).await?;
//! loop {
//!     for record in consumer.poll(Duration::from_secs(1)).await?.iter() {
//!         println!("{}@{}: {:?}", record.partition, record.offset, record.value);
//!     }
//! }
//! # }
//! ```
//!
//! One request per broker covers all of that broker's fetchable partitions, and the
//! broker answers as soon as any of them has `fetch.min.bytes`: a partition with nothing
//! new does not hold up the others, and brokers are fetched from independently.

mod config;
mod fetcher;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use config::{ConsumerConfig, IsolationLevel, OffsetReset};

use super::admin::{OffsetSpec, TopicPartition, list_offsets};
use super::cluster::Cluster;
use super::error::{ClientError, Result};
use crate::record::TimestampType;

/// A record read from a partition. Key, value and header values share the fetched
/// buffer: no copy is made per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The timestamp (ms).
    pub timestamp: i64,
    /// Whether the timestamp is the producer's or the broker's.
    pub timestamp_type: TimestampType,
    /// The key.
    pub key: Option<Bytes>,
    /// The value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The leader epoch of the batch, if known.
    pub leader_epoch: Option<i32>,
}

/// What one `poll` returned, in partition order.
#[derive(Debug, Default, Clone)]
pub struct ConsumerRecords {
    records: Vec<ConsumerRecord>,
}

impl ConsumerRecords {
    /// The records.
    pub fn iter(&self) -> std::slice::Iter<'_, ConsumerRecord> {
        self.records.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records of one partition.
    pub fn partition<'a>(&'a self, topic: &'a str, partition: i32) -> impl Iterator<Item = &'a ConsumerRecord> + 'a {
        self.records.iter().filter(move |r| &*r.topic == topic && r.partition == partition)
    }
}

impl IntoIterator for ConsumerRecords {
    type Item = ConsumerRecord;
    type IntoIter = std::vec::IntoIter<ConsumerRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.records.into_iter()
    }
}

/// An offset found by [`Consumer::offsets_for_times`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    /// The first offset whose timestamp is at least the one asked for.
    pub offset: i64,
    /// That record's timestamp.
    pub timestamp: i64,
}

/// A fetched chunk of one partition, decoded lazily.
#[derive(Debug)]
struct Fetched {
    /// Records decoded from the chunk and not yet handed out.
    records: std::collections::VecDeque<ConsumerRecord>,
}

#[derive(Debug)]
struct PartitionState {
    topic: Arc<str>,
    /// The next offset to hand out; `None` until it is looked up.
    position: Option<i64>,
    /// How to look the position up when it is `None`.
    reset: OffsetReset,
    paused: bool,
    /// Decoded records waiting for `poll`, starting at `position`.
    buffered: Option<Fetched>,
    /// A fetch (or an offset lookup) for this partition is on its way.
    in_flight: bool,
    /// Bumped by every seek, so answers to older fetches are dropped.
    epoch: u64,
    high_watermark: i64,
    /// An error for `poll` to raise (out of range with no reset, corrupt data, ...).
    error: Option<ClientError>,
    /// Don't fetch before this (backoff after an error).
    retry_at: Option<Instant>,
}

impl PartitionState {
    fn new(topic: &str, reset: OffsetReset) -> Self {
        Self {
            topic: Arc::from(topic),
            position: None,
            reset,
            paused: false,
            buffered: None,
            in_flight: false,
            epoch: 0,
            high_watermark: -1,
            error: None,
            retry_at: None,
        }
    }

    fn seek(&mut self, position: Option<i64>, reset: OffsetReset) {
        self.position = position;
        self.reset = reset;
        self.buffered = None;
        self.error = None;
        self.retry_at = None;
        self.epoch += 1;
    }
}

#[derive(Debug, Default)]
struct State {
    partitions: IndexMap<TopicPartition, PartitionState>,
    /// Where the next poll starts, so every partition gets its turn.
    next: usize,
}

/// State shared with the fetcher.
pub(crate) struct ConsumerCore {
    config: ConsumerConfig,
    cluster: Cluster,
    state: Mutex<State>,
    /// Wakes the fetcher: the assignment or positions changed, or data was handed out.
    wake_fetcher: Notify,
    /// Wakes `poll`: data or an error arrived.
    data: Notify,
}

/// A Kafka consumer. Like Kafka's, it is used from one task at a time (`&mut self`).
pub struct Consumer {
    core: Arc<ConsumerCore>,
    fetcher: tokio::task::JoinHandle<()>,
    subscription: Option<Vec<String>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("assignment", &self.assignment()).finish_non_exhaustive()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.fetcher.abort();
    }
}

impl Consumer {
    /// Reaches the cluster (an unreachable bootstrap fails within the connect timeout)
    /// and starts the fetcher.
    pub async fn connect(config: ConsumerConfig) -> Result<Self> {
        let cluster = Cluster::new(config.client.clone())?;
        cluster.refresh(Some(&[])).await?;
        let core = Arc::new(ConsumerCore {
            config,
            cluster,
            state: Mutex::default(),
            wake_fetcher: Notify::new(),
            data: Notify::new(),
        });
        let fetcher = tokio::spawn(fetcher::run(core.clone()));
        Ok(Self { core, fetcher, subscription: None })
    }

    /// The settings in use.
    pub fn config(&self) -> &ConsumerConfig {
        &self.core.config
    }

    /// Reads exactly these partitions (replacing any earlier assignment). Each starts
    /// where `auto.offset.reset` says until `seek` moves it. An unknown topic or partition
    /// is an UNKNOWN_TOPIC_OR_PARTITION error.
    pub async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for (topic, partition) in partitions {
            let info = self.core.cluster.topic(topic).await?;
            if *partition < 0 || *partition as usize >= info.partitions.len() {
                return Err(ClientError::Broker {
                    code: crate::codes::UNKNOWN_TOPIC_OR_PARTITION,
                    context: format!("assigning {topic}-{partition}"),
                    message: Some(format!("the topic has {} partitions", info.partitions.len())),
                });
            }
        }
        self.subscription = None;
        self.set_assignment(partitions);
        Ok(())
    }

    fn set_assignment(&self, partitions: &[TopicPartition]) {
        let reset = self.core.config.auto_offset_reset;
        let mut state = self.core.state.lock();
        let mut kept = IndexMap::new();
        for tp in partitions {
            let partition = state.partitions.swap_remove(tp).unwrap_or_else(|| PartitionState::new(&tp.0, reset));
            kept.insert(tp.clone(), partition);
        }
        state.partitions = kept;
        state.next = 0;
        drop(state);
        self.core.wake_fetcher.notify_one();
    }

    /// Reads every partition of `topics`, including partitions added later.
    ///
    /// Until the group coordinator arrives this consumer is the group's only member, so
    /// it is assigned every partition; `subscribe` keeps the same signature once
    /// partitions are shared through the group protocol.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        self.subscription = Some(topics.iter().map(|t| t.to_string()).collect());
        self.refresh_subscription().await
    }

    async fn refresh_subscription(&mut self) -> Result<()> {
        let Some(topics) = self.subscription.clone() else { return Ok(()) };
        self.core.cluster.refresh(Some(&topics)).await?;
        let mut partitions = Vec::new();
        for topic in &topics {
            if let Some(info) = self.core.cluster.cached_topic(topic) {
                partitions.extend(info.partitions.iter().map(|p| (topic.clone(), p.partition)));
            }
        }
        if partitions != self.assignment() {
            self.set_assignment(&partitions);
        }
        Ok(())
    }

    /// The subscribed topics, if `subscribe` was used.
    pub fn subscription(&self) -> Option<&[String]> {
        self.subscription.as_deref()
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.core.state.lock().partitions.keys().cloned().collect()
    }

    /// Stops reading everything.
    pub fn unsubscribe(&mut self) {
        self.subscription = None;
        self.set_assignment(&[]);
    }

    /// Waits up to `timeout` for records and returns at most `max.poll.records` of them,
    /// taking partitions in turn. An empty result means none arrived in time.
    pub async fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        if self.subscription.is_some() && self.core.cluster.is_stale() {
            self.refresh_subscription().await?;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let data = self.core.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            let records = self.take_buffered()?;
            if !records.is_empty() {
                return Ok(records);
            }
            if tokio::time::timeout_at(deadline, data).await.is_err() {
                return Ok(ConsumerRecords::default());
            }
        }
    }

    fn take_buffered(&self) -> Result<ConsumerRecords> {
        let max = self.core.config.max_poll_records;
        let mut records = Vec::new();
        let mut state = self.core.state.lock();
        let count = state.partitions.len();
        let start = state.next;
        let mut drained_any = false;
        for i in 0..count {
            let index = (start + i) % count;
            let (_, partition) = state.partitions.get_index_mut(index).expect("in range");
            if partition.paused {
                continue;
            }
            if let Some(error) = partition.error.take() {
                if records.is_empty() {
                    return Err(error);
                }
                // Raised by the next poll, after these records are handed out.
                partition.error = Some(error);
                break;
            }
            let Some(fetched) = partition.buffered.as_mut() else { continue };
            while records.len() < max {
                let Some(record) = fetched.records.pop_front() else { break };
                partition.position = Some(record.offset + 1);
                records.push(record);
            }
            if fetched.records.is_empty() {
                partition.buffered = None;
                drained_any = true;
            }
            if records.len() >= max {
                state.next = (index + 1) % count.max(1);
                break;
            }
        }
        drop(state);
        if drained_any {
            self.core.wake_fetcher.notify_one();
        }
        Ok(ConsumerRecords { records })
    }

    fn with_partition<T>(&self, tp: &TopicPartition, f: impl FnOnce(&mut PartitionState) -> T) -> Result<T> {
        let mut state = self.core.state.lock();
        let partition = state.partitions.get_mut(tp).ok_or_else(|| not_assigned(tp))?;
        let result = f(partition);
        drop(state);
        self.core.wake_fetcher.notify_one();
        Ok(result)
    }

    /// The next poll of `tp` starts at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let reset = self.core.config.auto_offset_reset;
        self.with_partition(tp, |p| p.seek(Some(offset), reset))
    }

    /// The next polls of these partitions start at their log start.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.with_partition(tp, |p| p.seek(None, OffsetReset::Earliest))?;
        }
        Ok(())
    }

    /// The next polls of these partitions start at their log end.
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.with_partition(tp, |p| p.seek(None, OffsetReset::Latest))?;
        }
        Ok(())
    }

    /// The offset the next poll of `tp` starts at, looking it up if it is not known yet.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64> {
        let (position, reset) = self.with_partition(tp, |p| (p.position, p.reset))?;
        if let Some(position) = position {
            return Ok(position);
        }
        let offset = resolve_position(&self.core, tp, reset).await?;
        self.with_partition(tp, |p| {
            if p.position.is_none() {
                p.position = Some(offset);
            }
            p.position.unwrap_or(offset)
        })
    }

    /// For each partition, the first offset whose timestamp is at least the given one
    /// (`None` when every record is older).
    pub async fn offsets_for_times(
        &self,
        times: &[(TopicPartition, i64)],
    ) -> Result<HashMap<TopicPartition, Option<OffsetAndTimestamp>>> {
        let specs: Vec<_> = times.iter().map(|(tp, ts)| (tp.clone(), OffsetSpec::Timestamp(*ts))).collect();
        let read_committed = self.core.config.isolation_level == IsolationLevel::ReadCommitted;
        let mut found = HashMap::new();
        for (tp, result) in list_offsets(&self.core.cluster, &specs, read_committed).await? {
            let listed = result?;
            let at = (listed.offset >= 0)
                .then_some(OffsetAndTimestamp { offset: listed.offset, timestamp: listed.timestamp });
            found.insert(tp, at);
        }
        Ok(found)
    }

    /// The log start and log end offsets of partitions.
    pub async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64)> {
        let specs = [(tp.clone(), OffsetSpec::Earliest), (tp.clone(), OffsetSpec::Latest)];
        let read_committed = self.core.config.isolation_level == IsolationLevel::ReadCommitted;
        let listed = list_offsets(&self.core.cluster, &specs, read_committed).await?;
        let mut offsets = listed.into_iter().map(|(_, r)| r.map(|l| l.offset));
        let low = offsets.next().transpose()?.unwrap_or(-1);
        let high = offsets.next().transpose()?.unwrap_or(-1);
        Ok((low, high))
    }

    /// The high watermark seen in the last fetch of `tp` (-1 before any).
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<i64> {
        self.core.state.lock().partitions.get(tp).map(|p| p.high_watermark)
    }

    /// Stops returning (and fetching) records of these partitions; buffered ones stay.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.with_partition(tp, |p| p.paused = true)?;
        }
        Ok(())
    }

    /// Undoes `pause`.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.with_partition(tp, |p| p.paused = false)?;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.core.state.lock().partitions.iter().filter(|(_, p)| p.paused).map(|(tp, _)| tp.clone()).collect()
    }
}

fn not_assigned(tp: &TopicPartition) -> ClientError {
    ClientError::config("assignment", format!("{}-{}", tp.0, tp.1), "the partition is not assigned to this consumer")
}

/// Looks a position up by `reset`; `OffsetReset::None` is an error, as Kafka's
/// NoOffsetForPartitionException.
async fn resolve_position(core: &ConsumerCore, tp: &TopicPartition, reset: OffsetReset) -> Result<i64> {
    let spec = match reset {
        OffsetReset::Earliest => OffsetSpec::Earliest,
        OffsetReset::Latest => OffsetSpec::Latest,
        OffsetReset::None => {
            return Err(ClientError::Broker {
                code: crate::codes::OFFSET_OUT_OF_RANGE,
                context: format!("{}-{}", tp.0, tp.1),
                message: Some("no valid position and auto.offset.reset=none".into()),
            });
        }
    };
    let read_committed = core.config.isolation_level == IsolationLevel::ReadCommitted;
    let listed = list_offsets(&core.cluster, &[(tp.clone(), spec)], read_committed).await?;
    let (_, result) = listed.into_iter().next().ok_or_else(|| ClientError::Protocol {
        addr: String::new(),
        reason: format!("ListOffsets answered nothing for {}-{}", tp.0, tp.1),
    })?;
    Ok(result?.offset)
}
