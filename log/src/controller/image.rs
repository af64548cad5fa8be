//! The cluster as the metadata log describes it, after replaying every record in order:
//! brokers, topics with their partitions' leaders and ISRs, configs, and the producer-id
//! counter. The active controller decides from it; every broker keeps one to answer
//! Metadata and to know which partitions it leads or follows (KRaft's MetadataImage).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::records::{
    BrokerEndpoint, ConfigResource, MetadataRecord, NO_LEADER, PartitionChangeRecord, RegisterBrokerRecord,
};

/// A record that does not fit the image: the metadata log is damaged or was written by a
/// controller with a bug. Replay stops at the offset named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata record at offset {offset} cannot be applied: {reason}")]
pub struct ImageError {
    /// Offset of the record in the metadata log.
    pub offset: i64,
    /// What did not fit.
    pub reason: String,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerRegistration {
    /// `node.id`.
    pub id: i32,
    /// Changes with every process start.
    pub incarnation_id: Uuid,
    /// Offset of the registration record.
    pub epoch: i64,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Advertised listeners.
    pub endpoints: Vec<BrokerEndpoint>,
    /// Fenced brokers lead nothing and cannot join an ISR.
    pub fenced: bool,
    /// Leadership is moving away from it.
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// Unfenced and not shutting down: may lead and may join an ISR.
    pub fn is_eligible(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// One partition's replicas, leader and ISR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionRegistration {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Eligible leader replicas (KIP-966): out of the ISR, but holding everything below
    /// the high watermark, because the ISR fell below `min.insync.replicas` when they left.
    pub elr: Vec<i32>,
    /// Leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (KIP-455); they are in `replicas` already and
    /// join the ISR by catching up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment removes once every target replica is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionRegistration {
    /// Applies a change as Kafka does: a new leader bumps the leader epoch, every change
    /// bumps the partition epoch.
    pub fn merge(&self, change: &PartitionChangeRecord) -> Self {
        let mut next = self.clone();
        if let Some(isr) = &change.isr {
            next.isr = isr.clone();
        }
        if let Some(elr) = &change.elr {
            next.elr = elr.clone();
        }
        if let Some(replicas) = &change.replicas {
            next.replicas = replicas.clone();
        }
        if let Some(adding) = &change.adding_replicas {
            next.adding_replicas = adding.clone();
        }
        if let Some(removing) = &change.removing_replicas {
            next.removing_replicas = removing.clone();
        }
        if let Some(leader) = change.leader {
            next.leader = leader;
            next.leader_epoch += 1;
        }
        next.partition_epoch += 1;
        next
    }

    /// Whether the partition has a leader.
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }

    /// Whether a reassignment is under way.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment ends with (all of them when none is under way).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.removing_replicas.contains(r)).collect()
    }

    /// The replicas before the reassignment under way (all of them when none is).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas.iter().copied().filter(|r| !self.adding_replicas.contains(r)).collect()
    }
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicImage {
    /// Name.
    pub name: String,
    /// Id.
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// The whole cluster at one offset of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterImage {
    /// Offset of the last record applied, -1 before any.
    pub offset: i64,
    /// Registered brokers.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by id.
    pub topics: BTreeMap<Uuid, TopicImage>,
    /// Topic ids by name.
    pub topic_ids: BTreeMap<String, Uuid>,
    /// Ids of deleted topics: a partition directory of one is left over from a deletion a
    /// crash interrupted, and is removed; one of an id never seen is kept.
    #[serde(default)]
    pub removed_topics: BTreeSet<Uuid>,
    /// Configs set explicitly.
    #[serde(with = "config_pairs")]
    pub configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    /// First id of the next producer-id block.
    pub next_producer_id: i64,
}

