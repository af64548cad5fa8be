//! Deterministic tests of the group coordinator: event sequences with a hand-moved clock,
//! asserting the exact answers and records, without sockets or sleeps.

use std::collections::HashMap;

use bytes::Bytes;

use super::coordinator::{CommitOffset, CoordinatorConfig, GroupCoordinator, JoinRequest, Output, SyncRequest};
use super::records::CoordinatorKey;
use super::{CommitRequest, JoinResponse, RequestId, SyncResponse};
use crate::codes;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

/// A coordinator, a clock, and the answers it gave so far.
struct Harness {
    c: GroupCoordinator,
    now: i64,
    next: RequestId,
    joins: HashMap<RequestId, JoinResponse>,
    syncs: HashMap<RequestId, SyncResponse>,
    appended: Vec<(i32, Vec<u8>, Option<Vec<u8>>)>,
    /// While set, every append fails with this code.
    failing_writes: Option<i16>,
    /// While set, appends wait here, as if still replicating.
    held_writes: Option<Vec<Output>>,
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        min_session_timeout_ms: 1_000,
        ..CoordinatorConfig::default()
    }
}

/// A consumer-protocol subscription to `topics` (the broker reads only the topic list).
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = vec![0, 1];
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join_request(group: &str, member: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member.into(),
        group_instance_id: instance.map(Into::into),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|p| (p.to_string(), subscription(&["t"]))).collect(),
        require_known_member_id: false,
        supports_skip_assignment: true,
    }
}

impl Harness {
    fn new(config: CoordinatorConfig) -> Self {
        Self {
            c: GroupCoordinator::new(config, 7, 1_000),
            now: 1_000,
            next: 0,
            joins: HashMap::new(),
            syncs: HashMap::new(),
            appended: Vec::new(),
            failing_writes: None,
            held_writes: None,
        }
    }

