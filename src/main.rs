//! The `freshet` command-line tool.

mod cli;

use clap::Parser;

/// Kafka request decoding trusts array lengths from the wire; see `freshet_log::alloc`.
#[global_allocator]
static ALLOC: freshet::log::alloc::WireSafeAllocator = freshet::log::alloc::WireSafeAllocator;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let directives = std::env::var("FRESHET_LOG").unwrap_or_else(|_| cli.default_log_filter().into());
    // openraft reports every failed RPC to a stopped voter as an error, twice a second;
    // the quorum's own logs say what matters. FRESHET_LOG=openraft=debug brings them back.
    let directives = if directives.contains("openraft") { directives } else { format!("{directives},openraft=off") };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_filter()));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    cli.run()
}
