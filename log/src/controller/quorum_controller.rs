//! The active controller as a state machine without I/O (KRaft's QuorumController).
//!
//! Each request takes the current time and returns the records to append to the
//! metadata log together with the answer. The controller applies its own records to its
//! image at once, so that the next request sees them; the shell around it appends them
//! through the Raft quorum in the same order, answers only after they commit, and, when
//! this node loses the quorum's leadership, builds a new `QuorumController` from the
//! committed image. Broker sessions live in memory only: a newly active controller gives
//! every broker a fresh session, as Kafka's does.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::image::{BrokerRegistration, ClusterImage, ImageError, PartitionRegistration};
use super::partition_change::PartitionChange;
use super::records::{
    BrokerEndpoint, ConfigResource, MetadataRecord, NO_LEADER, PartitionChangeRecord, RegisterBrokerRecord,
};
use crate::codes;

/// The controller's settings, under Kafka's names.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `min.insync.replicas`, unless a topic sets its own.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`, unless a topic sets its own.
    pub unclean_leader_election: bool,
    /// Producer ids handed out per AllocateProducerIds.
    pub producer_id_block_size: i64,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred replicas.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 9_000,
            default_replication_factor: 1,
            num_partitions: 1,
            min_insync_replicas: 1,
            unclean_leader_election: false,
            producer_id_block_size: 1_000,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
        }
    }
}

/// Why the controller refused a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum ControllerError {
    /// Another live process is registered with this node id.
    #[error("broker {0} is already registered by another live process (duplicate node.id?)")]
    DuplicateBrokerRegistration(i32),
    /// The broker is not registered.
    #[error("broker {0} is not registered")]
    BrokerIdNotRegistered(i32),
    /// The request carries an old registration's epoch.
    #[error("broker {broker_id} sent epoch {sent}, but its registration has epoch {current}")]
    StaleBrokerEpoch {
        /// The broker.
        broker_id: i32,
        /// The epoch in the request.
        sent: i64,
        /// The registered epoch.
        current: i64,
    },
    /// The topic exists.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// A partition count below 1.
    #[error("the number of partitions must be at least 1, not {0}")]
    InvalidPartitions(i32),
    /// Replicas chosen by the caller that cannot be used.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// A CreatePartitions count that does not grow the topic.
    #[error("{0}")]
    InvalidPartitionCount(String),
    /// More replicas than brokers that can take them.
    #[error("replication factor {requested} is larger than the {available} available brokers")]
    InvalidReplicationFactor {
        /// Asked for.
        requested: i16,
        /// Unfenced brokers.
        available: usize,
    },
    /// An AlterPartition from a broker that does not lead, or with an ISR without it.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request names an older leader epoch.
    #[error("leader epoch {sent} is older than the partition's {current}")]
    FencedLeaderEpoch {
        /// In the request.
        sent: i32,
        /// Current.
        current: i32,
    },
    /// The request names another partition epoch.
    #[error("partition epoch {sent} does not match the partition's {current}")]
    InvalidUpdateVersion {
        /// In the request.
        sent: i32,
        /// Current.
        current: i32,
    },
    /// A proposed ISR member is fenced, shutting down or registered with another epoch.
    #[error("replica {0} cannot join the ISR: fenced, shutting down, or restarted since")]
    IneligibleReplica(i32),
    /// The partition does not exist.
    #[error("unknown topic id {0} or partition {1}")]
    UnknownPartition(Uuid, i32),
    /// A reassignment that changes the replica count, which the request did not allow
    /// (KIP-860).
    #[error(
        "the reassignment changes the replication factor of partition {partition} from {from} to {to}, which the request does not allow"
    )]
    ReplicationFactorChange {
        /// The partition.
        partition: i32,
        /// Its replicas now.
        from: usize,
        /// Asked for.
        to: usize,
    },
    /// A cancellation where nothing is being reassigned.
    #[error("no reassignment of partition {0} is under way")]
    NoReassignmentInProgress(i32),
    /// The leader an election asks for leads already.
    #[error("{0}")]
    ElectionNotNeeded(String),
    /// The preferred replica cannot lead: out of sync, fenced or shutting down.
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    /// No replica can lead, even uncleanly.
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// The request knows a newer leader epoch than this controller: it is behind.
    #[error("leader epoch {leader_epoch} is newer than this controller knows")]
    NotController {
        /// In the request.
        leader_epoch: i32,
    },
}

