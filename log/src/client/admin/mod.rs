//! The admin client: topics, configs, partitions, offsets, records and the cluster.
//!
//! ```no_run
//! # async fn example() -> freshet_log::client::Result<()> {
//! use freshet_log::client::{AdminClient, ClientConfig, NewTopic};
//!
//! let admin = AdminClient::connect(ClientConfig::new("localhost:9092")).await?;
//! admin.create_topic(NewTopic::new("events", 3).config("retention.ms", "86400000")).await?;
//! for topic in admin.list_topics(false).await? {
//!     println!("{} ({} partitions)", topic.name, topic.partitions.len());
//! }
//! # Ok(()) }
//! ```
//!
//! Each call returns the first error among its items, naming the item; the `*_each`
//! forms return one result per item.

mod quorum;
mod reassignment;

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetDeleteRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::{BrokerInfo, Cluster, TopicInfo};
use super::config::ClientConfig;
use super::error::{ClientError, Result};
use super::group::{CommitIdentity, CommittedOffset, commit_offsets, fetch_offsets, find_coordinator, protocol};
use crate::codes;

pub use quorum::{QuorumInfo, QuorumReplicaInfo};
pub use reassignment::{ElectionType, PartitionReassignment};

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// Partitions (-1: the broker's `num.partitions`).
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic configs.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self { name: name.into(), partitions, replication_factor: -1, configs: Vec::new() }
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, factor: i16) -> Self {
        self.replication_factor = factor;
        self
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// What configs belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic.
    Topic(String),
    /// A broker by node id, or `""` for the cluster-wide default.
    Broker(String),
}

impl ConfigResource {
    fn wire(&self) -> (i8, StrBytes) {
        match self {
            ConfigResource::Topic(name) => (2, StrBytes::from_string(name.clone())),
            ConfigResource::Broker(id) => (4, StrBytes::from_string(id.clone())),
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(name) => write!(f, "topic '{name}'"),
            ConfigResource::Broker(id) if id.is_empty() => write!(f, "the cluster default broker config"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
        }
    }
}

/// One config as described by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The key.
    pub name: String,
    /// The value (`None` for sensitive or unset ones).
    pub value: Option<String>,
    /// Where the value comes from: `DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...
    pub source: &'static str,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Whether the value is hidden.
    pub is_sensitive: bool,
}

/// A change to one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Sets the key.
    Set(String, String),
    /// Removes the key, back to its default.
    Delete(String),
}

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is at least this (ms).
    Timestamp(i64),
    /// The offset with the largest timestamp.
    MaxTimestamp,
}

impl OffsetSpec {
    pub(crate) fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(ts) => ts,
        }
    }
}

/// An offset found by [`AdminClient::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset, or -1 when no record is at or after the timestamp.
    pub offset: i64,
    /// The timestamp of that record (-1 for earliest/latest).
    pub timestamp: i64,
    /// The leader epoch of that record, if known.
    pub leader_epoch: i32,
}

/// The cluster, as DescribeCluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: String,
    /// The controller's node id.
    pub controller: i32,
    /// The brokers.
    pub brokers: Vec<BrokerInfo>,
}

pub use crate::topic_partition::TopicPartition;

/// The admin client.
#[derive(Clone)]
pub struct AdminClient {
    cluster: Arc<Cluster>,
    timeout_ms: i32,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient").field("bootstrap", &self.cluster.config.bootstrap_servers).finish()
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn broker_error(code: i16, context: impl Into<String>, message: Option<&StrBytes>) -> Option<ClientError> {
    ClientError::from_code(code, context, message.map(|m| m.to_string()))
}

/// The first error of per-item results.
fn first_error<T>(results: Vec<(String, Result<T>)>) -> Result<Vec<T>> {
    results.into_iter().map(|(_, r)| r).collect()
}

/// A consumer group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `consumer` for consumer groups; empty for groups that only hold offsets.
    pub protocol_type: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// The member's address, as the coordinator saw it.
    pub client_host: String,
    /// Its partitions (consumer groups in the Stable state).
    pub assignment: Vec<TopicPartition>,
}

