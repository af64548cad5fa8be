//! The broker over real sockets: every API it advertises, driven with raw Kafka frames,
//! plus the bad-input cases (malformed, truncated, unknown, oversized, corrupt).

#![allow(clippy::unwrap_used)]

mod common;

/// As in the `freshet` binary: hostile array lengths must not abort the process.
#[global_allocator]
static ALLOC: freshet_log::alloc::WireSafeAllocator = freshet_log::alloc::WireSafeAllocator;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::codes;
use freshet_log::record::Compression;
use freshet_log::server::RunningBroker;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

struct TestBroker {
    runtime: tokio::runtime::Runtime,
    running: Option<RunningBroker>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    fn start_with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::embedded(dir.path());
        config.max_request_bytes = 1 << 20;
        configure(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let running = runtime.block_on(Broker::start(config)).unwrap();
        Self { runtime, running: Some(running), _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().local_addr()
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { stream, correlation: 0 }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = self.runtime.block_on(running.shutdown());
        }
    }
}

struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    fn send<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("freshet-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).unwrap();
        request.encode(&mut body, version).unwrap();
        self.write_frame(&body);
        let mut frame = self.read_frame().expect("the broker answered");
        let response_header = ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
        assert_eq!(response_header.correlation_id, self.correlation);
        R::Response::decode(&mut frame, version).unwrap()
    }

    fn write_frame(&mut self, body: &[u8]) {
        self.stream.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
        self.stream.write_all(body).unwrap();
    }

    fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// True if the broker closed the connection (reads EOF) within the timeout.
    fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.stream.read(&mut buf), Ok(0) | Err(_))
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(client: &mut Client, topic: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs);
    let response = client.send(&CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(5000), 7);
    response.topics[0].error_code
}

fn produce(client: &mut Client, topic: &str, partition: i32, records: Vec<u8>, acks: i16) -> Option<(i16, i64)> {
    let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(records))),
        ]),
    ]);
    if acks == 0 {
        // No response: send the frame directly.
        client.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(0)
            .with_request_api_version(9)
            .with_correlation_id(client.correlation);
        let mut body = BytesMut::new();
        header.encode(&mut body, ProduceRequest::header_version(9)).unwrap();
        request.encode(&mut body, 9).unwrap();
        client.write_frame(&body);
        return None;
    }
    let response = client.send(&request, 9);
    let p = &response.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

fn fetch(client: &mut Client, topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> (i16, i64, Bytes) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(name(topic)).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20),
            ])]);
    let response = client.send(&request, 11);
    let p = &response.responses[0].partitions[0];
    (p.error_code, p.high_watermark, p.records.clone().unwrap_or_default())
}

fn list_offset(client: &mut Client, topic: &str, partition: i32, timestamp: i64) -> (i16, i64, i64) {
    let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(name(topic)).with_partitions(vec![
            ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(timestamp),
        ]),
    ]);
    let response = client.send(&request, 7);
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn api_versions_advertises_exactly_what_is_implemented() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    let response = client.send(&ApiVersionsRequest::default(), 3);
    assert_eq!(response.error_code, 0);
    let keys: Vec<(i16, i16, i16)> =
        response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
    assert_eq!(
        keys,
        [
            (0, 3, 12),
            (1, 4, 12),
            (2, 1, 8),
            (3, 0, 12),
            (18, 0, 4),
            (19, 2, 7),
            (22, 0, 4),
            (20, 1, 6),
            (21, 0, 2),
            (23, 2, 4),
            (32, 1, 4),
            (33, 0, 2),
            (37, 0, 3),
            (44, 0, 1),
            (60, 0, 1),
            (10, 0, 4),
            (11, 0, 9),
            (14, 0, 5),
            (12, 0, 4),
            (13, 0, 5),
            (8, 2, 8),
            (9, 1, 8),
            (15, 0, 5),
            (16, 0, 4),
            (42, 0, 2),
            (47, 0, 0),
            (55, 0, 2),
            (43, 0, 2),
            (45, 0, 1),
            (46, 0, 0)
        ]
    );

    // KIP-511: a newer ApiVersions gets UNSUPPORTED_VERSION and the list, in v0 format.
    let header = RequestHeader::default().with_request_api_key(18).with_request_api_version(99).with_correlation_id(7);
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).unwrap();
    client.write_frame(&body);
    let mut frame = client.read_frame().unwrap();
    assert_eq!(ResponseHeader::decode(&mut frame, 0).unwrap().correlation_id, 7);
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(response.error_code, codes::UNSUPPORTED_VERSION);
    assert_eq!(response.api_keys.len(), 30);
}

