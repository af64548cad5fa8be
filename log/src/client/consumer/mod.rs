//! The consumer: a background fetcher keeps one Fetch in flight per broker for the
//! assigned partitions that have nothing buffered or are running low, so records are
//! fetched while the application processes the previous ones; `poll` hands out what was
//! fetched.
//!
//! ```no_run
//! # async fn example() -> freshet_log::client::Result<()> {
//! use std::time::Duration;
//! use freshet_log::client::{Consumer, ConsumerConfig, TopicPartition};
//!
//! let mut config = ConsumerConfig::new("localhost:9092");
//! config.set("auto.offset.reset", "earliest")?;
//! let mut consumer = Consumer::connect(config).await?;
//! consumer.assign(&[TopicPartition::new("events", 0)]).await?;
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
mod coordinator;
mod fetcher;
mod listener;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indexmap::IndexMap;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use config::{ConsumerConfig, IsolationLevel, OffsetReset};
pub use listener::{RebalanceContext, RebalanceListener};

use super::admin::{OffsetSpec, TopicPartition, list_offsets};
use super::cluster::Cluster;
use super::error::{ClientError, Result};
use super::group::CommittedOffset;
use crate::record::TimestampType;
use coordinator::Membership;

/// How long reading committed offsets retries a coordinator that is loading or moving.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Fetched records of one partition that `poll` has not handed out yet.
#[derive(Debug)]
struct Fetched {
    records: std::collections::VecDeque<ConsumerRecord>,
    /// Where the next fetch starts: after the last complete batch fetched.
    next_offset: i64,
    /// The next fetch is sent once fewer records than this are left: as many as the last
    /// fetch brought. So a partition that is read fast holds up to two fetches' worth, and
    /// the next one is on its way while the application works through the last.
    refill_below: usize,
}

impl Fetched {
    fn new(records: Vec<ConsumerRecord>, next_offset: i64) -> Self {
        let refill_below = records.len();
        Fetched { records: records.into(), next_offset, refill_below }
    }

    /// Appends the records of the fetch that followed.
    fn extend(&mut self, records: Vec<ConsumerRecord>, next_offset: i64) {
        self.refill_below = records.len();
        self.records.extend(records);
        self.next_offset = next_offset;
    }
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

    /// Where the next fetch of this partition starts: after what is buffered, else at the
    /// position (`None`: the position must be looked up first).
    fn fetch_offset(&self) -> Option<i64> {
        match &self.buffered {
            Some(fetched) => Some(fetched.next_offset),
            None => self.position,
        }
    }

    /// Whether the partition wants its next fetch: it has nothing buffered, or is running low.
    fn wants_fetch(&self) -> bool {
        self.buffered.as_ref().is_none_or(|f| f.records.len() < f.refill_below)
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
    cluster: Arc<Cluster>,
    state: Mutex<State>,
    /// Wakes the fetcher: the assignment or positions changed, or data was handed out.
    wake_fetcher: Notify,
    /// Wakes `poll`: data or an error arrived, or the group must be rejoined.
    data: Arc<Notify>,
}

/// A Kafka consumer. Like Kafka's, it is used from one task at a time (`&mut self`).
pub struct Consumer {
    core: Arc<ConsumerCore>,
    fetcher: tokio::task::JoinHandle<()>,
    subscription: Option<Vec<String>>,
    /// `subscribe_pattern`: the subscription is every topic matching this.
    pattern: Option<regex::Regex>,
    /// Group membership, when `group.id` is set.
    membership: Option<Arc<Membership>>,
    /// In a mutex only so that `&Consumer` may cross threads; `poll` alone calls it.
    listener: Mutex<Option<Box<dyn RebalanceListener>>>,
    next_auto_commit: Instant,
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
        config.validate()?;
        let cluster = Arc::new(Cluster::new(config.client.clone())?);
        cluster.refresh(Some(&[])).await?;
        let data = Arc::new(Notify::new());
        let membership =
            config.group_id.clone().map(|group| Membership::start(&config, group, cluster.clone(), data.clone()));
        let next_auto_commit = Instant::now() + config.auto_commit_interval;
        let core =
            Arc::new(ConsumerCore { config, cluster, state: Mutex::default(), wake_fetcher: Notify::new(), data });
        let fetcher = tokio::spawn(fetcher::run(core.clone()));
        Ok(Self {
            core,
            fetcher,
            subscription: None,
            pattern: None,
            membership,
            listener: Mutex::new(None),
            next_auto_commit,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &ConsumerConfig {
        &self.core.config
    }

    /// Reads exactly these partitions (replacing any earlier assignment). Each starts
    /// where `auto.offset.reset` says until `seek` moves it. An unknown topic or partition
    /// is an UNKNOWN_TOPIC_OR_PARTITION error.
    pub async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for TopicPartition { topic, partition } in partitions {
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
            let partition = state.partitions.swap_remove(tp).unwrap_or_else(|| PartitionState::new(&tp.topic, reset));
            kept.insert(tp.clone(), partition);
        }
        state.partitions = kept;
        state.next = 0;
        drop(state);
        self.core.wake_fetcher.notify_one();
    }

    /// Joins the group (`group.id`) and reads the partitions it assigns this member out of
    /// `topics`. The group is joined, and partitions assigned, by `poll`.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        self.subscribe_inner(topics.iter().map(|t| t.to_string()).collect(), None, None)
    }

