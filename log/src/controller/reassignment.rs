//! Moving replicas and leaders: partition reassignment (KIP-455), leader elections
//! (KIP-460) and `auto.leader.rebalance.enable`, as KRaft's ReplicationControlManager
//! makes them.
//!
//! A reassignment to target replicas `T` of a partition on replicas `R` first widens the
//! replica list to `T` followed by the rest of `R`, marking `T - R` as adding and `R - T`
//! as removing. The adding replicas fetch like any follower; the leader lets each into the
//! ISR once it has caught up (AlterPartition). When every target replica is in the ISR,
//! the controller completes the reassignment: the replica list becomes `T`, the removed
//! replicas leave the ISR, and a leader outside `T` hands over to the first in-sync target
//! replica. Brokers that lost their replica stop it and delete its log. Traffic continues
//! throughout: the leader keeps leading until the completion moves it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::PartitionRegistration;
use super::partition_change::PartitionChange;
use super::quorum_controller::{ControllerError, ControllerOutput, QuorumController};
use super::records::{MetadataRecord, NO_LEADER, PartitionChangeRecord};

/// One partition of an AlterPartitionReassignments request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The target replicas, or `None` to cancel the reassignment under way.
    pub target: Option<Vec<i32>>,
}

/// Which leader an ElectLeaders request wants (Kafka's ElectionType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// The first replica, when it is in sync.
    Preferred,
    /// For a partition without a leader: any live replica, in sync or not.
    Unclean,
}

/// What a request came to for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOutcome {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Why it was refused; `None` when done.
    pub error: Option<ControllerError>,
}

/// A partition's replicas, with those a reassignment adds and removes.
struct Assignment {
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
}

impl Assignment {
    /// No reassignment under way.
    fn settled(replicas: Vec<i32>) -> Self {
        Self { replicas, adding: Vec::new(), removing: Vec::new() }
    }
}

impl QuorumController {
    /// Starts, replaces or cancels the reassignment of each partition. With
    /// `allow_replication_factor_change` false, a target with another replica count is
    /// refused (KIP-860).
    pub fn alter_partition_reassignments(
        &mut self,
        partitions: Vec<ReassignPartition>,
        allow_replication_factor_change: bool,
    ) -> ControllerOutput<Result<Vec<PartitionOutcome>, ControllerError>> {
        let mut records = Vec::new();
        let mut outcomes = Vec::with_capacity(partitions.len());
        for req in partitions {
            let error = self.reassign(&mut records, &req, allow_replication_factor_change).err();
            outcomes.push(PartitionOutcome { topic: req.topic, partition: req.partition, error });
        }
        ControllerOutput { records, reply: Ok(outcomes) }
    }

    fn reassign(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        req: &ReassignPartition,
        allow_replication_factor_change: bool,
    ) -> Result<(), ControllerError> {
        let (topic_id, current) = self.lookup(&req.topic, req.partition)?;
        let original = current.original_replicas();
        let Some(target) = &req.target else {
            return self.cancel_reassignment(records, topic_id, req.partition, &current);
        };
        self.check_replica_list(req.partition, target)?;
        if !allow_replication_factor_change && target.len() != original.len() {
            return Err(ControllerError::ReplicationFactorChange {
                partition: req.partition,
                from: original.len(),
                to: target.len(),
            });
        }
        let mut replicas = target.clone();
        replicas.extend(original.iter().copied().filter(|r| !target.contains(r)));
        let adding: Vec<i32> = target.iter().copied().filter(|r| !original.contains(r)).collect();
        let removing: Vec<i32> = original.iter().copied().filter(|r| !target.contains(r)).collect();
        self.change_replicas(records, topic_id, req.partition, &current, Assignment { replicas, adding, removing });
        self.complete_reassignment_if_done(records, topic_id, req.partition);
        tracing::info!(topic = %req.topic, partition = req.partition, ?target, "reassigning");
        Ok(())
    }

    /// Puts the replicas back as they were before the reassignment. Refused when none of
    /// them is in sync: the data would live only on replicas the cancellation removes.
    fn cancel_reassignment(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        topic_id: Uuid,
        partition: i32,
        current: &PartitionRegistration,
    ) -> Result<(), ControllerError> {
        if !current.is_reassigning() {
            return Err(ControllerError::NoReassignmentInProgress(partition));
        }
        let original = current.original_replicas();
        if !current.isr.iter().any(|r| original.contains(r)) {
            return Err(ControllerError::InvalidRequest(format!(
                "cancelling the reassignment of partition {partition} would leave it with no in-sync replica: \
                 none of {original:?} is in the ISR {:?}; reassign it to a new target instead",
                current.isr
            )));
        }
        self.change_replicas(records, topic_id, partition, current, Assignment::settled(original));
        Ok(())
    }

    /// Completes a reassignment once every target replica is in the ISR.
    pub(super) fn complete_reassignment_if_done(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        topic_id: Uuid,
        partition: i32,
    ) {
        let Some(current) = self.image.partition(topic_id, partition).cloned() else { return };
        let target = current.target_replicas();
        if !current.is_reassigning() || !target.iter().all(|r| current.isr.contains(r)) {
            return;
        }
        tracing::info!(%topic_id, partition, ?target, "reassignment complete");
        self.change_replicas(records, topic_id, partition, &current, Assignment::settled(target));
    }

