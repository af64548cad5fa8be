//! Reassignment, leader elections and leader balancing, event by event.

use super::*;

fn reassign(c: &mut Cluster, topic: &str, target: Option<Vec<i32>>, allow_rf_change: bool) -> Option<i16> {
    let req = ReassignPartition { topic: topic.into(), partition: 0, target };
    let out = c.controller.alter_partition_reassignments(vec![req], allow_rf_change);
    let outcomes = c.take(out).unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes[0].error.as_ref().map(ControllerError::code)
}

/// The leader of partition 0 asks for `isr`.
fn set_isr(c: &mut Cluster, topic: Uuid, isr: &[i32]) -> Result<PartitionRegistration, ControllerError> {
    let state = c.partition(topic, 0);
    let req = AlterPartition {
        broker_id: state.leader,
        broker_epoch: c.epochs[state.leader as usize],
        topic_id: topic,
        partition: 0,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: isr.iter().map(|r| (*r, c.epochs[*r as usize])).collect(),
    };
    let out = c.controller.alter_partition(&req);
    c.take(out)
}

fn elect(c: &mut Cluster, election: ElectionType, partitions: Option<Vec<(String, i32)>>) -> Vec<Option<i16>> {
    let out = c.controller.elect_leaders(election, partitions);
    c.take(out).unwrap().iter().map(|o| o.error.as_ref().map(ControllerError::code)).collect()
}

fn replayed(c: &Cluster) -> ClusterImage {
    let mut image = ClusterImage::new();
    for (offset, record) in c.log.iter().enumerate() {
        image.apply(offset as i64, record).unwrap();
    }
    image
}

#[test]
fn a_reassignment_completes_once_every_target_replica_is_in_sync_and_moves_the_leader_last() {
    let mut c = Cluster::new(2);
    let topic = c.create("orders", 1, 3).unwrap();
    c.add_broker(4);
    let before = c.partition(topic, 0);
    let leader = before.leader;
    let mut target: Vec<i32> = before.replicas.iter().copied().filter(|r| *r != leader).collect();
    target.insert(0, 4);

    assert_eq!(reassign(&mut c, "orders", Some(target.clone()), false), None);
    let moving = c.partition(topic, 0);
    assert_eq!(moving.replicas, [target.clone(), vec![leader]].concat(), "the target first, then the rest");
    assert_eq!((moving.adding_replicas.clone(), moving.removing_replicas.clone()), (vec![4], vec![leader]));
    assert_eq!((moving.leader, moving.isr.clone()), (leader, before.isr.clone()), "traffic goes on as before");

    // The new replica catches up and the leader lets it in: the reassignment completes.
    let isr = [before.isr.clone(), vec![4]].concat();
    let done = set_isr(&mut c, topic, &isr).unwrap();
    assert_eq!(done.replicas, target);
    assert!(done.adding_replicas.is_empty() && done.removing_replicas.is_empty());
    assert!(!done.isr.contains(&leader) && done.isr.contains(&4), "{done:?}");
    assert_eq!((done.leader, done.leader_epoch), (4, before.leader_epoch + 1), "the first target replica leads");
    assert_eq!(&replayed(&c), c.controller.image());
}

#[test]
fn a_target_already_in_sync_completes_at_once() {
    let mut c = Cluster::new(1);
    let topic = c.create("orders", 1, 3).unwrap();
    let before = c.partition(topic, 0);
    let keep: Vec<i32> = before.replicas.iter().copied().filter(|r| *r != before.leader).collect();
    assert_eq!(reassign(&mut c, "orders", Some(keep.clone()), false), Some(codes::INVALID_REPLICATION_FACTOR));
    assert_eq!(reassign(&mut c, "orders", Some(keep.clone()), true), None);
    let after = c.partition(topic, 0);
    assert_eq!((after.replicas.clone(), after.isr.clone()), (keep.clone(), keep.clone()));
    assert_eq!(after.leader, keep[0]);
    assert!(!after.is_reassigning());
}

#[test]
fn a_target_that_is_not_in_sync_waits_even_when_nothing_is_added() {
    let mut c = Cluster::new(1);
    let topic = c.create("orders", 1, 3).unwrap();
    let before = c.partition(topic, 0);
    let lagging = before.replicas.iter().copied().find(|r| *r != before.leader).unwrap();
    let isr: Vec<i32> = before.isr.iter().copied().filter(|r| *r != lagging).collect();
    set_isr(&mut c, topic, &isr).unwrap();

    // Only the lagging replica is kept: completing now would leave no in-sync replica.
    assert_eq!(reassign(&mut c, "orders", Some(vec![lagging]), true), None);
    let waiting = c.partition(topic, 0);
    assert!(waiting.is_reassigning() && waiting.adding_replicas.is_empty(), "{waiting:?}");
    assert_eq!(waiting.leader, before.leader);
    let done = set_isr(&mut c, topic, &[isr, vec![lagging]].concat()).unwrap();
    assert_eq!((done.replicas, done.isr, done.leader), (vec![lagging], vec![lagging], lagging));
}

#[test]
fn a_cancelled_reassignment_puts_the_original_replicas_back() {
    let mut c = Cluster::new(1);
    let topic = c.create("orders", 1, 2).unwrap();
    c.add_broker(4);
    let before = c.partition(topic, 0);
    assert_eq!(reassign(&mut c, "orders", None, false), Some(codes::NO_REASSIGNMENT_IN_PROGRESS));

    assert_eq!(reassign(&mut c, "orders", Some(vec![4, before.replicas[1]]), false), None);
    assert_eq!(reassign(&mut c, "orders", None, false), None);
    let after = c.partition(topic, 0);
    let mut replicas = after.replicas.clone();
    replicas.sort_unstable();
    let mut original = before.replicas.clone();
    original.sort_unstable();
    assert_eq!(replicas, original);
    assert!(!after.is_reassigning());
    assert_eq!((after.leader, after.isr.len()), (before.leader, 2));
}