    /// Plays the I/O layer: appends (or fails to), then sends what waited on the append.
    fn collect(&mut self) {
        loop {
            let outputs = self.c.take_outputs();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                self.deliver(output);
            }
        }
    }

    fn deliver(&mut self, output: Output) {
        match output {
            Output::Join(id, r) => assert!(self.joins.insert(id, r).is_none(), "request {id} answered twice"),
            Output::Sync(id, r) => assert!(self.syncs.insert(id, r).is_none(), "request {id} answered twice"),
            Output::Append { partition, records, group, generation, then } => {
                if let Some(held) = self.held_writes.as_mut() {
                    held.push(Output::Append { partition, records, group, generation, then });
                    return;
                }
                if let Some(code) = self.failing_writes {
                    return self.c.write_failed(self.now, group.as_deref(), generation, code, then);
                }
                self.appended.extend(records.into_iter().map(|(k, v)| (partition, k, v)));
                if let Some(group) = group.as_deref()
                    && !self.c.assignment_stored(group, generation)
                {
                    return self.c.write_failed(self.now, Some(group), generation, codes::REBALANCE_IN_PROGRESS, then);
                }
                for answer in then {
                    self.deliver(answer);
                }
            }
        }
    }

    /// DeleteGroups as the I/O layer runs it: tombstones first, then the deletion.
    fn delete_group(&mut self, group: &str) -> i16 {
        self.collect();
        match self.c.prepare_delete_group(group) {
            Err(code) => code,
            Ok(pending) => self.write_deletion(pending),
        }
    }

    fn delete_offsets(&mut self, group: &str, partitions: &[(String, i32)]) -> Result<Vec<i16>, i16> {
        self.collect();
        let (results, pending) = self.c.prepare_delete_offsets(group, partitions)?;
        match self.write_deletion(pending) {
            codes::NONE => Ok(results),
            code => Err(code),
        }
    }

    fn write_deletion(&mut self, pending: super::coordinator::PendingDeletion) -> i16 {
        if let Some(code) = self.failing_writes {
            return code;
        }
        self.appended.extend(pending.records.iter().map(|(k, v)| (pending.partition, k.clone(), v.clone())));
        self.c.complete_deletion(pending);
        codes::NONE
    }

    fn join(&mut self, req: JoinRequest) -> RequestId {
        self.next += 1;
        self.c.join_group(self.now, self.next, req);
        self.collect();
        self.next
    }

    fn sync(&mut self, group: &str, member: &str, generation: i32, assignments: &[(&str, &str)]) -> RequestId {
        self.next += 1;
        let req = SyncRequest {
            group_id: group.into(),
            generation,
            member_id: member.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol: None,
            assignments: assignments.iter().map(|(m, a)| (m.to_string(), Bytes::from(a.to_string()))).collect(),
        };
        self.c.sync_group(self.now, self.next, req);
        self.collect();
        self.next
    }

    /// The held appends complete, in order.
    fn release_writes(&mut self) {
        for write in self.held_writes.take().unwrap_or_default() {
            self.deliver(write);
        }
        self.collect();
    }

    fn advance(&mut self, ms: i64) {
        self.now += ms;
        self.c.tick(self.now);
        self.collect();
    }

    /// A new member joins with the v4 handshake and returns its member id.
    fn member_id_for(&mut self, group: &str) -> String {
        let mut req = join_request(group, "", None, &["range"]);
        req.require_known_member_id = true;
        let id = self.join(req);
        let r = &self.joins[&id];
        assert_eq!(r.error, codes::MEMBER_ID_REQUIRED);
        r.member_id.clone()
    }

    fn commit(&mut self, group: &str, member: &str, generation: i32, offset: i64) -> Result<i16, i16> {
        let req = CommitRequest {
            group_id: group.into(),
            generation,
            member_id: member.into(),
            group_instance_id: None,
            offsets: vec![CommitOffset {
                topic: "t".into(),
                partition: 0,
                offset,
                leader_epoch: -1,
                metadata: Some("m".into()),
            }],
        };
        let pending = self.c.prepare_commit(self.now, req)?;
        Ok(self.c.complete_commit(self.now, pending)[0].2)
    }

    fn committed(&self, group: &str) -> Option<i64> {
        let offsets = self.c.fetch_offsets(group, Some(&[("t".to_string(), vec![0])])).unwrap();
        offsets[0].2.as_ref().map(|v| v.offset)
    }
}

/// Two members form a stable group: both joins wait until both have joined, the leader
/// alone gets the member list, and its SyncGroup releases every member's assignment.
fn stable_pair(h: &mut Harness) -> (String, String) {
    let a = h.member_id_for("g");
    let ja = h.join(JoinRequest { require_known_member_id: true, ..join_request("g", &a, None, &["range"]) });
    // A lone member completes at once: nobody else is known yet.
    assert_eq!(h.joins[&ja].generation, 1);
    let sa = h.sync("g", &a, 1, &[(&a, "A")]);
    assert_eq!(h.syncs[&sa].assignment, Bytes::from("A"));

    let b = h.member_id_for("g");
    assert_eq!(h.c.heartbeat(h.now, "g", &a, None, 1), codes::NONE, "handing b an id starts nothing");
    let jb = h.join(JoinRequest { require_known_member_id: true, ..join_request("g", &b, None, &["range"]) });
    assert!(!h.joins.contains_key(&jb), "b waits for a to rejoin");
    let ja = h.join(join_request("g", &a, None, &["range"]));
    let (ra, rb) = (h.joins[&ja].clone(), h.joins[&jb].clone());
    assert_eq!((ra.generation, rb.generation), (2, 2));
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty(), "followers see none");

    let sb = h.sync("g", &b, 2, &[]);
    assert!(!h.syncs.contains_key(&sb), "a follower waits for the leader's assignment");
    let sa = h.sync("g", &a, 2, &[(&a, "A2"), (&b, "B2")]);
    assert_eq!(h.syncs[&sa].assignment, Bytes::from("A2"));
    assert_eq!(h.syncs[&sb].assignment, Bytes::from("B2"));
    assert_eq!(h.c.describe_group("g").unwrap().state, "Stable");
    (a, b)
}

