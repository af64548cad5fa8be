//! Fetch: whole batches straight from the segment files, never decoded or copied into
//! the process (the answer carries file ranges; see `server::fetch_frame`), up to the high
//! watermark. Long polling: if fewer than `min_bytes` are ready, the fetch waits (at most
//! `max_wait_ms`, capped by the broker) for an append and looks again.
//!
//! Fetch sessions (KIP-227) are kept by [`crate::broker::fetch_session`]: it says which
//! partitions a fetch reads and which of them the response carries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::Notify;

use crate::broker::Broker;
use crate::broker::fetch_session::{FetchPosition, ReadSummary};
use crate::codes;
use crate::storage::{FileRange, LogError, TopicPartition};

/// A fetch response whose records are still file ranges, for the server to send from the
/// segment files.
#[derive(Debug, Default)]
pub(crate) struct FetchReply {
    /// The response with every partition's `records` left `None`.
    pub response: FetchResponse,
    /// Each partition's records, in response order (topics, then their partitions):
    /// `None` for null records, else the ranges (possibly none: empty records).
    pub records: Vec<Option<Vec<FileRange>>>,
}

impl FetchReply {
    /// The response with the records read into memory, for the ordinary encoder.
    pub(crate) fn into_response(self) -> Result<FetchResponse, LogError> {
        let mut response = self.response;
        let mut records = self.records.into_iter();
        for topic in &mut response.responses {
            for partition in &mut topic.partitions {
                partition.records = match records.next().flatten() {
                    None => None,
                    Some(ranges) => {
                        let mut bytes = Vec::with_capacity(ranges.iter().map(|r| r.length as usize).sum());
                        for range in &ranges {
                            bytes.extend_from_slice(&range.read_to_vec()?);
                        }
                        Some(Bytes::from(bytes))
                    }
                };
            }
        }
        Ok(response)
    }
}

pub(super) async fn handle(broker: &Broker, req: FetchRequest) -> FetchReply {
    let requested = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let position = FetchPosition {
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                };
                (TopicPartition::new(t.topic.0.to_string(), p.partition), position)
            })
        })
        .collect();
    let forgotten: Vec<TopicPartition> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| TopicPartition::new(t.topic.0.to_string(), p)))
        .collect();
    let planned =
        broker.fetch_sessions.lock().plan(req.session_id, req.session_epoch, requested, &forgotten, broker.now_ms());
    let plan = match planned {
        Ok(plan) => plan,
        Err(code) => {
            tracing::debug!(session = req.session_id, epoch = req.session_epoch, code, "fetch session refused");
            let response = FetchResponse::default().with_error_code(code).with_session_id(0);
            return FetchReply { response, records: Vec::new() };
        }
    };

    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0).min(broker.config.max_fetch_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let min_bytes = u64::try_from(req.min_bytes).unwrap_or(0);
    let satisfied = |reads: &[PartitionRead]| {
        let bytes: u64 = reads.iter().map(|r| r.bytes).sum();
        let has_error = reads.iter().any(|r| r.summary.error_code != codes::NONE);
        has_error || (bytes >= min_bytes && (bytes > 0 || req.min_bytes <= 0))
    };
    let waiter = Arc::new(Notify::new());
    let mut first = Some(read(broker, &req, &plan.partitions));
    let reads = loop {
        if let Some(reads) = first.take()
            && (satisfied(&reads) || tokio::time::Instant::now() >= deadline)
        {
            break reads;
        }
        // Registered before reading again, so an append in between still wakes the wait.
        broker.fetch_purgatory.watch(&waiter, plan.partitions.iter().map(|(tp, _)| tp));
        let reads = read(broker, &req, &plan.partitions);
        if satisfied(&reads) {
            break reads;
        }
        if tokio::time::timeout_at(deadline, waiter.notified()).await.is_err() {
            break read(broker, &req, &plan.partitions);
        }
    };

    let summaries: Vec<ReadSummary> = reads.iter().map(|r| r.summary).collect();
    let (session_id, include) = broker.fetch_sessions.lock().complete(&plan, &summaries, broker.now_ms());
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut records = Vec::new();
    for ((tp, _), read) in plan.partitions.iter().zip(reads).zip(include).filter(|(_, sent)| *sent).map(|(r, _)| r) {
        records.push(read.records);
        push_partition(&mut topics, &tp.topic, read.data);
    }
    FetchReply { response: FetchResponse::default().with_session_id(session_id).with_responses(topics), records }
}

