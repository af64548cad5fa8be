//! Fetch from a follower (`replica_id` ≥ 0): the leader's side of replication. Each
//! partition's fetch offset tells the leader how far the follower has come, which moves the
//! high watermark and may bring the follower back into the ISR; the answer reads up to the
//! log end, or tells the follower where its log diverged. A fetch that finds nothing waits
//! (at most `max_wait_ms`) for an append, as a consumer's does.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::sync::Notify;

use super::fetch::FetchReply;
use crate::broker::Broker;
use crate::broker::replica_manager::ReplicaRead;
use crate::codes;
use crate::replication::ReplicaFetch;
use crate::storage::{FileRange, TopicPartition};

struct Requested {
    tp: TopicPartition,
    current_leader_epoch: i32,
    fetch_offset: i64,
    last_fetched_epoch: i32,
    max_bytes: i32,
}

pub(super) async fn handle(broker: &Broker, req: FetchRequest) -> FetchReply {
    let replica_id = req.replica_id.0;
    let requested: Vec<Requested> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Requested {
                tp: TopicPartition::new(t.topic.0.to_string(), p.partition),
                current_leader_epoch: p.current_leader_epoch,
                fetch_offset: p.fetch_offset,
                last_fetched_epoch: p.last_fetched_epoch,
                max_bytes: p.partition_max_bytes,
            })
        })
        .collect();
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0).min(broker.config.max_fetch_wait_ms));
    let deadline = tokio::time::Instant::now() + wait;
    let waiter = Arc::new(Notify::new());
    let max_bytes = if req.max_bytes > 0 { req.max_bytes as u64 } else { u64::from(u32::MAX) };
    let reads = loop {
        broker.fetch_purgatory.watch(&waiter, requested.iter().map(|r| &r.tp));
        let reads = super::blocking(|| read(broker, replica_id, &requested, max_bytes));
        let bytes: u64 = reads.iter().flat_map(|(_, ranges)| ranges.iter()).map(|r| r.length).sum();
        let has_error = reads.iter().any(|(data, _)| {
            data.error_code != codes::NONE || data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0
        });
        if bytes > 0 || has_error || i64::from(req.min_bytes) <= 0 || tokio::time::Instant::now() >= deadline {
            break reads;
        }
        if tokio::time::timeout_at(deadline, waiter.notified()).await.is_err() {
            break super::blocking(|| read(broker, replica_id, &requested, max_bytes));
        }
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut records = Vec::with_capacity(reads.len());
    for (r, (data, ranges)) in requested.iter().zip(reads) {
        records.push(Some(ranges));
        super::fetch::push_partition(&mut topics, &r.tp.topic, data);
    }
    FetchReply { response: FetchResponse::default().with_session_id(0).with_responses(topics), records }
}

/// Reads every requested partition for the follower, within `max_bytes` in all.
fn read(
    broker: &Broker,
    replica_id: i32,
    requested: &[Requested],
    max_bytes: u64,
) -> Vec<(PartitionData, Vec<FileRange>)> {
    let eligible = broker.with_image(|image| image.is_eligible(replica_id));
    let now = broker.now_ms();
    let mut remaining = max_bytes;
    let mut first_data = true;
    requested
        .iter()
        .map(|r| {
            let budget = remaining.min(u64::try_from(r.max_bytes).unwrap_or(0));
            // KIP-74: the first partition with data sends at least one batch; the others
            // stay within the response's limit.
            let min_one_batch = first_data && remaining > 0;
            let (data, ranges) = read_partition(broker, replica_id, r, eligible, (budget, min_one_batch), now);
            let bytes: u64 = ranges.iter().map(|range| range.length).sum();
            first_data &= bytes == 0;
            remaining = remaining.saturating_sub(bytes);
            (data, ranges)
        })
        .collect()
}

fn read_partition(
    broker: &Broker,
    replica_id: i32,
    r: &Requested,
    eligible: bool,
    (budget, min_one_batch): (u64, bool),
    now: i64,
) -> (PartitionData, Vec<FileRange>) {
    let data = PartitionData::default()
        .with_partition_index(r.tp.partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(None);
    let Some(partition) = broker.replicas.partition(&r.tp) else {
        let code = if broker.partition(&r.tp).is_some() {
            codes::NOT_LEADER_OR_FOLLOWER
        } else {
            codes::UNKNOWN_TOPIC_OR_PARTITION
        };
        return (data.with_error_code(code), Vec::new());
    };
    let fetch = ReplicaFetch {
        replica_id,
        replica_epoch: -1,
        current_leader_epoch: r.current_leader_epoch,
        fetch_offset: r.fetch_offset,
        last_fetched_epoch: (r.last_fetched_epoch >= 0).then_some(r.last_fetched_epoch),
    };
    match partition.read_for_follower(&fetch, eligible, budget, min_one_batch, now) {
        Err(code) => (data.with_error_code(code), Vec::new()),
        Ok(ReplicaRead::OutOfRange { log_start_offset, high_watermark }) => {
            let data = data
                .with_error_code(codes::OFFSET_OUT_OF_RANGE)
                .with_log_start_offset(log_start_offset)
                .with_high_watermark(high_watermark);
            (data, Vec::new())
        }
        Ok(ReplicaRead::Diverging { epoch, end_offset }) => {
            let diverging = EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset);
            (data.with_diverging_epoch(diverging).with_high_watermark(partition.high_watermark()), Vec::new())
        }
        Ok(ReplicaRead::Records { ranges, high_watermark, log_start_offset, high_watermark_moved, alter }) => {
            if let Some(alter) = alter {
                broker.replicas.request_isr_change(partition.clone(), alter);
            }
            if high_watermark_moved {
                // Consumers long-polling on this partition may read further now.
                broker.notify_appended(&r.tp);
            }
            let data = data
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(high_watermark)
                .with_log_start_offset(log_start_offset);
            (data, ranges)
        }
    }
}
