//! What the Streams examples share: a cluster to run against (`--bootstrap`, or a
//! single-node broker embedded in the example), topic creation, and a producer.

#![allow(dead_code)]

use std::time::Duration;

use freshet::client::{AdminClient, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord};
use freshet::{Broker, BrokerConfig, RunningBroker};

/// The cluster an example talks to.
pub struct Cluster {
    pub bootstrap: String,
    runtime: tokio::runtime::Runtime,
    /// The embedded broker and its data directory, when no `--bootstrap` was given.
    embedded: Option<(RunningBroker, tempfile::TempDir)>,
}

impl Cluster {
    /// `bootstrap`, or a broker started here on a loopback port.
    pub fn connect(bootstrap: Option<String>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let (bootstrap, embedded) = match bootstrap {
            Some(b) => (b, None),
            None => {
                let dir = tempfile::tempdir()?;
                let broker = runtime.block_on(Broker::start(BrokerConfig::embedded(dir.path())))?;
                let addr = broker.local_addr().to_string();
                eprintln!("started an embedded broker at {addr}");
                (addr, Some((broker, dir)))
            }
        };
        Ok(Cluster { bootstrap, runtime, embedded })
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Creates the topics that do not exist yet.
    pub fn ensure_topics(&self, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let admin = AdminClient::connect(ClientConfig::new(&self.bootstrap)).await?;
            let existing: Vec<String> = admin.list_topics(false).await?.into_iter().map(|t| t.name).collect();
            for (name, partitions) in topics {
                if !existing.iter().any(|t| t == name) {
                    admin.create_topic(NewTopic::new(*name, *partitions)).await?;
                }
            }
            Ok(())
        })
    }

    /// Sends records and waits for every acknowledgement.
    pub fn produce(&self, topic: &str, records: &[(Option<&str>, &[u8])]) -> anyhow::Result<()> {
        self.runtime.block_on(async {
            let producer = Producer::connect(ProducerConfig::new(&self.bootstrap)).await?;
            let mut deliveries = Vec::new();
            for (key, value) in records {
                let mut record = ProducerRecord::new(topic).value(*value);
                if let Some(key) = key {
                    record = record.key(*key);
                }
                deliveries.push(producer.send(record).await?);
            }
            for delivery in deliveries {
                delivery.await?;
            }
            Ok(())
        })
    }

    /// Waits for Ctrl-C or SIGTERM (true), or `limit` if given (false).
    pub fn wait_for_signal(&self, limit: Option<Duration>) -> bool {
        self.runtime.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async {
                match term.as_mut() {
                    Some(t) => drop(t.recv().await),
                    None => std::future::pending().await,
                }
            };
            let limit = async {
                match limit {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => true,
                _ = term => true,
                _ = limit => false,
            }
        })
    }
}

/// Logs to stderr, filtered by `FRESHET_LOG` (default: info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRESHET_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
