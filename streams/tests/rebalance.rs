//! State across rebalances: tasks that stay on an instance keep their stores, tasks that
//! come back restore from their checkpoints, and a restore longer than
//! `max.poll.interval.ms` neither costs the member its partitions nor runs twice.

#![allow(clippy::unwrap_used)]

mod support;

use freshet_log::TopicPartition;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_log::client::OffsetSpec;
use freshet_streams::{KafkaStreams, State, StreamsConfig};
use parking_lot::Mutex;
use support::*;

/// Commits far apart and no caches: at every rebalance, processed input is uncommitted
/// and its store writes are in the changelog only once the revocation's commit flushed.
fn uncommitted(cluster: &Cluster, app: &str, dir: &std::path::Path) -> StreamsConfig {
    let mut config = config(cluster, app, dir);
    config.set_all([("commit.interval.ms", "600000"), ("cache.max.bytes", "0")]).unwrap();
    config
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records in every partition of `topic` (none was compacted: segments are 1 GiB).
fn records_in(cluster: &Cluster, topic: &str, partitions: i32) -> u64 {
    let admin = cluster.admin();
    let specs: Vec<_> =
        (0..partitions).map(|p| (TopicPartition::new(topic.to_string(), p), OffsetSpec::Latest)).collect();
    let ends = cluster.rt.block_on(admin.list_offsets(&specs, false)).unwrap();
    ends.into_iter().map(|(_, o)| o.unwrap().offset as u64).sum()
}

#[test]
fn a_joining_instance_leaves_the_tasks_that_stay_with_their_state() {
    let cluster = Cluster::start();
    cluster.create("lines", 3);
    cluster.create("word-counts", 3);
    let (first, mut exact) = lines(11, 1500);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let a = KafkaStreams::new(word_count(), uncommitted(&cluster, "stay", dir_a.path())).unwrap();
    a.start().unwrap();
    a.wait_for(State::Running, WAIT).unwrap();
    cluster.produce_lines(&first);
    assert_eq!(cluster.latest_counts("word-counts", |c| c == &exact), exact);

    // B joins while A has processed everything and committed nothing: A is idle in poll
    // when the rebalance reaches it.
    let b = KafkaStreams::new(word_count(), uncommitted(&cluster, "stay", dir_b.path())).unwrap();
    b.start().unwrap();
    wait_until("the tasks are shared", || {
        let (ta, tb) = (a.local_tasks().len(), b.local_tasks().len());
        ta > 0 && tb > 0 && ta + tb == 6 && a.state() == State::Running && b.state() == State::Running
    });
    assert_eq!(a.restored_records(), 0, "A's remaining tasks kept their stores");
    let b_restored = b.restored_records();
    assert!(b_restored > 0, "B rebuilt the tasks it took over from their changelogs");

    let (second, counts) = lines(12, 100);
    add(&mut exact, &counts);
    cluster.produce_lines(&second);
    assert_eq!(cluster.latest_counts("word-counts", |c| c == &exact), exact);

    // B leaves: its tasks come back to A, which restores them from the checkpoints it
    // wrote when they left, not from the changelogs' beginning.
    b.close();
    wait_until("A runs every task", || a.local_tasks().len() == 6 && a.state() == State::Running);
    let back = a.restored_records();
    assert!(back < b_restored, "A restored {back} records; from zero it would have been {b_restored}");
    let (third, counts) = lines(13, 100);
    add(&mut exact, &counts);
    cluster.produce_lines(&third);
    assert_eq!(cluster.latest_counts("word-counts", |c| c == &exact), exact);
    let all: BTreeMap<String, i64> = a.store::<String, i64>("counts").unwrap().all().map(Result::unwrap).collect();
    assert_eq!(all, exact);
    a.close();
}

#[test]
fn a_restore_longer_than_max_poll_interval_completes_once_and_keeps_the_member() {
    let cluster = Cluster::start();
    cluster.create("lines", 2);
    cluster.create("word-counts", 2);
    let (text, mut exact) = lines(21, 16000);
    cluster.produce_lines(&text);
    let first = tempfile::tempdir().unwrap();
    // Without a cache every count update is a changelog record: 128000 of them
    // (enough that restoring them one per poll takes well over a second).
    let mut uncached = config(&cluster, "slow", first.path());
    uncached.set("cache.max.bytes", "0").unwrap();
    let streams = KafkaStreams::new(word_count(), uncached).unwrap();
    streams.start().unwrap();
    cluster.wait_committed("slow", "lines");
    cluster.wait_committed("slow", "slow-counts-repartition");
    streams.close();
    let changelog = records_in(&cluster, "slow-counts-changelog", 2);

    // Elsewhere, without local state: every store is rebuilt, one record per restore
    // poll, which takes far longer than max.poll.interval.ms.
    let second = tempfile::tempdir().unwrap();
    let mut slow = config(&cluster, "slow", second.path());
    slow.set_all([("max.poll.interval.ms", "500"), ("restore.consumer.max.poll.records", "1")]).unwrap();
    let streams = KafkaStreams::new(word_count(), slow).unwrap();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    streams.set_state_listener(move |new, old| seen.lock().push((old, new)));
    let started = Instant::now();
    streams.start().unwrap();
    streams.wait_for(State::Running, WAIT).unwrap();
    let took = started.elapsed();
    assert!(took > Duration::from_millis(1000), "the restore took only {took:?}: the test shows nothing");
    assert_eq!(streams.restored_records(), changelog, "every changelog record restored exactly once");

    let (more, counts) = lines(22, 100);
    add(&mut exact, &counts);
    cluster.produce_lines(&more);
    cluster.wait_committed("slow", "lines");
    cluster.wait_committed("slow", "slow-counts-repartition");
    let all: BTreeMap<String, i64> =
        streams.store::<String, i64>("counts").unwrap().all().map(Result::unwrap).collect();
    assert_eq!(all, exact);
    let changes = changes.lock().clone();
    let rebalances = changes.iter().filter(|(_, new)| *new == State::Rebalancing).count();
    assert_eq!(rebalances, 1, "the member stayed in the group: {changes:?}");
    streams.close();
}
