//! The metadata quorum, as DescribeQuorum reports it (Kafka's `describeMetadataQuorum`).

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{AdminClient, broker_error};
use crate::client::error::{ClientError, Result};

/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// One replica of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReplicaInfo {
    /// Its node id.
    pub node_id: i32,
    /// One past the last entry the leader knows it holds (-1: unknown).
    pub log_end_offset: i64,
    /// When (epoch ms) the leader last heard a fetch from it, if known.
    pub last_fetch_ms: Option<i64>,
    /// When (epoch ms) it last held every entry the leader had, if ever.
    pub last_caught_up_ms: Option<i64>,
}

/// The metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumInfo {
    /// The active controller.
    pub leader_id: i32,
    /// Its epoch (the Raft term).
    pub leader_epoch: i32,
    /// The committed end of the metadata log.
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<QuorumReplicaInfo>,
    /// The replicas that follow without voting.
    pub observers: Vec<QuorumReplicaInfo>,
    /// Each voter's controller listener (`host:port`), when the broker reports them.
    pub voter_addresses: Vec<(i32, String)>,
}

impl QuorumInfo {
    /// How many entries `replica` is behind the leader; `None` when its end is unknown.
    pub fn lag(&self, replica: &QuorumReplicaInfo) -> Option<i64> {
        let leader_end = self.voters.iter().find(|v| v.node_id == self.leader_id)?.log_end_offset;
        (replica.log_end_offset >= 0).then(|| (leader_end - replica.log_end_offset).max(0))
    }
}

impl AdminClient {
    /// The metadata quorum: its leader and term, the committed end of the metadata log,
    /// and how far each voter and observer has replicated it.
    pub async fn describe_quorum(&self) -> Result<QuorumInfo> {
        let partition = PartitionData::default().with_partition_index(0);
        let topic = TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![partition]);
        let request = DescribeQuorumRequest::default().with_topics(vec![topic]);
        let connection = self.cluster.any().await?;
        let response = connection.send(&request).await?;
        quorum_info(&response, connection.addr())
    }
}

fn quorum_info(response: &DescribeQuorumResponse, addr: &str) -> Result<QuorumInfo> {
    let context = "describing the metadata quorum";
    if let Some(e) = broker_error(response.error_code, context, response.error_message.as_ref()) {
        return Err(e);
    }
    let partition = response
        .topics
        .iter()
        .filter(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == 0)
        .ok_or_else(|| ClientError::Protocol {
            addr: addr.to_owned(),
            reason: format!("DescribeQuorum answered without {METADATA_TOPIC}-0"),
        })?;
    if let Some(e) = broker_error(partition.error_code, context, partition.error_message.as_ref()) {
        return Err(e);
    }
    let replicas = |states: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
        states
            .iter()
            .map(|r| QuorumReplicaInfo {
                node_id: r.replica_id.0,
                log_end_offset: r.log_end_offset,
                last_fetch_ms: (r.last_fetch_timestamp >= 0).then_some(r.last_fetch_timestamp),
                last_caught_up_ms: (r.last_caught_up_timestamp >= 0).then_some(r.last_caught_up_timestamp),
            })
            .collect()
    };
    let voter_addresses = response
        .nodes
        .iter()
        .filter_map(|n| n.listeners.first().map(|l| (n.node_id.0, format!("{}:{}", l.host.as_str(), l.port))))
        .collect();
    Ok(QuorumInfo {
        leader_id: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: replicas(&partition.current_voters),
        observers: replicas(&partition.observers),
        voter_addresses,
    })
}
