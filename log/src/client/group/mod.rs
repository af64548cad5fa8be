//! Client side of consumer groups: finding a group's coordinator, committing and fetching
//! offsets (shared by the consumer and the admin client), the consumer protocol's
//! subscription and assignment bytes in [`protocol`], and the partition [`assignor`]s. The
//! membership loop the consumer drives from `poll` is in `consumer::coordinator`.

pub(crate) mod assignor;
pub(crate) mod protocol;

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::TopicPartition;
use super::cluster::Cluster;
use super::connection::Connection;
use super::error::{ClientError, Result};
use crate::codes;

/// A committed offset as the coordinator returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The committer's metadata string.
    pub metadata: String,
    /// Leader epoch of the last consumed record, if the committer knew it.
    pub leader_epoch: Option<i32>,
}

/// Group-membership fields a commit carries; `None` for commits outside group management.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitIdentity {
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl CommitIdentity {
    /// A commit by a tool or an `assign` user.
    pub fn standalone() -> Self {
        Self { generation: -1, member_id: String::new(), group_instance_id: None }
    }
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Error codes after which the coordinator must be looked up again.
pub(crate) fn is_coordinator_error(code: i16) -> bool {
    matches!(code, codes::NOT_COORDINATOR | codes::COORDINATOR_NOT_AVAILABLE)
}

/// Finds the coordinator of `group` and opens a connection to it, retrying while the
/// coordinator is not available or still loading, for up to `request.timeout.ms`.
pub(crate) async fn find_coordinator(cluster: &Cluster, group: &str) -> Result<Arc<Connection>> {
    let deadline = tokio::time::Instant::now() + cluster.config.request_timeout;
    loop {
        let result = lookup_coordinator(cluster, group).await;
        match result {
            Ok(connection) => return Ok(connection),
            Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                tracing::debug!(group, error = %e, "coordinator not available yet; retrying");
                tokio::time::sleep(cluster.config.retry_backoff).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn lookup_coordinator(cluster: &Cluster, group: &str) -> Result<Arc<Connection>> {
    let connection = cluster.any().await?;
    let version = connection.version(ApiKey::FindCoordinator)?;
    let mut request = FindCoordinatorRequest::default().with_key_type(0);
    if version >= 4 {
        request.coordinator_keys = vec![str(group)];
    } else {
        request.key = str(group);
    }
    let response = connection.send(&request).await?;
    let (code, message, node, host, port) = match response.coordinators.first() {
        Some(c) if version >= 4 => (c.error_code, c.error_message.clone(), c.node_id.0, c.host.to_string(), c.port),
        _ => (
            response.error_code,
            response.error_message.clone(),
            response.node_id.0,
            response.host.to_string(),
            response.port,
        ),
    };
    if let Some(e) = ClientError::from_code(
        code,
        format!("finding the coordinator of group '{group}'"),
        message.map(|m| m.to_string()),
    ) {
        return Err(e);
    }
    // A connection of its own, as Kafka's clients keep: the coordinator holds a JoinGroup
    // until the rebalance completes, and answers a connection's requests in order, so
    // sharing the fetch connection would stall fetches behind joins and heartbeats behind
    // long-polling fetches.
    tracing::debug!(group, node, "found the group coordinator");
    Ok(Arc::new(Connection::connect(&format!("{host}:{port}"), cluster.config.connection()).await?))
}

/// OffsetCommit: one result per partition, in the order given.
pub(crate) async fn commit_offsets(
    connection: &Connection,
    group: &str,
    identity: &CommitIdentity,
    offsets: &[(TopicPartition, i64, Option<String>)],
) -> Result<Vec<(TopicPartition, Result<()>)>> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (TopicPartition { topic, partition }, offset, metadata) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(Some(str(metadata.as_deref().unwrap_or_default())));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => topics
                .push(OffsetCommitRequestTopic::default().with_name(TopicName(str(topic))).with_partitions(vec![p])),
        }
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_generation_id_or_member_epoch(identity.generation)
        .with_member_id(str(&identity.member_id))
        .with_group_instance_id(identity.group_instance_id.as_deref().map(str))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let response = connection.send(&request).await?;
    let mut results = Vec::with_capacity(offsets.len());
    for t in &response.topics {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            let context = format!("committing the offset of {}-{} for group '{group}'", tp.topic, tp.partition);
            results.push((tp, ClientError::from_code(p.error_code, context, None).map_or(Ok(()), Err)));
        }
    }
    Ok(results)
}

/// OffsetFetch: the committed offset of each partition (`None`: nothing committed), or of
/// every partition the group has committed when `partitions` is `None`.
pub(crate) async fn fetch_offsets(
    connection: &Connection,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>> {
    let by_topic = protocol::group_by_topic;
    let context = format!("fetching the committed offsets of group '{group}'");
    let version = connection.version(ApiKey::OffsetFetch)?;
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let topics = partitions.map(|ps| {
            by_topic(ps)
                .into_iter()
                .map(|(t, list)| {
                    OffsetFetchRequestTopics::default().with_name(TopicName(str(&t))).with_partition_indexes(list)
                })
                .collect()
        });
        request.groups =
            vec![OffsetFetchRequestGroup::default().with_group_id(GroupId(str(group))).with_topics(topics)];
    } else {
        request.group_id = GroupId(str(group));
        request.topics = partitions.map(|ps| {
            by_topic(ps)
                .into_iter()
                .map(|(t, list)| {
                    OffsetFetchRequestTopic::default().with_name(TopicName(str(&t))).with_partition_indexes(list)
                })
                .collect()
        });
    }
    let response = connection.send(&request).await?;
    // v8 nests the answer in a per-group list; older versions answer for the one group.
    // Either way: a group-level error, then (topic, partition, offset, epoch, metadata, code).
    let (group_error, partitions): (i16, Vec<_>) = if version >= 8 {
        let g = response.groups.first().ok_or_else(|| ClientError::Protocol {
            addr: connection.addr().to_string(),
            reason: "OffsetFetch answered no group".into(),
        })?;
        let ps = g.topics.iter().flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (&t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch, &p.metadata, p.error_code)
            })
        });
        (g.error_code, ps.collect())
    } else {
        let ps = response.topics.iter().flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (&t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch, &p.metadata, p.error_code)
            })
        });
        (response.error_code, ps.collect())
    };
    if let Some(e) = ClientError::from_code(group_error, context.clone(), None) {
        return Err(e);
    }
    let mut found = Vec::with_capacity(partitions.len());
    for (topic, partition, offset, epoch, metadata, code) in partitions {
        if let Some(e) = ClientError::from_code(code, format!("{context}: {}-{partition}", topic.0), None) {
            return Err(e);
        }
        let committed = (offset >= 0).then(|| CommittedOffset {
            offset,
            metadata: metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            leader_epoch: (epoch >= 0).then_some(epoch),
        });
        found.push((TopicPartition::new(topic.0.to_string(), partition), committed));
    }
    Ok(found)
}

/// How long a JoinGroup may be held by the coordinator: the rebalance timeout plus a margin,
/// as Kafka's client allows.
pub(crate) fn join_timeout(rebalance_timeout: Duration) -> Duration {
    rebalance_timeout + Duration::from_secs(5)
}
