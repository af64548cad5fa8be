//! The fetcher task: looks up missing positions, keeps one Fetch in flight per broker
//! for the partitions with nothing buffered or running low, and decodes answers into
//! records. A partition is fetched again from where its buffered records end as soon as
//! it has fewer records left than the last fetch brought, so the application is not kept
//! waiting for a round trip each time it drains a buffer. Decoding runs outside the consumer's
//! lock, so `poll` does not wait for it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::{ConsumerCore, ConsumerRecord, Fetched, IsolationLevel, OffsetReset, resolve_position};
use crate::client::admin::TopicPartition;
use crate::client::error::{ClientError, Result};
use crate::codes;
use crate::record::{RecordBatch, RecordIter};

/// The longest the fetcher sleeps without looking at its partitions.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// The longest a fetch may wait at the broker for new data while another partition on
/// that broker has records buffered (and so will want the next fetch). Buffers are
/// refilled while a fetch's worth is left, which hides a wait this short.
const WAIT_WHILE_BUSY: Duration = Duration::from_millis(5);

/// One partition of a fetch: where it fetched from, and which seek it belongs to.
struct Part {
    tp: TopicPartition,
    offset: i64,
    epoch: u64,
}

/// Records decoded from a fetched partition, and the offset after its last complete batch.
type Decoded = (Vec<ConsumerRecord>, i64);

struct FetchDone {
    node: i32,
    parts: Vec<Part>,
    result: Result<FetchResponse>,
}

pub(super) async fn run(core: Arc<ConsumerCore>) {
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let mut busy_nodes: HashSet<i32> = HashSet::new();
    let mut refresh: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let (wake_at, want_refresh) = plan(&core, &mut busy_nodes, &done_tx);
        if (want_refresh || core.cluster.is_stale()) && refresh.as_ref().is_none_or(|r| r.is_finished()) {
            let core = core.clone();
            refresh = Some(tokio::spawn(async move {
                let topics = core.cluster.cached_topic_names();
                if let Err(e) = core.cluster.refresh(Some(&topics)).await {
                    tracing::debug!(error = %e, "consumer metadata refresh failed");
                }
                core.wake_fetcher.notify_one();
            }));
        }
        let sleep = wake_at.unwrap_or_else(|| Instant::now() + IDLE_CHECK).min(Instant::now() + IDLE_CHECK);
        tokio::select! {
            Some(answer) = done.recv() => {
                settle(&core, &mut busy_nodes, answer);
                while let Ok(answer) = done.try_recv() {
                    settle(&core, &mut busy_nodes, answer);
                }
            }
            () = core.wake_fetcher.notified() => {}
            () = tokio::time::sleep_until(sleep.into()) => {}
        }
    }
}

/// Starts position lookups and fetches; returns the earliest backoff deadline and
/// whether some leader is unknown.
fn plan(
    core: &Arc<ConsumerCore>,
    busy_nodes: &mut HashSet<i32>,
    done: &mpsc::UnboundedSender<FetchDone>,
) -> (Option<Instant>, bool) {
    let now = Instant::now();
    let mut wake_at: Option<Instant> = None;
    let mut unknown_leader = false;
    let mut by_node: HashMap<i32, Vec<Part>> = HashMap::new();
    // Brokers leading a partition that will want a fetch soon (its buffer is not low yet,
    // or its position is being looked up): it will need the broker's fetch slot.
    let mut refill_soon: HashSet<i32> = HashSet::new();
    let leader_of = |tp: &TopicPartition| {
        core.cluster
            .cached_topic(&tp.topic)
            .and_then(|t| t.partitions.get(tp.partition as usize).map(|p| p.leader))
            .filter(|&l| l >= 0)
    };
    let mut state = core.state.lock();
    for (tp, p) in state.partitions.iter_mut() {
        if p.paused || p.error.is_some() {
            continue;
        }
        if p.in_flight {
            // Looking up its position: it wants its first fetch soon.
            if p.position.is_none() && p.buffered.is_none() {
                refill_soon.extend(leader_of(tp));
            }
            continue;
        }
        if !p.wants_fetch() {
            refill_soon.extend(leader_of(tp));
            continue;
        }
        if let Some(at) = p.retry_at.filter(|at| *at > now) {
            wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            continue;
        }
        let Some(offset) = p.fetch_offset() else {
            p.in_flight = true;
            tokio::spawn(look_up_position(core.clone(), tp.clone(), p.reset, p.epoch));
            continue;
        };
        let Some(node) = leader_of(tp) else {
            unknown_leader = true;
            continue;
        };
        if busy_nodes.contains(&node) {
            continue;
        }
        by_node.entry(node).or_default().push(Part { tp: tp.clone(), offset, epoch: p.epoch });
    }
    for (node, parts) in by_node {
        for part in &parts {
            if let Some(p) = state.partitions.get_mut(&part.tp) {
                p.in_flight = true;
            }
        }
        busy_nodes.insert(node);
        // The broker holds a fetch until data comes or `fetch.max.wait.ms` passes, and a
        // broker takes one fetch at a time. Waiting long for these partitions would keep
        // the refill of a busy one waiting too, so then the wait is short.
        let mut max_wait = core.config.fetch_max_wait;
        if refill_soon.contains(&node) {
            max_wait = max_wait.min(WAIT_WHILE_BUSY);
        }
        tokio::spawn(fetch(core.clone(), node, parts, max_wait, done.clone()));
    }
    (wake_at, unknown_leader)
}

