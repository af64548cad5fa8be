//! The producer and admin client against an embedded broker: delivery, partitioning,
//! back-pressure, oversized records, unknown topics and retries through connection cuts.

#![allow(clippy::unwrap_used)]

mod support;

use freshet_log::TopicPartition;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use freshet_log::client::partitioner::partition_for_key;
use freshet_log::client::{
    AdminClient, AlterConfigOp, ClientConfig, ClientError, ConfigResource, NewTopic, OffsetSpec, Producer,
    ProducerConfig, ProducerRecord,
};

/// A broker behind a proxy, a topic "slow", and a producer with 20,000 bytes of
/// `buffer.memory` that waits 300 ms for room.
async fn slow_topic_behind_a_proxy()
-> (tempfile::TempDir, freshet_log::server::RunningBroker, support::proxy::Proxy, AdminClient, Producer) {
    let (dir, broker, proxy) = support::start_behind_proxy().await;
    let admin = AdminClient::connect(ClientConfig::new(&proxy.addr())).await.unwrap();
    admin.create_topic(NewTopic::new("slow", 1)).await.unwrap();
    let mut config = ProducerConfig::new(&proxy.addr());
    config.set_all([("buffer.memory", "20000"), ("max.block.ms", "300"), ("batch.size", "4096")]).unwrap();
    let producer = Producer::connect(config).await.unwrap();
    (dir, broker, proxy, admin, producer)
}

