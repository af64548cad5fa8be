//! Three brokers in combined mode (`process.roles=broker,controller`) on loopback, each with
//! its own data directory and ephemeral ports: they form one controller quorum, forward
//! admin requests to the active controller, and replicate a topic of replication factor 3
//! with `min.insync.replicas=2`. When the leader stops, the others elect a new leader from
//! the ISR and no acknowledged record is lost. Every wait is bounded.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use freshet_log::TopicPartition;
use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::client::{AdminClient, ClientConfig, Consumer, ConsumerConfig, ElectionType, NewTopic};
use freshet_log::server::{RunningBroker, RunningController};
use support::orders::{consume_all, produce};
use support::{free_ports, init_tracing};

const WAIT: Duration = Duration::from_secs(30);

struct Node {
    config: BrokerConfig,
    running: Option<RunningBroker>,
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<i32, Node>,
}

impl Cluster {
    /// Three combined nodes; `Broker::start` of each waits for a quorum, so they start
    /// together.
    async fn start() -> Self {
        let (clients, controllers) = (free_ports(3), free_ports(3));
        let voters: Vec<String> = (0..3).map(|i| format!("{}@{}", i + 1, controllers[i])).collect();
        let voters = voters.join(",");
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut configs = BTreeMap::new();
        for i in 0..3 {
            let mut config = BrokerConfig::embedded(dirs[i].path());
            config.auto_create_topics = false;
            let listeners = format!("PLAINTEXT://{},CONTROLLER://{}", clients[i], controllers[i]);
            for (key, value) in [
                ("node.id", (i + 1).to_string()),
                ("listeners", listeners),
                ("controller.quorum.voters", voters.clone()),
                ("broker.session.timeout.ms", "2000".into()),
                ("broker.heartbeat.interval.ms", "200".into()),
                ("replica.lag.time.max.ms", "3000".into()),
            ] {
                config.set(key, &value).unwrap();
            }
            configs.insert(i as i32 + 1, config);
        }
        let starting: Vec<_> = configs.values().cloned().map(|c| tokio::spawn(Broker::start(c))).collect();
        let mut nodes = BTreeMap::new();
        for ((id, config), start) in configs.into_iter().zip(starting) {
            let running = tokio::time::timeout(WAIT, start).await.expect("started in time").unwrap().unwrap();
            nodes.insert(id, Node { config, running: Some(running) });
        }
        Self { _dirs: dirs, nodes }
    }

    fn bootstrap(&self) -> String {
        let addrs: Vec<String> =
            self.nodes.values().filter_map(|n| n.running.as_ref()).map(|r| r.local_addr().to_string()).collect();
        addrs.join(",")
    }

    fn broker(&self, id: i32) -> &std::sync::Arc<Broker> {
        self.nodes[&id].running.as_ref().unwrap().broker()
    }

    fn live(&self) -> impl Iterator<Item = &std::sync::Arc<Broker>> {
        self.nodes.values().filter_map(|n| n.running.as_ref().map(|r| r.broker()))
    }

    async fn stop(&mut self, id: i32) {
        let running = self.nodes.get_mut(&id).unwrap().running.take().unwrap();
        running.shutdown().await.unwrap();
    }

    async fn restart(&mut self, id: i32) {
        let config = self.nodes[&id].config.clone();
        let running = tokio::time::timeout(WAIT, Broker::start(config)).await.expect("restarted in time").unwrap();
        self.nodes.get_mut(&id).unwrap().running = Some(running);
    }

    async fn shutdown(mut self) {
        for node in self.nodes.values_mut() {
            if let Some(running) = node.running.take() {
                running.shutdown().await.unwrap();
            }
        }
    }
}

