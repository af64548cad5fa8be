//! A broker in the simulation: the real [`PartitionState`] and follower truncation rules,
//! driven by simulated messages, over in-memory logs that lose their unflushed tail on a
//! crash.

use std::collections::BTreeMap;

use freshet_log::codes;
use freshet_log::controller::{ClusterImage, MetadataRecord};
use freshet_log::replication::{AckState, FollowerRead, PartitionState, ReplicaFetch, Transition, follower};
use uuid::Uuid;

use super::check::Checker;
use super::log::SimLog;
use super::{CLIENT, CONTROLLER, FetchAnswer, Key, Msg, Timing};

#[derive(Debug)]
struct PendingProduce {
    key: Key,
    value: u64,
    offset: i64,
    leader_epoch: i32,
    deadline_ms: i64,
}

#[derive(Debug)]
pub struct SimBroker {
    pub id: i32,
    pub up: bool,
    pub incarnation: u64,
    pub broker_epoch: Option<i64>,
    pub image: ClusterImage,
    pub logs: BTreeMap<Key, SimLog>,
    pub states: BTreeMap<Key, PartitionState>,
    timing: Timing,
    fetch_id: u64,
    outstanding_fetches: BTreeMap<i32, (u64, i64)>,
    pending: Vec<PendingProduce>,
    last_register_ms: i64,
    last_heartbeat_ms: i64,
    last_metadata_fetch_ms: i64,
    /// When a controlled shutdown began.
    shutting_down_since_ms: Option<i64>,
    /// The controller said leadership has moved away.
    may_shut_down: bool,
    /// The registration epoch this broker shut down cleanly from (the clean-shutdown file).
    clean_epoch: Option<i64>,
    /// Killed, and not registered again since: the controller cannot know yet that it
    /// lost data, and may still count it in ISRs.
    pub crash_undetected: bool,
}

/// How long a controlled shutdown waits for the controller before the broker stops anyway
/// (still flushed, still clean).
const SHUTDOWN_PATIENCE_MS: i64 = 3_000;

pub type Out = Vec<(i32, Msg)>;

impl SimBroker {
    pub fn new(id: i32, timing: Timing) -> Self {
        Self {
            id,
            up: true,
            incarnation: 1,
            broker_epoch: None,
            image: ClusterImage::new(),
            logs: BTreeMap::new(),
            states: BTreeMap::new(),
            timing,
            fetch_id: 0,
            outstanding_fetches: BTreeMap::new(),
            pending: Vec::new(),
            last_register_ms: i64::MIN / 2,
            last_heartbeat_ms: i64::MIN / 2,
            last_metadata_fetch_ms: i64::MIN / 2,
            shutting_down_since_ms: None,
            may_shut_down: false,
            clean_epoch: None,
            crash_undetected: false,
        }
    }

    pub fn incarnation_id(&self) -> Uuid {
        Uuid::from_u64_pair(self.id as u64, self.incarnation)
    }

    /// kill -9: memory is gone, logs keep what was flushed.
    pub fn crash(&mut self) {
        self.up = false;
        for log in self.logs.values_mut() {
            log.crash();
        }
        let logs = std::mem::take(&mut self.logs);
        *self = Self { logs, up: false, incarnation: self.incarnation, ..Self::new(self.id, self.timing) };
        self.crash_undetected = true;
    }

    /// SIGTERM: ask the controller to move leadership away. False when already stopping
    /// or not registered (then there is nothing to hand over; the test just waits).
    pub fn begin_controlled_shutdown(&mut self, now: i64) -> bool {
        if self.shutting_down_since_ms.is_some() || !self.is_active() {
            return false;
        }
        self.shutting_down_since_ms = Some(now);
        self.last_heartbeat_ms = i64::MIN / 2;
        true
    }

    /// Whether a controlled shutdown may finish now.
    pub fn shutdown_done(&self, now: i64) -> bool {
        self.shutting_down_since_ms.is_some_and(|since| self.may_shut_down || now - since >= SHUTDOWN_PATIENCE_MS)
    }

