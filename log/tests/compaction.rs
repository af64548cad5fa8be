//! Log compaction: the latest record per key survives with its offset, order is kept,
//! tombstones go only after delete.retention.ms, and a crash mid-clean loses nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use freshet_log::record::{Compression, RecordBatchBuilder};
use freshet_log::storage::{AppendOrigin, CleanStage, CleanerConfig, Log, LogCleaner, LogConfig, LogOpenOptions};
use parking_lot::RwLock;
use proptest::prelude::*;

const DELETE_RETENTION_MS: i64 = 50_000;

fn compact_config() -> LogConfig {
    LogConfig {
        cleanup_compact: true,
        cleanup_delete: false,
        segment_bytes: 1_500,
        index_interval_bytes: 100,
        delete_retention_ms: DELETE_RETENTION_MS,
        min_cleanable_dirty_ratio: 0.5,
        ..LogConfig::default()
    }
}

/// One write: key index and value (None = tombstone).
type Op = (u8, Option<u16>);

/// Appends `ops` in batches of `batch_sizes`, cycling codecs. Returns what each offset holds.
fn write_ops(log: &mut Log, ops: &[Op], batch_sizes: &[usize]) -> BTreeMap<i64, Rec> {
    let codecs = [Compression::None, Compression::Lz4, Compression::Gzip, Compression::Zstd, Compression::Snappy];
    let mut written = BTreeMap::new();
    let mut i = 0;
    let mut sizes = batch_sizes.iter().cycle();
    let mut n = 0;
    while i < ops.len() {
        let size = (*sizes.next().unwrap()).clamp(1, ops.len() - i);
        let mut b = RecordBatchBuilder::new(codecs[n % codecs.len()]);
        n += 1;
        let first = log.log_end_offset();
        for (j, (key, value)) in ops[i..i + size].iter().enumerate() {
            let key = format!("key-{key}").into_bytes();
            let value = value.map(|v| format!("value-{v}-{}", first + j as i64).into_bytes());
            let ts = T0 + first + j as i64;
            b.append(ts, Some(&key), value.as_deref(), &[]);
            written.insert(first + j as i64, Rec { offset: first + j as i64, timestamp: ts, key: Some(key), value });
        }
        log.append_as_leader(&mut b.build(), 0, AppendOrigin::Client, T0).unwrap();
        i += size;
    }
    written
}

/// The invariants that hold after any number of cleanings.
fn check_invariants(log: &Log, written: &BTreeMap<i64, Rec>, tombstones_may_be_gone: bool) {
    let read = read_all(log);
    for pair in read.windows(2) {
        assert!(pair[0].offset < pair[1].offset, "offsets must strictly increase: {pair:?}");
    }
    for r in &read {
        assert_eq!(Some(r), written.get(&r.offset), "a served record must be exactly what was written at its offset");
    }
    let mut latest: BTreeMap<&Vec<u8>, &Rec> = BTreeMap::new();
    for r in written.values() {
        latest.insert(r.key.as_ref().unwrap(), r);
    }
    let served: BTreeMap<i64, &Rec> = read.iter().map(|r| (r.offset, r)).collect();
    for (key, rec) in latest {
        let present = served.contains_key(&rec.offset);
        if rec.value.is_some() || !tombstones_may_be_gone {
            assert!(present, "latest record for {:?} at offset {} was lost", String::from_utf8_lossy(key), rec.offset);
        }
        // No older value of the key may be served once a newer one exists and it was cleaned.
    }
    // Everything in the active segment is untouched.
    let active_base = log.segments().last().unwrap().base_offset();
    for offset in written.keys().filter(|o| **o >= active_base) {
        assert!(served.contains_key(offset), "active segment record {offset} was touched");
    }
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec((0u8..12, proptest::option::weighted(0.8, any::<u16>())), 20..300)
}

