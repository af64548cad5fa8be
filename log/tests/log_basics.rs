//! Append, read, roll, lookups, retention, DeleteRecords, truncation and bad input.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use freshet_log::record::{Compression, RecordBatch, RecordBatchBuilder, TimestampType};
use freshet_log::storage::error::codes;
use freshet_log::storage::{AppendOrigin, LogConfig, LogError};

#[test]
fn offsets_are_assigned_and_batches_read_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), LogConfig::default());
    let mut expected = Vec::new();
    for (i, codec) in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let mut bytes = batch(codec, T0, &[(Some(b"k1"), Some(b"v1")), (None, Some(b"v2")), (Some(b"k3"), None)]);
        let info = log.append_as_leader(&mut bytes, 3, AppendOrigin::Client, T0 + 99).unwrap();
        assert_eq!((info.first_offset, info.last_offset, info.records), (i as i64 * 3, i as i64 * 3 + 2, 3));
        let (stored, _) = RecordBatch::parse(&bytes).unwrap();
        assert_eq!(stored.header().base_offset, i as i64 * 3, "base offset rewritten in place");
        assert_eq!(stored.header().partition_leader_epoch, 3);
        stored.check_integrity().unwrap();
        expected.extend_from_slice(&bytes);
    }
    assert_eq!(log.log_end_offset(), 15);
    let read = log.read(0, 1 << 20, None, true).unwrap();
    assert_eq!(read.read_to_vec().unwrap(), expected);
    let recs = read_all(&log);
    assert_eq!(recs.len(), 15);
    assert_eq!(recs[2], Rec { offset: 2, timestamp: T0 + 2, key: Some(b"k3".to_vec()), value: None });
}

#[test]
fn reads_return_whole_batches_from_the_one_containing_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), small_segments(1 << 20));
    let mut sizes = Vec::new();
    for i in 0..50 {
        let mut b = sized_batch(4, 50, T0 + i);
        sizes.push(b.len() as u64);
        log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0).unwrap();
    }
    // Offset 9 is inside the third batch (offsets 8..=11).
    let info = log.read(9, sizes[2] * 2, None, true).unwrap();
    assert_eq!(info.ranges.len(), 1);
    assert_eq!(info.ranges[0].first_offset, 8);
    assert_eq!(info.total_bytes(), sizes[2] * 2, "exactly two whole batches fit");
    assert_eq!(decode(&info.read_to_vec().unwrap()).first().unwrap().offset, 8);
    // A budget smaller than one batch still returns one batch when asked to.
    assert_eq!(log.read(9, 10, None, true).unwrap().total_bytes(), sizes[2]);
    assert_eq!(log.read(9, 10, None, false).unwrap().total_bytes(), 0);
    // The upper bound (a high watermark) is never passed.
    let bounded = log.read(0, 1 << 20, Some(20), true).unwrap();
    let recs = decode(&bounded.read_to_vec().unwrap());
    assert_eq!(recs.last().unwrap().offset, 19);
    // A bound inside a batch (offset 21 of 20..=23) excludes that whole batch.
    let inside = log.read(0, 1 << 20, Some(21), true).unwrap();
    assert_eq!(decode(&inside.read_to_vec().unwrap()).last().unwrap().offset, 19);
    assert_eq!(log.read(20, 1 << 20, Some(21), true).unwrap().total_bytes(), 0);
    // Reading at the end returns nothing; past it is out of range.
    assert_eq!(log.read(200, 1 << 20, None, true).unwrap().total_bytes(), 0);
    let err = log.read(201, 1 << 20, None, true).unwrap_err();
    assert_eq!(err.kafka_code(), codes::OFFSET_OUT_OF_RANGE);
}

#[test]
fn segments_roll_on_size_and_age_and_reads_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { segment_ms: 60_000, ..small_segments(2_000) };
    let mut log = open(&dir.path().join("t-0"), config);
    for i in 0..40 {
        let mut b = sized_batch(2, 100, T0 + i);
        log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0).unwrap();
    }
    let segments: Vec<_> = log.segments().map(|s| (s.base_offset(), s.size())).collect();
    assert!(segments.len() > 3, "{segments:?}");
    for w in segments.windows(2) {
        assert!(w[0].1 <= 2_000, "segment over segment.bytes: {segments:?}");
    }
    // File names are the 20-digit base offsets.
    for (base, _) in &segments {
        assert!(dir.path().join("t-0").join(format!("{base:020}.log")).exists());
    }
    let recs = read_all(&log);
    assert_eq!(recs.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..80).collect::<Vec<_>>());

    // Age: the next append after segment.ms rolls even though the segment is small.
    let before = log.segment_count();
    let mut b = sized_batch(1, 10, T0 + 100);
    log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0 + 100).unwrap();
    let mut b = sized_batch(1, 10, T0 + 200_000);
    log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0 + 200_000).unwrap();
    assert_eq!(log.segment_count(), before + 1);
}

