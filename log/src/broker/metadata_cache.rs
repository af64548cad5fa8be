//! What the broker knows of the cluster (Kafka's KRaftMetadataCache): read straight from
//! the committed [`ClusterImage`] that the metadata quorum keeps, so every answer (topics,
//! leaders, epochs, configs) is the metadata log's, never a copy that could drift.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{Broker, Partition};
use crate::codes;
use crate::controller::records::ConfigResource;
use crate::controller::{ClusterImage, PartitionRegistration, TopicImage};
use crate::storage::TopicPartition;

/// One topic, as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic id (KIP-516).
    pub id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas of each partition.
    pub replication_factor: i16,
    /// Topic-level config overrides, by Kafka name.
    pub configs: BTreeMap<String, String>,
}

impl TopicMetadata {
    pub(crate) fn from_image(image: &ClusterImage, topic: &TopicImage) -> Self {
        let configs = image.configs.get(&ConfigResource::Topic(topic.name.clone())).cloned().unwrap_or_default();
        let replication_factor = topic.partitions.values().next().map_or(0, |p| p.replicas.len() as i16);
        Self { id: topic.id, partitions: topic.partitions.len() as i32, replication_factor, configs }
    }
}

/// A broker clients can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    /// `node.id`.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// `broker.rack`.
    pub rack: Option<String>,
}

/// The config resource of broker configs set at run time for `resource`: `""` for the
/// cluster-wide default, else a node id.
pub(crate) fn broker_resource(resource: &str) -> ConfigResource {
    ConfigResource::Broker(resource.parse().ok())
}

impl Broker {
    /// Runs `f` on the committed cluster image.
    pub fn with_image<T>(&self, f: impl FnOnce(&ClusterImage) -> T) -> T {
        self.quorum.with_image(f)
    }

    /// A topic's metadata.
    pub fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.with_image(|image| image.topic(name).map(|t| TopicMetadata::from_image(image, t)))
    }

    /// Every topic's name.
    pub fn topic_names(&self) -> Vec<String> {
        self.with_image(|image| image.topic_ids.keys().cloned().collect())
    }

    /// The name of the topic with `id`.
    pub fn topic_name(&self, id: Uuid) -> Option<String> {
        self.with_image(|image| image.topics.get(&id).map(|t| t.name.clone()))
    }

    /// The cluster id (from `meta.properties`).
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// A partition's replicas, leader and epochs.
    pub fn partition(&self, tp: &TopicPartition) -> Option<PartitionRegistration> {
        self.with_image(|image| image.topic(&tp.topic).and_then(|t| t.partitions.get(&tp.partition)).cloned())
    }

    /// The replica of a partition this broker leads; else the error code a client gets:
    /// UNKNOWN_TOPIC_OR_PARTITION, or NOT_LEADER_OR_FOLLOWER (it should refresh its
    /// metadata and go to the leader).
    pub(crate) fn leader_replica(&self, tp: &TopicPartition) -> Result<Arc<Partition>, i16> {
        match self.replicas.partition(tp) {
            Some(replica) if replica.leader_epoch().is_ok() => Ok(replica),
            Some(_) => Err(codes::NOT_LEADER_OR_FOLLOWER),
            None if self.partition(tp).is_some() => Err(codes::NOT_LEADER_OR_FOLLOWER),
            None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
        }
    }

    /// The leader epoch of a partition this broker leads; else as [`Self::leader_replica`].
    pub(crate) fn leader_epoch(&self, tp: &TopicPartition) -> Result<i32, i16> {
        self.leader_replica(tp)?.leader_epoch()
    }

    /// The unfenced brokers at their advertised listeners, this one first, where it really
    /// listens.
    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        let node = self.config.node_id;
        let (host, port) = self.advertised.lock().clone();
        let own = LiveBroker { id: node, host, port, rack: self.config.cluster.rack.clone() };
        let others: Vec<LiveBroker> = self.with_image(|image| {
            let live = image.brokers.values().filter(|b| !b.fenced && b.id != node);
            live.filter_map(|b| {
                let endpoint = b.endpoints.first()?;
                Some(LiveBroker { id: b.id, host: endpoint.host.clone(), port: endpoint.port, rack: b.rack.clone() })
            })
            .collect()
        });
        std::iter::once(own).chain(others).collect()
    }

    /// The broker configs changed at run time for `resource`: `""` for the cluster-wide
    /// defaults, or a node id.
    pub fn dynamic_broker_configs(&self, resource: &str) -> BTreeMap<String, String> {
        let resource = broker_resource(resource);
        self.with_image(|image| image.configs.get(&resource).cloned().unwrap_or_default())
    }
}
