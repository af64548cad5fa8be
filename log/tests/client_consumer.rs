//! The consumer against an embedded broker: round trips with every codec, positioning,
//! offsets_for_times, pause/resume, offset resets and bad input.

#![allow(clippy::unwrap_used)]

mod support;

use freshet_log::TopicPartition;
use std::time::{Duration, Instant};

use freshet_log::client::{
    AdminClient, ClientConfig, ClientError, Consumer, ConsumerConfig, ConsumerRecord, NewTopic, Producer,
    ProducerConfig, ProducerRecord,
};

async fn consumer(addr: &str, props: &[(&str, &str)]) -> Consumer {
    let mut config = ConsumerConfig::new(addr);
    config.set_all([("auto.offset.reset", "earliest"), ("fetch.max.wait.ms", "100")]).unwrap();
    config.set_all(props.iter().copied()).unwrap();
    Consumer::connect(config).await.unwrap()
}

/// Polls until `n` records arrived (bounded by 20 s).
async fn poll_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut records = Vec::new();
    while records.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} records arrived", records.len());
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    records
}

fn text(bytes: &Option<bytes::Bytes>) -> String {
    String::from_utf8(bytes.as_ref().unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_keys_values_and_headers_in_order() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        admin.create_topic(NewTopic::new(codec, 2)).await.unwrap();
        let mut config = ProducerConfig::new(&addr);
        config.set("compression.type", codec).unwrap();
        let producer = Producer::connect(config).await.unwrap();
        for i in 0..2000 {
            let (key, value) = (format!("k{i}"), format!("value {i} {}", "x".repeat(i % 50)));
            let record = ProducerRecord::new(codec).partition(i as i32 % 2).key(&key).value(&value).header("n", &key);
            drop(producer.send(record).await.unwrap());
        }
        producer.close().await.unwrap();

        let mut consumer = consumer(&addr, &[("max.poll.records", "300")]).await;
        consumer
            .assign(&[TopicPartition::new(codec.to_string(), 0), TopicPartition::new(codec.to_string(), 1)])
            .await
            .unwrap();
        let records = poll_n(&mut consumer, 2000).await;
        assert_eq!(records.len(), 2000, "{codec}: nothing more than was sent");
        for p in 0..2 {
            let partition: Vec<_> = records.iter().filter(|r| r.partition == p).collect();
            assert_eq!(partition.len(), 1000);
            for (n, r) in partition.iter().enumerate() {
                let i = 2 * n + p as usize;
                assert_eq!(r.offset, n as i64, "{codec}");
                assert_eq!(text(&r.key), format!("k{i}"));
                assert_eq!(text(&r.value), format!("value {i} {}", "x".repeat(i % 50)));
                assert_eq!(r.headers, [("n".to_string(), r.key.clone())]);
            }
        }
        assert_eq!(consumer.position(&TopicPartition::new(codec.to_string(), 0)).await.unwrap(), 1000);
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_offsets_for_times_and_pause_resume() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("events", 2)).await.unwrap();
    let producer = Producer::connect(ProducerConfig::new(&addr)).await.unwrap();
    let base = 1_800_000_000_000;
    for i in 0..100i64 {
        let value = i.to_string();
        let record = ProducerRecord::new("events").partition((i % 2) as i32).value(&value).timestamp(base + i * 10);
        drop(producer.send(record).await.unwrap());
    }
    producer.flush().await;
    let (p0, p1) = (TopicPartition::new("events".to_string(), 0), TopicPartition::new("events".to_string(), 1));

    let mut consumer = consumer(&addr, &[("auto.offset.reset", "latest")]).await;
    consumer.assign(&[p0.clone(), p1.clone()]).await.unwrap();
    assert_eq!(consumer.position(&p0).await.unwrap(), 50, "latest starts at the log end");
    assert!(consumer.poll(Duration::from_millis(200)).await.unwrap().is_empty());

    // Timestamps: partition 0 has base, base+20, ...; partition 1 base+10, base+30, ...
    let found = consumer.offsets_for_times(&[(p0.clone(), base + 15), (p1.clone(), base + 5000)]).await.unwrap();
    assert_eq!(found[&p0].unwrap().offset, 1);
    assert_eq!(found[&p0].unwrap().timestamp, base + 20);
    assert_eq!(found[&p1], None, "every record is older");

    consumer.seek(&p0, 45).unwrap();
    consumer.seek_to_beginning(std::slice::from_ref(&p1)).unwrap();
    consumer.pause(std::slice::from_ref(&p1)).unwrap();
    let records = poll_n(&mut consumer, 5).await;
    assert!(records.iter().all(|r| r.partition == 0), "a paused partition returns nothing");
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [45, 46, 47, 48, 49]);
    assert_eq!(records[0].timestamp, base + 900, "offset 45 of partition 0 is record 90");
    assert_eq!(consumer.paused(), std::slice::from_ref(&p1));
    consumer.resume(std::slice::from_ref(&p1)).unwrap();
    let records = poll_n(&mut consumer, 50).await;
    assert_eq!(records.first().map(|r| (r.partition, r.offset)), Some((1, 0)));
    consumer.seek_to_end(std::slice::from_ref(&p1)).unwrap();
    assert_eq!(consumer.position(&p1).await.unwrap(), 50);
    assert_eq!(consumer.watermarks(&p1).await.unwrap(), (0, 50));

    // Records that arrive later are picked up by a consumer already waiting.
    let waiting = tokio::spawn(async move { (poll_n(&mut consumer, 1).await, consumer) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    producer.send(ProducerRecord::new("events").partition(1).value("late")).await.unwrap().await.unwrap();
    let (records, _consumer) = waiting.await.unwrap();
    assert_eq!((records[0].offset, text(&records[0].value)), (50, "late".to_string()));
    producer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_positions_reset_or_fail_as_configured() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("short", 1)).await.unwrap();
    let producer = Producer::connect(ProducerConfig::new(&addr)).await.unwrap();
    for i in 0..10 {
        drop(producer.send(ProducerRecord::new("short").value(&format!("{i}"))).await.unwrap());
    }
    producer.close().await.unwrap();
    let tp = TopicPartition::new("short".to_string(), 0);
    admin.delete_records(&[(tp.clone(), 6)]).await.unwrap();

    let mut resetting = consumer(&addr, &[]).await;
    resetting.assign(std::slice::from_ref(&tp)).await.unwrap();
    resetting.seek(&tp, 2).unwrap();
    let records = poll_n(&mut resetting, 4).await;
    assert_eq!(records[0].offset, 6, "out of range: back to the earliest offset");

    let mut strict = consumer(&addr, &[("auto.offset.reset", "none")]).await;
    strict.assign(std::slice::from_ref(&tp)).await.unwrap();
    let e = strict.poll(Duration::from_secs(5)).await.unwrap_err();
    assert!(e.to_string().contains("auto.offset.reset=none"), "{e}");
    strict.seek(&tp, 2).unwrap();
    let e = strict.poll(Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(e.code(), Some(1), "OFFSET_OUT_OF_RANGE: {e}");
    strict.seek(&tp, 8).unwrap();
    assert_eq!(poll_n(&mut strict, 2).await[0].offset, 8, "a valid seek clears the error");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_assignments_and_settings_are_typed_errors() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("one", 1)).await.unwrap();
    let mut consumer = consumer(&addr, &[]).await;
    let e = consumer.assign(&[TopicPartition::new("missing".to_string(), 0)]).await.unwrap_err();
    assert_eq!(e.code(), Some(3), "{e}");
    let e = consumer.assign(&[TopicPartition::new("one".to_string(), 4)]).await.unwrap_err();
    assert!(e.to_string().contains("the topic has 1 partitions"), "{e}");
    let e = consumer.seek(&TopicPartition::new("one".to_string(), 0), 0).unwrap_err();
    assert!(e.to_string().contains("not assigned"), "{e}");
    let mut config = ConsumerConfig::new(&addr);
    assert!(matches!(config.set("isolation.level", "serializable"), Err(ClientError::Config { .. })));

    let e = consumer.subscribe(&["one"]).await.unwrap_err();
    assert!(matches!(&e, ClientError::Config { key, .. } if key == "group.id"), "{e}");
    let e = consumer.commit_sync().await.unwrap_err();
    assert!(e.to_string().contains("group.id"), "{e}");
    broker.shutdown().await.unwrap();
}

