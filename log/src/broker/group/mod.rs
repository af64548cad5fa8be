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
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot, watch};

pub use coordinator::{
    CommitRequest, CoordinatorConfig, GroupCoordinator, JoinRequest, JoinResponse, Output, SyncRequest, SyncResponse,
};
pub use state::GroupState;

use super::{ApiError, Broker, LEADER_EPOCH};
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
/// How much of `__consumer_offsets` the loader reads at a time.
const LOAD_CHUNK_BYTES: u64 = 4 << 20;

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
    /// Partitions of `__consumer_offsets`.
    offsets_partitions: i32,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService").finish_non_exhaustive()
    }
}

impl GroupService {
    /// A service whose partitions in `loading` must be replayed before their groups answer.
    pub(crate) fn new(config: CoordinatorConfig, now_ms: i64, loading: bool) -> Self {
        let incarnation = super::metadata::new_id().as_u64_pair().0;
        let offsets_partitions = config.offsets_partitions;
        let mut coordinator = GroupCoordinator::new(config, incarnation, now_ms);
        if loading {
            let n = coordinator.config().offsets_partitions;
            coordinator.begin_loading(0..n);
        }
        let inner = Mutex::new(Inner { coordinator, waiting: HashMap::new(), next_request: 0 });
        Self { inner, wake: Notify::new(), offsets_partitions }
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

    /// OffsetCommit: validated, appended, then applied. Returns per-partition codes.
    pub(crate) fn commit(&self, broker: &Broker, req: CommitRequest) -> Result<Vec<(String, i32, i16)>, i16> {
        let mut inner = self.inner.lock();
        let now = broker.now_ms();
        let pending = inner.coordinator.prepare_commit(now, req)?;
        let result = if pending.records.is_empty() {
            Ok(inner.coordinator.complete_commit(now, pending))
        } else {
            match append(broker, pending.partition, &pending.records) {
                Ok(()) => Ok(inner.coordinator.complete_commit(now, pending)),
                Err(e) => {
                    tracing::error!(error = %e.message, "could not write committed offsets");
                    let code =
                        if e.code == codes::KAFKA_STORAGE_ERROR { codes::COORDINATOR_NOT_AVAILABLE } else { e.code };
                    Ok(pending
                        .results
                        .into_iter()
                        .map(|(t, p, c)| (t, p, if c == codes::NONE { code } else { c }))
                        .collect())
                }
            }
        };
        flush(&mut inner, broker);
        result
    }

    /// Starts the background work: replaying `__consumer_offsets` (if the service was
    /// created loading) and the timer that drives session and rebalance timeouts.
    pub(crate) fn start(broker: &Arc<Broker>, stop: watch::Receiver<bool>) {
        if broker.groups.inner.lock().coordinator.is_loading() {
            let loader = broker.clone();
            tokio::task::spawn_blocking(move || load_all(&loader));
        }
        tokio::spawn(run_timer(broker.clone(), stop));
    }
}

/// Appends coordinator records (key, value or tombstone) to a `__consumer_offsets` partition.
fn append(broker: &Broker, partition: i32, records: &[coordinator::CoordinatorRecord]) -> Result<(), ApiError> {
    ensure_offsets_topic(broker)?;
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    let log = broker
        .logs
        .get_log(&tp)
        .ok_or_else(|| ApiError::new(codes::COORDINATOR_NOT_AVAILABLE, format!("{tp} does not exist")))?;
    let now = broker.now_ms();
    let mut builder = RecordBatchBuilder::new(Compression::None);
    for (key, value) in records {
        builder.append(now, Some(key), value.as_deref(), &[]);
    }
    let mut bytes = builder.build();
    log.write()
        .append_as_leader(&mut bytes, LEADER_EPOCH, AppendOrigin::Coordinator, now)
        .map_err(super::storage_error)?;
    broker.notify_appended();
    Ok(())
}

/// Creates `__consumer_offsets` the first time a group needs it, as Kafka does.
pub(crate) fn ensure_offsets_topic(broker: &Broker) -> Result<(), ApiError> {
    if broker.topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let partitions = broker.groups.offsets_partitions;
    let overrides = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("segment.bytes".to_string(), (100 << 20).to_string()),
    ]);
    match broker.create_topic(OFFSETS_TOPIC, partitions, overrides, false) {
        Ok(_) => Ok(()),
        Err(e) if e.code == codes::TOPIC_ALREADY_EXISTS => Ok(()),
        Err(e) => Err(e),
    }
}

fn flush(inner: &mut Inner, broker: &Broker) {
    for output in inner.coordinator.take_outputs() {
        match output {
            Output::Append { partition, records } => {
                if records.is_empty() {
                    continue;
                }
                if let Err(e) = append(broker, partition, &records) {
                    // Group metadata is soft state: members rejoin after a failover anyway.
                    tracing::error!(partition, error = %e.message, "could not write group metadata");
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

/// Replays every partition of `__consumer_offsets` into the coordinator.
pub(crate) fn load_all(broker: &Broker) {
    let partitions = broker.groups.offsets_partitions;
    let started = std::time::Instant::now();
    let mut records = 0u64;
    for p in 0..partitions {
        records += load_partition(broker, p);
        broker.groups.with(broker, |c, now| c.finish_loading(p, now));
    }
    tracing::info!(partitions, records, elapsed_ms = started.elapsed().as_millis() as u64, "loaded consumer groups");
}

fn load_partition(broker: &Broker, partition: i32) -> u64 {
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
    let Some(log) = broker.logs.get_log(&tp) else { return 0 };
    let (mut next, end) = {
        let log = log.read();
        (log.log_start_offset(), log.high_watermark())
    };
    let mut loaded = 0;
    while next < end {
        let chunk = {
            let log = log.read();
            log.read(next, LOAD_CHUNK_BYTES, Some(end), true).and_then(|info| info.read_to_vec())
        };
        let bytes = match chunk {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => break,
            Err(e) => {
                tracing::error!(%tp, offset = next, error = %e, "could not read consumer group records; stopping this partition's load");
                break;
            }
        };
        let mut rest = bytes.as_slice();
        let mut inner = broker.groups.inner.lock();
        let now = broker.now_ms();
        while !rest.is_empty() {
            let (batch, tail) = match RecordBatch::parse(rest) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::error!(%tp, offset = next, error = %e, "unreadable batch in consumer group records");
                    return loaded;
                }
            };
            rest = tail;
            let h = batch.header();
            next = h.base_offset + i64::from(h.last_offset_delta) + 1;
            if h.is_control() {
                continue;
            }
            let payload = match batch.records_payload(usize::MAX >> 1) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(%tp, offset = h.base_offset, error = %e, "skipping an undecodable batch");
                    continue;
                }
            };
            for (i, record) in RecordIter::new(&payload, h.records_count).enumerate() {
                let loaded_one = record.map_err(|e| e.to_string()).and_then(|r| {
                    let key = CoordinatorKey::decode(r.key.unwrap_or_default()).map_err(|e| e.to_string())?;
                    inner.coordinator.load_record(&key, r.value, now)
                });
                match loaded_one {
                    Ok(()) => loaded += 1,
                    Err(reason) => {
                        tracing::warn!(%tp, offset = h.base_offset + i as i64, %reason, "skipping an unreadable consumer group record")
                    }
                }
            }
        }
    }
    loaded
}
