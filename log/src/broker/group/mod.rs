//! Consumer groups: the [`coordinator::GroupCoordinator`] state machine, the
//! `__consumer_offsets` record codec in [`records`], and [`GroupService`], the thin tokio
//! layer that feeds the state machine requests and time, appends the records it asks for,
//! answers waiting JoinGroup and SyncGroup requests, and reloads everything at start.
//!
//! Data flow: a group request is decoded by the handlers, turned into a coordinator call
//! under one lock, and the resulting records are appended to the group's
//! `__consumer_offsets` partition before any answer leaves, so an acknowledged commit is in
//! the log. At start, every partition of `__consumer_offsets` is replayed in the
//! background; meanwhile its groups answer COORDINATOR_LOAD_IN_PROGRESS.

pub mod coordinator;
pub mod records;
#[cfg(test)]
mod service_tests;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot, watch};

pub use coordinator::{
    CommitRequest, CoordinatorConfig, GroupCoordinator, JoinRequest, JoinResponse, Output, PendingDeletion,
    SyncRequest, SyncResponse,
};
pub use state::GroupState;

use super::{ApiError, Broker, NewTopic};
use crate::codes;
use crate::record::{Compression, RecordBatch, RecordBatchBuilder, RecordIter};
use crate::storage::{AppendOrigin, TopicPartition};
use records::CoordinatorKey;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Identifies a JoinGroup or SyncGroup waiting for its answer.
pub type RequestId = u64;
/// The longest the timer sleeps without being woken, so a missed wake-up costs little.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);

enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

struct Inner {
    coordinator: GroupCoordinator,
    waiting: HashMap<RequestId, Waiter>,
    next_request: RequestId,
}

/// The group coordinator with its I/O.
pub struct GroupService {
    inner: Mutex<Inner>,
    /// Wakes the timer when a request may have moved a deadline earlier.
    wake: Notify,
    /// Leadership changes of `__consumer_offsets` partitions, for the loader: whether this
    /// broker now leads each.
    moves: Mutex<Vec<(i32, bool)>>,
    moved: Notify,
    /// Group metadata appended but not yet on the whole ISR, whose answers wait for it.
    replicating: mpsc::UnboundedSender<Replicating>,
    replicating_rx: Mutex<Option<mpsc::UnboundedReceiver<Replicating>>>,
    /// Partitions of `__consumer_offsets`.
    pub(crate) offsets_partitions: i32,
}

/// Answers that leave once their group metadata is on every in-sync replica, as Kafka
/// sends SyncGroup answers only after the assignment is replicated.
struct Replicating {
    appended: Appended,
    group: Option<String>,
    generation: i32,
    then: Vec<Output>,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService").finish_non_exhaustive()
    }
}

impl GroupService {
    /// A service whose partitions in `loading` must be replayed before their groups answer.
    pub(crate) fn new(config: CoordinatorConfig, now_ms: i64, loading: bool) -> Self {
        let incarnation = uuid::Uuid::new_v4().as_u64_pair().0;
        let offsets_partitions = config.offsets_partitions;
        let mut coordinator = GroupCoordinator::new(config, incarnation, now_ms);
        if loading {
            let n = coordinator.config().offsets_partitions;
            coordinator.begin_loading(0..n);
        }
        let inner = Mutex::new(Inner { coordinator, waiting: HashMap::new(), next_request: 0 });
        let (replicating, replicating_rx) = mpsc::unbounded_channel();
        Self {
            inner,
            wake: Notify::new(),
            moves: Mutex::new(Vec::new()),
            moved: Notify::new(),
            replicating,
            replicating_rx: Mutex::new(Some(replicating_rx)),
            offsets_partitions,
        }
    }

    /// Runs `f` on the coordinator, then appends the records it asked for and sends the
    /// answers it produced, in that order.
    pub(crate) fn with<R>(&self, broker: &Broker, f: impl FnOnce(&mut GroupCoordinator, i64) -> R) -> R {
        let mut inner = self.inner.lock();
        let result = f(&mut inner.coordinator, broker.now_ms());
        flush(&mut inner, broker);
        result
    }

