//! One partition's replication state on one broker, as a state machine without I/O: whether
//! it leads or follows, the committed ISR and any change to it in flight, each follower's
//! log end offset and when it last caught up, and the high watermark.
//!
//! The broker's `Partition` wraps this with the partition's [`crate::storage::Log`]; the
//! log end offset and epoch history come in as arguments, and what to do comes out: assign
//! a leader epoch, send an AlterPartition, answer a follower's fetch, complete a produce.
//!
//! The rules are Kafka's:
//! - the high watermark is the smallest log end offset in the maximal ISR (the committed
//!   ISR together with a proposed change, KIP-497), and it does not advance while the
//!   committed ISR is smaller than `min.insync.replicas` (KIP-966), so that the replicas that
//!   left it hold everything below the high watermark;
//! - a follower joins the ISR once it has the high watermark and the leader's current epoch
//!   (KIP-903: with the broker epoch it fetched with), and leaves it after
//!   `replica.lag.time.max.ms` without catching up;
//! - ISR changes go through the controller, and only the committed ISR counts for the
//!   controller's elections, so a leader cut off from the controller cannot shrink the ISR
//!   to itself and acknowledge writes alone.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::codes;
use crate::controller::{AlterPartition, NO_LEADER, PartitionRegistration};
use crate::storage::EpochHistory;

/// Settings, under Kafka's names.
#[derive(Debug, Clone, Copy)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// How long an AlterPartition waits for its answer before it is sent again.
    pub alter_partition_retry_ms: i64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self { replica_lag_time_max_ms: 30_000, alter_partition_retry_ms: 2_000 }
    }
}

/// What a new registration made of this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Leads from now on: record `leader_epoch` as starting at `start_offset` in the epoch
    /// cache, and stop fetching.
    BecameLeader {
        /// The new epoch.
        leader_epoch: i32,
        /// The log end offset where it starts.
        start_offset: i64,
    },
    /// Follows `leader` (or nobody, when it is [`NO_LEADER`]) from now on.
    BecameFollower {
        /// The leader to fetch from.
        leader: i32,
        /// Its epoch.
        leader_epoch: i32,
    },
    /// Same role and epoch; the ISR or replicas changed.
    Updated,
    /// Older than what is known, or the same: ignored.
    Stale,
    /// This broker is no longer a replica.
    Removed,
}

/// A follower's fetch, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaFetch {
    /// The follower.
    pub replica_id: i32,
    /// Its broker epoch (KIP-903).
    pub replica_epoch: i64,
    /// The leader epoch the follower believes in.
    pub current_leader_epoch: i32,
    /// The follower's log end offset.
    pub fetch_offset: i64,
    /// Epoch of the follower's last batch, if it has one.
    pub last_fetched_epoch: Option<i32>,
}

/// How the leader answers a follower's fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowerRead {
    /// The follower's log diverged: it must truncate (KIP-320).
    Diverging {
        /// The largest epoch the leader has that is at most the follower's.
        epoch: i32,
        /// Where that epoch ends on the leader.
        end_offset: i64,
    },
    /// Read from `fetch_offset`.
    Read {
        /// The leader's high watermark, after this fetch.
        high_watermark: i64,
        /// Whether the high watermark moved.
        high_watermark_moved: bool,
        /// An ISR expansion to send to the controller.
        alter: Option<AlterPartition>,
    },
}

/// Whether an `acks=all` produce is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckState {
    /// Not every ISR member has it yet.
    Pending,
    /// Committed: answer success.
    Done,
    /// Committed, but the ISR shrank below `min.insync.replicas` meanwhile.
    NotEnoughReplicasAfterAppend,
    /// This replica no longer leads: answer NOT_LEADER_OR_FOLLOWER.
    NotLeader,
}

#[derive(Debug, Clone)]
struct RemoteReplica {
    log_end_offset: Option<i64>,
    broker_epoch: i64,
    last_caught_up_ms: i64,
    last_fetch_leader_log_end: i64,
    last_fetch_ms: i64,
}

#[derive(Debug, Clone)]
struct PendingIsr {
    request: AlterPartition,
    sent_ms: i64,
}

#[derive(Debug, Clone)]
struct LeaderState {
    remotes: BTreeMap<i32, RemoteReplica>,
    epoch_start_offset: i64,
    pending: Option<PendingIsr>,
}

/// One partition's replication state on one broker.
#[derive(Debug, Clone)]
pub struct PartitionState {
    config: ReplicationConfig,
    local_id: i32,
    local_broker_epoch: i64,
    topic_id: Uuid,
    partition: i32,
    min_insync_replicas: usize,
    registration: Option<PartitionRegistration>,
    leader: Option<LeaderState>,
    high_watermark: i64,
}