#[test]
fn bad_targets_are_refused_per_partition_and_write_nothing() {
    let mut c = Cluster::new(1);
    c.create("orders", 1, 2).unwrap();
    let written = c.log.len();
    for bad in [vec![], vec![1, 1], vec![1, 77]] {
        assert_eq!(
            reassign(&mut c, "orders", Some(bad.clone()), true),
            Some(codes::INVALID_REPLICA_ASSIGNMENT),
            "{bad:?}"
        );
    }
    assert_eq!(reassign(&mut c, "missing", Some(vec![1]), true), Some(codes::UNKNOWN_TOPIC_OR_PARTITION));
    let out = c.controller.alter_partition_reassignments(
        vec![ReassignPartition { topic: "orders".into(), partition: 9, target: Some(vec![1, 2]) }],
        true,
    );
    assert_eq!(
        c.take(out).unwrap()[0].error.as_ref().map(ControllerError::code),
        Some(codes::UNKNOWN_TOPIC_OR_PARTITION)
    );
    assert_eq!(c.log.len(), written);
}

/// A partition whose preferred replica (the first) is in sync but does not lead.
fn misplaced_leader(c: &mut Cluster) -> (Uuid, i32, i32) {
    let topic = c.create("orders", 1, 3).unwrap();
    let before = c.partition(topic, 0);
    let preferred = before.replicas.iter().copied().find(|r| *r != before.leader).unwrap();
    let mut reordered = vec![preferred];
    reordered.extend(before.replicas.iter().copied().filter(|r| *r != preferred));
    assert_eq!(reassign(c, "orders", Some(reordered), false), None);
    assert_eq!(c.partition(topic, 0).leader, before.leader, "a reorder moves no leader");
    (topic, preferred, before.leader)
}

#[test]
fn a_preferred_election_moves_leadership_to_the_first_replica_when_it_is_in_sync() {
    let mut c = Cluster::new(1);
    let (topic, preferred, _) = misplaced_leader(&mut c);
    assert_eq!(elect(&mut c, ElectionType::Preferred, None), vec![None]);
    assert_eq!(c.partition(topic, 0).leader, preferred);
    let named = Some(vec![("orders".to_string(), 0)]);
    assert_eq!(elect(&mut c, ElectionType::Preferred, named.clone()), vec![Some(codes::ELECTION_NOT_NEEDED)]);
    assert_eq!(elect(&mut c, ElectionType::Preferred, None), Vec::<Option<i16>>::new(), "all: only those needed");

    // Fenced, the preferred replica leaves the ISR and cannot be elected.
    for b in (1..=3).filter(|b| *b != preferred) {
        c.heartbeat(b, SESSION_MS).unwrap();
    }
    let out = c.controller.tick(SESSION_MS + 1);
    c.log.extend(out);
    let state = c.partition(topic, 0);
    assert!(!state.isr.contains(&preferred) && state.leader != preferred, "{state:?}");
    assert_eq!(elect(&mut c, ElectionType::Preferred, named), vec![Some(codes::PREFERRED_LEADER_NOT_AVAILABLE)]);
}

#[test]
fn an_unclean_election_picks_a_live_replica_only_for_a_leaderless_partition() {
    let mut c = Cluster::new(1);
    let topic = c.create("orders", 1, 2).unwrap();
    let named = Some(vec![("orders".to_string(), 0)]);
    assert_eq!(elect(&mut c, ElectionType::Unclean, named.clone()), vec![Some(codes::ELECTION_NOT_NEEDED)]);

    let state = c.partition(topic, 0);
    let (leader, other) = (state.leader, state.replicas[1]);
    set_isr(&mut c, topic, &[leader]).unwrap();
    let survivors: Vec<i32> = (1..=3).filter(|b| *b != leader).collect();
    for b in &survivors {
        c.heartbeat(*b, SESSION_MS).unwrap();
    }
    let out = c.controller.tick(SESSION_MS + 1);
    c.log.extend(out);
    assert_eq!(c.partition(topic, 0).leader, NO_LEADER, "the only in-sync replica is gone");

    assert_eq!(elect(&mut c, ElectionType::Unclean, named), vec![None]);
    let state = c.partition(topic, 0);
    assert_eq!((state.leader, state.isr, state.elr), (other, vec![other], vec![]));
}

#[test]
fn leader_balancing_runs_on_its_interval_and_only_when_enabled() {
    let mut c = Cluster::new(1);
    let (topic, preferred, leader) = misplaced_leader(&mut c);
    c.controller.next_leader_balance_ms = 1_000;
    let out = c.controller.tick(999);
    assert!(out.is_empty());
    c.controller.config.auto_leader_rebalance = false;
    assert!(c.controller.tick(1_000).is_empty());
    assert_eq!(c.partition(topic, 0).leader, leader);

    c.controller.config.auto_leader_rebalance = true;
    let out = c.controller.tick(1_000);
    c.log.extend(out);
    assert_eq!(c.partition(topic, 0).leader, preferred);
    assert_eq!(c.controller.next_leader_balance_ms, 1_000 + c.controller.config.leader_imbalance_check_interval_ms);
}
