//! Command-line parsing and dispatch for the `freshet` binary.

mod dump;
mod perf;

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
    /// Inspect log files on disk.
    #[command(subcommand)]
    Log(LogCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Perf(perf::PerfCommand),
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print the batches of a segment file, checking each one (like kafka-dump-log).
    Dump(dump::DumpArgs),
}

impl Cli {
    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Log(LogCommand::Dump(args)) => dump::run(args),
            Command::Perf(cmd) => perf::run(cmd),
        }
    }
}
