//! The typed records of the cluster metadata log (`__cluster_metadata`), after KRaft's
//! (KIP-631). Every change to the cluster is one of these, appended by the active
//! controller and replayed, in order, by every controller and broker into a
//! [`super::ClusterImage`].
//!
//! The encoding is serde's, because only Freshet reads this log; Kafka clients see its
//! effects through Metadata, DescribeCluster and DescribeQuorum, never its bytes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::image::PartitionRegistration;

/// No leader (Kafka's `NO_LEADER`).
pub const NO_LEADER: i32 = -1;

/// One listener a broker can be reached on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// A broker registers (Kafka's RegisterBrokerRecord). It starts fenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRecord {
    /// `node.id`.
    pub broker_id: i32,
    /// Random per process start: tells a restart from a duplicate.
    pub incarnation_id: Uuid,
    /// The offset of this record in the metadata log.
    pub broker_epoch: i64,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Advertised listeners.
    pub endpoints: Vec<BrokerEndpoint>,
}

/// A topic's partition as created (Kafka's PartitionRecord).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The topic.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// Replicas, ISR, leader and epochs.
    #[serde(flatten)]
    pub registration: PartitionRegistration,
}

/// A change to a partition (Kafka's PartitionChangeRecord). `None` fields are unchanged; a
/// changed leader bumps the leader epoch, and every change bumps the partition epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChangeRecord {
    /// The topic.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// New ISR.
    pub isr: Option<Vec<i32>>,
    /// New ELR.
    pub elr: Option<Vec<i32>>,
    /// New leader.
    pub leader: Option<i32>,
    /// New replica list (reassignment).
    pub replicas: Option<Vec<i32>>,
    /// New adding replicas (reassignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adding_replicas: Option<Vec<i32>>,
    /// New removing replicas (reassignment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing_replicas: Option<Vec<i32>>,
}

impl PartitionChangeRecord {
    /// A change of nothing yet.
    pub fn new(topic_id: Uuid, partition: i32) -> Self {
        Self {
            topic_id,
            partition,
            isr: None,
            elr: None,
            leader: None,
            replicas: None,
            adding_replicas: None,
            removing_replicas: None,
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.isr.is_none()
            && self.elr.is_none()
            && self.leader.is_none()
            && self.replicas.is_none()
            && self.adding_replicas.is_none()
            && self.removing_replicas.is_none()
    }
}

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// One broker (`Some`) or the cluster-wide default (`None`).
    Broker(Option<i32>),
}

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker registered.
    RegisterBroker(RegisterBrokerRecord),
    /// A broker missed its session or finished a controlled shutdown.
    FenceBroker {
        /// The broker.
        broker_id: i32,
        /// Its registration's epoch.
        broker_epoch: i64,
    },
    /// A registered broker caught up with the metadata log and may lead.
    UnfenceBroker {
        /// The broker.
        broker_id: i32,
        /// Its registration's epoch.
        broker_epoch: i64,
    },
    /// A broker asked to shut down; leadership moves away from it.
    BrokerInControlledShutdown {
        /// The broker.
        broker_id: i32,
        /// Its registration's epoch.
        broker_epoch: i64,
    },
    /// A topic was created.
    Topic {
        /// Name.
        name: String,
        /// Id, stable across renames and re-creation.
        topic_id: Uuid,
    },
    /// A partition was created.
    Partition(PartitionRecord),
    /// A partition changed.
    PartitionChange(PartitionChangeRecord),
    /// A topic was deleted; brokers remove its data when they apply this.
    RemoveTopic {
        /// The topic.
        topic_id: Uuid,
    },
    /// A config was set (`Some`) or removed (`None`).
    Config {
        /// What it applies to.
        resource: ConfigResource,
        /// Kafka's property name.
        name: String,
        /// The value.
        value: Option<String>,
    },
    /// A block of producer ids went to a broker; the next block starts at
    /// `next_producer_id`.
    ProducerIds {
        /// The broker.
        broker_id: i32,
        /// Its registration's epoch.
        broker_epoch: i64,
        /// First id of the next block.
        next_producer_id: i64,
    },
}
