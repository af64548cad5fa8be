//! The `freshet` command-line tool.

mod cli;

use clap::Parser;

/// Kafka request decoding trusts array lengths from the wire; see `freshet_log::alloc`.
#[global_allocator]
static ALLOC: freshet::log::alloc::WireSafeAllocator = freshet::log::alloc::WireSafeAllocator;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FRESHET_LOG").unwrap_or_else(|_| cli.default_log_filter().into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    cli.run()
}