/// A described consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// The state; `Dead` for a group that does not exist.
    pub state: String,
    /// Protocol type.
    pub protocol_type: String,
    /// The assignor the members agreed on (Stable groups).
    pub protocol: String,
    /// Members.
    pub members: Vec<GroupMember>,
}

impl AdminClient {
    /// Reaches the cluster; an unreachable bootstrap fails within the connect timeout.
    pub async fn connect(mut config: ClientConfig) -> Result<Self> {
        // Describing a topic must never create it.
        config.allow_auto_create_topics = false;
        let timeout_ms = config.request_timeout.as_millis().min(i32::MAX as u128) as i32;
        let cluster = Arc::new(Cluster::new(config)?);
        cluster.refresh(Some(&[])).await?;
        Ok(Self { cluster, timeout_ms })
    }

    /// Creates one topic.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        first_error(self.create_topics_each(&[topic], false).await?).map(drop)
    }

    /// Creates topics (or, with `validate_only`, only checks that they could be created);
    /// one result per topic.
    pub async fn create_topics_each(
        &self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<(String, Result<()>)>> {
        let request = CreateTopicsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
            .with_timeout_ms(self.timeout_ms)
            .with_validate_only(validate_only);
        let response = self.controller().await?.send(&request).await?;
        Ok(response
            .topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let result =
                    match broker_error(t.error_code, format!("creating topic '{name}'"), t.error_message.as_ref()) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                (name, result)
            })
            .collect())
    }

    /// Deletes topics; fails on the first that could not be deleted.
    pub async fn delete_topics(&self, topics: &[&str]) -> Result<()> {
        first_error(self.delete_topics_each(topics).await?).map(drop)
    }

    /// Deletes topics; one result per topic.
    pub async fn delete_topics_each(&self, topics: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let connection = self.controller().await?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms);
        if connection.version(ApiKey::DeleteTopics)? >= 6 {
            request.topics =
                topics.iter().map(|t| DeleteTopicState::default().with_name(Some(topic_name(t)))).collect();
        } else {
            request.topic_names = topics.iter().map(|t| topic_name(t)).collect();
        }
        let response = connection.send(&request).await?;
        Ok(response
            .responses
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                let context = format!("deleting topic '{name}'");
                let result = broker_error(t.error_code, context, t.error_message.as_ref()).map_or(Ok(()), Err);
                (name, result)
            })
            .collect())
    }

    /// Every topic, sorted by name (internal ones only with `include_internal`).
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicInfo>> {
        self.cluster.refresh(None).await?;
        let mut topics: Vec<TopicInfo> = self
            .cluster
            .cached_topic_names()
            .iter()
            .filter_map(|name| self.cluster.cached_topic(name))
            .filter(|t| include_internal || !t.is_internal)
            .map(|t| (*t).clone())
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// Describes topics; an unknown one is an UNKNOWN_TOPIC_OR_PARTITION error naming it.
    pub async fn describe_topics(&self, topics: &[&str]) -> Result<Vec<TopicInfo>> {
        let names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let errors = self.cluster.refresh(Some(&names)).await?;
        if let Some((name, code)) = errors.into_iter().next() {
            return Err(ClientError::Broker { code, context: format!("describing topic '{name}'"), message: None });
        }
        names
            .iter()
            .map(|name| {
                self.cluster.cached_topic(name).map(|t| (*t).clone()).ok_or_else(|| ClientError::Broker {
                    code: codes::UNKNOWN_TOPIC_OR_PARTITION,
                    context: format!("describing topic '{name}'"),
                    message: None,
                })
            })
            .collect()
    }

    /// Describes the configs of `resource`; `keys` narrows them (empty: all).
    pub async fn describe_configs(&self, resource: &ConfigResource, keys: &[&str]) -> Result<Vec<ConfigEntry>> {
        let (resource_type, resource_name) = resource.wire();
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configuration_keys(
                    (!keys.is_empty()).then(|| keys.iter().map(|k| StrBytes::from_string(k.to_string())).collect()),
                ),
        ]);
        let response = self.for_resource(resource).await?.send(&request).await?;
        let result = response.results.into_iter().next().ok_or_else(|| ClientError::Protocol {
            addr: String::new(),
            reason: "DescribeConfigs answered with no result".into(),
        })?;
        if let Some(e) =
            broker_error(result.error_code, format!("describing configs of {resource}"), result.error_message.as_ref())
        {
            return Err(e);
        }
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                source: config_source_name(c.config_source),
                read_only: c.read_only,
                is_sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes configs of `resource` with IncrementalAlterConfigs.
    pub async fn alter_configs(&self, resource: &ConfigResource, ops: &[AlterConfigOp]) -> Result<()> {
        let (resource_type, resource_name) = resource.wire();
        let configs = ops
            .iter()
            .map(|op| match op {
                AlterConfigOp::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                AlterConfigOp::Delete(k) => {
                    AlterableConfig::default().with_name(StrBytes::from_string(k.clone())).with_config_operation(1)
                }
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configs(configs),
        ]);
        let response = self.for_resource(resource).await?.send(&request).await?;
        for r in &response.responses {
            if let Some(e) =
                broker_error(r.error_code, format!("altering configs of {resource}"), r.error_message.as_ref())
            {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name(topic)).with_count(total)])
            .with_timeout_ms(self.timeout_ms);
        let response = self.controller().await?.send(&request).await?;
        for r in &response.results {
            let context = format!("growing topic '{topic}' to {total} partitions");
            if let Some(e) = broker_error(r.error_code, context, r.error_message.as_ref()) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Looks up offsets, one per partition, asking each partition's leader.
    pub async fn list_offsets(
        &self,
        specs: &[(TopicPartition, OffsetSpec)],
        read_committed: bool,
    ) -> Result<Vec<(TopicPartition, Result<ListedOffset>)>> {
        list_offsets(&self.cluster, specs, read_committed).await
    }

    /// Deletes the records of each partition below the given offset (-1: the high
    /// watermark); returns the new log start offsets.
    pub async fn delete_records(&self, before: &[(TopicPartition, i64)]) -> Result<Vec<(TopicPartition, Result<i64>)>> {
        let (by_leader, mut results) = group_by_leader(&self.cluster, before).await;
        for (leader, items) in by_leader {
            let mut topics: Vec<DeleteRecordsTopic> = Vec::new();
            for (TopicPartition { topic, partition }, offset) in &items {
                let p = DeleteRecordsPartition::default().with_partition_index(*partition).with_offset(*offset);
                match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                    Some(t) => t.partitions.push(p),
                    None => {
                        topics.push(DeleteRecordsTopic::default().with_name(topic_name(topic)).with_partitions(vec![p]))
                    }
                }
            }
            let request = DeleteRecordsRequest::default().with_topics(topics).with_timeout_ms(self.timeout_ms);
            let response = self.cluster.broker(leader).await?.send(&request).await?;
            for t in &response.topics {
                for p in &t.partitions {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let context = format!("deleting records of {}-{}", tp.topic, tp.partition);
                    let result = broker_error(p.error_code, context, None).map_or(Ok(p.low_watermark), Err);
                    results.push((tp, result));
                }
            }
        }
        Ok(results)
    }

    /// The cluster id, controller and brokers.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let connection = self.cluster.any().await?;
        if connection.version(ApiKey::DescribeCluster).is_err() {
            // Older brokers: the same facts from Metadata.
            self.cluster.refresh(Some(&[])).await?;
            return Ok(ClusterDescription {
                cluster_id: self.cluster.cluster_id().unwrap_or_default(),
                controller: self.cluster.controller().unwrap_or(-1),
                brokers: self.cluster.brokers(),
            });
        }
        let response = connection.send(&DescribeClusterRequest::default()).await?;
        if let Some(e) = broker_error(response.error_code, "describing the cluster", response.error_message.as_ref()) {
            return Err(e);
        }
        let mut brokers: Vec<BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                node_id: b.broker_id.0,
                addr: format!("{}:{}", b.host.as_str(), b.port),
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.to_string(),
            controller: response.controller_id.0,
            brokers,
        })
    }

    /// Every consumer group on every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        self.cluster.refresh(Some(&[])).await?;
        let mut groups = Vec::new();
        for broker in self.cluster.brokers() {
            let response = self.cluster.broker(broker.node_id).await?.send(&ListGroupsRequest::default()).await?;
            if let Some(e) =
                broker_error(response.error_code, format!("listing the groups of broker {}", broker.node_id), None)
            {
                return Err(e);
            }
            groups.extend(response.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(groups)
    }

    /// Describes groups: state, assignor, and every member with its partitions.
    pub async fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>> {
        let mut described = Vec::with_capacity(groups.len());
        for group in groups {
            let connection = find_coordinator(&self.cluster, group).await?;
            let request =
                DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
            let response = connection.send(&request).await?;
            for g in &response.groups {
                if let Some(e) =
                    broker_error(g.error_code, format!("describing group '{group}'"), g.error_message.as_ref())
                {
                    return Err(e);
                }
                let consumer = g.protocol_type.as_str() == "consumer";
                let members = g
                    .members
                    .iter()
                    .map(|m| GroupMember {
                        member_id: m.member_id.to_string(),
                        group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                        client_id: m.client_id.to_string(),
                        client_host: m.client_host.to_string(),
                        assignment: if consumer {
                            protocol::decode_assignment(&m.member_assignment).unwrap_or_default().partitions
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                described.push(GroupDescription {
                    group_id: g.group_id.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    protocol: g.protocol_data.to_string(),
                    members,
                });
            }
        }
        Ok(described)
    }

    /// The committed offsets of a group: every partition it has committed, or only `partitions`.
    pub async fn list_group_offsets(
        &self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>> {
        let connection = find_coordinator(&self.cluster, group).await?;
        let mut offsets = fetch_offsets(&connection, group, partitions).await?;
        offsets.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(offsets)
    }

    /// Sets a group's committed offsets, as `kafka-consumer-groups --reset-offsets` does.
    /// The coordinator refuses (UNKNOWN_MEMBER_ID) while the group has members.
    pub async fn alter_group_offsets(&self, group: &str, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let connection = find_coordinator(&self.cluster, group).await?;
        let offsets: Vec<_> = offsets.iter().map(|(tp, o)| (tp.clone(), *o, None)).collect();
        let results = commit_offsets(&connection, group, &CommitIdentity::standalone(), &offsets).await?;
        first_error(
            results.into_iter().map(|(TopicPartition { topic: t, partition: p }, r)| (format!("{t}-{p}"), r)).collect(),
        )
        .map(drop)
    }

    /// Deletes empty groups with their offsets; one result per group (a group with
    /// members gets NON_EMPTY_GROUP).
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let mut results = Vec::with_capacity(groups.len());
        for group in groups {
            let connection = find_coordinator(&self.cluster, group).await?;
            let request = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_string()))]);
            let response = connection.send(&request).await?;
            for r in &response.results {
                let context = format!("deleting group '{}'", r.group_id.as_str());
                results.push((r.group_id.to_string(), broker_error(r.error_code, context, None).map_or(Ok(()), Err)));
            }
        }
        Ok(results)
    }

    /// Deletes a group's committed offsets for partitions of topics it no longer consumes.
    pub async fn delete_group_offsets(&self, group: &str, partitions: &[TopicPartition]) -> Result<()> {
        let connection = find_coordinator(&self.cluster, group).await?;
        let mut topics: Vec<OffsetDeleteRequestTopic> = Vec::new();
        for TopicPartition { topic, partition: p } in partitions {
            let partition = OffsetDeleteRequestPartition::default().with_partition_index(*p);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(
                    OffsetDeleteRequestTopic::default().with_name(topic_name(topic)).with_partitions(vec![partition]),
                ),
            }
        }
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(topics);
        let response = connection.send(&request).await?;
        if let Some(e) = broker_error(response.error_code, format!("deleting offsets of group '{group}'"), None) {
            return Err(e);
        }
        for t in &response.topics {
            for p in &t.partitions {
                let context =
                    format!("deleting the offset of {}-{} for group '{group}'", t.name.0.as_str(), p.partition_index);
                if let Some(e) = broker_error(p.error_code, context, None) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn controller(&self) -> Result<Arc<super::Connection>> {
        match self.cluster.controller() {
            Some(id) => match self.cluster.broker(id).await {
                Ok(connection) => Ok(connection),
                Err(_) => self.cluster.any().await,
            },
            None => self.cluster.any().await,
        }
    }

    async fn for_resource(&self, resource: &ConfigResource) -> Result<Arc<super::Connection>> {
        match resource {
            ConfigResource::Broker(id) if !id.is_empty() => match id.parse::<i32>() {
                Ok(node) => self.cluster.broker(node).await,
                Err(_) => Err(ClientError::config("broker resource", id.as_str(), "a broker id is a number")),
            },
            _ => self.cluster.any().await,
        }
    }
}

/// Kafka's name for a DescribeConfigs source.
fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// The leader of a partition, refreshing metadata once if it is not known.
pub(crate) async fn leader_of(cluster: &Cluster, TopicPartition { topic, partition }: &TopicPartition) -> Result<i32> {
    let lookup = |info: &TopicInfo| info.partitions.get(*partition as usize).map(|p| p.leader).filter(|&l| l >= 0);
    if let Some(leader) = cluster.cached_topic(topic).as_deref().and_then(lookup) {
        return Ok(leader);
    }
    cluster.refresh(Some(std::slice::from_ref(topic))).await?;
    let info = cluster.cached_topic(topic).ok_or_else(|| ClientError::Broker {
        code: codes::UNKNOWN_TOPIC_OR_PARTITION,
        context: format!("topic '{topic}'"),
        message: None,
    })?;
    if *partition < 0 || *partition as usize >= info.partitions.len() {
        return Err(ClientError::Broker {
            code: codes::UNKNOWN_TOPIC_OR_PARTITION,
            context: format!("{topic}-{partition}"),
            message: Some(format!("the topic has {} partitions", info.partitions.len())),
        });
    }
    lookup(&info).ok_or_else(|| ClientError::Broker {
        code: codes::LEADER_NOT_AVAILABLE,
        context: format!("{topic}-{partition}"),
        message: None,
    })
}

/// Per-partition items grouped by their partition's leader, and an error result for each
/// item whose leader could not be found.
type ByLeader<'a, T, R> = (HashMap<i32, Vec<&'a (TopicPartition, T)>>, Vec<(TopicPartition, Result<R>)>);