impl ControllerError {
    /// The Kafka error code.
    pub fn code(&self) -> i16 {
        match self {
            Self::DuplicateBrokerRegistration(_) => codes::DUPLICATE_BROKER_REGISTRATION,
            Self::BrokerIdNotRegistered(_) => codes::BROKER_ID_NOT_REGISTERED,
            Self::StaleBrokerEpoch { .. } => codes::STALE_BROKER_EPOCH,
            Self::TopicAlreadyExists(_) => codes::TOPIC_ALREADY_EXISTS,
            Self::UnknownTopic(_) | Self::UnknownPartition(..) => codes::UNKNOWN_TOPIC_OR_PARTITION,
            Self::InvalidPartitions(_) | Self::InvalidPartitionCount(_) => codes::INVALID_PARTITIONS,
            Self::InvalidReplicationFactor { .. } => codes::INVALID_REPLICATION_FACTOR,
            Self::InvalidRequest(_) => codes::INVALID_REQUEST,
            Self::InvalidReplicaAssignment(_) => codes::INVALID_REPLICA_ASSIGNMENT,
            Self::FencedLeaderEpoch { .. } => codes::FENCED_LEADER_EPOCH,
            Self::InvalidUpdateVersion { .. } => codes::INVALID_UPDATE_VERSION,
            Self::IneligibleReplica(_) => codes::INELIGIBLE_REPLICA,
            Self::NotController { .. } => codes::NOT_CONTROLLER,
            Self::ReplicationFactorChange { .. } => codes::INVALID_REPLICATION_FACTOR,
            Self::NoReassignmentInProgress(_) => codes::NO_REASSIGNMENT_IN_PROGRESS,
            Self::ElectionNotNeeded(_) => codes::ELECTION_NOT_NEEDED,
            Self::PreferredLeaderNotAvailable(_) => codes::PREFERRED_LEADER_NOT_AVAILABLE,
            Self::EligibleLeadersNotAvailable(_) => codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        }
    }
}

/// Records to append, and the answer to give once they commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerOutput<T> {
    /// In log order.
    pub records: Vec<MetadataRecord>,
    /// The answer.
    pub reply: T,
}

/// BrokerRegistration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RegisterBroker {
    /// `node.id`.
    pub broker_id: i32,
    /// New for every process start.
    pub incarnation_id: Uuid,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Advertised listeners.
    pub endpoints: Vec<BrokerEndpoint>,
    /// The epoch of the registration this process shut down cleanly from, if it did.
    pub previous_broker_epoch: Option<i64>,
}

/// BrokerHeartbeat.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct BrokerHeartbeat {
    /// The broker.
    pub broker_id: i32,
    /// Its registration's epoch.
    pub broker_epoch: i64,
    /// The metadata offset it has applied.
    pub metadata_offset: i64,
    /// A controlled shutdown has begun.
    pub want_shutdown: bool,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatReply {
    /// Still fenced.
    pub is_fenced: bool,
    /// Leadership has moved away: the broker may stop.
    pub should_shut_down: bool,
}

/// AlterPartition: a leader asks to change the ISR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterPartition {
    /// The leader.
    pub broker_id: i32,
    /// The leader's registration epoch.
    pub broker_epoch: i64,
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// The leader epoch the leader knows.
    pub leader_epoch: i32,
    /// The partition epoch the leader knows.
    pub partition_epoch: i32,
    /// The ISR wanted, with each member's broker epoch as the leader saw it (KIP-903).
    pub new_isr: Vec<(i32, i64)>,
}

