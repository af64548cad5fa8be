//! Followers fetch from their leaders (Kafka's ReplicaFetcherManager and ReplicaFetcherThread):
//! one task per leader, over its own connection to the leader's inter-broker listener,
//! with one Fetch for every partition this broker follows that leader for, bounded by
//! `replica.fetch.max.bytes` per partition. A response's records are appended as they
//! came (offsets and epochs kept); a DivergingEpoch (KIP-320) truncates the follower to
//! where the logs agree; a log start past the follower's end starts its log afresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::sync::watch;

use super::{FollowerFetch, Partition};
use crate::broker::Broker;
use crate::broker::handlers::{blocking, str_bytes};
use crate::client::{Connection, ConnectionConfig};
use crate::codes;

/// The Fetch version followers send: the newest this broker serves that names topics.
const REPLICA_FETCH_VERSION: i16 = 12;
/// `replica.fetch.wait.max.ms`.
const FETCH_WAIT_MAX_MS: i32 = 500;
/// `replica.fetch.response.max.bytes`.
const FETCH_RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// `replica.fetch.backoff.ms`: after an error, before the next fetch.
const FETCH_BACKOFF: Duration = Duration::from_millis(200);

/// Starts a fetcher for every leader this broker follows a partition of, until `stop`.
/// A fetcher ends when it has nothing left to fetch from its leader.
pub(crate) async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut fetchers: HashMap<i32, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut following = broker.replicas.watch_following();
    loop {
        fetchers.retain(|_, task| !task.is_finished());
        for leader in broker.replicas.leaders_followed() {
            fetchers.entry(leader).or_insert_with(|| tokio::spawn(fetch_from(broker.clone(), leader, stop.clone())));
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            changed = following.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (_, task) in fetchers {
        let _ = task.await;
    }
}

/// Fetches from `leader` while this broker follows it for any partition.
async fn fetch_from(broker: Arc<Broker>, leader: i32, mut stop: watch::Receiver<bool>) {
    let mut connection: Option<Connection> = None;
    tracing::debug!(leader, "replica fetcher started");
    loop {
        if *stop.borrow() {
            return;
        }
        let partitions = broker.replicas.following(leader);
        if partitions.is_empty() {
            tracing::debug!(leader, "replica fetcher has nothing left to fetch");
            return;
        }
        let answer = tokio::select! {
            _ = stop.changed() => return,
            answer = fetch_once(&broker, leader, &mut connection, &partitions) => answer,
        };
        let backoff = match answer {
            Ok(response) => blocking(|| apply_response(&broker, leader, &partitions, response)),
            Err(reason) => {
                tracing::debug!(leader, %reason, "replica fetch failed");
                connection = None;
                true
            }
        };
        if backoff {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(FETCH_BACKOFF) => {}
            }
        }
    }
}

async fn fetch_once(
    broker: &Broker,
    leader: i32,
    connection: &mut Option<Connection>,
    partitions: &[(Arc<Partition>, FollowerFetch)],
) -> Result<FetchResponse, String> {
    if connection.as_ref().is_none_or(Connection::is_closed) {
        let addr = leader_address(broker, leader).ok_or_else(|| format!("broker {leader} has no known endpoint"))?;
        let config = ConnectionConfig {
            client_id: format!("replica-fetcher-{}-{leader}", broker.config.node_id),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_millis(FETCH_WAIT_MAX_MS as u64 + 10_000),
            // Inter-broker traffic leaves from the inter-broker listener, as the quorum's does.
            local_address: broker.config.cluster.inter_broker_ip(),
        };
        *connection = Some(Connection::connect(&addr, config).await.map_err(|e| e.to_string())?);
    }
    let Some(conn) = connection.as_ref() else { return Err("no connection".into()) };
    let request = fetch_request(broker, partitions);
    conn.send_version(&request, REPLICA_FETCH_VERSION).await.map_err(|e| e.to_string())
}

/// The leader's inter-broker endpoint, as its registration advertises it.
fn leader_address(broker: &Broker, leader: i32) -> Option<String> {
    let listener = broker.config.cluster.inter_broker_listener_name.clone();
    broker.with_image(|image| {
        let registration = image.brokers.get(&leader)?;
        let endpoint =
            registration.endpoints.iter().find(|e| e.name == listener).or_else(|| registration.endpoints.first())?;
        Some(format!("{}:{}", endpoint.host, endpoint.port))
    })
}

fn fetch_request(broker: &Broker, partitions: &[(Arc<Partition>, FollowerFetch)]) -> FetchRequest {
    let max_bytes = broker.config.cluster.replica_fetch_max_bytes;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (partition, fetch) in partitions {
        let tp = partition.topic_partition();
        let entry = FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(fetch.leader_epoch)
            .with_fetch_offset(fetch.position.fetch_offset)
            .with_last_fetched_epoch(fetch.position.last_fetched_epoch.unwrap_or(-1))
            .with_log_start_offset(partition.log().read().log_start_offset())
            .with_partition_max_bytes(max_bytes);
        match topics.last_mut() {
            Some(last) if *last.topic.0 == *tp.topic => last.partitions.push(entry),
            _ => topics.push(
                FetchTopic::default().with_topic(TopicName(str_bytes(tp.topic.clone()))).with_partitions(vec![entry]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(broker.config.node_id))
        .with_max_wait_ms(FETCH_WAIT_MAX_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_RESPONSE_MAX_BYTES)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies a response to the partitions it answers. Returns whether to back off before
/// the next fetch (an error, or nothing to do for now).
fn apply_response(
    broker: &Broker,
    leader: i32,
    sent: &[(Arc<Partition>, FollowerFetch)],
    response: FetchResponse,
) -> bool {
    if response.error_code != codes::NONE {
        tracing::info!(leader, code = response.error_code, "the leader refused the replica fetch");
        return true;
    }
    let mut backoff = false;
    let now = broker.now_ms();
    for topic in response.responses {
        for data in topic.partitions {
            let found = sent.iter().find(|(p, _)| {
                let tp = p.topic_partition();
                *tp.topic == *topic.topic.0 && tp.partition == data.partition_index
            });
            let Some((partition, fetch)) = found else { continue };
            backoff |= !apply_partition(partition, fetch, data, now);
        }
    }
    backoff
}

/// One partition of a response; false when it failed.
fn apply_partition(partition: &Partition, fetch: &FollowerFetch, data: PartitionData, now: i64) -> bool {
    let tp = partition.topic_partition();
    let outcome = match data.error_code {
        codes::NONE if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 => partition
            .truncate_on_divergence(fetch, data.diverging_epoch.epoch, data.diverging_epoch.end_offset, now)
            .map(|_| ()),
        codes::NONE => {
            let records = data.records.unwrap_or_default();
            let leader = (data.high_watermark, data.log_start_offset);
            partition.append_from_leader(fetch, &records, leader, now).map(|_| ())
        }
        codes::OFFSET_OUT_OF_RANGE if data.log_start_offset > fetch.position.fetch_offset => {
            partition.restart_at(fetch, data.log_start_offset, now)
        }
        codes::OFFSET_OUT_OF_RANGE if data.high_watermark >= 0 && data.high_watermark < fetch.position.fetch_offset => {
            partition.truncate_to_leader(fetch, data.high_watermark, now)
        }
        code => {
            // Leadership moved (NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH): the
            // metadata log brings the new leader.
            tracing::debug!(partition = %tp, code, "replica fetch refused");
            return false;
        }
    };
    match outcome {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(partition = %tp, error = %e, "could not apply what the leader sent");
            false
        }
    }
}
