//! Metadata: brokers, the controller and topic layouts, from the committed cluster image;
//! creates unknown topics when `auto.create.topics.enable` allows and the client asks.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::str_bytes;
use crate::broker::{Broker, NewTopic};
use crate::codes;
use crate::controller::{ClusterImage, TopicImage};
use crate::storage::validate_topic_name;

pub(super) async fn handle(broker: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let requested: Option<Vec<String>> =
        req.topics.map(|topics| topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect());
    // v0 has no flag: auto-creation is implied, as in Kafka.
    let may_create = broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let names: Vec<String> = requested.unwrap_or_else(|| broker.topic_names());
    let mut refused = Vec::new();
    for name in &names {
        if let Err(e) = validate_topic_name(name) {
            tracing::info!(topic = %name, reason = %e, "metadata for an invalid topic name");
            refused.push((name.clone(), codes::INVALID_TOPIC_EXCEPTION));
        } else if may_create && broker.topic(name).is_none() {
            let created = broker.create_topic(NewTopic::new(name.clone(), broker.config.num_partitions), false).await;
            match created {
                Err(e) if e.code != codes::TOPIC_ALREADY_EXISTS => refused.push((name.clone(), e.code)),
                _ => {}
            }
        }
    }
    let live = brokers(broker);
    broker.with_image(|image| {
        let topics = names
            .iter()
            .map(|name| {
                let topic = MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name.clone()))));
                if let Some((_, code)) = refused.iter().find(|(n, _)| n == name) {
                    return topic.with_error_code(*code);
                }
                match image.topic(name) {
                    Some(t) => describe_topic(image, topic, t),
                    None => topic.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION),
                }
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(live)
            .with_cluster_id(Some(str_bytes(broker.cluster_id().to_owned())))
            .with_controller_id(BrokerId(broker.config.node_id))
            .with_topics(topics)
            .with_cluster_authorized_operations(i32::MIN)
    })
}

fn describe_topic(image: &ClusterImage, topic: MetadataResponseTopic, t: &TopicImage) -> MetadataResponseTopic {
    let ids = |ids: &[i32]| ids.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    // A replica is offline when its broker is fenced or gone.
    let offline = |replicas: &[i32]| {
        let down = replicas.iter().filter(|id| image.brokers.get(id).is_none_or(|b| b.fenced));
        down.map(|id| BrokerId(*id)).collect::<Vec<_>>()
    };
    let partitions = t
        .partitions
        .iter()
        .map(|(index, p)| {
            let error = if p.has_leader() { codes::NONE } else { codes::LEADER_NOT_AVAILABLE };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(*index)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(offline(&p.replicas))
        })
        .collect();
    topic
        .with_topic_id(t.id)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    let brokers = broker.live_brokers().into_iter();
    brokers
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(str_bytes))
        })
        .collect()
}