#[test]
fn reassignment_and_election_apis_answer_at_every_version() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "orders", 1, &[]), 0);
    for version in 0..=1 {
        // Broker 7 does not exist: refused for the partition, with a message.
        let partition = ReassignablePartition::default().with_partition_index(0).with_replicas(Some(vec![BrokerId(7)]));
        let topic = ReassignableTopic::default().with_name(name("orders")).with_partitions(vec![partition]);
        let request = AlterPartitionReassignmentsRequest::default().with_topics(vec![topic]).with_timeout_ms(5000);
        let response = client.send(&request, version);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, codes::INVALID_REPLICA_ASSIGNMENT, "v{version}");
        assert!(p.error_message.as_ref().unwrap().contains("broker 7"), "{p:?}");
    }
    let response = client.send(&ListPartitionReassignmentsRequest::default().with_timeout_ms(5000), 0);
    assert_eq!((response.error_code, response.topics.len()), (0, 0));
    for version in 0..=2 {
        let named = TopicPartitions::default().with_topic(name("orders")).with_partitions(vec![0, 5]);
        let request = ElectLeadersRequest::default().with_topic_partitions(Some(vec![named])).with_timeout_ms(5000);
        let response = client.send(&request, version);
        let codes_seen: Vec<i16> =
            response.replica_election_results[0].partition_result.iter().map(|p| p.error_code).collect();
        assert_eq!(codes_seen, [codes::ELECTION_NOT_NEEDED, codes::UNKNOWN_TOPIC_OR_PARTITION], "v{version}");
    }
    let bad = ElectLeadersRequest::default().with_election_type(5).with_topic_partitions(None);
    assert_eq!(client.send(&bad, 2).error_code, codes::INVALID_REQUEST);
}

#[test]
fn topics_are_created_validated_and_described() {
    let broker = TestBroker::start_with(|c| c.auto_create_topics = false);
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "orders", 3, &[("cleanup.policy", "compact"), ("retention.ms", "1000")]), 0);
    assert_eq!(create_topic(&mut client, "orders", 3, &[]), codes::TOPIC_ALREADY_EXISTS);
    assert_eq!(create_topic(&mut client, "bad name!", 1, &[]), codes::INVALID_TOPIC_EXCEPTION);
    assert_eq!(create_topic(&mut client, "x", 0, &[]), codes::INVALID_PARTITIONS);
    assert_eq!(create_topic(&mut client, "y", 1, &[("retention.ms", "soon")]), codes::INVALID_CONFIG);
    assert_eq!(create_topic(&mut client, "z", 1, &[("no.such.config", "1")]), codes::INVALID_CONFIG);
    let rf3 = CreatableTopic::default().with_name(name("rf3")).with_num_partitions(1).with_replication_factor(3);
    let response = client.send(&CreateTopicsRequest::default().with_topics(vec![rf3]), 7);
    assert_eq!(response.topics[0].error_code, codes::INVALID_REPLICATION_FACTOR);
    assert!(response.topics[0].error_message.as_ref().unwrap().contains("replication factor 3"));
    let dry = CreatableTopic::default().with_name(name("dry")).with_num_partitions(2).with_replication_factor(-1);
    let response = client.send(&CreateTopicsRequest::default().with_topics(vec![dry]).with_validate_only(true), 7);
    assert_eq!(response.topics[0].error_code, 0);

    let all = client.send(&MetadataRequest::default().with_topics(None), 12);
    let names: Vec<String> = all.topics.iter().map(|t| t.name.as_ref().unwrap().0.to_string()).collect();
    assert_eq!(names, ["orders"], "validate_only and refused topics were not created");
    let orders = &all.topics[0];
    assert_eq!(orders.partitions.len(), 3);
    assert_ne!(orders.topic_id, uuid::Uuid::nil());
    assert_eq!(all.brokers[0].port, i32::from(broker.addr().port()));
    let config = broker.running.as_ref().unwrap().broker().log_manager().topic_config("orders");
    assert!(config.compact() && config.retention_ms == 1000);

    // Unknown topics are not created when auto-creation is off; bad names are refused.
    let request = MetadataRequest::default().with_allow_auto_topic_creation(true).with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name("missing"))),
        MetadataRequestTopic::default().with_name(Some(name("no/slashes"))),
    ]));
    let response = client.send(&request, 12);
    assert_eq!(response.topics[0].error_code, codes::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(response.topics[1].error_code, codes::INVALID_TOPIC_EXCEPTION);
    // Every old Metadata version still encodes.
    for version in 0..=12 {
        let response = client.send(&MetadataRequest::default().with_topics(None), version);
        assert!(response.topics.len() == 1 || version == 0, "v{version}");
    }
}

