//! A partition leader cut off from the rest of the cluster, as a network partition would
//! do it: three combined nodes, each on its own loopback address, each behind proxies that
//! it advertises (`advertised.listeners`, and the voters' addresses). A proxy drops the
//! connections of a node by their source address, so the nodes lose each other while
//! clients on 127.0.0.1 still reach every node.
//!
//! Cut off, the leader still takes an `acks=1` write alone, but not an `acks=all` one; the
//! others fence it, elect a new leader from the ISR and take `acks=all` writes. Healed, the
//! old leader learns of the newer epoch, truncates what only it had (KIP-101, KIP-279) and
//! re-replicates: its log is then the new leader's, byte for byte. Every wait is bounded.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_log::TopicPartition;
use freshet_log::broker::{Broker, BrokerConfig};
use freshet_log::client::{AdminClient, ClientConfig, Connection, ConnectionConfig, NewTopic};
use freshet_log::codes;
use freshet_log::record::{Compression, RecordBatchBuilder};
use freshet_log::server::RunningBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use support::cut_proxy::CutProxy;
use support::orders::{TOPIC, consume_all, produce};
use support::{free_ports_on, init_tracing};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

/// Where node `id` really listens, and where it leaves from.
fn real_ip(id: i32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, id as u8))
}

/// Where node `id`'s proxies listen: what it advertises.
fn proxy_ip(id: i32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, id as u8))
}

struct Node {
    running: RunningBroker,
    /// In front of its client listener and of its controller listener.
    proxies: [CutProxy; 2],
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<i32, Node>,
}

impl Cluster {
    async fn start() -> Self {
        let mut fronts = BTreeMap::new();
        for id in 1..=3 {
            let client = TcpListener::bind((proxy_ip(id), 0)).await.unwrap();
            let controller = TcpListener::bind((proxy_ip(id), 0)).await.unwrap();
            fronts.insert(id, (client, controller, free_ports_on(real_ip(id), 2)));
        }
        let voters: Vec<String> = fronts
            .iter()
            .map(|(id, (_, controller, _))| format!("{id}@{}", controller.local_addr().unwrap()))
            .collect();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut starting = Vec::new();
        let mut proxies = BTreeMap::new();
        for ((id, (client, controller, real)), dir) in fronts.into_iter().zip(&dirs) {
            let listeners = format!("PLAINTEXT://{},CONTROLLER://{}", real[0], real[1]);
            let advertised = format!(
                "PLAINTEXT://{},CONTROLLER://{}",
                client.local_addr().unwrap(),
                controller.local_addr().unwrap()
            );
            let mut config = BrokerConfig::embedded(dir.path());
            config.auto_create_topics = false;
            for (key, value) in [
                ("node.id", id.to_string()),
                ("listeners", listeners),
                ("advertised.listeners", advertised),
                ("controller.quorum.voters", voters.join(",")),
                ("broker.session.timeout.ms", "2000".into()),
                ("broker.heartbeat.interval.ms", "200".into()),
                ("replica.lag.time.max.ms", "3000".into()),
            ] {
                config.set(key, &value).unwrap();
            }
            proxies.insert(id, [CutProxy::start(client, real[0]), CutProxy::start(controller, real[1])]);
            starting.push((id, tokio::spawn(Broker::start(config))));
        }
        let mut nodes = BTreeMap::new();
        for (id, start) in starting {
            let running = tokio::time::timeout(WAIT, start).await.expect("started in time").unwrap().unwrap();
            nodes.insert(id, Node { running, proxies: proxies.remove(&id).unwrap() });
        }
        Self { _dirs: dirs, nodes }
    }

    fn broker(&self, id: i32) -> &Arc<Broker> {
        self.nodes[&id].running.broker()
    }

    /// The advertised (proxy) client addresses of `ids`.
    fn bootstrap(&self, ids: &[i32]) -> String {
        ids.iter().map(|id| self.nodes[id].proxies[0].addr().to_string()).collect::<Vec<_>>().join(",")
    }

    /// Cuts `isolated` off from the other nodes, both ways; clients still reach it.
    fn isolate(&self, isolated: i32) {
        for (id, node) in &self.nodes {
            for proxy in &node.proxies {
                if *id == isolated {
                    self.nodes.keys().filter(|o| **o != isolated).for_each(|o| proxy.cut(Some(real_ip(*o))));
                } else {
                    proxy.cut(Some(real_ip(isolated)));
                }
            }
        }
    }