    /// Every log to disk, with its high watermark checkpoint.
    fn flush_all(&mut self) {
        for (key, log) in &mut self.logs {
            let hw = self.states.get(key).map_or(log.hw_checkpoint, PartitionState::high_watermark);
            log.flush(hw);
        }
    }

    /// The end of a clean shutdown: every log flushed, the epoch remembered.
    pub fn stop_cleanly(&mut self) {
        self.flush_all();
        let clean_epoch = self.broker_epoch;
        self.crash();
        self.clean_epoch = clean_epoch;
        self.crash_undetected = false;
    }

    pub fn restart(&mut self) {
        self.up = true;
        self.incarnation += 1;
    }

    /// Registered, and the metadata applied so far includes this registration.
    pub fn is_active(&self) -> bool {
        self.broker_epoch.is_some() && self.image.broker_epoch(self.id) == self.broker_epoch
    }

    pub fn tick(&mut self, now: i64, out: &mut Out, checker: &mut Checker, flush: bool) {
        let t = self.timing;
        match self.broker_epoch {
            None if now - self.last_register_ms >= t.register_retry_ms => {
                self.last_register_ms = now;
                let register = Msg::Register { incarnation: self.incarnation_id(), previous_epoch: self.clean_epoch };
                out.push((CONTROLLER, register));
            }
            Some(broker_epoch) if now - self.last_heartbeat_ms >= t.heartbeat_ms => {
                self.last_heartbeat_ms = now;
                let want_shutdown = self.shutting_down_since_ms.is_some();
                let beat = Msg::Heartbeat { broker_epoch, metadata_offset: self.image.offset, want_shutdown };
                out.push((CONTROLLER, beat));
            }
            _ => {}
        }
        if now - self.last_metadata_fetch_ms >= t.metadata_fetch_ms {
            self.last_metadata_fetch_ms = now;
            out.push((CONTROLLER, Msg::MetadataFetch { from: self.image.offset + 1 }));
        }
        if flush {
            self.flush_all();
        }
        if !self.is_active() {
            return;
        }
        for (key, state) in &mut self.states {
            let end = self.logs.get(key).map_or(0, SimLog::end);
            if let Some(alter) = state.tick(end, now) {
                out.push((CONTROLLER, Msg::Alter(alter)));
            }
        }
        self.send_fetches(now, out);
        self.complete_produces(now, out, checker);
    }

    fn send_fetches(&mut self, now: i64, out: &mut Out) {
        let Some(broker_epoch) = self.broker_epoch else { return };
        let mut by_leader: BTreeMap<i32, Vec<(Key, ReplicaFetch)>> = BTreeMap::new();
        for (key, state) in &self.states {
            let Some(leader) = state.leader_to_follow() else { continue };
            let log = self.logs.entry(*key).or_default();
            let position = follower::fetch_position(log.end(), &log.epochs);
            let fetch = ReplicaFetch {
                replica_id: self.id,
                replica_epoch: broker_epoch,
                current_leader_epoch: state.leader_epoch(),
                fetch_offset: position.fetch_offset,
                last_fetched_epoch: position.last_fetched_epoch,
            };
            by_leader.entry(leader).or_default().push((*key, fetch));
        }
        for (leader, partitions) in by_leader {
            let idle = self
                .outstanding_fetches
                .get(&leader)
                .is_none_or(|(_, sent)| now - sent >= self.timing.fetch_timeout_ms);
            if idle {
                self.fetch_id += 1;
                self.outstanding_fetches.insert(leader, (self.fetch_id, now));
                out.push((leader, Msg::Fetch { fetch_id: self.fetch_id, broker_epoch, partitions }));
            }
        }
    }

