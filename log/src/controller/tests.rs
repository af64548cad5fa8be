//! The controller's decisions, replayed event by event with a hand-moved clock.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::codes;
use crate::controller::records::ConfigResource;

mod reassignment;

const SESSION_MS: i64 = 9_000;

struct Cluster {
    controller: QuorumController,
    log: Vec<MetadataRecord>,
    epochs: [i64; 5],
}

impl Cluster {
    fn new(min_isr: i32) -> Self {
        let config = ControllerConfig { min_insync_replicas: min_isr, ..ControllerConfig::default() };
        let mut cluster =
            Self { controller: QuorumController::new(config, ClusterImage::new(), 0), log: Vec::new(), epochs: [0; 5] };
        for id in 1..=3 {
            cluster.epochs[id as usize] = cluster.register(id, Uuid::from_u128(id as u128), None).unwrap();
            cluster.heartbeat(id, 0).unwrap();
        }
        cluster
    }

    /// Registers and unfences broker `id` (at most 4).
    fn add_broker(&mut self, id: i32) {
        self.epochs[id as usize] = self.register(id, Uuid::from_u128(id as u128), None).unwrap();
        self.heartbeat(id, 0).unwrap();
    }

    fn take<T>(&mut self, out: ControllerOutput<T>) -> T {
        self.log.extend(out.records);
        out.reply
    }

    fn register(&mut self, id: i32, incarnation: Uuid, previous: Option<i64>) -> Result<i64, ControllerError> {
        let req = RegisterBroker {
            broker_id: id,
            incarnation_id: incarnation,
            rack: None,
            endpoints: Vec::new(),
            previous_broker_epoch: previous,
        };
        let out = self.controller.register_broker(req, 0);
        self.take(out)
    }