    /// JoinGroup: waits until the rebalance completes (bounded by the rebalance timeout,
    /// which the coordinator enforces).
    pub(crate) async fn join(&self, broker: &Broker, req: JoinRequest) -> JoinResponse {
        let (tx, rx) = oneshot::channel();
        let member_id = req.member_id.clone();
        self.waiting_call(broker, Waiter::Join(tx), |c, now, id| c.join_group(now, id, req));
        rx.await.unwrap_or_else(|_| JoinResponse {
            error: codes::NOT_COORDINATOR,
            generation: -1,
            member_id,
            ..JoinResponse::default()
        })
    }

    /// SyncGroup: waits for the leader's assignment.
    pub(crate) async fn sync(&self, broker: &Broker, req: SyncRequest) -> SyncResponse {
        let (tx, rx) = oneshot::channel();
        self.waiting_call(broker, Waiter::Sync(tx), |c, now, id| c.sync_group(now, id, req));
        rx.await.unwrap_or_else(|_| SyncResponse { error: codes::NOT_COORDINATOR, ..SyncResponse::default() })
    }

    /// Registers `waiter` under a fresh request id, then runs `f` with that id. The waiter
    /// is in place before `f` runs, so an answer produced at once finds it.
    fn waiting_call(&self, broker: &Broker, waiter: Waiter, f: impl FnOnce(&mut GroupCoordinator, i64, RequestId)) {
        {
            let mut inner = self.inner.lock();
            inner.next_request += 1;
            let id = inner.next_request;
            inner.waiting.insert(id, waiter);
            f(&mut inner.coordinator, broker.now_ms(), id);
            flush(&mut inner, broker);
        }
        self.wake.notify_one();
    }

    /// Runs `f` and wakes the timer, whose next deadline may now be earlier.
    pub(crate) fn with_and_wake<R>(&self, broker: &Broker, f: impl FnOnce(&mut GroupCoordinator, i64) -> R) -> R {
        let result = self.with(broker, f);
        self.wake.notify_one();
        result
    }

    /// OffsetCommit: validated, appended, then applied. Returns per-partition codes, and
    /// where the records were appended: the answer waits until they are on the whole ISR
    /// ([`Appended::wait`]).
    pub(crate) fn commit(&self, broker: &Broker, req: CommitRequest) -> Result<Commit, i16> {
        let mut inner = self.inner.lock();
        let now = broker.now_ms();
        let pending = inner.coordinator.prepare_commit(now, req)?;
        let result = if pending.records.is_empty() {
            Ok((inner.coordinator.complete_commit(now, pending), None))
        } else {
            match append(broker, pending.partition, &pending.records) {
                Ok(at) => Ok((inner.coordinator.complete_commit(now, pending), Some(at))),
                Err(e) => {
                    tracing::error!(error = %e.message, "could not write committed offsets");
                    let code = write_error(e.code, Written::Offsets);
                    Ok((
                        pending
                            .results
                            .into_iter()
                            .map(|(t, p, c)| (t, p, if c == codes::NONE { code } else { c }))
                            .collect(),
                        None,
                    ))
                }
            }
        };
        flush(&mut inner, broker);
        result
    }

    /// DeleteGroups or OffsetDelete: `prepare` says what to delete, its tombstones are
    /// appended, and only then is the deletion applied, so memory never runs ahead of the
    /// log. A failed append is answered with the error and changes nothing.
    pub(crate) fn delete<R>(
        &self,
        broker: &Broker,
        prepare: impl FnOnce(&GroupCoordinator) -> Result<(R, PendingDeletion), i16>,
    ) -> Result<R, i16> {
        let mut inner = self.inner.lock();
        // Records queued before the deletion must land before its tombstones.
        flush(&mut inner, broker);
        let (result, pending) = prepare(&inner.coordinator)?;
        if !pending.records.is_empty() {
            append(broker, pending.partition, &pending.records).map(|_| ()).map_err(|e| {
                tracing::error!(error = %e.message, "could not write group tombstones");
                write_error(e.code, Written::GroupMetadata)
            })?;
        }
        inner.coordinator.complete_deletion(pending);
        Ok(result)
    }

