//! The controller: cluster metadata as a log of typed records, and the active
//! controller's decisions as a state machine without I/O.
//!
//! - [`records`]: what the metadata log (`__cluster_metadata`) holds.
//! - [`ClusterImage`]: the cluster after replaying those records, kept by controllers and
//!   brokers alike.
//! - [`QuorumController`]: registration, heartbeats and fencing, leader election with
//!   KIP-966's eligible leader replicas, AlterPartition, topic creation and deletion, and
//!   producer-id blocks, partition reassignment, leader elections and leader balancing.
//!   Records it emits are replicated by the Raft quorum before they count.
//! - [`ControllerRequest`]: what brokers ask of it, locally or over the controller listener.

mod image;
mod partition_change;
mod placement;
pub mod quorum;
mod quorum_controller;
mod reassignment;
pub mod records;
mod requests;
pub mod service;
#[cfg(test)]
mod tests;
mod topics;

pub use image::{BrokerRegistration, ClusterImage, ImageError, PartitionRegistration, TopicImage};
pub use quorum_controller::{
    AlterPartition, BrokerHeartbeat, ControllerConfig, ControllerError, ControllerOutput, CreateTopic, HeartbeatReply,
    QuorumController, RegisterBroker,
};
pub use reassignment::{ElectionType, PartitionOutcome, ReassignPartition};
pub use records::{MetadataRecord, NO_LEADER};
pub use requests::{ControllerReply, ControllerRequest, ControllerResponse};
