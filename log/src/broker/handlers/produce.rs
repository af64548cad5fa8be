//! Produce: validates and appends each partition's batches, stamped with the partition's
//! leader epoch from the metadata log; acks 0, 1 and -1 (all). Replicas do not fetch yet,
//! so the ISR is the leader alone and `acks=all` succeeds unless the topic's
//! `min.insync.replicas` asks for more.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::codes;
use crate::storage::{AppendOrigin, TopicPartition};

pub(super) fn handle(broker: &Broker, req: ProduceRequest) -> Option<ProduceResponse> {
    let now = broker.now_ms();
    let mut appended = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let meta = broker.topic(&name);
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
            let log = match &meta {
                _ if ![0, 1, -1].contains(&req.acks) => {
                    partitions.push(fail(codes::INVALID_REQUIRED_ACKS, format!("acks={} is not 0, 1 or -1", req.acks)));
                    continue;
                }
                _ if name == crate::broker::group::OFFSETS_TOPIC => {
                    partitions
                        .push(fail(codes::INVALID_TOPIC_EXCEPTION, format!("cannot append to internal topic {name}")));
                    continue;
                }
                _ if req.transactional_id.is_some() => {
                    partitions.push(fail(codes::INVALID_REQUEST, "transactional produce is not supported yet".into()));
                    continue;
                }
                Some(m) if (0..m.partitions).contains(&data.index) => {
                    broker.logs.get_log(&TopicPartition::new(name.clone(), data.index))
                }
                _ => None,
            };
            let Some(log) = log else {
                partitions
                    .push(fail(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("{name}-{} does not exist", data.index)));
                continue;
            };
            let Some(records) = data.records else {
                partitions.push(fail(codes::CORRUPT_MESSAGE, "the partition's records are null".into()));
                continue;
            };
            let tp = TopicPartition::new(name.clone(), data.index);
            let epoch = match broker.leader_epoch(&tp) {
                Ok(epoch) => epoch,
                Err(code) => {
                    partitions.push(fail(code, format!("{tp} is not led by broker {}", broker.config.node_id)));
                    continue;
                }
            };
            let mut bytes = records.to_vec();
            let mut log = log.write();
            if req.acks == -1 && log.config().min_insync_replicas > 1 {
                let needed = log.config().min_insync_replicas;
                partitions.push(fail(
                    codes::NOT_ENOUGH_REPLICAS,
                    format!("min.insync.replicas={needed} but the in-sync replicas are 1"),
                ));
                continue;
            }
            match log.append_as_leader(&mut bytes, epoch, AppendOrigin::Client, now) {
                Ok(info) => {
                    appended.push(tp);
                    partitions.push(
                        response
                            .with_base_offset(info.first_offset)
                            .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
                            .with_log_start_offset(info.log_start_offset),
                    );
                }
                Err(e) => partitions.push(fail(e.kafka_code(), e.to_string())),
            }
        }
        responses.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(partitions));
    }
    for tp in &appended {
        broker.notify_appended(tp);
    }
    (req.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}
