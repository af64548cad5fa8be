//! Three `freshet server` processes in combined mode on loopback, a topic of replication
//! factor 3 with `min.insync.replicas=2`, and an idempotent `acks=all` producer writing
//! all along. Round after round the partition's leader is killed with SIGKILL and started
//! again on its data directory; then every node in turn is stopped with SIGTERM (a
//! controlled shutdown) and started again, a rolling restart. At the end a consumer reads
//! the partition from the start: every acknowledged record is there once, in the order it
//! was sent.
//!
//! A second test pauses (SIGSTOP) the followers of a group coordinator: the assignment it
//! cannot replicate is not handed out, and is once they resume. A third kills a group
//! coordinator's node with SIGKILL while the group consumes: the member goes on reading at
//! the partition's new leader, reads again only what it had not committed, and its
//! commits are kept.
//!
//! `CLUSTER_ROUNDS=n` sets the number of kills (CI runs 2; `scripts/cluster-faults.sh`
//! runs many and records them in RELIABILITY.md).

#![allow(clippy::unwrap_used)]

#[path = "../log/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use freshet::client::{
    AdminClient, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer, ProducerConfig, ProducerRecord,
};

const WAIT: Duration = Duration::from_secs(60);

/// One three-process cluster at a time: two on this machine's cores at once would make
/// each other's time-outs.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const TOPIC: &str = "orders";

/// One node: its settings, and its process while it runs.
struct Node {
    settings: Vec<String>,
    child: Option<Child>,
    client_addr: String,
    /// Where its processes' stderr goes, one after the other.
    log: std::path::PathBuf,
}

impl Node {
    /// Starts the process; `ready` gets a message once it listens.
    fn spawn(&mut self, ready: mpsc::Sender<()>) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_freshet"));
        command.arg("server");
        for setting in &self.settings {
            command.args(["--set", setting]);
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut child = command.env("FRESHET_LOG", "info").stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("freshet server listening") {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
    }

    /// SIGTERM, and waits for the process to finish its controlled shutdown.
    fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP (`stop: true`) or SIGCONT: the process keeps its sockets but answers
    /// nothing, as a node stuck in a long pause would.
    fn pause(&self, stop: bool) {
        let child = self.child.as_ref().unwrap();
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    logs: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start() -> Self {
        let (clients, controllers) = (support::free_ports(3), support::free_ports(3));
        let voters: Vec<String> = (0..3).map(|i| format!("{}@{}", i + 1, controllers[i])).collect();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let logs = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| Node {
                settings: vec![
                    format!("node.id={}", i + 1),
                    format!("log.dirs={}", dirs[i].path().display()),
                    format!("listeners=PLAINTEXT://{},CONTROLLER://{}", clients[i], controllers[i]),
                    format!("controller.quorum.voters={}", voters.join(",")),
                    "broker.session.timeout.ms=2000".into(),
                    "broker.heartbeat.interval.ms=200".into(),
                    "replica.lag.time.max.ms=4000".into(),
                    "auto.create.topics.enable=false".into(),
                ],
                child: None,
                client_addr: clients[i].to_string(),
                log: logs.path().join(format!("node-{}.log", i + 1)),
            })
            .collect();
        let (ready, started) = mpsc::channel();
        for node in &mut nodes {
            node.spawn(ready.clone());
        }
        let cluster = Self { _dirs: dirs, logs, nodes };
        for _ in 0..3 {
            if started.recv_timeout(WAIT).is_err() {
                cluster.fail("every node starts (they wait for a quorum together)");
            }
        }
        cluster
    }

    fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect::<Vec<_>>().join(",")
    }

    fn restart(&mut self, id: i32) {
        let (ready, started) = mpsc::channel();
        self.nodes[id as usize - 1].spawn(ready);
        if started.recv_timeout(WAIT).is_err() {
            self.fail(&format!("node {id} starts again"));
        }
    }

