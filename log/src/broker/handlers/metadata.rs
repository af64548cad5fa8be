//! Metadata: brokers, the controller and topic layouts; creates unknown topics when
//! `auto.create.topics.enable` allows and the client asks.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::str_bytes;
use crate::broker::{Broker, LEADER_EPOCH};
use crate::codes;
use crate::storage::validate_topic_name;

pub(super) fn handle(broker: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(broker.config.node_id);
    let (host, port) = broker.advertised.lock().clone();
    let requested: Option<Vec<String>> =
        req.topics.map(|topics| topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect());
    // v0 has no flag: auto-creation is implied, as in Kafka.
    let may_create = broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let names: Vec<String> = match requested {
        Some(names) => names,
        None => broker.metadata.lock().topics().keys().cloned().collect(),
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        let topic = MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name.clone()))));
        if let Err(e) = validate_topic_name(&name) {
            tracing::info!(topic = %name, reason = %e, "metadata for an invalid topic name");
            topics.push(topic.with_error_code(codes::INVALID_TOPIC_EXCEPTION));
            continue;
        }
        let mut meta = broker.topic(&name);
        if meta.is_none() && may_create {
            match broker.create_topic(&name, broker.config.num_partitions, BTreeMap::new(), false) {
                Ok(created) => meta = Some(created),
                Err(e) if e.code == codes::TOPIC_ALREADY_EXISTS => meta = broker.topic(&name),
                Err(e) => {
                    topics.push(topic.with_error_code(e.code));
                    continue;
                }
            }
        }
        let Some(meta) = meta else {
            topics.push(topic.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        let partitions = (0..meta.partitions)
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(node)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
            })
            .collect();
        topics.push(
            topic
                .with_topic_id(meta.uuid())
                .with_is_internal(name.starts_with("__"))
                .with_partitions(partitions)
                .with_topic_authorized_operations(i32::MIN),
        );
    }
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default().with_node_id(node).with_host(str_bytes(host)).with_port(i32::from(port)),
        ])
        .with_cluster_id(Some(str_bytes(broker.metadata.lock().cluster_id().to_string())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(i32::MIN)
}