impl ClusterImage {
    /// An image before the first record.
    pub fn new() -> Self {
        Self { offset: -1, ..Self::default() }
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// One partition.
    pub fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionRegistration> {
        self.topics.get(&topic_id).and_then(|t| t.partitions.get(&partition))
    }

    /// Whether a broker is registered, unfenced and not shutting down.
    pub fn is_eligible(&self, broker_id: i32) -> bool {
        self.brokers.get(&broker_id).is_some_and(BrokerRegistration::is_eligible)
    }

    /// A broker's registration epoch, when registered.
    pub fn broker_epoch(&self, broker_id: i32) -> Option<i64> {
        self.brokers.get(&broker_id).map(|b| b.epoch)
    }

    /// Every (topic id, partition) whose replicas include `broker_id`.
    pub fn partitions_of(&self, broker_id: i32) -> Vec<(Uuid, i32)> {
        let mut found = Vec::new();
        for (id, topic) in &self.topics {
            for (index, p) in &topic.partitions {
                if p.replicas.contains(&broker_id) {
                    found.push((*id, *index));
                }
            }
        }
        found
    }

    /// Applies the record at `offset`. Records must come in log order.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) -> Result<(), ImageError> {
        if offset <= self.offset {
            return Err(ImageError { offset, reason: format!("already applied up to {}", self.offset) });
        }
        let fail = |reason: String| ImageError { offset, reason };
        match record {
            MetadataRecord::RegisterBroker(r) => self.register(r),
            MetadataRecord::FenceBroker { broker_id, broker_epoch } => {
                self.broker_mut(*broker_id, *broker_epoch).map_err(fail)?.fenced = true;
            }
            MetadataRecord::UnfenceBroker { broker_id, broker_epoch } => {
                let broker = self.broker_mut(*broker_id, *broker_epoch).map_err(fail)?;
                broker.fenced = false;
                broker.in_controlled_shutdown = false;
            }
            MetadataRecord::BrokerInControlledShutdown { broker_id, broker_epoch } => {
                self.broker_mut(*broker_id, *broker_epoch).map_err(fail)?.in_controlled_shutdown = true;
            }
            MetadataRecord::Topic { name, topic_id } => {
                if self.topic_ids.contains_key(name)
                    || self.topics.contains_key(topic_id)
                    || self.removed_topics.contains(topic_id)
                {
                    return Err(fail(format!("topic {name} ({topic_id}) exists")));
                }
                self.topic_ids.insert(name.clone(), *topic_id);
                let topic = TopicImage { name: name.clone(), id: *topic_id, partitions: BTreeMap::new() };
                self.topics.insert(*topic_id, topic);
            }
            MetadataRecord::Partition(p) => {
                let topic = self.topics.get_mut(&p.topic_id).ok_or_else(|| fail(format!("no topic {}", p.topic_id)))?;
                topic.partitions.insert(p.partition, p.registration.clone());
            }
            MetadataRecord::PartitionChange(change) => {
                let current = self
                    .partition(change.topic_id, change.partition)
                    .ok_or_else(|| fail(format!("no partition {}-{}", change.topic_id, change.partition)))?;
                let next = current.merge(change);
                if let Some(topic) = self.topics.get_mut(&change.topic_id) {
                    topic.partitions.insert(change.partition, next);
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self.topics.remove(topic_id).ok_or_else(|| fail(format!("no topic {topic_id}")))?;
                self.topic_ids.remove(&topic.name);
                self.removed_topics.insert(*topic_id);
                self.configs.remove(&ConfigResource::Topic(topic.name));
            }
            MetadataRecord::Config { resource, name, value } => {
                let configs = self.configs.entry(resource.clone()).or_default();
                match value {
                    Some(v) => configs.insert(name.clone(), v.clone()),
                    None => configs.remove(name),
                };
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                if *next_producer_id <= self.next_producer_id {
                    return Err(fail(format!("producer ids must grow past {}", self.next_producer_id)));
                }
                self.next_producer_id = *next_producer_id;
            }
        }
        self.offset = offset;
        Ok(())
    }

    fn register(&mut self, r: &RegisterBrokerRecord) {
        let broker = BrokerRegistration {
            id: r.broker_id,
            incarnation_id: r.incarnation_id,
            epoch: r.broker_epoch,
            rack: r.rack.clone(),
            endpoints: r.endpoints.clone(),
            fenced: true,
            in_controlled_shutdown: false,
        };
        self.brokers.insert(r.broker_id, broker);
    }

    fn broker_mut(&mut self, broker_id: i32, broker_epoch: i64) -> Result<&mut BrokerRegistration, String> {
        match self.brokers.get_mut(&broker_id) {
            Some(b) if b.epoch == broker_epoch => Ok(b),
            Some(b) => Err(format!("broker {broker_id} has epoch {}, not {broker_epoch}", b.epoch)),
            None => Err(format!("broker {broker_id} is not registered")),
        }
    }
}

/// Configs as a list of pairs in snapshots: JSON map keys must be strings.
mod config_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ConfigResource;

    type Configs = BTreeMap<ConfigResource, BTreeMap<String, String>>;

    pub fn serialize<S: Serializer>(configs: &Configs, s: S) -> Result<S::Ok, S::Error> {
        configs.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Configs, D::Error> {
        Ok(Vec::<(ConfigResource, BTreeMap<String, String>)>::deserialize(d)?.into_iter().collect())
    }
}
