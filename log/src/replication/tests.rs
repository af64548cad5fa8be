//! The leader's side of replication, event by event with a hand-moved clock.

use uuid::Uuid;

use super::*;
use crate::codes;
use crate::controller::PartitionRegistration;
use crate::storage::EpochHistory;

const LAG_MS: i64 = 30_000;

fn registration(isr: &[i32], leader_epoch: i32, partition_epoch: i32) -> PartitionRegistration {
    PartitionRegistration {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        elr: Vec::new(),
        leader: 1,
        leader_epoch,
        partition_epoch,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }
}

/// Broker 1 leading epoch 5 with `isr`, its log ending at `leo`.
fn leader(isr: &[i32], leo: i64) -> (PartitionState, EpochHistory) {
    let mut state = PartitionState::new(ReplicationConfig::default(), 1, Uuid::nil(), 0, 0);
    state.set_broker_epoch(100);
    state.set_min_insync_replicas(2);
    let t = state.apply_registration(registration(isr, 5, 9), leo, 0);
    assert_eq!(t, Transition::BecameLeader { leader_epoch: 5, start_offset: leo });
    let mut epochs = EpochHistory::new();
    epochs.assign(5, 0);
    (state, epochs)
}

fn fetch(replica: i32, offset: i64) -> ReplicaFetch {
    ReplicaFetch {
        replica_id: replica,
        replica_epoch: 200 + replica as i64,
        current_leader_epoch: 5,
        fetch_offset: offset,
        last_fetched_epoch: Some(5),
    }
}

fn read(
    state: &mut PartitionState,
    epochs: &EpochHistory,
    replica: i32,
    offset: i64,
    leo: i64,
    now: i64,
) -> FollowerRead {
    state.follower_fetch(&fetch(replica, offset), leo, epochs, true, now).unwrap()
}

#[test]
fn the_high_watermark_waits_for_every_in_sync_replica() {
    let (mut state, epochs) = leader(&[1, 2, 3], 10);
    assert_eq!(state.ack_state(10, 5), AckState::Pending);
    read(&mut state, &epochs, 2, 10, 10, 1);
    assert_eq!(state.high_watermark(), 0, "replica 3 has not fetched yet");
    let FollowerRead::Read { high_watermark, high_watermark_moved, .. } = read(&mut state, &epochs, 3, 7, 10, 2) else {
        panic!("no divergence")
    };
    assert_eq!((high_watermark, high_watermark_moved), (7, true));
    assert_eq!(state.ack_state(7, 5), AckState::Done);
    assert_eq!(state.ack_state(8, 5), AckState::Pending);
}

#[test]
fn a_lagging_replica_leaves_the_isr_through_the_controller_only() {
    let (mut state, epochs) = leader(&[1, 2, 3], 10);
    read(&mut state, &epochs, 2, 10, 10, 1);
    read(&mut state, &epochs, 3, 4, 10, 1);
    assert_eq!(state.tick(10, LAG_MS), None, "within replica.lag.time.max.ms");
    read(&mut state, &epochs, 2, 10, 10, LAG_MS);
    let alter = state.tick(10, LAG_MS + 1).expect("replica 3 is out of sync");
    assert_eq!(alter.new_isr, vec![(1, 100), (2, 202)]);
    assert_eq!((alter.leader_epoch, alter.partition_epoch), (5, 9));

    // Until the controller commits the shrink, the high watermark still waits for 3.
    assert_eq!(state.high_watermark(), 4);
    assert_eq!(state.tick(10, LAG_MS + 2), None, "one proposal at a time");
    let moved = state.alter_partition_answered(Ok(registration(&[1, 2], 5, 10)), 10, LAG_MS + 3);
    assert!(moved);
    assert_eq!((state.high_watermark(), state.isr()), (10, &[1, 2][..]));
}

#[test]
fn a_caught_up_follower_joins_and_counts_for_the_high_watermark_at_once() {
    let (mut state, epochs) = leader(&[1, 2], 10);
    read(&mut state, &epochs, 2, 10, 10, 1);
    assert_eq!(state.high_watermark(), 10);
    let FollowerRead::Read { alter, .. } = read(&mut state, &epochs, 3, 6, 12, 2) else { panic!() };
    assert_eq!(alter, None, "below the high watermark");
    let FollowerRead::Read { alter, .. } = read(&mut state, &epochs, 3, 11, 12, 3) else { panic!() };
    let alter = alter.expect("caught up");
    assert_eq!(alter.new_isr, vec![(1, 100), (2, 202), (3, 203)]);
    assert_eq!(state.maximal_isr(), vec![1, 2, 3]);
    read(&mut state, &epochs, 2, 12, 12, 4);
    assert_eq!(state.high_watermark(), 11, "replica 3 counts while the expansion is pending");
}

