//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.
//! Each converts the wire message to a [`crate::broker::group`] call and back; the
//! decisions are the coordinator's.

use std::net::SocketAddr;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::broker::group::coordinator::{CommitOffset, partition_for, validate_group_id};
use crate::broker::group::records::OffsetValue;
use crate::broker::group::{CommitRequest, JoinRequest, OFFSETS_TOPIC, SyncRequest, ensure_offsets_topic};
use crate::codes;
use crate::storage::TopicPartition;

const GROUP_KEY: i8 = 0;

fn text(s: &StrBytes) -> String {
    s.to_string()
}

fn opt_text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

pub(super) async fn find_coordinator(
    broker: &Broker,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if version >= 4 { req.coordinator_keys.clone() } else { vec![req.key.clone()] };
    let live = broker.live_brokers();
    let offsets_topic = if req.key_type == GROUP_KEY { ensure_offsets_topic(broker).await } else { Ok(()) };
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let answer = Coordinator::default().with_key(key.clone()).with_node_id(BrokerId(-1)).with_port(-1);
            let refused = |code: i16, message: String| {
                answer.clone().with_error_code(code).with_error_message(Some(str_bytes(message)))
            };
            if req.key_type != GROUP_KEY {
                return refused(
                    codes::COORDINATOR_NOT_AVAILABLE,
                    format!("coordinator type {} is not available (transactions are not supported yet)", req.key_type),
                );
            }
            if let Err(reason) = validate_group_id(&key) {
                return refused(codes::INVALID_GROUP_ID, reason);
            }
            if let Err(e) = &offsets_topic {
                return refused(codes::COORDINATOR_NOT_AVAILABLE, e.message.clone());
            }
            // The coordinator is the leader of the group's partition of __consumer_offsets.
            let tp = TopicPartition::new(OFFSETS_TOPIC, partition_for(&key, broker.groups.offsets_partitions));
            let leader = broker.partition(&tp).map(|p| p.leader);
            match leader.and_then(|id| live.iter().find(|b| b.id == id)) {
                Some(b) => answer
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(b.host.clone()))
                    .with_port(i32::from(b.port)),
                None => refused(codes::COORDINATOR_NOT_AVAILABLE, format!("{tp} has no live leader")),
            }
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

pub(super) async fn join_group(
    broker: &Broker,
    peer: SocketAddr,
    client_id: String,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    if let Err(e) = ensure_offsets_topic(broker).await {
        tracing::info!(reason = %e.message, "JoinGroup before __consumer_offsets could be created");
    }
    let request = JoinRequest {
        group_id: text(&req.group_id),
        member_id: text(&req.member_id),
        group_instance_id: opt_text(&req.group_instance_id),
        client_id,
        client_host: format!("/{}", peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: text(&req.protocol_type),
        protocols: req.protocols.iter().map(|p| (text(&p.name), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
    };
    let r = broker.groups.join(broker, request).await;
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(m.member_id))
                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                .with_metadata(m.metadata)
        })
        .collect();
    // Before v7 the protocol name is not nullable.
    let protocol = match r.protocol {
        Some(p) => Some(str_bytes(p)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(protocol)
        .with_leader(str_bytes(r.leader))
        .with_skip_assignment(r.skip_assignment && version >= 9)
        .with_member_id(str_bytes(r.member_id))
        .with_members(members)
}

pub(super) async fn sync_group(broker: &Broker, req: SyncGroupRequest) -> SyncGroupResponse {
    let request = SyncRequest {
        group_id: text(&req.group_id),
        generation: req.generation_id,
        member_id: text(&req.member_id),
        group_instance_id: opt_text(&req.group_instance_id),
        protocol_type: opt_text(&req.protocol_type),
        protocol: opt_text(&req.protocol_name),
        assignments: req.assignments.iter().map(|a| (text(&a.member_id), a.assignment.clone())).collect(),
    };
    let r = broker.groups.sync(broker, request).await;
    SyncGroupResponse::default()
        .with_error_code(r.error)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(r.protocol.map(str_bytes))
        .with_assignment(r.assignment)
}

pub(super) fn heartbeat(broker: &Broker, req: HeartbeatRequest) -> HeartbeatResponse {
    let (group, member, instance) = (text(&req.group_id), text(&req.member_id), opt_text(&req.group_instance_id));
    let code =
        broker.groups.with(broker, |c, now| c.heartbeat(now, &group, &member, instance.as_deref(), req.generation_id));
    HeartbeatResponse::default().with_error_code(code)
}

pub(super) fn leave_group(broker: &Broker, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = text(&req.group_id);
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members.iter().map(|m| (text(&m.member_id), opt_text(&m.group_instance_id))).collect()
    } else {
        vec![(text(&req.member_id), None)]
    };
    let (code, results) = broker.groups.with_and_wake(broker, |c, now| c.leave_group(now, &group, &members));
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(if code == codes::NONE { results[0] } else { code });
    }
    let members = members
        .into_iter()
        .zip(results)
        .map(|((member_id, instance), code)| {
            MemberResponse::default()
                .with_member_id(str_bytes(member_id))
                .with_group_instance_id(instance.map(str_bytes))
                .with_error_code(code)
        })
        .collect();
    LeaveGroupResponse::default().with_error_code(code).with_members(members)
}