    pub fn handle(&mut self, from: i32, msg: Msg, now: i64, out: &mut Out, checker: &mut Checker) {
        match msg {
            Msg::RegisterReply { incarnation, result: Ok(epoch) } if incarnation == self.incarnation_id() => {
                self.broker_epoch.get_or_insert(epoch);
                self.clean_epoch = None;
                self.crash_undetected = false;
            }
            Msg::HeartbeatReply { should_shut_down } => {
                self.may_shut_down |= should_shut_down && self.shutting_down_since_ms.is_some();
            }
            Msg::RegisterReply { .. } => {}
            Msg::Metadata { from: offset, records } => self.apply_metadata(offset, &records, now, checker),
            Msg::AlterReply { key, answer } => {
                if let Some(state) = self.states.get_mut(&key) {
                    let end = self.logs.get(&key).map_or(0, SimLog::end);
                    state.alter_partition_answered(answer, end, now);
                }
            }
            Msg::Fetch { fetch_id, broker_epoch, partitions } => {
                self.serve_fetch(from, fetch_id, broker_epoch, partitions, now, out);
            }
            Msg::FetchReply { fetch_id, partitions } => self.fetched(from, fetch_id, partitions, checker),
            Msg::Produce { key, value } => self.produce(key, value, now, out),
            other => panic!("broker {} got {other:?}", self.id),
        }
        self.complete_produces(now, out, checker);
    }

    fn apply_metadata(&mut self, offset: i64, records: &[MetadataRecord], now: i64, checker: &mut Checker) {
        if offset != self.image.offset + 1 || records.is_empty() {
            return;
        }
        for (i, record) in records.iter().enumerate() {
            self.image.apply(offset + i as i64, record).expect("brokers replay the committed log");
        }
        if self.is_active() {
            self.sync_partitions(now, checker);
        }
    }

