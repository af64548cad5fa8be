//! Idempotent producers at the log: duplicates, gaps, epochs, and state across restarts.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use freshet_log::codes;
use freshet_log::record::{Compression, RecordBatchBuilder};
use freshet_log::storage::{AppendOrigin, Log, LogConfig, LogOpenOptions};

fn idempotent(pid: i64, epoch: i16, seq: i32, records: i32) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new(Compression::Lz4).producer(pid, epoch, seq);
    for i in 0..records {
        b.append(T0 + i64::from(i), Some(format!("k{seq}-{i}").as_bytes()), Some(b"v"), &[]);
    }
    b.build()
}

fn config() -> LogConfig {
    LogConfig { segment_bytes: 600, ..LogConfig::default() }
}

#[test]
fn retries_are_acknowledged_once_and_gaps_and_stale_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path().join("t-0"), config(), LogOpenOptions::new(T0)).unwrap();
    let first = log.append_as_leader(&mut idempotent(5, 0, 0, 3), 0, AppendOrigin::Client, T0).unwrap();
    let second = log.append_as_leader(&mut idempotent(5, 0, 3, 2), 0, AppendOrigin::Client, T0).unwrap();
    assert_eq!((first.first_offset, second.first_offset), (0, 3));
    // The producer did not see the ack and retries the first batch.
    let retry = log.append_as_leader(&mut idempotent(5, 0, 0, 3), 0, AppendOrigin::Client, T0).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.first_offset, retry.last_offset), (0, 2));
    assert_eq!(log.log_end_offset(), 5, "nothing was appended twice");

    let gap = log.append_as_leader(&mut idempotent(5, 0, 9, 1), 0, AppendOrigin::Client, T0).unwrap_err();
    assert_eq!(gap.kafka_code(), codes::OUT_OF_ORDER_SEQUENCE_NUMBER, "{gap}");
    let unknown = log.append_as_leader(&mut idempotent(6, 0, 4, 1), 0, AppendOrigin::Client, T0).unwrap_err();
    assert_eq!(unknown.kafka_code(), codes::UNKNOWN_PRODUCER_ID, "{unknown}");
    log.append_as_leader(&mut idempotent(5, 1, 0, 1), 0, AppendOrigin::Client, T0).unwrap();
    let stale = log.append_as_leader(&mut idempotent(5, 0, 5, 1), 0, AppendOrigin::Client, T0).unwrap_err();
    assert_eq!(stale.kafka_code(), codes::INVALID_PRODUCER_EPOCH, "{stale}");
    assert_eq!(log.log_end_offset(), 6);

    // Two batches in one request must be in sequence with each other too.
    let mut two = idempotent(5, 1, 1, 1);
    two.extend(idempotent(5, 1, 2, 1));
    assert_eq!(log.append_as_leader(&mut two, 0, AppendOrigin::Client, T0).unwrap().records, 2);
    let mut bad = idempotent(5, 1, 3, 1);
    bad.extend(idempotent(5, 1, 7, 1));
    assert!(log.append_as_leader(&mut bad, 0, AppendOrigin::Client, T0).is_err());
    assert_eq!(log.log_end_offset(), 8, "a refused request writes nothing");
}