impl PartitionState {
    /// A replica that knows nothing yet but its high watermark checkpoint.
    pub fn new(config: ReplicationConfig, local_id: i32, topic_id: Uuid, partition: i32, high_watermark: i64) -> Self {
        Self {
            config,
            local_id,
            local_broker_epoch: -1,
            topic_id,
            partition,
            min_insync_replicas: 1,
            registration: None,
            leader: None,
            high_watermark,
        }
    }

    /// This broker's registration epoch, sent with ISR changes.
    pub fn set_broker_epoch(&mut self, epoch: i64) {
        self.local_broker_epoch = epoch;
    }

    /// The topic's `min.insync.replicas`.
    pub fn set_min_insync_replicas(&mut self, min: i32) {
        self.min_insync_replicas = min.max(1) as usize;
    }

    /// The registration last learned.
    pub fn registration(&self) -> Option<&PartitionRegistration> {
        self.registration.as_ref()
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// The leader epoch known, or -1.
    pub fn leader_epoch(&self) -> i32 {
        self.registration.as_ref().map_or(-1, |r| r.leader_epoch)
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        self.registration.as_ref().map_or(&[], |r| &r.isr)
    }

    /// The committed ISR with any proposed change: what the high watermark waits for.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr().to_vec();
        if let Some(pending) = self.leader.as_ref().and_then(|l| l.pending.as_ref()) {
            for (id, _) in &pending.request.new_isr {
                if !isr.contains(id) {
                    isr.push(*id);
                }
            }
        }
        isr
    }

    /// `min.insync.replicas`, at most the replica count: what the high watermark waits
    /// for. (A topic whose minimum exceeds its replicas still makes progress with
    /// `acks=1`; its `acks=all` writes are refused, as in Kafka.)
    fn effective_min_isr(&self) -> usize {
        let replicas = self.registration.as_ref().map_or(1, |r| r.replicas.len().max(1));
        self.min_insync_replicas.min(replicas)
    }

    /// Applies a registration from the metadata log or an AlterPartition answer.
    pub fn apply_registration(&mut self, reg: PartitionRegistration, log_end_offset: i64, now_ms: i64) -> Transition {
        let new_term = match &self.registration {
            None => true,
            Some(cur) if reg.leader_epoch < cur.leader_epoch => return Transition::Stale,
            Some(cur) if reg.leader_epoch == cur.leader_epoch && reg.partition_epoch <= cur.partition_epoch => {
                return Transition::Stale;
            }
            Some(cur) => reg.leader_epoch > cur.leader_epoch,
        };
        if !reg.replicas.contains(&self.local_id) {
            self.leader = None;
            self.registration = None;
            return Transition::Removed;
        }
        let (leader, leader_epoch) = (reg.leader, reg.leader_epoch);
        let was_leader = self.leader.is_some();
        self.registration = Some(reg);
        if leader != self.local_id {
            self.leader = None;
            return if new_term || was_leader {
                Transition::BecameFollower { leader, leader_epoch }
            } else {
                Transition::Updated
            };
        }
        if new_term || !was_leader {
            self.leader = Some(self.fresh_leader_state(log_end_offset, now_ms));
            self.maybe_advance_high_watermark(log_end_offset);
            return Transition::BecameLeader { leader_epoch, start_offset: log_end_offset };
        }
        self.sync_remotes(now_ms);
        if let Some(state) = self.leader.as_mut() {
            state.pending = None; // a newer partition epoch settles any proposal
        }
        self.maybe_advance_high_watermark(log_end_offset);
        Transition::Updated
    }

    fn fresh_leader_state(&self, log_end_offset: i64, now_ms: i64) -> LeaderState {
        let mut state = LeaderState { remotes: BTreeMap::new(), epoch_start_offset: log_end_offset, pending: None };
        let reg = self.registration.as_ref();
        for id in reg.map_or(&[][..], |r| &r.replicas) {
            if *id != self.local_id {
                state.remotes.insert(*id, self.fresh_remote(*id, now_ms));
            }
        }
        state
    }

    fn fresh_remote(&self, id: i32, now_ms: i64) -> RemoteReplica {
        // ISR members get a full lag window to show up before they can be shrunk away.
        let in_isr = self.isr().contains(&id);
        RemoteReplica {
            log_end_offset: None,
            broker_epoch: -1,
            last_caught_up_ms: if in_isr { now_ms } else { i64::MIN / 2 },
            last_fetch_leader_log_end: -1,
            last_fetch_ms: i64::MIN / 2,
        }
    }