    /// Like [`Consumer::subscribe`], with a listener that hears about assignment changes.
    pub async fn subscribe_with_listener(
        &mut self,
        topics: &[&str],
        listener: Box<dyn RebalanceListener>,
    ) -> Result<()> {
        self.subscribe_inner(topics.iter().map(|t| t.to_string()).collect(), None, Some(listener))
    }

    /// Subscribes to every topic whose whole name matches `pattern` (a regular
    /// expression), now and as topics are created or deleted. Internal topics never match.
    pub async fn subscribe_pattern(
        &mut self,
        pattern: &str,
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<()> {
        let regex = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| ClientError::config("subscription pattern", pattern, e.to_string()))?;
        self.subscribe_inner(Vec::new(), Some(regex), listener)?;
        self.refresh_subscription().await.map(drop)
    }

    fn subscribe_inner(
        &mut self,
        topics: Vec<String>,
        pattern: Option<regex::Regex>,
        listener: Option<Box<dyn RebalanceListener>>,
    ) -> Result<()> {
        let Some(membership) = &self.membership else {
            return Err(ClientError::config("group.id", "", "subscribe needs a group.id; use assign without one"));
        };
        if self.subscription.is_none() {
            self.set_assignment(&[]);
        }
        self.subscription = Some(topics);
        self.pattern = pattern;
        *self.listener.get_mut() = listener;
        membership.state.lock().rejoin = true;
        Ok(())
    }

    /// Re-reads the topics a pattern subscription covers and, as the leader, whether
    /// partition counts changed since the assignment; either calls for a rebalance.
    async fn refresh_subscription(&mut self) -> Result<bool> {
        let Some(topics) = self.subscription.clone() else { return Ok(false) };
        let mut changed = false;
        if let Some(pattern) = &self.pattern {
            self.core.cluster.refresh(None).await?;
            let mut matched: Vec<String> = self
                .core
                .cluster
                .cached_topic_names()
                .into_iter()
                .filter(|t| pattern.is_match(t))
                .filter(|t| self.core.cluster.cached_topic(t).is_some_and(|i| !i.is_internal))
                .collect();
            matched.sort();
            if matched != topics {
                self.subscription = Some(matched);
                changed = true;
            }
        } else {
            self.core.cluster.refresh(Some(&topics)).await?;
        }
        if let Some(m) = &self.membership {
            let assigned_from = m.state.lock().assigned_from.clone();
            if let Some(counts) = assigned_from {
                let now: std::collections::BTreeMap<String, i32> = self
                    .subscription
                    .iter()
                    .flatten()
                    .filter_map(|t| self.core.cluster.cached_topic(t).map(|i| (t.clone(), i.partitions.len() as i32)))
                    .collect();
                changed |= now != counts;
            }
            if changed {
                m.state.lock().rejoin = true;
            }
        }
        Ok(changed)
    }

    /// The subscribed topics, if `subscribe` was used.
    pub fn subscription(&self) -> Option<&[String]> {
        self.subscription.as_deref()
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.core.state.lock().partitions.keys().cloned().collect()
    }

    /// Whether the next `poll` will (re)join the group before it returns records: a
    /// rebalance began, the subscription changed, or the group moved on without this
    /// member. With the eager protocol that rejoin revokes every partition, so an
    /// application that must finish its work first (Kafka Streams commits its tasks)
    /// checks this before polling.
    pub fn rebalance_pending(&self) -> bool {
        self.subscription.is_some()
            && self.membership.as_ref().is_some_and(|m| {
                let state = m.state.lock();
                state.rejoin || state.lost || state.fatal.is_some()
            })
    }