async fn look_up_position(core: Arc<ConsumerCore>, tp: TopicPartition, reset: OffsetReset, epoch: u64) {
    let result = resolve_position(&core, &tp, reset).await;
    let mut state = core.state.lock();
    let Some(p) = state.partitions.get_mut(&tp) else { return };
    if p.epoch != epoch {
        p.in_flight = false;
        return;
    }
    p.in_flight = false;
    match result {
        Ok(offset) => p.position = Some(offset),
        Err(e) if e.is_retriable() => p.retry_at = Some(Instant::now() + core.config.client.retry_backoff),
        Err(e) => p.error = Some(e),
    }
    drop(state);
    core.wake_fetcher.notify_one();
    core.data.notify_waiters();
}

async fn fetch(
    core: Arc<ConsumerCore>,
    node: i32,
    parts: Vec<Part>,
    max_wait: Duration,
    done: mpsc::UnboundedSender<FetchDone>,
) {
    let config = &core.config;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for part in &parts {
        let p = FetchPartition::default()
            .with_partition(part.tp.partition)
            .with_fetch_offset(part.offset)
            .with_partition_max_bytes(config.max_partition_fetch_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == part.tp.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(part.tp.topic.clone())))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait.as_millis() as i32)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(i8::from(config.isolation_level == IsolationLevel::ReadCommitted))
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics);
    let result = async { core.cluster.broker(node).await?.send(&request).await }.await;
    let _ = done.send(FetchDone { node, parts, result });
}

/// Takes a fetch's answer into the partitions' buffers: refused as a whole, every partition
/// retries after the backoff; otherwise each partition's answer is decoded (without the
/// lock) and applied, unless the partition was seeked while the fetch was out.
fn settle(core: &ConsumerCore, busy_nodes: &mut HashSet<i32>, answer: FetchDone) {
    busy_nodes.remove(&answer.node);
    let backoff = Instant::now() + core.config.client.retry_backoff;
    let response = match answer.result {
        Ok(response) if response.error_code == codes::NONE => response,
        refused => {
            let why = refused.map_or_else(|e| e.to_string(), |r| format!("Kafka error {}", r.error_code));
            tracing::debug!(node = answer.node, %why, "fetch failed; retrying after the backoff");
            let mut state = core.state.lock();
            for part in &answer.parts {
                if let Some(p) = state.partitions.get_mut(&part.tp) {
                    p.in_flight = false;
                    p.retry_at = Some(backoff);
                }
            }
            return;
        }
    };
    let mut answers = HashMap::new();
    for topic in &response.responses {
        for data in &topic.partitions {
            answers.insert((topic.topic.0.as_str(), data.partition_index), data);
        }
    }
    let decoded = decode_wanted(core, &answer.parts, &answers);
    let mut outcome = Outcome::default();
    let mut state = core.state.lock();
    for (part, decoded) in answer.parts.iter().zip(decoded) {
        let Some(p) = state.partitions.get_mut(&part.tp) else { continue };
        p.in_flight = false;
        if p.epoch != part.epoch || p.fetch_offset() != Some(part.offset) {
            continue; // Seeked while the fetch was out: its data is for an old position.
        }
        let Some(data) = answers.get(&(part.tp.topic.as_str(), part.tp.partition)) else { continue };
        outcome.add(apply(core, p, part, data, decoded, backoff));
    }
    drop(state);
    if outcome.refresh {
        core.wake_fetcher.notify_one();
    }
    if outcome.arrived {
        core.data.notify_waiters();
    }
}

