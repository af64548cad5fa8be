//! Streams applications against a real (embedded) broker on a loopback port: word count
//! over three partitions, restarts with and without local state, start-up checks, and
//! records that do not deserialize.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::client::{
    AdminClient, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, OffsetSpec, Producer, ProducerConfig,
    ProducerRecord,
};
use freshet_log::server::RunningBroker;
use freshet_streams::processor::{FixedKeyContext, FixedKeyProcessor, FixedKeyRecord};
use freshet_streams::serde::Serdes;
use freshet_streams::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, State, StreamsBuilder, StreamsConfig, StreamsError,
    ThreadFailureResponse, Topology,
};
use parking_lot::Mutex;

const WAIT: Duration = Duration::from_secs(60);

struct Cluster {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _broker: RunningBroker,
    addr: String,
}

impl Cluster {
    fn start() -> Self {
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

    fn admin(&self) -> AdminClient {
        self.rt.block_on(AdminClient::connect(ClientConfig::new(&self.addr))).unwrap()
    }

    fn create(&self, topic: &str, partitions: i32) {
        let admin = self.admin();
        self.rt.block_on(admin.create_topic(NewTopic::new(topic, partitions))).unwrap();
    }

    fn produce(&self, topic: &str, records: &[(Option<String>, Vec<u8>)]) {
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

    fn produce_lines(&self, lines: &[String]) {
        let records: Vec<_> =
            lines.iter().enumerate().map(|(i, l)| (Some(format!("k{i}")), l.as_bytes().to_vec())).collect();
        self.produce("lines", &records);
    }

    /// The last value of each key in `topic`, read from the beginning, once `done` holds
    /// (or the wait runs out).
    fn latest_counts(&self, topic: &str, done: impl Fn(&BTreeMap<String, i64>) -> bool) -> BTreeMap<String, i64> {
        self.rt.block_on(async {
            let admin = AdminClient::connect(ClientConfig::new(&self.addr)).await.unwrap();
            let info = admin.describe_topics(&[topic]).await.unwrap();
            let partitions: Vec<_> = (0..info[0].partitions.len() as i32).map(|p| (topic.to_string(), p)).collect();
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
    fn wait_committed(&self, group: &str, topic: &str) {
        let admin = self.admin();
        let deadline = Instant::now() + WAIT;
        self.rt.block_on(async {
            let info = admin.describe_topics(&[topic]).await.unwrap();
            let partitions: Vec<_> = (0..info[0].partitions.len() as i32).map(|p| (topic.to_string(), p)).collect();
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

fn word_count() -> Topology {
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

fn config(cluster: &Cluster, app: &str, state_dir: &std::path::Path) -> StreamsConfig {
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
fn lines(seed: u64, n: usize) -> (Vec<String>, BTreeMap<String, i64>) {
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

fn add(a: &mut BTreeMap<String, i64>, b: &BTreeMap<String, i64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_insert(0) += v;
    }
}

#[test]
fn word_count_over_three_partitions_is_exact_and_queryable() {
    let cluster = Cluster::start();
    cluster.create("lines", 3);
    cluster.create("word-counts", 3);
    let state = tempfile::tempdir().unwrap();
    let (text, exact) = lines(1, 2000);
    cluster.produce_lines(&text);

    let mut config = config(&cluster, "wordcount", state.path());
    config.set("num.stream.threads", "2").unwrap();
    config.set("application.server", "localhost:7070").unwrap();
    let streams = KafkaStreams::new(word_count(), config).unwrap();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    streams.set_state_listener(move |new, old| seen.lock().push((old, new)));
    streams.start().unwrap();
    streams.wait_for(State::Running, WAIT).unwrap();

    let counts = cluster.latest_counts("word-counts", |c| c == &exact);
    assert_eq!(counts, exact);
    // The internal topics exist with the source's partition count.
    let admin = cluster.admin();
    let topics = cluster.rt.block_on(admin.list_topics(false)).unwrap();
    for name in streams.internal_topics() {
        let topic = topics.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(topic.partitions.len(), 3, "{name}");
    }
    // Interactive queries: every key, over the local tasks of both threads.
    cluster.wait_committed("wordcount", "lines");
    // A store instance closed by a rebalance tells the reader to look again, as Kafka's
    // InvalidStateStoreException does, and a moving task's keys are briefly missing; the
    // application retries until RUNNING settles.
    let deadline = Instant::now() + WAIT;
    let (store, all) = loop {
        streams.wait_for(State::Running, WAIT).unwrap();
        let store = streams.store::<String, i64>("counts").unwrap();
        match store.all().collect::<Result<BTreeMap<String, i64>, _>>() {
            // While a task moves between the threads its store is briefly in neither.
            Ok(all) if all == exact || Instant::now() >= deadline => break (store, all),
            Ok(_) => {}
            Err(e) if Instant::now() < deadline => eprintln!("retrying the query: {e}"),
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(all, exact);
    assert_eq!(store.get(&"w7".to_string()).unwrap(), exact.get("w7").copied());
    let meta = streams.query_metadata_for_key("counts", &"w7".to_string(), &Serdes::string()).unwrap();
    assert_eq!(meta.active_host.unwrap().to_string(), "localhost:7070");
    assert!((0..3).contains(&meta.partition));
    assert_eq!(streams.local_tasks().len(), 6, "two sub-topologies of three tasks: {:?}", streams.local_tasks());
    let e = streams.store::<String, String>("counts").unwrap_err().to_string();
    assert!(e.contains("counts"), "{e}");

    streams.close();
    assert_eq!(streams.state(), State::NotRunning);
    let changes = changes.lock().clone();
    assert_eq!(changes.first(), Some(&(State::Created, State::Rebalancing)));
    assert!(changes.contains(&(State::Rebalancing, State::Running)), "{changes:?}");
    assert_eq!(
        &changes[changes.len() - 2..],
        &[(State::Running, State::PendingShutdown), (State::PendingShutdown, State::NotRunning)]
    );
}

#[test]
fn state_is_rebuilt_from_the_changelog_after_the_state_dir_is_deleted() {
    let cluster = Cluster::start();
    cluster.create("lines", 2);
    cluster.create("word-counts", 2);
    let state = tempfile::tempdir().unwrap();
    let (first, mut exact) = lines(2, 600);
    cluster.produce_lines(&first);
    let run = |text: &[String], wipe: bool| {
        let streams = KafkaStreams::new(word_count(), config(&cluster, "rebuild", state.path())).unwrap();
        if wipe {
            streams.clean_up().unwrap();
            assert!(!state.path().join("rebuild").exists());
        }
        streams.start().unwrap();
        streams.wait_for(State::Running, WAIT).unwrap();
        cluster.produce_lines(text);
        cluster.wait_committed("rebuild", "lines");
        cluster.wait_committed("rebuild", "rebuild-counts-repartition");
        let restored = streams.restored_records();
        let all: BTreeMap<String, i64> =
            streams.store::<String, i64>("counts").unwrap().all().map(Result::unwrap).collect();
        streams.close();
        (restored, all)
    };
    let (restored, all) = run(&[], false);
    assert_eq!(restored, 0, "nothing to restore the first time");
    assert_eq!(all, exact);

    // A restart with its state on disk restores nothing (the checkpoint is current).
    let (second, counts) = lines(3, 300);
    add(&mut exact, &counts);
    let (restored, all) = run(&second, false);
    assert_eq!(restored, 0, "the checkpoint covered the whole changelog");
    assert_eq!(all, exact);

    // Without it, every store is rebuilt from its changelog before processing.
    let (third, counts) = lines(4, 300);
    add(&mut exact, &counts);
    let (restored, all) = run(&third, true);
    assert!(restored >= 40, "restored {restored} changelog records");
    assert_eq!(all, exact);
    assert_eq!(cluster.latest_counts("word-counts", |c| c == &exact), exact);

    // Damaged RocksDB files (a garbled CURRENT, truncated tables) are rebuilt from the
    // changelog too, although the checkpoint is current.
    let damaged = corrupt_rocksdb(&state.path().join("rebuild"), "counts");
    assert!(damaged >= 2, "damaged {damaged} files");
    let (fourth, counts) = lines(5, 300);
    add(&mut exact, &counts);
    let (restored, all) = run(&fourth, false);
    assert!(restored >= 40, "restored {restored} changelog records");
    assert_eq!(all, exact);
}

/// Installs an uncaught-error handler that answers `response` and keeps each error's text.
fn record_errors(streams: &KafkaStreams, response: ThreadFailureResponse) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    streams.set_uncaught_exception_handler(move |e| {
        seen.lock().push(e.to_string());
        response
    });
    errors
}

/// Garbles `CURRENT` and truncates the table files of `store` in every task of an
/// application's state directory; returns how many files it damaged.
fn corrupt_rocksdb(app_dir: &std::path::Path, store: &str) -> usize {
    let mut damaged = 0;
    for task in std::fs::read_dir(app_dir).unwrap() {
        let dir = task.unwrap().path().join("rocksdb").join(store);
        let Ok(files) = std::fs::read_dir(&dir) else { continue };
        for file in files {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name == "CURRENT" {
                std::fs::write(&path, b"MANIFEST-garbage").unwrap();
                damaged += 1;
            } else if name.ends_with(".sst") {
                let len = std::fs::metadata(&path).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
                damaged += 1;
            }
        }
    }
    damaged
}

#[test]
fn a_damaged_store_without_a_changelog_fails_the_start_naming_it() {
    let cluster = Cluster::start();
    cluster.create("words", 1);
    let state = tempfile::tempdir().unwrap();
    let word = |w: &str| (Some(w.to_string()), w.as_bytes().to_vec());
    cluster.produce("words", &[word("a"), word("b")]);
    let app = || {
        let builder = StreamsBuilder::new();
        builder
            .stream("words", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .count(Materialized::as_("local").with_logging(false));
        KafkaStreams::new(builder.build().unwrap(), config(&cluster, "unlogged", state.path())).unwrap()
    };
    let streams = app();
    streams.start().unwrap();
    streams.wait_for(State::Running, WAIT).unwrap();
    cluster.wait_committed("unlogged", "words");
    streams.close();
    assert!(corrupt_rocksdb(&state.path().join("unlogged"), "local") >= 1);

    // Nothing could rebuild it: the start fails and says which store, rather than going
    // on with an empty one.
    let streams = app();
    let errors = record_errors(&streams, ThreadFailureResponse::ShutdownClient);
    streams.start().unwrap();
    streams.wait_for(State::Error, WAIT).unwrap();
    let errors = errors.lock().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("store 'local': opening RocksDB") && errors[0].contains("Corruption"), "{}", errors[0]);
    streams.close();
}

#[test]
fn start_rejects_missing_source_topics_and_co_partitioning_mistakes() {
    let cluster = Cluster::start();
    let state = tempfile::tempdir().unwrap();
    let streams = KafkaStreams::new(word_count(), config(&cluster, "missing", state.path())).unwrap();
    let e = streams.start().unwrap_err().to_string();
    assert!(e.contains("source topic 'lines'") && e.contains("KSTREAM-SOURCE-0000000000"), "{e}");
    assert_eq!(streams.state(), State::Created);

    // Two topics with different partition counts feeding one aggregation.
    cluster.create("a", 2);
    cluster.create("b", 3);
    let builder = StreamsBuilder::new();
    let strings = || Consumed::with(Serdes::string(), Serdes::string());
    builder
        .stream("a", strings())
        .merge(&builder.stream("b", strings()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("merged"));
    let streams = KafkaStreams::new(builder.build().unwrap(), config(&cluster, "copart", state.path())).unwrap();
    let e = streams.start().unwrap_err().to_string();
    assert!(e.contains("co-partitioned") && e.contains("a (2 partitions)") && e.contains("b (3 partitions)"), "{e}");
    assert!(e.contains("KSTREAM-SOURCE"), "names the operators: {e}");

    let mut bad = config(&cluster, "eos", state.path());
    bad.set("processing.guarantee", "exactly_once_v2").unwrap();
    assert!(matches!(KafkaStreams::new(word_count(), bad), Err(StreamsError::Config { .. })));
}

fn doubling() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .map_values(|v| v * 2)
        .to("doubled", Produced::with(Serdes::string(), Serdes::i64()));
    builder.build().unwrap()
}

#[test]
fn undeserializable_records_go_to_the_handler() {
    let cluster = Cluster::start();
    cluster.create("numbers", 1);
    cluster.create("doubled", 1);
    let good = |k: &str, v: i64| (Some(k.to_string()), v.to_be_bytes().to_vec());
    cluster.produce("numbers", &[good("a", 1), (Some("bad".into()), b"xyz".to_vec()), good("b", 2)]);
    let state = tempfile::tempdir().unwrap();

    // Log and continue: the bad record is skipped, the rest is processed.
    let mut config = config(&cluster, "lenient", state.path());
    config.set("default.deserialization.exception.handler", "log-and-continue").unwrap();
    let streams = KafkaStreams::new(doubling(), config).unwrap();
    streams.start().unwrap();
    let out = cluster.latest_counts("doubled", |c| c.len() == 2);
    assert_eq!(out, BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 4)]));
    streams.close();

    // Log and fail (the default): the thread stops with an error naming the record, and the
    // handler shuts the instance down.
    let streams = KafkaStreams::new(doubling(), config_for_fail(&cluster, state.path())).unwrap();
    let errors = record_errors(&streams, ThreadFailureResponse::ShutdownClient);
    streams.start().unwrap();
    streams.wait_for(State::Error, WAIT).unwrap();
    let errors = errors.lock().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("numbers-0@1"), "{}", errors[0]);
    streams.close();
    assert_eq!(streams.state(), State::Error);
}

fn config_for_fail(cluster: &Cluster, state: &std::path::Path) -> StreamsConfig {
    config(cluster, "strict", state)
}

/// Fails the first time it sees the key "boom"; otherwise doubles the value.
struct FailOnce(Arc<AtomicBool>);

impl FixedKeyProcessor<String, i64, i64> for FailOnce {
    fn process(
        &mut self,
        ctx: &mut FixedKeyContext<'_, String, i64>,
        record: FixedKeyRecord<String, i64>,
    ) -> freshet_streams::Result<()> {
        if record.key() == "boom" && !self.0.swap(true, Ordering::SeqCst) {
            return Err(StreamsError::Processing {
                task: "0_0".into(),
                operator: "fail-once".into(),
                reason: "boom the first time".into(),
            });
        }
        let doubled = record.value * 2;
        ctx.forward(record.with_value(doubled))
    }
}

#[test]
fn a_failed_thread_is_replaced_and_processing_goes_on() {
    let cluster = Cluster::start();
    cluster.create("numbers", 1);
    cluster.create("doubled", 1);
    let good = |k: &str, v: i64| (Some(k.to_string()), v.to_be_bytes().to_vec());
    cluster.produce("numbers", &[good("a", 1), good("boom", 2), good("b", 3)]);
    let state = tempfile::tempdir().unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let flag = failed.clone();
    let builder = StreamsBuilder::new();
    builder
        .stream("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .process_values(move || FailOnce(flag.clone()), &[])
        .to("doubled", Produced::with(Serdes::string(), Serdes::i64()));
    let streams = KafkaStreams::new(builder.build().unwrap(), config(&cluster, "replaced", state.path())).unwrap();
    let errors = record_errors(&streams, ThreadFailureResponse::ReplaceThread);
    streams.start().unwrap();

    // The first thread fails on "boom" before committing it; its replacement starts from
    // the last commit and processes every record.
    let out = cluster.latest_counts("doubled", |c| c.len() == 3);
    assert_eq!(out, BTreeMap::from([("a".to_string(), 2), ("boom".to_string(), 4), ("b".to_string(), 6)]));
    assert!(failed.load(Ordering::SeqCst));
    let errors = errors.lock().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("fail-once") && errors[0].contains("boom the first time"), "{}", errors[0]);

    // The instance stays up, and the new thread goes on with new input.
    streams.wait_for(State::Running, WAIT).unwrap();
    cluster.produce("numbers", &[good("c", 4)]);
    let out = cluster.latest_counts("doubled", |c| c.len() == 4);
    assert_eq!(out.get("c"), Some(&8));
    assert_ne!(streams.state(), State::Error);
    streams.close();
    assert_eq!(streams.state(), State::NotRunning);
}

#[test]
fn a_panic_in_a_dsl_function_reaches_the_handler_and_the_replacement_reopens_the_store() {
    let cluster = Cluster::start();
    cluster.create("words", 1);
    cluster.create("word-counts", 1);
    let word = |w: &str| (Some(w.to_string()), w.as_bytes().to_vec());
    cluster.produce("words", &[word("a"), word("boom"), word("b")]);
    let state = tempfile::tempdir().unwrap();
    let panicked = Arc::new(AtomicBool::new(false));
    let flag = panicked.clone();
    let builder = StreamsBuilder::new();
    builder
        .stream("words", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(move |w: String| {
            if w == "boom" && !flag.swap(true, Ordering::SeqCst) {
                panic!("boom the first time");
            }
            w
        })
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("word-store"))
        .to_stream()
        .to("word-counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
    let mut config = config(&cluster, "panicky", state.path());
    // Were the dead thread's consumer left in the group, its replacement would wait for
    // this session to expire; were its RocksDB store left open, it could not open it.
    config.set("session.timeout.ms", "30000").unwrap();
    let streams = KafkaStreams::new(builder.build().unwrap(), config).unwrap();
    let errors = record_errors(&streams, ThreadFailureResponse::ReplaceThread);
    let started = Instant::now();
    streams.start().unwrap();

    let out = cluster.latest_counts("word-counts", |c| c.len() == 3);
    assert_eq!(out, BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 1), ("boom".to_string(), 1)]));
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(panicked.load(Ordering::SeqCst));
    let errors = errors.lock().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("task 0_0 panicked processing the record at words-0@1")
            && errors[0].contains("boom the first time"),
        "{}",
        errors[0]
    );

    // The store the replacement reopened goes on counting.
    streams.wait_for(State::Running, WAIT).unwrap();
    cluster.produce("words", &[word("a")]);
    let out = cluster.latest_counts("word-counts", |c| c.get("a") == Some(&2));
    assert_eq!(out.get("a"), Some(&2));
    assert_ne!(streams.state(), State::Error);
    streams.close();
    assert_eq!(streams.state(), State::NotRunning);
}

#[test]
fn a_persistent_global_store_resumes_from_its_checkpoint_and_rebuilds_when_it_cannot() {
    let cluster = Cluster::start();
    cluster.create("countries", 1);
    cluster.create("orders", 1);
    cluster.create("orders-out", 1);
    let countries = |range: std::ops::Range<usize>| -> Vec<(Option<String>, Vec<u8>)> {
        range.map(|i| (Some(format!("c{i:02}")), format!("country {i}").into_bytes())).collect()
    };
    let names = |range: std::ops::Range<usize>| -> Vec<String> { range.map(|i| format!("c{i:02}")).collect() };
    cluster.produce("countries", &countries(0..10));
    let state = tempfile::tempdir().unwrap();
    let checkpoint = state.path().join("globals").join("global").join("0").join(".checkpoint");
    // Starts the app, returns the keys of its global store once it runs, and closes it.
    let run = || -> Vec<String> {
        let builder = StreamsBuilder::new();
        builder.global_table(
            "countries",
            Consumed::with(Serdes::string(), Serdes::string()),
            Materialized::as_("countries-store"),
        );
        builder
            .stream("orders", Consumed::with(Serdes::string(), Serdes::string()))
            .to("orders-out", Produced::with(Serdes::string(), Serdes::string()));
        let streams = KafkaStreams::new(builder.build().unwrap(), config(&cluster, "globals", state.path())).unwrap();
        streams.start().unwrap();
        streams.wait_for(State::Running, WAIT).unwrap();
        let store = streams.store::<String, String>("countries-store").unwrap();
        let keys = store.all().map(|kv| kv.unwrap().0).collect();
        streams.close();
        keys
    };

    assert_eq!(run(), names(0..10));
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\ncountries 0 10\n");

    // The topic loses its first ten records and gains five. Resuming from the checkpoint
    // keeps the ten in the local store; reading the topic again could not have them.
    let admin = cluster.admin();
    let deleted = cluster.rt.block_on(admin.delete_records(&[(("countries".to_string(), 0), 10)])).unwrap();
    assert_eq!(deleted[0].1.as_ref().unwrap(), &10);
    cluster.produce("countries", &countries(10..15));
    assert_eq!(run(), names(0..15));
    assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\ncountries 0 15\n");

    // A checkpoint without its store (renamed, or deleted) is not resumed from: reading
    // on from offset 15 into an empty store would lose every key before it.
    std::fs::remove_dir_all(checkpoint.parent().unwrap().join("rocksdb").join("countries-store")).unwrap();
    assert_eq!(run(), names(10..15));

    // A checkpoint before the topic's log start cannot be resumed from: the store is
    // emptied and rebuilt from what the topic has.
    std::fs::write(&checkpoint, "0\n1\ncountries 0 3\n").unwrap();
    assert_eq!(run(), names(10..15));

    // Neither does a corrupt one stop the start.
    cluster.produce("countries", &countries(0..2));
    std::fs::write(&checkpoint, "not a checkpoint").unwrap();
    let mut expected = names(0..2);
    expected.extend(names(10..15));
    assert_eq!(run(), expected);
}
