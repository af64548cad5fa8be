//! CreateTopics, with config overrides and `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::codes;

/// Kafka's ConfigSource values used in responses.
const CONFIG_SOURCE_TOPIC: i8 = 1;
const CONFIG_SOURCE_DEFAULT: i8 = 5;

pub(super) fn handle(broker: &Broker, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let partitions = if topic.num_partitions == -1 { broker.config.num_partitions } else { topic.num_partitions };
        let outcome = if !topic.assignments.is_empty() {
            Err(crate::broker::ApiError::new(
                codes::INVALID_REQUEST,
                "manual replica assignments are not supported on a single node",
            ))
        } else if topic.replication_factor != -1 && topic.replication_factor != 1 {
            Err(crate::broker::ApiError::new(
                codes::INVALID_REPLICATION_FACTOR,
                format!("replication factor {} is larger than the 1 available broker", topic.replication_factor),
            ))
        } else {
            let overrides: BTreeMap<String, String> = topic
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            broker.create_topic(&name, partitions, overrides, req.validate_only)
        };
        results.push(match outcome {
            Ok(meta) => {
                let mut result =
                    result.with_topic_id(meta.uuid()).with_num_partitions(meta.partitions).with_replication_factor(1);
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
