//! Produce: validates and appends each partition's batches on its leader, stamped with the
//! leader epoch; acks 0, 1 and -1 (all). An `acks=all` produce is refused with
//! NOT_ENOUGH_REPLICAS while the ISR is below `min.insync.replicas`, and once appended it
//! waits, up to the request's `timeout_ms`, until every ISR member has it (the high
//! watermark passes it): NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below the
//! minimum meanwhile, REQUEST_TIMED_OUT if it never got there, NOT_LEADER_OR_FOLLOWER if
//! leadership moved (the records may be truncated; the producer retries on the new leader).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{blocking, str_bytes};
use crate::broker::Broker;
use crate::broker::replica_manager::Partition;
use crate::codes;
use crate::replication::AckState;
use crate::storage::{AppendOrigin, TopicPartition};

/// An `acks=all` append waiting for the ISR: where its answer sits in the response.
struct AwaitingAcks {
    topic: usize,
    partition: usize,
    replica: Arc<Partition>,
    required_end: i64,
    epoch: i32,
}

pub(super) async fn handle(broker: &Broker, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    let (mut responses, awaiting) = blocking(|| append(broker, req));
    if !awaiting.is_empty() {
        wait_for_acks(&mut responses, awaiting, timeout).await;
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

fn append(broker: &Broker, req: ProduceRequest) -> (Vec<TopicProduceResponse>, Vec<AwaitingAcks>) {
    let now = broker.now_ms();
    let acks_all = req.acks == -1;
    let mut appended = Vec::new();
    let mut awaiting = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for (topic_index, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let fail = |code: i16, message: String| {
                tracing::info!(topic = %name, partition = data.index, code, reason = %message, "produce refused");
                response.clone().with_error_code(code).with_error_message(Some(str_bytes(message)))
            };
            let tp = TopicPartition::new(name.clone(), data.index);
            let replica = match refuse_early(broker, &req.transactional_id, req.acks, &tp) {
                Ok(replica) => replica,
                Err((code, message)) => {
                    partitions.push(fail(code, message));
                    continue;
                }
            };
            let Some(records) = data.records else {
                partitions.push(fail(codes::CORRUPT_MESSAGE, "the partition's records are null".into()));
                continue;
            };
            let mut bytes = records.to_vec();
            match replica.append_as_leader(&mut bytes, AppendOrigin::Client, acks_all, now) {
                Ok((info, epoch)) => {
                    appended.push(tp);
                    // A retried batch (idempotence) waits too: its first copy may not be
                    // committed yet.
                    if acks_all {
                        let (partition, required_end) = (partitions.len(), info.last_offset + 1);
                        awaiting.push(AwaitingAcks { topic: topic_index, partition, replica, required_end, epoch });
                    }
                    partitions.push(
                        response
                            .with_base_offset(info.first_offset)
                            .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                            .with_log_start_offset(info.log_start_offset),
                    );
                }
                Err(refused) => {
                    let (code, message) = refused.code_and_message();
                    partitions.push(fail(code, message));
                }
            }
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    for tp in &appended {
        broker.notify_appended(tp);
    }
    (responses, awaiting)
}

/// The partition's leader replica, or why the produce is refused before any append.
fn refuse_early(
    broker: &Broker,
    transactional_id: &Option<kafka_protocol::messages::TransactionalId>,
    acks: i16,
    tp: &TopicPartition,
) -> Result<Arc<Partition>, (i16, String)> {
    if ![0, 1, -1].contains(&acks) {
        return Err((codes::INVALID_REQUIRED_ACKS, format!("acks={acks} is not 0, 1 or -1")));
    }
    if tp.topic == crate::broker::group::OFFSETS_TOPIC {
        return Err((codes::INVALID_TOPIC_EXCEPTION, format!("cannot append to internal topic {}", tp.topic)));
    }
    if transactional_id.is_some() {
        return Err((codes::INVALID_REQUEST, "transactional produce is not supported yet".into()));
    }
    broker.leader_replica(tp).map_err(|code| (code, not_here(broker, tp, code)))
}

fn not_here(broker: &Broker, tp: &TopicPartition, code: i16) -> String {
    match code {
        codes::UNKNOWN_TOPIC_OR_PARTITION => format!("{tp} does not exist"),
        _ => format!("{tp} is not led by broker {}", broker.config.node_id),
    }
}

/// Waits until every `acks=all` append is on the whole ISR, or `timeout` passes, and sets
/// each one's answer.
async fn wait_for_acks(responses: &mut [TopicProduceResponse], awaiting: Vec<AwaitingAcks>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    for wait in awaiting {
        let (code, message) = match wait.replica.wait_for_ack(wait.required_end, wait.epoch, deadline).await {
            AckState::Done => continue,
            AckState::Pending => (codes::REQUEST_TIMED_OUT, "the in-sync replicas did not all get the records in time"),
            AckState::NotEnoughReplicasAfterAppend => {
                (codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND, "the ISR shrank below min.insync.replicas after the append")
            }
            AckState::NotLeader => {
                (codes::NOT_LEADER_OR_FOLLOWER, "leadership moved before the records were committed")
            }
        };
        let response = &mut responses[wait.topic].partition_responses[wait.partition];
        tracing::info!(partition = response.index, code, reason = message, "acks=all produce failed");
        response.error_code = code;
        response.error_message = Some(str_bytes(message));
    }
}
