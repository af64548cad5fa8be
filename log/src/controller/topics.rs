//! The active controller's topic and config changes: CreateTopics, DeleteTopics,
//! CreatePartitions and AlterConfigs as records for the metadata log. Brokers forward
//! these requests here; what the records say is what every broker then does.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::image::PartitionRegistration;
use super::placement::place_replicas;
use super::quorum_controller::{ControllerError, ControllerOutput, CreateTopic, QuorumController};
use super::records::{ConfigResource, MetadataRecord, PartitionRecord};

impl QuorumController {
    /// Creates a topic with its partitions placed over the eligible brokers.
    pub fn create_topic(&mut self, req: CreateTopic) -> ControllerOutput<Result<Uuid, ControllerError>> {
        let mut records = Vec::new();
        let reply = self.place_topic(&req).map(|placed| {
            self.emit(&mut records, MetadataRecord::Topic { name: req.name.clone(), topic_id: req.topic_id });
            for (name, value) in &req.configs {
                let record = MetadataRecord::Config {
                    resource: ConfigResource::Topic(req.name.clone()),
                    name: name.clone(),
                    value: Some(value.clone()),
                };
                self.emit(&mut records, record);
            }
            self.emit_partitions(&mut records, req.topic_id, 0, placed);
            req.topic_id
        });
        ControllerOutput { records, reply }
    }

    fn place_topic(&self, req: &CreateTopic) -> Result<Vec<Vec<i32>>, ControllerError> {
        if self.image.topic_ids.contains_key(&req.name) {
            return Err(ControllerError::TopicAlreadyExists(req.name.clone()));
        }
        if self.image.topics.contains_key(&req.topic_id) || self.image.removed_topics.contains(&req.topic_id) {
            return Err(ControllerError::InvalidRequest(format!("topic id {} was used before", req.topic_id)));
        }
        if !req.assignments.is_empty() {
            return self.check_assignments(&req.assignments).map(|()| req.assignments.clone());
        }
        let partitions = req.partitions.unwrap_or(self.config.num_partitions);
        if partitions < 1 {
            return Err(ControllerError::InvalidPartitions(partitions));
        }
        let rf = req.replication_factor.unwrap_or(self.config.default_replication_factor);
        self.place(partitions, rf, self.image.topics.len())
    }

    /// Replicas chosen by the caller: every partition as many, no broker twice, and only
    /// registered brokers (Kafka's INVALID_REPLICA_ASSIGNMENT otherwise).
    fn check_assignments(&self, assignments: &[Vec<i32>]) -> Result<(), ControllerError> {
        let rf = assignments[0].len();
        for (partition, replicas) in assignments.iter().enumerate() {
            if replicas.len() != rf {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "partition {partition}: {} replicas, where the first partition has {rf}",
                    replicas.len()
                )));
            }
            self.check_replica_list(partition as i32, replicas)?;
        }
        Ok(())
    }

    /// One partition's replicas, chosen by the caller: at least one, no broker twice, and
    /// only registered brokers.
    pub(super) fn check_replica_list(&self, partition: i32, replicas: &[i32]) -> Result<(), ControllerError> {
        let invalid =
            |reason: String| ControllerError::InvalidReplicaAssignment(format!("partition {partition}: {reason}"));
        if replicas.is_empty() {
            return Err(invalid("the replica list is empty".into()));
        }
        let mut seen = replicas.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return Err(invalid(format!("replicas {replicas:?} name a broker twice")));
        }
        if let Some(unknown) = replicas.iter().find(|b| !self.image.brokers.contains_key(b)) {
            return Err(invalid(format!("broker {unknown} is not registered")));
        }
        Ok(())
    }

    /// Replica lists for `partitions` new partitions of `rf` replicas each, over the
    /// eligible brokers, starting the round-robin at `start`.
    fn place(&self, partitions: i32, rf: i16, start: usize) -> Result<Vec<Vec<i32>>, ControllerError> {
        let eligible: Vec<(i32, Option<String>)> =
            self.image.brokers.values().filter(|b| b.is_eligible()).map(|b| (b.id, b.rack.clone())).collect();
        if rf < 1 || rf as usize > eligible.len() {
            return Err(ControllerError::InvalidReplicationFactor { requested: rf, available: eligible.len() });
        }
        Ok(place_replicas(&eligible, partitions, rf as usize, start))
    }

    fn emit_partitions(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        topic_id: Uuid,
        first: i32,
        placed: Vec<Vec<i32>>,
    ) {
        for (i, replicas) in placed.into_iter().enumerate() {
            let registration = PartitionRegistration {
                isr: replicas.clone(),
                leader: replicas[0],
                replicas,
                elr: Vec::new(),
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            };
            let record = PartitionRecord { topic_id, partition: first + i as i32, registration };
            self.emit(records, MetadataRecord::Partition(record));
        }
    }

    /// Deletes a topic: one record, after which brokers remove its data.
    pub fn delete_topic(&mut self, name: &str) -> ControllerOutput<Result<Uuid, ControllerError>> {
        let mut records = Vec::new();
        let Some(topic_id) = self.image.topic_ids.get(name).copied() else {
            return ControllerOutput { records, reply: Err(ControllerError::UnknownTopic(name.to_owned())) };
        };
        self.emit(&mut records, MetadataRecord::RemoveTopic { topic_id });
        ControllerOutput { records, reply: Ok(topic_id) }
    }

    /// Raises a topic's partition count to `count`; the new partitions get as many
    /// replicas as its first one has.
    pub fn create_partitions(&mut self, name: &str, count: i32) -> ControllerOutput<Result<(), ControllerError>> {
        let mut records = Vec::new();
        let Some(topic) = self.image.topic(name).cloned() else {
            return ControllerOutput { records, reply: Err(ControllerError::UnknownTopic(name.to_owned())) };
        };
        let existing = topic.partitions.len() as i32;
        if count <= existing {
            let reason = format!("topic {name} has {existing} partitions; the new count {count} must be larger");
            return ControllerOutput { records, reply: Err(ControllerError::InvalidPartitionCount(reason)) };
        }
        let rf = topic.partitions.values().next().map_or(1, |p| p.replicas.len() as i16);
        let reply = self.place(count - existing, rf, self.image.topics.len() + existing as usize).map(|placed| {
            self.emit_partitions(&mut records, topic.id, existing, placed);
        });
        ControllerOutput { records, reply }
    }

    /// Replaces every config set on `resource` with `configs`: records for the keys that
    /// change, are added or are removed.
    pub fn alter_configs(
        &mut self,
        resource: ConfigResource,
        configs: BTreeMap<String, String>,
    ) -> ControllerOutput<Result<(), ControllerError>> {
        let mut records = Vec::new();
        if let ConfigResource::Topic(name) = &resource
            && self.image.topic(name).is_none()
        {
            return ControllerOutput { records, reply: Err(ControllerError::UnknownTopic(name.clone())) };
        }
        let current = self.image.configs.get(&resource).cloned().unwrap_or_default();
        let removed = current.keys().filter(|k| !configs.contains_key(*k)).map(|k| (k.clone(), None));
        let set = configs.iter().filter(|(k, v)| current.get(*k) != Some(v)).map(|(k, v)| (k.clone(), Some(v.clone())));
        let changes: Vec<(String, Option<String>)> = removed.chain(set).collect();
        for (name, value) in changes {
            self.emit(&mut records, MetadataRecord::Config { resource: resource.clone(), name, value });
        }
        ControllerOutput { records, reply: Ok(()) }
    }
}
