//! Streams throughput, on a broker embedded in this process (both share the machine):
//!
//! - `stateless`: `filter` + `map_values` from topic to topic, 100-byte records;
//! - `wordcount`: lines of 8 words counted in RocksDB with changelog logging;
//! - `restore`: a store rebuilt from a changelog of `--records` distinct keys.
//!
//! Input is written before the application starts; the clock runs from RUNNING until the
//! group has committed the end of every input (for `restore`: from `start` to RUNNING,
//! which is when restoration is done). One stream thread.
//!
//! ```text
//! cargo run --example streams_bench -- stateless --records 2000000 --rounds 3
//! ```

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use freshet::client::{
    AdminClient, ClientConfig, NewTopic, OffsetSpec, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use freshet::streams::serde::Serdes;
use freshet::streams::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, State, StreamsBuilder, StreamsConfig, Topology,
};
use freshet::{Broker, BrokerConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Workload {
    Stateless,
    Wordcount,
    Restore,
}

#[derive(Parser)]
struct Args {
    workload: Workload,
    /// Input records (lines for `wordcount`, keys for `restore`).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn stateless(input: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Serdes::bytes(), Serdes::bytes()))
        .filter(|_, v| v.first() != Some(&b'#'))
        .map_values(|mut v: Vec<u8>| {
            v.make_ascii_uppercase();
            v
        })
        .to(output, Produced::with(Serdes::bytes(), Serdes::bytes()));
    builder.build().expect("valid topology")
}

fn wordcount(input: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
        .flat_map_values(|line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("counts"))
        .to_stream()
        .to(output, Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    builder.build().expect("valid topology")
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    addr: String,
}

impl Bench {
    fn admin(&self) -> AdminClient {
        self.runtime.block_on(AdminClient::connect(ClientConfig::new(&self.addr))).expect("admin")
    }

    fn create(&self, topic: &str, compacted: bool) {
        let mut new = NewTopic::new(topic, 1);
        if compacted {
            new = new.config("cleanup.policy", "compact");
        }
        self.runtime.block_on(self.admin().create_topic(new)).expect("create topic");
    }

    fn delete(&self, topics: &[String]) {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let deleted = self.runtime.block_on(self.admin().delete_topics_each(&names)).expect("delete topics");
        for (topic, result) in deleted {
            if let Err(e) = result {
                eprintln!("deleting {topic}: {e}");
            }
        }
    }

    fn produce(&self, topic: &str, n: usize, record: impl Fn(usize, &mut Vec<u8>, &mut Vec<u8>)) {
        self.runtime.block_on(async {
            let mut config = ProducerConfig::new(&self.addr);
            config.batch_size = 512 * 1024;
            config.linger = Duration::from_millis(20);
            let producer = Producer::connect(config).await.expect("producer");
            let (mut key, mut value) = (Vec::new(), Vec::new());
            let mut last = None;
            for i in 0..n {
                key.clear();
                value.clear();
                record(i, &mut key, &mut value);
                let mut r = ProducerRecord::new(topic).value(&value);
                if !key.is_empty() {
                    r = r.key(&key);
                }
                last = Some(producer.send(r).await.expect("send"));
            }
            producer.flush().await;
            if let Some(last) = last {
                last.await.expect("delivered");
            }
        });
    }

    /// Waits until `app` has committed the end of each of `topics`.
    fn wait_committed(&self, app: &str, topics: &[String]) {
        let admin = self.admin();
        self.runtime.block_on(async {
            let partitions: Vec<TopicPartition> = topics.iter().map(|t| TopicPartition::new(t.clone(), 0)).collect();
            let specs: Vec<_> = partitions.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
            loop {
                let ends: BTreeMap<_, _> = admin
                    .list_offsets(&specs, false)
                    .await
                    .expect("offsets")
                    .into_iter()
                    .map(|(tp, o)| (tp, o.map(|o| o.offset).unwrap_or(0)))
                    .collect();
                let committed = admin.list_group_offsets(app, Some(&partitions)).await.expect("group offsets");
                if committed.iter().all(|(tp, c)| c.as_ref().is_some_and(|c| c.offset >= ends[tp])) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

fn config(app: &str, addr: &str, state: &std::path::Path) -> StreamsConfig {
    let mut config = StreamsConfig::new(app, addr);
    config.set("state.dir", state.to_str().expect("utf-8 path")).expect("state.dir");
    config.set("commit.interval.ms", "1000").expect("commit.interval.ms");
    // Extra properties for experiments: FRESHET_BENCH_PROPS="key=value,key=value".
    for pair in std::env::var("FRESHET_BENCH_PROPS").unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').expect("key=value");
        config.set(key, value).expect("property");
    }
    config
}

fn round(bench: &Bench, workload: Workload, n: usize, round: usize) -> (f64, f64) {
    let app = format!("bench-{round}");
    let state = tempfile::tempdir().expect("state dir");
    let (input, output) = (format!("in-{round}"), format!("out-{round}"));
    match workload {
        Workload::Stateless | Workload::Wordcount => {
            bench.create(&input, false);
            bench.create(&output, false);
            let loaded = Instant::now();
            if matches!(workload, Workload::Stateless) {
                bench.produce(&input, n, |i, k, v| {
                    k.extend_from_slice(format!("key{i:07}").as_bytes());
                    v.resize(100, b'a' + (i % 26) as u8);
                });
            } else {
                bench.produce(&input, n, |i, _k, v| {
                    let mut x = i as u64;
                    for w in 0..8 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        if w > 0 {
                            v.push(b' ');
                        }
                        v.extend_from_slice(format!("word{}", (x >> 33) % 10_000).as_bytes());
                    }
                });
            }
            eprintln!("round {round}: loaded {n} records in {:.1}s", loaded.elapsed().as_secs_f64());
            let topology = if matches!(workload, Workload::Stateless) {
                stateless(&input, &output)
            } else {
                wordcount(&input, &output)
            };
            let streams = KafkaStreams::new(topology, config(&app, &bench.addr, state.path())).expect("app");
            streams.start().expect("start");
            streams.wait_for(State::Running, Duration::from_secs(60)).expect("running");
            let began = Instant::now();
            let mut topics = vec![input.clone()];
            if matches!(workload, Workload::Wordcount) {
                topics.push(format!("{app}-counts-repartition"));
            }
            bench.wait_committed(&app, &topics);
            let seconds = began.elapsed().as_secs_f64();
            streams.close();
            // Deleted topics drop their dirty pages unwritten: left behind, the gigabytes a
            // word-count round writes are flushed to disk during the next rounds.
            topics.push(output);
            if matches!(workload, Workload::Wordcount) {
                topics.push(format!("{app}-counts-changelog"));
            }
            bench.delete(&topics);
            (n as f64 / seconds, seconds)
        }
        Workload::Restore => {
            bench.create(&input, false);
            bench.create(&output, false);
            bench.create(&format!("{app}-counts-changelog"), true);
            bench.produce(&format!("{app}-counts-changelog"), n, |i, k, v| {
                k.extend_from_slice(format!("word{i:07}").as_bytes());
                v.extend_from_slice(&(i as i64).to_be_bytes());
            });
            let topology = wordcount(&input, &output);
            let streams = KafkaStreams::new(topology, config(&app, &bench.addr, state.path())).expect("app");
            let began = Instant::now();
            streams.start().expect("start");
            streams.wait_for(State::Running, Duration::from_secs(600)).expect("running");
            let seconds = began.elapsed().as_secs_f64();
            let restored = streams.restored_records();
            assert_eq!(restored as usize, n, "every changelog record restored");
            let store = streams.store::<String, i64>("counts").expect("store");
            assert_eq!(store.get(&format!("word{:07}", n - 1)).expect("get"), Some(n as i64 - 1));
            streams.close();
            (restored as f64 / seconds, seconds)
        }
    }
}

fn main() -> anyhow::Result<()> {
    common::init_logging();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let mut broker_config = BrokerConfig::embedded(dir.path());
    broker_config.auto_create_topics = false;
    let broker = runtime.block_on(Broker::start(broker_config))?;
    let bench = Bench { addr: broker.local_addr().to_string(), runtime };
    let mut rates = Vec::new();
    for r in 0..args.rounds {
        let (rate, seconds) = round(&bench, args.workload, args.records, r);
        println!("{:?} round {}: {:.0} records/s ({} in {seconds:.2}s)", args.workload, r + 1, rate, args.records);
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("{:?} median: {:.0} records/s", args.workload, rates[rates.len() / 2]);
    Ok(())
}
