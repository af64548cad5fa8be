//! The controller quorum over real TCP on loopback: three voters elect a leader, replicate
//! metadata records, fail over when the leader stops, catch a restarted voter up from its
//! log, and a wiped one from a snapshot. Every wait is bounded.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use freshet_log::controller::quorum::{MetadataQuorum, QuorumConfig, QuorumError};
use freshet_log::controller::records::{MetadataRecord, RegisterBrokerRecord};
use support::{free_ports, init_tracing};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn config(id: u64, voters: &BTreeMap<u64, SocketAddr>, root: &Path, snapshot_every: u64) -> QuorumConfig {
    QuorumConfig {
        node_id: id,
        voters: voters.clone(),
        dir: root.join(format!("node-{id}")),
        heartbeat_ms: 50,
        snapshot_every_entries: snapshot_every,
        listen: None,
        cluster_id: "test-cluster".into(),
    }
}

fn register(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker(RegisterBrokerRecord {
        broker_id: id,
        incarnation_id: Uuid::from_u128(id as u128),
        broker_epoch: 0,
        rack: None,
        endpoints: Vec::new(),
    })
}

/// Appends through whichever node leads, retrying while leadership settles.
async fn append(nodes: &BTreeMap<u64, MetadataQuorum>, records: Vec<MetadataRecord>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for node in nodes.values() {
            match node.append(records.clone()).await {
                Ok(_) => return,
                Err(QuorumError::NotController { .. }) => {}
                Err(e) => panic!("append failed: {e}"),
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader accepted the append");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_offset(node: &MetadataQuorum, offset: i64) {
    let mut committed = node.committed_offset();
    let reached = tokio::time::timeout(WAIT, committed.wait_for(|o| *o >= offset)).await.is_ok();
    assert!(reached, "node {} stayed at offset {}", node.node_id(), *committed.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_commits_at_once_and_replays_its_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let quorum = MetadataQuorum::start(QuorumConfig::single_node(1, dir.path())).await.unwrap();
    quorum.append(vec![register(1), register(2)]).await.unwrap();
    assert_eq!(quorum.image().brokers.len(), 2);
    let before = quorum.image();
    quorum.shutdown().await;

    let quorum = MetadataQuorum::start(QuorumConfig::single_node(1, dir.path())).await.unwrap();
    wait_for_offset(&quorum, before.offset).await;
    assert_eq!(quorum.image(), before);
    quorum.append(vec![register(3)]).await.unwrap();
    assert_eq!(quorum.image().offset, 2);
    // Its own leader and only voter, holding every entry it wrote (its applied end may
    // trail its log end for a moment).
    let described = quorum.describe().unwrap();
    assert_eq!((described.leader_id, described.voters.len()), (1, 1));
    let own = described.leader().unwrap();
    assert!(own.log_end_offset >= described.high_watermark && described.high_watermark >= 3, "{described:?}");
    assert!(own.last_caught_up_ms > 0, "{described:?}");
    quorum.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_fail_over_and_catch_up() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<u64, SocketAddr> = (1..=3).zip(free_ports(3)).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, MetadataQuorum::start(config(id, &voters, dir.path(), 8)).await.unwrap());
    }
    let leader = nodes[&1].wait_for_leader(WAIT).await.expect("a leader");
    assert_eq!(nodes[&1].voters().len(), 3);

    for id in 0..20 {
        append(&nodes, vec![register(id)]).await;
    }
    for node in nodes.values() {
        wait_for_offset(node, 19).await;
    }
    let image = nodes[&1].image();
    assert!(nodes.values().all(|n| n.image() == image), "the voters agree");
    for (id, node) in &nodes {
        match node.describe() {
            Ok(described) => assert_eq!((*id, described.voters.len()), (leader, 3)),
            Err(QuorumError::NotController { leader: known }) => assert_eq!(known, Some(leader)),
            Err(e) => panic!("describe on node {id}: {e}"),
        }
    }

    // The leader stops: the other two elect a new one and keep committing.
    nodes.remove(&leader).unwrap().shutdown().await;
    let survivor = nodes.values().next().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while survivor.leader().is_none_or(|l| l == leader) {
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    append(&nodes, vec![register(100)]).await;

    // The old leader restarts from its log and catches up.
    nodes.insert(leader, MetadataQuorum::start(config(leader, &voters, dir.path(), 8)).await.unwrap());
    for node in nodes.values() {
        wait_for_offset(node, 20).await;
    }

    // A voter whose directory was wiped catches up from a snapshot: the others purged the
    // entries it would need.
    let wiped = *nodes.keys().find(|id| Some(**id) != nodes[&leader].leader()).unwrap();
    nodes.remove(&wiped).unwrap().shutdown().await;
    std::fs::remove_dir_all(dir.path().join(format!("node-{wiped}"))).unwrap();
    for id in 200..230 {
        append(&nodes, vec![register(id)]).await;
    }
    nodes.insert(wiped, MetadataQuorum::start(config(wiped, &voters, dir.path(), 8)).await.unwrap());
    for node in nodes.values() {
        wait_for_offset(node, 50).await;
    }
    let image = nodes[&wiped].image();
    assert_eq!(image.brokers.len(), 51);
    assert!(nodes.values().all(|n| n.image() == image), "the voters agree again");
    assert!(dir.path().join(format!("node-{wiped}")).join("metadata-snapshot").exists());
    for (_, node) in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_formatted_for_another_cluster_is_refused_and_told_why() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<u64, SocketAddr> = (1..=3).zip(free_ports(3)).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=2 {
        nodes.insert(id, MetadataQuorum::start(config(id, &voters, dir.path(), 100)).await.unwrap());
    }
    let stranger = QuorumConfig { cluster_id: "another-cluster".into(), ..config(3, &voters, dir.path(), 100) };
    let stranger = MetadataQuorum::start(stranger).await.unwrap();
    append(&nodes, vec![register(1)]).await;

    let deadline = tokio::time::Instant::now() + WAIT;
    let conflict = loop {
        if let Some(conflict) = stranger.cluster_conflict() {
            break conflict;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stranger never learned why it is refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(conflict.contains("test-cluster") && conflict.contains("another-cluster"), "{conflict}");
    assert!(stranger.image().brokers.is_empty(), "it took nothing from the other cluster");
    assert!(stranger.leader().is_none_or(|l| l != 3), "it leads nobody");
    // The two that agree refused one peer only: their mistake is not theirs.
    assert!(nodes.values().all(|n| n.cluster_conflict().is_none()));

    // A controller request that names another cluster is refused the same way.
    let client = freshet_log::controller::quorum::network::ControllerClient::new(None, "another-cluster");
    let request = freshet_log::controller::ControllerRequest::DescribeQuorum;
    let err = client.call(voters[&1], request, WAIT).await.unwrap_err();
    assert!(matches!(err, QuorumError::InconsistentClusterId(_)), "{err}");
    assert_eq!(err.code(), freshet_log::codes::INCONSISTENT_CLUSTER_ID);
    stranger.shutdown().await;
    for (_, node) in nodes {
        node.shutdown().await;
    }
}

mod controller_service {
    use std::sync::Arc;

    use freshet_log::codes;
    use freshet_log::controller::quorum::network::{ControllerClient, ControllerHandler};
    use freshet_log::controller::service::ControllerService;
    use freshet_log::controller::{BrokerHeartbeat, ControllerConfig, ControllerOutput, CreateTopic, RegisterBroker};
    use freshet_log::controller::{ControllerReply, ControllerRequest};
    use freshet_log::time::SystemClock;

    use super::*;

    fn service(quorum: MetadataQuorum) -> Arc<ControllerService> {
        let config = ControllerConfig { session_timeout_ms: 600, ..ControllerConfig::default() };
        let service = Arc::new(ControllerService::new(Arc::new(quorum), config, Arc::new(SystemClock)));
        let handler: Arc<dyn ControllerHandler> = service.clone();
        service.quorum().serve_controller(Arc::downgrade(&handler));
        service
    }

    async fn on_leader<T>(
        services: &BTreeMap<u64, Arc<ControllerService>>,
        request: impl Fn(&mut freshet_log::controller::QuorumController, i64) -> ControllerOutput<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for s in services.values() {
                match s.run(&request).await {
                    Ok((reply, _offset)) => return reply,
                    Err(e) => assert_eq!(e.code(), codes::NOT_CONTROLLER, "{e}"),
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no active controller");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn registration(id: i32) -> RegisterBroker {
        RegisterBroker {
            broker_id: id,
            incarnation_id: Uuid::from_u128(id as u128),
            rack: None,
            endpoints: Vec::new(),
            previous_broker_epoch: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_active_controller_moves_with_the_quorum_and_keeps_deciding() {
        let dir = tempfile::tempdir().unwrap();
        let voters: BTreeMap<u64, SocketAddr> = (1..=3).zip(free_ports(3)).collect();
        let mut services = BTreeMap::new();
        for id in 1..=3 {
            services.insert(id, service(MetadataQuorum::start(config(id, &voters, dir.path(), 1_000)).await.unwrap()));
        }
        let mut epochs = BTreeMap::new();
        for id in 1..=3 {
            let epoch = on_leader(&services, |c, now| c.register_broker(registration(id), now)).await.unwrap();
            epochs.insert(id, epoch);
            let beat =
                BrokerHeartbeat { broker_id: id, broker_epoch: epoch, metadata_offset: i64::MAX, want_shutdown: false };
            on_leader(&services, |c, now| c.heartbeat(beat, now)).await.unwrap();
        }
        let create = |c: &mut freshet_log::controller::QuorumController, _| {
            let req = CreateTopic {
                name: "orders".into(),
                topic_id: Uuid::from_u128(77),
                partitions: Some(3),
                replication_factor: Some(3),
                configs: Vec::new(),
                assignments: Vec::new(),
            };
            c.create_topic(req)
        };
        on_leader(&services, create).await.unwrap();

        // Over the controller listener: a follower refuses and names the leader; the
        // leader answers, with the offset of the records it wrote.
        let leader = services[&1].quorum().wait_for_leader(WAIT).await.unwrap();
        let follower = services.keys().copied().find(|id| *id != leader).unwrap();
        let client = ControllerClient::new(None, "test-cluster");
        let request = || ControllerRequest::CreatePartitions { name: "orders".into(), count: 4 };
        let err = client.call(voters[&follower], request(), WAIT).await.unwrap_err();
        assert!(matches!(err, QuorumError::NotController { leader: Some(l) } if l == leader), "{err}");
        let answer = client.call(voters[&leader], request(), WAIT).await.unwrap();
        assert_eq!(answer.reply, Ok(ControllerReply::Done));
        assert_eq!(answer.metadata_offset, services[&leader].quorum().image_offset());
        let again = client.call(voters[&leader], request(), WAIT).await.unwrap();
        assert_eq!(again.reply.unwrap_err().code(), codes::INVALID_PARTITIONS, "reused connection, refused request");
        assert_eq!(services[&leader].quorum().image().topic("orders").unwrap().partitions.len(), 4);

        let refused =
            services[&follower].run(|c, now| ControllerOutput { records: c.tick(now), reply: () }).await.unwrap_err();
        assert_eq!(refused.code(), codes::NOT_CONTROLLER);

        // The leader's node stops; the new active controller has the topic, gives the
        // brokers fresh sessions, and fences the ones that then stay silent.
        services.remove(&leader).unwrap().quorum().shutdown().await;
        let again = on_leader(&services, create).await.unwrap_err();
        assert_eq!(again.code(), codes::TOPIC_ALREADY_EXISTS);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for s in services.values() {
                s.tick().await.unwrap();
            }
            let image = services.values().next().unwrap().quorum().image();
            if image.brokers.values().all(|b| b.fenced) {
                let topic = image.topic("orders").unwrap();
                assert!(topic.partitions.values().all(|p| !p.has_leader()), "{topic:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "silent brokers were never fenced");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