/// Members `a` and `b` in generation 2, joined but not yet synced.
fn joined_pair(h: &mut Harness) -> (String, String) {
    let a = h.member_id_for("g");
    h.join(JoinRequest { require_known_member_id: true, ..join_request("g", &a, None, &["range"]) });
    h.sync("g", &a, 1, &[(&a, "A")]);
    let b = h.member_id_for("g");
    let jb = h.join(JoinRequest { require_known_member_id: true, ..join_request("g", &b, None, &["range"]) });
    let ja = h.join(join_request("g", &a, None, &["range"]));
    assert_eq!((h.joins[&ja].generation, h.joins[&jb].generation), (2, 2));
    (a, b)
}

#[test]
fn every_sync_waits_until_the_assignment_is_stored_and_a_stale_one_is_refused() {
    let mut h = Harness::new(config());
    let (a, b) = joined_pair(&mut h);
    h.held_writes = Some(Vec::new());
    let sa = h.sync("g", &a, 2, &[(&a, "A2"), (&b, "B2")]);
    assert!(!h.syncs.contains_key(&sa), "the leader waits for its assignment to be stored");
    let sb = h.sync("g", &b, 2, &[]);
    assert!(!h.syncs.contains_key(&sb), "so does a follower that syncs after it");
    h.release_writes();
    assert_eq!(h.syncs[&sa].assignment, Bytes::from("A2"));
    assert_eq!(h.syncs[&sb].assignment, Bytes::from("B2"));
    assert_eq!(h.c.describe_group("g").unwrap().state, "Stable");

    // A third member joins while the next assignment is still being stored: the answers
    // that waited on it are out of date once it lands.
    let mut h = Harness::new(config());
    let (a, b) = joined_pair(&mut h);
    h.held_writes = Some(Vec::new());
    let sa = h.sync("g", &a, 2, &[(&a, "A2"), (&b, "B2")]);
    let sb = h.sync("g", &b, 2, &[]);
    let c = h.member_id_for("g");
    h.join(JoinRequest { require_known_member_id: true, ..join_request("g", &c, None, &["range"]) });
    assert_eq!(h.syncs[&sb].error, codes::REBALANCE_IN_PROGRESS, "a waiting follower learns at once");
    h.release_writes();
    assert_eq!(h.syncs[&sa].error, codes::REBALANCE_IN_PROGRESS);
    assert!(h.syncs[&sa].assignment.is_empty());
}

#[test]
fn members_join_sync_and_commit_with_generation_fencing() {
    let mut h = Harness::new(config());
    let (a, _b) = stable_pair(&mut h);
    assert_eq!(h.commit("g", &a, 2, 10), Ok(codes::NONE));
    assert_eq!(h.committed("g"), Some(10));
    assert_eq!(h.commit("g", &a, 1, 11), Err(codes::ILLEGAL_GENERATION), "an old generation is fenced");
    assert_eq!(h.commit("g", "stranger", 2, 11), Err(codes::UNKNOWN_MEMBER_ID));
    assert_eq!(h.commit("g", "", -1, 11), Err(codes::UNKNOWN_MEMBER_ID), "no tool commits into an active group");
    assert_eq!(h.committed("g"), Some(10), "refused commits change nothing");
    assert_eq!(h.c.heartbeat(h.now, "g", &a, None, 1), codes::ILLEGAL_GENERATION);
    assert_eq!(h.c.heartbeat(h.now, "g", "stranger", None, 2), codes::UNKNOWN_MEMBER_ID);
    assert_eq!(h.c.heartbeat(h.now, "g", &a, None, 2), codes::NONE);

    for bad in ["", &"x".repeat(256)] {
        assert_eq!(h.commit(bad, "", -1, 1), Err(codes::INVALID_GROUP_ID));
        let id = h.join(join_request(bad, "", None, &["range"]));
        assert_eq!(h.joins[&id].error, codes::INVALID_GROUP_ID);
    }
    let mut short = join_request("g", "", None, &["range"]);
    short.session_timeout_ms = 10;
    let id = h.join(short);
    assert_eq!(h.joins[&id].error, codes::INVALID_SESSION_TIMEOUT);
}