#[test]
fn timestamp_lookups_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), small_segments(3_000));
    // Offsets 0..300, timestamps T0 + 10 * offset, in batches of 3.
    for i in 0..100 {
        let mut b = RecordBatchBuilder::new(Compression::Lz4);
        for j in 0..3 {
            b.append(T0 + 10 * (i * 3 + j), None, Some(&[0u8; 40]), &[]);
        }
        let mut bytes = b.build();
        log.append_as_leader(&mut bytes, 0, AppendOrigin::Client, T0).unwrap();
    }
    assert!(log.segment_count() > 2);
    for target in [T0 - 5, T0, T0 + 1, T0 + 455, T0 + 1500, T0 + 2990] {
        let expected = ((target - T0 + 9) / 10).max(0);
        let found = log.offset_for_timestamp(target).unwrap().unwrap();
        assert_eq!(found.offset, expected, "target {target}");
        assert_eq!(found.timestamp, T0 + 10 * expected);
    }
    assert_eq!(log.offset_for_timestamp(T0 + 2991).unwrap(), None);
}

#[test]
fn log_append_time_overwrites_timestamps_and_keeps_the_crc_valid() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { message_timestamp_type: TimestampType::LogAppendTime, ..LogConfig::default() };
    let mut log = open(&dir.path().join("t-0"), config);
    let mut bytes = batch(Compression::Zstd, T0, &[(None, Some(b"a")), (None, Some(b"b"))]);
    let info = log.append_as_leader(&mut bytes, 0, AppendOrigin::Client, T0 + 5_000).unwrap();
    assert_eq!(info.log_append_time, Some(T0 + 5_000));
    let (stored, _) = RecordBatch::parse(&bytes).unwrap();
    stored.check_integrity().unwrap();
    assert_eq!(stored.header().timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(stored.header().max_timestamp, T0 + 5_000);
}

#[test]
fn create_time_max_timestamp_is_corrected_from_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), LogConfig::default());
    let mut b = RecordBatchBuilder::new(Compression::None).max_timestamp(T0 + 1_000_000);
    b.append(T0, None, Some(b"x"), &[]);
    let mut bytes = b.build();
    let info = log.append_as_leader(&mut bytes, 0, AppendOrigin::Client, T0).unwrap();
    assert_eq!(info.max_timestamp, T0);
    let (stored, _) = RecordBatch::parse(&bytes).unwrap();
    stored.check_integrity().unwrap();
    assert_eq!(stored.header().max_timestamp, T0);
}

#[test]
fn bad_batches_are_rejected_with_typed_errors_and_leave_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { max_message_bytes: 2_000, ..LogConfig::default() };
    let mut log = open(&dir.path().join("t-0"), config);
    let mut good = batch(Compression::None, T0, &[(None, Some(b"ok"))]);
    log.append_as_leader(&mut good.clone(), 0, AppendOrigin::Client, T0).unwrap();
    let before = read_all(&log);
    let size_before = log.size_bytes();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    let mut garbage = vec![0xAB; 100];
    // A good batch followed by a corrupt one: the whole request is refused.
    let mut mixed = good.clone();
    mixed.extend_from_slice(&flipped);

    let cases: Vec<(&str, &mut Vec<u8>, i16)> = vec![
        ("crc", &mut flipped, codes::CORRUPT_MESSAGE),
        ("truncated", &mut truncated, codes::CORRUPT_MESSAGE),
        ("magic", &mut bad_magic, codes::INVALID_RECORD),
        ("garbage", &mut garbage, codes::CORRUPT_MESSAGE),
        ("mixed", &mut mixed, codes::CORRUPT_MESSAGE),
    ];
    for (name, bytes, code) in cases {
        let err = log.append_as_leader(bytes, 0, AppendOrigin::Client, T0).unwrap_err();
        assert_eq!(err.kafka_code(), code, "{name}: {err}");
        assert!(err.to_string().contains("batch"), "{name}: message should say where: {err}");
    }
    let err = log.append_as_leader(&mut good.clone()[..0].to_vec(), 0, AppendOrigin::Client, T0).unwrap_err();
    assert!(matches!(err, LogError::EmptyAppend));

    let mut big = sized_batch(3, 1_000, T0);
    let err = log.append_as_leader(&mut big, 0, AppendOrigin::Client, T0).unwrap_err();
    assert_eq!(err.kafka_code(), codes::MESSAGE_TOO_LARGE, "{err}");

    let mut control = RecordBatchBuilder::new(Compression::None).control(true);
    control.append(T0, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[]);
    let err = log.append_as_leader(&mut control.build(), 0, AppendOrigin::Client, T0).unwrap_err();
    assert_eq!(err.kafka_code(), codes::INVALID_RECORD);

    assert_eq!(read_all(&log), before);
    assert_eq!(log.size_bytes(), size_before);
    assert_eq!(log.log_end_offset(), 1);
    // And the log still takes good data.
    log.append_as_leader(&mut good, 0, AppendOrigin::Client, T0).unwrap();
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn compacted_topics_refuse_records_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { cleanup_compact: true, cleanup_delete: false, ..LogConfig::default() };
    let mut log = open(&dir.path().join("t-0"), config);
    let err = log
        .append_as_leader(&mut batch(Compression::None, T0, &[(None, Some(b"v"))]), 0, AppendOrigin::Client, T0)
        .unwrap_err();
    assert_eq!(err.kafka_code(), codes::INVALID_RECORD);
    assert!(err.to_string().contains("no key"), "{err}");
}

