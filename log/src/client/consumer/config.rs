//! Consumer settings, under Kafka's names and with Kafka's defaults.

use std::time::Duration;

use crate::client::config::{ClientConfig, parse_bool, parse_in, parse_ms};
use crate::client::error::{ClientError, Result};
use crate::client::group::assignor::Assignor;

/// `auto.offset.reset`: where to start when there is no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only new records.
    Latest,
    /// Fail the poll with an error instead.
    None,
}

/// `isolation.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset, without records of aborted transactions.
    ReadCommitted,
}

/// Everything a [`super::Consumer`] can be told.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The settings every client shares.
    pub client: ClientConfig,
    /// `group.id`; committed offsets and group membership need it.
    pub group_id: Option<String>,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `fetch.min.bytes`: the broker waits for this much data (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms`: ... or this long (default 500 ms).
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes`: the most one fetch returns (default 50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`: the most one fetch returns per partition (default 1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `max.poll.records`: the most one poll returns (default 500).
    pub max_poll_records: usize,
    /// `isolation.level` (default read_uncommitted).
    pub isolation_level: IsolationLevel,
    /// `check.crcs`: verify each batch's CRC (default true).
    pub check_crcs: bool,
    /// `enable.auto.commit` (default true; needs a group).
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms` (default 5 s).
    pub auto_commit_interval: Duration,
    /// `group.instance.id`: a static member's stable identity.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms` (default 45 s): without a heartbeat for this long, the member is
    /// removed from the group.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (default 3 s).
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms` (default 5 min): the most time between polls before the
    /// member leaves the group; also the rebalance timeout it asks for.
    pub max_poll_interval: Duration,
    /// `partition.assignment.strategy`, in order of preference (default range, then
    /// cooperative-sticky, as in Kafka).
    pub assignors: Vec<Assignor>,
    /// An assignor of the application's own, used instead of `assignors` (what Kafka
    /// Streams installs). Not settable by property.
    pub group_assignor: Option<std::sync::Arc<dyn crate::client::GroupAssignor>>,
}

impl ConsumerConfig {
    /// Kafka's defaults, for the cluster at `bootstrap`.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            max_poll_records: 500,
            isolation_level: IsolationLevel::ReadUncommitted,
            check_crcs: true,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_interval: Duration::from_secs(300),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            group_assignor: None,
        }
    }

    /// Applies one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        if self.client.set(key, value)? {
            return Ok(self);
        }
        match key {
            "group.id" => self.group_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "auto.offset.reset" => {
                self.auto_offset_reset = match value.trim() {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    _ => return Err(ClientError::config(key, value, "expected earliest, latest or none")),
                }
            }
            "fetch.min.bytes" => self.fetch_min_bytes = parse_in(key, value, 0, i32::MAX)?,
            "fetch.max.wait.ms" => {
                self.fetch_max_wait = parse_ms(key, value)?;
                if self.fetch_max_wait.as_millis() > i32::MAX as u128 {
                    return Err(ClientError::config(key, value, "too large"));
                }
            }
            "fetch.max.bytes" => self.fetch_max_bytes = parse_in(key, value, 1, i32::MAX)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = parse_in(key, value, 1, i32::MAX)?,
            "max.poll.records" => self.max_poll_records = parse_in(key, value, 1, i32::MAX as usize)?,
            "isolation.level" => {
                self.isolation_level = match value.trim() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(ClientError::config(key, value, "expected read_uncommitted or read_committed")),
                }
            }
            "check.crcs" => self.check_crcs = parse_bool(key, value)?,
            "enable.auto.commit" => self.enable_auto_commit = parse_bool(key, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = parse_ms(key, value)?,
            "group.instance.id" => self.group_instance_id = Some(value.to_string()).filter(|g| !g.is_empty()),
            "session.timeout.ms" => self.session_timeout = parse_ms(key, value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = parse_ms(key, value)?,
            "max.poll.interval.ms" => self.max_poll_interval = parse_ms(key, value)?,
            "partition.assignment.strategy" => {
                // Kafka's class names are accepted too, so Java property files carry over.
                let assignors = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|name| {
                        let short = name.rsplit('.').next().unwrap_or(name);
                        let short = match short {
                            "RangeAssignor" => "range",
                            "RoundRobinAssignor" => "roundrobin",
                            "CooperativeStickyAssignor" => "cooperative-sticky",
                            other => other,
                        };
                        Assignor::from_name(short).ok_or_else(|| {
                            ClientError::config(
                                key,
                                value,
                                format!("unknown assignor '{name}'; expected range, roundrobin or cooperative-sticky"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                if assignors.is_empty() {
                    return Err(ClientError::config(key, value, "name at least one assignor"));
                }
                self.assignors = assignors;
            }
            "key.deserializer" | "value.deserializer" => {}
            _ => return Err(ClientError::config(key, value, "unknown consumer property")),
        }
        Ok(self)
    }

    /// Checks the settings against each other, as Kafka does when a consumer is created.
    pub fn validate(&self) -> Result<()> {
        if self.heartbeat_interval >= self.session_timeout {
            return Err(ClientError::config(
                "heartbeat.interval.ms",
                self.heartbeat_interval.as_millis().to_string(),
                format!("must be lower than session.timeout.ms ({} ms)", self.session_timeout.as_millis()),
            ));
        }
        Ok(())
    }

    /// Applies `key=value` properties in order.
    pub fn set_all<'a>(&mut self, props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<&mut Self> {
        for (key, value) in props {
            self.set(key, value)?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_bad_values_name_the_property() {
        let mut config = ConsumerConfig::new("localhost:9092");
        config
            .set_all([
                ("auto.offset.reset", "earliest"),
                ("isolation.level", "read_committed"),
                ("max.poll.records", "7"),
            ])
            .unwrap();
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(config.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(config.max_poll_records, 7);
        for (key, value) in [("auto.offset.reset", "smallest"), ("max.poll.records", "0"), ("fetch.max.wait.ms", "x")] {
            let e = config.set(key, value).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
