//! The controller quorum when its leader is cut off: a TCP proxy in front of every voter,
//! and each voter on its own loopback address, so a proxy can drop one voter's connections
//! both ways. The cut-off leader commits nothing, the other two elect a new leader and go
//! on, and when the cut heals the old leader's log agrees with theirs. Every wait is bounded.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use freshet_log::controller::quorum::{MetadataQuorum, QuorumConfig};
use freshet_log::controller::records::MetadataRecord;
use support::cut_proxy::CutProxy;
use tokio::net::TcpListener;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

fn ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

fn record(n: u128) -> MetadataRecord {
    MetadataRecord::Topic { name: format!("t{n}"), topic_id: Uuid::from_u128(n) }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends through whichever of `ids` leads, retrying while leadership settles; returns
/// the node that took it.
async fn append_anywhere(nodes: &BTreeMap<u64, MetadataQuorum>, ids: &[u64], record: MetadataRecord) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for id in ids {
            if nodes[id].append(vec![record.clone()]).await.is_ok() {
                return *id;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader among {ids:?} took the append");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_quorum_commits_nothing_and_rejoins() {
    let dir = tempfile::tempdir().unwrap();
    let mut voters = BTreeMap::new();
    let mut proxies = BTreeMap::new();
    let mut listens = BTreeMap::new();
    for id in 1..=3 {
        let front = TcpListener::bind((ip(id), 0)).await.unwrap();
        let real = std::net::TcpListener::bind((ip(id), 0)).unwrap().local_addr().unwrap();
        voters.insert(id, front.local_addr().unwrap());
        listens.insert(id, real);
        proxies.insert(id, CutProxy::start(front, real));
    }
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let config = QuorumConfig {
            node_id: id,
            voters: voters.clone(),
            dir: dir.path().join(format!("node-{id}")),
            heartbeat_ms: 50,
            snapshot_every_entries: 1_000,
            listen: Some(listens[&id]),
            cluster_id: "test-cluster".into(),
        };
        nodes.insert(id, MetadataQuorum::start(config).await.unwrap());
    }
    let old = append_anywhere(&nodes, &[1, 2, 3], record(1)).await;
    let before = nodes[&old].image();

    // Cut the leader off: its proxy drops everything, the others drop its connections.
    for (id, proxy) in &proxies {
        proxy.cut(if *id == old { None } else { Some(ip(old)) });
    }
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    wait_until("a new leader among the others", || {
        others.iter().all(|id| nodes[id].leader().is_some_and(|l| l != old))
    })
    .await;

    // The old leader cannot commit: its write times out or is refused.
    let lone = tokio::time::timeout(Duration::from_secs(2), nodes[&old].append(vec![record(666)])).await;
    assert!(!matches!(lone, Ok(Ok(_))), "a leader without a quorum committed");
    assert_eq!(nodes[&old].image(), before);

    let new = append_anywhere(&nodes, &others, record(2)).await;

    // Healed, the old leader follows and holds exactly what the quorum committed.
    for proxy in proxies.values() {
        proxy.heal();
    }
    wait_until("the old leader to catch up", || {
        nodes.values().all(|n| n.image() == nodes[&new].image()) && nodes[&old].leader() == nodes[&new].leader()
    })
    .await;
    let image = nodes[&old].image();
    assert!(image.topic("t2").is_some() && image.topic("t666").is_none(), "{:?}", image.topic_ids);
    for node in nodes.values() {
        node.shutdown().await;
    }
}
