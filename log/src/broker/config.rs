//! Broker configuration under Kafka's property names, layered as DESIGN.md fixes it: a TOML
//! file, then `FRESHET_*` environment variables, then command-line overrides.
//!
//! ```
//! use freshet_log::broker::BrokerConfig;
//!
//! let mut config = BrokerConfig::default();
//! config.set("num.partitions", "3").unwrap();
//! config.apply_toml("log.retention.hours = 1\n[auto.create.topics]\nenable = false\n").unwrap();
//! assert_eq!(config.num_partitions, 3);
//! assert!(!config.auto_create_topics);
//! assert_eq!(config.log_manager.default_log_config.retention_ms, 3_600_000);
//! assert!(config.set("listeners", "nonsense").is_err());
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::cluster_config::ClusterConfig;
use super::group::CoordinatorConfig;
use crate::storage::error::{LogError, Result};
use crate::storage::{LogConfig, LogManagerConfig};

/// Everything a broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `listeners`: where to accept Kafka clients (`PLAINTEXT://host:port`).
    pub listener: SocketAddr,
    /// `advertised.listeners`: what Metadata tells clients; by default the bound listener.
    pub advertised: Option<(String, u16)>,
    /// `socket.request.max.bytes`: the largest request frame accepted.
    pub max_request_bytes: usize,
    /// `max.connections`: concurrent client connections.
    pub max_connections: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and CreateTopics without a count.
    pub num_partitions: i32,
    /// `fetch.max.wait.ms` bound: the longest a fetch may wait for data.
    pub max_fetch_wait_ms: u64,
    /// `max.incremental.fetch.session.cache.slots`: how many fetch sessions (KIP-227) the
    /// broker keeps.
    pub fetch_session_slots: usize,
    /// `log.dirs`, retention, cleaner and flush settings, and the topic-config defaults.
    pub log_manager: LogManagerConfig,
    /// Group coordinator settings (`group.*`, `offsets.*`).
    pub group: CoordinatorConfig,
    /// Roles, quorum voters, named listeners, rack and replication settings.
    pub cluster: ClusterConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            listener: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised: None,
            max_request_bytes: 100 << 20,
            max_connections: 10_000,
            auto_create_topics: true,
            num_partitions: 1,
            max_fetch_wait_ms: 30_000,
            fetch_session_slots: 1_000,
            log_manager: LogManagerConfig::new("./freshet-data"),
            group: CoordinatorConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// Broker properties that set a topic config's default, and the topic config each sets.
const TOPIC_DEFAULT_KEYS: &[(&str, &str)] = &[
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.cleanup.policy", "cleanup.policy"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("log.flush.interval.messages", "flush.messages"),
    ("log.flush.interval.ms", "flush.ms"),
    ("message.max.bytes", "max.message.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("compression.type", "compression.type"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("log.message.timestamp.before.max.ms", "message.timestamp.before.max.ms"),
    ("log.message.timestamp.after.max.ms", "message.timestamp.after.max.ms"),
    ("log.roll.jitter.ms", "segment.jitter.ms"),
    ("log.preallocate", "preallocate"),
    ("log.segment.delete.delay.ms", "file.delete.delay.ms"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
];

/// The topic config whose default the broker property `key` sets.
pub fn topic_default_key(key: &str) -> Option<&'static str> {
    TOPIC_DEFAULT_KEYS.iter().find(|(b, _)| *b == key).map(|(_, t)| *t)
}

/// The broker property that sets the default of topic config `key`.
pub fn broker_key_for_topic_key(key: &str) -> Option<&'static str> {
    TOPIC_DEFAULT_KEYS.iter().find(|(_, t)| *t == key).map(|(b, _)| *b)
}

/// Whether a broker property may be changed at run time (IncrementalAlterConfigs on the
/// broker resource): the topic-config defaults, as in Kafka.
pub fn is_dynamic_broker_key(key: &str) -> bool {
    topic_default_key(key).is_some()
        || matches!(key, "log.retention.hours" | "log.retention.minutes" | "log.roll.hours" | "log.roll.jitter.hours")
}

/// The topic-config defaults that result from the static config plus layers of run-time
/// changes (the cluster-wide ones, then this broker's own). Every value is validated.
pub fn effective_log_defaults(config: &BrokerConfig, layers: &[&BTreeMap<String, String>]) -> Result<LogConfig> {
    let mut c = config.clone();
    for layer in layers {
        // In name order, so `log.retention.ms` wins over `.minutes` over `.hours`.
        for (key, value) in *layer {
            c.set(key, value)?;
        }
    }
    Ok(c.log_manager.default_log_config)
}