#[test]
fn a_silent_member_is_removed_after_its_session_timeout_and_the_rest_rebalance() {
    let mut h = Harness::new(config());
    let (a, b) = stable_pair(&mut h);
    for _ in 0..2 {
        h.advance(4_000);
        assert_eq!(h.c.heartbeat(h.now, "g", &a, None, 2), codes::NONE, "a keeps heartbeating");
    }
    h.advance(3_000);
    // b never heartbeated: it is gone, and a is told to rejoin.
    let described = h.c.describe_group("g").unwrap();
    assert_eq!(described.state, "PreparingRebalance");
    assert_eq!(h.c.heartbeat(h.now, "g", &a, None, 2), codes::REBALANCE_IN_PROGRESS);
    assert_eq!(h.c.heartbeat(h.now, "g", &b, None, 2), codes::UNKNOWN_MEMBER_ID);
    let ja = h.join(join_request("g", &a, None, &["range"]));
    assert_eq!(h.joins[&ja].generation, 3);
    assert_eq!(h.joins[&ja].members.len(), 1);
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let mut h = Harness::new(config());
    let (a, b) = stable_pair(&mut h);
    let c = h.member_id_for("g");
    let jc = h.join(join_request("g", &c, None, &["range"]));
    let ja = h.join(join_request("g", &a, None, &["range"]));
    // b keeps heartbeating but never rejoins.
    for _ in 0..(REBALANCE_MS / 5_000) - 1 {
        h.advance(5_000);
        assert_eq!(h.c.heartbeat(h.now, "g", &b, None, 2), codes::REBALANCE_IN_PROGRESS);
        assert!(!h.joins.contains_key(&ja));
    }
    h.advance(5_000);
    let r = &h.joins[&ja];
    assert_eq!(r.generation, 3);
    let members: Vec<&str> = r.members.iter().map(|m| m.member_id.as_str()).collect();
    assert!(members.contains(&a.as_str()) && members.contains(&c.as_str()) && !members.contains(&b.as_str()));
    assert_eq!(h.joins[&jc].generation, 3);
}

#[test]
fn the_initial_delay_collects_a_starting_fleet_into_one_rebalance() {
    let mut h = Harness::new(CoordinatorConfig { initial_rebalance_delay_ms: 3_000, ..config() });
    let j1 = h.join(join_request("g", "", None, &["range"]));
    h.advance(2_000);
    let j2 = h.join(join_request("g", "", None, &["range"]));
    h.advance(1_000);
    assert!(h.joins.is_empty(), "a second member extends the delay");
    let j3 = h.join(join_request("g", "", None, &["range"]));
    h.advance(3_000);
    assert!(h.joins.is_empty(), "and so does a third");
    h.advance(3_000);
    for j in [j1, j2, j3] {
        assert_eq!(h.joins[&j].generation, 1, "one generation for all three");
    }
}

