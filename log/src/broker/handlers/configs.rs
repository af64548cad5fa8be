//! DescribeConfigs, AlterConfigs (full replacement) and IncrementalAlterConfigs (SET,
//! DELETE, APPEND, SUBTRACT), for topics and for the broker. On the broker resource the
//! name is `""` for the cluster-wide default or the node id, and only the topic-config
//! defaults (`log.retention.ms`, ...) can change at run time, as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::config::{broker_key_for_topic_key, topic_default_key};
use crate::broker::{ApiError, Broker};
use crate::codes;

/// Kafka's ConfigResource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType of each topic config (BOOLEAN=1, STRING=2, INT=3, LONG=5, DOUBLE=6,
/// LIST=7), or of the broker property that sets its default.
fn config_type(key: &str) -> i8 {
    match topic_default_key(key).unwrap_or(key) {
        "preallocate" | "unclean.leader.election.enable" => 1,
        "segment.bytes"
        | "segment.index.bytes"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas" => 3,
        "min.cleanable.dirty.ratio" => 6,
        "cleanup.policy" => 7,
        "message.timestamp.type" | "compression.type" => 2,
        _ => 5,
    }
}

pub(super) fn describe(broker: &Broker, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => topic_entries(broker, &name),
                RESOURCE_BROKER if name.is_empty() || name == broker.config.node_id.to_string() => {
                    Ok(broker_entries(broker))
                }
                RESOURCE_BROKER => {
                    Err(ApiError::new(codes::INVALID_REQUEST, format!("broker {name} is not this broker")))
                }
                other => {
                    Err(ApiError::new(codes::INVALID_REQUEST, format!("config resource type {other} is not supported")))
                }
            };
            match entries {
                Err(e) => result.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
                Ok(entries) => {
                    // Null or empty means every key.
                    let wanted: Option<Vec<String>> = r
                        .configuration_keys
                        .filter(|k| !k.is_empty())
                        .map(|keys| keys.iter().map(StrBytes::to_string).collect());
                    let configs = entries
                        .into_iter()
                        .filter(|(k, ..)| wanted.as_ref().is_none_or(|w| w.contains(k)))
                        .map(|(key, value, source)| {
                            let mut entry = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key.clone()))
                                .with_value(Some(str_bytes(value.clone())))
                                .with_config_source(source);
                            if version >= 3 {
                                entry = entry.with_config_type(config_type(&key));
                            }
                            if req.include_synonyms {
                                entry = entry.with_synonyms(vec![
                                    DescribeConfigsSynonym::default()
                                        .with_name(str_bytes(key))
                                        .with_value(Some(str_bytes(value)))
                                        .with_source(source),
                                ]);
                            }
                            entry
                        })
                        .collect();
                    result.with_configs(configs)
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn topic_entries(broker: &Broker, name: &str) -> Result<Vec<(String, String, i8)>, ApiError> {
    let meta = broker
        .topic(name)
        .ok_or_else(|| ApiError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")))?;
    let effective = broker.topic_config_for(&meta.configs)?.to_props();
    let sources = broker_sources(broker);
    Ok(effective
        .into_iter()
        .map(|(k, v)| match meta.configs.get(&k) {
            // As Kafka does, an override is described exactly as it was stored.
            Some(stored) => (k, stored.clone(), SOURCE_TOPIC),
            None => {
                // A default the broker's config sets at run time says so.
                let source = broker_key_for_topic_key(&k)
                    .and_then(|b| sources.get(b).copied())
                    .filter(|s| *s != SOURCE_STATIC_BROKER)
                    .unwrap_or(SOURCE_DEFAULT);
                (k, v, source)
            }
        })
        .collect())
}

/// Where each broker property changed at run time comes from.
fn broker_sources(broker: &Broker) -> BTreeMap<String, i8> {
    let mut sources: BTreeMap<String, i8> =
        broker.dynamic_broker_configs("").into_keys().map(|k| (k, SOURCE_DYNAMIC_DEFAULT_BROKER)).collect();
    for key in broker.dynamic_broker_configs(&broker.config.node_id.to_string()).into_keys() {
        sources.insert(key, SOURCE_DYNAMIC_BROKER);
    }
    sources
}

fn broker_entries(broker: &Broker) -> Vec<(String, String, i8)> {
    let c = &broker.config;
    let (host, port) = broker.advertised.lock().clone();
    let mut out = vec![
        ("node.id".to_string(), c.node_id.to_string()),
        ("log.dirs".to_string(), c.data_dir().display().to_string()),
        ("listeners".to_string(), format!("PLAINTEXT://{}", c.listener)),
        ("advertised.listeners".to_string(), format!("PLAINTEXT://{host}:{port}")),
        ("num.partitions".to_string(), c.num_partitions.to_string()),
        ("auto.create.topics.enable".to_string(), c.auto_create_topics.to_string()),
        ("socket.request.max.bytes".to_string(), c.max_request_bytes.to_string()),
        ("max.connections".to_string(), c.max_connections.to_string()),
    ];
    let defaults = broker.log_defaults.read().to_props();
    for (topic_key, value) in defaults {
        if let Some(broker_key) = broker_key_for_topic_key(&topic_key) {
            out.push((broker_key.to_string(), value));
        }
    }
    let sources = broker_sources(broker);
    out.into_iter()
        .map(|(k, v)| {
            let source = sources.get(&k).copied().unwrap_or(SOURCE_STATIC_BROKER);
            (k, v, source)
        })
        .collect()
}

fn unsupported_resource(resource_type: i8) -> ApiError {
    ApiError::new(codes::INVALID_REQUEST, format!("config resource type {resource_type} is not supported"))
}

pub(super) async fn alter(broker: &Broker, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.to_string();
        // AlterConfigs replaces every override with the given set.
        let overrides: BTreeMap<String, String> =
            r.configs.iter().filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string()))).collect();
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => broker.set_topic_overrides(&name, overrides, req.validate_only).await,
            RESOURCE_BROKER => broker.set_dynamic_broker_configs(&name, overrides, req.validate_only).await,
            other => Err(unsupported_resource(other)),
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => response.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(super) async fn incremental_alter(
    broker: &Broker,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.to_string();
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => incremental_topic(broker, &name, &r.configs, req.validate_only).await,
            RESOURCE_BROKER => incremental_broker(broker, &name, &r.configs, req.validate_only).await,
            other => Err(unsupported_resource(other)),
        };
        let response =
            IncrementalResult::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name);
        responses.push(match outcome {
            Ok(()) => response,
            Err(e) => response.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn incremental_topic(
    broker: &Broker,
    name: &str,
    changes: &[incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), ApiError> {
    let meta = broker
        .topic(name)
        .ok_or_else(|| ApiError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")))?;
    let effective = broker.topic_config_for(&meta.configs)?.to_props();
    let overrides = apply_operations(meta.configs, &effective, changes)?;
    broker.set_topic_overrides(name, overrides, validate_only).await
}

async fn incremental_broker(
    broker: &Broker,
    name: &str,
    changes: &[incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), ApiError> {
    let effective = broker_entries(broker).into_iter().map(|(k, v, _)| (k, v)).collect();
    let overrides = apply_operations(broker.dynamic_broker_configs(name), &effective, changes)?;
    broker.set_dynamic_broker_configs(name, overrides, validate_only).await
}

/// Applies SET, DELETE, APPEND and SUBTRACT to a resource's overrides. List operations
/// start from the override, else from the effective value.
fn apply_operations(
    mut overrides: BTreeMap<String, String>,
    effective: &BTreeMap<String, String>,
    changes: &[incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, ApiError> {
    for change in changes {
        let key = change.name.to_string();
        let value = change.value.as_ref().map(StrBytes::to_string);
        match change.config_operation {
            OP_SET => {
                let value =
                    value.ok_or_else(|| ApiError::new(codes::INVALID_CONFIG, format!("SET of {key} needs a value")))?;
                overrides.insert(key, value);
            }
            OP_DELETE => {
                overrides.remove(&key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if config_type(&key) != 7 {
                    return Err(ApiError::new(
                        codes::INVALID_CONFIG,
                        format!("{key} is not a list; APPEND and SUBTRACT apply to lists only"),
                    ));
                }
                let current = overrides.get(&key).or_else(|| effective.get(&key)).cloned().unwrap_or_default();
                let mut items: Vec<String> =
                    current.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                for item in value.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if change.config_operation == OP_APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                overrides.insert(key, items.join(","));
            }
            other => return Err(ApiError::new(codes::INVALID_REQUEST, format!("unknown config operation {other}"))),
        }
    }
    Ok(overrides)
}