/// Adds a partition's answer to a fetch response; consecutive partitions of one topic
/// share an entry, as in Kafka's responses.
pub(super) fn push_partition(topics: &mut Vec<FetchableTopicResponse>, topic: &str, data: PartitionData) {
    match topics.last_mut() {
        Some(last) if *last.topic.0 == *topic => last.partitions.push(data),
        _ => topics.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(crate::broker::handlers::str_bytes(topic.to_owned())))
                .with_partitions(vec![data]),
        ),
    }
}

/// One partition's answer.
struct PartitionRead {
    /// Everything but the records.
    data: PartitionData,
    /// The records (none when the partition failed).
    records: Option<Vec<FileRange>>,
    bytes: u64,
    summary: ReadSummary,
}

fn read(broker: &Broker, req: &FetchRequest, partitions: &[(TopicPartition, FetchPosition)]) -> Vec<PartitionRead> {
    let max_bytes = if req.max_bytes > 0 { req.max_bytes as u64 } else { u64::from(u32::MAX) };
    let mut remaining = max_bytes;
    let mut first_data = true;
    let read_committed = req.isolation_level == 1;
    partitions
        .iter()
        .map(|(tp, position)| {
            let (data, records) = read_partition(broker, tp, position, remaining, &mut first_data, read_committed);
            let bytes = records.iter().flatten().map(|r| r.length).sum();
            remaining = remaining.saturating_sub(bytes);
            let summary = ReadSummary {
                has_records: bytes > 0,
                error_code: data.error_code,
                high_watermark: data.high_watermark,
                last_stable_offset: data.last_stable_offset,
                log_start_offset: data.log_start_offset,
            };
            PartitionRead { data, records, bytes, summary }
        })
        .collect()
}

fn read_partition(
    broker: &Broker,
    tp: &TopicPartition,
    position: &FetchPosition,
    remaining: u64,
    first_data: &mut bool,
    read_committed: bool,
) -> (PartitionData, Option<Vec<FileRange>>) {
    let data = PartitionData::default()
        .with_partition_index(tp.partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_records(None);
    let Some(log) = broker.logs.get_log(tp) else {
        return (data.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION), Some(Vec::new()));
    };
    let epoch = match broker.leader_epoch(tp) {
        Ok(epoch) => epoch,
        Err(code) => return (data.with_error_code(code), Some(Vec::new())),
    };
    if position.current_leader_epoch >= 0 && position.current_leader_epoch != epoch {
        let code = if position.current_leader_epoch < epoch {
            codes::FENCED_LEADER_EPOCH
        } else {
            codes::UNKNOWN_LEADER_EPOCH
        };
        return (data.with_error_code(code), Some(Vec::new()));
    }
    let log = log.read();
    let hwm = log.high_watermark();
    let data = data.with_high_watermark(hwm).with_last_stable_offset(hwm).with_log_start_offset(log.log_start_offset());
    let budget = remaining.min(u64::try_from(position.max_bytes).unwrap_or(0));
    // KIP-74: the first partition with data returns at least one batch, so a batch larger
    // than the limits still makes progress.
    let result = log.read(position.fetch_offset, budget, Some(hwm), *first_data && remaining > 0);
    match result {
        Ok(info) => {
            if info.total_bytes() > 0 {
                *first_data = false;
            }
            (data, Some(info.ranges))
        }
        Err(e @ LogError::OffsetOutOfRange { .. }) => {
            tracing::debug!(%tp, error = %e, "fetch out of range");
            (data.with_error_code(codes::OFFSET_OUT_OF_RANGE), Some(Vec::new()))
        }
        Err(e) => {
            tracing::error!(%tp, error = %e, "fetch failed");
            (data.with_error_code(e.kafka_code()), Some(Vec::new()))
        }
    }
}