    /// This broker became the leader of `partition` of `__consumer_offsets` (`leads`), or
    /// stopped being it: the coordinator of its groups moves with it (Kafka's
    /// onElection/onResignation). The loader replays the partition or drops its groups.
    /// The partition's groups answer at once as its new role says: COORDINATOR_LOAD_IN_PROGRESS
    /// until the load is done, or NOT_COORDINATOR.
    pub(crate) fn leadership_changed(&self, partition: i32, leads: bool) {
        let mut inner = self.inner.lock();
        if leads && inner.coordinator.is_partition_ready(partition) {
            // Still the coordinator (a new leader epoch, or a topic just created): what is
            // in memory is current, and reloading would drop members that just joined.
            return;
        }
        if leads {
            inner.coordinator.abandon_loading(partition);
        } else {
            inner.coordinator.resign(partition);
            tracing::debug!(partition, "no longer the group coordinator of this __consumer_offsets partition");
        }
        drop(inner);
        let mut moves = self.moves.lock();
        moves.retain(|(p, _)| *p != partition);
        moves.push((partition, leads));
        drop(moves);
        self.moved.notify_one();
    }

    /// Starts the background work: the loader, which replays each partition of
    /// `__consumer_offsets` this broker leads (and drops the groups of those it stops
    /// leading), and the timer that drives session and rebalance timeouts.
    pub(crate) fn start(broker: &Arc<Broker>, stop: watch::Receiver<bool>) {
        tokio::spawn(run_loader(broker.clone(), stop.clone()));
        if let Some(replicating) = broker.groups.replicating_rx.lock().take() {
            tokio::spawn(run_replication_waits(broker.clone(), replicating, stop.clone()));
        }
        tokio::spawn(run_timer(broker.clone(), stop));
    }

    /// Sends the answers of `written` once its records are replicated, or reports the
    /// failure to the coordinator instead.
    fn finish_replicating(&self, broker: &Broker, written: Replicating, replicated: Result<(), i16>) {
        let mut inner = self.inner.lock();
        match replicated {
            Ok(()) => stored(&mut inner, broker, written.group, written.generation, written.then),
            Err(code) => {
                let group = written.group.as_deref();
                tracing::warn!(group, code, "group metadata did not reach the in-sync replicas");
                let code = write_error(code, Written::GroupMetadata);
                inner.coordinator.write_failed(broker.now_ms(), group, written.generation, code, written.then);
            }
        }
        flush(&mut inner, broker);
    }
}

/// What an OffsetCommit came to: per-partition codes, and where its records went.
pub(crate) type Commit = (Vec<(String, i32, i16)>, Option<Appended>);

/// How long a commit waits for the ISR (`offsets.commit.timeout.ms`).
pub(crate) const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where coordinator records were appended.
#[derive(Debug)]
pub(crate) struct Appended {
    replica: Arc<crate::broker::Partition>,
    end: i64,
    epoch: i32,
}

impl Appended {
    /// Waits until the records are on every in-sync replica of their partition; else the
    /// code to answer an OffsetCommit with (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR or
    /// REQUEST_TIMED_OUT, all retriable).
    pub(crate) async fn wait(&self) -> Result<(), i16> {
        self.replicated().await.map_err(|code| write_error(code, Written::Offsets))
    }

    /// Waits, at most `offsets.commit.timeout.ms`, until the records are on every in-sync
    /// replica; else the produce error code that says why not.
    async fn replicated(&self) -> Result<(), i16> {
        let deadline = tokio::time::Instant::now() + OFFSETS_COMMIT_TIMEOUT;
        ack_result(self.replica.wait_for_ack(self.end, self.epoch, deadline).await)
    }

    /// Whether the records are already on every in-sync replica (always, on one node).
    fn is_replicated(&self) -> bool {
        matches!(self.replica.ack_state(self.end, self.epoch), crate::replication::AckState::Done)
    }
}

fn ack_result(state: crate::replication::AckState) -> Result<(), i16> {
    use crate::replication::AckState;
    Err(match state {
        AckState::Done => return Ok(()),
        AckState::Pending => codes::REQUEST_TIMED_OUT,
        AckState::NotEnoughReplicasAfterAppend => codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        AckState::NotLeader => codes::NOT_LEADER_OR_FOLLOWER,
    })
}