    /// Whether the group moved on without this member (its session expired, or it was
    /// fenced): its partitions may be others' already, and its commits will be refused.
    /// The next `poll` rejoins.
    pub fn partitions_lost(&self) -> bool {
        self.membership.as_ref().is_some_and(|m| m.state.lock().lost)
    }

    /// Stops reading everything, leaving the group if subscribed.
    pub async fn unsubscribe(&mut self) {
        if self.subscription.take().is_some()
            && let Some(m) = self.membership.clone()
        {
            let assigned = self.assignment();
            self.revoke(&assigned, false).await;
            m.leave(&self.core.cluster).await;
        }
        self.pattern = None;
        self.set_assignment(&[]);
    }

    /// Waits up to `timeout` for records and returns at most `max.poll.records` of them,
    /// taking partitions in turn. An empty result means none arrived in time.
    ///
    /// A subscribed consumer also does its group work here: it joins or rejoins the group
    /// (which can take longer than `timeout` while other members rejoin), calls the
    /// rebalance listener, and commits automatically every `auto.commit.interval.ms`.
    pub async fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        self.poll_inner(timeout, false).await
    }

    /// Like [`Consumer::poll`], but leaves a due rebalance to the next `poll`: once one is
    /// due (see [`Consumer::rebalance_pending`]) it returns what is already buffered,
    /// possibly nothing. A caller whose work must be committed before its partitions are
    /// revoked (Kafka Streams does it in its revocation callback) commits in between.
    pub async fn poll_deferring_rebalance(&mut self, timeout: Duration) -> Result<ConsumerRecords> {
        self.poll_inner(timeout, true).await
    }

    async fn poll_inner(&mut self, timeout: Duration, defer_rebalance: bool) -> Result<ConsumerRecords> {
        let deadline = tokio::time::Instant::now() + timeout;
        if let Some(m) = &self.membership {
            m.state.lock().last_poll = Instant::now();
            self.maybe_auto_commit();
            if self.subscription.is_some() && self.core.cluster.is_stale() {
                self.refresh_subscription().await?;
            }
        }
        loop {
            if self.ensure_group(defer_rebalance).await? {
                // What is buffered is still this member's, unless the group moved on
                // without it: then others may be processing it already.
                if self.partitions_lost() {
                    return Ok(ConsumerRecords::default());
                }
                return self.take_buffered();
            }
            let data = self.core.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            let records = self.take_buffered()?;
            if !records.is_empty() {
                return Ok(records);
            }
            if self.membership.as_ref().is_some_and(|m| m.state.lock().rejoin) && self.subscription.is_some() {
                continue;
            }
            if tokio::time::timeout_at(deadline, data).await.is_err() {
                return Ok(ConsumerRecords::default());
            }
        }
    }

    /// Joins or rejoins the group if a rebalance is due; with `defer`, only says that one
    /// is (true), deciding under the same lock that the heartbeat sets it under.
    async fn ensure_group(&mut self, defer: bool) -> Result<bool> {
        let Some(m) = self.membership.clone() else { return Ok(false) };
        if self.subscription.is_none() {
            return Ok(false);
        }
        let (rejoin, fatal) = {
            let mut state = m.state.lock();
            if defer && (state.rejoin || state.lost || state.fatal.is_some()) {
                return Ok(true);
            }
            (state.rejoin, state.fatal.take())
        };
        if let Some(e) = fatal {
            return Err(e);
        }
        if rejoin {
            self.rebalance(&m).await?;
        }
        Ok(false)
    }