#[test]
fn metadata_auto_creates_topics_when_allowed() {
    let broker = TestBroker::start_with(|c| c.num_partitions = 4);
    let mut client = broker.connect();
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("auto")))]));
    let response = client.send(&request, 12);
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].partitions.len(), 4);
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("manual")))]));
    assert_eq!(client.send(&request, 12).topics[0].error_code, codes::UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn produced_batches_are_fetched_byte_for_byte_and_offsets_listed() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "t", 2, &[]), 0);
    let mut expected = Vec::new();
    for (i, codec) in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let bytes = batch(codec, T0 + i as i64 * 10, &[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))]);
        let (code, base) = produce(&mut client, "t", 1, bytes, -1).unwrap();
        assert_eq!((code, base), (0, i as i64 * 2));
        expected.extend(
            decode(&batch(codec, T0 + i as i64 * 10, &[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))]))
                .into_iter()
                .map(|mut r| {
                    r.offset += i as i64 * 2;
                    r
                }),
        );
    }
    let (code, hwm, records) = fetch(&mut client, "t", 1, 0, 0);
    assert_eq!((code, hwm), (0, 10));
    assert_eq!(decode(&records), expected);
    // From the middle of a batch: the whole batch comes back.
    assert_eq!(decode(&fetch(&mut client, "t", 1, 3, 0).2)[0].offset, 2);
    assert_eq!(fetch(&mut client, "t", 1, 11, 0).0, codes::OFFSET_OUT_OF_RANGE);
    assert_eq!(fetch(&mut client, "t", 7, 0, 0).0, codes::UNKNOWN_TOPIC_OR_PARTITION);

    assert_eq!(list_offset(&mut client, "t", 1, -2), (0, 0, -1));
    assert_eq!(list_offset(&mut client, "t", 1, -1), (0, 10, -1));
    assert_eq!(list_offset(&mut client, "t", 1, T0 + 21), (0, 5, T0 + 21));
    assert_eq!(list_offset(&mut client, "t", 1, T0 + 22), (0, 6, T0 + 30));
    assert_eq!(list_offset(&mut client, "t", 1, -3), (0, 9, T0 + 41));
    assert_eq!(list_offset(&mut client, "t", 1, T0 + 1_000), (0, -1, -1));
    for version in 1..=8 {
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(1).with_timestamp(-1)]),
        ]);
        assert_eq!(client.send(&request, version).topics[0].partitions[0].offset, 10, "v{version}");
    }

    // acks=0 gets no response, but the data is written.
    assert_eq!(produce(&mut client, "t", 0, sized_batch(1, 10, T0), 0), None);
    assert_eq!(list_offset(&mut client, "t", 0, -1), (0, 1, -1));
}

/// One partition of a fetch response: topic, partition, error, high watermark, records.
type FetchedPartition = (String, i32, i16, i64, usize);

/// A fetch in a session: `(session id, epoch)`, the partitions (and offsets) the request
/// names, and the partitions to forget. Returns the top-level error, the session id, and
/// each partition in the response with its error, high watermark and record count.
fn session_fetch(
    client: &mut Client,
    session: (i32, i32),
    partitions: &[(&str, i32, i64)],
    forget: &[(&str, i32)],
) -> (i16, i32, Vec<FetchedPartition>) {
    let topics = partitions
        .iter()
        .map(|&(topic, partition, offset)| {
            FetchTopic::default().with_topic(name(topic)).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20),
            ])
        })
        .collect();
    let forgotten = forget
        .iter()
        .map(|&(topic, p)| fetch_request::ForgottenTopic::default().with_topic(name(topic)).with_partitions(vec![p]))
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten);
    let response = client.send(&request, 12);
    let partitions = response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let records = p.records.as_ref().map_or(0, |r| decode(r).len());
                (t.topic.0.to_string(), p.partition_index, p.error_code, p.high_watermark, records)
            })
        })
        .collect();
    (response.error_code, response.session_id, partitions)
}

