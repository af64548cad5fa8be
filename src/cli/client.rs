//! What the client tools share: where the cluster is, extra properties, a runtime, and
//! helpers to print and parse.

use anyhow::Context;
use freshet::client::{AdminClient, ClientConfig, ConsumerConfig, ProducerConfig, TopicPartition};

/// Where the cluster is.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// `host:port` of one or more brokers, comma-separated.
    #[arg(short = 'b', long = "bootstrap-server", env = "FRESHET_BOOTSTRAP", default_value = "localhost:9092")]
    pub bootstrap: String,
    /// A client property under its Kafka name, for example `-X request.timeout.ms=5000`.
    /// Repeatable.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub properties: Vec<(String, String)>,
}

impl ClusterArgs {
    /// Shared client settings with the properties that belong to them applied; the
    /// others are returned for the producer or consumer.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new(&self.bootstrap);
        for (key, value) in &self.properties {
            if !config.set(key, value)? {
                anyhow::bail!("-X {key}={value}: not a setting this tool uses");
            }
        }
        Ok(config)
    }

    /// Producer settings: Kafka's defaults, then `-X` properties, then `extra`.
    pub fn producer_config(&self, extra: &[(String, String)]) -> anyhow::Result<ProducerConfig> {
        let mut config = ProducerConfig::new(&self.bootstrap);
        for (key, value) in self.properties.iter().chain(extra) {
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// Consumer settings: `defaults`, then `-X` properties.
    pub fn consumer_config(&self, defaults: &[(&str, &str)]) -> anyhow::Result<ConsumerConfig> {
        let mut config = ConsumerConfig::new(&self.bootstrap);
        config.set_all(defaults.iter().copied())?;
        for (key, value) in &self.properties {
            config.set(key, value)?;
        }
        Ok(config)
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient> {
        let config = self.client_config()?;
        AdminClient::connect(config).await.with_context(|| format!("connecting to {}", self.bootstrap))
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_key_value(item: &str) -> Result<(String, String), String> {
    match item.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {item:?}")),
    }
}

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("freshet-client").build()?)
}

/// All partitions of `topic`, or the given ones.
pub async fn partitions_of(admin: &AdminClient, topic: &str, only: &[i32]) -> anyhow::Result<Vec<TopicPartition>> {
    let info = admin.describe_topics(&[topic]).await?.remove(0);
    let all: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    for p in only {
        anyhow::ensure!(all.contains(p), "topic '{topic}' has no partition {p} (it has {})", all.len());
    }
    let chosen = if only.is_empty() { all } else { only.to_vec() };
    Ok(chosen.into_iter().map(|p| TopicPartition::new(topic, p)).collect())
}
