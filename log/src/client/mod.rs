//! Freshet's Kafka client: it speaks the Kafka protocol, so it works against Freshet and
//! any Kafka broker. Streams, SQL, Connect and the command-line tools build on it.
//!
//! - [`Connection`]: one broker connection. Requests are pipelined: many may be in flight,
//!   and answers are matched to them in order, by correlation id. API versions are
//!   negotiated with ApiVersions when the connection opens.
//! - [`partitioner`]: Kafka's default partitioner (murmur2 of the key, sticky partitions
//!   for records without a key), byte-compatible with the Java client and librdkafka's
//!   `murmur2_random`.
//! - [`serde`]: the `Serializer` and `Deserializer` traits with Kafka's encodings.
//! - [`AdminClient`]: topics, configs, partitions, offsets, records, the cluster.
//! - [`Consumer`]: assign, or subscribe as a member of a consumer group (range,
//!   roundrobin or cooperative-sticky assignment, background heartbeats, a rebalance
//!   listener); poll, seek, pause and resume, with a background fetcher that keeps one
//!   fetch in flight per broker; synchronous, asynchronous and automatic commits.
//! - [`Producer`]: batches per partition, `linger.ms`, `buffer.memory` back-pressure,
//!   compression, retries bounded by `delivery.timeout.ms`, idempotence on by default.

mod admin;
mod cluster;
mod config;
mod connection;
mod consumer;
mod error;
mod group;
pub mod partitioner;
mod producer;
pub mod serde;

pub use admin::{
    AdminClient, AlterConfigOp, ClusterDescription, ConfigEntry, ConfigResource, ElectionType, GroupDescription,
    GroupListing, GroupMember, ListedOffset, NewTopic, OffsetSpec, PartitionReassignment, QuorumInfo,
    QuorumReplicaInfo, TopicPartition,
};
pub use cluster::{BrokerInfo, PartitionInfo, TopicInfo};
pub use config::ClientConfig;
pub use connection::{CLIENT_API_VERSIONS, Connection, ConnectionConfig, PendingReply};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, ConsumerRecords, IsolationLevel, OffsetAndTimestamp, OffsetReset,
    RebalanceContext, RebalanceListener,
};
pub use error::{ClientError, Result};
pub use group::CommittedOffset;
pub use group::assignor::{Assignor, GroupAssignment, GroupAssignor, MemberSubscription};
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata, SendAllOutcome};
