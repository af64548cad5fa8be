//! `freshet topics reassign` (like kafka-reassign-partitions.sh) and `freshet topics
//! elect-leaders` (like kafka-leader-election.sh).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use freshet::client::{AdminClient, ElectionType, TopicPartition};

use super::client::ClusterArgs;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["execute", "verify", "cancel", "list"])))]
pub struct ReassignArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Kafka's reassignment JSON:
    /// `{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`.
    #[arg(long, value_name = "FILE", required_unless_present = "list")]
    reassignment_json_file: Option<PathBuf>,
    /// Start moving the partitions to their replicas.
    #[arg(long)]
    execute: bool,
    /// Say whether each reassignment of the file has finished.
    #[arg(long)]
    verify: bool,
    /// Cancel the reassignments of the file, putting the replicas back.
    #[arg(long)]
    cancel: bool,
    /// List the reassignments under way.
    #[arg(long)]
    list: bool,
    /// Allow targets with another replica count than the partition has.
    #[arg(long)]
    allow_replication_factor_change: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Election {
    Preferred,
    Unclean,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["topic", "all_topic_partitions"])))]
pub struct ElectLeadersArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// `preferred`: the first replica leads again, when in sync. `unclean`: a leaderless
    /// partition gets any live replica as leader, at the risk of losing data.
    #[arg(long, value_enum)]
    election_type: Election,
    /// The topic (with --partition: one partition of it).
    #[arg(long)]
    topic: Option<String>,
    /// The partition of --topic.
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
    /// Every partition of every topic.
    #[arg(long)]
    all_topic_partitions: bool,
}

/// Partitions and their target replicas, from Kafka's reassignment JSON.
fn read_plan(path: &std::path::Path) -> anyhow::Result<Vec<(TopicPartition, Vec<i32>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    parse_plan(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn parse_plan(text: &str) -> anyhow::Result<Vec<(TopicPartition, Vec<i32>)>> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("not JSON: {e}"))?;
    let partitions = json
        .get("partitions")
        .and_then(|p| p.as_array())
        .ok_or_else(|| anyhow::anyhow!("expected {{\"partitions\": [...]}}"))?;
    let mut plan = Vec::with_capacity(partitions.len());
    for (i, entry) in partitions.iter().enumerate() {
        let field = |name: &str| entry.get(name).ok_or_else(|| anyhow::anyhow!("partitions[{i}] has no \"{name}\""));
        let topic = field("topic")?.as_str().ok_or_else(|| anyhow::anyhow!("partitions[{i}].topic: not a string"))?;
        let partition = field("partition")?
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| anyhow::anyhow!("partitions[{i}].partition: not a partition number"))?;
        let replicas = field("replicas")?
            .as_array()
            .and_then(|r| r.iter().map(|b| b.as_i64().and_then(|b| i32::try_from(b).ok())).collect::<Option<Vec<_>>>())
            .ok_or_else(|| anyhow::anyhow!("partitions[{i}].replicas: not a list of broker ids"))?;
        plan.push((TopicPartition::new(topic, partition), replicas));
    }
    Ok(plan)
}

pub async fn reassign(args: ReassignArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    if args.list {
        for r in admin.list_partition_reassignments(None).await? {
            println!(
                "{}-{}\tReplicas: {}\tAdding: {}\tRemoving: {}",
                r.partition.topic,
                r.partition.partition,
                ids(&r.replicas),
                ids(&r.adding_replicas),
                ids(&r.removing_replicas)
            );
        }
        return Ok(());
    }
    let path = args.reassignment_json_file.as_deref().expect("clap requires the file without --list");
    let plan = read_plan(path)?;
    if args.verify {
        return verify(&admin, &plan).await;
    }
    let targets: Vec<(TopicPartition, Option<Vec<i32>>)> =
        plan.into_iter().map(|(tp, replicas)| (tp, (!args.cancel).then_some(replicas))).collect();
    let results = admin.alter_partition_reassignments(&targets, args.allow_replication_factor_change).await?;
    let verb = if args.cancel { "cancelled" } else { "started" };
    report(results, |tp| format!("Reassignment of partition {}-{} {verb}.", tp.topic, tp.partition))
}