/// The fetcher refills a partition while it still has records buffered (from where the
/// buffer ends), so many small fetches must still hand out every offset once, in order;
/// a seek drops what was fetched ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_ahead_keeps_every_offset_once_and_a_seek_drops_it() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("ahead", 1)).await.unwrap();
    let mut config = ProducerConfig::new(&addr);
    config.set("batch.size", "2048").unwrap();
    let producer = Producer::connect(config).await.unwrap();
    let n = 20_000;
    for i in 0..n {
        drop(producer.send(ProducerRecord::new("ahead").value(&format!("v{i}"))).await.unwrap());
    }
    producer.close().await.unwrap();

    // 4 KiB fetches: a couple of batches each, so the buffer is refilled hundreds of times.
    let props = [("max.partition.fetch.bytes", "4096"), ("max.poll.records", "97")];
    let mut consumer = consumer(&addr, &props).await;
    let tp = TopicPartition::new("ahead".to_string(), 0);
    consumer.assign(std::slice::from_ref(&tp)).await.unwrap();
    let records = poll_n(&mut consumer, n).await;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..n as i64).collect::<Vec<_>>());
    assert!(records.iter().enumerate().all(|(i, r)| text(&r.value) == format!("v{i}")));

    // Take one poll's worth, so more is buffered and fetched ahead, then seek back.
    consumer.seek(&tp, 0).unwrap();
    let first = poll_n(&mut consumer, 1).await;
    assert_eq!(first[0].offset, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    consumer.seek(&tp, 15_000).unwrap();
    let rest = poll_n(&mut consumer, 5_000).await;
    let offsets: Vec<i64> = rest.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (15_000..n as i64).collect::<Vec<_>>(), "nothing fetched before the seek");
    broker.shutdown().await.unwrap();
}

