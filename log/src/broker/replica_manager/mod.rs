//! The partitions this broker holds replicas of (Kafka's ReplicaManager): which it leads
//! and which it follows, the ISR changes their leaders ask the controller for, and the
//! high watermarks, checkpointed to `replication-offset-checkpoint` so that a restarted
//! broker never exposes records it cannot know were committed.
//!
//! The metadata publisher hands every registration of a local partition to
//! [`ReplicaManager::apply_registration`]; the [`fetcher`] follows the leaders; produce and
//! fetch find their partition here.

pub(crate) mod fetcher;
mod partition;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

pub use partition::Partition;
pub(crate) use partition::{FollowerFetch, ReplicaRead};

use super::Broker;
use crate::codes;
use crate::controller::{AlterPartition, ControllerReply, ControllerRequest, PartitionRegistration};
use crate::replication::{ReplicationConfig, Transition};
use crate::storage::TopicPartition;
use crate::storage::checkpoint::{read_offsets, write_offsets};
use crate::storage::error::Result;
use crate::storage::manager::SharedLog;

/// The high watermark checkpoint in the data directory (Kafka's name).
pub const HIGH_WATERMARK_CHECKPOINT: &str = "replication-offset-checkpoint";

/// How often the high watermarks are checkpointed
/// (`replica.high.watermark.checkpoint.interval.ms`).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// How often leaders look for followers that fell out of sync.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// How long an AlterPartition waits for the controller.
const ALTER_PARTITION_TIMEOUT: Duration = Duration::from_secs(5);

/// This broker's replicas.
#[derive(Debug)]
pub struct ReplicaManager {
    node_id: i32,
    config: ReplicationConfig,
    checkpoint_path: PathBuf,
    /// High watermarks read at start, for partitions not taken over yet.
    checkpointed: Mutex<BTreeMap<TopicPartition, i64>>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// ISR changes waiting to be sent to the controller.
    alters: Mutex<Vec<(Arc<Partition>, AlterPartition)>>,
    alters_waiting: Notify,
    /// Ticks when the set of partitions this broker follows may have changed.
    following_changed: watch::Sender<u64>,
    /// This broker's registration epoch, which its ISR changes carry.
    broker_epoch: AtomicI64,
}

