//! Consumer groups end to end against an embedded broker: members sharing partitions,
//! a dead member's partitions moving on, cooperative rebalances, static membership,
//! commits that survive restarts, the admin calls, and typed errors for bad requests.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use freshet_log::broker::BrokerConfig;
use freshet_log::client::{
    AdminClient, ClientConfig, Connection, ConnectionConfig, Consumer, ConsumerConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, RebalanceContext, RebalanceListener, TopicPartition,
};
use freshet_log::codes;
use parking_lot::Mutex;

fn fast_groups(config: &mut BrokerConfig) {
    config.group.min_session_timeout_ms = 500;
}

fn member_config(addr: &str, group: &str, extra: &[(&str, &str)]) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(addr);
    config
        .set_all([
            ("group.id", group),
            ("auto.offset.reset", "earliest"),
            ("enable.auto.commit", "false"),
            ("session.timeout.ms", "3000"),
            ("heartbeat.interval.ms", "300"),
            ("fetch.max.wait.ms", "100"),
        ])
        .unwrap();
    config.set_all(extra.iter().copied()).unwrap();
    config
}

async fn produce(addr: &str, topic: &str, count: usize) {
    let producer = Producer::connect(ProducerConfig::new(addr)).await.unwrap();
    for i in 0..count {
        let key = format!("key-{i}");
        drop(producer.send(ProducerRecord::new(topic).key(&key).value(&key)).await.unwrap());
    }
    producer.close().await.unwrap();
}

/// What each member saw and owns, shared with the test.
#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<(i32, i64, usize)>>,
    assignments: Mutex<BTreeMap<usize, Vec<TopicPartition>>>,
    stop: AtomicBool,
}

/// Runs a member that processes records, commits synchronously after each poll, and
/// reports its assignment, until told to stop (then closes) or aborted (a crash).
fn spawn_member(
    id: usize,
    config: ConsumerConfig,
    topic: &'static str,
    shared: Arc<Shared>,
    listener: Option<Box<dyn RebalanceListener>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = Consumer::connect(config).await.unwrap();
        match listener {
            Some(l) => consumer.subscribe_with_listener(&[topic], l).await.unwrap(),
            None => consumer.subscribe(&[topic]).await.unwrap(),
        }
        while !shared.stop.load(Ordering::SeqCst) {
            let records = consumer.poll(Duration::from_millis(100)).await.unwrap();
            if !records.is_empty() {
                consumer.commit_sync().await.unwrap();
            }
            // Counted once committed, so a test that saw everything also sees it committed.
            shared.seen.lock().extend(records.iter().map(|r| (r.partition, r.offset, id)));
            shared.assignments.lock().insert(id, consumer.assignment());
        }
        consumer.close().await.unwrap();
    })
}