/// Appends coordinator records (key, value or tombstone) to a `__consumer_offsets` partition,
/// refused with NOT_ENOUGH_REPLICAS while its ISR is below `min.insync.replicas`.
/// `__consumer_offsets` exists by then: FindCoordinator, JoinGroup and OffsetCommit create it.
fn append(broker: &Broker, partition: i32, records: &[coordinator::CoordinatorRecord]) -> Result<Appended, ApiError> {
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    let unavailable = |why: String| ApiError::new(codes::COORDINATOR_NOT_AVAILABLE, why);
    let replica =
        broker.leader_replica(&tp).map_err(|code| unavailable(format!("{tp} is not led here (error {code})")))?;
    let now = broker.now_ms();
    let mut builder = RecordBatchBuilder::new(Compression::None);
    for (key, value) in records {
        builder.append(now, Some(key), value.as_deref(), &[]);
    }
    let mut bytes = builder.build();
    let (info, epoch) =
        replica.append_as_leader(&mut bytes, AppendOrigin::Coordinator, true, now).map_err(|refused| {
            let (code, message) = refused.code_and_message();
            ApiError::new(code, message)
        })?;
    broker.notify_appended(&tp);
    Ok(Appended { replica, end: info.last_offset + 1, epoch })
}

/// Creates `__consumer_offsets` the first time a group needs it, as Kafka does.
pub(crate) async fn ensure_offsets_topic(broker: &Broker) -> Result<(), ApiError> {
    if broker.topic(OFFSETS_TOPIC).is_some() {
        // Another request may have just created it, and its replicas may not be set up
        // here yet: waits for that publish (a no-op when it is done).
        if broker.published_offset() < broker.quorum.image_offset() {
            crate::broker::handlers::blocking(|| broker.publish_metadata()).map_err(crate::broker::storage_error)?;
        }
        return Ok(());
    }
    let partitions = broker.groups.offsets_partitions;
    let overrides = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (100 << 20).to_string()),
    ]);
    let topic = NewTopic {
        replication_factor: Some(broker.config.cluster.offsets_replication_factor()),
        ..NewTopic::new(OFFSETS_TOPIC, partitions).with_configs(overrides)
    };
    match broker.create_topic(topic, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == codes::TOPIC_ALREADY_EXISTS => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a failed append to `__consumer_offsets` was writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Offsets,
    GroupMetadata,
}

/// The error a client is answered with when coordinator records could not be written:
/// the storage error translated as Kafka's group metadata manager translates it.
fn write_error(code: i16, written: Written) -> i16 {
    match code {
        codes::UNKNOWN_TOPIC_OR_PARTITION | codes::NOT_ENOUGH_REPLICAS | codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
            codes::COORDINATOR_NOT_AVAILABLE
        }
        codes::NOT_LEADER_OR_FOLLOWER | codes::KAFKA_STORAGE_ERROR => codes::NOT_COORDINATOR,
        codes::MESSAGE_TOO_LARGE | codes::RECORD_LIST_TOO_LARGE | codes::INVALID_FETCH_SIZE => match written {
            Written::Offsets => codes::INVALID_COMMIT_OFFSET_SIZE,
            Written::GroupMetadata => codes::UNKNOWN_SERVER_ERROR,
        },
        codes::REQUEST_TIMED_OUT if written == Written::GroupMetadata => codes::REBALANCE_IN_PROGRESS,
        other => other,
    }
}

/// Carries out the coordinator's outputs until it has no more: each append before the
/// answers that wait on it, and a failed append reported back instead of those answers.
fn flush(inner: &mut Inner, broker: &Broker) {
    loop {
        let outputs = inner.coordinator.take_outputs();
        if outputs.is_empty() {
            return;
        }
        for output in outputs {
            deliver(inner, broker, output);
        }
    }
}

fn deliver(inner: &mut Inner, broker: &Broker, output: Output) {
    match output {
        Output::Append { partition, records, group, generation, then } => {
            let written = if records.is_empty() { Ok(None) } else { append(broker, partition, &records).map(Some) };
            match written {
                Ok(Some(appended)) if (group.is_some() || !then.is_empty()) && !appended.is_replicated() => {
                    // Answered by the replication waiter, unless it has stopped.
                    if let Err(mpsc::error::SendError(w)) =
                        broker.groups.replicating.send(Replicating { appended, group, generation, then })
                    {
                        let (now, code) = (broker.now_ms(), codes::NOT_COORDINATOR);
                        inner.coordinator.write_failed(now, w.group.as_deref(), w.generation, code, w.then);
                    }
                }
                Ok(_) => stored(inner, broker, group, generation, then),
                Err(e) => {
                    let group_id = group.as_deref().unwrap_or_default();
                    tracing::error!(partition, group = group_id, error = %e.message, "could not write group metadata");
                    let code = write_error(e.code, Written::GroupMetadata);
                    inner.coordinator.write_failed(broker.now_ms(), group.as_deref(), generation, code, then);
                }
            }
        }
        Output::Join(id, response) => {
            if let Some(Waiter::Join(tx)) = inner.waiting.remove(&id) {
                let _ = tx.send(response);
            }
        }
        Output::Sync(id, response) => {
            if let Some(Waiter::Sync(tx)) = inner.waiting.remove(&id) {
                let _ = tx.send(response);
            }
        }
    }
}