    fn sync_remotes(&mut self, now_ms: i64) {
        let replicas: Vec<i32> = self.registration.as_ref().map_or(Vec::new(), |r| r.replicas.clone());
        let local = self.local_id;
        let fresh: Vec<(i32, RemoteReplica)> = replicas
            .iter()
            .filter(|id| **id != local && self.leader.as_ref().is_some_and(|l| !l.remotes.contains_key(id)))
            .map(|id| (*id, self.fresh_remote(*id, now_ms)))
            .collect();
        if let Some(state) = self.leader.as_mut() {
            state.remotes.retain(|id, _| replicas.contains(id));
            state.remotes.extend(fresh);
        }
    }

    /// Validates a follower's fetch, records its progress, and says how to answer.
    /// `replica_eligible` is the metadata's word on whether it may join the ISR.
    pub fn follower_fetch(
        &mut self,
        fetch: &ReplicaFetch,
        log_end_offset: i64,
        epochs: &EpochHistory,
        replica_eligible: bool,
        now_ms: i64,
    ) -> Result<FollowerRead, i16> {
        let leader_epoch = self.leader_epoch();
        let Some(state) = self.leader.as_mut() else { return Err(codes::NOT_LEADER_OR_FOLLOWER) };
        if fetch.current_leader_epoch < leader_epoch {
            return Err(codes::FENCED_LEADER_EPOCH);
        }
        if fetch.current_leader_epoch > leader_epoch {
            return Err(codes::UNKNOWN_LEADER_EPOCH);
        }
        let Some(remote) = state.remotes.get_mut(&fetch.replica_id) else {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        };
        if let Some(last) = fetch.last_fetched_epoch {
            let (epoch, end_offset) = epochs.end_offset_for(last, log_end_offset);
            if epoch < last || end_offset < fetch.fetch_offset {
                let end_offset = if epoch < 0 { log_end_offset } else { end_offset };
                return Ok(FollowerRead::Diverging { epoch, end_offset });
            }
        }
        if fetch.fetch_offset > log_end_offset {
            return Err(codes::OFFSET_OUT_OF_RANGE);
        }
        if fetch.fetch_offset >= log_end_offset {
            remote.last_caught_up_ms = remote.last_caught_up_ms.max(now_ms);
        } else if fetch.fetch_offset >= remote.last_fetch_leader_log_end {
            remote.last_caught_up_ms = remote.last_caught_up_ms.max(remote.last_fetch_ms);
        }
        remote.log_end_offset = Some(fetch.fetch_offset);
        remote.broker_epoch = fetch.replica_epoch;
        remote.last_fetch_leader_log_end = log_end_offset;
        remote.last_fetch_ms = now_ms;

        let alter = self.maybe_expand_isr(fetch.replica_id, replica_eligible, now_ms);
        let high_watermark_moved = self.maybe_advance_high_watermark(log_end_offset);
        Ok(FollowerRead::Read { high_watermark: self.high_watermark, high_watermark_moved, alter })
    }

    fn maybe_expand_isr(&mut self, replica_id: i32, eligible: bool, now_ms: i64) -> Option<AlterPartition> {
        let hw = self.high_watermark;
        let isr = self.isr().to_vec();
        let state = self.leader.as_ref()?;
        let remote = state.remotes.get(&replica_id)?;
        let leo = remote.log_end_offset?;
        let caught_up = leo >= hw && leo >= state.epoch_start_offset;
        if state.pending.is_some() || isr.contains(&replica_id) || !eligible || !caught_up {
            return None;
        }
        let mut new_isr = isr;
        new_isr.push(replica_id);
        self.propose(new_isr, now_ms)
    }

    fn propose(&mut self, new_isr: Vec<i32>, now_ms: i64) -> Option<AlterPartition> {
        let reg = self.registration.as_ref()?;
        let state = self.leader.as_mut()?;
        let epoch_of = |id: i32| {
            if id == self.local_id {
                self.local_broker_epoch
            } else {
                state.remotes.get(&id).map_or(-1, |r| r.broker_epoch)
            }
        };
        let request = AlterPartition {
            broker_id: self.local_id,
            broker_epoch: self.local_broker_epoch,
            topic_id: self.topic_id,
            partition: self.partition,
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            new_isr: new_isr.iter().map(|id| (*id, epoch_of(*id))).collect(),
        };
        state.pending = Some(PendingIsr { request: request.clone(), sent_ms: now_ms });
        Some(request)
    }

    /// Advances the high watermark to what the whole maximal ISR has, when the committed
    /// ISR is large enough. Returns whether it moved.
    pub fn maybe_advance_high_watermark(&mut self, log_end_offset: i64) -> bool {
        let Some(state) = self.leader.as_ref() else { return false };
        if self.isr().len() < self.effective_min_isr() {
            return false;
        }
        let mut candidate = log_end_offset;
        for id in self.maximal_isr() {
            if id == self.local_id {
                continue;
            }
            match state.remotes.get(&id).and_then(|r| r.log_end_offset) {
                Some(leo) => candidate = candidate.min(leo),
                None => return false,
            }
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            return true;
        }
        false
    }