async fn verify(admin: &AdminClient, plan: &[(TopicPartition, Vec<i32>)]) -> anyhow::Result<()> {
    let partitions: Vec<TopicPartition> = plan.iter().map(|(tp, _)| tp.clone()).collect();
    let ongoing = admin.list_partition_reassignments(Some(&partitions)).await?;
    let mut topics: Vec<&str> = partitions.iter().map(|tp| tp.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    let described = admin.describe_topics(&topics).await?;
    let mut unfinished = 0;
    for (tp, target) in plan {
        let name = format!("{}-{}", tp.topic, tp.partition);
        if ongoing.iter().any(|r| &r.partition == tp) {
            unfinished += 1;
            println!("Reassignment of partition {name} is still in progress.");
            continue;
        }
        let current = described
            .iter()
            .find(|t| t.name == tp.topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.partition));
        match current {
            Some(p) if &p.replicas == target => println!("Reassignment of partition {name} is completed."),
            Some(p) => {
                unfinished += 1;
                println!(
                    "There is no active reassignment of partition {name}, but its replicas are {}.",
                    ids(&p.replicas)
                );
            }
            None => {
                unfinished += 1;
                println!("Partition {name} does not exist.");
            }
        }
    }
    anyhow::ensure!(unfinished == 0, "{unfinished} of {} partitions are not reassigned yet", plan.len());
    Ok(())
}

pub async fn elect_leaders(args: ElectLeadersArgs) -> anyhow::Result<()> {
    let admin = args.cluster.admin().await?;
    let election = match args.election_type {
        Election::Preferred => ElectionType::Preferred,
        Election::Unclean => ElectionType::Unclean,
    };
    let partitions = match (&args.topic, args.partition) {
        (Some(topic), Some(p)) => Some(vec![TopicPartition::new(topic.as_str(), p)]),
        (Some(topic), None) => Some(super::client::partitions_of(&admin, topic, &[]).await?),
        (None, _) => None,
    };
    let results = admin.elect_leaders(election, partitions.as_deref()).await?;
    if results.is_empty() {
        println!("Valid replica already elected for all partitions.");
        return Ok(());
    }
    report(results, |tp| format!("Successfully completed leader election for partition {}-{}.", tp.topic, tp.partition))
}

/// Prints each partition's outcome; fails when any failed.
fn report(
    results: Vec<(TopicPartition, freshet::client::Result<()>)>,
    done: impl Fn(&TopicPartition) -> String,
) -> anyhow::Result<()> {
    let mut failed = 0;
    for (tp, result) in &results {
        match result {
            Ok(()) => println!("{}", done(tp)),
            Err(e) => {
                failed += 1;
                println!("Failed for partition {}-{}: {e}", tp.topic, tp.partition);
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} partitions failed", results.len());
    Ok(())
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_reassignment_json_is_read_and_bad_entries_are_named() {
        let plan = parse_plan(
            r#"{"version":1,"partitions":[{"topic":"t","partition":2,"replicas":[3,1],"log_dirs":["any","any"]}]}"#,
        )
        .unwrap();
        assert_eq!(plan, vec![(TopicPartition::new("t", 2), vec![3, 1])]);
        let err = parse_plan(r#"{"partitions":[{"topic":"t","partition":0,"replicas":["a"]}]}"#).unwrap_err();
        assert!(err.to_string().contains("partitions[0].replicas"), "{err}");
        let err = parse_plan(r#"{"partitions":[{"topic":"t","replicas":[1]}]}"#).unwrap_err();
        assert!(err.to_string().contains("partitions[0] has no \"partition\""), "{err}");
        assert!(parse_plan("[1,").unwrap_err().to_string().contains("not JSON"));
    }
}
