//! `freshet cluster status`: the metadata quorum, the brokers, and the partitions that are
//! not fully replicated (what kafka-metadata-quorum.sh and `kafka-topics.sh
//! --under-replicated-partitions --unavailable-partitions` show, in one place).

use std::fmt::Write;

use clap::{Args, Subcommand};
use freshet::client::{ClusterDescription, QuorumInfo, TopicInfo};

use super::client::{ClusterArgs, runtime};

/// `freshet cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the controller quorum, the brokers, and under-replicated and offline partitions.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status(args) = command;
    runtime()?.block_on(async move {
        let admin = args.cluster.admin().await?;
        let cluster = admin.describe_cluster().await?;
        let quorum = admin.describe_quorum().await?;
        let topics = admin.list_topics(true).await?;
        print!("{}", render_status(&cluster, &quorum, &topics, now_ms()));
        anyhow::Ok(())
    })
}

fn now_ms() -> i64 {
    use freshet::log::time::Clock;
    freshet::log::time::SystemClock.now_ms()
}

/// The report, as text.
fn render_status(cluster: &ClusterDescription, quorum: &QuorumInfo, topics: &[TopicInfo], now_ms: i64) -> String {
    let mut out = String::new();
    let ids = |ids: &mut dyn Iterator<Item = i32>| ids.map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let _ = writeln!(out, "ClusterId:         {}", cluster.cluster_id);
    let _ = writeln!(out, "Quorum");
    let _ = writeln!(out, "  LeaderId:        {}", quorum.leader_id);
    let _ = writeln!(out, "  LeaderEpoch:     {}", quorum.leader_epoch);
    let _ = writeln!(out, "  HighWatermark:   {}", quorum.high_watermark);
    let max_lag = quorum.voters.iter().filter_map(|v| quorum.lag(v)).max().unwrap_or(0);
    let _ = writeln!(out, "  MaxFollowerLag:  {max_lag}");
    let _ = writeln!(out, "  CurrentVoters:   [{}]", ids(&mut quorum.voters.iter().map(|v| v.node_id)));
    let _ = writeln!(out, "  CurrentObservers: [{}]", ids(&mut quorum.observers.iter().map(|v| v.node_id)));
    let _ = writeln!(out, "  {:<8}{:<14}{:<8}{:<16}Status", "NodeId", "LogEndOffset", "Lag", "LastCaughtUp");
    let roles = quorum.voters.iter().map(|v| (v, true)).chain(quorum.observers.iter().map(|o| (o, false)));
    for (replica, voter) in roles {
        let status = match (replica.node_id == quorum.leader_id, voter) {
            (true, _) => "Leader",
            (false, true) => "Follower",
            (false, false) => "Observer",
        };
        let lag = quorum.lag(replica).map_or_else(|| "?".to_owned(), |l| l.to_string());
        let caught_up =
            replica.last_caught_up_ms.map_or_else(|| "never".to_owned(), |t| format!("{} ms ago", (now_ms - t).max(0)));
        let _ =
            writeln!(out, "  {:<8}{:<14}{:<8}{:<16}{status}", replica.node_id, replica.log_end_offset, lag, caught_up);
    }
    let _ = writeln!(out, "Brokers (controller: {})", cluster.controller);
    for broker in &cluster.brokers {
        let rack = broker.rack.as_deref().map_or_else(String::new, |r| format!("\track: {r}"));
        let _ = writeln!(out, "  {}\t{}{rack}", broker.node_id, broker.addr);
    }
    render_partitions(&mut out, topics);
    out
}

/// The partition counts, then each partition whose ISR is short or that has no leader.
fn render_partitions(out: &mut String, topics: &[TopicInfo]) {
    let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let all = topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t, p)));
    let offline: Vec<_> = all.clone().filter(|(_, p)| p.leader < 0).collect();
    let under: Vec<_> = all.clone().filter(|(_, p)| p.leader >= 0 && p.isr.len() < p.replicas.len()).collect();
    let _ = writeln!(out, "Partitions: {} ({} under-replicated, {} offline)", all.count(), under.len(), offline.len());
    for (label, partitions) in [("UnderReplicated", &under), ("Offline", &offline)] {
        for (topic, p) in partitions {
            let _ = writeln!(
                out,
                "  {label}\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                topic.name,
                p.partition,
                p.leader,
                list(&p.replicas),
                list(&p.isr)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use freshet::client::{BrokerInfo, PartitionInfo, QuorumReplicaInfo};

    use super::*;

    fn replica(node_id: i32, log_end_offset: i64, caught_up: Option<i64>) -> QuorumReplicaInfo {
        QuorumReplicaInfo { node_id, log_end_offset, last_fetch_ms: None, last_caught_up_ms: caught_up }
    }

    fn partition(partition: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition,
            leader,
            leader_epoch: 1,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: Vec::new(),
            error_code: 0,
        }
    }

    #[test]
    fn the_status_names_the_leader_the_lag_and_every_partition_that_is_short_of_replicas() {
        let cluster = ClusterDescription {
            cluster_id: "abc".into(),
            controller: 2,
            brokers: vec![
                BrokerInfo { node_id: 1, addr: "127.0.0.1:9092".into(), rack: Some("r1".into()) },
                BrokerInfo { node_id: 2, addr: "127.0.0.1:9192".into(), rack: None },
            ],
        };
        let quorum = QuorumInfo {
            leader_id: 2,
            leader_epoch: 7,
            high_watermark: 40,
            voters: vec![replica(1, 35, Some(9_000)), replica(2, 41, Some(10_000)), replica(3, -1, None)],
            observers: Vec::new(),
            voter_addresses: Vec::new(),
        };
        let topics = vec![TopicInfo {
            name: "t".into(),
            topic_id: Default::default(),
            is_internal: false,
            partitions: vec![
                partition(0, 1, &[1, 2, 3], &[1, 2]),
                partition(1, -1, &[3], &[3]),
                partition(2, 2, &[1, 2], &[2, 1]),
            ],
        }];
        let text = render_status(&cluster, &quorum, &topics, 10_000);
        assert!(text.contains("LeaderId:        2"), "{text}");
        assert!(text.contains("MaxFollowerLag:  6"), "{text}");
        assert!(text.contains("CurrentVoters:   [1,2,3]"), "{text}");
        assert!(text.contains("  1       35            6       1000 ms ago     Follower"), "{text}");
        assert!(text.contains("  2       41            0       0 ms ago        Leader"), "{text}");
        assert!(text.contains("  3       -1            ?       never           Follower"), "{text}");
        assert!(text.contains("  1\t127.0.0.1:9092\track: r1"), "{text}");
        assert!(text.contains("Partitions: 3 (1 under-replicated, 1 offline)"), "{text}");
        assert!(
            text.contains("UnderReplicated\tTopic: t\tPartition: 0\tLeader: 1\tReplicas: 1,2,3\tIsr: 1,2"),
            "{text}"
        );
        assert!(text.contains("Offline\tTopic: t\tPartition: 1\tLeader: -1"), "{text}");
        assert!(!text.contains("Partition: 2"), "{text}");
    }
}