    fn sync_partitions(&mut self, now: i64, checker: &mut Checker) {
        let (id, epoch) = (self.id, self.broker_epoch.unwrap_or(-1));
        let mine: Vec<(Key, _)> = self
            .image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |(p, reg)| ((t.id, *p), reg.clone())))
            .filter(|(_, reg)| reg.replicas.contains(&id))
            .collect();
        for (key, reg) in mine {
            let log = self.logs.entry(key).or_default();
            let state = self.states.entry(key).or_insert_with(|| {
                let hw = log.hw_checkpoint.min(log.end());
                let mut s = PartitionState::new(self.timing.replication, id, key.0, key.1, hw);
                s.set_broker_epoch(epoch);
                s.set_min_insync_replicas(self.timing.min_insync_replicas);
                s
            });
            match state.apply_registration(reg, log.end(), now) {
                Transition::BecameLeader { leader_epoch, start_offset } => {
                    log.epochs.assign(leader_epoch, start_offset);
                    checker.became_leader(id, key, leader_epoch);
                }
                Transition::BecameFollower { .. } | Transition::Updated | Transition::Stale | Transition::Removed => {}
            }
        }
    }

    fn serve_fetch(
        &mut self,
        from: i32,
        fetch_id: u64,
        broker_epoch: i64,
        partitions: Vec<(Key, ReplicaFetch)>,
        now: i64,
        out: &mut Out,
    ) {
        let eligible = self.image.is_eligible(from) && self.image.broker_epoch(from) == Some(broker_epoch);
        let mut answers = Vec::with_capacity(partitions.len());
        for (key, fetch) in partitions {
            let (Some(state), Some(log)) = (self.states.get_mut(&key), self.logs.get(&key)) else {
                answers.push((key, -1, FetchAnswer::Refused));
                continue;
            };
            let answer = match state.follower_fetch(&fetch, log.end(), &log.epochs, eligible, now) {
                Err(_) => FetchAnswer::Refused,
                Ok(FollowerRead::Diverging { epoch, end_offset }) => FetchAnswer::Diverging { epoch, end_offset },
                Ok(FollowerRead::Read { high_watermark, alter, .. }) => {
                    if let Some(alter) = alter {
                        out.push((CONTROLLER, Msg::Alter(alter)));
                    }
                    let start = fetch.fetch_offset as usize;
                    let end = (start + self.timing.fetch_max_entries).min(log.entries.len());
                    let entries = log.entries[start..end].to_vec();
                    FetchAnswer::Records { fetch_offset: fetch.fetch_offset, entries, high_watermark }
                }
            };
            answers.push((key, state.leader_epoch(), answer));
        }
        out.push((from, Msg::FetchReply { fetch_id, partitions: answers }));
    }

    fn fetched(&mut self, from: i32, fetch_id: u64, partitions: Vec<(Key, i32, FetchAnswer)>, checker: &mut Checker) {
        if self.outstanding_fetches.get(&from).map(|(id, _)| *id) != Some(fetch_id) {
            return;
        }
        self.outstanding_fetches.remove(&from);
        for (key, leader_epoch, answer) in partitions {
            let (Some(state), Some(log)) = (self.states.get_mut(&key), self.logs.get_mut(&key)) else { continue };
            if state.leader_to_follow() != Some(from) || state.leader_epoch() != leader_epoch {
                continue;
            }
            match answer {
                FetchAnswer::Refused => {}
                FetchAnswer::Diverging { epoch, end_offset } => {
                    let to =
                        follower::truncation_offset(epoch, end_offset, log.end(), state.high_watermark(), &log.epochs);
                    log.truncate(to);
                    state.truncated(log.end());
                    checker.truncated(self.id, key, log.end());
                }
                FetchAnswer::Records { fetch_offset, entries, high_watermark } => {
                    if fetch_offset == log.end() {
                        log.append_as_follower(&entries);
                        state.follower_high_watermark(high_watermark, log.end());
                    }
                }
            }
        }
    }

    fn produce(&mut self, key: Key, value: u64, now: i64, out: &mut Out) {
        let (Some(state), Some(log)) = (self.states.get_mut(&key), self.logs.get_mut(&key)) else {
            out.push((CLIENT, Msg::ProduceReply { key, value, result: Err(codes::NOT_LEADER_OR_FOLLOWER) }));
            return;
        };
        if let Err(code) = state.check_append_acks_all() {
            out.push((CLIENT, Msg::ProduceReply { key, value, result: Err(code) }));
            return;
        }
        let leader_epoch = state.leader_epoch();
        let offset = log.append_as_leader(leader_epoch, value);
        state.maybe_advance_high_watermark(log.end());
        let deadline_ms = now + self.timing.produce_timeout_ms;
        self.pending.push(PendingProduce { key, value, offset, leader_epoch, deadline_ms });
    }

    /// Answers the `acks=all` produces that are done, failed or out of time.
    fn complete_produces(&mut self, now: i64, out: &mut Out, checker: &mut Checker) {
        checker.observe_leaders(self);
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let state = self.states.get(&p.key);
            let same_term = state.is_some_and(|s| s.leader_epoch() == p.leader_epoch)
                && self.logs.get(&p.key).and_then(|l| l.entries.get(p.offset as usize))
                    == Some(&(p.leader_epoch, p.value));
            let result = match state.map(|s| s.ack_state(p.offset + 1, p.leader_epoch)) {
                _ if !same_term => Err(codes::NOT_LEADER_OR_FOLLOWER),
                Some(AckState::Done) => Ok(p.offset),
                Some(AckState::NotEnoughReplicasAfterAppend) => Err(codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND),
                Some(AckState::NotLeader) | None => Err(codes::NOT_LEADER_OR_FOLLOWER),
                Some(AckState::Pending) if now >= p.deadline_ms => Err(codes::REQUEST_TIMED_OUT),
                Some(AckState::Pending) => {
                    still.push(p);
                    continue;
                }
            };
            out.push((CLIENT, Msg::ProduceReply { key: p.key, value: p.value, result }));
        }
        self.pending = still;
    }
}
