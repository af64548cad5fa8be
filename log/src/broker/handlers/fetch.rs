//! Fetch: whole batches straight from the segment files, never decoded, up to the high
//! watermark. Long polling: if fewer than `min_bytes` are ready, the fetch waits (at most
//! `max_wait_ms`, capped by the broker) for an append and looks again.
//!
//! Fetch sessions (KIP-227): the broker answers with session id 0, which tells clients to
//! send full fetch requests; a request that names a session gets FETCH_SESSION_ID_NOT_FOUND.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use crate::broker::Broker;
use crate::codes;
use crate::storage::{LogError, TopicPartition};

pub(super) async fn handle(broker: &Broker, req: FetchRequest) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse::default().with_error_code(codes::FETCH_SESSION_ID_NOT_FOUND).with_session_id(0);
    }
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0).min(broker.config.max_fetch_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let mut appended = broker.appended.subscribe();
    loop {
        // Mark the current append count as seen before reading, so no append is missed.
        appended.borrow_and_update();
        let (response, bytes, has_error) = read(broker, &req);
        let enough = bytes >= i64::from(req.min_bytes.max(0)) && (bytes > 0 || req.min_bytes <= 0);
        if enough || has_error || tokio::time::Instant::now() >= deadline {
            return response;
        }
        if tokio::time::timeout_at(deadline, appended.changed()).await.is_err() {
            return read(broker, &req).0;
        }
    }
}

fn read(broker: &Broker, req: &FetchRequest) -> (FetchResponse, i64, bool) {
    let max_bytes = if req.max_bytes > 0 { req.max_bytes as u64 } else { u64::from(u32::MAX) };
    let mut remaining = max_bytes;
    let mut total = 0i64;
    let mut has_error = false;
    let mut first_data = true;
    let read_committed = req.isolation_level == 1;
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new));
            let Some(log) = broker.logs.get_log(&TopicPartition::new(name.clone(), p.partition)) else {
                has_error = true;
                partitions.push(data.with_error_code(codes::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let log = log.read();
            let hwm = log.high_watermark();
            let data = data
                .with_high_watermark(hwm)
                .with_last_stable_offset(hwm)
                .with_log_start_offset(log.log_start_offset());
            let budget = remaining.min(u64::try_from(p.partition_max_bytes).unwrap_or(0));
            // KIP-74: the first partition with data returns at least one batch, so a
            // batch larger than the limits still makes progress.
            let result = log.read(p.fetch_offset, budget, Some(hwm), first_data && remaining > 0);
            match result.and_then(|info| info.read_to_vec()) {
                Ok(records) => {
                    let len = records.len() as u64;
                    if len > 0 {
                        first_data = false;
                    }
                    remaining = remaining.saturating_sub(len);
                    total += len as i64;
                    partitions.push(data.with_records(Some(Bytes::from(records))));
                }
                Err(e @ LogError::OffsetOutOfRange { .. }) => {
                    tracing::debug!(topic = %name, partition = p.partition, error = %e, "fetch out of range");
                    has_error = true;
                    partitions.push(data.with_error_code(codes::OFFSET_OUT_OF_RANGE));
                }
                Err(e) => {
                    tracing::error!(topic = %name, partition = p.partition, error = %e, "fetch failed");
                    has_error = true;
                    partitions.push(data.with_error_code(e.kafka_code()));
                }
            }
        }
        topics.push(FetchableTopicResponse::default().with_topic(topic.topic.clone()).with_partitions(partitions));
    }
    (FetchResponse::default().with_session_id(0).with_responses(topics), total, has_error)
}