/// A partition with nothing new must not hold back one that has data on the same broker:
/// the broker takes one fetch of this consumer at a time, so a fetch that waits
/// `fetch.max.wait.ms` for the idle partition would delay every refill of the busy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_does_not_hold_back_a_busy_one() {
    let (_dir, broker, addr) = support::start().await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("busy", 1)).await.unwrap();
    admin.create_topic(NewTopic::new("idle", 1)).await.unwrap();
    let producer = Producer::connect(ProducerConfig::new(&addr)).await.unwrap();
    let n = 20_000;
    for i in 0..n {
        drop(producer.send(ProducerRecord::new("busy").value(&format!("{i:090}"))).await.unwrap());
    }
    producer.close().await.unwrap();

    // About 64 fetches of 32 KiB. Were each refill to wait behind a 3 s long poll of the
    // idle partition, reading them would take minutes; the bound below is far from both.
    let props = [("max.partition.fetch.bytes", "32768"), ("fetch.max.wait.ms", "3000"), ("max.poll.records", "50")];
    let mut consumer = consumer(&addr, &props).await;
    consumer
        .assign(&[TopicPartition::new("busy".to_string(), 0), TopicPartition::new("idle".to_string(), 0)])
        .await
        .unwrap();
    let began = Instant::now();
    let records = poll_n(&mut consumer, n).await;
    assert_eq!(records.len(), n);
    assert!(began.elapsed() < Duration::from_secs(15), "took {:?}", began.elapsed());
    broker.shutdown().await.unwrap();
}