impl ReplicaManager {
    /// A manager for the data directory `dir`, reading its high watermark checkpoint. A
    /// damaged checkpoint is set aside with a warning: every partition then starts from
    /// its log start, and its high watermark moves up again as the ISR confirms it.
    pub(crate) fn open(node_id: i32, config: ReplicationConfig, dir: &std::path::Path) -> Self {
        let checkpoint_path = dir.join(HIGH_WATERMARK_CHECKPOINT);
        let checkpointed = read_offsets(&checkpoint_path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the high watermark checkpoint is unreadable; starting from the log starts");
            BTreeMap::new()
        });
        Self {
            node_id,
            config,
            checkpoint_path,
            checkpointed: Mutex::new(checkpointed),
            partitions: RwLock::new(HashMap::new()),
            alters: Mutex::new(Vec::new()),
            alters_waiting: Notify::new(),
            following_changed: watch::channel(0).0,
            broker_epoch: AtomicI64::new(-1),
        }
    }

    /// This broker registered (again) with `epoch`.
    pub(crate) fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, Ordering::Release);
        for partition in self.partitions() {
            partition.set_broker_epoch(epoch);
        }
    }

    /// The replica of `tp`, if this broker holds one.
    pub fn partition(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().get(tp).cloned()
    }

    /// Every replica this broker holds.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Applies a registration of a partition that has a replica here, taking over `log`
    /// the first time.
    pub(crate) fn apply_registration(
        &self,
        tp: &TopicPartition,
        topic_id: uuid::Uuid,
        log: &SharedLog,
        reg: PartitionRegistration,
        min_insync_replicas: i32,
        now_ms: i64,
    ) -> Result<Transition> {
        let existing = self.partition(tp).filter(|p| p.topic_id() == topic_id && Arc::ptr_eq(p.log(), log));
        let partition = match existing {
            Some(partition) => partition,
            None => {
                // Built outside the map's lock: it takes the log's.
                let checkpoint = self.checkpointed.lock().remove(tp);
                let fresh =
                    Arc::new(Partition::new(tp.clone(), topic_id, log.clone(), self.node_id, self.config, checkpoint));
                self.partitions.write().insert(tp.clone(), fresh.clone());
                fresh
            }
        };
        partition.configure(self.broker_epoch.load(Ordering::Acquire), min_insync_replicas);
        let transition = partition.apply_registration(reg, now_ms)?;
        match transition {
            Transition::BecameLeader { leader_epoch, .. } => {
                tracing::info!(partition = %tp, leader_epoch, "leading");
            }
            Transition::BecameFollower { leader, leader_epoch } => {
                tracing::info!(partition = %tp, leader, leader_epoch, "following");
            }
            Transition::Removed => self.remove(tp),
            Transition::Updated | Transition::Stale => {}
        }
        if matches!(transition, Transition::BecameLeader { .. } | Transition::BecameFollower { .. }) {
            self.following_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(transition)
    }

    /// Forgets the replica of `tp` (its topic was deleted, or it moved away).
    pub(crate) fn remove(&self, tp: &TopicPartition) {
        if self.partitions.write().remove(tp).is_some() {
            self.following_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The partitions this broker follows `leader` for, with where each fetches from.
    pub(crate) fn following(&self, leader: i32) -> Vec<(Arc<Partition>, FollowerFetch)> {
        let partitions = self.partitions();
        partitions
            .into_iter()
            .filter_map(|p| p.follower_fetch().filter(|f| f.leader == leader).map(|f| (p, f)))
            .collect()
    }

    /// The leaders this broker follows someone for.
    pub(crate) fn leaders_followed(&self) -> Vec<i32> {
        let mut leaders: Vec<i32> =
            self.partitions().iter().filter_map(|p| p.follower_fetch().map(|f| f.leader)).collect();
        leaders.sort_unstable();
        leaders.dedup();
        leaders
    }

    /// Watches for changes to what this broker follows.
    pub(crate) fn watch_following(&self) -> watch::Receiver<u64> {
        self.following_changed.subscribe()
    }

    /// Queues an ISR change for the controller.
    pub(crate) fn request_isr_change(&self, partition: Arc<Partition>, alter: AlterPartition) {
        self.alters.lock().push((partition, alter));
        self.alters_waiting.notify_one();
    }

    /// Forgets the checkpointed high watermarks no partition claimed at start (topics
    /// deleted while this broker was away); called once the first publish is done.
    pub(crate) fn forget_unclaimed_checkpoints(&self) {
        self.checkpointed.lock().clear();
    }

    /// Writes every partition's high watermark to the checkpoint.
    pub(crate) fn checkpoint_high_watermarks(&self) -> Result<()> {
        let mut offsets = self.checkpointed.lock().clone();
        for partition in self.partitions() {
            offsets.insert(partition.topic_partition().clone(), partition.high_watermark());
        }
        write_offsets(&self.checkpoint_path, &offsets)
    }

    /// Leaders look for followers that fell behind, ISR changes go to the controller, and
    /// high watermarks are checkpointed, until `stop`; a last checkpoint at the end.
    pub(crate) async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
        let replicas = &broker.replicas;
        let mut isr_check = tokio::time::interval(ISR_CHECK_INTERVAL);
        let mut checkpoint = tokio::time::interval(CHECKPOINT_INTERVAL);
        for interval in [&mut isr_check, &mut checkpoint] {
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
                _ = isr_check.tick() => {
                    let now = broker.now_ms();
                    for partition in replicas.partitions() {
                        if let Some(alter) = partition.tick(now) {
                            replicas.request_isr_change(partition, alter);
                        }
                    }
                }
                _ = checkpoint.tick() => replicas.checkpoint_in_background(),
                _ = replicas.alters_waiting.notified() => {}
            }
            let alters = std::mem::take(&mut *replicas.alters.lock());
            for (partition, alter) in alters {
                tokio::select! {
                    _ = stop.changed() => break,
                    () = send_isr_change(&broker, &partition, alter) => {}
                }
            }
        }
        if let Err(e) = super::handlers::blocking(|| replicas.checkpoint_high_watermarks()) {
            tracing::warn!(error = %e, "the last high watermark checkpoint failed");
        }
    }

    fn checkpoint_in_background(&self) {
        if let Err(e) = super::handlers::blocking(|| self.checkpoint_high_watermarks()) {
            tracing::warn!(error = %e, "checkpointing the high watermarks failed");
        }
    }
}

/// Sends one AlterPartition and hands the controller's answer to the partition.
async fn send_isr_change(broker: &Broker, partition: &Partition, alter: AlterPartition) {
    let isr: Vec<i32> = alter.new_isr.iter().map(|(id, _)| *id).collect();
    let answer = match broker.ask_controller(ControllerRequest::AlterPartition(alter), ALTER_PARTITION_TIMEOUT).await {
        Ok(Ok(ControllerReply::Partition(reg))) => Ok(reg),
        Ok(Ok(other)) => {
            tracing::error!(?other, "the controller answered AlterPartition with something else");
            Err(codes::UNKNOWN_SERVER_ERROR)
        }
        Ok(Err(e)) => Err(e.code()),
        Err(e) => Err(e.code),
    };
    match &answer {
        Ok(reg) => tracing::info!(partition = %partition.topic_partition(), isr = ?reg.isr, "ISR changed"),
        Err(code) => tracing::info!(partition = %partition.topic_partition(), ?isr, code, "ISR change refused"),
    }
    if !partition.alter_partition_answered(answer, broker.now_ms()) {
        // The controller elected another leader instead: the fetchers follow it now.
        broker.replicas.following_changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}