/// Waits (at most `limit`) for `condition`.
async fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn split_evenly(assignments: &BTreeMap<usize, Vec<TopicPartition>>, members: &[usize], each: usize) -> bool {
    let mut all = BTreeSet::new();
    for id in members {
        let Some(a) = assignments.get(id) else { return false };
        if a.len() != each {
            return false;
        }
        all.extend(a.iter().cloned());
    }
    all.len() == members.len() * each
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_a_dead_members_partitions_move_on() {
    let (_dir, broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("shared", 6)).await.unwrap();
    produce(&addr, "shared", 3000).await;

    let shared = Arc::new(Shared::default());
    let members: Vec<_> =
        (0..3).map(|id| spawn_member(id, member_config(&addr, "g", &[]), "shared", shared.clone(), None)).collect();
    wait_for(Duration::from_secs(30), "every record and an even split", || {
        shared.seen.lock().len() >= 3000 && split_evenly(&shared.assignments.lock(), &[0, 1, 2], 2)
    })
    .await;
    let seen = shared.seen.lock().clone();
    let unique: BTreeSet<(i32, i64)> = seen.iter().map(|(p, o, _)| (*p, *o)).collect();
    assert_eq!(unique.len(), 3000, "every record consumed");
    assert_eq!(seen.len(), 3000, "none consumed twice: commits follow processing");

    let described = admin.describe_groups(&["g"]).await.unwrap().remove(0);
    assert_eq!(
        (described.state.as_str(), described.protocol.as_str(), described.members.len()),
        ("Stable", "range", 3)
    );
    let committed: i64 =
        admin.list_group_offsets("g", None).await.unwrap().iter().map(|(_, c)| c.as_ref().unwrap().offset).sum();
    assert_eq!(committed, 3000, "the committed offsets are the log ends");

    // Member 2 dies: no LeaveGroup, no more heartbeats.
    members[2].abort();
    let died = Instant::now();
    wait_for(Duration::from_secs(15), "the survivors to own all six partitions", || {
        split_evenly(&shared.assignments.lock(), &[0, 1], 3)
    })
    .await;
    let moved_after = died.elapsed();
    assert!(moved_after < Duration::from_secs(3 + 5), "moved after {moved_after:?}, session timeout 3 s");

    shared.stop.store(true, Ordering::SeqCst);
    for m in members.into_iter().take(2) {
        m.await.unwrap();
    }
    let listed = admin.list_groups().await.unwrap();
    assert_eq!((listed.len(), listed[0].state.as_str()), (1, "Empty"), "the last members left on close: {listed:?}");
    broker.shutdown().await.unwrap();
}

/// Records every revocation and assignment a member hears about.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

/// "revoked" or "assigned", with the partitions.
type Event = (&'static str, Vec<TopicPartition>);

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, revoked: &[TopicPartition], _ctx: &mut RebalanceContext) {
        self.0.lock().push(("revoked", revoked.to_vec()));
    }
    fn on_partitions_assigned(&mut self, assigned: &[TopicPartition], _ctx: &mut RebalanceContext) {
        self.0.lock().push(("assigned", assigned.to_vec()));
    }
}