#[test]
fn producer_state_survives_crashes_and_clean_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (mut log, _) = Log::open(&path, config(), LogOpenOptions::new(T0)).unwrap();
    for seq in 0..20 {
        log.append_as_leader(&mut idempotent(9, 0, seq, 1), 0, AppendOrigin::Client, T0).unwrap();
    }
    assert!(log.segment_count() > 2, "rolls wrote snapshots");
    drop(log); // crash

    let (mut log, _) = Log::open(&path, config(), LogOpenOptions::new(T0)).unwrap();
    let retry = log.append_as_leader(&mut idempotent(9, 0, 19, 1), 0, AppendOrigin::Client, T0).unwrap();
    assert!(retry.duplicate && retry.first_offset == 19, "rebuilt from the snapshot and the log after it");
    assert_eq!(
        log.append_as_leader(&mut idempotent(9, 0, 21, 1), 0, AppendOrigin::Client, T0).unwrap_err().kafka_code(),
        codes::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    log.append_as_leader(&mut idempotent(9, 0, 20, 1), 0, AppendOrigin::Client, T0).unwrap();
    log.close(T0).unwrap();
    drop(log);

    let clean = LogOpenOptions { had_clean_shutdown: true, recovery_point: 21, ..LogOpenOptions::new(T0) };
    let (mut log, _) = Log::open(&path, config(), clean).unwrap();
    assert!(path.join(format!("{:020}.snapshot", 21)).exists(), "close wrote a snapshot at the log end");
    assert!(log.append_as_leader(&mut idempotent(9, 0, 20, 1), 0, AppendOrigin::Client, T0).unwrap().duplicate);

    // Truncation forgets batches past the new end.
    log.truncate_to(15, T0).unwrap();
    let entry = log.producer_state().producer(9).unwrap();
    assert!(entry.batches.iter().all(|b| b.last_offset < 15));
    log.append_as_leader(&mut idempotent(9, 0, 15, 1), 0, AppendOrigin::Client, T0).unwrap();
}

#[test]
fn a_damaged_snapshot_is_set_aside_and_the_state_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let (mut log, _) = Log::open(&path, config(), LogOpenOptions::new(T0)).unwrap();
    for seq in 0..5 {
        log.append_as_leader(&mut idempotent(3, 0, seq, 1), 0, AppendOrigin::Client, T0).unwrap();
    }
    log.close(T0).unwrap();
    drop(log);
    let snapshot = path.join(format!("{:020}.snapshot", 5));
    std::fs::write(&snapshot, b"garbage").unwrap();
    let (mut log, report) = Log::open(&path, config(), LogOpenOptions::new(T0)).unwrap();
    assert!(report.quarantined.iter().any(|q| q.original == snapshot), "{:?}", report.quarantined);
    assert!(log.append_as_leader(&mut idempotent(3, 0, 4, 1), 0, AppendOrigin::Client, T0).unwrap().duplicate);
}

#[test]
fn idle_producers_expire_at_run_time_and_across_a_restart() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use freshet_log::storage::{LogManager, LogManagerConfig, TopicPartition};
    use freshet_log::time::ManualClock;

    const DAY: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let config = LogManagerConfig::new(dir.path());
    assert_eq!(config.producer_id_expiration_ms, DAY, "Kafka's default");
    let tp = TopicPartition::new("t", 0);
    let (m, _) = LogManager::open(config.clone(), HashMap::new(), clock.clone()).unwrap();
    let log = m.get_or_create_log(&tp).unwrap();
    for pid in [1, 2] {
        log.write().append_as_leader(&mut idempotent(pid, 0, 0, 2), 0, AppendOrigin::Client, T0).unwrap();
    }
    // Producer 2 stays busy; producer 1 goes quiet.
    clock.set(T0 + DAY - 1_000);
    let mut busy = RecordBatchBuilder::new(Compression::None).producer(2, 0, 2);
    busy.append(T0 + DAY - 1_000, None, Some(b"v"), &[]);
    log.write().append_as_leader(&mut busy.build(), 0, AppendOrigin::Client, T0).unwrap();
    assert_eq!(m.remove_expired_producers(), 0);
    clock.set(T0 + DAY + 1);
    assert_eq!(m.remove_expired_producers(), 1, "producer 1's newest batch is a day old");
    let again = log.write().append_as_leader(&mut idempotent(1, 0, 2, 1), 0, AppendOrigin::Client, T0).unwrap_err();
    assert_eq!(again.kafka_code(), codes::UNKNOWN_PRODUCER_ID, "an expired producer is unknown");
    drop(log);
    drop(m); // crash: the state on disk still has producer 2 only in the log

    // Another day later, producer 2 has expired too; loading forgets it as Kafka does.
    clock.set(T0 + 2 * DAY);
    let (m, _) = LogManager::open(config, HashMap::new(), clock).unwrap();
    let log = m.get_log(&tp).unwrap();
    assert!(log.read().producer_state().is_empty(), "{:?}", log.read().producer_state().producer(2));
}