    /// Emits the change to `next`: ISR and ELR keep only members that stay, and the
    /// leader stays unless it leaves the ISR, when the first in-sync, eligible replica
    /// takes over.
    fn change_replicas(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        topic_id: Uuid,
        partition: i32,
        current: &PartitionRegistration,
        next: Assignment,
    ) {
        let Assignment { replicas, adding, removing } = next;
        let isr: Vec<i32> = current.isr.iter().copied().filter(|r| replicas.contains(r)).collect();
        let elr: Vec<i32> = current.elr.iter().copied().filter(|r| replicas.contains(r)).collect();
        let leads = |b: i32| isr.contains(&b) && self.image.is_eligible(b);
        let leader = if leads(current.leader) {
            current.leader
        } else {
            replicas.iter().copied().find(|r| leads(*r)).unwrap_or(NO_LEADER)
        };
        let record = PartitionChangeRecord {
            isr: (isr != current.isr).then_some(isr),
            elr: (elr != current.elr).then_some(elr),
            leader: (leader != current.leader).then_some(leader),
            adding_replicas: (adding != current.adding_replicas).then_some(adding),
            removing_replicas: (removing != current.removing_replicas).then_some(removing),
            replicas: (replicas != current.replicas).then_some(replicas),
            ..PartitionChangeRecord::new(topic_id, partition)
        };
        if !record.is_empty() {
            self.emit(records, MetadataRecord::PartitionChange(record));
        }
    }

    /// Elects leaders for the partitions named, or, with `None`, for every partition
    /// (answering only for those where an election was needed, as Kafka does).
    pub fn elect_leaders(
        &mut self,
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> ControllerOutput<Result<Vec<PartitionOutcome>, ControllerError>> {
        let mut records = Vec::new();
        let all = partitions.is_none();
        let partitions = partitions.unwrap_or_else(|| {
            let image = &self.image;
            image.topics.values().flat_map(|t| t.partitions.keys().map(|p| (t.name.clone(), *p))).collect()
        });
        let mut outcomes = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let error = self.elect(&mut records, election, &topic, partition).err();
            if all && matches!(error, Some(ControllerError::ElectionNotNeeded(_))) {
                continue;
            }
            outcomes.push(PartitionOutcome { topic, partition, error });
        }
        ControllerOutput { records, reply: Ok(outcomes) }
    }

    fn elect(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        election: ElectionType,
        topic: &str,
        partition: i32,
    ) -> Result<(), ControllerError> {
        let (topic_id, current) = self.lookup(topic, partition)?;
        let record = match election {
            ElectionType::Preferred => self.preferred_election(topic_id, partition, &current)?,
            ElectionType::Unclean => self.unclean_election(topic_id, partition, &current)?,
        };
        self.emit(records, MetadataRecord::PartitionChange(record));
        Ok(())
    }

    fn preferred_election(
        &self,
        topic_id: Uuid,
        partition: i32,
        current: &PartitionRegistration,
    ) -> Result<PartitionChangeRecord, ControllerError> {
        let preferred = current.replicas.first().copied().unwrap_or(NO_LEADER);
        if current.leader == preferred {
            return Err(ControllerError::ElectionNotNeeded(format!(
                "partition {partition}: the preferred replica {preferred} leads already"
            )));
        }
        if !current.isr.contains(&preferred) || !self.image.is_eligible(preferred) {
            return Err(ControllerError::PreferredLeaderNotAvailable(format!(
                "partition {partition}: the preferred replica {preferred} is not in the ISR {:?} or cannot lead",
                current.isr
            )));
        }
        Ok(PartitionChangeRecord { leader: Some(preferred), ..PartitionChangeRecord::new(topic_id, partition) })
    }

    fn unclean_election(
        &self,
        topic_id: Uuid,
        partition: i32,
        current: &PartitionRegistration,
    ) -> Result<PartitionChangeRecord, ControllerError> {
        if current.has_leader() {
            return Err(ControllerError::ElectionNotNeeded(format!(
                "partition {partition} has a leader: {}",
                current.leader
            )));
        }
        let (min_isr, _) = self.topic_policy(topic_id, current);
        let change = PartitionChange {
            topic_id,
            partition,
            current,
            target_isr: current.isr.clone(),
            remove_from_elr: Vec::new(),
            min_isr,
            unclean: true,
        };
        change.build(|b| self.image.is_eligible(b)).filter(|r| r.leader.is_some_and(|l| l != NO_LEADER)).ok_or_else(
            || {
                ControllerError::EligibleLeadersNotAvailable(format!(
                    "partition {partition}: none of the replicas {:?} is alive to lead",
                    current.replicas
                ))
            },
        )
    }

    /// `auto.leader.rebalance.enable`: every check interval, gives leadership back to each
    /// preferred replica that is in sync and eligible.
    pub(super) fn balance_leaders_when_due(&mut self, records: &mut Vec<MetadataRecord>, now_ms: i64) {
        if !self.config.auto_leader_rebalance || now_ms < self.next_leader_balance_ms {
            return;
        }
        self.next_leader_balance_ms = now_ms + self.config.leader_imbalance_check_interval_ms;
        let misplaced: Vec<(Uuid, i32, PartitionRegistration)> =
            self.partitions().filter(|(_, _, p)| p.replicas.first().is_some_and(|r| *r != p.leader)).collect();
        for (topic_id, partition, current) in misplaced {
            if let Ok(record) = self.preferred_election(topic_id, partition, &current) {
                tracing::info!(%topic_id, partition, leader = ?record.leader, "moving leadership to the preferred replica");
                self.emit(records, MetadataRecord::PartitionChange(record));
            }
        }
    }

    fn lookup(&self, topic: &str, partition: i32) -> Result<(Uuid, PartitionRegistration), ControllerError> {
        let topic_id = *self.image.topic_ids.get(topic).ok_or_else(|| ControllerError::UnknownTopic(topic.into()))?;
        let current = self
            .image
            .partition(topic_id, partition)
            .cloned()
            .ok_or(ControllerError::UnknownPartition(topic_id, partition))?;
        Ok((topic_id, current))
    }
}