type PartitionAnswers<'a> = HashMap<(&'a str, i32), &'a kafka_protocol::messages::fetch_response::PartitionData>;

/// Decodes the answers still wanted (no seek since the fetch went out), without the lock.
fn decode_wanted(core: &ConsumerCore, parts: &[Part], answers: &PartitionAnswers<'_>) -> Vec<Option<Result<Decoded>>> {
    let wanted: Vec<Option<Arc<str>>> = {
        let state = core.state.lock();
        parts
            .iter()
            .map(|part| {
                let p = state.partitions.get(&part.tp)?;
                (p.epoch == part.epoch && p.fetch_offset() == Some(part.offset)).then(|| p.topic.clone())
            })
            .collect()
    };
    let read_committed = core.config.isolation_level == IsolationLevel::ReadCommitted;
    parts
        .iter()
        .zip(&wanted)
        .map(|(part, topic)| {
            let topic = topic.as_ref()?;
            let data = answers.get(&(part.tp.topic.as_str(), part.tp.partition))?;
            if data.error_code != codes::NONE {
                return None;
            }
            let aborted: Vec<(i64, i64)> =
                data.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
            let bytes = data.records.clone().unwrap_or_default();
            Some(decode(
                topic,
                part.tp.partition,
                part.offset,
                &bytes,
                &aborted,
                read_committed,
                core.config.check_crcs,
            ))
        })
        .collect()
}

/// What settling a fetch calls for: a metadata refresh, and waking `poll`.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    refresh: bool,
    arrived: bool,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        self.refresh |= other.refresh;
        self.arrived |= other.arrived;
    }
}

/// Applies one partition's answer to its state.
fn apply(
    core: &ConsumerCore,
    p: &mut super::PartitionState,
    part: &Part,
    data: &kafka_protocol::messages::fetch_response::PartitionData,
    decoded: Option<Result<Decoded>>,
    backoff: Instant,
) -> Outcome {
    match data.error_code {
        codes::NONE => {
            p.high_watermark = data.high_watermark;
            let size = data.records.as_ref().map_or(0, Bytes::len);
            Outcome { refresh: false, arrived: buffer(core, p, part, size, decoded) }
        }
        codes::OFFSET_OUT_OF_RANGE if core.config.auto_offset_reset != OffsetReset::None => {
            tracing::info!(topic = %part.tp.topic, partition = part.tp.partition, offset = part.offset, "offset out of range; resetting");
            p.position = None;
            p.reset = core.config.auto_offset_reset;
            Outcome::default()
        }
        codes::NOT_LEADER_OR_FOLLOWER
        | codes::UNKNOWN_TOPIC_OR_PARTITION
        | codes::LEADER_NOT_AVAILABLE
        | codes::FENCED_LEADER_EPOCH
        | codes::UNKNOWN_LEADER_EPOCH
        | codes::KAFKA_STORAGE_ERROR
        | codes::REQUEST_TIMED_OUT => {
            p.retry_at = Some(backoff);
            Outcome { refresh: true, arrived: false }
        }
        code => {
            p.error = ClientError::from_code(
                code,
                format!("fetching {}-{} at offset {}", part.tp.topic, part.tp.partition, part.offset),
                None,
            );
            Outcome { refresh: false, arrived: true }
        }
    }
}