#[test]
fn below_min_insync_replicas_nothing_commits_and_acks_all_is_refused() {
    let (mut state, epochs) = leader(&[1], 10);
    assert_eq!(state.check_append_acks_all(), Err(codes::NOT_ENOUGH_REPLICAS));
    read(&mut state, &epochs, 2, 10, 10, 1);
    assert_eq!(state.high_watermark(), 0, "KIP-966: no progress while the ISR is below min.insync.replicas");
}

#[test]
fn fetches_from_other_epochs_and_diverged_logs_are_answered_like_kafka() {
    let (mut state, mut epochs) = leader(&[1, 2, 3], 10);
    let mut old = fetch(2, 10);
    old.current_leader_epoch = 4;
    assert_eq!(state.follower_fetch(&old, 10, &epochs, true, 1), Err(codes::FENCED_LEADER_EPOCH));
    old.current_leader_epoch = 6;
    assert_eq!(state.follower_fetch(&old, 10, &epochs, true, 1), Err(codes::UNKNOWN_LEADER_EPOCH));

    // The follower wrote to offset 12 in epoch 4; the leader's epoch 4 ended at 8.
    epochs = EpochHistory::new();
    epochs.assign(4, 0);
    epochs.assign(5, 8);
    let mut diverged = fetch(2, 12);
    diverged.last_fetched_epoch = Some(4);
    let answer = state.follower_fetch(&diverged, 10, &epochs, true, 1);
    assert_eq!(answer, Ok(FollowerRead::Diverging { epoch: 4, end_offset: 8 }));
    assert_eq!(state.high_watermark(), 0, "a diverged fetch says nothing about the follower's progress");
    let mut beyond = fetch(2, 11);
    beyond.last_fetched_epoch = None;
    assert_eq!(state.follower_fetch(&beyond, 10, &epochs, true, 1), Err(codes::OFFSET_OUT_OF_RANGE));
}

#[test]
fn old_registrations_are_ignored_and_new_epochs_change_the_role() {
    let (mut state, _) = leader(&[1, 2, 3], 10);
    assert_eq!(state.apply_registration(registration(&[1, 2], 4, 20), 10, 1), Transition::Stale);
    assert_eq!(state.apply_registration(registration(&[1, 2, 3], 5, 9), 10, 1), Transition::Stale);
    let mut moved = registration(&[2, 3], 6, 10);
    moved.leader = 2;
    assert_eq!(state.apply_registration(moved, 10, 1), Transition::BecameFollower { leader: 2, leader_epoch: 6 });
    assert_eq!((state.is_leader(), state.leader_to_follow()), (false, Some(2)));
    assert_eq!(state.ack_state(1, 5), AckState::NotLeader);
}

#[test]
fn a_refused_isr_change_is_dropped_but_a_possibly_applied_one_is_kept() {
    let (mut state, epochs) = leader(&[1, 2], 10);
    read(&mut state, &epochs, 2, 10, 10, 1);
    let FollowerRead::Read { alter, .. } = read(&mut state, &epochs, 3, 10, 10, 2) else { panic!() };
    assert!(alter.is_some());

    state.alter_partition_answered(Err(codes::INVALID_UPDATE_VERSION), 10, 3);
    assert_eq!(state.maximal_isr(), vec![1, 2, 3], "the controller may hold it; wait for the metadata");
    state.alter_partition_answered(Err(codes::REQUEST_TIMED_OUT), 10, 3);
    assert_eq!(state.maximal_isr(), vec![1, 2, 3], "an unclear answer keeps it too");
    // A late answer to an older proposal (partition epoch 9) settles nothing.
    state.alter_partition_answered(Ok(registration(&[1, 2], 5, 9)), 10, 3);
    assert_eq!(state.maximal_isr(), vec![1, 2, 3]);
    state.alter_partition_answered(Err(codes::INELIGIBLE_REPLICA), 10, 4);
    assert_eq!(state.maximal_isr(), vec![1, 2], "refused outright");
}
