//! The broker's own state across restarts, without sockets: topic metadata in the metadata
//! log, what a crash between a deletion's record and its directories' removal leaves, the
//! migration of the earlier single-node format, and directories the log does not know.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::controller::records::MetadataRecord;
use crate::record::{Compression, RecordBatchBuilder};
use crate::storage::{AppendOrigin, TopicPartition, partition_metadata};

fn append_one(broker: &Broker, topic: &str, partition: i32) {
    let tp = TopicPartition::new(topic, partition);
    let log = broker.logs.get_log(&tp).unwrap();
    let mut batch = RecordBatchBuilder::new(Compression::None);
    batch.append(broker.now_ms(), Some(b"k"), Some(b"v"), &[]);
    let epoch = broker.leader_epoch(&tp).unwrap();
    log.write().append_as_leader(&mut batch.build(), epoch, AppendOrigin::Client, broker.now_ms()).unwrap();
}

fn end_offset(broker: &Broker, topic: &str, partition: i32) -> i64 {
    broker.logs.get_log(&TopicPartition::new(topic, partition)).unwrap().read().log_end_offset()
}

/// Stops a broker opened without a server; the next open finds the directory free.
async fn close(broker: Arc<Broker>) {
    broker.shutdown_quorum().await;
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_live_in_the_metadata_log_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::embedded(dir.path());
    let broker = Broker::open(config.clone()).await.unwrap();
    let compacted = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    let created = broker.create_topic(NewTopic::new("facts", 2).with_configs(compacted.clone()), false).await.unwrap();
    assert_eq!((created.partitions, created.replication_factor), (2, 1));
    assert_eq!(partition_metadata::read_topic_id(&dir.path().join("facts-1")).unwrap(), Some(created.id));
    append_one(&broker, "facts", 0);
    let first_epoch = broker.leader_epoch(&TopicPartition::new("facts", 0)).unwrap();
    close(broker).await;
    assert!(!dir.path().join(migration::LEGACY_METADATA_FILE).exists(), "no JSON metadata is written any more");

    let broker = Broker::open(config).await.unwrap();
    let topic = broker.topic("facts").unwrap();
    assert_eq!((topic.id, topic.configs), (created.id, compacted));
    assert!(broker.logs.topic_config("facts").compact(), "recovered with its own config");
    assert_eq!(end_offset(&broker, "facts", 0), 1);
    let epoch = broker.leader_epoch(&TopicPartition::new("facts", 0)).unwrap();
    assert!(epoch > first_epoch, "a new incarnation leads in a new epoch: {first_epoch} then {epoch}");
    close(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deletion_cut_short_by_a_crash_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::embedded(dir.path());
    let broker = Broker::open(config.clone()).await.unwrap();
    let facts = broker.create_topic(NewTopic::new("facts", 2), false).await.unwrap();
    broker.create_topic(NewTopic::new("kept", 1), false).await.unwrap();
    append_one(&broker, "facts", 0);
    append_one(&broker, "kept", 0);
    // The crash: the deletion's record has committed; its directories are not removed.
    broker.quorum.append(vec![MetadataRecord::RemoveTopic { topic_id: facts.id }]).await.unwrap();
    assert!(dir.path().join("facts-0").exists());
    close(broker).await;

    let broker = Broker::open(config).await.unwrap();
    assert_eq!(broker.topic("facts"), None, "not adopted back");
    assert!(!dir.path().join("facts-0").exists() && !dir.path().join("facts-1").exists());
    assert_eq!(end_offset(&broker, "kept", 0), 1);
    // The name is free again, and a new topic of that name starts empty.
    let again = broker.create_topic(NewTopic::new("facts", 1), false).await.unwrap();
    assert_ne!(again.id, facts.id);
    assert_eq!(end_offset(&broker, "facts", 0), 0);
    close(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_and_created_again_at_once_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::embedded(dir.path())).await.unwrap();
    broker.create_topic(NewTopic::new("facts", 1), false).await.unwrap();
    append_one(&broker, "facts", 0);
    broker.delete_topic("facts").await.unwrap();
    assert!(broker.logs.get_log(&TopicPartition::new("facts", 0)).is_none());
    let again = broker.create_topic(NewTopic::new("facts", 1), false).await.unwrap();
    assert_eq!(end_offset(&broker, "facts", 0), 0);
    assert_eq!(partition_metadata::read_topic_id(&dir.path().join("facts-0")).unwrap(), Some(again.id));
    let refused = broker.create_topic(NewTopic::new("facts", 1), false).await.unwrap_err();
    assert_eq!(refused.code, codes::TOPIC_ALREADY_EXISTS);
    close(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earlier_json_format_is_migrated_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaProperties::ensure(dir.path(), 1, None).unwrap();
    for partition_dir in ["orders-0", "orders-1", "orders-2", "gone-0", "orphan-0", "orphan-1"] {
        std::fs::create_dir(dir.path().join(partition_dir)).unwrap();
    }
    let legacy = serde_json::json!({
        "cluster_id": meta.cluster_id,
        "topics": {
            "orders": {"id": "0123456789abcdef0123456789abcdef", "partitions": 2, "configs": {"retention.ms": "1000"}},
        },
        "next_producer_id": 7,
        "dynamic_broker_configs": {"": {"log.retention.ms": "5000"}},
        "deleting_topics": {"gone": {"id": "00000000000000000000000000000009", "partitions": 1}},
    });
    std::fs::write(dir.path().join(migration::LEGACY_METADATA_FILE), legacy.to_string()).unwrap();

    let broker = Broker::open(BrokerConfig::embedded(dir.path())).await.unwrap();
    let orders = broker.topic("orders").unwrap();
    assert_eq!(orders.id, uuid::Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap());
    assert_eq!(orders.partitions, 3, "a partition directory beyond the recorded count is kept");
    assert_eq!(orders.configs.get("retention.ms").map(String::as_str), Some("1000"));
    assert_eq!(broker.topic("orphan").map(|t| t.partitions), Some(2), "directories without metadata are adopted");
    assert!(broker.topic("gone").is_none() && !dir.path().join("gone-0").exists(), "the deletion is finished");
    assert_eq!(broker.dynamic_broker_configs("").get("log.retention.ms").map(String::as_str), Some("5000"));
    assert!(broker.allocate_producer_id().await.unwrap() >= 7, "producer ids are never handed out twice");
    assert!(!dir.path().join(migration::LEGACY_METADATA_FILE).exists());
    assert!(dir.path().join(migration::MIGRATED_METADATA_FILE).exists());
    close(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_metadata_of_another_cluster_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    MetaProperties::ensure(dir.path(), 1, None).unwrap();
    let path = dir.path().join(migration::LEGACY_METADATA_FILE);
    std::fs::write(&path, r#"{"cluster_id": "someone-else", "topics": {}}"#).unwrap();
    let err = Broker::open(BrokerConfig::embedded(dir.path())).await.unwrap_err().to_string();
    assert!(err.contains("someone-else") && err.contains(migration::LEGACY_METADATA_FILE), "{err}");
    assert!(path.exists());
    std::fs::write(&path, b"{ not json").unwrap();
    let err = Broker::open(BrokerConfig::embedded(dir.path())).await.unwrap_err().to_string();
    assert!(err.contains(migration::LEGACY_METADATA_FILE), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_the_metadata_log_does_not_know_are_adopted_or_set_aside_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::embedded(dir.path());
    let broker = Broker::open(config.clone()).await.unwrap();
    broker.create_topic(NewTopic::new("mine", 1), false).await.unwrap();
    close(broker).await;
    // A directory copied in from elsewhere, with its own topic id; and one claiming to be
    // a partition of `mine` under another id.
    let stranger = uuid::Uuid::from_u128(42);
    std::fs::create_dir(dir.path().join("stranger-0")).unwrap();
    partition_metadata::write_topic_id(&dir.path().join("stranger-0"), stranger).unwrap();
    std::fs::create_dir(dir.path().join("mine-1")).unwrap();
    partition_metadata::write_topic_id(&dir.path().join("mine-1"), uuid::Uuid::from_u128(43)).unwrap();

    let broker = Broker::open(config).await.unwrap();
    assert_eq!(broker.topic("stranger").map(|t| t.id), Some(stranger));
    assert_eq!(broker.topic("mine").map(|t| t.partitions), Some(1));
    assert!(!dir.path().join("mine-1").exists(), "moved out of the way");
    let quarantine = dir.path().join(crate::storage::quarantine::QUARANTINE_DIR);
    assert!(quarantine.exists(), "and kept in {}", quarantine.display());
    close(broker).await;
}
