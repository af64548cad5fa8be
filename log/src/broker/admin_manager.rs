//! Administrative changes: CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs and
//! producer ids. The broker checks what it can answer alone (names, counts, config
//! values), hands the change to the active controller, and answers once the records have
//! committed and reached its own logs.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::metadata_cache::broker_resource;
use super::{ApiError, Broker, MAX_PARTITIONS_PER_TOPIC, TopicMetadata, config, refuse_internal_topic};
use crate::codes;
use crate::controller::records::ConfigResource;
use crate::controller::{ControllerRequest, CreateTopic};
use crate::storage::validate_topic_name;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// `None`: `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// Config overrides, by Kafka name.
    pub configs: BTreeMap<String, String>,
    /// Replicas per partition chosen by the client; empty: placed by the controller.
    pub assignments: Vec<Vec<i32>>,
}

impl NewTopic {
    /// `partitions` partitions with the default replication factor and configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: None,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    /// With these config overrides.
    pub fn with_configs(mut self, configs: BTreeMap<String, String>) -> Self {
        self.configs = configs;
        self
    }
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist"))
}

impl Broker {
    /// Applies what has committed to the local logs, off the async workers.
    async fn publish_now(&self) {
        // The change has committed whatever happens here: a failure to apply it locally is
        // the publisher's to retry, not the client's.
        if let Err(e) = super::handlers::blocking(|| self.publish_metadata()) {
            tracing::error!(error = %e, "applying committed metadata to storage failed; the publisher retries");
        }
    }