/// CreateTopics, for one topic.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateTopic {
    /// Name (already validated by the broker).
    pub name: String,
    /// Its id, made by the caller so that this stays deterministic.
    pub topic_id: Uuid,
    /// `None`: `num.partitions`.
    pub partitions: Option<i32>,
    /// `None`: `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// Topic configs.
    pub configs: Vec<(String, String)>,
    /// Replicas chosen by the caller, one list per partition; empty: placed by the
    /// controller.
    pub assignments: Vec<Vec<i32>>,
}

/// The active controller.
#[derive(Debug)]
pub struct QuorumController {
    pub(super) config: ControllerConfig,
    pub(super) image: ClusterImage,
    last_heartbeat_ms: BTreeMap<i32, i64>,
    /// When `auto.leader.rebalance.enable` next looks for misplaced leaders.
    pub(super) next_leader_balance_ms: i64,
    /// A record this controller built that its own image refused: a bug. Its output must
    /// not be appended, and the controller must be rebuilt from the committed image.
    failure: Option<ImageError>,
}

impl QuorumController {
    /// Becomes active over `committed`. Every registered broker gets a fresh session.
    pub fn new(config: ControllerConfig, committed: ClusterImage, now_ms: i64) -> Self {
        let last_heartbeat_ms = committed.brokers.keys().map(|id| (*id, now_ms)).collect();
        let next_leader_balance_ms = now_ms + config.leader_imbalance_check_interval_ms;
        Self { config, image: committed, last_heartbeat_ms, next_leader_balance_ms, failure: None }
    }

    /// The first record this controller built that did not fit its image, if any. After
    /// one, nothing it produced may be appended.
    pub fn take_failure(&mut self) -> Option<ImageError> {
        self.failure.take()
    }

    /// The image, including records not committed yet.
    pub fn image(&self) -> &ClusterImage {
        &self.image
    }