impl Recorder {
    fn revoked(&self) -> usize {
        self.0.lock().iter().filter(|(kind, _)| *kind == "revoked").map(|(_, tps)| tps.len()).sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_revokes_only_the_partitions_that_move() {
    let (_dir, broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("coop", 6)).await.unwrap();
    let shared = Arc::new(Shared::default());
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let config = |id| {
        member_config(
            &addr,
            "coop-group",
            &[("partition.assignment.strategy", "cooperative-sticky"), ("client.id", ["a", "b", "c"][id])],
        )
    };
    let mut members = Vec::new();
    for (id, recorder) in recorders.iter().enumerate().take(2) {
        members.push(spawn_member(id, config(id), "coop", shared.clone(), Some(Box::new(recorder.clone()))));
    }
    wait_for(Duration::from_secs(20), "two members with three each", || {
        split_evenly(&shared.assignments.lock(), &[0, 1], 3)
    })
    .await;
    let before: BTreeMap<usize, Vec<TopicPartition>> = shared.assignments.lock().clone();
    let revoked_before: Vec<usize> = recorders.iter().map(Recorder::revoked).collect();
    assert!(revoked_before[0] + revoked_before[1] <= 3, "forming moved at most the second member's half");

    members.push(spawn_member(2, config(2), "coop", shared.clone(), Some(Box::new(recorders[2].clone()))));
    wait_for(Duration::from_secs(20), "three members with two each", || {
        split_evenly(&shared.assignments.lock(), &[0, 1, 2], 2)
    })
    .await;
    let after = shared.assignments.lock().clone();
    for id in 0..2 {
        assert!(after[&id].iter().all(|tp| before[&id].contains(tp)), "member {id} kept the partitions it still has");
        let revoked = recorders[id].revoked() - revoked_before[id];
        assert_eq!(revoked, 1, "member {id} gave up only the one partition that moved");
    }
    assert_eq!(described_protocol(&admin, "coop-group").await, "cooperative-sticky");
    shared.stop.store(true, Ordering::SeqCst);
    for m in members {
        m.await.unwrap();
    }
    broker.shutdown().await.unwrap();
}

async fn described_protocol(admin: &AdminClient, group: &str) -> String {
    admin.describe_groups(&[group]).await.unwrap().remove(0).protocol
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarting_within_its_session_timeout_causes_no_rebalance() {
    let (_dir, broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("static", 4)).await.unwrap();
    let shared = Arc::new(Shared::default());
    let recorder = Recorder::default();
    let config = |instance: &str| {
        member_config(&addr, "static-group", &[("group.instance.id", instance), ("session.timeout.ms", "10000")])
    };
    let a = spawn_member(0, config("a"), "static", shared.clone(), Some(Box::new(recorder.clone())));
    let b = spawn_member(1, config("b"), "static", shared.clone(), None);
    wait_for(Duration::from_secs(20), "two static members with two each", || {
        split_evenly(&shared.assignments.lock(), &[0, 1], 2)
    })
    .await;
    let b_before = shared.assignments.lock()[&1].clone();
    let events_before = recorder.0.lock().len();

    // b stops without leaving (a static member keeps its place) and comes back.
    b.abort();
    shared.assignments.lock().remove(&1);
    let b2 = spawn_member(1, config("b"), "static", shared.clone(), None);
    wait_for(Duration::from_secs(10), "the restarted member to get its partitions", || {
        shared.assignments.lock().get(&1).is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(shared.assignments.lock()[&1], b_before, "the same partitions as before");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(recorder.0.lock().len(), events_before, "the other member saw no rebalance");
    let described = admin.describe_groups(&["static-group"]).await.unwrap().remove(0);
    let instances: BTreeSet<_> = described.members.iter().map(|m| m.group_instance_id.clone().unwrap()).collect();
    assert_eq!(instances, BTreeSet::from(["a".to_string(), "b".to_string()]));

    shared.stop.store(true, Ordering::SeqCst);
    a.await.unwrap();
    b2.await.unwrap();
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_and_metadata_survive_clean_and_crash_restarts() {
    support::init_tracing();
    let (dir, mut broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("durable", 3)).await.unwrap();
    for (round, clean) in [(1, true), (2, false)] {
        let mut consumer = Consumer::connect(member_config(&addr, "durable-group", &[])).await.unwrap();
        let offsets: Vec<(TopicPartition, i64, Option<String>)> = (0..3)
            .map(|p| {
                (
                    TopicPartition::new("durable".to_string(), p),
                    i64::from(p) * 10 + round,
                    Some(format!("round {round}")),
                )
            })
            .collect();
        consumer.commit_offsets_sync(&offsets).await.unwrap();
        drop(consumer);
        broker = support::restart(&dir, broker, clean, fast_groups).await;
        let consumer = Consumer::connect(member_config(&addr, "durable-group", &[])).await.unwrap();
        let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("durable".to_string(), p)).collect();
        let committed = consumer.committed(&partitions).await.unwrap();
        for (tp, offset, metadata) in &offsets {
            let c = committed[tp].as_ref().unwrap();
            assert_eq!((c.offset, Some(c.metadata.clone())), (*offset, metadata.clone()), "clean={clean}");
        }
    }
    // A group with no members can be reset by tools and deleted.
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.alter_group_offsets("durable-group", &[(TopicPartition::new("durable".to_string(), 0), 0)]).await.unwrap();
    let listed = admin.list_group_offsets("durable-group", None).await.unwrap();
    assert_eq!(listed[0].1.as_ref().unwrap().offset, 0);
    let deleted = admin.delete_groups(&["durable-group", "never-was"]).await.unwrap();
    assert!(deleted[0].1.is_ok());
    assert_eq!(deleted[1].1.as_ref().unwrap_err().code(), Some(codes::GROUP_ID_NOT_FOUND));
    assert!(admin.list_group_offsets("durable-group", None).await.unwrap().is_empty());
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_typed_errors() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, SyncGroupRequest};
    use kafka_protocol::protocol::StrBytes;

    let (_dir, broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("bad", 1)).await.unwrap();

    // A group id that is too long, and an empty one.
    let mut consumer = Consumer::connect(member_config(&addr, &"g".repeat(300), &[])).await.unwrap();
    consumer.subscribe(&["bad"]).await.unwrap();
    let e = consumer.poll(Duration::from_millis(100)).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_GROUP_ID), "{e}");
    let e = admin.list_group_offsets("", None).await.unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_GROUP_ID), "{e}");