    async fn rebalance(&mut self, m: &Arc<Membership>) -> Result<()> {
        let lost = std::mem::take(&mut m.state.lock().lost);
        let current = self.assignment();
        if lost && !current.is_empty() {
            tracing::info!(group = %m.group_id, partitions = current.len(), "partitions lost: the group moved on without this member");
            let mut ctx = self.context_for(&current);
            if let Some(listener) = self.listener.get_mut().as_mut() {
                listener.on_partitions_lost(&current, &mut ctx);
            }
            self.set_assignment(&[]);
        } else if !m.cooperative() && !current.is_empty() {
            self.revoke(&current, true).await;
        }
        if self.pattern.is_some() {
            self.refresh_subscription().await?;
        }
        let topics = self.subscription.clone().unwrap_or_default();
        let owned = self.assignment();
        let joined = coordinator::join_group(m, &self.core.cluster, &topics, &owned).await?;
        {
            let mut state = m.state.lock();
            state.generation = joined.generation;
            state.stable = true;
            state.rejoin = false;
        }
        tracing::info!(group = %m.group_id, generation = joined.generation, protocol = %joined.protocol, partitions = joined.assignment.len(), "joined group");
        let assigned = joined.assignment;
        let revoked: Vec<TopicPartition> = owned.iter().filter(|tp| !assigned.contains(tp)).cloned().collect();
        if !revoked.is_empty() {
            // Cooperative: give up only what moves, then rejoin so it can be handed on.
            self.revoke(&revoked, true).await;
            m.state.lock().rejoin = true;
        }
        let added: Vec<TopicPartition> = assigned.iter().filter(|tp| !owned.contains(tp)).cloned().collect();
        self.set_assignment(&assigned);
        self.start_at_committed(m, &added).await?;
        let mut ctx = self.context_for(&added);
        if let Some(listener) = self.listener.get_mut().as_mut() {
            listener.on_partitions_assigned(&added, &mut ctx);
        }
        self.apply_context(ctx).await
    }

    /// Revokes partitions: commits their positions first (with auto-commit), tells the
    /// listener, and stops reading them.
    async fn revoke(&mut self, partitions: &[TopicPartition], commit: bool) {
        if commit && self.core.config.enable_auto_commit {
            let offsets = self.positions(Some(partitions));
            if let Err(e) = self.commit_now(offsets).await {
                tracing::warn!(error = %e, "could not commit the positions of revoked partitions");
            }
        }
        let mut ctx = self.context_for(partitions);
        if let Some(listener) = self.listener.get_mut().as_mut() {
            listener.on_partitions_revoked(partitions, &mut ctx);
        }
        if let Err(e) = self.apply_context(ctx).await {
            tracing::warn!(error = %e, "a commit made while revoking partitions failed");
        }
        let keep: Vec<TopicPartition> = self.assignment().into_iter().filter(|tp| !partitions.contains(tp)).collect();
        self.set_assignment(&keep);
    }

    fn context_for(&self, partitions: &[TopicPartition]) -> RebalanceContext {
        let state = self.core.state.lock();
        let positions = partitions
            .iter()
            .filter_map(|tp| state.partitions.get(tp).and_then(|p| p.position).map(|pos| (tp.clone(), pos)))
            .collect();
        RebalanceContext { positions, ..RebalanceContext::default() }
    }

    async fn apply_context(&mut self, ctx: RebalanceContext) -> Result<()> {
        for (tp, offset) in &ctx.seeks {
            self.seek(tp, *offset)?;
        }
        if ctx.commits.is_empty() {
            return Ok(());
        }
        self.commit_now(ctx.commits.into_iter().map(|(tp, o)| (tp, o, None)).collect()).await
    }

    /// Starts newly assigned partitions at their committed offsets (or per
    /// `auto.offset.reset` where nothing is committed).
    async fn start_at_committed(&mut self, m: &Membership, partitions: &[TopicPartition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let committed = m.committed_offsets(&self.core.cluster, partitions, COMMITTED_TIMEOUT).await?;
        let reset = self.core.config.auto_offset_reset;
        for (tp, offset) in committed {
            if let Some(c) = offset {
                self.with_partition(&tp, |p| p.seek(Some(c.offset), reset))?;
            }
        }
        Ok(())
    }

    /// The positions of assigned partitions (all of them, or only `only`), to commit.
    fn positions(&self, only: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64, Option<String>)> {
        let state = self.core.state.lock();
        state
            .partitions
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|(tp, p)| p.position.map(|pos| (tp.clone(), pos, None)))
            .collect()
    }

    fn group(&self) -> Result<&Arc<Membership>> {
        self.membership.as_ref().ok_or_else(|| ClientError::config("group.id", "", "committed offsets need a group.id"))
    }

    async fn commit_now(&self, offsets: Vec<(TopicPartition, i64, Option<String>)>) -> Result<()> {
        let m = self.group()?;
        if offsets.is_empty() {
            return Ok(());
        }
        m.commit(offsets, m.identity()).await.map_err(|_| ClientError::Closed("the consumer is closed"))?
    }

    fn maybe_auto_commit(&mut self) {
        if !self.core.config.enable_auto_commit || Instant::now() < self.next_auto_commit {
            return;
        }
        self.next_auto_commit = Instant::now() + self.core.config.auto_commit_interval;
        let Some(m) = &self.membership else { return };
        if self.subscription.is_some() && !m.state.lock().stable {
            return;
        }
        let offsets = self.positions(None);
        if offsets.is_empty() {
            return;
        }
        let answer = m.commit(offsets, m.identity());
        tokio::spawn(async move {
            if let Ok(Err(e)) = answer.await {
                tracing::warn!(error = %e, "auto-commit failed");
            }
        });
    }

