//! Two instances of the word-count example (`examples/wordcount.rs`, built by `cargo test`)
//! share the work; one is killed with SIGKILL in the middle of a batch. The survivor takes
//! over its tasks, restores their stores from the changelogs, and finishes: every count is
//! at least exact, and over-counts only words of the lines that were in flight when the
//! instance died (at-least-once), each occurrence at most twice more (once re-read from
//! the input, once from the repartition topic).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use freshet::client::{
    AdminClient, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, OffsetSpec, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use freshet::{Broker, BrokerConfig};

const WAIT: Duration = Duration::from_secs(90);
const APP: &str = "failover";

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

/// An instance of the word-count example, and its "RUNNING" signal.
struct Instance {
    child: Child,
}

impl Instance {
    fn start(addr: &str, state_dir: &std::path::Path) -> Self {
        let mut child = Command::new(example("wordcount"))
            .args(["--bootstrap", addr, "--application-id", APP, "--input", "lines", "--output", "counts"])
            .args(["--state-dir", state_dir.to_str().unwrap(), "--commit-interval-ms", "100"])
            .args(["-c", "session.timeout.ms=6000", "-c", "heartbeat.interval.ms=500"])
            .env("FRESHET_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line == "RUNNING" {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(WAIT).expect("the instance did not reach RUNNING");
        Instance { child }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(seed: u64, n: usize) -> (Vec<String>, BTreeMap<String, i64>) {
    let mut x = seed;
    let mut counts = BTreeMap::new();
    let lines = (0..n)
        .map(|_| {
            (0..8)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let word = format!("w{}", (x >> 33) % 50);
                    *counts.entry(word.clone()).or_insert(0) += 1;
                    word
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    (lines, counts)
}

async fn produce(addr: &str, lines: &[String]) {
    let producer = Producer::connect(ProducerConfig::new(addr)).await.unwrap();
    let mut deliveries = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let key = format!("line-{i}");
        deliveries.push(producer.send(ProducerRecord::new("lines").key(&key).value(line)).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

/// Waits until the application has committed the end of every partition of `topics`.
async fn wait_committed(admin: &AdminClient, topics: &[&str]) {
    let deadline = Instant::now() + WAIT;
    let info = admin.describe_topics(topics).await.unwrap();
    let partitions: Vec<_> = info
        .iter()
        .flat_map(|t| (0..t.partitions.len() as i32).map(|p| TopicPartition::new(t.name.clone(), p)))
        .collect();
    loop {
        let specs: Vec<_> = partitions.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
        let ends: BTreeMap<_, _> = admin
            .list_offsets(&specs, false)
            .await
            .unwrap()
            .into_iter()
            .map(|(tp, o)| (tp, o.unwrap().offset))
            .collect();
        let committed = admin.list_group_offsets(APP, Some(&partitions)).await.unwrap();
        let behind: Vec<_> = committed
            .iter()
            .filter(|(tp, c)| c.as_ref().map_or(0, |c| c.offset) < ends[tp])
            .map(|(tp, _)| tp)
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "not committed: {behind:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn latest_counts(addr: &str) -> BTreeMap<String, i64> {
    let mut config = ConsumerConfig::new(addr);
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::connect(config).await.unwrap();
    let partitions: Vec<_> = (0..4).map(|p| TopicPartition::new("counts", p)).collect();
    consumer.assign(&partitions).await.unwrap();
    let mut ends = BTreeMap::new();
    for tp in &partitions {
        ends.insert(tp.clone(), consumer.watermarks(tp).await.unwrap().1);
    }
    let mut latest = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut done = true;
        for tp in &partitions {
            done &= consumer.position(tp).await.unwrap() >= ends[tp];
        }
        if done {
            return latest;
        }
        assert!(Instant::now() < deadline, "could not read the output to its end");
        for r in consumer.poll(Duration::from_millis(200)).await.unwrap().iter() {
            let word = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
            let count = i64::from_be_bytes(r.value.as_ref().unwrap()[..8].try_into().unwrap());
            latest.insert(word, count);
        }
    }
}

#[test]
fn a_killed_instances_tasks_and_state_move_to_the_survivor() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::embedded(dir.path());
    config.auto_create_topics = false;
    let broker = rt.block_on(Broker::start(config)).unwrap();
    let addr = broker.local_addr().to_string();
    let admin = rt.block_on(AdminClient::connect(ClientConfig::new(&addr))).unwrap();
    for topic in ["lines", "counts"] {
        rt.block_on(admin.create_topic(NewTopic::new(topic, 4))).unwrap();
    }
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Instance::start(&addr, state_a.path());
    let _b = Instance::start(&addr, state_b.path());
    // Both instances are in the group before any input arrives.
    let deadline = Instant::now() + WAIT;
    loop {
        let group = rt.block_on(admin.describe_groups(&[APP])).unwrap().remove(0);
        if group.members.len() == 2 && group.state == "Stable" {
            break;
        }
        assert!(Instant::now() < deadline, "the group never had both instances: {group:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let repartition = format!("{APP}-counts-repartition");
    let (first, mut exact) = lines(11, 1500);
    rt.block_on(produce(&addr, &first));
    rt.block_on(wait_committed(&admin, &["lines", &repartition]));

    // Kill one instance while it works through a batch.
    let (in_flight, in_flight_counts) = lines(12, 1000);
    rt.block_on(produce(&addr, &in_flight));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let (last, last_counts) = lines(13, 1000);
    rt.block_on(produce(&addr, &last));
    rt.block_on(wait_committed(&admin, &["lines", &repartition]));
    for counts in [&in_flight_counts, &last_counts] {
        for (word, n) in counts {
            *exact.entry(word.clone()).or_insert(0) += n;
        }
    }

    let got = rt.block_on(latest_counts(&addr));
    assert_eq!(got.keys().collect::<Vec<_>>(), exact.keys().collect::<Vec<_>>());
    for (word, &want) in &exact {
        let have = got[word];
        let slack = 2 * in_flight_counts.get(word).copied().unwrap_or(0);
        assert!(
            (want..=want + slack).contains(&have),
            "{word}: counted {have}, exact {want}, at-least-once allows up to {}",
            want + slack
        );
    }
    let group = rt.block_on(admin.describe_groups(&[APP])).unwrap().remove(0);
    assert_eq!(group.members.len(), 1, "the survivor alone: {group:?}");
}