/// The reason [`BrokerConfig::set`] gives for a key it does not know.
const UNKNOWN_KEY: &str = "unknown broker config";

pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> LogError {
    LogError::InvalidConfig { key: key.into(), value: value.into(), reason: reason.into() }
}

pub(crate) fn parse<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| invalid(key, value, format!("expected {}", std::any::type_name::<T>())))
}

impl BrokerConfig {
    /// A broker for tests and applications: data in `dir`, an ephemeral port on loopback,
    /// fast background intervals, and no initial rebalance delay (a group of one does not
    /// wait three seconds for company).
    pub fn embedded(dir: impl Into<PathBuf>) -> Self {
        let mut config = Self { listener: SocketAddr::from(([127, 0, 0, 1], 0)), ..Self::default() };
        config.cluster.listeners[0].port = 0;
        config.log_manager = LogManagerConfig::new(dir);
        config.group.initial_rebalance_delay_ms = 0;
        config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.log_manager.data_dir
    }

    /// Sets one property by its Kafka name. Topic-level `log.*` defaults go to the default
    /// topic config.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        if self.cluster.set(key, v)? {
            return self.derive_listeners(key, v);
        }
        let topic_defaults = &mut self.log_manager.default_log_config;
        match key {
            "node.id" | "broker.id" => self.node_id = parse(key, v)?,
            "log.dirs" | "log.dir" => {
                let first = v.split(',').next().unwrap_or_default().trim();
                if first.is_empty() {
                    return Err(invalid(key, v, "empty path"));
                }
                self.log_manager.data_dir = PathBuf::from(first);
            }
            "socket.request.max.bytes" => self.max_request_bytes = parse(key, v)?,
            "max.connections" => self.max_connections = parse(key, v)?,
            "auto.create.topics.enable" => self.auto_create_topics = parse(key, v)?,
            "num.partitions" => {
                self.num_partitions = parse(key, v)?;
                if self.num_partitions < 1 {
                    return Err(invalid(key, v, "must be at least 1"));
                }
            }
            "num.recovery.threads.per.data.dir" => self.log_manager.recovery_threads = parse(key, v)?,
            "log.retention.check.interval.ms" => self.log_manager.retention_check_interval_ms = parse(key, v)?,
            "log.flush.scheduler.interval.ms" => self.log_manager.flush_scheduler_interval_ms = parse(key, v)?,
            "log.flush.offset.checkpoint.interval.ms" => self.log_manager.checkpoint_interval_ms = parse(key, v)?,
            "log.cleaner.enable" => self.log_manager.cleaner.enabled = parse(key, v)?,
            "log.cleaner.backoff.ms" => self.log_manager.cleaner.backoff_ms = parse(key, v)?,
            "log.cleaner.dedupe.buffer.size" => self.log_manager.cleaner.dedupe_buffer_bytes = parse(key, v)?,
            "producer.id.expiration.ms" => self.log_manager.producer_id_expiration_ms = parse(key, v)?,
            "producer.id.expiration.check.interval.ms" => {
                self.log_manager.producer_id_expiration_check_interval_ms = parse(key, v)?
            }
            "log.retention.hours" => {
                topic_defaults.set("retention.ms", &(parse::<i64>(key, v)? * 3_600_000).to_string())?
            }
            "log.retention.minutes" => {
                topic_defaults.set("retention.ms", &(parse::<i64>(key, v)? * 60_000).to_string())?
            }
            "log.roll.hours" => topic_defaults.set("segment.ms", &(parse::<i64>(key, v)? * 3_600_000).to_string())?,
            "log.roll.jitter.hours" => {
                topic_defaults.set("segment.jitter.ms", &(parse::<i64>(key, v)? * 3_600_000).to_string())?
            }
            "replica.fetch.wait.max.ms" | "fetch.max.wait.ms" => self.max_fetch_wait_ms = parse(key, v)?,
            "max.incremental.fetch.session.cache.slots" => self.fetch_session_slots = parse(key, v)?,
            "offsets.topic.num.partitions" => {
                self.group.offsets_partitions = parse(key, v)?;
                if !(1..=super::MAX_PARTITIONS_PER_TOPIC).contains(&self.group.offsets_partitions) {
                    return Err(invalid(key, v, "must be between 1 and 10000"));
                }
            }
            "group.min.session.timeout.ms" => self.group.min_session_timeout_ms = parse(key, v)?,
            "group.max.session.timeout.ms" => self.group.max_session_timeout_ms = parse(key, v)?,
            "group.initial.rebalance.delay.ms" => self.group.initial_rebalance_delay_ms = parse(key, v)?,
            "group.max.size" => self.group.max_group_size = parse(key, v)?,
            "offsets.retention.minutes" => {
                self.group.offsets_retention_ms = parse::<i64>(key, v)?.saturating_mul(60_000)
            }
            "offsets.retention.check.interval.ms" => self.group.offsets_retention_check_interval_ms = parse(key, v)?,
            "offset.metadata.max.bytes" => self.group.max_metadata_bytes = parse(key, v)?,
            _ => {
                let Some(topic_key) = topic_default_key(key) else {
                    return Err(invalid(key, v, UNKNOWN_KEY));
                };
                topic_defaults.set(topic_key, v).map_err(|e| match e {
                    LogError::InvalidConfig { reason, .. } => invalid(key, v, reason),
                    other => other,
                })?;
            }
        }
        Ok(())
    }

    /// The client listener and its advertised address follow `listeners`,
    /// `advertised.listeners` and `controller.listener.names`.
    fn derive_listeners(&mut self, key: &str, v: &str) -> Result<()> {
        let Some(listener) = self.cluster.broker_listeners().next().cloned() else { return Ok(()) };
        self.listener =
            listener.bind_addr().ok_or_else(|| invalid(key, v, format!("{} does not resolve", listener.host)))?;
        let advertised = self.cluster.advertised_listeners.iter().find(|a| a.name == listener.name);
        self.advertised = advertised.map(|a| (a.host.clone(), a.port));
        Ok(())
    }

    /// Checks the cluster settings against each other (see [`ClusterConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        self.cluster.validate(self.node_id)
    }

    /// Applies a TOML document. Keys are Kafka property names, written flat
    /// (`"log.retention.ms" = 1000` or unquoted `log.retention.ms = 1000`, which TOML reads
    /// as nested tables) in any mix.
    pub fn apply_toml(&mut self, text: &str) -> Result<()> {
        let value: toml::Table =
            text.parse().map_err(|e: toml::de::Error| invalid("config file", "", e.to_string()))?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(value), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Applies `FRESHET_*` environment variables: `FRESHET_LOG_RETENTION_MS=1000` sets
    /// `log.retention.ms`. A bad value for a known setting is an error; a variable that
    /// names no broker setting (other tools use the prefix too) is skipped with a warning,
    /// so a typo still shows in the log. `FRESHET_LOG` is the log filter.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("FRESHET_") else { continue };
            if rest == "LOG" || rest.is_empty() {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace('_', ".");
            match self.set(&key, &value) {
                Ok(()) => {}
                Err(LogError::InvalidConfig { reason, .. }) if reason == UNKNOWN_KEY => {
                    tracing::warn!(variable = %name, "ignoring an environment variable that names no broker setting");
                }
                Err(LogError::InvalidConfig { reason, value, .. }) => return Err(invalid(&name, &value, reason)),
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(items) => {
            let joined: Vec<String> =
                items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string)).collect();
            out.push((prefix.to_string(), joined.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The topic config a broker applies when CreateTopics gives no override.
pub fn topic_defaults(config: &BrokerConfig) -> &LogConfig {
    &config.log_manager.default_log_config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_errors_name_the_key() {
        let mut c = BrokerConfig::default();
        c.apply_toml("\"listeners\" = \"PLAINTEXT://127.0.0.1:19092\"\nlog.dirs = \"/tmp/x\"\n").unwrap();
        c.apply_env([("FRESHET_LISTENERS".to_string(), "PLAINTEXT://127.0.0.1:29092".to_string())]).unwrap();
        c.set("advertised.listeners", "PLAINTEXT://broker.example:9092").unwrap();
        assert_eq!(c.listener.port(), 29092);
        assert_eq!(c.data_dir(), std::path::Path::new("/tmp/x"));
        assert_eq!(c.advertised, Some(("broker.example".to_string(), 9092)));

        c.apply_env([("FRESHET_BIN".to_string(), "/usr/bin/freshet".to_string())]).unwrap();
        let err = c.apply_env([("FRESHET_LOG_RETENTION_MS".to_string(), "soon".to_string())]).unwrap_err();
        assert!(err.to_string().contains("FRESHET_LOG_RETENTION_MS"), "{err}");
        let err = c.set("message.max.bytes", "big").unwrap_err();
        assert!(err.to_string().contains("message.max.bytes"), "{err}");
        let err = c.apply_toml("this is = = not toml").unwrap_err();
        assert!(err.to_string().contains("config file"), "{err}");
        assert!(c.set("listeners", "SSL://h:1").is_err());
    }
}