#[test]
fn fetch_sessions_send_only_what_changed() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "s", 3, &[]), 0);
    produce(&mut client, "s", 1, sized_batch(2, 10, T0), 1).unwrap();

    // A full fetch at epoch 0 opens a session and answers every partition.
    let all = [("s", 0, 0), ("s", 1, 0), ("s", 2, 0)];
    let (error, id, parts) = session_fetch(&mut client, (0, 0), &all, &[]);
    assert_eq!(error, 0);
    assert!(id > 0, "a session was opened");
    assert_eq!(
        parts,
        [("s".into(), 0, 0, 0, 0), ("s".into(), 1, 0, 2, 2), ("s".into(), 2, 0, 0, 0)],
        "every partition, with records where there are some"
    );

    // The client moves s-1 past what it got; nothing else changed: an empty answer.
    let (error, same, parts) = session_fetch(&mut client, (id, 1), &[("s", 1, 2)], &[]);
    assert_eq!((error, same, parts), (0, id, vec![]));

    // New data on s-2 (fetched at its cached offset 0) is all the next fetch carries.
    produce(&mut client, "s", 2, sized_batch(3, 10, T0), 1).unwrap();
    let (_, _, parts) = session_fetch(&mut client, (id, 2), &[], &[]);
    assert_eq!(parts, [("s".into(), 2, 0, 3, 3)]);

    // A partition added to the session is answered once; a forgotten one no more.
    let (_, _, parts) = session_fetch(&mut client, (id, 3), &[("s", 2, 3), ("ghost", 0, 0)], &[("s", 0)]);
    assert_eq!(parts, [("ghost".into(), 0, codes::UNKNOWN_TOPIC_OR_PARTITION, -1, 0)]);
    produce(&mut client, "s", 0, sized_batch(1, 10, T0), 1).unwrap();
    let (_, _, parts) = session_fetch(&mut client, (id, 4), &[], &[("ghost", 0)]);
    assert_eq!(parts, [], "s-0 was forgotten, so its new record is not sent");

    // Out-of-order epochs and unknown sessions get the top-level codes clients reset on.
    assert_eq!(session_fetch(&mut client, (id, 4), &[], &[]).0, codes::INVALID_FETCH_SESSION_EPOCH);
    assert_eq!(session_fetch(&mut client, (id.wrapping_add(1), 1), &[], &[]).0, codes::FETCH_SESSION_ID_NOT_FOUND);
    // Epoch -1 closes the session and answers as a sessionless full fetch.
    let (error, none, parts) = session_fetch(&mut client, (id, -1), &all, &[]);
    assert_eq!((error, none, parts.len()), (0, 0, 3));
    assert_eq!(session_fetch(&mut client, (id, 5), &[], &[]).0, codes::FETCH_SESSION_ID_NOT_FOUND);
}

/// Encodes a request frame (size prefix included) without sending it.
fn request_frame<R: Request>(request: &R, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id);
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version)).unwrap();
    request.encode(&mut body, version).unwrap();
    frame(&body)
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "pipe", 1, &[]), 0);
    // A long-polling fetch first: the requests behind it must wait for it, not overtake.
    let slow_fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(300)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(name("pipe")).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
        ])]);
    let mut bytes = request_frame(&slow_fetch, 12, 100);
    for correlation in 101..105 {
        bytes.extend(request_frame(&ApiVersionsRequest::default(), 3, correlation));
    }
    let produce = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(name("pipe")).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(sized_batch(1, 10, T0)))),
        ]),
    ]);
    bytes.extend(request_frame(&produce, 9, 105));
    let started = std::time::Instant::now();
    client.stream.write_all(&bytes).unwrap();
    let mut order = Vec::new();
    for _ in 100..106 {
        let frame = client.read_frame().expect("an answer for every pipelined request");
        order.push(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]));
    }
    assert_eq!(order, (100..106).collect::<Vec<_>>());
    assert!(started.elapsed() >= Duration::from_millis(290), "the fetch waited, and everything behind it too");
    assert_eq!(list_offset(&mut client, "pipe", 0, -1), (0, 1, -1), "the pipelined produce was applied");
}

#[test]
fn a_waiting_fetch_returns_as_soon_as_data_arrives() {
    let broker = TestBroker::start();
    let mut setup = broker.connect();
    assert_eq!(create_topic(&mut setup, "wait", 1, &[]), 0);
    let addr = broker.addr();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let stream = TcpStream::connect(addr).unwrap();
        let mut client = Client { stream, correlation: 0 };
        produce(&mut client, "wait", 0, sized_batch(1, 10, T0), 1).unwrap()
    });
    let started = std::time::Instant::now();
    let (code, hwm, records) = fetch(&mut setup, "wait", 0, 0, 10_000);
    let waited = started.elapsed();
    assert_eq!((code, hwm), (0, 1));
    assert_eq!(decode(&records).len(), 1);
    assert!(waited < Duration::from_secs(8), "the fetch returned on the append, not at max_wait_ms ({waited:?})");
    assert_eq!(producer.join().unwrap(), (0, 0));
    // With nothing to read it waits about max_wait_ms.
    let started = std::time::Instant::now();
    let (_, _, records) = fetch(&mut setup, "wait", 0, 1, 200);
    assert!(records.is_empty() && started.elapsed() >= Duration::from_millis(190));
}

