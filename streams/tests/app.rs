//! Streams applications against a real (embedded) broker on a loopback port: word count
//! over three partitions, restarts with and without local state, start-up checks, and
//! records that do not deserialize.

#![allow(clippy::unwrap_used)]

use freshet_log::TopicPartition;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use freshet_streams::processor::{FixedKeyContext, FixedKeyProcessor, FixedKeyRecord};
use freshet_streams::serde::Serdes;
use freshet_streams::{
    Consumed, Grouped, KafkaStreams, Materialized, Produced, State, StreamsBuilder, StreamsConfig, StreamsError,
    ThreadFailureResponse, Topology,
};
use parking_lot::Mutex;

mod support;

use support::*;

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
    let deleted = cluster.rt.block_on(admin.delete_records(&[(TopicPartition::new("countries", 0), 10)])).unwrap();
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
