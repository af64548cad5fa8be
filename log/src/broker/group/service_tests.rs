//! The group coordinator's I/O shell on a real broker: what clients are answered when
//! `__consumer_offsets` cannot be written or read back.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;

use super::coordinator::{CommitOffset, partition_for};
use super::*;
use crate::broker::BrokerConfig;
use crate::server::RunningBroker;

fn commit(group: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: vec![CommitOffset { topic: "t".into(), partition: 0, offset, leader_epoch: -1, metadata: None }],
    }
}

fn committed(broker: &Broker, group: &str) -> Result<Option<i64>, i16> {
    let wanted = [("t".to_string(), vec![0])];
    let offsets = broker.groups.with(broker, |c, _| c.fetch_offsets(group, Some(&wanted)))?;
    Ok(offsets[0].2.as_ref().map(|v| v.offset))
}

async fn started(dir: &std::path::Path) -> RunningBroker {
    let running = Broker::start(BrokerConfig::embedded(dir)).await.unwrap();
    running.broker().create_topic(crate::broker::NewTopic::new("t", 1), false).await.unwrap();
    crate::broker::group::ensure_offsets_topic(running.broker()).await.unwrap();
    running
}

/// Makes every append to `group`'s partition of `__consumer_offsets` fail, as a lost disk
/// would: the partition's log is gone while the topic still exists.
fn break_offsets_partition(broker: &Broker, group: &str) {
    let tp = TopicPartition::new(OFFSETS_TOPIC, partition_for(group, broker.groups.offsets_partitions));
    broker.replicas.remove(&tp);
    assert!(broker.logs.delete_log(&tp).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_fail_are_answered_with_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let running = started(dir.path()).await;
    let broker = running.broker().clone();
    let codes_of = |r: Result<super::Commit, i16>| r.unwrap().0.into_iter().map(|(_, _, c)| c).collect::<Vec<_>>();
    assert_eq!(codes_of(broker.groups.commit(&broker, commit("g", 5))), [codes::NONE]);
    let join = JoinRequest {
        group_id: "live".into(),
        member_id: String::new(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::new())],
        require_known_member_id: false,
        supports_skip_assignment: true,
    };
    let joined = tokio::time::timeout(Duration::from_secs(10), broker.groups.join(&broker, join)).await.unwrap();
    assert_eq!((joined.error, joined.generation), (codes::NONE, 1));

    break_offsets_partition(&broker, "g");
    break_offsets_partition(&broker, "live");
    assert_eq!(codes_of(broker.groups.commit(&broker, commit("g", 6))), [codes::COORDINATOR_NOT_AVAILABLE]);
    let deleted = broker.groups.delete(&broker, |c| Ok(((), c.prepare_delete_group("g")?)));
    assert_eq!(deleted, Err(codes::COORDINATOR_NOT_AVAILABLE));
    assert_eq!(committed(&broker, "g"), Ok(Some(5)), "neither the commit nor the deletion happened");

    // The leader's assignment could not be stored: it is not handed out.
    let sync = SyncRequest {
        group_id: "live".into(),
        generation: 1,
        member_id: joined.member_id.clone(),
        group_instance_id: None,
        protocol_type: None,
        protocol: None,
        assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"all of it"))],
    };
    let synced = tokio::time::timeout(Duration::from_secs(10), broker.groups.sync(&broker, sync)).await.unwrap();
    assert_eq!(synced.error, codes::COORDINATOR_NOT_AVAILABLE);
    assert!(synced.assignment.is_empty());
    let state = broker.groups.with(&broker, |c, _| c.describe_group("live")).unwrap().state;
    assert_eq!(state, "PreparingRebalance", "the member must rejoin");
    drop(broker);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_fails_part_way_serves_nothing_and_keeps_answering_load_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let running = started(dir.path()).await;
    let broker = running.broker().clone();
    for offset in [1, 2, 3] {
        broker.groups.commit(&broker, commit("g", offset)).unwrap();
    }
    drop(broker);
    running.shutdown().await.unwrap();

    // Opened but not started, so nothing replays yet; then the last batch is cut short under
    // the open log, and reading it back fails.
    let config = BrokerConfig::embedded(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        match Broker::open(config.clone()).await {
            Ok(b) => break b,
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let partition = partition_for("g", reopened.groups.offsets_partitions);
    let segment = dir.path().join(format!("{OFFSETS_TOPIC}-{partition}")).join("00000000000000000000.log");
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 10).unwrap();

    // One batch per read, so the first two commits replay before the read fails.
    let settings = LoadSettings { chunk_bytes: 1, attempts: 2, first_backoff: Duration::from_millis(1) };
    let loader = reopened.clone();
    tokio::task::spawn_blocking(move || load_all_with(&loader, settings)).await.unwrap();
    assert_eq!(committed(&reopened, "g"), Err(codes::COORDINATOR_LOAD_IN_PROGRESS), "never the partial offset 2");
    assert_eq!(committed(&reopened, "other"), Ok(None), "other partitions loaded");
}
