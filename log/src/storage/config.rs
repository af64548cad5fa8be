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
use crate::record::{Compression, TimestampType};

/// `compression.type` of a topic: keep what the producer sent, or store every batch with
/// one codec, recompressing those that arrive with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    /// `producer`: batches are stored as sent.
    Producer,
    /// `uncompressed`, `gzip`, `snappy`, `lz4` or `zstd`.
    Codec(Compression),
}

impl TopicCompression {
    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Codec(Compression::None) => "uncompressed",
            Self::Codec(codec) => codec.name(),
        }
    }

    /// The codec a batch sent with `sent` is stored with.
    pub fn target(self, sent: Compression) -> Compression {
        match self {
            Self::Producer => sent,
            Self::Codec(codec) => codec,
        }
    }
}

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
    /// `compression.type`.
    pub compression_type: TopicCompression,
    /// `max.compaction.lag.ms`: a record stays uncompacted at most this long.
    pub max_compaction_lag_ms: i64,
    /// `message.timestamp.before.max.ms` (KIP-937): the furthest a CreateTime timestamp
    /// may lie in the past.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (KIP-937): the furthest it may lie in the future.
    pub message_timestamp_after_max_ms: i64,
    /// `segment.jitter.ms`: up to this much is taken off `segment.ms` per segment, so the
    /// partitions of a topic do not all roll at once.
    pub segment_jitter_ms: i64,
    /// `preallocate`: reserve `segment.bytes` of disk when a segment is created.
    pub preallocate: bool,
    /// `file.delete.delay.ms`: how long a deleted segment's files wait (renamed
    /// `.deleted`) before they are removed, so reads in progress can finish.
    pub file_delete_delay_ms: i64,
    /// `unclean.leader.election.enable` (used by replication; stored here with the rest).
    pub unclean_leader_election_enable: bool,
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
            compression_type: TopicCompression::Producer,
            max_compaction_lag_ms: i64::MAX,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            segment_jitter_ms: 0,
            preallocate: false,
            file_delete_delay_ms: 60_000,
            unclean_leader_election_enable: false,
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
    "compression.type",
    "max.compaction.lag.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "segment.jitter.ms",
    "preallocate",
    "file.delete.delay.ms",
    "unclean.leader.election.enable",
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

    /// How long an active segment may stay open: `segment.ms`, or `max.compaction.lag.ms`
    /// when that is shorter on a compacted topic (a record in the active segment cannot be
    /// cleaned, so the segment must roll for the lag to hold).
    pub fn max_segment_ms(&self) -> i64 {
        if self.compact() { self.segment_ms.min(self.max_compaction_lag_ms) } else { self.segment_ms }
    }

    /// The most a batch's records may inflate to when decompressed: a batch inflating
    /// beyond a whole segment is either hostile or useless.
    pub fn max_decompressed_bytes(&self) -> usize {
        (self.segment_bytes as usize).max(self.max_message_bytes.saturating_mul(16))
    }

    /// The largest stored batch a reader believes: anything longer is a damaged length
    /// field. Batches written by followers or the cleaner may exceed `max.message.bytes` a
    /// little, and the config may have shrunk since they were written; a segment bounds
    /// them all.
    pub fn max_batch_bytes(&self) -> usize {
        self.segment_bytes.max(self.max_message_bytes as u64).min(i32::MAX as u64) as usize
    }

    /// Applies Kafka-named overrides on top of this config. Unknown keys and bad values
    /// are errors naming the key.
    pub fn with_overrides(&self, props: &BTreeMap<String, String>) -> Result<Self> {
        let mut c = self.clone();
        for (key, value) in props {
            c.set(key, value)?;
        }
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            // As Kafka's LogConfig.validate: a record could never be both old enough and due.
            let value = c.max_compaction_lag_ms.to_string();
            return Err(invalid("max.compaction.lag.ms", &value, "must not be less than min.compaction.lag.ms"));
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
            "compression.type" => {
                self.compression_type = match v {
                    "producer" => TopicCompression::Producer,
                    "uncompressed" => TopicCompression::Codec(Compression::None),
                    other => match Compression::from_name(other) {
                        Some(codec) if codec != Compression::None => TopicCompression::Codec(codec),
                        _ => {
                            return Err(invalid(key, v, "must be uncompressed, gzip, snappy, lz4, zstd or producer"));
                        }
                    },
                }
            }
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parse_in(key, v, 1, i64::MAX)?,
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms = parse_in(key, v, 0, i64::MAX)?,
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms = parse_in(key, v, 0, i64::MAX)?,
            "segment.jitter.ms" => self.segment_jitter_ms = parse_in(key, v, 0, i64::MAX)?,
            "preallocate" => self.preallocate = parse_bool(key, v)?,
            "file.delete.delay.ms" => self.file_delete_delay_ms = parse_in(key, v, 0, i64::MAX)?,
            "unclean.leader.election.enable" => self.unclean_leader_election_enable = parse_bool(key, v)?,
            _ => return Err(invalid(key, v, "unknown topic config")),
        }
        Ok(())
    }

    /// The effective value of every property, by Kafka name, as strings.
    pub fn to_props(&self) -> BTreeMap<String, String> {
        let pairs: [(&str, String); 23] = [
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
            ("compression.type", self.compression_type.name().to_string()),
            ("max.compaction.lag.ms", self.max_compaction_lag_ms.to_string()),
            ("message.timestamp.before.max.ms", self.message_timestamp_before_max_ms.to_string()),
            ("message.timestamp.after.max.ms", self.message_timestamp_after_max_ms.to_string()),
            ("segment.jitter.ms", self.segment_jitter_ms.to_string()),
            ("preallocate", self.preallocate.to_string()),
            ("file.delete.delay.ms", self.file_delete_delay_ms.to_string()),
            ("unclean.leader.election.enable", self.unclean_leader_election_enable.to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> LogError {
    LogError::InvalidConfig { key: key.to_string(), value: value.to_string(), reason: reason.to_string() }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "must be true or false")),
    }
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
        let set = BTreeMap::from([
            ("compression.type".to_string(), "zstd".to_string()),
            ("preallocate".to_string(), "TRUE".to_string()),
            ("message.timestamp.after.max.ms".to_string(), "3600000".to_string()),
        ]);
        let c = LogConfig::default().with_overrides(&set).unwrap();
        assert_eq!(c.compression_type, TopicCompression::Codec(Compression::Zstd));
        assert!(c.preallocate);
        assert_eq!(c.to_props()["compression.type"], "zstd");
        assert_eq!(c.with_overrides(&c.to_props()).unwrap(), c);
        let plain = BTreeMap::from([("compression.type".to_string(), "uncompressed".to_string())]);
        let plain = LogConfig::default().with_overrides(&plain).unwrap();
        assert_eq!(plain.compression_type.target(Compression::Lz4), Compression::None);
        assert_eq!(LogConfig::default().compression_type.target(Compression::Lz4), Compression::Lz4);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (key, value) in [
            ("segment.bytes", "-5"),
            ("retention.ms", "soon"),
            ("cleanup.policy", "shred"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("message.timestamp.type", "Now"),
            ("compression.type", "brotli"),
            ("compression.type", "none"),
            ("max.compaction.lag.ms", "0"),
            ("message.timestamp.before.max.ms", "-1"),
            ("preallocate", "yes"),
            ("unclean.leader.election.enable", "1"),
            ("no.such.key", "1"),
        ] {
            let err = LogConfig::default().with_overrides(&BTreeMap::from([(key.into(), value.into())])).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
            assert_eq!(err.kafka_code(), super::super::error::codes::INVALID_CONFIG);
        }
    }

    #[test]
    fn a_max_compaction_lag_below_the_min_is_refused() {
        let props = BTreeMap::from([
            ("min.compaction.lag.ms".to_string(), "60000".to_string()),
            ("max.compaction.lag.ms".to_string(), "1000".to_string()),
        ]);
        let err = LogConfig::default().with_overrides(&props).unwrap_err();
        assert!(err.to_string().contains("max.compaction.lag.ms"), "{err}");
    }
}
