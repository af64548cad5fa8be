//! Topic configs that change what the log does: compression.type, the CreateTime window,
//! segment.jitter.ms, preallocate, file.delete.delay.ms and max.compaction.lag.ms.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use common::*;
use freshet_log::record::{Compression, RecordBatch};
use freshet_log::storage::error::codes;
use freshet_log::storage::{
    AppendOrigin, Log, LogCleaner, LogConfig, LogError, LogManager, LogManagerConfig, TopicPartition,
};
use freshet_log::time::ManualClock;
use parking_lot::RwLock;

fn config(props: &[(&str, &str)]) -> LogConfig {
    let map: BTreeMap<String, String> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    LogConfig::default().with_overrides(&map).unwrap()
}

fn files_ending(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix))
        .count()
}

#[test]
fn a_topic_codec_is_what_the_log_stores_whatever_the_producer_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), config(&[("compression.type", "gzip")]));
    let kvs: &[KeyValue<'_>] = &[(Some(b"k1"), Some(b"v1")), (None, Some(b"v2"))];
    for (i, codec) in [Compression::None, Compression::Zstd, Compression::Gzip].into_iter().enumerate() {
        let info = log.append_as_leader(&mut batch(codec, T0, kvs), 0, AppendOrigin::Client, T0).unwrap();
        assert_eq!((info.first_offset, info.last_offset), (i as i64 * 2, i as i64 * 2 + 1));
    }
    let stored = log.read(0, 1 << 20, None, true).unwrap().read_to_vec().unwrap();
    let mut rest = &stored[..];
    while !rest.is_empty() {
        let (b, tail) = RecordBatch::parse(rest).unwrap();
        assert_eq!(b.header().compression().unwrap(), Compression::Gzip);
        rest = tail;
    }
    let recs = read_all(&log);
    assert_eq!(recs.len(), 6);
    assert_eq!(
        (recs[4].offset, recs[4].key.as_deref(), recs[4].value.as_deref()),
        (4, Some(&b"k1"[..]), Some(&b"v1"[..]))
    );
}

#[test]
fn a_create_time_outside_the_allowed_window_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(
        &dir.path().join("t-0"),
        config(&[("message.timestamp.before.max.ms", "60000"), ("message.timestamp.after.max.ms", "1000")]),
    );
    let now = T0 + 3_600_000;
    let stale = &mut batch(Compression::None, T0, &[(None, Some(b"old"))]);
    let err = log.append_as_leader(stale, 0, AppendOrigin::Client, now).unwrap_err();
    assert!(matches!(err, LogError::InvalidTimestamp { timestamp: T0, .. }), "{err:?}");
    assert_eq!(err.kafka_code(), codes::INVALID_TIMESTAMP);
    let future = &mut batch(Compression::None, now + 1001, &[(None, Some(b"soon"))]);
    assert!(matches!(
        log.append_as_leader(future, 0, AppendOrigin::Client, now),
        Err(LogError::InvalidTimestamp { .. })
    ));
    assert_eq!(log.log_end_offset(), 0, "a refused request stores nothing");
    log.append_as_leader(
        &mut batch(Compression::None, now - 60000, &[(None, Some(b"ok"))]),
        0,
        AppendOrigin::Client,
        now,
    )
    .unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

/// The first time after `T0` at which the active segment of `log` would roll on time alone.
fn time_roll_of(log: &Log) -> i64 {
    let active = log.segments().last().unwrap();
    let limit = log.config().segment_ms + 1;
    (0..=limit).find(|t| active.should_roll(log.config(), 0, log.log_end_offset(), T0 + t)).unwrap()
}

/// The same, for a new log in `dir` holding one batch written at `T0`.
fn time_roll_after(dir: &Path, config: &LogConfig) -> i64 {
    let mut log = open(dir, config.clone());
    log.append_as_leader(&mut batch(Compression::None, T0, &[(Some(b"k"), Some(b"v"))]), 0, AppendOrigin::Client, T0)
        .unwrap();
    let at = time_roll_of(&log);
    assert!(!log.maybe_roll_by_time(T0 + at - 1).unwrap() && log.maybe_roll_by_time(T0 + at).unwrap());
    at
}

#[test]
fn segment_jitter_spreads_time_based_rolls_below_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let jittered = config(&[("segment.ms", "1000"), ("segment.jitter.ms", "800")]);
    let rolls: Vec<i64> = (0..12).map(|p| time_roll_after(&dir.path().join(format!("t-{p}")), &jittered)).collect();
    assert!(rolls.iter().all(|t| (201..=1001).contains(t)), "{rolls:?}");
    assert!(rolls.iter().any(|t| *t < 1001) && rolls.windows(2).any(|w| w[0] != w[1]), "{rolls:?}");
    // A segment keeps its jitter across a restart.
    let path = dir.path().join("reopened-0");
    let mut log = open(&path, jittered.clone());
    log.append_as_leader(&mut sized_batch(1, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
    let before = time_roll_of(&log);
    log.close(T0).unwrap();
    drop(log);
    assert_eq!(time_roll_of(&open(&path, jittered)), before);
    let plain = config(&[("segment.ms", "1000")]);
    assert_eq!(time_roll_after(&dir.path().join("plain-0"), &plain), 1001);
}

#[test]
fn preallocate_reserves_the_segment_and_a_roll_gives_back_what_was_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 4 << 20;
    let mut log = open(&dir.path().join("t-0"), config(&[("preallocate", "true"), ("segment.bytes", "4194304")]));
    let mut b = sized_batch(4, 100, T0);
    let size = b.len() as u64;
    log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0).unwrap();
    let first = dir.path().join("t-0").join("00000000000000000000.log");
    let meta = std::fs::metadata(&first).unwrap();
    assert_eq!(meta.len(), size, "readers and recovery see only what was appended");
    if meta.blocks() * 512 < segment_bytes {
        eprintln!("this filesystem does not preallocate; nothing more to check");
        return;
    }
    log.roll(T0).unwrap();
    assert!(std::fs::metadata(&first).unwrap().blocks() * 512 < segment_bytes / 4, "the roll trims the reservation");
    assert_eq!(read_all(&log).len(), 4);
}