#[test]
fn time_retention_deletes_whole_expired_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: 10_000, ..small_segments(1_000) };
    let mut log = open(&dir.path().join("t-0"), config);
    for i in 0..30 {
        let mut b = sized_batch(1, 200, T0 + i * 1_000);
        log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0 + i * 1_000).unwrap();
    }
    let now = T0 + 30_000;
    let segments_before: Vec<(i64, i64)> = log.segments().map(|s| (s.base_offset(), s.max_timestamp())).collect();
    let deleted = log.delete_old_segments(now).unwrap();
    assert!(deleted > 0);
    let first = log.segments().next().unwrap();
    assert!(now - first.max_timestamp() <= 10_000, "a remaining segment is not expired");
    assert_eq!(log.log_start_offset(), first.base_offset(), "log start moves to the first kept segment");
    // The deleted segments were exactly the expired ones.
    let expired = segments_before.iter().take_while(|(_, ts)| now - ts > 10_000).count();
    assert_eq!(deleted, expired);
    let recs = read_all(&log);
    assert_eq!(recs.first().unwrap().offset, log.log_start_offset());
    assert_eq!(recs.last().unwrap().offset, 29);
    assert!(!dir.path().join("t-0").join(format!("{:020}.log", 0)).exists());

    // Everything expired: even the active segment goes, and the log stays writable.
    assert!(log.delete_old_segments(T0 + 1_000_000).unwrap() > 0);
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(log.log_end_offset(), 30);
    log.append_as_leader(&mut sized_batch(1, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
    assert_eq!(read_all(&log)[0].offset, 30);
}

#[test]
fn size_retention_keeps_the_log_under_retention_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_bytes: 3_000, ..small_segments(1_000) };
    let mut log = open(&dir.path().join("t-0"), config);
    for i in 0..40 {
        log.append_as_leader(&mut sized_batch(1, 200, T0 + i), 0, AppendOrigin::Client, T0).unwrap();
    }
    let size_before = log.size_bytes();
    assert!(size_before > 6_000);
    log.delete_old_segments(T0).unwrap();
    // As in Kafka, a segment goes only while what remains is still ≥ retention.bytes, so
    // the log ends less than one segment above the limit.
    let first = log.segments().next().unwrap().size();
    assert!(log.size_bytes() >= 3_000, "{} bytes left", log.size_bytes());
    assert!(log.size_bytes() - first < 3_000, "one more segment could have gone");
    assert_eq!(read_all(&log).last().unwrap().offset, 39);
}

#[test]
fn retention_never_passes_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention_ms: 0, ..small_segments(500) };
    let mut log = open(&dir.path().join("t-0"), config);
    log.set_high_watermark_tracks_log_end(false);
    for i in 0..10 {
        log.append_as_leader(&mut sized_batch(1, 200, T0 + i), 0, AppendOrigin::Client, T0).unwrap();
    }
    log.update_high_watermark(0);
    assert_eq!(log.delete_old_segments(T0 + 1_000_000).unwrap(), 0);
    log.update_high_watermark(4);
    log.delete_old_segments(T0 + 1_000_000).unwrap();
    assert!(log.log_start_offset() <= 4 && log.log_start_offset() > 0);
}