proptest! {
    // 48 cases by default; PROPTEST_CASES=N searches harder.
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48)))]

    #[test]
    fn compaction_keeps_the_latest_record_per_key(ops in arb_ops(), batch_sizes in proptest::collection::vec(1usize..8, 1..5)) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(tmp.path().join("c-0"), compact_config(), LogOpenOptions::new(T0)).unwrap();
        let written = write_ops(&mut log, &ops, &batch_sizes);
        let log = RwLock::new(log);
        let cleaner = LogCleaner::new(CleanerConfig::default());
        let now = T0 + 1_000;

        cleaner.clean(&log, now, true).unwrap();
        check_invariants(&log.read(), &written, false);
        // Cleaning again changes nothing that matters (idempotent).
        let before = read_all(&log.read());
        cleaner.clean(&log, now + 1, true).unwrap();
        prop_assert_eq!(&read_all(&log.read()), &before);

        // Tombstones survive until their horizon, then go.
        cleaner.clean(&log, now + DELETE_RETENTION_MS - 1, true).unwrap();
        check_invariants(&log.read(), &written, false);
        cleaner.clean(&log, now + DELETE_RETENTION_MS, true).unwrap();
        check_invariants(&log.read(), &written, true);
        let guard = log.read();
        let active_base = guard.segments().last().unwrap().base_offset();
        for r in read_all(&guard) {
            prop_assert!(r.value.is_some() || r.offset >= active_base, "tombstone at {} outlived its horizon", r.offset);
        }
        // Within the cleaned part, each key appears at most once.
        let mut keys = std::collections::HashSet::new();
        for r in read_all(&guard).iter().filter(|r| r.offset < active_base) {
            prop_assert!(keys.insert(r.key.clone()), "key {:?} appears twice in the cleaned part", r.key);
        }
    }
}

#[test]
fn cleaning_waits_for_the_dirty_ratio() {
    let (_tmp, mut log) = new_compacted_log();
    let ops: Vec<Op> = (0..200).map(|i| ((i % 10) as u8, Some(i as u16))).collect();
    let written = write_ops(&mut log, &ops, &[4]);
    let log = RwLock::new(log);
    let cleaner = LogCleaner::new(CleanerConfig::default());
    assert!(cleaner.clean(&log, T0, false).unwrap().is_some(), "a never-cleaned log is all dirty");
    check_invariants(&log.read(), &written, false);
    // Just cleaned: the dirty part is small, so no pass is due.
    assert_eq!(cleaner.clean(&log, T0, false).unwrap(), None);
    let ratio = LogCleaner::dirty_ratio(&log.read(), T0);
    assert!(ratio.is_none_or(|r| r < 0.5), "{ratio:?}");
    let more: Vec<Op> = (0..400).map(|i| ((i % 10) as u8, Some(i as u16))).collect();
    let more_written = write_ops(&mut log.write(), &more, &[4]);
    assert!(LogCleaner::dirty_ratio(&log.read(), T0).unwrap() >= 0.5);
    let stats = cleaner.clean(&log, T0, false).unwrap().unwrap();
    assert!(stats.records_retained < stats.records_read);
    let mut all = written;
    all.extend(more_written);
    check_invariants(&log.read(), &all, false);
}

#[test]
fn a_small_dedupe_buffer_cleans_in_several_passes() {
    let (_tmp, mut log) = new_compacted_log();
    let ops: Vec<Op> = (0..600).map(|i| ((i % 7) as u8, Some(i as u16))).collect();
    let written = write_ops(&mut log, &ops, &[3]);
    let log = RwLock::new(log);
    // Room for only a handful of keys per pass.
    let cleaner = LogCleaner::new(CleanerConfig { dedupe_buffer_bytes: 40 * 5, ..CleanerConfig::default() });
    let mut passes = 0;
    let active_base = log.read().segments().last().unwrap().base_offset();
    while log.read().cleaner_checkpoint() < active_base {
        cleaner.clean(&log, T0, true).unwrap();
        passes += 1;
        check_invariants(&log.read(), &written, false);
        assert!(passes < 500, "the cleaner must make progress");
    }
    assert!(passes > 1);
    // Each pass only dedupes the keys its small map held, so a key may keep one older
    // record from before the pass that last saw it; never more.
    let mut per_key = BTreeMap::new();
    for r in read_all(&log.read()).iter().filter(|r| r.offset < active_base) {
        *per_key.entry(r.key.clone()).or_insert(0) += 1;
    }
    assert!(per_key.values().all(|n| *n <= 2), "{per_key:?}");
}

fn crash_mid_clean(stage: CleanStage) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c-0");
    let (mut log, _) = Log::open(&dir, compact_config(), LogOpenOptions::new(T0)).unwrap();
    let ops: Vec<Op> =
        (0..300).map(|i| ((i * 7 % 13) as u8, if i % 11 == 0 { None } else { Some(i as u16) })).collect();
    let written = write_ops(&mut log, &ops, &[5, 2, 7]);
    let log = RwLock::new(log);
    let stats = LogCleaner::new(CleanerConfig::default()).stop_at(stage).clean(&log, T0, true).unwrap().unwrap();
    assert_eq!(stats.interrupted_at, Some(stage));
    drop(log); // the process dies here

    let (log, report) = reopen(&dir);
    match stage {
        CleanStage::CleanedWritten => assert_eq!(report.completed_swaps, 0),
        _ => assert_eq!(report.completed_swaps, 1, "loading finishes the committed swap"),
    }
    assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    check_invariants(&log, &written, false);

    // The recovered log cleans to completion.
    let log = RwLock::new(log);
    LogCleaner::new(CleanerConfig::default()).clean(&log, T0, true).unwrap();
    check_invariants(&log.read(), &written, false);
}