async fn group_by_leader<'a, T, R>(cluster: &Cluster, items: &'a [(TopicPartition, T)]) -> ByLeader<'a, T, R> {
    let mut by_leader: HashMap<i32, Vec<&(TopicPartition, T)>> = HashMap::new();
    let mut failed = Vec::new();
    for item in items {
        match leader_of(cluster, &item.0).await {
            Ok(leader) => by_leader.entry(leader).or_default().push(item),
            Err(e) => failed.push((item.0.clone(), Err(e))),
        }
    }
    (by_leader, failed)
}

/// ListOffsets for many partitions, one request per leader.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    specs: &[(TopicPartition, OffsetSpec)],
    read_committed: bool,
) -> Result<Vec<(TopicPartition, Result<ListedOffset>)>> {
    let (by_leader, mut results) = group_by_leader(cluster, specs).await;
    for (leader, items) in by_leader {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for (TopicPartition { topic, partition }, spec) in &items {
            let p = ListOffsetsPartition::default().with_partition_index(*partition).with_timestamp(spec.wire());
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(vec![p])),
            }
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(i8::from(read_committed))
            .with_topics(topics);
        let response = cluster.broker(leader).await?.send(&request).await?;
        for t in &response.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                let context = format!("listing offsets of {}-{}", tp.topic, tp.partition);
                let listed = ListedOffset { offset: p.offset, timestamp: p.timestamp, leader_epoch: p.leader_epoch };
                results.push((tp, broker_error(p.error_code, context, None).map_or(Ok(listed), Err)));
            }
        }
    }
    Ok(results)
}