    fn heartbeat(&mut self, id: i32, now_ms: i64) -> Result<HeartbeatReply, ControllerError> {
        let req = BrokerHeartbeat {
            broker_id: id,
            broker_epoch: self.epochs[id as usize],
            metadata_offset: self.controller.image().offset,
            want_shutdown: false,
        };
        let out = self.controller.heartbeat(req, now_ms);
        self.take(out)
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> Result<Uuid, ControllerError> {
        let req = CreateTopic {
            name: name.into(),
            topic_id: Uuid::from_u128(1000 + self.topics_ever_created()),
            partitions: Some(partitions),
            replication_factor: Some(rf),
            configs: Vec::new(),
            assignments: Vec::new(),
        };
        let out = self.controller.create_topic(req);
        self.take(out)
    }

    fn topics_ever_created(&self) -> u128 {
        let image = self.controller.image();
        (image.topics.len() + image.removed_topics.len()) as u128
    }

    fn partition(&self, topic: Uuid, p: i32) -> PartitionRegistration {
        self.controller.image().partition(topic, p).unwrap().clone()
    }
}

#[test]
fn a_broker_that_misses_its_session_is_fenced_and_loses_its_leaderships() {
    let mut c = Cluster::new(2);
    let topic = c.create("orders", 3, 3).unwrap();
    let led_by_1: Vec<i32> = (0..3).filter(|p| c.partition(topic, *p).leader == 1).collect();
    assert_eq!(led_by_1.len(), 1, "leaders spread over the brokers");

    c.heartbeat(2, SESSION_MS).unwrap();
    c.heartbeat(3, SESSION_MS).unwrap();
    let fenced = c.controller.tick(SESSION_MS + 1);
    c.log.extend(fenced);
    assert!(c.controller.image().brokers[&1].fenced);
    for p in 0..3 {
        let state = c.partition(topic, p);
        assert!(!state.isr.contains(&1) && state.leader != 1, "{state:?}");
        if led_by_1.contains(&p) {
            assert_eq!(state.leader_epoch, 1, "a new leader, a new epoch");
        } else {
            assert_eq!(state.leader_epoch, 0, "an ISR shrink keeps the leader epoch");
        }
        assert_eq!(state.partition_epoch, 1);
    }
}

#[test]
fn replaying_the_log_rebuilds_the_same_image() {
    let mut c = Cluster::new(2);
    c.create("orders", 4, 3).unwrap();
    let out = c.controller.tick(SESSION_MS + 1);
    c.log.extend(out);
    let mut replayed = ClusterImage::new();
    for (offset, record) in c.log.iter().enumerate() {
        replayed.apply(offset as i64, record).unwrap();
    }
    assert_eq!(&replayed, c.controller.image());
}

#[test]
fn a_second_process_with_a_live_node_id_is_refused() {
    let mut c = Cluster::new(1);
    let err = c.register(2, Uuid::from_u128(99), None).unwrap_err();
    assert_eq!(err.code(), codes::DUPLICATE_BROKER_REGISTRATION);
    // The same process retrying gets its epoch back, with nothing written.
    let before = c.log.len();
    assert_eq!(c.register(2, Uuid::from_u128(2), None), Ok(c.epochs[2]));
    assert_eq!(c.log.len(), before);
}

#[test]
fn a_restart_after_an_unclean_shutdown_leaves_every_isr_and_elr() {
    let mut c = Cluster::new(2);
    let topic = c.create("orders", 1, 3).unwrap();
    let leader = c.partition(topic, 0).leader;
    let others: Vec<i32> = (1..=3).filter(|b| *b != leader).collect();
    for b in &others {
        c.heartbeat(*b, SESSION_MS).unwrap();
    }
    let fenced = c.controller.tick(SESSION_MS + 1);
    c.log.extend(fenced);
    let epoch = c.register(leader, Uuid::from_u128(77), None).unwrap();
    c.epochs[leader as usize] = epoch;
    let state = c.partition(topic, 0);
    assert!(!state.isr.contains(&leader) && !state.elr.contains(&leader), "{state:?}");

    // Unfenced again, it is a follower that must catch up before it rejoins the ISR.
    c.heartbeat(leader, SESSION_MS + 2).unwrap();
    assert!(!c.controller.image().brokers[&leader].fenced);
    assert!(!c.partition(topic, 0).isr.contains(&leader));
}

#[test]
fn the_last_replica_to_leave_is_elected_again_from_the_elr_after_a_clean_restart() {
    let mut c = Cluster::new(2);
    let topic = c.create("solo", 1, 1).unwrap();
    let only = c.partition(topic, 0).leader;
    for b in (1..=3).filter(|b| *b != only) {
        c.heartbeat(b, SESSION_MS).unwrap();
    }
    let out = c.controller.tick(SESSION_MS + 1);
    c.log.extend(out);
    let state = c.partition(topic, 0);
    assert_eq!((state.leader, state.isr.clone(), state.elr.clone()), (NO_LEADER, vec![], vec![only]));

    let previous = c.epochs[only as usize];
    c.epochs[only as usize] = c.register(only, Uuid::from_u128(55), Some(previous)).unwrap();
    c.heartbeat(only, SESSION_MS + 2).unwrap();
    let state = c.partition(topic, 0);
    // Epoch 1 had no leader; epoch 2 is the broker's new term.
    assert_eq!((state.leader, state.isr, state.leader_epoch), (only, vec![only], 2));
}

#[test]
fn alter_partition_is_checked_like_kafka() {
    let mut c = Cluster::new(2);
    let topic = c.create("orders", 1, 3).unwrap();
    let state = c.partition(topic, 0);
    let leader = state.leader;
    let follower = state.replicas[1];
    let shrink = |state: &PartitionRegistration, epochs: &[i64; 5]| AlterPartition {
        broker_id: leader,
        broker_epoch: epochs[leader as usize],
        topic_id: topic,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: state.isr.iter().filter(|r| **r != follower).map(|r| (*r, epochs[*r as usize])).collect(),
    };
    let req = shrink(&state, &c.epochs);
    let out = c.controller.alter_partition(&req);
    let shrunk = c.take(out).unwrap();
    assert_eq!((shrunk.isr.len(), shrunk.partition_epoch, shrunk.leader_epoch), (2, 1, 0));

    // The same request again (a lost reply) answers the state it made.
    let out = c.controller.alter_partition(&req);
    assert_eq!(c.take(out), Ok(shrunk.clone()));

    // An old partition epoch with a different ISR is refused.
    let mut stale = req.clone();
    stale.new_isr = state.isr.iter().map(|r| (*r, c.epochs[*r as usize])).collect();
    let out = c.controller.alter_partition(&stale);
    assert_eq!(c.take(out).unwrap_err().code(), codes::INVALID_UPDATE_VERSION);

    // A replica registered under another epoch cannot join (KIP-903).
    let mut expand = stale.clone();
    expand.partition_epoch = shrunk.partition_epoch;
    expand.new_isr.iter_mut().find(|(r, _)| *r == follower).unwrap().1 = 12_345;
    let out = c.controller.alter_partition(&expand);
    assert_eq!(c.take(out).unwrap_err().code(), codes::INELIGIBLE_REPLICA);

    // A request from an older leader epoch is fenced.
    let mut old = expand.clone();
    old.leader_epoch = -1;
    let out = c.controller.alter_partition(&old);
    assert_eq!(c.take(out).unwrap_err().code(), codes::FENCED_LEADER_EPOCH);
}

#[test]
fn too_many_replicas_and_duplicate_topics_are_refused() {
    let mut c = Cluster::new(1);
    assert_eq!(c.create("wide", 1, 4).unwrap_err().code(), codes::INVALID_REPLICATION_FACTOR);
    assert_eq!(c.create("none", 0, 1).unwrap_err().code(), codes::INVALID_PARTITIONS);
    c.create("orders", 1, 1).unwrap();
    assert_eq!(c.create("orders", 1, 1).unwrap_err().code(), codes::TOPIC_ALREADY_EXISTS);
    let out = c.controller.delete_topic("orders");
    assert!(c.take(out).is_ok());
    assert!(c.controller.image().topic("orders").is_none());
    c.create("orders", 1, 1).unwrap();
}

#[test]
fn topic_ids_are_never_reused_and_chosen_assignments_are_checked() {
    let mut c = Cluster::new(3);
    let first = c.create("orders", 1, 1).unwrap();
    let out = c.controller.delete_topic("orders");
    c.take(out).unwrap();
    let reuse = CreateTopic {
        name: "orders".into(),
        topic_id: first,
        partitions: Some(1),
        replication_factor: None,
        configs: Vec::new(),
        assignments: Vec::new(),
    };
    let out = c.controller.create_topic(reuse.clone());
    assert_eq!(c.take(out).unwrap_err().code(), codes::INVALID_REQUEST);
    let fresh = |assignments: Vec<Vec<i32>>| CreateTopic { topic_id: Uuid::from_u128(9), assignments, ..reuse.clone() };
    for bad in [vec![vec![1, 1]], vec![vec![1, 2], vec![3]], vec![vec![1, 77]], vec![vec![]]] {
        let out = c.controller.create_topic(fresh(bad.clone()));
        assert_eq!(c.take(out).unwrap_err().code(), codes::INVALID_REPLICA_ASSIGNMENT, "{bad:?}");
    }
    let out = c.controller.create_topic(fresh(vec![vec![3, 1], vec![2, 3]]));
    let id = c.take(out).unwrap();
    assert_eq!((c.partition(id, 0).replicas, c.partition(id, 0).leader), (vec![3, 1], 3));
    assert_eq!(c.partition(id, 1).replicas, vec![2, 3]);
}

#[test]
fn partitions_are_added_with_the_topics_replication_and_configs_change_as_records() {
    let mut c = Cluster::new(3);
    let id = c.create("orders", 1, 2).unwrap();
    let out = c.controller.create_partitions("orders", 1);
    assert_eq!(c.take(out).unwrap_err().code(), codes::INVALID_PARTITIONS);
    let out = c.controller.create_partitions("orders", 3);
    c.take(out).unwrap();
    assert_eq!(c.partition(id, 2).replicas.len(), 2);
    let out = c.controller.create_partitions("missing", 3);
    assert_eq!(c.take(out).unwrap_err().code(), codes::UNKNOWN_TOPIC_OR_PARTITION);

    let topic = ConfigResource::Topic("orders".into());
    let set = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let out = c.controller.alter_configs(topic.clone(), set(&[("retention.ms", "1"), ("segment.ms", "2")]));
    assert_eq!(out.records.len(), 2);
    c.take(out).unwrap();
    let out = c.controller.alter_configs(topic.clone(), set(&[("retention.ms", "1")]));
    assert_eq!(out.records.len(), 1, "only the removal: {:?}", out.records);
    c.take(out).unwrap();
    assert_eq!(c.controller.image().configs[&topic], set(&[("retention.ms", "1")]));
    let out = c.controller.alter_configs(ConfigResource::Topic("missing".into()), BTreeMap::new());
    assert_eq!(c.take(out).unwrap_err().code(), codes::UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn a_controlled_shutdown_moves_leadership_before_the_broker_may_stop() {
    let mut c = Cluster::new(1);
    let topic = c.create("orders", 3, 3).unwrap();
    let req = BrokerHeartbeat { broker_id: 1, broker_epoch: c.epochs[1], metadata_offset: 0, want_shutdown: true };
    let out = c.controller.heartbeat(req, 10);
    let reply = c.take(out).unwrap();
    assert!(reply.should_shut_down);
    for p in 0..3 {
        let state = c.partition(topic, p);
        assert!(state.leader != 1 && !state.isr.contains(&1), "{state:?}");
    }
    assert!(c.controller.image().brokers[&1].fenced);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut c = Cluster::new(1);
    let out = c.controller.allocate_producer_ids(1, c.epochs[1]);
    let (a, n) = c.take(out).unwrap();
    let out = c.controller.allocate_producer_ids(2, c.epochs[2]);
    let (b, _) = c.take(out).unwrap();
    assert!(b >= a + n);
    let out = c.controller.allocate_producer_ids(2, 999);
    assert_eq!(c.take(out).unwrap_err().code(), codes::STALE_BROKER_EPOCH);
}

#[test]
fn records_survive_a_round_trip_through_their_encoding() {
    let mut c = Cluster::new(2);
    c.create("orders", 2, 3).unwrap();
    let out = c.controller.tick(SESSION_MS + 1);
    c.log.extend(out);
    assert!(c.log.iter().any(|r| matches!(r, MetadataRecord::PartitionChange(_))));
    for record in &c.log {
        let bytes = serde_json::to_vec(record).unwrap();
        let back: MetadataRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(&back, record);
    }
}

#[test]
fn a_clean_restart_of_a_leader_moves_its_leadership_until_it_is_back() {
    let mut c = Cluster::new(2);
    let topic = c.create("orders", 1, 3).unwrap();
    let leader = c.partition(topic, 0).leader;
    let previous = c.epochs[leader as usize];
    c.epochs[leader as usize] = c.register(leader, Uuid::from_u128(500), Some(previous)).unwrap();
    let state = c.partition(topic, 0);
    assert!(state.leader != leader && !state.isr.contains(&leader), "a fenced broker leads nothing: {state:?}");
    assert_eq!(state.leader_epoch, 1);
}
