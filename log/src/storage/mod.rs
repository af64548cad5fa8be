//! The storage engine: how a partition's records live on disk.
//!
//! ```text
//! <data dir>/
//!   .lock                              held by the process that owns the directory
//!   .freshet_cleanshutdown             present only after a clean shutdown
//!   recovery-point-offset-checkpoint   per partition: offsets known to be fsynced
//!   log-start-offset-checkpoint        per partition: first offset still readable
//!   cleaner-offset-checkpoint          per partition: where the dirty (uncleaned) part begins
//!   quarantine/                        data that could not be parsed, moved aside
//!   orders-0/                          one directory per partition
//!     00000000000000000000.log         RecordBatch v2 bytes, exactly as produced
//!     00000000000000000000.index       sparse offset -> position
//!     00000000000000000000.timeindex   sparse max timestamp -> offset
//!     leader-epoch-checkpoint
//! ```
//!
//! [`LogManager`] owns a data directory; [`Log`] is one partition; [`LogSegment`] one
//! file set; [`cleaner`] compacts `cleanup.policy=compact` logs.

pub mod checkpoint;
pub mod cleaner;
pub mod config;
pub mod error;
pub mod index;
pub mod leader_epoch;
mod load;
#[allow(clippy::module_inception)]
mod log;
pub mod manager;
pub mod meta_properties;
pub mod partition_metadata;
pub mod producer_state;
pub mod quarantine;
mod retention;
pub mod segment;
mod validator;

pub use cleaner::{CleanStage, CleanerConfig, CleanerStats, LogCleaner};
pub use config::{LogConfig, TopicCompression};
pub use error::{LogError, Result};
pub use leader_epoch::{EpochEntry, EpochHistory, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use log::{AppendOrigin, FetchDataInfo, FlushPlan, LoadReport, Log, LogAppendInfo, LogOpenOptions};
pub use manager::{LogManager, LogManagerConfig};
pub use meta_properties::MetaProperties;
pub use producer_state::{ProducerStateManager, SequenceError};
pub use quarantine::{Quarantine, Quarantined};
pub use segment::{FileRange, LogSegment};

pub use crate::topic_partition::TopicPartition;

/// A partition's directory is `<topic>-<partition>`.
impl TopicPartition {
    /// The directory name, `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a partition directory name. Topic names may contain `-`, so the partition
    /// is what follows the last one.
    pub fn parse_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        validate_topic_name(topic).ok()?;
        Some(Self::new(topic, partition.parse().ok()?))
    }
}

/// Longest topic name Kafka allows.
pub const MAX_TOPIC_NAME_CHARS: usize = 249;

/// Checks a topic name against Kafka's rules: 1-249 characters of `[a-zA-Z0-9._-]`, and
/// not `.` or `..`.
pub fn validate_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > MAX_TOPIC_NAME_CHARS {
        return Err(format!("topic name is {} characters; the limit is {MAX_TOPIC_NAME_CHARS}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dir_names_parse_like_kafka() {
        assert_eq!(TopicPartition::parse_dir_name("my-topic-12"), Some(TopicPartition::new("my-topic", 12)));
        assert_eq!(
            TopicPartition::parse_dir_name("__consumer_offsets-49"),
            Some(TopicPartition::new("__consumer_offsets", 49))
        );
        for bad in ["nodash", "topic-", "topic-x1", "-3", "bad topic-1", "quarantine", "lost+found"] {
            assert_eq!(TopicPartition::parse_dir_name(bad), None, "{bad}");
        }
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