#[test]
fn the_protocol_is_voted_among_those_every_member_supports() {
    let mut h = Harness::new(config());
    let ja = h.join(join_request("g", "", None, &["cooperative-sticky", "range"]));
    let a = h.joins[&ja].member_id.clone();
    h.sync("g", &a, 1, &[]);
    let jb = h.join(join_request("g", "", None, &["range", "roundrobin"]));
    let ja = h.join(join_request("g", &a, None, &["cooperative-sticky", "range"]));
    assert_eq!(h.joins[&ja].protocol.as_deref(), Some("range"));
    assert_eq!(h.joins[&jb].protocol.as_deref(), Some("range"));
    let jc = h.join(join_request("g", "", None, &["roundrobin"]));
    assert_eq!(h.joins[&jc].error, codes::INCONSISTENT_GROUP_PROTOCOL, "nothing in common with the group");
    let mut other_type = join_request("g", "", None, &["range"]);
    other_type.protocol_type = "connect".into();
    let jd = h.join(other_type);
    assert_eq!(h.joins[&jd].error, codes::INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_the_generation_and_fences_the_old_instance() {
    let mut h = Harness::new(config());
    let ja = h.join(join_request("g", "", Some("i-a"), &["range"]));
    let a = h.joins[&ja].member_id.clone();
    h.sync("g", &a, 1, &[]);
    let jb = h.join(join_request("g", "", Some("i-b"), &["range"]));
    let ja = h.join(join_request("g", &a, Some("i-a"), &["range"]));
    let b = h.joins[&jb].member_id.clone();
    assert_eq!(h.joins[&ja].generation, 2);
    h.sync("g", &b, 2, &[]);
    h.sync("g", &a, 2, &[(&a, "A"), (&b, "B")]);

    // b restarts: a new process with the same instance id and no member id.
    h.advance(2_000);
    let jb2 = h.join(join_request("g", "", Some("i-b"), &["range"]));
    let r = h.joins[&jb2].clone();
    assert_eq!(r.error, codes::NONE);
    assert_eq!(r.generation, 2, "no rebalance");
    assert_ne!(r.member_id, b, "a new member id");
    let sb2 = h.sync("g", &r.member_id, 2, &[]);
    assert_eq!(h.syncs[&sb2].assignment, Bytes::from("B"), "the same assignment as before");
    assert_eq!(h.c.heartbeat(h.now, "g", &a, Some("i-a"), 2), codes::NONE, "a did not have to rejoin");
    assert_eq!(h.c.heartbeat(h.now, "g", &b, Some("i-b"), 2), codes::FENCED_INSTANCE_ID, "the old instance is fenced");
    let stored =
        h.appended.iter().filter(|(_, k, _)| matches!(CoordinatorKey::decode(k), Ok(CoordinatorKey::Group { .. })));
    assert!(stored.count() >= 3, "the new member id is persisted");
}

#[test]
fn a_member_that_never_syncs_is_removed_at_the_sync_deadline() {
    let mut h = Harness::new(config());
    let (a, b) = stable_pair(&mut h);
    let c = h.member_id_for("g");
    h.join(join_request("g", &c, None, &["range"]));
    h.join(join_request("g", &a, None, &["range"]));
    let jb = h.join(join_request("g", &b, None, &["range"]));
    assert_eq!(h.joins[&jb].generation, 3);
    let sa = h.sync("g", &a, 3, &[]);
    let sb = h.sync("g", &b, 3, &[]);
    assert!(h.syncs[&sa].error == codes::NONE && h.syncs[&sb].error == codes::NONE);
    h.advance(i64::from(REBALANCE_MS));
    assert_eq!(h.c.describe_group("g").unwrap().state, "PreparingRebalance", "c never synced");
    assert_eq!(h.c.heartbeat(h.now, "g", &c, None, 3), codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn leaving_rebalances_the_rest_and_the_last_leaver_empties_the_group() {
    let mut h = Harness::new(config());
    let (a, b) = stable_pair(&mut h);
    assert_eq!(h.c.leave_group(h.now, "g", &[(b.clone(), None)]), (codes::NONE, vec![codes::NONE]));
    assert_eq!(h.c.leave_group(h.now, "g", &[("nobody".into(), None)]).1, vec![codes::UNKNOWN_MEMBER_ID]);
    let ja = h.join(join_request("g", &a, None, &["range"]));
    assert_eq!(h.joins[&ja].generation, 3);
    h.sync("g", &a, 3, &[]);
    assert_eq!(h.delete_group("g"), codes::NON_EMPTY_GROUP);
    h.c.leave_group(h.now, "g", &[(a, None)]);
    assert_eq!(h.c.describe_group("g").unwrap().state, "Empty");
    assert_eq!(h.commit("g", "", -1, 5), Ok(codes::NONE), "tools may commit to an empty group");
    assert_eq!(h.delete_group("g"), codes::NONE);
    assert_eq!(h.c.describe_group("g").unwrap().state, "Dead");
    assert_eq!(h.committed("g"), None);
    assert_eq!(h.delete_group("g"), codes::GROUP_ID_NOT_FOUND);
    h.collect();
    let (_, key, value) = h.appended.last().unwrap();
    assert!(matches!(CoordinatorKey::decode(key), Ok(CoordinatorKey::Group { .. })) && value.is_none());
}

#[test]
fn offsets_and_groups_survive_a_reload_and_loading_partitions_answer_load_in_progress() {
    let mut h = Harness::new(config());
    let (a, b) = stable_pair(&mut h);
    let pending =
        h.c.prepare_commit(
            h.now,
            CommitRequest {
                group_id: "g".into(),
                generation: 2,
                member_id: a.clone(),
                group_instance_id: None,
                offsets: vec![CommitOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 42,
                    leader_epoch: 3,
                    metadata: Some("checkpoint".into()),
                }],
            },
        )
        .unwrap();
    let records = pending.records.clone();
    h.c.complete_commit(h.now, pending);

    let mut reloaded = GroupCoordinator::new(config(), 8, h.now);
    let partition = reloaded.partition_for("g");
    reloaded.begin_loading([partition]);
    assert_eq!(reloaded.describe_group("g"), Err(codes::COORDINATOR_LOAD_IN_PROGRESS));
    assert_eq!(reloaded.heartbeat(h.now, "g", &a, None, 2), codes::COORDINATOR_LOAD_IN_PROGRESS);
    assert!(reloaded.list_groups(&[]).is_err());
    let all = h.appended.iter().map(|(_, k, v)| (k.clone(), v.clone())).chain(records);
    for (key, value) in all {
        reloaded.load_record(&CoordinatorKey::decode(&key).unwrap(), value.as_deref(), h.now).unwrap();
    }
    reloaded.finish_loading(partition, h.now);
    let offsets = reloaded.fetch_offsets("g", None).unwrap();
    let value = offsets[0].2.clone().unwrap();
    assert_eq!((value.offset, value.leader_epoch, value.metadata.as_str()), (42, 3, "checkpoint"));
    let described = reloaded.describe_group("g").unwrap();
    assert_eq!(described.state, "Stable");
    assert_eq!(described.members.len(), 2);
    assert_eq!(reloaded.heartbeat(h.now, "g", &b, None, 2), codes::NONE, "members carry on after a failover");
    assert_eq!(super::coordinator::partition_for("my-group", 50), 12, "Kafka's own partition for this id");
}

#[test]
fn offsets_of_an_empty_group_expire_after_the_retention_and_take_the_group_with_them() {
    let mut h = Harness::new(config());
    assert_eq!(h.commit("tools", "", -1, 7), Ok(codes::NONE));
    h.advance(30_000);
    assert_eq!(h.committed("tools"), Some(7));
    h.advance(31_000);
    assert_eq!(h.committed("tools"), None, "expired 60 s after the commit");
    assert_eq!(h.c.describe_group("tools").unwrap().state, "Dead");
    let tombstones = h.appended.iter().filter(|(_, _, v)| v.is_none()).count();
    assert_eq!(tombstones, 2, "one for the offset, one for the group");

    // A stable group keeps offsets of topics it subscribes to, however old.
    let (a, _) = stable_pair(&mut h);
    h.commit("g", &a, 2, 1).unwrap();
    let expired_before = h.appended.iter().filter(|(_, _, v)| v.is_none()).count();
    for _ in 0..8 {
        h.advance(9_000);
        for m in h.c.describe_group("g").unwrap().members {
            h.c.heartbeat(h.now, "g", &m.member_id, None, 2);
        }
    }
    assert_eq!(h.committed("g"), Some(1));
    assert_eq!(h.delete_offsets("g", &[("t".into(), 0)]), Ok(vec![codes::GROUP_SUBSCRIBED_TO_TOPIC]));
    assert_eq!(h.appended.iter().filter(|(_, _, v)| v.is_none()).count(), expired_before);
}

#[test]
fn a_restarted_static_leader_keeps_the_assignment_with_or_without_kip_814() {
    let mut h = Harness::new(config());
    let ja = h.join(join_request("g", "", Some("i-a"), &["range"]));
    let a = h.joins[&ja].member_id.clone();
    h.sync("g", &a, 1, &[(&a, "A")]);
    for (supports_skip, expect_members) in [(false, 0), (true, 1)] {
        let mut req = join_request("g", "", Some("i-a"), &["range"]);
        req.supports_skip_assignment = supports_skip;
        let old = h.c.describe_group("g").unwrap().members[0].member_id.clone();
        let id = h.join(req);
        let r = h.joins[&id].clone();
        assert_eq!((r.error, r.generation), (codes::NONE, 1), "no rebalance");
        assert_eq!(r.skip_assignment, supports_skip);
        assert_eq!(r.members.len(), expect_members);
        // Before v9 the leader is told it follows (the old id leads), so it just syncs.
        assert_eq!(r.leader == r.member_id, supports_skip, "old leader id {old}");
        let s = h.sync("g", &r.member_id, 1, &[]);
        assert_eq!(h.syncs[&s].assignment, Bytes::from("A"));
    }
}

#[test]
fn an_assignment_that_cannot_be_written_is_answered_with_the_error_and_the_group_rebalances() {
    let mut h = Harness::new(config());
    let (a, b) = stable_pair(&mut h);
    // A third member forces a new generation, whose assignment cannot be stored.
    let c = h.member_id_for("g");
    let jc = h.join(JoinRequest { require_known_member_id: true, ..join_request("g", &c, None, &["range"]) });
    let (ja, jb) = (h.join(join_request("g", &a, None, &["range"])), h.join(join_request("g", &b, None, &["range"])));
    assert_eq!([&ja, &jb, &jc].map(|id| h.joins[id].generation), [3, 3, 3]);
    h.failing_writes = Some(codes::NOT_COORDINATOR);
    let (sb, sc) = (h.sync("g", &b, 3, &[]), h.sync("g", &c, 3, &[]));
    let sa = h.sync("g", &a, 3, &[(&a, "A3"), (&b, "B3"), (&c, "C3")]);
    for id in [sa, sb, sc] {
        assert_eq!(h.syncs[&id].error, codes::NOT_COORDINATOR, "no member is told an assignment that was not stored");
        assert!(h.syncs[&id].assignment.is_empty());
    }
    assert_eq!(h.c.describe_group("g").unwrap().state, "PreparingRebalance");
    assert_eq!(h.c.heartbeat(h.now, "g", &a, None, 3), codes::REBALANCE_IN_PROGRESS);

    // Once writes work again, the members rejoin and get a stored assignment.
    h.failing_writes = None;
    let joined = [&a, &b, &c].map(|m| h.join(join_request("g", m, None, &["range"])));
    assert!(joined.iter().all(|id| h.joins[id].generation == 4));
    let (sb, sc) = (h.sync("g", &b, 4, &[]), h.sync("g", &c, 4, &[]));
    let sa = h.sync("g", &a, 4, &[(&a, "A4"), (&b, "B4"), (&c, "C4")]);
    assert_eq!([sa, sb, sc].map(|id| h.syncs[&id].error), [codes::NONE; 3]);
    assert_eq!(h.syncs[&sc].assignment, Bytes::from("C4"));
    assert_eq!(h.c.describe_group("g").unwrap().state, "Stable");
}

#[test]
fn deletions_that_cannot_be_written_change_nothing() {
    let mut h = Harness::new(config());
    assert_eq!(h.commit("tools", "", -1, 7), Ok(codes::NONE));
    h.failing_writes = Some(codes::COORDINATOR_NOT_AVAILABLE);
    assert_eq!(h.delete_offsets("tools", &[("t".into(), 0)]), Err(codes::COORDINATOR_NOT_AVAILABLE));
    assert_eq!(h.delete_group("tools"), codes::COORDINATOR_NOT_AVAILABLE);
    assert_eq!(h.committed("tools"), Some(7), "memory still agrees with the log");
    h.failing_writes = None;
    assert_eq!(h.delete_offsets("tools", &[("t".into(), 0)]), Ok(vec![codes::NONE]));
    assert_eq!(h.committed("tools"), None);
    assert_eq!(h.delete_group("tools"), codes::NONE);
    assert_eq!(h.c.describe_group("tools").unwrap().state, "Dead");
}

/// Records that make an empty consumer group, empty since `since_ms`, with one offset.
fn empty_group_records(group: &str, since_ms: i64) -> Vec<(CoordinatorKey, Vec<u8>)> {
    let value = super::records::GroupValue {
        protocol_type: "consumer".into(),
        generation: 5,
        protocol: None,
        leader: None,
        state_timestamp_ms: since_ms,
        members: Vec::new(),
    };
    let offset = super::records::OffsetValue {
        offset: 9,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: since_ms,
    };
    vec![
        (CoordinatorKey::Group { group: group.into() }, value.encode()),
        (CoordinatorKey::Offset { group: group.into(), topic: "t".into(), partition: 0 }, offset.encode()),
    ]
}

#[test]
fn retention_and_timeouts_wait_for_a_partition_to_finish_loading() {
    let mut h = Harness::new(config());
    let partition = h.c.partition_for("old");
    h.c.begin_loading([partition]);
    // Replayed so far: a group empty for long past the retention. Mid-load it looks Empty.
    for (key, value) in empty_group_records("old", h.now - 10 * 60_000) {
        h.c.load_record(&key, Some(&value), h.now).unwrap();
    }
    for _ in 0..5 {
        h.advance(1_000);
    }
    assert!(h.appended.is_empty(), "no tombstone for a group whose partition is still loading");

    // Loaded, the same group expires at the next retention check, as it should.
    h.c.finish_loading(partition, h.now);
    h.advance(1_000);
    assert_eq!(h.committed("old"), None);
    assert!(h.appended.iter().any(|(p, _, v)| *p == partition && v.is_none()));
}

#[test]
fn an_abandoned_load_serves_no_partial_state_and_a_new_load_starts_clean() {
    let mut h = Harness::new(config());
    let partition = h.c.partition_for("g");
    h.c.begin_loading([partition]);
    for (key, value) in empty_group_records("g", h.now) {
        h.c.load_record(&key, Some(&value), h.now).unwrap();
    }
    h.c.abandon_loading(partition);
    assert_eq!(h.c.fetch_offsets("g", None), Err(codes::COORDINATOR_LOAD_IN_PROGRESS));
    assert_eq!(h.c.describe_group("g"), Err(codes::COORDINATOR_LOAD_IN_PROGRESS));
    // The retry replays the partition from its start.
    for (key, value) in empty_group_records("g", h.now) {
        h.c.load_record(&key, Some(&value), h.now).unwrap();
    }
    h.c.finish_loading(partition, h.now);
    assert_eq!(h.committed("g"), Some(9));
}
