//! `freshet server`: runs a node until SIGTERM or Ctrl-C, then shuts down cleanly (flush,
//! checkpoints, clean-shutdown marker). By default a complete single node; in a cluster a
//! broker with a controller (`process.roles=broker,controller`), or a dedicated controller
//! (`process.roles=controller`).

use std::path::PathBuf;

use anyhow::Context;
use freshet::log::broker::{Broker, BrokerConfig, ProcessRole};
use freshet::log::server::RunningController;

/// Where a node's settings come from: a TOML file, then `FRESHET_*` variables, then flags.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// A TOML file of broker settings under Kafka's names (`"log.retention.ms" = 60000`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A broker setting, applied after the file and the FRESHET_* environment
    /// (for example `--set listeners=PLAINTEXT://0.0.0.0:9092`). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl ConfigArgs {
    /// The node's configuration, every layer applied.
    pub fn load(&self) -> anyhow::Result<BrokerConfig> {
        let mut config = BrokerConfig::default();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            config.apply_toml(&text).with_context(|| format!("in {}", path.display()))?;
        }
        config.apply_env(std::env::vars())?;
        for item in &self.overrides {
            let (key, value) = item.split_once('=').with_context(|| format!("--set {item:?}: expected KEY=VALUE"))?;
            config.set(key.trim(), value)?;
        }
        Ok(config)
    }
}

/// Arguments of `freshet server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("freshet").build()?;
    runtime.block_on(async move {
        use std::io::Write;
        let running = if config.cluster.has_role(ProcessRole::Broker) {
            Running::Node(Broker::start(config).await?)
        } else {
            Running::Controller(RunningController::start(config).await?)
        };
        println!("freshet server listening on {}", running.describe());
        std::io::stdout().flush()?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        match running {
            Running::Node(broker) => broker.shutdown().await?,
            Running::Controller(controller) => controller.shutdown().await?,
        }
        anyhow::Ok(())
    })
}

/// What `freshet server` runs: a broker (with its controller, when it has the role), or a
/// dedicated controller.
enum Running {
    Node(freshet::RunningBroker),
    Controller(RunningController),
}

impl Running {
    fn describe(&self) -> String {
        match self {
            Self::Node(broker) => broker.local_addr().to_string(),
            Self::Controller(controller) => format!("{} (controller only)", controller.local_addr()),
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