    // A member of generation 1 commits after the group moved to generation 2.
    let connection = Connection::connect(&addr, ConnectionConfig::default()).await.unwrap();
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("fenced")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range"))])
    };
    let joined = connection.send_version(&join(""), 3).await.unwrap();
    assert_eq!(joined.generation_id, 1);
    let member = joined.member_id.to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(s("fenced")))
        .with_generation_id(1)
        .with_member_id(s(&member));
    assert_eq!(connection.send_version(&sync, 3).await.unwrap().error_code, codes::NONE);
    let rejoined = connection.send_version(&join(&member), 3).await.unwrap();
    assert_eq!(rejoined.generation_id, 2, "the leader rejoining starts a new generation");

    let mut config = ConsumerConfig::new(&addr);
    config.set("group.id", "fenced").unwrap();
    let commit = |generation: i32, member: &str| {
        use kafka_protocol::messages::OffsetCommitRequest;
        use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("fenced")))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(kafka_protocol::messages::TopicName(s("bad")))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1),
                    ]),
            ])
    };
    let code = |r: kafka_protocol::messages::OffsetCommitResponse| r.topics[0].partitions[0].error_code;
    assert_eq!(code(connection.send(&commit(1, &member)).await.unwrap()), codes::ILLEGAL_GENERATION);
    assert_eq!(code(connection.send(&commit(2, "stranger")).await.unwrap()), codes::UNKNOWN_MEMBER_ID);
    assert_eq!(
        code(connection.send(&commit(2, &member)).await.unwrap()),
        codes::REBALANCE_IN_PROGRESS,
        "awaiting sync"
    );

    // The native client maps them to typed errors.
    let e = freshet_log::client::ClientError::from_code(codes::ILLEGAL_GENERATION, "commit", None).unwrap();
    assert!(e.to_string().contains("IllegalGeneration"), "{e}");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_async_commits_pattern_subscriptions_and_lost_partitions() {
    let (_dir, broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    for topic in ["pat-a", "pat-b", "other"] {
        admin.create_topic(NewTopic::new(topic, 2)).await.unwrap();
        produce(&addr, topic, 10).await;
    }

    // A pattern covers the topics that match it, and ones created later.
    let recorder = Recorder::default();
    let config = member_config(
        &addr,
        "auto",
        &[
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "100"),
            ("metadata.max.age.ms", "200"),
            ("max.poll.interval.ms", "1500"),
        ],
    );
    let mut consumer = Consumer::connect(config).await.unwrap();
    consumer.subscribe_pattern("pat-.*", Some(Box::new(recorder.clone()))).await.unwrap();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen < 20 {
        assert!(Instant::now() < deadline, "only {seen} of 20 records");
        seen += consumer.poll(Duration::from_millis(100)).await.unwrap().len();
    }
    let topics: BTreeSet<String> = consumer.assignment().into_iter().map(|tp| tp.topic).collect();
    assert_eq!(topics, BTreeSet::from(["pat-a".to_string(), "pat-b".to_string()]));
    admin.create_topic(NewTopic::new("pat-c", 1)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !consumer.assignment().contains(&TopicPartition::new("pat-c".to_string(), 0)) {
        assert!(Instant::now() < deadline, "the new matching topic was never assigned");
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }

    // Auto-commit: the positions reach the coordinator without an explicit commit.
    let partitions: Vec<TopicPartition> =
        ["pat-a", "pat-b"].iter().flat_map(|t| (0..2).map(move |p| TopicPartition::new(t.to_string(), p))).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        consumer.poll(Duration::from_millis(50)).await.unwrap();
        let committed = consumer.committed(&partitions).await.unwrap();
        let total: i64 = committed.values().map(|c| c.as_ref().map_or(0, |c| c.offset)).sum();
        if total == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "auto-commit did not commit everything: {committed:?}");
    }

    // commit_async resolves once the coordinator has the offsets.
    let tp = TopicPartition::new("pat-a".to_string(), 0);
    consumer.seek(&tp, 1).unwrap();
    consumer.commit_async().unwrap().await.unwrap();
    assert_eq!(consumer.committed(std::slice::from_ref(&tp)).await.unwrap()[&tp].as_ref().unwrap().offset, 1);

    // Not polling for longer than max.poll.interval.ms: the member leaves the group, and
    // the next poll reports its partitions lost before it rejoins.
    let events_before = recorder.0.lock().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    consumer.poll(Duration::from_millis(100)).await.unwrap();
    let events = recorder.0.lock()[events_before..].to_vec();
    assert_eq!(
        events.first().map(|(kind, _)| *kind),
        Some("revoked"),
        "lost is reported (as revoked by default): {events:?}"
    );
    assert!(!consumer.assignment().is_empty(), "and the member is back in the group");
    consumer.close().await.unwrap();
    broker.shutdown().await.unwrap();
}