#[test]
fn bad_records_get_kafka_error_codes_and_nothing_is_lost() {
    let broker = TestBroker::start_with(|c| c.log_manager.default_log_config.max_message_bytes = 10_000);
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "t", 1, &[]), 0);
    assert_eq!(produce(&mut client, "t", 0, sized_batch(2, 10, T0), 1), Some((0, 0)));
    let good = sized_batch(1, 10, T0);
    let mut crc = good.clone();
    let last = crc.len() - 1;
    crc[last] ^= 1;
    let mut magic = good.clone();
    magic[16] = 1;
    let cases = [
        ("corrupt CRC", crc, codes::CORRUPT_MESSAGE),
        ("wrong magic", magic, codes::INVALID_RECORD),
        ("truncated batch", good[..good.len() - 4].to_vec(), codes::CORRUPT_MESSAGE),
        ("too large", sized_batch(3, 5_000, T0), codes::MESSAGE_TOO_LARGE),
    ];
    for (what, bytes, code) in cases {
        assert_eq!(produce(&mut client, "t", 0, bytes, 1).unwrap().0, code, "{what}");
    }
    assert_eq!(produce(&mut client, "nope", 0, good.clone(), 1).unwrap().0, codes::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(produce(&mut client, "t", 5, good.clone(), 1).unwrap().0, codes::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(produce(&mut client, "t", 0, good.clone(), 2).unwrap().0, codes::INVALID_REQUIRED_ACKS);
    // The good data is intact and the log still accepts writes.
    assert_eq!(produce(&mut client, "t", 0, good, 1), Some((0, 2)));
    assert_eq!(decode(&fetch(&mut client, "t", 0, 0, 0).2).len(), 3);
}

#[test]
fn min_insync_replicas_above_one_refuses_acks_all() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "safe", 1, &[("min.insync.replicas", "2")]), 0);
    assert_eq!(produce(&mut client, "safe", 0, sized_batch(1, 10, T0), -1).unwrap().0, codes::NOT_ENOUGH_REPLICAS);
    assert_eq!(produce(&mut client, "safe", 0, sized_batch(1, 10, T0), 1).unwrap(), (0, 0));
}

/// Sends `bytes` raw on a fresh connection and reports whether the broker closed it.
fn raw(broker: &TestBroker, bytes: &[u8]) -> bool {
    let mut client = broker.connect();
    client.stream.write_all(bytes).unwrap();
    client.is_closed()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn malformed_frames_close_the_connection_and_the_broker_carries_on() {
    let broker = TestBroker::start();
    let mut setup = broker.connect();
    assert_eq!(create_topic(&mut setup, "t", 1, &[]), 0);
    assert_eq!(produce(&mut setup, "t", 0, sized_batch(1, 10, T0), 1), Some((0, 0)));

    // Unknown API key 999.
    assert!(raw(&broker, &frame(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff])));
    // A known key that is not implemented (OffsetCommit = 8).
    assert!(raw(&broker, &frame(&[0, 8, 0, 2, 0, 0, 0, 1, 0xff, 0xff])));
    // Produce at an unsupported version.
    assert!(raw(&broker, &frame(&[0, 0, 0, 99, 0, 0, 0, 1, 0xff, 0xff])));
    // Too short for a header.
    assert!(raw(&broker, &frame(&[0, 3, 0])));
    // A Metadata request whose body is garbage.
    assert!(raw(&broker, &frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff])));
    // A Metadata v1 request claiming 2^31-1 topics in a 14-byte frame.
    assert!(raw(&broker, &frame(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff])));
    // A CreateTopics v7 (flexible) request claiming a huge compact array.
    assert!(raw(&broker, &frame(&[0, 19, 0, 7, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x07])));
    // Trailing bytes after a valid ApiVersions v0 request are ignored, as Kafka does.
    {
        let mut client = broker.connect();
        client.stream.write_all(&frame(&[0, 18, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 1, 2, 3])).unwrap();
        let mut answer = client.read_frame().expect("answered");
        assert_eq!(ResponseHeader::decode(&mut answer, 0).unwrap().correlation_id, 9);
    }
    // Negative and oversized frame sizes are refused before any allocation.
    assert!(raw(&broker, &(-5i32).to_be_bytes()));
    assert!(raw(&broker, &((1 << 20) + 1i32).to_be_bytes()));
    // A truncated request: the size promises more than ever arrives.
    {
        let mut client = broker.connect();
        client.stream.write_all(&100i32.to_be_bytes()).unwrap();
        client.stream.write_all(&[0, 18, 0, 0]).unwrap();
        client.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(client.is_closed());
    }
    // An invalid topic name in Metadata is an error code, not a closed connection.
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("..")))]));
    assert_eq!(setup.send(&request, 12).topics[0].error_code, codes::INVALID_TOPIC_EXCEPTION);

    // After all that, the broker serves and the data is intact.
    let mut client = broker.connect();
    assert_eq!(decode(&fetch(&mut client, "t", 0, 0, 0).2).len(), 1);
}

#[test]
fn connections_beyond_max_connections_are_closed() {
    let broker = TestBroker::start_with(|c| c.max_connections = 2);
    let mut a = broker.connect();
    let mut b = broker.connect();
    assert_eq!(a.send(&ApiVersionsRequest::default(), 3).error_code, 0);
    assert_eq!(b.send(&ApiVersionsRequest::default(), 3).error_code, 0);
    let mut c = broker.connect();
    assert!(c.is_closed(), "a third connection is refused");
    drop(a);
    // The slot frees up once a connection ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = broker.connect();
        d.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        d.correlation += 1;
        let header =
            RequestHeader::default().with_request_api_key(18).with_request_api_version(0).with_correlation_id(1);
        let mut body = BytesMut::new();
        header.encode(&mut body, 1).unwrap();
        // Until the broker has noticed the freed slot, it closes new connections at once,
        // which can break the pipe before the request is written: try again.
        let frame = [&(body.len() as i32).to_be_bytes()[..], &body].concat();
        if d.stream.write_all(&frame).is_ok() && d.read_frame().is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the freed slot was never reused");
    }
}

