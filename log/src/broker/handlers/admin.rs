//! Topic administration: DeleteTopics, CreatePartitions, DeleteRecords, DescribeCluster
//! and OffsetForLeaderEpoch.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::broker::{ApiError, Broker, refuse_internal_topic};
use crate::codes;
use crate::storage::TopicPartition;

pub(super) async fn delete_topics(broker: &Broker, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    // v6 names topics (or ids) in `topics`; older versions in `topic_names`.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = name.or_else(|| broker.topic_name(id));
        let result =
            DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(str_bytes(n)))).with_topic_id(id);
        let outcome = match &name {
            None => Err(ApiError::new(codes::UNKNOWN_TOPIC_ID, format!("no topic has id {id}"))),
            Some(n) => broker.delete_topic(n).await,
        };
        responses.push(match outcome {
            Ok(()) => result,
            Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn create_partitions(broker: &Broker, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome = match &t.assignments {
            Some(a) if !a.is_empty() => Err(ApiError::new(
                codes::INVALID_REPLICA_ASSIGNMENT,
                "replica assignments for new partitions are not supported yet; the controller places them",
            )),
            _ => broker.create_partitions(&name, t.count, req.validate_only).await,
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(super) fn delete_records(broker: &Broker, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let now = broker.now_ms();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let internal = refuse_internal_topic(&name, "truncated by DeleteRecords");
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if let Err(e) = &internal {
                        tracing::info!(topic = %name, reason = %e.message, "DeleteRecords refused");
                        return result.with_error_code(e.code);
                    }
                    let Some(log) = broker.logs.get_log(&TopicPartition::new(name.clone(), p.partition_index)) else {
                        return result.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    let mut log = log.write();
                    // -1 means "up to the high watermark", as in Kafka's admin client.
                    let offset = if p.offset == -1 { log.high_watermark() } else { p.offset };
                    match log.delete_records_before(offset, now) {
                        Ok(low) => result.with_low_watermark(low),
                        Err(e) => result.with_error_code(e.kafka_code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

pub(super) fn describe_cluster(broker: &Broker) -> DescribeClusterResponse {
    let brokers = broker
        .live_brokers()
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id().to_owned()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}

pub(super) fn offset_for_leader_epoch(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result =
                        EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                    let tp = TopicPartition::new(name.clone(), p.partition);
                    let Some(log) = broker.logs.get_log(&tp) else {
                        return result.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    // The caller's view of the current epoch must match ours (KIP-320).
                    let current = match broker.leader_epoch(&tp) {
                        Ok(epoch) => epoch,
                        Err(code) => return result.with_error_code(code),
                    };
                    if p.current_leader_epoch > current {
                        return result.with_error_code(codes::UNKNOWN_LEADER_EPOCH);
                    }
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                        return result.with_error_code(codes::FENCED_LEADER_EPOCH);
                    }
                    let log = log.read();
                    let (epoch, end) = log.leader_epoch_cache().end_offset_for(p.leader_epoch, log.log_end_offset());
                    result.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