async fn latest_offsets(admin: &AdminClient, topic: &str, partitions: i32) -> Vec<i64> {
    let specs: Vec<_> =
        (0..partitions).map(|p| (TopicPartition::new(topic.to_string(), p), OffsetSpec::Latest)).collect();
    let mut listed = admin.list_offsets(&specs, false).await.unwrap();
    listed.sort_by_key(|(tp, _)| tp.partition);
    listed.into_iter().map(|(_, r)| r.unwrap().offset).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_land_by_murmur2_and_offsets_are_contiguous() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("keyed", 3)).await.unwrap();
    let producer = Producer::connect(ProducerConfig::new(&addr)).await.unwrap();
    assert!(producer.is_idempotent());

    let mut deliveries = Vec::new();
    for i in 0..3000 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let record = ProducerRecord::new("keyed").key(&key).value(&value);
        deliveries.push((key.clone(), producer.send(record).await.unwrap()));
    }
    let mut next: HashMap<i32, i64> = HashMap::new();
    for (key, delivery) in deliveries {
        let metadata = delivery.await.unwrap();
        assert_eq!(metadata.partition, partition_for_key(key.as_bytes(), 3), "{key}");
        let expected = next.entry(metadata.partition).or_default();
        assert_eq!(metadata.offset, *expected, "offsets of one partition follow the send order");
        *expected += 1;
        assert!(metadata.timestamp > 1_700_000_000_000);
    }
    let latest = latest_offsets(&admin, "keyed", 3).await;
    assert_eq!(latest, (0..3).map(|p| next[&p]).collect::<Vec<_>>());
    assert_eq!(latest.iter().sum::<i64>(), 3000);
    producer.close().await.unwrap();
    let e = producer.send(ProducerRecord::new("keyed").value("late")).await.unwrap_err();
    assert!(matches!(e, ClientError::Closed(_)), "{e}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sends_fail_alone_with_typed_errors() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("small", 1)).await.unwrap();
    let mut config = ProducerConfig::new(&addr);
    config.set("max.request.size", "10000").unwrap();
    let producer = Producer::connect(config).await.unwrap();

    let before = producer.send(ProducerRecord::new("small").value("before")).await.unwrap();
    let big = vec![0u8; 20_000];
    let e = producer.send(ProducerRecord::new("small").value(&big)).await.unwrap_err();
    assert!(matches!(e, ClientError::RecordTooLarge { setting: "max.request.size", limit: 10_000, .. }), "{e}");
    assert!(e.to_string().contains("larger than max.request.size"), "{e}");
    let e = producer.send(ProducerRecord::new("nowhere").value("x")).await.unwrap_err();
    assert_eq!(e.code(), Some(3), "unknown topic: {e}");
    assert!(e.to_string().contains("UnknownTopicOrPartition") && e.to_string().contains("nowhere"), "{e}");
    let e = producer.send(ProducerRecord::new("small").partition(5).value("x")).await.unwrap_err();
    assert!(e.to_string().contains("partition 5 does not exist"), "{e}");
    let after = producer.send(ProducerRecord::new("small").value("after")).await.unwrap();
    assert_eq!(before.await.unwrap().offset, 0);
    assert_eq!(after.await.unwrap().offset, 1, "the failed sends left the others alone");
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_all_places_and_orders_like_send_and_fails_bad_records_alone() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("many", 3)).await.unwrap();
    admin.create_topic(NewTopic::new("other", 1)).await.unwrap();
    let mut config = ProducerConfig::new(&addr);
    // Small enough that the 3,000 records below do not fit at once: the run falls back to
    // reserving record by record, waiting for batches to complete.
    config.set_all([("max.request.size", "10000"), ("buffer.memory", "60000"), ("batch.size", "4096")]).unwrap();
    let producer = Producer::connect(config).await.unwrap();

    let keys: Vec<String> = (0..3000).map(|i| format!("key-{i}")).collect();
    let big = vec![0u8; 20_000];
    let mut records: Vec<ProducerRecord> = keys.iter().map(|k| ProducerRecord::new("many").key(k).value(k)).collect();
    records.insert(10, ProducerRecord::new("many").key("big").value(&big));
    records.insert(20, ProducerRecord::new("many").partition(7).value("x"));
    records.insert(30, ProducerRecord::new("nowhere").key("k").value("x"));
    records.insert(40, ProducerRecord::new("other").value("unkeyed"));
    records.insert(50, ProducerRecord::new("other").partition(0).value("to partition 0"));
    let outcome = producer.send_all(&records).await;

    let failed: HashMap<usize, ClientError> = outcome.failed.into_iter().collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    let e = &failed[&10];
    assert!(matches!(e, ClientError::RecordTooLarge { setting: "max.request.size", .. }), "{e}");
    assert!(failed[&20].to_string().contains("partition 7 does not exist"), "{}", failed[&20]);
    assert_eq!(failed[&30].code(), Some(3), "unknown topic: {}", failed[&30]);
    // One delivery per batch, for its last record: per partition, the largest offset is
    // the number of records sent there, less one.
    let mut sent: HashMap<(&str, i32), i64> = HashMap::new();
    for (_, record) in records.iter().enumerate().filter(|(i, _)| !failed.contains_key(i)) {
        let partition = match (record.topic, record.key) {
            ("many", Some(key)) => partition_for_key(key, 3),
            _ => 0,
        };
        *sent.entry((record.topic, partition)).or_default() += 1;
    }
    let mut last: HashMap<(&str, i32), i64> = HashMap::new();
    for (i, delivery) in outcome.deliveries {
        assert!(!failed.contains_key(&i), "no delivery for a failed record");
        let metadata = delivery.await.unwrap();
        let record = &records[i];
        if let Some(key) = record.key.filter(|_| record.topic == "many") {
            assert_eq!(metadata.partition, partition_for_key(key, 3), "record {i}");
        }
        let max = last.entry((record.topic, metadata.partition)).or_insert(-1);
        assert!(metadata.offset > *max, "a later batch of a partition has later offsets");
        *max = metadata.offset;
    }
    let expected: HashMap<(&str, i32), i64> = sent.iter().map(|(tp, n)| (*tp, n - 1)).collect();
    assert_eq!(last, expected, "the last delivery of each partition is its last record");
    assert_eq!(expected[&("other", 0)], 1, "the unkeyed record and the one sent to partition 0");
    assert_eq!(latest_offsets(&admin, "many", 3).await.iter().sum::<i64>(), 3000, "every good record, once");

    // Runs that fit in buffer.memory at once, each filling several 4 KiB batches per
    // partition: the deliveries still name the last record of every batch.
    let before = latest_offsets(&admin, "many", 3).await;
    let mut last = before.iter().map(|o| o - 1).collect::<Vec<_>>();
    let keyed: Vec<ProducerRecord> = keys.iter().map(|k| ProducerRecord::new("many").key(k).value(k)).collect();
    for chunk in keyed.chunks(1000) {
        let outcome = producer.send_all(chunk).await;
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
        assert!(outcome.deliveries.len() > 3, "several batches per partition");
        let mut expected = last.clone();
        for record in chunk {
            expected[partition_for_key(record.key.unwrap(), 3) as usize] += 1;
        }
        for (i, delivery) in outcome.deliveries {
            let metadata = delivery.await.unwrap();
            assert_eq!(metadata.partition, partition_for_key(chunk[i].key.unwrap(), 3));
            let p = metadata.partition as usize;
            assert!(metadata.offset > last[p], "batches of a partition in order");
            last[p] = metadata.offset;
        }
        assert_eq!(last, expected, "each partition's last delivery is its last record");
    }
    assert_eq!(latest_offsets(&admin, "many", 3).await.iter().sum::<i64>(), 6000);
    producer.close().await.unwrap();
    let late = producer.send_all(&[ProducerRecord::new("many").key("k").value("late")]).await;
    assert!(matches!(late.failed[..], [(0, ClientError::Closed(_))]), "{late:?}");
    assert!(late.deliveries.is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_all_gives_each_record_its_own_max_block_wait() {
    let (_dir, broker, proxy, admin, producer) = slow_topic_behind_a_proxy().await;
    let value = vec![1u8; 1000];
    producer.send(ProducerRecord::new("slow").key("k").value(&value)).await.unwrap().await.unwrap();
    // Nothing is acknowledged while the proxy holds: the buffer fills and stays full.
    proxy.pause();
    let records: Vec<ProducerRecord> = (0..23).map(|_| ProducerRecord::new("slow").key("k").value(&value)).collect();
    let started = Instant::now();
    let outcome = producer.send_all(&records).await;
    let waited = started.elapsed();
    let timed_out = outcome.failed.iter().filter(|(_, e)| matches!(e, ClientError::Timeout { .. })).count();
    assert!(timed_out >= 3, "{} records fit in 20,000 bytes of 1 KB records", 23 - timed_out);
    assert_eq!(outcome.failed.len(), timed_out, "{:?}", outcome.failed);
    // Each record that found no room waited its own 300 ms, as `send` would have.
    assert!(waited >= Duration::from_millis(300) * timed_out as u32 - Duration::from_millis(50), "{waited:?}");
    proxy.resume();
    producer.flush().await;
    let outcome = producer.send_all(&records[..2]).await;
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    outcome.deliveries.into_iter().next().unwrap().1.await.unwrap();
    let accepted = (23 - timed_out) as i64;
    assert_eq!(latest_offsets(&admin, "slow", 1).await, [1 + accepted + 2], "the records that found room, once");
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bootstrap_fails_within_the_connect_timeout() {
    // A port nobody listens on, and an address that drops packets (TEST-NET-1).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    for addr in [closed.as_str(), "192.0.2.1:9092"] {
        let mut config = ProducerConfig::new(addr);
        config.set("socket.connection.setup.timeout.ms", "300").unwrap();
        let started = Instant::now();
        let e = Producer::connect(config).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{addr}: took {:?}", started.elapsed());
        assert!(e.to_string().contains("no broker reachable") && e.to_string().contains(addr), "{e}");
        let mut admin = ClientConfig::new(addr);
        admin.connect_timeout = Duration::from_millis(300);
        assert!(AdminClient::connect(admin).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_makes_send_wait_then_fail_after_max_block() {
    // The broker sits behind a proxy that stops forwarding: nothing is acknowledged, so
    // buffered records never free their memory.
    let (_dir, broker, proxy, admin, producer) = slow_topic_behind_a_proxy().await;
    let value = vec![1u8; 1000];
    producer.send(ProducerRecord::new("slow").value(&value)).await.unwrap().await.unwrap();
    proxy.pause();
    let mut accepted = 0;
    let started = Instant::now();
    let error = loop {
        match producer.send(ProducerRecord::new("slow").value(&value)).await {
            Ok(delivery) => {
                accepted += 1;
                drop(delivery);
            }
            Err(e) => break e,
        }
        assert!(accepted < 100, "buffer.memory does not bound the buffered records");
    };
    assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("buffer.memory"), "{error}");
    assert!((15..=20).contains(&accepted), "{accepted} records of 1 KB fit in 20 000 bytes");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Once the broker answers again, the buffered records are delivered and room frees up.
    proxy.resume();
    producer.flush().await;
    producer.send(ProducerRecord::new("slow").value(&value)).await.unwrap().await.unwrap();
    assert_eq!(latest_offsets(&admin, "slow", 1).await, [accepted + 2]);
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_cut_connections_keep_order_without_duplicates() {
    let (_dir, broker, proxy) = support::start_behind_proxy().await;
    let admin = AdminClient::connect(ClientConfig::new(&proxy.addr())).await.unwrap();
    admin.create_topic(NewTopic::new("cut", 2)).await.unwrap();
    let mut config = ProducerConfig::new(&proxy.addr());
    config
        .set_all([
            ("batch.size", "2000"),
            ("linger.ms", "1"),
            ("retry.backoff.ms", "20"),
            ("request.timeout.ms", "2000"),
        ])
        .unwrap();
    let producer = Producer::connect(config).await.unwrap();
    let total = 20_000;
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut deliveries = Vec::with_capacity(total);
            for i in 0..total {
                let value = format!("{i:08}");
                let record = ProducerRecord::new("cut").partition((i % 2) as i32).value(&value);
                deliveries.push(producer.send(record).await.unwrap());
                if i % 250 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            deliveries
        })
    };
    // Cut every connection a few times while records flow, including mid-request.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        proxy.cut_all();
    }
    let deliveries = sender.await.unwrap();
    let mut next = [0i64; 2];
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let metadata = tokio::time::timeout(Duration::from_secs(30), delivery).await.unwrap().unwrap();
        let p = metadata.partition as usize;
        assert_eq!(p, i % 2);
        assert_eq!(metadata.offset, next[p], "record {i}: each partition holds every record once, in order");
        next[p] += 1;
    }
    assert!(proxy.connections() >= 6, "the producer reconnected after each cut: {}", proxy.connections());
    assert_eq!(latest_offsets(&admin, "cut", 2).await, [total as i64 / 2, total as i64 / 2]);
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_topics_configs_partitions_and_records() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("a", 2).config("retention.ms", "3600000")).await.unwrap();
    let e = admin.create_topic(NewTopic::new("a", 2)).await.unwrap_err();
    assert_eq!(e.code(), Some(36), "{e}");
    let results =
        admin.create_topics_each(&[NewTopic::new("b", 1), NewTopic::new("bad/name", 1)], false).await.unwrap();
    assert!(results[0].1.is_ok() && results[1].1.is_err());

    let names: Vec<String> = admin.list_topics(false).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["a", "b"]);
    let described = admin.describe_topics(&["a"]).await.unwrap();
    assert_eq!(described[0].partitions.len(), 2);
    assert_eq!(admin.describe_topics(&["zzz"]).await.unwrap_err().code(), Some(3));

    let topic = ConfigResource::Topic("a".into());
    let entries = admin.describe_configs(&topic, &["retention.ms", "cleanup.policy"]).await.unwrap();
    assert_eq!(entries[1].name, "retention.ms");
    assert_eq!((entries[1].value.as_deref(), entries[1].source), (Some("3600000"), "DYNAMIC_TOPIC_CONFIG"));
    admin.alter_configs(&topic, &[AlterConfigOp::Set("cleanup.policy".into(), "compact".into())]).await.unwrap();
    admin.alter_configs(&topic, &[AlterConfigOp::Delete("retention.ms".into())]).await.unwrap();
    let entries = admin.describe_configs(&topic, &["retention.ms", "cleanup.policy"]).await.unwrap();
    assert_eq!(entries[0].value.as_deref(), Some("compact"));
    assert_eq!(entries[1].source, "DEFAULT_CONFIG");
    let e = admin.alter_configs(&topic, &[AlterConfigOp::Set("retention.ms".into(), "soon".into())]).await.unwrap_err();
    assert_eq!(e.code(), Some(40), "{e}");

    admin.create_partitions("a", 4).await.unwrap();
    assert_eq!(admin.describe_topics(&["a"]).await.unwrap()[0].partitions.len(), 4);
    assert_eq!(admin.create_partitions("a", 3).await.unwrap_err().code(), Some(37));

    let producer = Producer::connect(ProducerConfig::new(&addr)).await.unwrap();
    let base = 1_800_000_000_000;
    for i in 0..10 {
        let record = ProducerRecord::new("b").value("v").timestamp(base + i * 1000);
        drop(producer.send(record).await.unwrap());
    }
    producer.flush().await;
    let tp = TopicPartition::new("b".to_string(), 0);
    let listed = admin
        .list_offsets(
            &[
                (tp.clone(), OffsetSpec::Earliest),
                (tp.clone(), OffsetSpec::Latest),
                (tp.clone(), OffsetSpec::Timestamp(base + 4500)),
                (tp.clone(), OffsetSpec::MaxTimestamp),
            ],
            false,
        )
        .await
        .unwrap();
    let offsets: Vec<i64> = listed.iter().map(|(_, r)| r.as_ref().unwrap().offset).collect();
    assert_eq!(offsets, [0, 10, 5, 9]);
    let deleted = admin.delete_records(&[(tp.clone(), 4)]).await.unwrap();
    assert_eq!(deleted[0].1.as_ref().unwrap(), &4);
    let listed = admin.list_offsets(&[(tp.clone(), OffsetSpec::Earliest)], false).await.unwrap();
    assert_eq!(listed[0].1.as_ref().unwrap().offset, 4);

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.controller, cluster.brokers[0].node_id);
    assert!(!cluster.cluster_id.is_empty());

    admin.delete_topics(&["a"]).await.unwrap();
    assert_eq!(admin.delete_topics(&["a"]).await.unwrap_err().code(), Some(3));
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_one_and_all_deliver_and_zero_has_no_offsets() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("acks", 1)).await.unwrap();
    let mut written = 0;
    for acks in ["0", "1", "all"] {
        let mut config = ProducerConfig::new(&addr);
        config.set_all([("acks", acks), ("compression.type", "lz4")]).unwrap();
        let producer = Producer::connect(config).await.unwrap();
        assert_eq!(producer.is_idempotent(), acks == "all");
        let mut deliveries = Vec::new();
        for i in 0..100 {
            let value = format!("{acks}-{i}");
            deliveries.push(producer.send(ProducerRecord::new("acks").value(&value)).await.unwrap());
        }
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.unwrap();
            let expected = if acks == "0" { -1 } else { written + i as i64 };
            assert_eq!(metadata.offset, expected, "acks={acks}");
        }
        producer.close().await.unwrap();
        written += 100;
        // acks=0 has no answer to wait for: the records may still be on their way.
        let deadline = Instant::now() + Duration::from_secs(10);
        while latest_offsets(&admin, "acks", 1).await[0] < written {
            assert!(Instant::now() < deadline, "acks={acks}: records missing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_fails_deliveries_after_delivery_timeout() {
    let (_dir, broker, proxy) = support::start_behind_proxy().await;
    let admin = AdminClient::connect(ClientConfig::new(&proxy.addr())).await.unwrap();
    admin.create_topic(NewTopic::new("silent", 1)).await.unwrap();
    let mut config = ProducerConfig::new(&proxy.addr());
    config
        .set_all([
            ("linger.ms", "0"),
            ("request.timeout.ms", "300"),
            ("delivery.timeout.ms", "800"),
            ("retry.backoff.ms", "50"),
        ])
        .unwrap();
    let producer = Producer::connect(config).await.unwrap();
    producer.send(ProducerRecord::new("silent").value("warm")).await.unwrap().await.unwrap();
    proxy.pause();
    let started = Instant::now();
    let delivery = producer.send(ProducerRecord::new("silent").value("lost?")).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), delivery).await.unwrap().unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "failed after {waited:?}");
    proxy.resume();
    drop(producer);
    broker.shutdown().await.unwrap();
}
