//! Per-topic log configuration, under Kafka's property names.
//!
//! ```
//! use std::collections::BTreeMap;
//! use freshet_log::storage::LogConfig;
//!
//! let props = BTreeMap::from([
//!     ("cleanup.policy".to_string(), "compact,delete".to_string()),
//!     ("segment.bytes".to_string(), "1048576".to_string()),
//! ]);
//! let config = LogConfig::default().with_overrides(&props).unwrap();
//! assert!(config.compact() && config.delete());
//! assert!(LogConfig::default().with_overrides(&BTreeMap::from([("segment.bytes".into(), "lots".into())])).is_err());
//! ```

use std::collections::BTreeMap;

use super::error::{LogError, Result};
use crate::record::TimestampType;

/// Settings that shape one partition's log. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: roll when the offset index would exceed this.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: log bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 means no limit.
    pub retention_bytes: i64,
    /// `cleanup.policy` contains `delete`.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long tombstones survive cleaning.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: dirty share of the log that triggers cleaning.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `flush.messages`: fsync after this many appended records.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the last flush is this old.
    pub flush_ms: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `min.insync.replicas` (applied by the broker, stored here with the rest).
    pub min_insync_replicas: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 3600 * 1000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            min_insync_replicas: 1,
        }
    }
}

/// Every topic-level property name this config understands.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "index.interval.bytes",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
];

impl LogConfig {
    /// Whether compaction applies.
    pub fn compact(&self) -> bool {
        self.cleanup_compact
    }

    /// Whether time/size retention applies.
    pub fn delete(&self) -> bool {
        self.cleanup_delete
    }

    /// The `cleanup.policy` value.
    pub fn cleanup_policy(&self) -> &'static str {
        match (self.cleanup_compact, self.cleanup_delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }

    /// Applies Kafka-named overrides on top of this config. Unknown keys and bad values
    /// are errors naming the key.
    pub fn with_overrides(&self, props: &BTreeMap<String, String>) -> Result<Self> {
        let mut c = self.clone();
        for (key, value) in props {
            c.set(key, value)?;
        }
        Ok(c)
    }

    /// Sets one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let v = value.trim();
        match key {
            "segment.bytes" => self.segment_bytes = parse_in(key, v, 14, i32::MAX as u64)?,
            "segment.ms" => self.segment_ms = parse_in(key, v, 1, i64::MAX)?,
            "segment.index.bytes" => self.segment_index_bytes = parse_in(key, v, 8, i32::MAX as u64)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_in(key, v, 0, i32::MAX as u64)?,
            "retention.ms" => self.retention_ms = parse_in(key, v, -1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = parse_in(key, v, -1, i64::MAX)?,
            "delete.retention.ms" => self.delete_retention_ms = parse_in(key, v, 0, i64::MAX)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_in(key, v, 0, i64::MAX)?,
            "flush.messages" => self.flush_messages = parse_in(key, v, 1, i64::MAX)?,
            "flush.ms" => self.flush_ms = parse_in(key, v, 0, i64::MAX)?,
            "max.message.bytes" => self.max_message_bytes = parse_in(key, v, 0, i32::MAX as usize)?,
            "min.insync.replicas" => self.min_insync_replicas = parse_in(key, v, 1, i32::MAX as u32)?,
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = v.parse().map_err(|_| invalid(key, v, "not a number"))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(invalid(key, v, "must be between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio = ratio;
            }
            "cleanup.policy" => {
                let (mut compact, mut delete) = (false, false);
                for policy in v.split(',').map(str::trim) {
                    match policy {
                        "compact" => compact = true,
                        "delete" => delete = true,
                        _ => {
                            return Err(invalid(key, v, "each policy must be 'compact' or 'delete'"));
                        }
                    }
                }
                if !compact && !delete {
                    return Err(invalid(key, v, "at least one policy is required"));
                }
                self.cleanup_compact = compact;
                self.cleanup_delete = delete;
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match v {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(key, v, "must be CreateTime or LogAppendTime")),
                }
            }
            _ => return Err(invalid(key, v, "unknown topic config")),
        }
        Ok(())
    }

    /// The effective value of every property, by Kafka name, as strings.
    pub fn to_props(&self) -> BTreeMap<String, String> {
        let pairs: [(&str, String); 15] = [
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            ("segment.index.bytes", self.segment_index_bytes.to_string()),
            ("index.interval.bytes", self.index_interval_bytes.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("cleanup.policy", self.cleanup_policy().to_string()),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            ("min.cleanable.dirty.ratio", self.min_cleanable_dirty_ratio.to_string()),
            ("min.compaction.lag.ms", self.min_compaction_lag_ms.to_string()),
            ("flush.messages", self.flush_messages.to_string()),
            ("flush.ms", self.flush_ms.to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("message.timestamp.type", self.message_timestamp_type.name().to_string()),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> LogError {
    LogError::InvalidConfig { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

fn parse_in<T>(key: &str, value: &str, min: T, max: T) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let parsed: T = value.parse().map_err(|_| invalid(key, value, "not an integer"))?;
    if parsed < min || parsed > max {
        return Err(invalid(key, value, &format!("must be between {min} and {max}")));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_props() {
        let props = LogConfig::default().to_props();
        assert_eq!(props.len(), TOPIC_CONFIG_KEYS.len());
        for key in TOPIC_CONFIG_KEYS {
            assert!(props.contains_key(*key), "{key}");
        }
        assert_eq!(LogConfig::default().with_overrides(&props).unwrap(), LogConfig::default());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (key, value) in [
            ("segment.bytes", "-5"),
            ("retention.ms", "soon"),
            ("cleanup.policy", "shred"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("message.timestamp.type", "Now"),
            ("no.such.key", "1"),
        ] {
            let err = LogConfig::default().with_overrides(&BTreeMap::from([(key.into(), value.into())])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
            assert_eq!(err.kafka_code(), super::super::error::codes::INVALID_CONFIG);
        }
    }
}
