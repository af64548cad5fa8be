//! A broker on a loopback port and the word-count application the Streams integration
//! tests share.
#![allow(dead_code, clippy::unwrap_used)]

use freshet_log::TopicPartition;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::client::{
    AdminClient, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, OffsetSpec, Producer, ProducerConfig,
    ProducerRecord,
};
use freshet_log::server::RunningBroker;
use freshet_streams::serde::Serdes;
use freshet_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, StreamsConfig, Topology};

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _broker: RunningBroker,
    pub addr: String,
}

impl Cluster {
    pub fn start() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::embedded(dir.path());
        config.auto_create_topics = false;
        let broker = rt.block_on(Broker::start(config)).unwrap();
        let addr = broker.local_addr().to_string();
        Cluster { rt, _dir: dir, _broker: broker, addr }
    }

    pub fn admin(&self) -> AdminClient {
        self.rt.block_on(AdminClient::connect(ClientConfig::new(&self.addr))).unwrap()
    }

    pub fn create(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        self.rt.block_on(admin.create_topic(NewTopic::new(topic, partitions))).unwrap();
    }

    pub fn produce(&self, topic: &str, records: &[(Option<String>, Vec<u8>)]) {
        self.rt.block_on(async {
            let producer = Producer::connect(ProducerConfig::new(&self.addr)).await.unwrap();
            let mut deliveries = Vec::new();
            for (key, value) in records {
                let mut record = ProducerRecord::new(topic).value(value);
                if let Some(key) = key {
                    record = record.key(key);
                }
                deliveries.push(producer.send(record).await.unwrap());
            }
            for d in deliveries {
                d.await.unwrap();
            }
        });
    }

    pub fn produce_lines(&self, lines: &[String]) {
        let records: Vec<_> =
            lines.iter().enumerate().map(|(i, l)| (Some(format!("k{i}")), l.as_bytes().to_vec())).collect();
        self.produce("lines", &records);
    }

    /// The last value of each key in `topic`, read from the beginning, once `done` holds
    /// (or the wait runs out).
    pub fn latest_counts(&self, topic: &str, done: impl Fn(&BTreeMap<String, i64>) -> bool) -> BTreeMap<String, i64> {
        self.rt.block_on(async {
            let admin = AdminClient::connect(ClientConfig::new(&self.addr)).await.unwrap();
            let info = admin.describe_topics(&[topic]).await.unwrap();
            let partitions: Vec<_> =
                (0..info[0].partitions.len() as i32).map(|p| TopicPartition::new(topic.to_string(), p)).collect();
            let mut config = ConsumerConfig::new(&self.addr);
            config.auto_offset_reset = OffsetReset::Earliest;
            let mut consumer = Consumer::connect(config).await.unwrap();
            consumer.assign(&partitions).await.unwrap();
            let mut latest = BTreeMap::new();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline && !done(&latest) {
                for r in consumer.poll(Duration::from_millis(200)).await.unwrap().iter() {
                    let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
                    let value = r.value.as_ref().map(|v| i64::from_be_bytes(v[..8].try_into().unwrap()));
                    match value {
                        Some(v) => latest.insert(key, v),
                        None => latest.remove(&key),
                    };
                }
            }
            latest
        })
    }

    /// Waits until group `group` has committed the end offset of every partition of `topic`.
    pub fn wait_committed(&self, group: &str, topic: &str) {
        let admin = self.admin();
        let deadline = Instant::now() + WAIT;
        self.rt.block_on(async {
            let info = admin.describe_topics(&[topic]).await.unwrap();
            let partitions: Vec<_> =
                (0..info[0].partitions.len() as i32).map(|p| TopicPartition::new(topic.to_string(), p)).collect();
            let specs: Vec<_> = partitions.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
            let ends: BTreeMap<_, _> = admin
                .list_offsets(&specs, false)
                .await
                .unwrap()
                .into_iter()
                .map(|(tp, o)| (tp, o.unwrap().offset))
                .collect();
            loop {
                let committed = admin.list_group_offsets(group, Some(&partitions)).await.unwrap();
                let behind: Vec<_> = committed
                    .iter()
                    .filter(|(tp, c)| c.as_ref().map_or(0, |c| c.offset) < ends[tp])
                    .map(|(tp, _)| tp.clone())
                    .collect();
                if behind.is_empty() {
                    return;
                }
                assert!(Instant::now() < deadline, "group {group} did not commit the end of {behind:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

pub fn word_count() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
        .flat_map_values(|line: String| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("counts"))
        .to_stream()
        .to("word-counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    builder.build().unwrap()
}

pub fn config(cluster: &Cluster, app: &str, state_dir: &std::path::Path) -> StreamsConfig {
    let mut config = StreamsConfig::new(app, &cluster.addr);
    config
        .set_all([
            ("commit.interval.ms", "100"),
            ("state.dir", state_dir.to_str().unwrap()),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ])
        .unwrap();
    config
}

/// `n` lines of 8 words over a 40-word vocabulary, deterministically, and the exact counts.
pub fn lines(seed: u64, n: usize) -> (Vec<String>, BTreeMap<String, i64>) {
    let mut x = seed;
    let mut counts = BTreeMap::new();
    let lines = (0..n)
        .map(|_| {
            (0..8)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let word = format!("w{}", (x >> 33) % 40);
                    *counts.entry(word.clone()).or_insert(0) += 1;
                    word
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (lines, counts)
}

pub fn add(a: &mut BTreeMap<String, i64>, b: &BTreeMap<String, i64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}