    /// Validates and creates a topic. With `validate_only`, checks everything and changes
    /// nothing.
    pub async fn create_topic(&self, topic: NewTopic, validate_only: bool) -> Result<TopicMetadata, ApiError> {
        let name = topic.name.clone();
        validate_topic_name(&name).map_err(|e| ApiError::new(codes::INVALID_TOPIC_EXCEPTION, e))?;
        let partitions = if topic.assignments.is_empty() { topic.partitions } else { topic.assignments.len() as i32 };
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(ApiError::new(
                codes::INVALID_PARTITIONS,
                format!("{partitions} partitions requested; between 1 and {MAX_PARTITIONS_PER_TOPIC} are allowed"),
            ));
        }
        self.topic_config_for(&topic.configs)?;
        if validate_only {
            return self.validate_new_topic(&topic, partitions);
        }
        let request = CreateTopic {
            name: name.clone(),
            topic_id: Uuid::new_v4(),
            partitions: Some(partitions),
            replication_factor: topic.replication_factor,
            configs: topic.configs.into_iter().collect(),
            assignments: topic.assignments,
        };
        self.run_controller(ControllerRequest::CreateTopic(request)).await?;
        self.publish_now().await;
        tracing::info!(topic = %name, partitions, "created topic");
        self.topic(&name).ok_or_else(|| unknown_topic(&name))
    }

    /// What a CreateTopics with `validate_only` can check without the controller writing.
    fn validate_new_topic(&self, topic: &NewTopic, partitions: i32) -> Result<TopicMetadata, ApiError> {
        let default_rf = self.config.cluster.default_replication_factor;
        let rf = topic.assignments.first().map_or(topic.replication_factor.unwrap_or(default_rf), |a| a.len() as i16);
        self.with_image(|image| {
            if image.topic(&topic.name).is_some() {
                let message = format!("topic '{}' already exists", topic.name);
                return Err(ApiError::new(codes::TOPIC_ALREADY_EXISTS, message));
            }
            let available = image.brokers.values().filter(|b| b.is_eligible()).count();
            if rf < 1 || rf as usize > available {
                let message = format!("replication factor {rf} is larger than the {available} available brokers");
                return Err(ApiError::new(codes::INVALID_REPLICATION_FACTOR, message));
            }
            Ok(TopicMetadata { id: Uuid::nil(), partitions, replication_factor: rf, configs: topic.configs.clone() })
        })
    }

    /// Deletes a topic: one record in the metadata log, after which every broker removes
    /// its partitions (a crash in between is finished at the next start).
    pub async fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        refuse_internal_topic(name, "deleted")?;
        self.run_controller(ControllerRequest::DeleteTopic { name: name.to_owned() }).await?;
        self.publish_now().await;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), ApiError> {
        // The group -> partition hash depends on the count: every group would move.
        refuse_internal_topic(name, "given more partitions")?;
        let current = self.topic(name).ok_or_else(|| unknown_topic(name))?.partitions;
        if count <= current || count > MAX_PARTITIONS_PER_TOPIC {
            return Err(ApiError::new(
                codes::INVALID_PARTITIONS,
                format!(
                    "topic '{name}' has {current} partitions; the new count {count} must be larger (and at most {MAX_PARTITIONS_PER_TOPIC})"
                ),
            ));
        }
        if validate_only {
            return Ok(());
        }
        self.run_controller(ControllerRequest::CreatePartitions { name: name.to_owned(), count }).await?;
        self.publish_now().await;
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (validated first).
    pub async fn set_topic_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        // Its settings (compaction above all) are what keep the groups' offsets.
        refuse_internal_topic(name, "reconfigured")?;
        self.topic_config_for(&overrides)?;
        if self.topic(name).is_none() {
            return Err(unknown_topic(name));
        }
        if validate_only {
            return Ok(());
        }
        let resource = ConfigResource::Topic(name.to_owned());
        self.run_controller(ControllerRequest::AlterConfigs { resource, configs: overrides }).await?;
        self.publish_now().await;
        tracing::info!(topic = name, "changed topic config");
        Ok(())
    }

    /// Replaces the run-time broker configs of `resource` (`""`: cluster-wide, or this
    /// node's id); the new topic-config defaults reach every topic that does not override
    /// them. Only the topic-config defaults can change at run time; other keys are
    /// refused, as Kafka refuses its static configs.
    pub async fn set_dynamic_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let own = self.config.node_id.to_string();
        if !resource.is_empty() && resource != own {
            return Err(ApiError::new(codes::INVALID_REQUEST, format!("broker {resource} is not this broker ({own})")));
        }
        let fixed: Vec<&str> =
            configs.keys().map(String::as_str).filter(|k| !config::is_dynamic_broker_key(k)).collect();
        if !fixed.is_empty() {
            return Err(ApiError::new(
                codes::INVALID_REQUEST,
                format!("cannot update these configs dynamically: {}; set them in the config file", fixed.join(", ")),
            ));
        }
        self.check_broker_configs(resource, &configs)?;
        if validate_only {
            return Ok(());
        }
        let target = broker_resource(resource);
        self.run_controller(ControllerRequest::AlterConfigs { resource: target, configs }).await?;
        self.publish_now().await;
        tracing::info!(
            resource = if resource.is_empty() { "cluster default" } else { resource },
            "changed broker configs"
        );
        Ok(())
    }

    /// The defaults `configs` would give, checked against every topic's overrides.
    fn check_broker_configs(&self, resource: &str, configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
        let own = self.config.node_id.to_string();
        let mut cluster_wide = self.dynamic_broker_configs("");
        let mut this_node = self.dynamic_broker_configs(&own);
        *(if resource.is_empty() { &mut cluster_wide } else { &mut this_node }) = configs.clone();
        let defaults = config::effective_log_defaults(&self.config, &[&cluster_wide, &this_node])
            .map_err(|e| ApiError::new(codes::INVALID_CONFIG, e.to_string()))?;
        self.with_image(|image| {
            for (resource, overrides) in &image.configs {
                if let ConfigResource::Topic(name) = resource {
                    defaults.with_overrides(overrides).map_err(|e| {
                        ApiError::new(codes::INVALID_CONFIG, format!("topic '{name}' would get an invalid config: {e}"))
                    })?;
                }
            }
            Ok(())
        })
    }

    /// A producer id never handed out before.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        self.lifecycle.next_producer_id(self).await
    }
}