/// Whether `topic`-`partition` exists.
fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker.topic(topic).is_some_and(|t| (0..t.partitions).contains(&partition))
}

pub(super) async fn offset_commit(broker: &Broker, req: OffsetCommitRequest) -> OffsetCommitResponse {
    if let Err(e) = ensure_offsets_topic(broker).await {
        tracing::info!(reason = %e.message, "OffsetCommit before __consumer_offsets could be created");
    }
    let mut offsets = Vec::new();
    let mut results: Vec<(String, i32, i16)> = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        for p in &topic.partitions {
            if partition_exists(broker, &name, p.partition_index) {
                offsets.push(CommitOffset {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: opt_text(&p.committed_metadata),
                });
            } else {
                results.push((name.clone(), p.partition_index, codes::UNKNOWN_TOPIC_OR_PARTITION));
            }
        }
    }
    let wanted: Vec<(String, i32)> = offsets.iter().map(|o| (o.topic.clone(), o.partition)).collect();
    let request = CommitRequest {
        group_id: text(&req.group_id),
        generation: req.generation_id_or_member_epoch,
        member_id: text(&req.member_id),
        group_instance_id: opt_text(&req.group_instance_id),
        offsets,
    };
    match broker.groups.commit(broker, request) {
        Ok((committed, appended)) => {
            // Answered once the offsets are on the whole ISR of their partition.
            let replicated = match &appended {
                Some(at) => at.wait().await,
                None => Ok(()),
            };
            let failed = replicated.err();
            results.extend(
                committed.into_iter().map(|(t, p, c)| (t, p, failed.filter(|_| c == codes::NONE).unwrap_or(c))),
            );
        }
        Err(code) => results.extend(wanted.into_iter().map(|(t, p)| (t, p, code))),
    }
    // Answer in the order the request listed the partitions.
    let topics = req
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let code = results
                        .iter()
                        .find(|(t, q, _)| *q == p.partition_index && t.as_str() == topic.name.0.as_str())
                        .map_or(codes::UNKNOWN_SERVER_ERROR, |(_, _, c)| *c);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

type FetchedOffsets = Result<Vec<(String, i32, Option<OffsetValue>)>, i16>;

fn fetch_offsets(broker: &Broker, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> FetchedOffsets {
    broker.groups.with(broker, |c, _| c.fetch_offsets(group, topics.as_deref()))
}

/// One topic's fetched offsets: partition and committed offset, if any.
type TopicOffsets = (String, Vec<(i32, Option<OffsetValue>)>);

/// Groups fetched offsets by topic, keeping the first-seen topic order.
fn by_topic(offsets: Vec<(String, i32, Option<OffsetValue>)>) -> Vec<TopicOffsets> {
    let mut topics: Vec<TopicOffsets> = Vec::new();
    for (topic, p, value) in offsets {
        match topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, ps)) => ps.push((p, value)),
            None => topics.push((topic, vec![(p, value)])),
        }
    }
    topics
}

