//! One handler per Kafka API. Each takes the decoded request and returns the response
//! (or `None` for `acks=0` produce); none of them touches a socket.

mod admin;
mod api_versions;
mod configs;
mod create_topics;
mod describe_quorum;
mod fetch;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod produce;
mod reassignment;
mod replica_fetch;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::Broker;

/// The APIs and version ranges this broker implements, and so advertises in ApiVersions.
/// Produce and Fetch stop below the versions that address topics by id (v13); Metadata
/// stops below v13 (top-level error code, not needed).
pub(crate) const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The version range implemented for `key`, if any.
pub(crate) fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS.iter().find(|(k, _, _)| *k == key).map(|(_, min, max)| (*min, *max))
}

/// A handler's answer.
pub(crate) enum Reply {
    /// An ordinary response.
    Message(ResponseKind),
    /// A fetch response whose records are still in the segment files.
    Fetch(FetchReply),
}

/// Runs blocking file work (appends) so that it cannot stall the other connections of
/// this tokio worker: on a multi-threaded runtime the worker hands its other tasks on
/// first, as Kafka keeps this work on request handler threads, away from the network ones.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Answers one request (`None`: no response, as for `acks=0` produce).
pub(crate) async fn handle(
    broker: &Broker,
    peer: std::net::SocketAddr,
    header: &RequestHeader,
    request: RequestKind,
) -> Option<Reply> {
    let version = header.request_api_version;
    Some(Reply::Message(match request {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(api_versions::handle(kafka_protocol::messages::ApiVersionsResponse::default()))
        }
        RequestKind::Metadata(req) => ResponseKind::Metadata(metadata::handle(broker, req, version).await),
        RequestKind::CreateTopics(req) => ResponseKind::CreateTopics(create_topics::handle(broker, req, version).await),
        RequestKind::Produce(req) => {
            return produce::handle(broker, req).await.map(|r| Reply::Message(ResponseKind::Produce(r)));
        }
        RequestKind::Fetch(req) if req.replica_id.0 >= 0 => {
            return Some(Reply::Fetch(replica_fetch::handle(broker, req).await));
        }
        RequestKind::Fetch(req) => return Some(Reply::Fetch(fetch::handle(broker, req).await)),
        RequestKind::InitProducerId(req) => ResponseKind::InitProducerId(init_producer_id::handle(broker, req).await),
        RequestKind::DeleteTopics(req) => ResponseKind::DeleteTopics(admin::delete_topics(broker, req).await),
        RequestKind::CreatePartitions(req) => {
            ResponseKind::CreatePartitions(admin::create_partitions(broker, req).await)
        }
        RequestKind::DeleteRecords(req) => ResponseKind::DeleteRecords(admin::delete_records(broker, req)),
        RequestKind::DescribeQuorum(req) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(broker, req, version).await)
        }
        RequestKind::AlterPartitionReassignments(req) => ResponseKind::AlterPartitionReassignments(
            reassignment::alter_partition_reassignments(broker, req, version).await,
        ),
        RequestKind::ListPartitionReassignments(req) => {
            ResponseKind::ListPartitionReassignments(reassignment::list_partition_reassignments(broker, req))
        }
        RequestKind::ElectLeaders(req) => {
            ResponseKind::ElectLeaders(reassignment::elect_leaders(broker, req, version).await)
        }
        RequestKind::DescribeCluster(_) => ResponseKind::DescribeCluster(admin::describe_cluster(broker)),
        RequestKind::OffsetForLeaderEpoch(req) => {
            ResponseKind::OffsetForLeaderEpoch(admin::offset_for_leader_epoch(broker, req))
        }
        RequestKind::DescribeConfigs(req) => ResponseKind::DescribeConfigs(configs::describe(broker, req, version)),
        RequestKind::AlterConfigs(req) => ResponseKind::AlterConfigs(configs::alter(broker, req).await),
        RequestKind::IncrementalAlterConfigs(req) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, req).await)
        }
        RequestKind::ListOffsets(req) => ResponseKind::ListOffsets(list_offsets::handle(broker, req, version)),
        RequestKind::FindCoordinator(req) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, req, version).await)
        }
        RequestKind::JoinGroup(req) => {
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            ResponseKind::JoinGroup(groups::join_group(broker, peer, client_id, req, version).await)
        }
        RequestKind::SyncGroup(req) => ResponseKind::SyncGroup(groups::sync_group(broker, req).await),
        RequestKind::Heartbeat(req) => ResponseKind::Heartbeat(groups::heartbeat(broker, req)),
        RequestKind::LeaveGroup(req) => ResponseKind::LeaveGroup(groups::leave_group(broker, req, version)),
        RequestKind::OffsetCommit(req) => ResponseKind::OffsetCommit(groups::offset_commit(broker, req).await),
        RequestKind::OffsetFetch(req) => ResponseKind::OffsetFetch(groups::offset_fetch(broker, req, version)),
        RequestKind::DescribeGroups(req) => ResponseKind::DescribeGroups(groups::describe_groups(broker, req)),
        RequestKind::ListGroups(req) => ResponseKind::ListGroups(groups::list_groups(broker, req)),
        RequestKind::DeleteGroups(req) => ResponseKind::DeleteGroups(groups::delete_groups(broker, req)),
        RequestKind::OffsetDelete(req) => ResponseKind::OffsetDelete(groups::offset_delete(broker, req)),
        other => {
            // The server only dispatches keys from SUPPORTED_APIS.
            tracing::error!(request = ?std::mem::discriminant(&other), "no handler for a supported API");
            return None;
        }
    }))
}

/// A response string.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) use api_versions::unsupported_version_response;
pub(crate) use fetch::FetchReply;
