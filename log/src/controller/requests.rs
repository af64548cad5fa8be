//! The requests a broker sends to the active controller, as values (Kafka's controller
//! APIs: BrokerRegistration, BrokerHeartbeat, AlterPartition, AllocateProducerIds, and the
//! admin requests brokers forward). A request runs on the local controller when this node
//! leads the quorum and travels over the controller listener when another node does; either
//! way [`ControllerRequest::apply`] is the one place it meets the [`QuorumController`].
//! DescribeQuorum and AddObserver travel the same way but are answered by the quorum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::image::PartitionRegistration;
use super::quorum::QuorumDescription;
use super::quorum_controller::{
    AlterPartition, BrokerHeartbeat, ControllerError, ControllerOutput, CreateTopic, HeartbeatReply, QuorumController,
    RegisterBroker,
};
use super::reassignment::{ElectionType, PartitionOutcome, ReassignPartition};
use super::records::ConfigResource;

/// One request for the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// BrokerRegistration.
    RegisterBroker(RegisterBroker),
    /// BrokerHeartbeat.
    BrokerHeartbeat(BrokerHeartbeat),
    /// AlterPartition.
    AlterPartition(AlterPartition),
    /// AllocateProducerIds.
    AllocateProducerIds {
        /// The broker.
        broker_id: i32,
        /// Its registration's epoch.
        broker_epoch: i64,
    },
    /// CreateTopics, one topic.
    CreateTopic(CreateTopic),
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// CreatePartitions, one topic.
    CreatePartitions {
        /// The topic.
        name: String,
        /// The new partition count.
        count: i32,
    },
    /// AlterConfigs: every config of `resource` replaced by `configs`.
    AlterConfigs {
        /// A topic or a broker.
        resource: ConfigResource,
        /// The whole new set.
        configs: BTreeMap<String, String>,
    },
    /// AlterPartitionReassignments.
    AlterPartitionReassignments {
        /// The partitions and their targets.
        partitions: Vec<ReassignPartition>,
        /// KIP-860: whether a target may have another replica count.
        allow_replication_factor_change: bool,
    },
    /// ElectLeaders.
    ElectLeaders {
        /// Preferred or unclean.
        election: ElectionType,
        /// The partitions; `None`: all.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// DescribeQuorum.
    DescribeQuorum,
    /// A broker-only node asks to follow the metadata log (Kafka's observers fetch it;
    /// here the leader adds them as openraft learners and replicates to them).
    AddObserver {
        /// Its `node.id`.
        node_id: i32,
        /// Where its controller listener is reached (`host:port`).
        addr: String,
    },
}

/// The controller's answer to a [`ControllerRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// A registration's epoch.
    BrokerEpoch(i64),
    /// A heartbeat's answer.
    Heartbeat(HeartbeatReply),
    /// The partition after an AlterPartition.
    Partition(PartitionRegistration),
    /// A block of producer ids: the first and how many.
    ProducerIds {
        /// The first id of the block.
        first: i64,
        /// Its size.
        size: i64,
    },
    /// The id of the topic created or deleted.
    TopicId(Uuid),
    /// The metadata quorum.
    Quorum(QuorumDescription),
    /// What a request came to for each partition it named.
    Partitions(Vec<PartitionOutcome>),
    /// Done, nothing to say.
    Done,
}

impl ControllerRequest {
    /// Its name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RegisterBroker(_) => "BrokerRegistration",
            Self::BrokerHeartbeat(_) => "BrokerHeartbeat",
            Self::AlterPartition(_) => "AlterPartition",
            Self::AllocateProducerIds { .. } => "AllocateProducerIds",
            Self::CreateTopic(_) => "CreateTopics",
            Self::DeleteTopic { .. } => "DeleteTopics",
            Self::CreatePartitions { .. } => "CreatePartitions",
            Self::AlterConfigs { .. } => "AlterConfigs",
            Self::AlterPartitionReassignments { .. } => "AlterPartitionReassignments",
            Self::ElectLeaders { .. } => "ElectLeaders",
            Self::DescribeQuorum => "DescribeQuorum",
            Self::AddObserver { .. } => "AddObserver",
        }
    }

    /// Runs the request on the active controller: the records to append and the answer.
    pub fn apply(
        self,
        controller: &mut QuorumController,
        now_ms: i64,
    ) -> ControllerOutput<Result<ControllerReply, ControllerError>> {
        fn map<T>(
            out: ControllerOutput<Result<T, ControllerError>>,
            f: impl FnOnce(T) -> ControllerReply,
        ) -> ControllerOutput<Result<ControllerReply, ControllerError>> {
            ControllerOutput { records: out.records, reply: out.reply.map(f) }
        }
        match self {
            Self::RegisterBroker(req) => map(controller.register_broker(req, now_ms), ControllerReply::BrokerEpoch),
            Self::BrokerHeartbeat(req) => map(controller.heartbeat(req, now_ms), ControllerReply::Heartbeat),
            Self::AlterPartition(req) => map(controller.alter_partition(&req), ControllerReply::Partition),
            Self::AllocateProducerIds { broker_id, broker_epoch } => {
                map(controller.allocate_producer_ids(broker_id, broker_epoch), |(first, size)| {
                    ControllerReply::ProducerIds { first, size }
                })
            }
            Self::CreateTopic(req) => map(controller.create_topic(req), ControllerReply::TopicId),
            Self::DeleteTopic { name } => map(controller.delete_topic(&name), ControllerReply::TopicId),
            Self::CreatePartitions { name, count } => {
                map(controller.create_partitions(&name, count), |()| ControllerReply::Done)
            }
            Self::AlterConfigs { resource, configs } => {
                map(controller.alter_configs(resource, configs), |()| ControllerReply::Done)
            }
            Self::AlterPartitionReassignments { partitions, allow_replication_factor_change } => map(
                controller.alter_partition_reassignments(partitions, allow_replication_factor_change),
                ControllerReply::Partitions,
            ),
            Self::ElectLeaders { election, partitions } => {
                map(controller.elect_leaders(election, partitions), ControllerReply::Partitions)
            }
            Self::DescribeQuorum | Self::AddObserver { .. } => ControllerOutput {
                records: Vec::new(),
                reply: Err(ControllerError::InvalidRequest(format!("{} is answered by the quorum", self.name()))),
            },
        }
    }
}

/// What a controller request came to: the answer, and the metadata offset that holds its
/// records, which the sender waits for before it acts on the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerResponse {
    /// The answer, or why the controller refused.
    pub reply: Result<ControllerReply, ControllerError>,
    /// The offset of the last record the request wrote (or of the image it read).
    pub metadata_offset: i64,
}
