//! Command-line parsing and dispatch for the `freshet` binary.

mod client;
mod client_perf;
mod cluster;
mod consume;
mod dump;
mod group_perf;
mod groups;
mod perf;
mod produce;
mod reassign;
mod server;
mod storage;
mod topics;

use clap::{Parser, Subcommand};

/// Freshet: a Kafka-compatible event-streaming platform.
#[derive(Debug, Parser)]
#[command(name = "freshet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single-node broker that speaks the Kafka protocol (default 127.0.0.1:9092, data in ./freshet-data).
    Server(server::ServerArgs),
    /// The state of the cluster: the controller quorum, the brokers, partitions short of replicas.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Send lines from stdin or a file as records.
    Produce(produce::ProduceArgs),
    /// Print records of a topic.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Inspect log files on disk.
    #[command(subcommand)]
    Log(LogCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
    /// Format and inspect data directories (like kafka-storage.sh).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the batches of a segment file, checking each one (like kafka-dump-log).
    Dump(dump::DumpArgs),
}

impl Cli {
    /// The default log filter: the server narrates its lifecycle, tools stay quiet.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Server(_) => "info",
            _ => "warn",
        }
    }

    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Server(args) => server::run(args),
            Command::Log(LogCommand::Dump(args)) => dump::run(args),
            Command::Perf(cmd) => perf::run(cmd),
            Command::Cluster(cmd) => cluster::run(cmd),
            Command::Topics(cmd) => topics::run(cmd),
            Command::Produce(args) => produce::run(args),
            Command::Consume(args) => consume::run(args),
            Command::Groups(cmd) => groups::run(cmd),
            Command::Storage(cmd) => storage::run(cmd),
        }
    }
}
