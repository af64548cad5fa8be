//! One partition on this broker (Kafka's `Partition`): its [`Log`] together with its
//! replication state, a [`PartitionState`] that decides without I/O. Every method takes
//! the state's lock before the log's, so the two always agree: the log's high watermark
//! is the state's, a leader appends only in the epoch it leads, and a follower appends only
//! what the leader it follows sent.
//!
//! Waiters (`acks=all` produces) watch [`Partition::subscribe`], which ticks whenever the
//! high watermark, the ISR or the leadership changes.

use parking_lot::Mutex;
use tokio::sync::watch;
use uuid::Uuid;

use crate::codes;
use crate::controller::{AlterPartition, PartitionRegistration};
use crate::replication::{
    AckState, FollowerRead, PartitionState, ReplicaFetch, ReplicationConfig, Transition, follower,
};
use crate::storage::manager::SharedLog;
use crate::storage::{AppendOrigin, FileRange, LogAppendInfo, LogError, TopicPartition};

/// What a follower's fetch gets from the leader.
#[derive(Debug)]
pub(crate) enum ReplicaRead {
    /// The follower's log diverged (KIP-320): it must truncate.
    Diverging {
        /// The largest epoch the leader has at most the follower's last one.
        epoch: i32,
        /// Where it ends on the leader.
        end_offset: i64,
    },
    /// The fetch offset is outside the leader's log: below its start (retention or
    /// DeleteRecords moved it while the follower was away) or past its end.
    OutOfRange {
        /// The leader's log start offset.
        log_start_offset: i64,
        /// The leader's high watermark.
        high_watermark: i64,
    },
    /// Records from the fetch offset.
    Records {
        /// File ranges up to the leader's log end.
        ranges: Vec<FileRange>,
        /// The leader's high watermark after this fetch.
        high_watermark: i64,
        /// Its log start offset.
        log_start_offset: i64,
        /// The high watermark moved: consumers and `acks=all` produces may proceed.
        high_watermark_moved: bool,
        /// An ISR expansion to send to the controller.
        alter: Option<AlterPartition>,
    },
}

/// Where this follower fetches from, and at what position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FollowerFetch {
    /// The leader.
    pub leader: i32,
    /// The leader epoch the follower believes in.
    pub leader_epoch: i32,
    /// The position.
    pub position: follower::FetchPosition,
}

/// A partition this broker holds a replica of.
#[derive(Debug)]
pub struct Partition {
    tp: TopicPartition,
    topic_id: Uuid,
    log: SharedLog,
    state: Mutex<PartitionState>,
    changed: watch::Sender<u64>,
}

