//! Consumer settings, under Kafka's names and with Kafka's defaults.

use std::time::Duration;

use crate::client::config::{ClientConfig, parse_bool, parse_in, parse_ms};
use crate::client::error::{ClientError, Result};

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
            "key.deserializer"
            | "value.deserializer"
            | "session.timeout.ms"
            | "heartbeat.interval.ms"
            | "max.poll.interval.ms"
            | "partition.assignment.strategy"
            | "group.instance.id" => {}
            _ => return Err(ClientError::config(key, value, "unknown consumer property")),
        }
        Ok(self)
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