/// Buffers decoded records (or the error decoding found). Returns whether `poll` has
/// something new to return.
fn buffer(
    core: &ConsumerCore,
    p: &mut super::PartitionState,
    part: &Part,
    size: usize,
    decoded: Option<Result<Decoded>>,
) -> bool {
    match decoded {
        None => false,
        Some(Ok((records, next_offset))) if records.is_empty() => {
            // Only control batches or records before the position: move past them.
            if next_offset > part.offset {
                match &mut p.buffered {
                    Some(fetched) => fetched.next_offset = next_offset,
                    None => p.position = Some(next_offset),
                }
                false
            } else if size > 0 {
                p.error = Some(ClientError::RecordTooLarge {
                    topic: part.tp.topic.clone(),
                    size,
                    limit: core.config.max_partition_fetch_bytes as usize,
                    setting: "max.partition.fetch.bytes (the batch at the position is larger)",
                });
                true
            } else {
                false
            }
        }
        Some(Ok((records, next_offset))) => {
            match &mut p.buffered {
                Some(fetched) => fetched.extend(records, next_offset),
                None => p.buffered = Some(Fetched::new(records, next_offset)),
            }
            true
        }
        Some(Err(e)) => {
            p.error = Some(e);
            true
        }
    }
}

/// Decodes a fetched records section from `fetch_offset` on: skips records before it,
/// control batches, and (read_committed) batches of aborted transactions. Returns the
/// records and the offset after the last complete batch. A partial batch at the end
/// (cut by the fetch size) is left for the next fetch.
pub(crate) fn decode(
    topic: &Arc<str>,
    partition: i32,
    fetch_offset: i64,
    bytes: &Bytes,
    aborted: &[(i64, i64)],
    read_committed: bool,
    check_crcs: bool,
) -> Result<Decoded> {
    // Each decode gets its own copy of the name: every record holds a count on it, and
    // the poller drops records of an earlier fetch while the fetcher decodes the next.
    // Sharing one count between the two threads cost a contended atomic per record.
    let topic: &Arc<str> = &Arc::from(&**topic);
    let mut records = Vec::new();
    let mut next_offset = fetch_offset;
    let mut rest: &[u8] = bytes;
    let mut aborted: Vec<(i64, i64)> = aborted.to_vec();
    aborted.sort_by_key(|a| std::cmp::Reverse(a.1));
    let mut aborting: HashSet<i64> = HashSet::new();
    while rest.len() >= crate::record::batch::LOG_OVERHEAD {
        let base_offset = i64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        let corrupt =
            |reason: String| ClientError::Corrupt { topic: topic.to_string(), partition, offset: base_offset, reason };
        let length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        if length >= 0 && rest.len() < crate::record::batch::LOG_OVERHEAD + length as usize {
            break; // partial batch
        }
        let (batch, tail) = RecordBatch::parse(rest).map_err(|e| corrupt(e.to_string()))?;
        rest = tail;
        if check_crcs {
            batch.check_integrity().map_err(|e| corrupt(e.to_string()))?;
        }
        let header = batch.header();
        next_offset = next_offset.max(header.next_offset());
        if header.next_offset() <= fetch_offset {
            continue;
        }
        if read_committed {
            while aborted.last().is_some_and(|a| a.1 <= header.last_offset()) {
                aborting.insert(aborted.pop().expect("checked").0);
            }
            if header.is_control() {
                // An ABORT marker ends the aborted transaction of its producer.
                aborting.remove(&header.producer_id);
                continue;
            }
            if header.is_transactional() && aborting.contains(&header.producer_id) {
                continue;
            }
        }
        if header.is_control() {
            continue;
        }
        let payload = batch.records_payload(64 << 20).map_err(|e| corrupt(e.to_string()))?;
        let owner = match payload {
            std::borrow::Cow::Borrowed(slice) => bytes.slice_ref(slice),
            std::borrow::Cow::Owned(vec) => Bytes::from(vec),
        };
        let timestamp_type = header.timestamp_type();
        let leader_epoch = (header.partition_leader_epoch >= 0).then_some(header.partition_leader_epoch);
        for record in RecordIter::new(&owner, header.records_count) {
            let record = record.map_err(|e| corrupt(e.to_string()))?;
            let offset = header.base_offset + i64::from(record.offset_delta);
            if offset < fetch_offset {
                continue;
            }
            let timestamp = match timestamp_type {
                crate::record::TimestampType::LogAppendTime => header.max_timestamp,
                crate::record::TimestampType::CreateTime => batch.record_timestamp(&record),
            };
            let headers = if record.header_count() == 0 {
                Vec::new()
            } else {
                record
                    .headers()
                    .map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value.map(|v| owner.slice_ref(v))))
                    .collect()
            };
            records.push(ConsumerRecord {
                topic: topic.clone(),
                partition,
                offset,
                timestamp,
                timestamp_type,
                key: record.key.map(|k| owner.slice_ref(k)),
                value: record.value.map(|v| owner.slice_ref(v)),
                headers,
                leader_epoch,
            });
        }
    }
    Ok((records, next_offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Compression, Header, RecordBatchBuilder};

    fn batch(base: i64, values: &[&str], codec: Compression) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new(codec).base_offset(base);
        for v in values {
            builder.append(
                1_700_000_000_000,
                Some(b"k"),
                Some(v.as_bytes()),
                &[Header { key: b"h", value: Some(b"1") }],
            );
        }
        builder.build()
    }

    fn values(records: &[ConsumerRecord]) -> Vec<(i64, String)> {
        records.iter().map(|r| (r.offset, String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())).collect()
    }

    #[test]
    fn decodes_from_the_fetch_offset_and_leaves_a_partial_batch() {
        let topic: Arc<str> = Arc::from("t");
        let mut bytes = batch(10, &["a", "b", "c"], Compression::None);
        bytes.extend(batch(13, &["d", "e"], Compression::Zstd));
        let whole = bytes.len();
        bytes.extend(&batch(15, &["f"], Compression::None)[..30]);
        let bytes = Bytes::from(bytes);
        let (records, next) = decode(&topic, 0, 11, &bytes, &[], false, true).unwrap();
        assert_eq!(values(&records), [(11, "b".into()), (12, "c".into()), (13, "d".into()), (14, "e".into())]);
        assert_eq!(next, 15);
        assert_eq!(records[0].headers, [("h".to_string(), Some(Bytes::from_static(b"1")))]);
        assert!(whole < bytes.len());
    }

    #[test]
    fn a_flipped_bit_is_a_corrupt_error_naming_the_partition_and_offset() {
        let topic: Arc<str> = Arc::from("t");
        let mut bytes = batch(7, &["a"], Compression::None);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let e = decode(&topic, 2, 7, &Bytes::from(bytes), &[], false, true).unwrap_err();
        assert!(e.to_string().starts_with("corrupt records in t-2 at offset 7: CRC32C mismatch"), "{e}");
    }

    #[test]
    fn read_committed_skips_aborted_transactions_and_control_batches() {
        let topic: Arc<str> = Arc::from("t");
        let txn = |base: i64, pid: i64, values: &[&str]| {
            let mut b =
                RecordBatchBuilder::new(Compression::None).base_offset(base).producer(pid, 0, 0).transactional(true);
            for v in values {
                b.append(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
            }
            b.build()
        };
        let marker = |base: i64, pid: i64, commit: bool| {
            let mut b = RecordBatchBuilder::new(Compression::None)
                .base_offset(base)
                .producer(pid, 0, -1)
                .transactional(true)
                .control(true);
            let key = [0u8, 0, 0, u8::from(commit)];
            b.append(1_700_000_000_000, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[]);
            b.build()
        };
        let mut bytes = txn(0, 1, &["aborted-1", "aborted-2"]);
        bytes.extend(txn(2, 2, &["committed"]));
        bytes.extend(marker(3, 1, false));
        bytes.extend(marker(4, 2, true));
        let bytes = Bytes::from(bytes);
        let (records, next) = decode(&topic, 0, 0, &bytes, &[(1, 0)], true, true).unwrap();
        assert_eq!(values(&records), [(2, "committed".into())]);
        assert_eq!(next, 5);
        let (records, _) = decode(&topic, 0, 0, &bytes, &[(1, 0)], false, true).unwrap();
        assert_eq!(records.len(), 3, "read_uncommitted sees every data record");
    }
}
