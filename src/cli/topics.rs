//! `freshet topics create|list|describe|alter|delete`, like kafka-topics.sh, and
//! `reassign` and `elect-leaders` (see [`super::reassign`]).

use clap::{Args, Subcommand};
use freshet::client::{AlterConfigOp, ConfigResource, NewTopic};

use super::client::{ClusterArgs, parse_key_value, runtime};

/// `freshet topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List(ListArgs),
    /// Show partitions, leaders, replicas and configs.
    Describe(DescribeArgs),
    /// Add partitions or change configs.
    Alter(AlterArgs),
    /// Delete topics.
    Delete(DeleteArgs),
    /// Move partitions to other brokers, or follow or cancel a move (as
    /// kafka-reassign-partitions.sh).
    Reassign(super::reassign::ReassignArgs),
    /// Elect preferred or, for leaderless partitions, unclean leaders (as
    /// kafka-leader-election.sh).
    ElectLeaders(super::reassign::ElectLeadersArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic name.
    topic: String,
    /// Partitions (default: the broker's num.partitions).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    partitions: i32,
    /// Replication factor (default: the broker's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    replication_factor: i16,
    /// A topic config, for example `--config cleanup.policy=compact`. Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
    /// Succeed if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Include internal topics.
    #[arg(long)]
    internal: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topics to describe (default: all).
    topics: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AlterArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic.
    topic: String,
    /// Grow the topic to this many partitions.
    #[arg(long)]
    partitions: Option<i32>,
    /// Set a topic config. Repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
    /// Remove a topic config (back to the broker default). Repeatable.
    #[arg(long = "delete-config", value_name = "KEY")]
    delete_configs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Topics to delete.
    #[arg(required = true)]
    topics: Vec<String>,
}

pub fn run(command: TopicsCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match command {
            TopicsCommand::Create(args) => {
                let admin = args.cluster.admin().await?;
                let mut topic = NewTopic::new(&args.topic, args.partitions).replication_factor(args.replication_factor);
                topic.configs = args.configs;
                match admin.create_topic(topic).await {
                    Err(e) if args.if_not_exists && e.code() == Some(36) => {}
                    result => result?,
                }
                println!("Created topic {}.", args.topic);
            }
            TopicsCommand::List(args) => {
                for topic in args.cluster.admin().await?.list_topics(args.internal).await? {
                    println!("{}", topic.name);
                }
            }
            TopicsCommand::Describe(args) => {
                let admin = args.cluster.admin().await?;
                let topics = if args.topics.is_empty() {
                    admin.list_topics(false).await?
                } else {
                    admin.describe_topics(&args.topics.iter().map(String::as_str).collect::<Vec<_>>()).await?
                };
                for topic in topics {
                    let resource = ConfigResource::Topic(topic.name.clone());
                    let configs: Vec<String> = admin
                        .describe_configs(&resource, &[])
                        .await?
                        .into_iter()
                        .filter(|c| c.source == "DYNAMIC_TOPIC_CONFIG")
                        .map(|c| format!("{}={}", c.name, c.value.unwrap_or_default()))
                        .collect();
                    let replication = topic.partitions.first().map_or(0, |p| p.replicas.len());
                    println!(
                        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                        topic.name,
                        topic.topic_id,
                        topic.partitions.len(),
                        replication,
                        configs.join(",")
                    );
                    let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                    for p in &topic.partitions {
                        // As kafka-topics.sh: the offline replicas only when there are any.
                        let offline = if p.offline_replicas.is_empty() {
                            String::new()
                        } else {
                            format!("\tOffline: {}", list(&p.offline_replicas))
                        };
                        println!(
                            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}{offline}",
                            topic.name,
                            p.partition,
                            p.leader,
                            list(&p.replicas),
                            list(&p.isr)
                        );
                    }
                }
            }
            TopicsCommand::Alter(args) => {
                anyhow::ensure!(
                    args.partitions.is_some() || !args.configs.is_empty() || !args.delete_configs.is_empty(),
                    "nothing to alter: give --partitions, --config or --delete-config"
                );
                let admin = args.cluster.admin().await?;
                if let Some(partitions) = args.partitions {
                    admin.create_partitions(&args.topic, partitions).await?;
                }
                let mut ops: Vec<AlterConfigOp> =
                    args.configs.into_iter().map(|(k, v)| AlterConfigOp::Set(k, v)).collect();
                ops.extend(args.delete_configs.into_iter().map(AlterConfigOp::Delete));
                if !ops.is_empty() {
                    admin.alter_configs(&ConfigResource::Topic(args.topic.clone()), &ops).await?;
                }
                println!("Altered topic {}.", args.topic);
            }
            TopicsCommand::Delete(args) => {
                let admin = args.cluster.admin().await?;
                admin.delete_topics(&args.topics.iter().map(String::as_str).collect::<Vec<_>>()).await?;
                for topic in &args.topics {
                    println!("Deleted topic {topic}.");
                }
            }
            TopicsCommand::Reassign(args) => super::reassign::reassign(args).await?,
            TopicsCommand::ElectLeaders(args) => super::reassign::elect_leaders(args).await?,
        }
        anyhow::Ok(())
    })
}
