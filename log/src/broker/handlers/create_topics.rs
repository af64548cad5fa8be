//! CreateTopics, with config overrides and `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::{ApiError, Broker, NewTopic};
use crate::codes;

/// Kafka's ConfigSource values used in responses.
const CONFIG_SOURCE_TOPIC: i8 = 1;
const CONFIG_SOURCE_DEFAULT: i8 = 5;

pub(super) async fn handle(broker: &Broker, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let partitions = if topic.num_partitions == -1 { broker.config.num_partitions } else { topic.num_partitions };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let mut assignments: Vec<(i32, Vec<i32>)> =
            topic.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
        assignments.sort_by_key(|(index, _)| *index);
        let outcome = if assignments.iter().enumerate().any(|(i, (index, _))| *index != i as i32) {
            Err(ApiError::new(
                codes::INVALID_REPLICA_ASSIGNMENT,
                "assignments must name partitions 0, 1, 2, ... once each",
            ))
        } else if !assignments.is_empty() && (topic.num_partitions != -1 || topic.replication_factor != -1) {
            Err(ApiError::new(
                codes::INVALID_REQUEST,
                "with replica assignments, the partition count and replication factor must be -1",
            ))
        } else {
            let request = NewTopic {
                name: name.clone(),
                partitions,
                replication_factor: (topic.replication_factor != -1).then_some(topic.replication_factor),
                configs,
                assignments: assignments.into_iter().map(|(_, replicas)| replicas).collect(),
            };
            broker.create_topic(request, req.validate_only).await
        };
        results.push(match outcome {
            Ok(meta) => {
                let mut result = result
                    .with_topic_id(meta.id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(meta.replication_factor);
                if version >= 5 {
                    let effective = broker.topic_config_for(&meta.configs).map(|c| c.to_props()).unwrap_or_default();
                    let configs = effective
                        .into_iter()
                        .map(|(k, v)| {
                            let source =
                                if meta.configs.contains_key(&k) { CONFIG_SOURCE_TOPIC } else { CONFIG_SOURCE_DEFAULT };
                            CreatableTopicConfigs::default()
                                .with_name(str_bytes(k))
                                .with_value(Some(str_bytes(v)))
                                .with_config_source(source)
                        })
                        .collect();
                    result = result.with_configs(Some(configs));
                }
                result
            }
            Err(e) => {
                tracing::info!(topic = %name, code = e.code, reason = %e.message, "CreateTopics refused");
                result
                    .with_error_code(e.code)
                    .with_error_message(Some(str_bytes(e.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