#[test]
fn delete_records_advances_the_log_start_and_frees_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), small_segments(800));
    for i in 0..30 {
        log.append_as_leader(&mut sized_batch(2, 100, T0 + i), 0, AppendOrigin::Client, T0).unwrap();
    }
    let segments_before = log.segment_count();
    assert_eq!(log.delete_records_before(25, T0).unwrap(), 25);
    assert_eq!(log.log_start_offset(), 25);
    assert!(log.segment_count() < segments_before);
    assert!(log.segments().next().unwrap().base_offset() <= 25);
    assert_eq!(log.read(24, 100, None, true).unwrap_err().kafka_code(), codes::OFFSET_OUT_OF_RANGE);
    assert!(read_all(&log).iter().any(|r| r.offset == 25));
    // Not past the high watermark, and never backwards.
    assert_eq!(log.delete_records_before(61, T0).unwrap_err().kafka_code(), codes::OFFSET_OUT_OF_RANGE);
    assert_eq!(log.delete_records_before(10, T0).unwrap(), 25);
    // The log start survives a reopen through the options the manager checkpoints.
    let start = log.log_start_offset();
    drop(log);
    let options = freshet_log::storage::LogOpenOptions {
        log_start_offset: Some(start),
        ..freshet_log::storage::LogOpenOptions::new(T0)
    };
    let (log, _) = freshet_log::storage::Log::open(dir.path().join("t-0"), small_segments(800), options).unwrap();
    assert_eq!(log.log_start_offset(), 25);
}

#[test]
fn leader_epochs_are_recorded_and_truncation_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(&dir.path().join("t-0"), small_segments(1 << 20));
    for (epoch, n) in [(0, 5), (2, 5), (5, 5)] {
        for _ in 0..n {
            log.append_as_leader(&mut sized_batch(1, 10, T0), epoch, AppendOrigin::Client, T0).unwrap();
        }
    }
    let epochs: Vec<_> = log.leader_epoch_cache().entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(epochs, [(0, 0), (2, 5), (5, 10)]);
    assert_eq!(log.leader_epoch_cache().end_offset_for(2, log.log_end_offset()), (2, 10));
    log.truncate_to(7, T0).unwrap();
    assert_eq!(log.log_end_offset(), 7);
    let epochs: Vec<_> = log.leader_epoch_cache().entries().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(epochs, [(0, 0), (2, 5)]);
    assert_eq!(read_all(&log).len(), 7);
    // The checkpoint file matches.
    let text = std::fs::read_to_string(dir.path().join("t-0/leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n2\n0 0\n2 5\n");
}

#[test]
fn follower_appends_keep_the_leaders_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open(&dir.path().join("l-0"), small_segments(1 << 20));
    for _ in 0..5 {
        leader.append_as_leader(&mut sized_batch(3, 10, T0), 1, AppendOrigin::Client, T0).unwrap();
    }
    let bytes = leader.read(0, 1 << 20, None, true).unwrap().read_to_vec().unwrap();
    let mut follower = open(&dir.path().join("f-0"), small_segments(1 << 20));
    let info = follower.append_as_follower(&bytes, T0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 14));
    assert_eq!(read_all(&follower), read_all(&leader));
    assert_eq!(follower.leader_epoch_cache().latest_epoch(), Some(1));
    // Replaying the same batches would move offsets backwards.
    assert!(matches!(follower.append_as_follower(&bytes, T0), Err(LogError::NonMonotonicOffset { .. })));
}

#[test]
fn flush_messages_moves_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { flush_messages: 3, ..LogConfig::default() };
    let mut log = open(&dir.path().join("t-0"), config);
    for i in 1..=7 {
        log.append_as_leader(&mut sized_batch(1, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
        assert_eq!(log.recovery_point(), (i / 3) * 3, "after {i} appends");
    }
    let config = LogConfig { flush_ms: 1_000, ..LogConfig::default() };
    let mut log = open(&dir.path().join("u-0"), config);
    log.append_as_leader(&mut sized_batch(1, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
    assert!(log.flush_plan_if_due(T0 + 10).unwrap().is_none());
    assert_eq!(log.recovery_point(), 0);
    let plan = log.flush_plan_if_due(T0 + 1_000).unwrap().unwrap();
    // The fsync runs without the lock: appends in the meantime are not covered by it.
    log.append_as_leader(&mut sized_batch(1, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
    plan.sync().unwrap();
    log.complete_flush(plan);
    assert_eq!(log.recovery_point(), 1);
    // A truncation between the halves makes the plan's offsets meaningless.
    log.append_as_leader(&mut sized_batch(1, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
    let plan = log.begin_flush(T0 + 2_000).unwrap();
    log.truncate_to(1, T0).unwrap();
    log.append_as_leader(&mut sized_batch(2, 10, T0), 0, AppendOrigin::Client, T0).unwrap();
    plan.sync().unwrap();
    log.complete_flush(plan);
    assert_eq!(log.recovery_point(), 1);
}