/// Waits for each group metadata write to replicate, each on its own, and then sends its
/// answers; until `stop`.
async fn run_replication_waits(
    broker: Arc<Broker>,
    mut writes: mpsc::UnboundedReceiver<Replicating>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let written = tokio::select! {
            written = writes.recv() => match written {
                Some(written) => written,
                None => return,
            },
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return } else { continue },
        };
        let (broker, mut stop) = (broker.clone(), stop.clone());
        tokio::spawn(async move {
            let replicated = tokio::select! {
                replicated = written.appended.replicated() => replicated,
                // The broker is stopping: its members must find another coordinator.
                _ = stop.wait_for(|stopped| *stopped) => Err(codes::NOT_LEADER_OR_FOLLOWER),
            };
            broker.groups.finish_replicating(&broker, written, replicated);
        });
    }
}

/// Records are on every in-sync replica: sends what waited on them, unless their group
/// has moved to another generation since (then they are out of date).
fn stored(inner: &mut Inner, broker: &Broker, group: Option<String>, generation: i32, then: Vec<Output>) {
    if let Some(group) = group.as_deref()
        && !inner.coordinator.assignment_stored(group, generation)
    {
        let code = codes::REBALANCE_IN_PROGRESS;
        inner.coordinator.write_failed(broker.now_ms(), Some(group), generation, code, then);
        return;
    }
    for answer in then {
        deliver(inner, broker, answer);
    }
}

async fn run_timer(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let service = &broker.groups;
    loop {
        let wait_ms = {
            let inner = service.inner.lock();
            (inner.coordinator.next_deadline_ms() - broker.now_ms()).max(0) as u64
        };
        let wait = Duration::from_millis(wait_ms).min(MAX_TIMER_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = service.wake.notified() => continue,
            _ = stop.changed() => {
                service.with(&broker, |c, _| c.shutdown());
                return;
            }
        }
        service.with(&broker, |c, now| c.tick(now));
    }
}

/// Follows the leadership changes of `__consumer_offsets`, one at a time, until `stop`.
async fn run_loader(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    loop {
        let moves = std::mem::take(&mut *broker.groups.moves.lock());
        for (partition, leads) in moves {
            // A later change of the same partition replaces this one in the queue.
            let still_leads = !broker.groups.moves.lock().iter().any(|(p, _)| *p == partition);
            if !leads || !still_leads {
                continue;
            }
            let loader = broker.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let loaded = load_with_retries(&loader, partition, LoadSettings::DEFAULT);
                if loaded.is_ok() {
                    // Unless it resigned while loading: then its groups stay another's.
                    loader.groups.with(&loader, |c, now| {
                        if c.is_partition_loading(partition) {
                            c.finish_loading(partition, now);
                        }
                    });
                }
                loaded
            })
            .await;
            match loaded {
                Ok(Ok(records)) => {
                    tracing::info!(partition, records, "loaded the groups of a __consumer_offsets partition")
                }
                Ok(Err(reason)) => tracing::error!(
                    partition,
                    %reason,
                    "could not load this partition of __consumer_offsets; its groups answer \
                     COORDINATOR_LOAD_IN_PROGRESS until it leads again"
                ),
                Err(e) => tracing::error!(partition, error = %e, "the group loader task failed"),
            }
        }
        tokio::select! {
            _ = broker.groups.moved.notified() => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
        }
    }
}

/// How `__consumer_offsets` is replayed at start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSettings {
    /// How much of a partition is read at a time.
    pub chunk_bytes: u64,
    /// Attempts per partition before it is left unavailable.
    pub attempts: u32,
    /// The wait before the first retry; it doubles after each one.
    pub first_backoff: Duration,
}