/// Gives every partition to the member whose user data sorts first, and tells each member
/// in its assignment's user data how many members there were.
#[derive(Debug)]
struct FirstTakesAll {
    label: &'static str,
    heard: Mutex<Vec<(Vec<TopicPartition>, String, i32)>>,
}

impl freshet_log::client::GroupAssignor for FirstTakesAll {
    fn name(&self) -> &str {
        "first-takes-all"
    }

    fn subscription_user_data(&self) -> bytes::Bytes {
        bytes::Bytes::from_static(self.label.as_bytes())
    }

    fn assign(
        &self,
        members: &[freshet_log::client::MemberSubscription],
        partitions: &BTreeMap<String, i32>,
    ) -> freshet_log::client::Result<BTreeMap<String, freshet_log::client::GroupAssignment>> {
        let first = members.iter().min_by_key(|m| m.user_data.clone()).unwrap();
        let all: Vec<TopicPartition> =
            partitions.iter().flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t.clone(), p))).collect();
        let note = bytes::Bytes::from(format!("{} members", members.len()));
        Ok(members
            .iter()
            .map(|m| {
                let mine = if m.member_id == first.member_id { all.clone() } else { Vec::new() };
                (
                    m.member_id.clone(),
                    freshet_log::client::GroupAssignment { partitions: mine, user_data: note.clone() },
                )
            })
            .collect())
    }

    fn on_assignment(&self, assignment: &freshet_log::client::GroupAssignment, generation: i32) {
        let note = String::from_utf8(assignment.user_data.to_vec()).unwrap();
        self.heard.lock().push((assignment.partitions.clone(), note, generation));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_group_assignor_sees_user_data_both_ways() {
    let (_dir, broker, addr) = support::start_with(fast_groups).await;
    let admin = AdminClient::connect(ClientConfig::new(&addr)).await.unwrap();
    admin.create_topic(NewTopic::new("custom", 3)).await.unwrap();
    let a = Arc::new(FirstTakesAll { label: "a", heard: Mutex::new(Vec::new()) });
    let b = Arc::new(FirstTakesAll { label: "b", heard: Mutex::new(Vec::new()) });
    let stop = Arc::new(AtomicBool::new(false));
    let owned = Arc::new(Mutex::new(BTreeMap::new()));
    let mut members = Vec::new();
    for (i, assignor) in [b.clone(), a.clone()].into_iter().enumerate() {
        let mut config = member_config(&addr, "custom-group", &[]);
        config.group_assignor = Some(assignor);
        let (stop, owned) = (stop.clone(), owned.clone());
        members.push(tokio::spawn(async move {
            let mut consumer = Consumer::connect(config).await.unwrap();
            consumer.subscribe(&["custom"]).await.unwrap();
            while !stop.load(Ordering::SeqCst) {
                consumer.poll(Duration::from_millis(50)).await.unwrap();
                owned.lock().insert(i, consumer.assignment().len());
            }
            consumer.close().await.unwrap();
        }));
    }
    let settled = |x: &FirstTakesAll| x.heard.lock().last().map(|(_, note, generation)| (note.clone(), *generation));
    wait_for(Duration::from_secs(20), "both members to hear one assignment of two members", || {
        let (sa, sb) = (settled(&a), settled(&b));
        sa.is_some() && sa == sb && sa.as_ref().is_some_and(|(note, _)| note == "2 members")
    })
    .await;
    assert_eq!(a.heard.lock().last().unwrap().0.len(), 3, "'a' sorts first and takes every partition");
    assert!(b.heard.lock().last().unwrap().0.is_empty());
    wait_for(Duration::from_secs(5), "the consumers to apply the assignment", || {
        *owned.lock() == BTreeMap::from([(0, 0), (1, 3)])
    })
    .await;
    let described = admin.describe_groups(&["custom-group"]).await.unwrap().remove(0);
    assert_eq!(described.protocol, "first-takes-all");
    stop.store(true, Ordering::SeqCst);
    for m in members {
        m.await.unwrap();
    }
    broker.shutdown().await.unwrap();
}