#[test]
fn data_and_topic_configs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(Broker::start(BrokerConfig::embedded(dir.path()))).unwrap();
    let stream = TcpStream::connect(running.local_addr()).unwrap();
    let mut client = Client { stream, correlation: 0 };
    assert_eq!(create_topic(&mut client, "kept", 2, &[("retention.ms", "123456")]), 0);
    assert_eq!(produce(&mut client, "kept", 1, sized_batch(3, 10, T0), 1), Some((0, 0)));
    runtime.block_on(running.shutdown()).unwrap();

    let running = runtime.block_on(Broker::start(BrokerConfig::embedded(dir.path()))).unwrap();
    let stream = TcpStream::connect(running.local_addr()).unwrap();
    let mut client = Client { stream, correlation: 0 };
    assert_eq!(decode(&fetch(&mut client, "kept", 1, 0, 0).2).len(), 3);
    assert_eq!(running.broker().log_manager().topic_config("kept").retention_ms, 123_456);
    let metadata = client.send(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(metadata.topics[0].partitions.len(), 2);
    runtime.block_on(running.shutdown()).unwrap();
}

/// Kafka's config resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn describe_topic_configs(client: &mut Client, topic: &str) -> std::collections::BTreeMap<String, (String, i8)> {
    describe_configs(client, TOPIC, topic)
}

/// Every config of a resource: name -> (value, source).
fn describe_configs(
    client: &mut Client,
    resource_type: i8,
    name: &str,
) -> std::collections::BTreeMap<String, (String, i8)> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.into())),
    ]);
    let response = client.send(&request, 4);
    assert_eq!(response.results[0].error_code, 0, "{:?}", response.results[0].error_message);
    response.results[0]
        .configs
        .iter()
        .map(|c| (c.name.to_string(), (c.value.as_ref().unwrap().to_string(), c.config_source)))
        .collect()
}

fn incremental(client: &mut Client, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    incremental_on(client, TOPIC, topic, ops).0
}

/// IncrementalAlterConfigs on one resource: the error code and message.
fn incremental_on(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, String) {
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_config_operation(*op)
                .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configs(configs),
    ]);
    let response = client.send(&request, 1);
    let r = &response.responses[0];
    (r.error_code, r.error_message.as_ref().map(ToString::to_string).unwrap_or_default())
}

#[test]
fn broker_defaults_change_at_run_time_and_persist() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let connect =
        |running: &RunningBroker| Client { stream: TcpStream::connect(running.local_addr()).unwrap(), correlation: 0 };
    let running = runtime.block_on(Broker::start(BrokerConfig::embedded(dir.path()))).unwrap();
    let mut client = connect(&running);
    assert_eq!(create_topic(&mut client, "follows", 1, &[]), 0);
    assert_eq!(create_topic(&mut client, "pinned", 1, &[("retention.ms", "5000")]), 0);

    // The cluster-wide default ("") reaches topics without an override, at once.
    assert_eq!(incremental_on(&mut client, BROKER, "", &[("log.retention.ms", SET, Some("1234"))]).0, 0);
    assert_eq!(describe_topic_configs(&mut client, "follows")["retention.ms"], ("1234".into(), 3));
    assert_eq!(describe_topic_configs(&mut client, "pinned")["retention.ms"], ("5000".into(), 1));
    assert_eq!(running.broker().log_manager().topic_config("follows").retention_ms, 1234);
    assert_eq!(running.broker().log_manager().topic_config("pinned").retention_ms, 5000);
    // This broker's own setting wins over the cluster-wide one.
    assert_eq!(incremental_on(&mut client, BROKER, "1", &[("log.retention.ms", SET, Some("999"))]).0, 0);
    assert_eq!(describe_configs(&mut client, BROKER, "1")["log.retention.ms"], ("999".into(), 2));
    // Lists take APPEND; topics created later get the new defaults too.
    let append = [("log.cleanup.policy", APPEND, Some("compact"))];
    assert_eq!(incremental_on(&mut client, BROKER, "", &append).0, 0);
    assert_eq!(describe_configs(&mut client, BROKER, "1")["log.cleanup.policy"], ("compact,delete".into(), 3));
    assert_eq!(create_topic(&mut client, "later", 1, &[]), 0);
    assert_eq!(describe_topic_configs(&mut client, "later")["cleanup.policy"].0, "compact,delete");

    // Refusals: static keys, bad values, other brokers. Nothing changes.
    let (code, message) = incremental_on(&mut client, BROKER, "", &[("num.partitions", SET, Some("4"))]);
    assert_eq!(code, codes::INVALID_REQUEST);
    assert!(message.contains("num.partitions"), "{message}");
    let bad = [("log.retention.ms", SET, Some("soon"))];
    assert_eq!(incremental_on(&mut client, BROKER, "", &bad).0, codes::INVALID_CONFIG);
    assert_eq!(
        incremental_on(&mut client, BROKER, "7", &[("log.retention.ms", SET, Some("1"))]).0,
        codes::INVALID_REQUEST
    );
    assert_eq!(describe_topic_configs(&mut client, "follows")["retention.ms"].0, "999");
    runtime.block_on(running.shutdown()).unwrap();

    // They persist; DELETE falls back to the next layer.
    let running = runtime.block_on(Broker::start(BrokerConfig::embedded(dir.path()))).unwrap();
    let mut client = connect(&running);
    assert_eq!(describe_topic_configs(&mut client, "follows")["retention.ms"], ("999".into(), 2));
    assert_eq!(running.broker().log_manager().topic_config("follows").retention_ms, 999);
    assert_eq!(incremental_on(&mut client, BROKER, "1", &[("log.retention.ms", DELETE, None)]).0, 0);
    assert_eq!(describe_topic_configs(&mut client, "follows")["retention.ms"], ("1234".into(), 3));
    assert_eq!(incremental_on(&mut client, BROKER, "", &[("log.retention.ms", DELETE, None)]).0, 0);
    let static_default = BrokerConfig::default().log_manager.default_log_config.retention_ms.to_string();
    assert_eq!(describe_topic_configs(&mut client, "follows")["retention.ms"], (static_default, 5));
    runtime.block_on(running.shutdown()).unwrap();
}