#[test]
fn deleted_segments_wait_file_delete_delay_ms_and_a_restart_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut manager_config = LogManagerConfig::new(tmp.path());
    manager_config.default_log_config = config(&[("segment.bytes", "2000"), ("file.delete.delay.ms", "5000")]);
    let (m, _) = LogManager::open(manager_config.clone(), HashMap::new(), clock.clone()).unwrap();
    let tp = TopicPartition::new("t", 0);
    let log = m.get_or_create_log(&tp).unwrap();
    for i in 0..40 {
        log.write().append_as_leader(&mut sized_batch(2, 60, T0 + i), 0, AppendOrigin::Client, T0).unwrap();
    }
    let dir = log.read().dir().to_path_buf();
    let segments = log.read().segment_count();
    assert!(segments > 2);
    log.write().delete_records_before(30, T0).unwrap();
    let deleted = files_ending(&dir, ".log.deleted");
    assert!(deleted >= 1, "retired segments are renamed, not yet removed");
    assert_eq!(log.read().segment_count() + deleted, segments);
    assert_eq!(read_all(&log.read()).first().unwrap().offset, 30);

    clock.advance(4999);
    assert_eq!(m.delete_retired_segments().unwrap(), 0);
    clock.advance(1);
    assert_eq!(m.delete_retired_segments().unwrap(), deleted);
    assert_eq!(files_ending(&dir, ".deleted"), 0);

    // Retired files that a crash left behind are removed by the next start.
    log.write().delete_records_before(60, T0).unwrap();
    assert!(files_ending(&dir, ".log.deleted") >= 1);
    drop(log);
    drop(m);
    let (m, _) = LogManager::open(manager_config, HashMap::new(), clock).unwrap();
    assert_eq!(files_ending(&dir, ".deleted"), 0);
    assert_eq!(read_all(&m.get_or_create_log(&tp).unwrap().read()).first().unwrap().offset, 60);
}

#[test]
fn with_no_delay_retired_segments_go_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), config(&[("segment.bytes", "2000"), ("file.delete.delay.ms", "0")]));
    for i in 0..40 {
        log.append_as_leader(&mut sized_batch(2, 60, T0 + i), 0, AppendOrigin::Client, T0).unwrap();
    }
    log.delete_records_before(30, T0).unwrap();
    assert_eq!(files_ending(&dir.path().join("t-0"), ".deleted"), 0);
}

#[test]
fn max_compaction_lag_makes_a_pass_due_below_the_dirty_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&[
        ("cleanup.policy", "compact"),
        ("segment.bytes", "2000"),
        ("min.cleanable.dirty.ratio", "0.99"),
        ("max.compaction.lag.ms", "10000"),
    ]);
    assert_eq!(config.max_segment_ms(), 10000, "the lag bounds how long the active segment stays open");
    let log = RwLock::new(open(&dir.path().join("t-0"), config));
    let value = [b'v'; 40];
    let append = |from: i64, to: i64| {
        for i in from..to {
            let key = format!("k{}", i % 5);
            let mut b = batch(Compression::None, T0 + i, &[(Some(key.as_bytes()), Some(&value))]);
            log.write().append_as_leader(&mut b, 0, AppendOrigin::Client, T0 + i).unwrap();
        }
    };
    append(0, 60);
    LogCleaner::default().clean(&log, T0 + 100, true).unwrap().unwrap();
    // The first dirty record is the first of the segment that was active during the pass
    // (offset i was written at T0 + i).
    let first_dirty = log.read().cleaner_checkpoint();
    assert!((1..60).contains(&first_dirty), "{first_dirty}");
    append(100, 130);
    let ratio = LogCleaner::dirty_ratio(&log.read(), T0 + 200).unwrap();
    assert!(ratio < 0.99, "{ratio}");
    assert!(!LogCleaner::is_due(&log.read(), T0 + 200));
    assert!(!LogCleaner::is_due(&log.read(), T0 + first_dirty + 10_000), "no dirty record has waited the lag yet");
    assert!(LogCleaner::is_due(&log.read(), T0 + first_dirty + 10_001));
}

#[test]
fn a_compacted_topic_rolls_its_active_segment_within_the_compaction_lag() {
    let dir = tempfile::tempdir().unwrap();
    let lagged = config(&[("cleanup.policy", "compact"), ("segment.ms", "100000"), ("max.compaction.lag.ms", "500")]);
    assert_eq!(time_roll_after(&dir.path().join("c-0"), &lagged), 501);
    let deleting = config(&[("segment.ms", "1000"), ("max.compaction.lag.ms", "500")]);
    assert_eq!(time_roll_after(&dir.path().join("d-0"), &deleting), 1001, "the lag means nothing without compaction");
}