/// Waits until `check` holds, at most [`WAIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_orders(cluster: &Cluster, tp: &TopicPartition) -> AdminClient {
    let admin = AdminClient::connect(ClientConfig::new(&cluster.bootstrap())).await.unwrap();
    admin
        .create_topic(NewTopic::new("orders", 1).replication_factor(3).config("min.insync.replicas", "2"))
        .await
        .unwrap();
    eventually("every broker holds a replica", || cluster.live().all(|b| b.replica_manager().partition(tp).is_some()))
        .await;
    admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_combined_nodes_replicate_and_survive_the_loss_of_the_leader() {
    init_tracing();
    let mut cluster = Cluster::start().await;
    let tp = TopicPartition::new("orders", 0);

    // Created through a broker that is not the active controller: forwarded.
    let leader_of_quorum = cluster.broker(1).quorum().leader().unwrap() as i32;
    let other = (1..=3).find(|id| *id != leader_of_quorum).unwrap();
    let admin_addr = cluster.nodes[&other].running.as_ref().unwrap().local_addr().to_string();
    let admin = AdminClient::connect(ClientConfig::new(&admin_addr)).await.unwrap();
    admin
        .create_topic(NewTopic::new("orders", 1).replication_factor(3).config("min.insync.replicas", "2"))
        .await
        .unwrap();
    eventually("every broker holds a replica", || cluster.live().all(|b| b.replica_manager().partition(&tp).is_some()))
        .await;

    let bootstrap = cluster.bootstrap();
    produce(&bootstrap, 0, 200).await;
    eventually("the followers caught up", || {
        cluster.live().all(|b| b.replica_manager().partition(&tp).unwrap().log().read().log_end_offset() == 200)
    })
    .await;
    let leader = cluster.broker(1).partition(&tp).unwrap().leader;
    let reg = cluster.broker(leader).replica_manager().partition(&tp).unwrap().registration().unwrap();
    assert_eq!(reg.isr.len(), 3, "{reg:?}");
    assert_eq!(cluster.broker(leader).replica_manager().partition(&tp).unwrap().high_watermark(), 200);

    // The leader stops; a new one is elected from the ISR, in a newer epoch, and takes
    // acks=all writes with the two replicas left.
    cluster.stop(leader).await;
    let survivor = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    eventually("a new leader is elected", || {
        cluster.broker(survivor).partition(&tp).is_some_and(|p| p.has_leader() && p.leader != leader)
    })
    .await;
    let bootstrap = cluster.bootstrap();
    let admin = AdminClient::connect(ClientConfig::new(&bootstrap)).await.unwrap();
    let described = admin.describe_topics(&["orders"]).await.unwrap();
    let partition = &described[0].partitions[0];
    assert_eq!(partition.offline_replicas, vec![leader], "Metadata lists the stopped broker as offline: {partition:?}");
    assert!(!partition.isr.contains(&leader), "{partition:?}");
    produce(&bootstrap, 200, 300).await;
    let values = consume_all(&bootstrap, 300).await;
    let expected: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected, "every acknowledged record, once, in order");

    // The old leader comes back as a follower, catches up and rejoins the ISR.
    cluster.restart(leader).await;
    eventually("the restarted broker caught up", || {
        cluster.broker(leader).replica_manager().partition(&tp).is_some_and(|p| p.log().read().log_end_offset() == 300)
    })
    .await;
    eventually("it is back in the ISR", || {
        cluster.broker(survivor).partition(&tp).is_some_and(|p| p.isr.contains(&leader))
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_left_behind_the_leaders_log_start_starts_afresh_and_catches_up() {
    init_tracing();
    let mut cluster = Cluster::start().await;
    let tp = TopicPartition::new("orders", 0);
    let admin = create_orders(&cluster, &tp).await;
    produce(&cluster.bootstrap(), 0, 100).await;
    let leader = cluster.broker(1).partition(&tp).unwrap().leader;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop(follower).await;

    // While it is away the leader's log moves on and its start passes the follower's end.
    produce(&cluster.bootstrap(), 100, 200).await;
    let deleted = admin.delete_records(&[(tp.clone(), 150)]).await.unwrap();
    assert_eq!(deleted[0].1.as_ref().unwrap(), &150, "{deleted:?}");
    cluster.restart(follower).await;
    eventually("the follower starts afresh at the leader's log start and catches up", || {
        let replica = cluster.broker(follower).replica_manager().partition(&tp);
        replica.is_some_and(|p| {
            let log = p.log().read();
            log.log_start_offset() == 150 && log.log_end_offset() == 200
        })
    })
    .await;
    eventually("it is back in the ISR", || cluster.broker(leader).partition(&tp).is_some_and(|p| p.isr.len() == 3))
        .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_loss_of_the_group_coordinator() {
    init_tracing();
    let mut cluster = Cluster::start().await;
    let tp = TopicPartition::new("orders", 0);
    create_orders(&cluster, &tp).await;
    let member = |bootstrap: &str| {
        let mut config = ConsumerConfig::new(bootstrap);
        config.set_all([("group.id", "billing"), ("enable.auto.commit", "false")]).unwrap();
        config
    };
    let mut consumer = Consumer::connect(member(&cluster.bootstrap())).await.unwrap();
    consumer.commit_offsets_sync(&[(tp.clone(), 42, Some("first".into()))]).await.unwrap();
    drop(consumer);

    // The coordinator is the leader of the group's __consumer_offsets partition; it stops,
    // and the new leader of that partition loads the group.
    let offsets_partitions = cluster.broker(1).topic("__consumer_offsets").unwrap().partitions;
    let group_partition = freshet_log::broker::group::coordinator::partition_for("billing", offsets_partitions);
    let offsets_tp = TopicPartition::new("__consumer_offsets", group_partition);
    let coordinator = cluster.broker(1).partition(&offsets_tp).unwrap().leader;
    cluster.stop(coordinator).await;
    let consumer = Consumer::connect(member(&cluster.bootstrap())).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let committed = loop {
        match consumer.committed(std::slice::from_ref(&tp)).await {
            Ok(committed) => break committed,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(error = %e, "the new coordinator is not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the committed offsets were not found on the new coordinator: {e}"),
        }
    };
    let offset = committed[&tp].as_ref().expect("the offset survived");
    assert_eq!((offset.offset, offset.metadata.as_str()), (42, "first"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_broker_describes_the_quorum_and_a_stopped_voter_falls_behind_then_catches_up() {
    init_tracing();
    let mut cluster = Cluster::start().await;
    let leader = cluster.broker(1).quorum().leader().unwrap() as i32;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let addr = |cluster: &Cluster, id: i32| cluster.nodes[&id].running.as_ref().unwrap().local_addr().to_string();
    // Asked through a broker that is not the active controller: forwarded to it.
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    let admin = AdminClient::connect(ClientConfig::new(&addr(&cluster, other))).await.unwrap();
    let quorum = quorum_where(&admin, "every voter caught up", |q| q.voters.iter().all(|v| q.lag(v) == Some(0))).await;
    assert_eq!(quorum.leader_id, leader);
    assert!(quorum.leader_epoch >= 1, "{quorum:?}");
    assert_eq!(quorum.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(quorum.observers.is_empty(), "{quorum:?}");
    assert!(quorum.high_watermark > 0, "{quorum:?}");
    assert_eq!(quorum.voter_addresses.len(), 3, "v2 lists the voters' controller listeners: {quorum:?}");

    // A stopped voter misses what the others commit.
    cluster.stop(follower).await;
    admin.create_topic(NewTopic::new("while-away", 1).replication_factor(2)).await.unwrap();
    let behind = quorum_where(&admin, "the stopped voter lags", |q| {
        q.voters.iter().any(|v| v.node_id == follower && q.lag(v).is_some_and(|l| l > 0))
    })
    .await;
    let stopped = behind.voters.iter().find(|v| v.node_id == follower).unwrap();
    let leader_seen = behind.voters.iter().find(|v| v.node_id == leader).unwrap();
    assert!(stopped.last_caught_up_ms < leader_seen.last_caught_up_ms, "{behind:?}");
    assert!(behind.high_watermark > quorum.high_watermark, "{behind:?} after {quorum:?}");

    cluster.restart(follower).await;
    quorum_where(&admin, "the restarted voter caught up", |q| q.voters.iter().all(|v| q.lag(v) == Some(0))).await;

    // The nodes formatted themselves alike: one cluster id, whichever node is asked.
    let mut ids = Vec::new();
    for id in 1..=3 {
        let one = AdminClient::connect(ClientConfig::new(&addr(&cluster, id))).await.unwrap();
        ids.push(one.describe_cluster().await.unwrap().cluster_id);
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");

    // A node whose directory says another cluster is refused at start, and told why.
    cluster.stop(follower).await;
    let meta = cluster.nodes[&follower].config.data_dir().join("meta.properties");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, text.replace(&format!("cluster.id={}", ids[0]), "cluster.id=AnotherClusterAAAAAAAAAA"))
        .unwrap();
    let config = cluster.nodes[&follower].config.clone();
    let refused = tokio::time::timeout(WAIT, Broker::start(config)).await.expect("refused in time");
    let message = refused.expect_err("a node of another cluster must not start").to_string();
    assert!(message.contains("AnotherClusterAAAAAAAAAA") && message.contains(&ids[0]), "{message}");
    std::fs::write(&meta, text).unwrap();
    cluster.restart(follower).await;
    cluster.shutdown().await;
}

/// Describes the quorum until `check` holds, at most [`WAIT`].
async fn quorum_where(
    admin: &AdminClient,
    what: &str,
    check: impl Fn(&freshet_log::client::QuorumInfo) -> bool,
) -> freshet_log::client::QuorumInfo {
    let deadline = Instant::now() + WAIT;
    loop {
        let quorum = admin.describe_quorum().await.unwrap();
        if check(&quorum) {
            return quorum;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}: {quorum:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Voters 1 and 2 are combined nodes and 3 a dedicated controller; node 4 is broker-only,
/// following the metadata log as an observer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_controller_and_a_broker_only_node_join_two_combined_nodes() {
    init_tracing();
    let (clients, controllers) = (free_ports(4), free_ports(4));
    let voters: Vec<String> = (0..3).map(|i| format!("{}@{}", i + 1, controllers[i])).collect();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let config = |i: usize| {
        let mut config = BrokerConfig::embedded(dirs[i].path());
        let (roles, listeners) = match i {
            2 => ("controller", format!("CONTROLLER://{}", controllers[i])),
            3 => ("broker", format!("PLAINTEXT://{},CONTROLLER://{}", clients[i], controllers[i])),
            _ => ("broker,controller", format!("PLAINTEXT://{},CONTROLLER://{}", clients[i], controllers[i])),
        };
        for (key, value) in [
            ("node.id", (i + 1).to_string()),
            ("process.roles", roles.into()),
            ("listeners", listeners),
            ("controller.quorum.voters", voters.join(",")),
            ("broker.session.timeout.ms", "2000".into()),
            ("broker.heartbeat.interval.ms", "200".into()),
        ] {
            config.set(key, &value).unwrap();
        }
        config
    };
    let dedicated = tokio::spawn(RunningController::start(config(2)));
    let brokers: Vec<_> = [0, 1, 3].into_iter().map(|i| tokio::spawn(Broker::start(config(i)))).collect();
    let dedicated = tokio::time::timeout(WAIT, dedicated).await.unwrap().unwrap().unwrap();
    let mut running = Vec::new();
    for broker in brokers {
        running.push(tokio::time::timeout(WAIT, broker).await.expect("started in time").unwrap().unwrap());
    }

    // The active controller moves to the node that has no broker, and still decides.
    dedicated.quorum().trigger_election().await.unwrap();
    eventually("the dedicated controller leads", || dedicated.quorum().leader() == Some(3)).await;
    let bootstrap = running.iter().map(|r| r.local_addr().to_string()).collect::<Vec<_>>().join(",");
    let admin = AdminClient::connect(ClientConfig::new(&bootstrap)).await.unwrap();
    let quorum = admin.describe_quorum().await.unwrap();
    assert_eq!(quorum.leader_id, 3);
    assert_eq!(quorum.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(quorum.observers.iter().map(|o| o.node_id).collect::<Vec<_>>(), vec![4], "{quorum:?}");
    let brokers = admin.describe_cluster().await.unwrap().brokers;
    assert_eq!(brokers.iter().map(|b| b.node_id).collect::<Vec<_>>(), vec![1, 2, 4], "the controller is no broker");
    admin
        .create_topic(NewTopic::new("orders", 1).replication_factor(3).config("min.insync.replicas", "2"))
        .await
        .unwrap();
    let err = admin.create_topic(NewTopic::new("wide", 1).replication_factor(4)).await.unwrap_err();
    assert_eq!(err.code(), Some(freshet_log::codes::INVALID_REPLICATION_FACTOR));
    produce(&bootstrap, 0, 100).await;

    // The broker that leads the partition stops; the dedicated controller moves the
    // leadership to another, which goes on taking acks=all writes.
    let tp = TopicPartition::new("orders", 0);
    let leader = running[0].broker().partition(&tp).unwrap().leader;
    let position = running.iter().position(|r| r.broker().config().node_id == leader).unwrap();
    running.remove(position).shutdown().await.unwrap();
    eventually("another broker leads", || running[0].broker().partition(&tp).is_some_and(|p| p.leader != leader)).await;
    let bootstrap = running.iter().map(|r| r.local_addr().to_string()).collect::<Vec<_>>().join(",");
    produce(&bootstrap, 100, 150).await;
    let values = consume_all(&bootstrap, 150).await;
    assert_eq!(values, (0..150).map(|i| format!("v{i}")).collect::<Vec<_>>());
    for broker in running {
        broker.shutdown().await.unwrap();
    }
    dedicated.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moves_to_other_brokers_while_producers_write_and_its_leader_is_elected_back() {
    init_tracing();
    let cluster = Cluster::start().await;
    let tp = TopicPartition::new("orders", 0);
    let admin = AdminClient::connect(ClientConfig::new(&cluster.bootstrap())).await.unwrap();
    admin.create_topic(NewTopic::new("orders", 1).replication_factor(1)).await.unwrap();
    let bootstrap = cluster.bootstrap();
    produce(&bootstrap, 0, 2_000).await;
    let old = admin.describe_topics(&["orders"]).await.unwrap()[0].partitions[0].replicas.clone();
    assert_eq!(old.len(), 1);
    let target: Vec<i32> = (1..=3).filter(|b| !old.contains(b)).collect();

    // Moved while a producer keeps writing with acks=all.
    let writer = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move { produce(&bootstrap, 2_000, 4_000).await }
    });
    let wanted = [(tp.clone(), Some(target.clone()))];
    let refused = admin.alter_partition_reassignments(&wanted, false).await.unwrap();
    assert_eq!(
        refused[0].1.as_ref().unwrap_err().code(),
        Some(38),
        "KIP-860: the replica count is kept unless allowed"
    );
    let started = admin.alter_partition_reassignments(&wanted, true).await.unwrap();
    assert!(started.iter().all(|(_, r)| r.is_ok()), "{started:?}");
    let deadline = Instant::now() + WAIT;
    while !admin.list_partition_reassignments(None).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the reassignment did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::timeout(WAIT, writer).await.expect("the producer finished").unwrap();
    let moved = &admin.describe_topics(&["orders"]).await.unwrap()[0].partitions[0];
    assert_eq!((moved.replicas.clone(), moved.leader), (target.clone(), target[0]), "{moved:?}");
    eventually("the old broker deleted its replica", || {
        cluster.broker(old[0]).replica_manager().partition(&tp).is_none()
            && cluster.broker(old[0]).log_manager().get_log(&tp).is_none()
    })
    .await;
    let values = consume_all(&cluster.bootstrap(), 4_000).await;
    let expected: Vec<String> = (0..4_000).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected, "every acknowledged record, once, in order");

    // A reorder moves no data and no leader; a preferred election then moves the leader.
    let reordered = vec![target[1], target[0]];
    let out = admin.alter_partition_reassignments(&[(tp.clone(), Some(reordered.clone()))], false).await.unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    eventually("the reorder is in the metadata", || {
        cluster.broker(target[0]).partition(&tp).is_some_and(|p| p.replicas == reordered)
    })
    .await;
    eventually("both replicas are in sync", || {
        cluster.broker(target[0]).partition(&tp).is_some_and(|p| p.isr.len() == 2)
    })
    .await;
    let elected = admin.elect_leaders(ElectionType::Preferred, Some(std::slice::from_ref(&tp))).await.unwrap();
    assert!(elected[0].1.is_ok(), "{elected:?}");
    eventually("the preferred replica leads", || {
        cluster.broker(target[0]).partition(&tp).is_some_and(|p| p.leader == reordered[0])
    })
    .await;
    let again = admin.elect_leaders(ElectionType::Preferred, Some(std::slice::from_ref(&tp))).await.unwrap();
    assert_eq!(again[0].1.as_ref().unwrap_err().code(), Some(84), "ELECTION_NOT_NEEDED");
    assert!(admin.elect_leaders(ElectionType::Preferred, None).await.unwrap().is_empty());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_data_directory_was_wiped_rejoins_and_re_replicates_from_the_leaders() {
    init_tracing();
    let mut cluster = Cluster::start().await;
    let tp = TopicPartition::new("orders", 0);
    create_orders(&cluster, &tp).await;
    produce(&cluster.bootstrap(), 0, 300).await;
    let leader = cluster.broker(1).partition(&tp).unwrap().leader;
    let quorum_leader = cluster.broker(1).quorum().leader().unwrap() as i32;
    let wiped = (1..=3).find(|id| *id != leader && *id != quorum_leader).unwrap();
    let dir = cluster.nodes[&wiped].config.data_dir().to_path_buf();
    cluster.stop(wiped).await;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) }.unwrap();
    }
    produce(&cluster.bootstrap(), 300, 400).await;

    // It formats itself again (the same cluster id, derived from the voters), follows
    // the metadata log from the others, and fetches every partition it holds afresh.
    cluster.restart(wiped).await;
    eventually("the wiped node re-replicated the partition", || {
        cluster.broker(wiped).replica_manager().partition(&tp).is_some_and(|p| p.log().read().log_end_offset() == 400)
    })
    .await;
    eventually("it is back in the ISR", || cluster.broker(leader).partition(&tp).is_some_and(|p| p.isr.len() == 3))
        .await;
    assert!(dir.join("meta.properties").exists());
    let values = consume_all(&cluster.bootstrap(), 400).await;
    assert_eq!(values, (0..400).map(|i| format!("v{i}")).collect::<Vec<_>>());
    cluster.shutdown().await;
}