impl LoadSettings {
    pub(crate) const DEFAULT: Self =
        Self { chunk_bytes: 4 << 20, attempts: 5, first_backoff: Duration::from_millis(500) };
}

/// Replays every partition of `__consumer_offsets` into the coordinator.
#[cfg(test)]
pub(crate) fn load_all(broker: &Broker) {
    load_all_with(broker, LoadSettings::DEFAULT)
}

#[cfg(test)]
pub(crate) fn load_all_with(broker: &Broker, settings: LoadSettings) {
    let partitions = broker.groups.offsets_partitions;
    let started = std::time::Instant::now();
    let (mut records, mut failed) = (0u64, 0);
    for p in 0..partitions {
        match load_with_retries(broker, p, settings) {
            Ok(n) => {
                records += n;
                broker.groups.with(broker, |c, now| c.finish_loading(p, now));
            }
            Err(reason) => {
                failed += 1;
                tracing::error!(
                    partition = p,
                    attempts = settings.attempts,
                    %reason,
                    "could not load this partition of __consumer_offsets; its groups answer \
                     COORDINATOR_LOAD_IN_PROGRESS until the broker restarts"
                );
            }
        }
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::info!(partitions, failed, records, elapsed_ms, "loaded consumer groups");
}

/// Loads one partition, starting again from its beginning after a failure. What a failed
/// attempt replayed is dropped, so no partial state is ever served.
fn load_with_retries(broker: &Broker, partition: i32, settings: LoadSettings) -> Result<u64, String> {
    let mut backoff = settings.first_backoff;
    let mut attempt = 1;
    loop {
        let reason = match load_partition(broker, partition, settings.chunk_bytes) {
            Ok(loaded) => return Ok(loaded),
            Err(reason) => reason,
        };
        broker.groups.with(broker, |c, _| c.abandon_loading(partition));
        if attempt >= settings.attempts {
            return Err(reason);
        }
        tracing::warn!(partition, attempt, %reason, retry_in_ms = backoff.as_millis() as u64, "consumer group load failed");
        std::thread::sleep(backoff);
        backoff = backoff.saturating_mul(2);
        attempt += 1;
    }
}

fn load_partition(broker: &Broker, partition: i32, chunk_bytes: u64) -> Result<u64, String> {
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    let Some(log) = broker.logs.get_log(&tp) else { return Ok(0) };
    let (mut next, end, max_decompressed) = {
        let log = log.read();
        // To the log end: a new leader holds every committed record, and its high
        // watermark may not have caught up with them yet.
        (log.log_start_offset(), log.log_end_offset(), log.config().max_decompressed_bytes())
    };
    let mut loaded = 0;
    while next < end {
        let chunk = {
            let log = log.read();
            log.read(next, chunk_bytes, Some(end), true).and_then(|info| info.read_to_vec())
        };
        let bytes = match chunk {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => break,
            Err(e) => return Err(format!("reading {tp} at offset {next}: {e}")),
        };
        let mut inner = broker.groups.inner.lock();
        let now = broker.now_ms();
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let (batch, tail) =
                RecordBatch::parse(rest).map_err(|e| format!("an unreadable batch in {tp} at offset {next}: {e}"))?;
            rest = tail;
            let h = batch.header();
            next = h.base_offset + i64::from(h.last_offset_delta) + 1;
            if h.is_control() {
                continue;
            }
            let payload = batch
                .records_payload(max_decompressed)
                .map_err(|e| format!("an undecodable batch in {tp} at offset {}: {e}", h.base_offset))?;
            for (i, record) in RecordIter::new(&payload, h.records_count).enumerate() {
                let loaded_one = record.map_err(|e| e.to_string()).and_then(|r| {
                    let key = CoordinatorKey::decode(r.key.unwrap_or_default()).map_err(|e| e.to_string())?;
                    inner.coordinator.load_record(&key, r.value, now)
                });
                match loaded_one {
                    Ok(()) => loaded += 1,
                    // As Kafka does with record types it does not know: skipped, loudly.
                    Err(reason) => {
                        tracing::warn!(%tp, offset = h.base_offset + i as i64, %reason, "skipping an unreadable consumer group record")
                    }
                }
            }
        }
    }
    Ok(loaded)
}
