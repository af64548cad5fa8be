//! Data replication Kafka's way: followers fetch from the leader, the leader tracks their
//! progress, the ISR changes through the controller, and the high watermark says what is
//! committed (KIP-101, KIP-279, KIP-320, KIP-497, KIP-903, KIP-966).
//!
//! - [`PartitionState`]: one partition on one broker, leader or follower, without I/O.
//! - [`follower`]: the follower's fetch position and truncation on divergence.

pub mod follower;
mod partition_state;
#[cfg(test)]
mod tests;

pub use partition_state::{AckState, FollowerRead, PartitionState, ReplicaFetch, ReplicationConfig, Transition};
