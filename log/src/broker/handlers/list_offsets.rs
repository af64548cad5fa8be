//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), and
//! the first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::codes;
use crate::storage::{Log, TopicPartition};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub(super) fn handle(broker: &Broker, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                let tp = TopicPartition::new(name.clone(), p.partition_index);
                let refuse = |code| response.clone().with_error_code(code).with_timestamp(-1).with_offset(-1);
                let Some(log) = broker.logs.get_log(&tp) else {
                    return refuse(codes::UNKNOWN_TOPIC_OR_PARTITION);
                };
                let current = match broker.leader_epoch(&tp) {
                    Ok(epoch) => epoch,
                    Err(code) => return refuse(code),
                };
                // The caller's view of the current epoch must match ours (KIP-320).
                if p.current_leader_epoch >= 0 && p.current_leader_epoch != current {
                    let newer = p.current_leader_epoch > current;
                    return refuse(if newer { codes::UNKNOWN_LEADER_EPOCH } else { codes::FENCED_LEADER_EPOCH });
                }
                // The leader epoch exists from v4 and cannot be sent to older clients.
                let epoch = if version >= 4 { current } else { -1 };
                let log = log.read();
                match lookup(&log, p.timestamp) {
                    Ok((timestamp, offset)) => {
                        response.with_timestamp(timestamp).with_offset(offset).with_leader_epoch(epoch)
                    }
                    Err(e) => response.with_error_code(e.kafka_code()).with_timestamp(-1).with_offset(-1),
                }
            })
            .collect();
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

fn lookup(log: &Log, timestamp: i64) -> crate::storage::Result<(i64, i64)> {
    let hwm = log.high_watermark();
    Ok(match timestamp {
        LATEST => (-1, hwm),
        EARLIEST | EARLIEST_LOCAL => (-1, log.log_start_offset()),
        MAX_TIMESTAMP => {
            let max = log.segments().map(|s| s.max_timestamp()).max().unwrap_or(-1);
            match log.offset_for_timestamp(max)? {
                Some(found) if max >= 0 && found.offset < hwm => (found.timestamp, found.offset),
                _ => (-1, -1),
            }
        }
        t => match log.offset_for_timestamp(t)? {
            Some(found) if found.offset < hwm => (found.timestamp, found.offset),
            _ => (-1, -1),
        },
    })
}