#[test]
fn topics_are_reconfigured_grown_trimmed_and_deleted() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "a", 1, &[("retention.ms", "1000")]), 0);

    let configs = describe_topic_configs(&mut client, "a");
    assert_eq!(configs["retention.ms"], ("1000".to_string(), 1), "an override is a topic config");
    assert_eq!(configs["segment.bytes"].1, 5, "the rest are defaults");

    assert_eq!(
        incremental(&mut client, "a", &[("retention.ms", 0, Some("5000")), ("cleanup.policy", 2, Some("compact"))]),
        0
    );
    let configs = describe_topic_configs(&mut client, "a");
    assert_eq!(configs["retention.ms"].0, "5000");
    assert_eq!(configs["cleanup.policy"].0, "delete,compact", "described as stored, like Kafka");
    let live = broker.running.as_ref().unwrap().broker().log_manager().topic_config("a");
    assert!(live.compact() && live.delete() && live.retention_ms == 5000, "the running logs use the new config");
    assert_eq!(incremental(&mut client, "a", &[("cleanup.policy", 3, Some("delete"))]), 0);
    assert_eq!(describe_topic_configs(&mut client, "a")["cleanup.policy"].0, "compact");
    assert_eq!(incremental(&mut client, "a", &[("retention.ms", 0, Some("later"))]), codes::INVALID_CONFIG);
    assert_eq!(incremental(&mut client, "a", &[("retention.ms", 2, Some("1"))]), codes::INVALID_CONFIG);
    assert_eq!(incremental(&mut client, "missing", &[("retention.ms", 1, None)]), codes::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(incremental(&mut client, "a", &[("retention.ms", 1, None)]), 0);
    assert_eq!(describe_topic_configs(&mut client, "a")["retention.ms"].1, 5);

    // AlterConfigs replaces all overrides.
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("a"))
            .with_configs(vec![
                alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("segment.bytes"))
                    .with_value(Some(StrBytes::from_static_str("1048576"))),
            ]),
    ]);
    assert_eq!(client.send(&request, 2).responses[0].error_code, 0);
    let configs = describe_topic_configs(&mut client, "a");
    assert_eq!((configs["segment.bytes"].0.as_str(), configs["cleanup.policy"].0.as_str()), ("1048576", "delete"));

    // Broker configs are described, not changed at run time.
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1")),
    ]);
    let response = client.send(&request, 4);
    assert!(response.results[0].configs.iter().any(|c| c.name.as_str() == "num.partitions"));

    // CreatePartitions grows, never shrinks.
    let grow = |count| {
        CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default().with_name(name("a")).with_count(count),
        ])
    };
    assert_eq!(client.send(&grow(3), 3).results[0].error_code, 0);
    assert_eq!(client.send(&grow(2), 3).results[0].error_code, codes::INVALID_PARTITIONS);
    let metadata = client.send(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(metadata.topics[0].partitions.len(), 3);
    assert_eq!(produce(&mut client, "a", 2, sized_batch(1, 10, T0), 1), Some((0, 0)));

    // DeleteRecords moves the low watermark; -1 means the high watermark.
    assert_eq!(produce(&mut client, "a", 0, sized_batch(5, 10, T0), 1), Some((0, 0)));
    let delete = |offset| {
        DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(name("a")).with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset),
            ]),
        ])
    };
    let low =
        |r: DeleteRecordsResponse| (r.topics[0].partitions[0].error_code, r.topics[0].partitions[0].low_watermark);
    assert_eq!(low(client.send(&delete(3), 2)), (0, 3));
    assert_eq!(low(client.send(&delete(99), 2)).0, codes::OFFSET_OUT_OF_RANGE);
    assert_eq!(low(client.send(&delete(-1), 2)), (0, 5));
    assert_eq!(list_offset(&mut client, "a", 0, -2), (0, 5, -1));

    // OffsetForLeaderEpoch answers from the epoch cache.
    let ask = |current, epoch| {
        OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default().with_topic(name("a")).with_partitions(
                vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(epoch),
                ],
            ),
        ])
    };
    let answer = client.send(&ask(-1, 0), 4);
    let p = &answer.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 5));
    assert_eq!(client.send(&ask(7, 0), 4).topics[0].partitions[0].error_code, codes::UNKNOWN_LEADER_EPOCH);

    let cluster = client.send(&DescribeClusterRequest::default(), 1);
    assert_eq!(cluster.brokers[0].port, i32::from(broker.addr().port()));

    // DeleteTopics removes metadata and data.
    let delete_topic = DeleteTopicsRequest::default().with_topic_names(vec![name("a")]);
    assert_eq!(client.send(&delete_topic, 5).responses[0].error_code, 0);
    assert_eq!(client.send(&delete_topic, 5).responses[0].error_code, codes::UNKNOWN_TOPIC_OR_PARTITION);
    assert!(client.send(&MetadataRequest::default().with_topics(None), 12).topics.is_empty());
    assert!(!broker._dir.path().join("a-0").exists());
    assert_eq!(fetch(&mut client, "a", 0, 0, 0).0, codes::UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn the_offsets_topic_refuses_administrative_changes() {
    let broker = TestBroker::start();
    let mut client = broker.connect();
    assert_eq!(create_topic(&mut client, "t", 1, &[]), 0);
    // The first commit creates __consumer_offsets.
    let commit =
        OffsetCommitRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default().with_name(name("t")).with_partitions(vec![
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(7),
            ]),
        ]);
    assert_eq!(client.send(&commit, 2).topics[0].partitions[0].error_code, 0);
    const OFFSETS: &str = "__consumer_offsets";
    let partitions_before = client.send(&MetadataRequest::default().with_topics(None), 12).topics.len();

    let delete_topic = DeleteTopicsRequest::default().with_topic_names(vec![name(OFFSETS)]);
    assert_eq!(client.send(&delete_topic, 5).responses[0].error_code, codes::INVALID_TOPIC_EXCEPTION);

    let grow = CreatePartitionsRequest::default().with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default().with_name(name(OFFSETS)).with_count(60),
    ]);
    let answer = client.send(&grow, 3);
    assert_eq!(answer.results[0].error_code, codes::INVALID_TOPIC_EXCEPTION);
    assert!(answer.results[0].error_message.as_ref().unwrap().contains("internal"));

    assert_eq!(
        incremental(&mut client, OFFSETS, &[("cleanup.policy", 0, Some("delete"))]),
        codes::INVALID_TOPIC_EXCEPTION
    );
    let replace = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(StrBytes::from_static_str(OFFSETS))
            .with_configs(vec![]),
    ]);
    assert_eq!(client.send(&replace, 2).responses[0].error_code, codes::INVALID_TOPIC_EXCEPTION);

    let partition = freshet_log::broker::group::coordinator::partition_for("g", 50);
    let truncate = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default().with_name(name(OFFSETS)).with_partitions(vec![
            delete_records_request::DeleteRecordsPartition::default().with_partition_index(partition).with_offset(-1),
        ]),
    ]);
    assert_eq!(client.send(&truncate, 2).topics[0].partitions[0].error_code, codes::INVALID_TOPIC_EXCEPTION);
    assert_eq!(list_offset(&mut client, OFFSETS, partition, -2).1, 0, "nothing was truncated");

    // Nothing changed: still compacted, still 50 partitions, the commit still there.
    assert_eq!(describe_topic_configs(&mut client, OFFSETS)["cleanup.policy"].0, "compact");
    let metadata = client.send(&MetadataRequest::default().with_topics(None), 12);
    assert_eq!(metadata.topics.len(), partitions_before);
    let offsets = metadata.topics.iter().find(|t| t.name.as_ref().unwrap().0.as_str() == OFFSETS).unwrap();
    assert_eq!(offsets.partitions.len(), 50);
    let fetch =
        OffsetFetchRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0]),
        ]));
    assert_eq!(client.send(&fetch, 5).topics[0].partitions[0].committed_offset, 7);
}