impl Partition {
    /// Takes over `log`: from now on its high watermark moves only with replication.
    pub(crate) fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: SharedLog,
        local_id: i32,
        config: ReplicationConfig,
        high_watermark_checkpoint: Option<i64>,
    ) -> Self {
        let high_watermark = {
            let mut log = log.write();
            // Without a checkpoint nothing is known to be committed: the ISR confirms it anew.
            let hw = high_watermark_checkpoint.unwrap_or_else(|| log.log_start_offset());
            log.set_high_watermark_tracks_log_end(false);
            log.update_high_watermark(hw)
        };
        let state = PartitionState::new(config, local_id, topic_id, tp.partition, high_watermark);
        Self { tp, topic_id, log, state: Mutex::new(state), changed: watch::channel(0).0 }
    }

    /// The partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// Its topic's id.
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// The log.
    pub fn log(&self) -> &SharedLog {
        &self.log
    }

    /// Ticks whenever the high watermark, the ISR or the leadership changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.state.lock().high_watermark()
    }

    /// The registration last applied.
    pub fn registration(&self) -> Option<PartitionRegistration> {
        self.state.lock().registration().cloned()
    }

    /// The leader epoch when this replica leads; NOT_LEADER_OR_FOLLOWER otherwise.
    pub(crate) fn leader_epoch(&self) -> Result<i32, i16> {
        let state = self.state.lock();
        if state.is_leader() { Ok(state.leader_epoch()) } else { Err(codes::NOT_LEADER_OR_FOLLOWER) }
    }

    /// This broker's registration epoch, which ISR changes carry.
    pub(crate) fn set_broker_epoch(&self, epoch: i64) {
        self.state.lock().set_broker_epoch(epoch);
    }

    /// The broker's registration epoch (for ISR changes) and the topic's
    /// `min.insync.replicas`.
    pub(crate) fn configure(&self, broker_epoch: i64, min_insync_replicas: i32) {
        let mut state = self.state.lock();
        state.set_broker_epoch(broker_epoch);
        state.set_min_insync_replicas(min_insync_replicas);
    }

    /// Applies a registration from the metadata log. A new leader starts its epoch at its
    /// log end.
    pub(crate) fn apply_registration(&self, reg: PartitionRegistration, now_ms: i64) -> Result<Transition, LogError> {
        let mut state = self.state.lock();
        let mut log = self.log.write();
        let transition = state.apply_registration(reg, log.log_end_offset(), now_ms);
        if let Transition::BecameLeader { leader_epoch, .. } = transition {
            log.begin_leader_epoch(leader_epoch)?;
        }
        log.update_high_watermark(state.high_watermark());
        drop((log, state));
        if transition != Transition::Stale {
            self.notify();
        }
        Ok(transition)
    }

    /// Appends a client's (or a coordinator's) batches as the leader. With `acks=all`,
    /// refuses with NOT_ENOUGH_REPLICAS while the ISR is below `min.insync.replicas`.
    /// Returns what was appended and the epoch it was appended in.
    pub(crate) fn append_as_leader(
        &self,
        records: &mut [u8],
        origin: AppendOrigin,
        acks_all: bool,
        now_ms: i64,
    ) -> Result<(LogAppendInfo, i32), AppendRefused> {
        let mut state = self.state.lock();
        let check = if acks_all { state.check_append_acks_all() } else { self.leads(&state) };
        check.map_err(|code| AppendRefused::Code(code, self.refusal(code, &state)))?;
        let epoch = state.leader_epoch();
        let mut log = self.log.write();
        let info = log.append_as_leader(records, epoch, origin, now_ms).map_err(AppendRefused::Log)?;
        let moved = state.maybe_advance_high_watermark(log.log_end_offset());
        log.update_high_watermark(state.high_watermark());
        drop((log, state));
        if moved {
            self.notify();
        }
        Ok((info, epoch))
    }

    fn leads(&self, state: &PartitionState) -> Result<(), i16> {
        if state.is_leader() { Ok(()) } else { Err(codes::NOT_LEADER_OR_FOLLOWER) }
    }

    fn refusal(&self, code: i16, state: &PartitionState) -> String {
        match code {
            codes::NOT_ENOUGH_REPLICAS => {
                format!("{}: the in-sync replicas {:?} are fewer than min.insync.replicas", self.tp, state.isr())
            }
            _ => format!("{} is not led by this broker", self.tp),
        }
    }

    /// Whether an `acks=all` produce that ended at `required_end` in `epoch` is done.
    pub(crate) fn ack_state(&self, required_end: i64, epoch: i32) -> AckState {
        self.state.lock().ack_state(required_end, epoch)
    }

    /// Waits until an append that ended at `required_end` in `epoch` is on every ISR
    /// member (or can no longer be), at most until `deadline`: `Pending` then means out
    /// of time.
    pub(crate) async fn wait_for_ack(&self, required_end: i64, epoch: i32, deadline: tokio::time::Instant) -> AckState {
        let mut changes = self.subscribe();
        loop {
            match self.ack_state(required_end, epoch) {
                AckState::Pending => {}
                done => return done,
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return AckState::NotLeader, // the replica is gone
                Err(_) => return AckState::Pending,
            }
        }
    }

    /// Serves a follower's fetch as the leader: validates it, records its progress, and
    /// reads from its fetch offset up to the log end (not the high watermark). A refusal
    /// is the Kafka error code for the follower.
    pub(crate) fn read_for_follower(
        &self,
        fetch: &ReplicaFetch,
        eligible: bool,
        max_bytes: u64,
        min_one_batch: bool,
        now_ms: i64,
    ) -> Result<ReplicaRead, i16> {
        let mut state = self.state.lock();
        let mut log = self.log.write();
        let leo = log.log_end_offset();
        let log_start_offset = log.log_start_offset();
        let diverges_first = fetch.last_fetched_epoch.is_some() && fetch.fetch_offset > leo;
        if state.is_leader() && (fetch.fetch_offset < log_start_offset || (fetch.fetch_offset > leo && !diverges_first))
        {
            let high_watermark = state.high_watermark();
            return Ok(ReplicaRead::OutOfRange { log_start_offset, high_watermark });
        }
        let answer = state.follower_fetch(fetch, leo, log.leader_epoch_cache().history(), eligible, now_ms)?;
        let (high_watermark, high_watermark_moved, alter) = match answer {
            FollowerRead::Diverging { epoch, end_offset } => return Ok(ReplicaRead::Diverging { epoch, end_offset }),
            FollowerRead::Read { high_watermark, high_watermark_moved, alter } => {
                (high_watermark, high_watermark_moved, alter)
            }
        };
        log.update_high_watermark(high_watermark);
        let info = log.read(fetch.fetch_offset, max_bytes, None, min_one_batch).map_err(|e| {
            tracing::warn!(partition = %self.tp, error = %e, "a follower's fetch could not be read");
            e.kafka_code()
        })?;
        drop((log, state));
        if high_watermark_moved || alter.is_some() {
            self.notify();
        }
        let log_start_offset = info.log_start_offset;
        Ok(ReplicaRead::Records { ranges: info.ranges, high_watermark, log_start_offset, high_watermark_moved, alter })
    }

    /// Where to fetch from, when this replica follows a leader.
    pub(crate) fn follower_fetch(&self) -> Option<FollowerFetch> {
        let state = self.state.lock();
        let leader = state.leader_to_follow()?;
        let log = self.log.read();
        let position = follower::fetch_position(log.log_end_offset(), log.leader_epoch_cache().history());
        Some(FollowerFetch { leader, leader_epoch: state.leader_epoch(), position })
    }

    /// Appends what the leader sent, if this replica still follows that leader in that
    /// epoch and the records continue its log; then takes the leader's high watermark and
    /// log start. An empty log (started afresh at the leader's log start, which may fall
    /// inside a batch) starts at the first batch's base offset. Returns the bytes appended.
    pub(crate) fn append_from_leader(
        &self,
        sent: &FollowerFetch,
        records: &[u8],
        leader: (i64, i64),
        now_ms: i64,
    ) -> Result<u64, LogError> {
        let (leader_high_watermark, leader_log_start) = leader;
        let mut state = self.state.lock();
        if !still_following(&state, sent) {
            return Ok(0); // leadership moved while the fetch was out
        }
        let mut log = self.log.write();
        if log.log_end_offset() != sent.position.fetch_offset {
            return Ok(0); // truncated meanwhile: the next fetch starts over
        }
        let first_base = records.get(..8).map(|b| i64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
        if let Some(base) = first_base.filter(|base| *base < log.log_end_offset())
            && log.log_start_offset() == log.log_end_offset()
        {
            log.truncate_fully_and_start_at(base, now_ms)?;
        }
        let appended = if records.is_empty() { 0 } else { log.append_as_follower(records, now_ms)?.bytes };
        state.follower_high_watermark(leader_high_watermark, log.log_end_offset());
        let hw = log.update_high_watermark(state.high_watermark());
        // The leader's log start (retention, DeleteRecords) reaches the follower, up to what
        // the follower knows is committed.
        let new_start = leader_log_start.min(hw);
        if new_start > log.log_start_offset() {
            log.delete_records_before(new_start, now_ms)?;
        }
        Ok(appended)
    }

    /// The leader said this follower's log diverged: truncates to where they agree.
    /// Returns the new log end.
    pub(crate) fn truncate_on_divergence(
        &self,
        sent: &FollowerFetch,
        epoch: i32,
        end_offset: i64,
        now_ms: i64,
    ) -> Result<i64, LogError> {
        let mut state = self.state.lock();
        let mut log = self.log.write();
        if !still_following(&state, sent) {
            return Ok(log.log_end_offset());
        }
        let leo = log.log_end_offset();
        let to = follower::truncation_offset(
            epoch,
            end_offset,
            leo,
            state.high_watermark(),
            log.leader_epoch_cache().history(),
        );
        tracing::info!(partition = %self.tp, from = leo, to, leader = sent.leader, "truncating a diverged follower log");
        log.truncate_to(to, now_ms)?;
        state.truncated(log.log_end_offset());
        Ok(log.log_end_offset())
    }

    /// The leader no longer has this follower's fetch offset (its log start moved past
    /// it): starts the log afresh at the leader's log start.
    pub(crate) fn restart_at(&self, sent: &FollowerFetch, leader_log_start: i64, now_ms: i64) -> Result<(), LogError> {
        let mut state = self.state.lock();
        let mut log = self.log.write();
        if !still_following(&state, sent) || log.log_end_offset() >= leader_log_start {
            return Ok(());
        }
        tracing::warn!(partition = %self.tp, at = leader_log_start, "the leader's log starts past ours: starting afresh");
        log.truncate_fully_and_start_at(leader_log_start, now_ms)?;
        state.truncated(log.log_end_offset());
        Ok(())
    }

    /// This follower's log ends past the leader's and nothing says where they diverged
    /// (no epochs): keeps what the leader has committed, at most.
    pub(crate) fn truncate_to_leader(
        &self,
        sent: &FollowerFetch,
        leader_high_watermark: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let mut state = self.state.lock();
        let mut log = self.log.write();
        if !still_following(&state, sent) || log.log_end_offset() <= leader_high_watermark {
            return Ok(());
        }
        tracing::warn!(partition = %self.tp, to = leader_high_watermark, "our log ends past the leader's: truncating");
        let to = leader_high_watermark.max(log.log_start_offset());
        log.truncate_to(to, now_ms)?;
        state.truncated(log.log_end_offset());
        Ok(())
    }

    /// Time passes: an ISR shrink (or a retried change) to send to the controller.
    pub(crate) fn tick(&self, now_ms: i64) -> Option<AlterPartition> {
        let mut state = self.state.lock();
        let leo = self.log.read().log_end_offset();
        state.tick(leo, now_ms)
    }

    /// The controller answered an AlterPartition. Returns whether this replica still leads
    /// (the controller may have elected another leader instead).
    pub(crate) fn alter_partition_answered(&self, answer: Result<PartitionRegistration, i16>, now_ms: i64) -> bool {
        let mut state = self.state.lock();
        let mut log = self.log.write();
        state.alter_partition_answered(answer, log.log_end_offset(), now_ms);
        let leads = state.is_leader();
        log.update_high_watermark(state.high_watermark());
        drop((log, state));
        self.notify();
        leads
    }
}

/// Whether this replica still follows the leader, in the epoch, that a fetch was sent to.
fn still_following(state: &PartitionState, sent: &FollowerFetch) -> bool {
    state.leader_to_follow() == Some(sent.leader) && state.leader_epoch() == sent.leader_epoch
}

/// Why a leader append was refused.
#[derive(Debug)]
pub(crate) enum AppendRefused {
    /// By replication: not the leader, or too few in-sync replicas.
    Code(i16, String),
    /// By the log: a bad batch, a sequence error, a full disk.
    Log(LogError),
}

impl AppendRefused {
    /// The Kafka error code and message.
    pub(crate) fn code_and_message(&self) -> (i16, String) {
        match self {
            Self::Code(code, message) => (*code, message.clone()),
            Self::Log(e) => (e.kafka_code(), e.to_string()),
        }
    }
}
