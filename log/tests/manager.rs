//! The LogManager: directory lock, parallel load, checkpoints, clean shutdown, deletion.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use freshet_log::storage::manager::{CLEAN_SHUTDOWN_FILE, RECOVERY_POINT_CHECKPOINT};
use freshet_log::storage::{AppendOrigin, LogConfig, LogError, LogManager, LogManagerConfig, TopicPartition};
use freshet_log::time::ManualClock;

fn manager(
    dir: &std::path::Path,
    clock: Arc<ManualClock>,
) -> (Arc<LogManager>, freshet_log::storage::manager::ManagerLoadReport) {
    let mut config = LogManagerConfig::new(dir);
    config.default_log_config = LogConfig { segment_bytes: 2_000, index_interval_bytes: 200, ..LogConfig::default() };
    LogManager::open(config, HashMap::new(), clock).unwrap()
}

fn fill(m: &LogManager, topics: &[&str], partitions: i32, batches: usize) {
    for topic in topics {
        for p in 0..partitions {
            let log = m.get_or_create_log(&TopicPartition::new(*topic, p)).unwrap();
            let mut log = log.write();
            for i in 0..batches {
                log.append_as_leader(&mut sized_batch(2, 60, T0 + i as i64), 0, AppendOrigin::Client, T0).unwrap();
            }
        }
    }
}

#[test]
fn a_data_directory_can_be_opened_by_one_manager_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (first, _) = manager(tmp.path(), clock.clone());
    let err = LogManager::open(LogManagerConfig::new(tmp.path()), HashMap::new(), clock.clone()).unwrap_err();
    assert!(matches!(err, LogError::DirectoryLocked { .. }), "{err}");
    first.shutdown().unwrap();
    drop(first);
    let (second, report) = manager(tmp.path(), clock);
    assert!(report.had_clean_shutdown);
    drop(second);
}

#[test]
fn a_clean_shutdown_reloads_without_recovery_and_a_crash_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (m, report) = manager(tmp.path(), clock.clone());
    assert!(!report.had_clean_shutdown);
    fill(&m, &["orders", "payments.v2", "a-b-c"], 3, 40);
    let snapshot: Vec<_> = m.logs().into_iter().map(|(tp, l)| (tp, read_all(&l.read()))).collect();
    m.shutdown().unwrap();
    assert!(tmp.path().join(CLEAN_SHUTDOWN_FILE).exists());
    let checkpoint = std::fs::read_to_string(tmp.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap();
    assert!(checkpoint.starts_with("0\n9\n"), "{checkpoint}");
    drop(m);

    let (m, report) = manager(tmp.path(), clock.clone());
    assert!(report.had_clean_shutdown);
    assert_eq!(report.logs_loaded, 9);
    assert!(report.logs.is_empty(), "no partition needed recovery: {:?}", report.logs.keys());
    assert!(!tmp.path().join(CLEAN_SHUTDOWN_FILE).exists(), "the marker is consumed at start");
    let reloaded: Vec<_> = m.logs().into_iter().map(|(tp, l)| (tp, read_all(&l.read()))).collect();
    assert_eq!(reloaded, snapshot);

    // Now crash: append more, drop without shutdown.
    fill(&m, &["orders"], 1, 5);
    drop(m);
    let (m, report) = manager(tmp.path(), clock);
    assert!(!report.had_clean_shutdown);
    assert!(!report.logs.is_empty(), "the unflushed partition was re-validated");
    let orders = m.get_log(&TopicPartition::new("orders", 0)).unwrap();
    assert_eq!(orders.read().log_end_offset(), 90);
}

#[test]
fn deleted_logs_disappear_and_a_half_finished_delete_completes_on_start() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (m, _) = manager(tmp.path(), clock.clone());
    fill(&m, &["gone", "kept"], 2, 5);
    assert!(m.delete_log(&TopicPartition::new("gone", 0)).unwrap());
    assert!(!m.delete_log(&TopicPartition::new("gone", 0)).unwrap());
    assert!(!tmp.path().join("gone-0").exists());
    m.shutdown().unwrap();
    drop(m);
    // A crash between the rename and the removal leaves a -delete directory.
    std::fs::rename(tmp.path().join("gone-1"), tmp.path().join("gone-1.12345-delete")).unwrap();
    let (m, report) = manager(tmp.path(), clock);
    assert!(report.quarantined.is_empty());
    assert!(!tmp.path().join("gone-1.12345-delete").exists());
    let names: Vec<String> = m.logs().into_iter().map(|(tp, _)| tp.to_string()).collect();
    assert_eq!(names, ["kept-0", "kept-1"]);
}

#[test]
fn unknown_entries_and_damaged_checkpoints_are_moved_aside_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (m, _) = manager(tmp.path(), clock.clone());
    fill(&m, &["t"], 1, 5);
    m.shutdown().unwrap();
    drop(m);
    std::fs::create_dir(tmp.path().join("not a partition")).unwrap();
    std::fs::write(tmp.path().join("stray.bin"), b"?").unwrap();
    std::fs::write(tmp.path().join(RECOVERY_POINT_CHECKPOINT), b"0\n1\nt 0 zero\n").unwrap();
    let (m, report) = manager(tmp.path(), clock);
    let moved: Vec<String> =
        report.all_quarantined().map(|q| q.original.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(moved.len(), 3, "{moved:?}");
    for name in ["not a partition", "stray.bin", RECOVERY_POINT_CHECKPOINT] {
        assert!(moved.iter().any(|m| m == name), "{name} in {moved:?}");
    }
    let checkpoint = report.all_quarantined().find(|q| q.original.ends_with(RECOVERY_POINT_CHECKPOINT)).unwrap();
    assert!(checkpoint.reason.contains("line 3"), "{}", checkpoint.reason);
    assert_eq!(m.get_log(&TopicPartition::new("t", 0)).unwrap().read().log_end_offset(), 10);
}

#[test]
fn retention_and_the_cleaner_run_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut config = LogManagerConfig::new(tmp.path());
    config.default_log_config = LogConfig { segment_bytes: 1_000, retention_ms: 60_000, ..LogConfig::default() };
    config.retention_check_interval_ms = 1;
    config.flush_scheduler_interval_ms = 5;
    config.cleaner.backoff_ms = 5;
    let compacted =
        LogConfig { cleanup_compact: true, cleanup_delete: false, segment_bytes: 1_000, ..LogConfig::default() };
    let (m, _) =
        LogManager::open(config, HashMap::from([("compacted".to_string(), compacted)]), clock.clone()).unwrap();
    fill(&m, &["events"], 1, 40);
    {
        let log = m.get_or_create_log(&TopicPartition::new("compacted", 0)).unwrap();
        let mut log = log.write();
        for i in 0..200 {
            let key = format!("k{}", i % 5);
            let mut b = batch(freshet_log::record::Compression::None, T0, &[(Some(key.as_bytes()), Some(b"v"))]);
            log.append_as_leader(&mut b, 0, AppendOrigin::Client, T0).unwrap();
        }
    }
    clock.advance(120_000);
    m.start_background();
    let events = m.get_log(&TopicPartition::new("events", 0)).unwrap();
    let compacted = m.get_log(&TopicPartition::new("compacted", 0)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let retention_done = events.read().log_start_offset() == 80;
        let cleaned = compacted.read().cleaner_checkpoint() > 0 && compacted.read().size_bytes() < 200 * 70 / 2;
        let flushed = events.read().recovery_point() == 80;
        if retention_done && cleaned && flushed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "background work did not happen in 10 s (retention {retention_done}, cleaned {cleaned}, flushed {flushed})"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    m.shutdown().unwrap();
}
