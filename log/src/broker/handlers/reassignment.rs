//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders. Changes go to
//! the active controller, as Kafka's brokers forward them; the list is read from this
//! broker's image of the metadata log.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::broker::{ApiError, Broker};
use crate::codes;
use crate::controller::{ControllerReply, ControllerRequest, ElectionType, PartitionOutcome, ReassignPartition};

/// Outcomes by topic, then partition.
type Outcomes = BTreeMap<String, Vec<(i32, i16, Option<String>)>>;

pub(super) async fn alter_partition_reassignments(
    broker: &Broker,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let partitions: Vec<ReassignPartition> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ReassignPartition {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    // v0 predates KIP-860: any replica count was allowed.
    let allow_replication_factor_change = version == 0 || req.allow_replication_factor_change;
    let request = ControllerRequest::AlterPartitionReassignments { partitions, allow_replication_factor_change };
    let response = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_replication_factor_change);
    let outcomes = match partition_outcomes(broker, request).await {
        Ok(outcomes) => outcomes,
        Err(e) => return response.with_error_code(e.code).with_error_message(Some(str_bytes(e.message))),
    };
    let responses = outcomes
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, code, message)| {
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition)
                        .with_error_code(code)
                        .with_error_message(message.map(str_bytes))
                })
                .collect();
            ReassignableTopicResponse::default().with_name(TopicName(str_bytes(topic))).with_partitions(partitions)
        })
        .collect();
    response.with_responses(responses)
}

pub(super) fn list_partition_reassignments(
    broker: &Broker,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        req.topics.map(|topics| topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let topics = broker.with_image(|image| {
        let mut ongoing = Vec::new();
        for topic in image.topics.values() {
            let wanted_here = wanted.as_ref().map(|w| w.get(&topic.name));
            if matches!(wanted_here, Some(None)) {
                continue;
            }
            let partitions: Vec<OngoingPartitionReassignment> = topic
                .partitions
                .iter()
                .filter(|(index, p)| p.is_reassigning() && wanted_here.flatten().is_none_or(|w| w.contains(index)))
                .map(|(index, p)| {
                    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect();
                    OngoingPartitionReassignment::default()
                        .with_partition_index(*index)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding_replicas))
                        .with_removing_replicas(ids(&p.removing_replicas))
                })
                .collect();
            if !partitions.is_empty() {
                ongoing.push(
                    OngoingTopicReassignment::default()
                        .with_name(TopicName(str_bytes(topic.name.clone())))
                        .with_partitions(partitions),
                );
            }
        }
        ongoing
    });
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

pub(super) async fn elect_leaders(broker: &Broker, req: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    // v0 has no election type: it decodes as 0, preferred, which is what it meant.
    let election = match req.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        other => {
            return election_failed(&req, version, codes::INVALID_REQUEST, &format!("unknown election type {other}"));
        }
    };
    let partitions = req.topic_partitions.as_ref().map(|topics| {
        topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p))).collect::<Vec<_>>()
    });
    let request = ControllerRequest::ElectLeaders { election, partitions };
    match partition_outcomes(broker, request).await {
        Ok(outcomes) => ElectLeadersResponse::default().with_replica_election_results(election_results(outcomes)),
        Err(e) => election_failed(&req, version, e.code, &e.message),
    }
}

/// Every partition named fails with `code`; so does the whole request from v1, which has a
/// top-level error code.
fn election_failed(req: &ElectLeadersRequest, version: i16, code: i16, message: &str) -> ElectLeadersResponse {
    let mut outcomes = Outcomes::new();
    for t in req.topic_partitions.iter().flatten() {
        let entry = outcomes.entry(t.topic.0.to_string()).or_default();
        entry.extend(t.partitions.iter().map(|p| (*p, code, Some(message.to_owned()))));
    }
    let response = ElectLeadersResponse::default().with_replica_election_results(election_results(outcomes));
    if version >= 1 { response.with_error_code(code) } else { response }
}

fn election_results(outcomes: Outcomes) -> Vec<ReplicaElectionResult> {
    outcomes
        .into_iter()
        .map(|(topic, partitions)| {
            let partition_result = partitions
                .into_iter()
                .map(|(partition, code, message)| {
                    PartitionResult::default()
                        .with_partition_id(partition)
                        .with_error_code(code)
                        .with_error_message(message.map(str_bytes))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(partition_result)
        })
        .collect()
}

/// Sends `request` to the active controller and groups its per-partition answers.
async fn partition_outcomes(broker: &Broker, request: ControllerRequest) -> Result<Outcomes, ApiError> {
    let outcomes = match broker.run_controller(request).await? {
        ControllerReply::Partitions(outcomes) => outcomes,
        other => {
            tracing::error!(reply = ?other, "the controller answered with something else");
            return Err(ApiError::new(codes::UNKNOWN_SERVER_ERROR, "the controller gave an unexpected answer"));
        }
    };
    let mut grouped = Outcomes::new();
    for PartitionOutcome { topic, partition, error } in outcomes {
        let (code, message) = error.map_or((codes::NONE, None), |e| (e.code(), Some(e.to_string())));
        grouped.entry(topic).or_default().push((partition, code, message));
    }
    Ok(grouped)
}