    /// The settings.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub(super) fn emit(&mut self, out: &mut Vec<MetadataRecord>, record: MetadataRecord) {
        if self.failure.is_some() {
            return;
        }
        match self.image.apply(self.image.offset + 1, &record) {
            Ok(()) => out.push(record),
            Err(e) => {
                tracing::error!(error = %e, ?record, "the controller built a record its image refuses");
                self.failure = Some(e);
            }
        }
    }

    /// The broker's registration, if `broker_epoch` is its current one.
    fn registered(&self, broker_id: i32, broker_epoch: i64) -> Result<&BrokerRegistration, ControllerError> {
        match self.image.brokers.get(&broker_id) {
            None => Err(ControllerError::BrokerIdNotRegistered(broker_id)),
            Some(b) if b.epoch != broker_epoch => {
                Err(ControllerError::StaleBrokerEpoch { broker_id, sent: broker_epoch, current: b.epoch })
            }
            Some(b) => Ok(b),
        }
    }

    /// Ends a broker's session now: its process is known to be gone (the controller in
    /// the same process restarted with it), so a new incarnation need not wait for the
    /// session timeout before it registers.
    pub fn expire_session(&mut self, broker_id: i32) {
        self.last_heartbeat_ms.remove(&broker_id);
    }

    fn session_alive(&self, broker_id: i32, now_ms: i64) -> bool {
        self.last_heartbeat_ms.get(&broker_id).is_some_and(|t| now_ms - t <= self.config.session_timeout_ms)
    }

    /// A broker registers, fenced until it catches up. A restart after a clean shutdown
    /// names its previous epoch and may register at once; it leaves the ISRs (staying
    /// electable through the ELR). After an unclean one it must wait until the old session
    /// expires, and it leaves every ISR and ELR: it may have lost unflushed data.
    pub fn register_broker(
        &mut self,
        req: RegisterBroker,
        now_ms: i64,
    ) -> ControllerOutput<Result<i64, ControllerError>> {
        let mut records = Vec::new();
        let mut restarted = false;
        let mut unclean = false;
        if let Some(existing) = self.image.brokers.get(&req.broker_id) {
            if existing.incarnation_id == req.incarnation_id {
                return ControllerOutput { records, reply: Ok(existing.epoch) };
            }
            let clean = req.previous_broker_epoch == Some(existing.epoch);
            if !clean && !existing.fenced && self.session_alive(req.broker_id, now_ms) {
                return ControllerOutput {
                    records,
                    reply: Err(ControllerError::DuplicateBrokerRegistration(req.broker_id)),
                };
            }
            restarted = true;
            unclean = !clean;
        }
        let broker_epoch = self.image.offset + 1;
        let record = RegisterBrokerRecord {
            broker_id: req.broker_id,
            incarnation_id: req.incarnation_id,
            broker_epoch,
            rack: req.rack,
            endpoints: req.endpoints,
        };
        self.emit(&mut records, MetadataRecord::RegisterBroker(record));
        if restarted {
            // The new registration starts fenced, so the old one's leaderships move now.
            // After an unclean shutdown the broker may have lost unflushed data: it leaves
            // the ELR as well.
            self.remove_everywhere(&mut records, req.broker_id, unclean);
        }
        self.last_heartbeat_ms.insert(req.broker_id, now_ms);
        ControllerOutput { records, reply: Ok(broker_epoch) }
    }

    /// A heartbeat keeps the session, unfences a broker that caught up, and drives a
    /// controlled shutdown.
    pub fn heartbeat(
        &mut self,
        req: BrokerHeartbeat,
        now_ms: i64,
    ) -> ControllerOutput<Result<HeartbeatReply, ControllerError>> {
        let mut records = Vec::new();
        let broker = match self.registered(req.broker_id, req.broker_epoch) {
            Ok(b) => b.clone(),
            Err(e) => return ControllerOutput { records, reply: Err(e) },
        };
        self.last_heartbeat_ms.insert(req.broker_id, now_ms);
        let (id, epoch) = (req.broker_id, req.broker_epoch);
        if req.want_shutdown {
            if !broker.fenced && !broker.in_controlled_shutdown {
                let record = MetadataRecord::BrokerInControlledShutdown { broker_id: id, broker_epoch: epoch };
                self.emit(&mut records, record);
                self.remove_everywhere(&mut records, id, false);
            }
            let leads_nothing = self.leaderships(id) == 0;
            if leads_nothing && !broker.fenced {
                self.emit(&mut records, MetadataRecord::FenceBroker { broker_id: id, broker_epoch: epoch });
            }
            let reply = HeartbeatReply { is_fenced: leads_nothing || broker.fenced, should_shut_down: leads_nothing };
            return ControllerOutput { records, reply: Ok(reply) };
        }
        if broker.fenced && req.metadata_offset >= broker.epoch {
            self.emit(&mut records, MetadataRecord::UnfenceBroker { broker_id: id, broker_epoch: epoch });
            self.elect_leaderless(&mut records, id);
        }
        let is_fenced = self.image.brokers.get(&id).is_none_or(|b| b.fenced);
        ControllerOutput { records, reply: Ok(HeartbeatReply { is_fenced, should_shut_down: false }) }
    }

    /// Fences brokers whose session expired and moves their leaderships.
    pub fn tick(&mut self, now_ms: i64) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        let expired: Vec<(i32, i64)> = self
            .image
            .brokers
            .values()
            .filter(|b| !b.fenced && !self.session_alive(b.id, now_ms))
            .map(|b| (b.id, b.epoch))
            .collect();
        for (broker_id, broker_epoch) in expired {
            tracing::info!(broker_id, "broker session expired: fencing it");
            self.emit(&mut records, MetadataRecord::FenceBroker { broker_id, broker_epoch });
            self.remove_everywhere(&mut records, broker_id, false);
        }
        self.balance_leaders_when_due(&mut records, now_ms);
        records
    }

    /// A leader changes its ISR.
    pub fn alter_partition(
        &mut self,
        req: &AlterPartition,
    ) -> ControllerOutput<Result<PartitionRegistration, ControllerError>> {
        let mut records = Vec::new();
        let reply = self.check_alter_partition(req).and_then(|current| {
            let new_isr: Vec<i32> = req.new_isr.iter().map(|(id, _)| *id).collect();
            if new_isr == current.isr {
                return Ok(current); // a retry of a change already made
            }
            let (min_isr, unclean) = self.topic_policy(req.topic_id, &current);
            let change = PartitionChange {
                topic_id: req.topic_id,
                partition: req.partition,
                current: &current,
                target_isr: new_isr,
                remove_from_elr: Vec::new(),
                min_isr,
                unclean,
            };
            if let Some(record) = change.build(|b| self.image.is_eligible(b)) {
                self.emit(&mut records, MetadataRecord::PartitionChange(record));
            }
            self.complete_reassignment_if_done(&mut records, req.topic_id, req.partition);
            self.image
                .partition(req.topic_id, req.partition)
                .cloned()
                .ok_or(ControllerError::UnknownPartition(req.topic_id, req.partition))
        });
        ControllerOutput { records, reply }
    }

    fn check_alter_partition(&self, req: &AlterPartition) -> Result<PartitionRegistration, ControllerError> {
        self.registered(req.broker_id, req.broker_epoch)?;
        let current = self
            .image
            .partition(req.topic_id, req.partition)
            .cloned()
            .ok_or(ControllerError::UnknownPartition(req.topic_id, req.partition))?;
        if req.leader_epoch < current.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch { sent: req.leader_epoch, current: current.leader_epoch });
        }
        if req.leader_epoch > current.leader_epoch {
            // The leader knows a newer epoch than this controller: this one is behind.
            return Err(ControllerError::NotController { leader_epoch: req.leader_epoch });
        }
        if current.leader != req.broker_id {
            return Err(ControllerError::InvalidRequest(format!(
                "broker {} does not lead partition {} at leader epoch {}",
                req.broker_id, req.partition, req.leader_epoch
            )));
        }
        let new_isr: Vec<i32> = req.new_isr.iter().map(|(id, _)| *id).collect();
        if new_isr == current.isr {
            return Ok(current);
        }
        if req.partition_epoch != current.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                sent: req.partition_epoch,
                current: current.partition_epoch,
            });
        }
        if !new_isr.contains(&req.broker_id) || new_isr.iter().any(|r| !current.replicas.contains(r)) {
            return Err(ControllerError::InvalidRequest(format!(
                "ISR {new_isr:?} must hold the leader and only replicas of {:?}",
                current.replicas
            )));
        }
        for (id, epoch) in &req.new_isr {
            let registered = self.image.brokers.get(id);
            let stale = registered.is_none_or(|b| *epoch >= 0 && b.epoch != *epoch);
            if stale || !self.image.is_eligible(*id) {
                return Err(ControllerError::IneligibleReplica(*id));
            }
        }
        Ok(current)
    }

    /// Hands a block of producer ids to a broker: (first id, count).
    pub fn allocate_producer_ids(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> ControllerOutput<Result<(i64, i64), ControllerError>> {
        let mut records = Vec::new();
        if let Err(e) = self.registered(broker_id, broker_epoch) {
            return ControllerOutput { records, reply: Err(e) };
        }
        let first = self.image.next_producer_id;
        let size = self.config.producer_id_block_size;
        let record = MetadataRecord::ProducerIds { broker_id, broker_epoch, next_producer_id: first + size };
        self.emit(&mut records, record);
        ControllerOutput { records, reply: Ok((first, size)) }
    }

    /// `min.insync.replicas` (at most the replica count) and unclean election for a topic.
    pub(super) fn topic_policy(&self, topic_id: Uuid, partition: &PartitionRegistration) -> (usize, bool) {
        let topic_configs = self
            .image
            .topics
            .get(&topic_id)
            .and_then(|t| self.image.configs.get(&ConfigResource::Topic(t.name.clone())));
        let setting = |name: &str| topic_configs.and_then(|c| c.get(name));
        let min_isr = setting("min.insync.replicas")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(self.config.min_insync_replicas)
            .max(1) as usize;
        let unclean = setting("unclean.leader.election.enable")
            .map(|v| v == "true")
            .unwrap_or(self.config.unclean_leader_election);
        (min_isr.min(partition.replicas.len().max(1)), unclean)
    }

    /// Takes `broker_id` out of every ISR (and, after an unclean shutdown, every ELR),
    /// electing new leaders where it led.
    fn remove_everywhere(&mut self, records: &mut Vec<MetadataRecord>, broker_id: i32, from_elr: bool) {
        let affected: Vec<(Uuid, i32, PartitionRegistration)> = self
            .partitions()
            .filter(|(_, _, p)| p.isr.contains(&broker_id) || (from_elr && p.elr.contains(&broker_id)))
            .collect();
        for (topic_id, partition, current) in affected {
            let (min_isr, unclean) = self.topic_policy(topic_id, &current);
            let target_isr: Vec<i32> = current.isr.iter().copied().filter(|r| *r != broker_id).collect();
            let last_copy = from_elr && target_isr.is_empty() && current.elr.iter().all(|r| *r == broker_id);
            if last_copy {
                // Nothing else may lead: keeping the only copy there is beats losing all.
                // It leads again once unfenced, in a new leader epoch.
                if current.leader == broker_id {
                    let record = PartitionChangeRecord {
                        leader: Some(NO_LEADER),
                        ..PartitionChangeRecord::new(topic_id, partition)
                    };
                    self.emit(records, MetadataRecord::PartitionChange(record));
                }
                continue;
            }
            let change = PartitionChange {
                topic_id,
                partition,
                current: &current,
                target_isr,
                remove_from_elr: if from_elr { vec![broker_id] } else { Vec::new() },
                min_isr,
                unclean,
            };
            if let Some(record) = change.build(|b| b != broker_id && self.image.is_eligible(b)) {
                self.emit(records, MetadataRecord::PartitionChange(record));
            }
        }
    }

    /// Elects leaders for leaderless partitions that `broker_id`, just unfenced, can lead.
    fn elect_leaderless(&mut self, records: &mut Vec<MetadataRecord>, broker_id: i32) {
        let leaderless: Vec<(Uuid, i32, PartitionRegistration)> =
            self.partitions().filter(|(_, _, p)| p.leader == NO_LEADER && p.replicas.contains(&broker_id)).collect();
        for (topic_id, partition, current) in leaderless {
            let (min_isr, unclean) = self.topic_policy(topic_id, &current);
            let change = PartitionChange {
                topic_id,
                partition,
                current: &current,
                target_isr: current.isr.clone(),
                remove_from_elr: Vec::new(),
                min_isr,
                unclean,
            };
            if let Some(record) = change.build(|b| self.image.is_eligible(b)) {
                self.emit(records, MetadataRecord::PartitionChange(record));
            }
        }
    }

    fn leaderships(&self, broker_id: i32) -> usize {
        self.partitions().filter(|(_, _, p)| p.leader == broker_id).count()
    }

    pub(super) fn partitions(&self) -> impl Iterator<Item = (Uuid, i32, PartitionRegistration)> + '_ {
        self.image.topics.values().flat_map(|t| t.partitions.iter().map(move |(index, p)| (t.id, *index, p.clone())))
    }
}