fn offset_fields(value: Option<OffsetValue>) -> (i64, i32, Option<StrBytes>) {
    match value {
        Some(v) => (v.offset, v.leader_epoch, Some(str_bytes(v.metadata))),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

pub(super) fn offset_fetch(broker: &Broker, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
                let response = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_offsets(broker, &g.group_id, topics) {
                    Err(code) => response.with_error_code(code),
                    Ok(offsets) => response.with_topics(
                        by_topic(offsets)
                            .into_iter()
                            .map(|(topic, ps)| {
                                let partitions = ps
                                    .into_iter()
                                    .map(|(p, v)| {
                                        let (offset, epoch, metadata) = offset_fields(v);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                    })
                                    .collect();
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(topic)))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics =
        req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.0.to_string(), t.partition_indexes.clone())).collect());
    let requested: Vec<(String, Vec<i32>)> = topics.clone().unwrap_or_default();
    match fetch_offsets(broker, &req.group_id, topics) {
        Err(code) => {
            // v1 has no top-level error: every requested partition carries it.
            let topics = requested
                .into_iter()
                .map(|(topic, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_metadata(Some(StrBytes::default()))
                                .with_error_code(code)
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default().with_error_code(code).with_topics(topics)
        }
        Ok(offsets) => {
            let topics = by_topic(offsets)
                .into_iter()
                .map(|(topic, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, v)| {
                            let (offset, epoch, metadata) = offset_fields(v);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(metadata)
                        })
                        .collect();
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
    }
}

pub(super) fn describe_groups(broker: &Broker, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            match broker.groups.with(broker, |c, _| c.describe_group(id)) {
                Err(code) => described.with_error_code(code),
                Ok(d) => described
                    .with_group_state(str_bytes(d.state))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) fn list_groups(broker: &Broker, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req.states_filter.iter().map(text).collect();
    match broker.groups.with(broker, |c, _| c.list_groups(&states)) {
        Err(code) => ListGroupsResponse::default().with_error_code(code),
        Ok(groups) => ListGroupsResponse::default().with_groups(
            groups
                .into_iter()
                .map(|g| {
                    ListedGroup::default()
                        .with_group_id(GroupId(str_bytes(g.group_id)))
                        .with_protocol_type(str_bytes(g.protocol_type))
                        .with_group_state(str_bytes(g.state))
                        .with_group_type(str_bytes("classic"))
                })
                .collect(),
        ),
    }
}

pub(super) fn delete_groups(broker: &Broker, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .iter()
        .map(|id| {
            let deleted = broker.groups.delete(broker, |c| Ok(((), c.prepare_delete_group(id)?)));
            let code = deleted.err().unwrap_or(codes::NONE);
            DeletableGroupResult::default().with_group_id(id.clone()).with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

pub(super) fn offset_delete(broker: &Broker, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index)))
        .collect();
    let group = text(&req.group_id);
    match broker.groups.delete(broker, |c| c.prepare_delete_offsets(&group, &partitions)) {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(results) => {
            let mut results = results.into_iter();
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(results.next().unwrap_or(codes::UNKNOWN_SERVER_ERROR))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;

    use super::*;
    use crate::broker::BrokerConfig;

    fn fetch(broker: &Broker) -> OffsetFetchResponse {
        let request = OffsetFetchRequest::default().with_group_id(GroupId(str_bytes("g"))).with_topics(Some(vec![
            OffsetFetchRequestTopic::default().with_name(TopicName(str_bytes("t"))).with_partition_indexes(vec![0]),
        ]));
        offset_fetch(broker, request, 7)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopened_broker_answers_load_in_progress_until_its_groups_are_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::embedded(dir.path());
        let running = Broker::start(config.clone()).await.unwrap();
        let broker = running.broker().clone();
        broker.create_topic(crate::broker::NewTopic::new("t", 1), false).await.unwrap();
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default().with_name(TopicName(str_bytes("t"))).with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(5),
                ]),
            ]);
        assert_eq!(offset_commit(&broker, commit).await.topics[0].partitions[0].error_code, codes::NONE);
        drop(broker);
        running.shutdown().await.unwrap();

        // Opened but not started: nothing has replayed __consumer_offsets yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let reopened = loop {
            match Broker::open(config.clone()).await {
                Ok(b) => break b,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "directory still held");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(fetch(&reopened).error_code, codes::COORDINATOR_LOAD_IN_PROGRESS);
        let e = crate::client::ClientError::from_code(codes::COORDINATOR_LOAD_IN_PROGRESS, "fetch", None).unwrap();
        assert!(e.is_retriable(), "clients retry it: {e}");

        crate::broker::group::load_all(&reopened);
        let loaded = fetch(&reopened);
        assert_eq!(loaded.error_code, codes::NONE);
        assert_eq!(loaded.topics[0].partitions[0].committed_offset, 5);
    }
}
