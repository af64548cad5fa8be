//! The broker's own state across restarts, without sockets: what a crash between two
//! steps of a metadata change leaves behind.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::record::{Compression, RecordBatchBuilder};
use crate::storage::AppendOrigin;

fn append_one(broker: &Broker, topic: &str, partition: i32) {
    let log = broker.logs.get_log(&TopicPartition::new(topic, partition)).unwrap();
    let mut batch = RecordBatchBuilder::new(Compression::None);
    batch.append(broker.now_ms(), Some(b"k"), Some(b"v"), &[]);
    log.write().append_as_leader(&mut batch.build(), LEADER_EPOCH, AppendOrigin::Client, broker.now_ms()).unwrap();
}

#[test]
fn a_topic_deletion_cut_short_by_a_crash_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::embedded(dir.path());
    let broker = Broker::open(config.clone()).unwrap();
    let compacted = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    broker.create_topic("facts", 2, compacted, false).unwrap();
    broker.create_topic("kept", 1, BTreeMap::new(), false).unwrap();
    append_one(&broker, "facts", 0);
    append_one(&broker, "kept", 0);
    // The crash: the deletion's one durable step is done, its directories are not removed.
    broker.metadata.lock().begin_topic_deletion("facts").unwrap();
    assert!(dir.path().join("facts-0").exists());
    drop(broker);

    let broker = Broker::open(config.clone()).unwrap();
    assert_eq!(broker.topic("facts"), None, "not adopted back as a topic without its configs");
    assert!(!dir.path().join("facts-0").exists() && !dir.path().join("facts-1").exists());
    assert!(broker.metadata.lock().topics_being_deleted().is_empty());
    assert_eq!(broker.logs.get_log(&TopicPartition::new("kept", 0)).unwrap().read().log_end_offset(), 1);
    // The name is free again, and a new topic of that name starts empty.
    broker.create_topic("facts", 1, BTreeMap::new(), false).unwrap();
    assert_eq!(broker.logs.get_log(&TopicPartition::new("facts", 0)).unwrap().read().log_end_offset(), 0);
}

#[test]
fn a_name_being_deleted_cannot_be_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::embedded(dir.path())).unwrap();
    broker.create_topic("facts", 1, BTreeMap::new(), false).unwrap();
    broker.metadata.lock().begin_topic_deletion("facts").unwrap();
    let refused = broker.create_topic("facts", 1, BTreeMap::new(), false).unwrap_err();
    assert_eq!(refused.code, codes::TOPIC_ALREADY_EXISTS);
    assert!(refused.message.contains("marked for deletion"), "{}", refused.message);
}
