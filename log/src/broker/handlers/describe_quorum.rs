//! DescribeQuorum: the metadata quorum's leader, term, committed end and each replica's
//! progress. Any broker answers; it asks the active controller, as Kafka's brokers forward
//! the request. Offsets count the metadata log's entries (see
//! [`crate::controller::quorum::QuorumDescription`]).

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::codes;
use crate::controller::quorum::{QuorumDescription, QuorumReplica};
use crate::controller::{ControllerReply, ControllerRequest};

/// The metadata log's topic, the only one DescribeQuorum describes.
pub(crate) const METADATA_TOPIC: &str = "__cluster_metadata";

/// How long to look for the active controller.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) async fn handle(broker: &Broker, req: DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    let mut response = describe(broker, req).await;
    fit_to_version(&mut response, version);
    response
}

async fn describe(broker: &Broker, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let names_metadata_log = matches!(req.topics.as_slice(), [t] if t.topic_name.0.as_str() == METADATA_TOPIC
        && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0));
    if !names_metadata_log {
        return partition_errors(&req, codes::UNKNOWN_TOPIC_OR_PARTITION, "only __cluster_metadata-0 has a quorum");
    }
    let quorum = match broker.ask_controller(ControllerRequest::DescribeQuorum, TIMEOUT).await {
        Ok(Ok(ControllerReply::Quorum(quorum))) => quorum,
        Ok(Ok(other)) => {
            tracing::error!(reply = ?other, "the controller answered DescribeQuorum with something else");
            return top_level_error(codes::UNKNOWN_SERVER_ERROR, "the controller gave an unexpected answer");
        }
        Ok(Err(e)) => return top_level_error(e.code(), &e.to_string()),
        Err(e) => return top_level_error(e.code, &e.message),
    };
    DescribeQuorumResponse::default()
        .with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(str_bytes(METADATA_TOPIC)))
                .with_partitions(vec![partition_data(&quorum)]),
        ])
        .with_nodes(voter_nodes(broker))
}

fn partition_data(quorum: &QuorumDescription) -> PartitionData {
    PartitionData::default()
        .with_leader_id(BrokerId(quorum.leader_id as i32))
        .with_leader_epoch(quorum.leader_epoch as i32)
        .with_high_watermark(quorum.high_watermark)
        .with_current_voters(quorum.voters.iter().map(replica_state).collect())
        .with_observers(quorum.observers.iter().map(replica_state).collect())
}

fn replica_state(replica: &QuorumReplica) -> ReplicaState {
    ReplicaState::default()
        .with_replica_id(BrokerId(replica.node_id as i32))
        .with_log_end_offset(replica.log_end_offset)
        // openraft does not report when a follower last fetched.
        .with_last_fetch_timestamp(-1)
        .with_last_caught_up_timestamp(replica.last_caught_up_ms)
}

/// The voters' controller listeners (v2), as `controller.quorum.voters` names them.
fn voter_nodes(broker: &Broker) -> Vec<Node> {
    let listener_name = broker.config.cluster.controller_listener_names.first().cloned().unwrap_or_default();
    broker
        .quorum
        .voter_addresses()
        .iter()
        .map(|(id, addr)| {
            let listener = Listener::default()
                .with_name(str_bytes(listener_name.clone()))
                .with_host(str_bytes(addr.ip().to_string()))
                .with_port(addr.port());
            Node::default().with_node_id(BrokerId(*id as i32)).with_listeners(vec![listener])
        })
        .collect()
}

fn partition_errors(req: &DescribeQuorumRequest, code: i16, message: &str) -> DescribeQuorumResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message)))
                        .with_leader_id(BrokerId(-1))
                })
                .collect();
            TopicData::default().with_topic_name(t.topic_name.clone()).with_partitions(partitions)
        })
        .collect();
    DescribeQuorumResponse::default().with_topics(topics)
}

fn top_level_error(code: i16, message: &str) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default().with_error_code(code).with_error_message(Some(str_bytes(message)))
}

/// Clears what older versions cannot carry: messages and listeners (v2), caught-up times (v1).
fn fit_to_version(response: &mut DescribeQuorumResponse, version: i16) {
    if version >= 2 {
        return;
    }
    response.error_message = None;
    response.nodes.clear();
    for partition in response.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
        partition.error_message = None;
        if version == 0 {
            for replica in partition.current_voters.iter_mut().chain(partition.observers.iter_mut()) {
                replica.last_caught_up_timestamp = -1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kafka_protocol::messages::describe_quorum_request;

    use super::*;
    use crate::broker::BrokerConfig;

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        let partitions =
            partitions.iter().map(|p| describe_quorum_request::PartitionData::default().with_partition_index(*p));
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(str_bytes(topic)))
                .with_partitions(partitions.collect()),
        ])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_node_describes_its_one_voter_quorum_at_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::embedded(dir.path())).await.unwrap();

        for bad in [request("orders", &[0]), request(METADATA_TOPIC, &[1]), request(METADATA_TOPIC, &[0, 1])] {
            let answer = handle(&broker, bad.clone(), 2).await;
            let codes: Vec<i16> = answer.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).collect();
            assert!(!codes.is_empty() && codes.iter().all(|c| *c == codes::UNKNOWN_TOPIC_OR_PARTITION), "{bad:?}");
        }

        let v2 = handle(&broker, request(METADATA_TOPIC, &[0]), 2).await;
        assert_eq!(v2.error_code, 0, "{v2:?}");
        let partition = &v2.topics[0].partitions[0];
        assert_eq!((partition.error_code, partition.leader_id.0), (0, broker.config.node_id));
        assert!(partition.leader_epoch >= 1 && partition.high_watermark >= 1, "{partition:?}");
        let own = &partition.current_voters[0];
        assert_eq!(partition.current_voters.len(), 1);
        assert!(own.log_end_offset >= partition.high_watermark, "{own:?}");
        assert!(own.last_caught_up_timestamp > 0 && own.last_fetch_timestamp == -1, "{own:?}");
        assert!(v2.nodes.is_empty(), "a single node has no controller listener");

        let v0 = handle(&broker, request(METADATA_TOPIC, &[0]), 0).await;
        assert_eq!(v0.topics[0].partitions[0].current_voters[0].last_caught_up_timestamp, -1, "v0 has no times");
        broker.shutdown_quorum().await;
    }
}