    fn heal(&self) {
        self.nodes.values().flat_map(|n| &n.proxies).for_each(CutProxy::heal);
    }

    async fn shutdown(self) {
        for node in self.nodes.into_values() {
            node.running.shutdown().await.unwrap();
        }
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One Produce request of `value` straight to the broker at `addr`: its error code.
async fn produce_to(addr: &str, value: &str, acks: i16) -> i16 {
    let mut batch = RecordBatchBuilder::new(Compression::None);
    batch.append(1_700_000_000_000, None, Some(value.as_bytes()), &[]);
    let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(2_000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(StrBytes::from_static_str(TOPIC))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch.build()))),
        ]),
    ]);
    let connection = Connection::connect(addr, ConnectionConfig::default()).await.unwrap();
    let response = connection.send(&request).await.unwrap();
    response.responses[0].partition_responses[0].error_code
}

/// Node `id`'s replica of the partition, every batch as stored.
fn log_bytes(cluster: &Cluster, id: i32, tp: &TopicPartition) -> Vec<u8> {
    let partition = cluster.broker(id).replica_manager().partition(tp).unwrap();
    let log = partition.log().read();
    log.read(0, u64::MAX, None, true).unwrap().read_to_vec().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_followers_loses_leadership_and_truncates_what_only_it_took() {
    init_tracing();
    let cluster = Cluster::start().await;
    let tp = TopicPartition::new(TOPIC, 0);
    let everyone = cluster.bootstrap(&[1, 2, 3]);
    let admin = AdminClient::connect(ClientConfig::new(&everyone)).await.unwrap();
    admin.create_topic(NewTopic::new(TOPIC, 1).replication_factor(3).config("min.insync.replicas", "2")).await.unwrap();
    eventually("every broker holds a replica", || {
        (1..=3).all(|id| cluster.broker(id).replica_manager().partition(&tp).is_some())
    })
    .await;
    produce(&everyone, 0, 100).await;
    let old = cluster.broker(1).partition(&tp).unwrap();
    eventually("the ISR is whole", || cluster.broker(old.leader).partition(&tp).is_some_and(|p| p.isr.len() == 3))
        .await;

    let x = old.leader;
    let others: Vec<i32> = (1..=3).filter(|id| *id != x).collect();
    cluster.isolate(x);
    let x_addr = cluster.bootstrap(&[x]);
    // Alone, it still leads in its own view: acks=1 is its word only, acks=all cannot
    // be met (its followers cannot fetch, and the controller cannot hear of a smaller ISR).
    assert_eq!(produce_to(&x_addr, "lone-acks-1", 1).await, codes::NONE);
    let acks_all = produce_to(&x_addr, "lone-acks-all", -1).await;
    assert!(
        [codes::REQUEST_TIMED_OUT, codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND].contains(&acks_all),
        "a cut-off leader acknowledged acks=all: {acks_all}"
    );

    eventually("the others elect a new leader in a newer epoch", || {
        others.iter().all(|id| {
            cluster.broker(*id).partition(&tp).is_some_and(|p| {
                p.leader != x && others.contains(&p.leader) && p.leader_epoch > old.leader_epoch && !p.isr.contains(&x)
            })
        })
    })
    .await;
    produce(&cluster.bootstrap(&others), 100, 200).await;
    let new_leader = cluster.broker(others[0]).partition(&tp).unwrap().leader;

    let x_log_end = cluster.broker(x).replica_manager().partition(&tp).unwrap().log().read().log_end_offset();
    assert!(x_log_end > 100, "the lone writes are in the cut-off leader's log (log end {x_log_end})");

    cluster.heal();
    eventually("the old leader is back in the ISR", || {
        cluster.broker(new_leader).partition(&tp).is_some_and(|p| p.isr.contains(&x) && p.leader == new_leader)
    })
    .await;
    eventually("the old leader's log is the new leader's", || {
        log_bytes(&cluster, x, &tp) == log_bytes(&cluster, new_leader, &tp)
    })
    .await;
    let values = consume_all(&everyone, 200).await;
    assert_eq!(
        values,
        (0..200).map(|i| format!("v{i}")).collect::<Vec<_>>(),
        "what only the cut-off leader took is gone"
    );
    cluster.shutdown().await;
}