    /// Fails the test with the end of every node's log.
    fn fail(&self, what: &str) -> ! {
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().filter(|l| !l.contains("openraft")).collect();
            eprintln!("--- {} (last lines)", node.log.display());
            for line in &tail[tail.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
        let _ = &self.logs;
        panic!("timed out waiting until {what}");
    }
}

/// The partition's leader and ISR, as a live broker describes them.
async fn partition_state(admin: &AdminClient) -> Option<(i32, Vec<i32>)> {
    let topics = admin.describe_topics(&[TOPIC]).await.ok()?;
    let partition = topics.first()?.partitions.first()?.clone();
    (partition.leader >= 0).then_some((partition.leader, partition.isr))
}

async fn eventually_state(admin: &AdminClient, what: &str, check: impl Fn(i32, &[i32]) -> bool) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((leader, isr)) = partition_state(admin).await
            && check(leader, &isr)
        {
            return leader;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends numbered records until `stop`, each acknowledged before it counts; returns them.
async fn produce_until(bootstrap: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut config = ProducerConfig::new(&bootstrap);
    config.set_all([("acks", "all"), ("enable.idempotence", "true"), ("linger.ms", "2")]).unwrap();
    let producer = Producer::connect(config).await.unwrap();
    let mut acked = Vec::new();
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut window = Vec::new();
        for _ in 0..50 {
            let value = format!("r{next:08}");
            next += 1;
            let delivery = producer.send(ProducerRecord::new(TOPIC).key("k").value(&value)).await.unwrap();
            window.push((value, delivery));
        }
        for (value, delivery) in window {
            // An idempotent producer retries through the failover: every send succeeds.
            delivery.await.unwrap_or_else(|e| panic!("{value} was not acknowledged: {e}"));
            acked.push(value);
        }
    }
    producer.close().await.unwrap();
    acked
}

/// Creates [`TOPIC`] with three replicas and `min.insync.replicas=2`, and waits until they
/// are all in sync.
async fn create_orders(bootstrap: &str) -> AdminClient {
    let admin = AdminClient::connect(ClientConfig::new(bootstrap)).await.unwrap();
    admin.create_topic(NewTopic::new(TOPIC, 1).replication_factor(3).config("min.insync.replicas", "2")).await.unwrap();
    eventually_state(&admin, "all three replicas are in sync", |_, isr| isr.len() == 3).await;
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_again_and_again_loses_no_acknowledged_record() {
    let rounds: usize = std::env::var("CLUSTER_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2);
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    let admin = create_orders(&bootstrap).await;

    let stop = Arc::new(AtomicBool::new(false));
    let producing = tokio::spawn(produce_until(bootstrap.clone(), stop.clone()));
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let leader = eventually_state(&admin, "the partition has a leader", |_, _| true).await;
        eprintln!("round {round}: killing leader {leader}");
        cluster.nodes[leader as usize - 1].kill();
        eventually_state(&admin, "another node leads", |l, _| l != leader).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.restart(leader);
        eventually_state(&admin, "the killed node is back in the ISR", |_, isr| isr.contains(&leader)).await;
    }
    for id in 1..=3 {
        let leader = eventually_state(&admin, "the partition has a leader", |_, _| true).await;
        eprintln!("rolling restart: SIGTERM to node {id} (leader: {leader})");
        cluster.nodes[id as usize - 1].terminate();
        if id == leader {
            // The controlled shutdown moved leadership before the process exited.
            let (now_leading, _) = partition_state(&admin).await.unwrap_or((-1, Vec::new()));
            assert_ne!(now_leading, id, "leadership moved before the stop");
        }
        cluster.restart(id);
        eventually_state(&admin, "the restarted node is back in the ISR", |_, isr| isr.contains(&id)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = tokio::time::timeout(WAIT, producing).await.expect("the producer finished").unwrap();
    assert!(!acked.is_empty());
    let read = support::orders::consume_all(&bootstrap, acked.len()).await;
    assert_eq!(read, acked, "every acknowledged record, once, in order");
    eprintln!("{rounds} leader kills and a rolling restart, {} records acknowledged and read back", acked.len());
}

/// The `__consumer_offsets` partition of `group` (Kafka's `abs(group.hashCode()) % 50`).
fn offsets_partition(group: &str) -> i32 {
    let hash = group.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (hash.unsigned_abs() % 50) as i32
}

/// A consumer of `group` subscribed to [`TOPIC`], through `bootstrap`.
async fn group_consumer(bootstrap: &str, group: &str) -> Consumer {
    let mut config = ConsumerConfig::new(bootstrap);
    // Requests to a paused node time out soon, and go to another.
    let settings = [
        ("group.id", group),
        ("session.timeout.ms", "10000"),
        ("request.timeout.ms", "3000"),
        ("auto.offset.reset", "earliest"),
    ];
    config.set_all(settings).unwrap();
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe(&[TOPIC]).await.unwrap();
    consumer
}

/// The node that leads `group`'s `__consumer_offsets` partition (its coordinator), once
/// all three replicas of it are in sync.
async fn coordinator_of(admin: &AdminClient, group: &str) -> i32 {
    let offsets = "__consumer_offsets";
    let partition = offsets_partition(group) as usize;
    let deadline = Instant::now() + WAIT;
    loop {
        let topics = admin.describe_topics(&[offsets]).await.unwrap();
        let state = &topics[0].partitions[partition];
        if state.leader >= 0 && state.isr.len() == 3 {
            return state.leader;
        }
        assert!(Instant::now() < deadline, "{offsets}-{partition} never had three in-sync replicas: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn poll_until_assigned(consumer: &mut Consumer, cluster: &Cluster, what: &str) {
    let deadline = Instant::now() + WAIT;
    while consumer.assignment().is_empty() {
        if Instant::now() > deadline {
            cluster.fail(what);
        }
        consumer.poll(Duration::from_millis(200)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_assignment_is_handed_out_only_once_it_is_on_the_isr() {
    let _one = ONE_CLUSTER.lock().await;
    let cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    let admin = AdminClient::connect(ClientConfig::new(&bootstrap)).await.unwrap();
    admin.create_topic(NewTopic::new(TOPIC, 1).replication_factor(3)).await.unwrap();
    let group = "paused-followers";
    let began = Instant::now();
    // The first join creates __consumer_offsets, replicated three times.
    let mut consumer = group_consumer(&bootstrap, group).await;
    poll_until_assigned(&mut consumer, &cluster, "the group gets its assignment").await;
    consumer.close().await.unwrap();
    eprintln!("{:?}: the first member was assigned and left", began.elapsed());
    let coordinator = coordinator_of(&admin, group).await;

    // Its followers pause: what the coordinator appends cannot reach the ISR, which cannot
    // shrink either (no controller quorum without them).
    let followers: Vec<usize> = (0..3).filter(|i| *i as i32 + 1 != coordinator).collect();
    for i in &followers {
        cluster.nodes[*i].pause(true);
    }
    // A member polls in the background: a poll goes on rejoining for as long as its
    // SyncGroup keeps failing.
    let coordinator_addr = cluster.nodes[coordinator as usize - 1].client_addr.clone();
    let assigned = Arc::new(AtomicBool::new(false));
    let polling = tokio::spawn({
        let assigned = assigned.clone();
        async move {
            let mut consumer = group_consumer(&coordinator_addr, group).await;
            while consumer.assignment().is_empty() {
                // Retriable errors may surface meanwhile; only an assignment would be wrong.
                let _ = consumer.poll(Duration::from_millis(300)).await;
            }
            assigned.store(true, Ordering::Release);
            consumer.close().await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(!assigned.load(Ordering::Acquire), "an assignment left before it was replicated");
    eprintln!("{:?}: no assignment while paused", began.elapsed());
    for i in &followers {
        cluster.nodes[*i].pause(false);
    }
    match tokio::time::timeout(WAIT, polling).await {
        Ok(finished) => finished.unwrap(),
        Err(_) => cluster.fail("the assignment arrives once the followers are back"),
    }
    eprintln!("{:?}: assigned once they resumed", began.elapsed());
}

/// Polls `consumer` into `seen` until it holds every value of `v0..v{n}`; errors on the
/// way (a coordinator moving) are retriable and ignored.
async fn read_until_seen(consumer: &mut Consumer, cluster: &Cluster, seen: &mut Vec<String>, n: usize) {
    let deadline = Instant::now() + WAIT;
    let text = |record: &freshet::client::ConsumerRecord| String::from_utf8(record.value.clone().unwrap().to_vec());
    loop {
        let distinct: std::collections::HashSet<&String> = seen.iter().collect();
        if distinct.len() >= n {
            return;
        }
        if Instant::now() > deadline {
            cluster.fail(&format!("the member read {} of {n} records", distinct.len()));
        }
        if let Ok(records) = consumer.poll(Duration::from_millis(200)).await {
            seen.extend(records.iter().map(|r| text(r).unwrap()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_keeps_its_offsets_and_goes_on_consuming_when_its_coordinator_is_killed() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    let admin = create_orders(&bootstrap).await;
    let group = "killed-coordinator";
    support::orders::produce(&bootstrap, 0, 300).await;
    let mut consumer = group_consumer(&bootstrap, group).await;
    let mut seen = Vec::new();
    read_until_seen(&mut consumer, &cluster, &mut seen, 300).await;
    consumer.commit_sync().await.unwrap();
    let coordinator = coordinator_of(&admin, group).await;
    eprintln!("killing the coordinator's node {coordinator} after {} records", seen.len());
    cluster.nodes[coordinator as usize - 1].kill();

    // Writes go on; the member reads them once the partition's new leader has loaded the
    // group, and commits there.
    support::orders::produce(&bootstrap, 300, 600).await;
    read_until_seen(&mut consumer, &cluster, &mut seen, 600).await;
    let deadline = Instant::now() + WAIT;
    while let Err(e) = consumer.commit_sync().await {
        assert!(Instant::now() < deadline, "no commit after the coordinator's loss: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut first_reads = Vec::new();
    for (i, value) in seen.iter().enumerate() {
        if seen[..i].contains(value) {
            // Only what followed the commit before the kill may be read twice (a rejoin
            // resumes at the committed offset).
            let n: usize = value[1..].parse().unwrap();
            assert!(n >= 300, "{value}, committed before the kill, was read again");
        } else {
            first_reads.push(value.clone());
        }
    }
    assert_eq!(first_reads, (0..600).map(|i| format!("v{i}")).collect::<Vec<_>>());
    consumer.close().await.unwrap();

    cluster.restart(coordinator);
    let committed = admin.list_group_offsets(group, None).await.unwrap();
    let offsets: Vec<i64> = committed.iter().filter_map(|(_, c)| c.as_ref().map(|c| c.offset)).collect();
    assert_eq!(offsets, vec![600], "the group's committed offset: {committed:?}");
}