    /// Time passes: followers that stopped catching up leave the ISR, and an unanswered
    /// AlterPartition is sent again.
    pub fn tick(&mut self, log_end_offset: i64, now_ms: i64) -> Option<AlterPartition> {
        let lag_max_ms = self.config.replica_lag_time_max_ms;
        let retry_ms = self.config.alter_partition_retry_ms;
        let state = self.leader.as_mut()?;
        if let Some(pending) = state.pending.as_mut() {
            if now_ms - pending.sent_ms < retry_ms {
                return None;
            }
            pending.sent_ms = now_ms;
            return Some(pending.request.clone());
        }
        let out_of_sync: Vec<i32> = state
            .remotes
            .iter()
            .filter(|(id, r)| {
                let lagging = r.log_end_offset != Some(log_end_offset);
                self.registration.as_ref().is_some_and(|reg| reg.isr.contains(id))
                    && lagging
                    && now_ms - r.last_caught_up_ms > lag_max_ms
            })
            .map(|(id, _)| *id)
            .collect();
        if out_of_sync.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = self.isr().iter().copied().filter(|id| !out_of_sync.contains(id)).collect();
        self.propose(new_isr, now_ms)
    }

    /// The controller answered an AlterPartition. Returns whether the high watermark moved.
    pub fn alter_partition_answered(
        &mut self,
        answer: Result<PartitionRegistration, i16>,
        log_end_offset: i64,
        now_ms: i64,
    ) -> bool {
        let before = self.high_watermark;
        match answer {
            Ok(reg) => {
                // Only an answer newer than the proposal settles it: a late answer to an
                // older proposal must not clear the one in flight (KIP-497).
                let settles = self.leader.as_ref().and_then(|l| l.pending.as_ref()).is_some_and(|p| {
                    reg.leader_epoch == p.request.leader_epoch && reg.partition_epoch > p.request.partition_epoch
                });
                self.apply_registration(reg, log_end_offset, now_ms);
                if let Some(state) = self.leader.as_mut().filter(|_| settles) {
                    state.pending = None;
                }
            }
            // Refused outright: the controller did not apply it.
            Err(codes::INELIGIBLE_REPLICA | codes::INVALID_REQUEST) => {
                if let Some(state) = self.leader.as_mut() {
                    state.pending = None;
                }
            }
            // Anything else may have been applied (or a newer state exists, which the
            // metadata log will bring): the high watermark keeps waiting for the proposal,
            // and `tick` sends it again.
            Err(_) => {}
        }
        self.maybe_advance_high_watermark(log_end_offset);
        self.high_watermark != before
    }

    /// Whether an `acks=all` produce may be appended: NOT_ENOUGH_REPLICAS when the
    /// committed ISR is below `min.insync.replicas`.
    pub fn check_append_acks_all(&self) -> Result<(), i16> {
        if self.leader.is_none() {
            return Err(codes::NOT_LEADER_OR_FOLLOWER);
        }
        if self.isr().len() < self.min_insync_replicas {
            return Err(codes::NOT_ENOUGH_REPLICAS);
        }
        Ok(())
    }

    /// Whether an `acks=all` produce appended in `appended_in_epoch`, whose last offset is
    /// `required_end - 1`, is done. A produce from an earlier term is never acknowledged:
    /// its records may have been truncated and replaced since.
    pub fn ack_state(&self, required_end: i64, appended_in_epoch: i32) -> AckState {
        if self.leader.is_none() || self.leader_epoch() != appended_in_epoch {
            return AckState::NotLeader;
        }
        if self.high_watermark < required_end {
            return AckState::Pending;
        }
        if self.maximal_isr().len() >= self.min_insync_replicas {
            AckState::Done
        } else {
            AckState::NotEnoughReplicasAfterAppend
        }
    }

    /// A follower learns the leader's high watermark.
    pub fn follower_high_watermark(&mut self, leader_high_watermark: i64, log_end_offset: i64) {
        if self.leader.is_none() {
            self.high_watermark = leader_high_watermark.min(log_end_offset);
        }
    }

    /// The local log was truncated (a follower's divergence): the high watermark cannot
    /// stay above the log end.
    pub fn truncated(&mut self, log_end_offset: i64) {
        self.high_watermark = self.high_watermark.min(log_end_offset);
    }

    /// The leader to fetch from, when following one.
    pub fn leader_to_follow(&self) -> Option<i32> {
        let reg = self.registration.as_ref()?;
        (self.leader.is_none() && reg.leader != NO_LEADER && reg.leader != self.local_id).then_some(reg.leader)
    }
}