    /// Commits the positions of every assigned partition and waits for the answer. A
    /// member of an older generation gets ILLEGAL_GENERATION (its partitions moved on).
    pub async fn commit_sync(&mut self) -> Result<()> {
        self.group()?;
        self.commit_now(self.positions(None)).await
    }

    /// Commits the given offsets (the next offset to read, as in Kafka) with optional
    /// metadata strings, and waits for the answer.
    pub async fn commit_offsets_sync(&mut self, offsets: &[(TopicPartition, i64, Option<String>)]) -> Result<()> {
        self.group()?;
        self.commit_now(offsets.to_vec()).await
    }

    /// Commits the positions of every assigned partition without waiting; await the
    /// returned future for the outcome, or drop it. Commits reach the coordinator in the
    /// order they are made.
    pub fn commit_async(&mut self) -> Result<impl std::future::Future<Output = Result<()>> + Send + 'static> {
        let m = self.group()?;
        let answer = m.commit(self.positions(None), m.identity());
        Ok(async move { answer.await.map_err(|_| ClientError::Closed("the consumer is closed"))? })
    }

    /// The group's committed offsets for these partitions (`None`: nothing committed),
    /// retried for up to 30 s while the coordinator loads or moves.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<CommittedOffset>>> {
        let m = self.group()?;
        Ok(m.committed_offsets(&self.core.cluster, partitions, COMMITTED_TIMEOUT).await?.into_iter().collect())
    }

    /// Commits (with auto-commit), tells the listener its partitions are revoked, leaves
    /// the group (static members stay, to come back within the session timeout) and stops.
    pub async fn close(mut self) -> Result<()> {
        if self.subscription.is_some()
            && let Some(m) = self.membership.clone()
        {
            let assigned = self.assignment();
            if m.state.lock().stable {
                self.revoke(&assigned, true).await;
            }
            m.leave(&self.core.cluster).await;
        } else if self.membership.is_some() && self.core.config.enable_auto_commit {
            let offsets = self.positions(None);
            self.commit_now(offsets).await?;
        }
        Ok(())
    }

    fn take_buffered(&self) -> Result<ConsumerRecords> {
        let max = self.core.config.max_poll_records;
        let mut records = Vec::new();
        let mut state = self.core.state.lock();
        let count = state.partitions.len();
        let start = state.next;
        let mut wake_fetcher = false;
        for i in 0..count {
            let index = (start + i) % count;
            let (_, partition) = state.partitions.get_index_mut(index).expect("in range");
            if partition.paused {
                continue;
            }
            if let Some(fetched) = partition.buffered.as_mut() {
                while records.len() < max {
                    let Some(record) = fetched.records.pop_front() else { break };
                    partition.position = Some(record.offset + 1);
                    records.push(record);
                }
                if fetched.records.is_empty() {
                    partition.buffered = None;
                }
                // The buffer ran low: time for the fetch that refills it.
                wake_fetcher |= partition.wants_fetch() && !partition.in_flight;
            }
            // An error comes after the records fetched before it.
            if partition.buffered.is_none()
                && let Some(error) = partition.error.take()
            {
                if records.is_empty() {
                    return Err(error);
                }
                // Raised by the next poll, after these records are handed out.
                partition.error = Some(error);
                break;
            }
            if records.len() >= max {
                state.next = (index + 1) % count.max(1);
                break;
            }
        }
        drop(state);
        if wake_fetcher {
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
    ClientError::config(
        "assignment",
        format!("{}-{}", tp.topic, tp.partition),
        "the partition is not assigned to this consumer",
    )
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
                context: format!("{}-{}", tp.topic, tp.partition),
                message: Some("no valid position and auto.offset.reset=none".into()),
            });
        }
    };
    let read_committed = core.config.isolation_level == IsolationLevel::ReadCommitted;
    let listed = list_offsets(&core.cluster, &[(tp.clone(), spec)], read_committed).await?;
    let (_, result) = listed.into_iter().next().ok_or_else(|| ClientError::Protocol {
        addr: String::new(),
        reason: format!("ListOffsets answered nothing for {}-{}", tp.topic, tp.partition),
    })?;
    Ok(result?.offset)
}