/// A fresh compacted log in a temporary directory (kept alive by the returned guard).
fn new_compacted_log() -> (tempfile::TempDir, Log) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(tmp.path().join("c-0"), compact_config(), LogOpenOptions::new(T0)).unwrap();
    (tmp, log)
}

fn reopen(dir: &Path) -> (Log, freshet_log::storage::LoadReport) {
    Log::open(dir, compact_config(), LogOpenOptions::new(T0)).unwrap()
}

#[test]
fn a_crash_after_writing_cleaned_files_keeps_the_old_segments() {
    crash_mid_clean(CleanStage::CleanedWritten);
}

#[test]
fn a_crash_after_the_swap_rename_finishes_the_swap_on_load() {
    crash_mid_clean(CleanStage::SwapRenamed);
}

#[test]
fn a_crash_after_deleting_old_segments_finishes_the_swap_on_load() {
    crash_mid_clean(CleanStage::OldSegmentsDeleted);
}

#[test]
fn retention_still_applies_to_compact_delete_topics() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LogConfig { cleanup_delete: true, retention_ms: 100, ..compact_config() };
    let (mut log, _) = Log::open(tmp.path().join("c-0"), config, LogOpenOptions::new(T0)).unwrap();
    let ops: Vec<Op> = (0..100).map(|i| ((i % 5) as u8, Some(i as u16))).collect();
    write_ops(&mut log, &ops, &[4]);
    assert!(log.delete_old_segments(T0 + 1_000_000).unwrap() > 0);
    assert_eq!(log.log_start_offset(), 100);
}

#[test]
fn a_passed_tombstone_horizon_makes_a_pass_due_without_new_data() {
    let (_tmp, mut log) = new_compacted_log();
    let ops: Vec<Op> = (0..200).map(|i| ((i % 10) as u8, if i % 10 == 3 { None } else { Some(i as u16) })).collect();
    write_ops(&mut log, &ops, &[4]);
    let log = RwLock::new(log);
    let cleaner = LogCleaner::new(CleanerConfig::default());
    let first = cleaner.clean(&log, T0, false).unwrap().unwrap();
    assert_eq!(first.tombstones_removed, 0);
    assert_eq!(first.earliest_delete_horizon_ms, Some(T0 + DELETE_RETENTION_MS));
    assert!(!LogCleaner::is_due(&log.read(), T0 + DELETE_RETENTION_MS - 1));
    assert!(LogCleaner::is_due(&log.read(), T0 + DELETE_RETENTION_MS));
    let second = cleaner.clean(&log, T0 + DELETE_RETENTION_MS, false).unwrap().unwrap();
    assert!(second.tombstones_removed > 0);
    assert!(!LogCleaner::is_due(&log.read(), T0 + 10 * DELETE_RETENTION_MS));
}

#[test]
fn reads_continue_past_segments_that_cleaning_emptied() {
    let (_tmp, mut log) = new_compacted_log();
    // The first segments hold only keys that later segments overwrite, so cleaning empties
    // them, leaving empty segments whose base offsets lie past the previous one's end.
    let mut ops: Vec<Op> = (0..80).map(|i| (10 + i as u8 % 2, Some(i as u16))).collect();
    ops.extend((0..40).map(|i| (10 + i as u8 % 2, Some(1000 + i as u16))));
    ops.extend((0..40).map(|i| (20 + i as u8 % 3, Some(i as u16))));
    let written = write_ops(&mut log, &ops, &[2]);
    let log = RwLock::new(log);
    LogCleaner::new(CleanerConfig::default()).clean(&log, T0, true).unwrap();
    let guard = log.read();
    let empty: Vec<i64> = guard.segments().filter(|s| s.size() == 0).map(|s| s.base_offset()).collect();
    assert!(empty.iter().any(|b| *b > 0), "cleaning should leave an empty segment past offset 0: {empty:?}");
    check_invariants(&guard, &written, false);
}
