//! What flows between operators: [`Record`] (key, value, timestamp, headers), the
//! [`Change`] a table forwards (new and old value), and where the record being processed
//! came from ([`RecordContext`]).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// Record headers, in order. Values may be null.
pub type Headers = Vec<(String, Option<Bytes>)>;

/// A keyed record inside a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in ms: what the timestamp extractor said for input records; operators
    /// keep it, and sinks write it.
    pub timestamp: i64,
    /// Headers, forwarded unchanged unless an operator replaces them.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record { key, value, timestamp, headers: Vec::new() }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record { key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with one more header.
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }
}

/// A table update: the key's new value and the one it replaces. `None` is absent
/// (a delete, or a key seen for the first time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value now.
    pub new: Option<V>,
    /// The value before.
    pub old: Option<V>,
}

impl<V> Change<V> {
    /// A change from `old` to `new`.
    pub fn new(new: Option<V>, old: Option<V>) -> Self {
        Change { new, old }
    }
}

/// Where the record being processed was read: its topic, partition and offset. Inside a
/// punctuation there is no input record, and `topic` is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordContext {
    /// The input topic.
    pub topic: Option<Arc<str>>,
    /// The input partition (-1 without an input record).
    pub partition: i32,
    /// The input offset (-1 without an input record).
    pub offset: i64,
}

/// A task: one partition of one sub-topology. Kafka's names, `<sub-topology>_<partition>`,
/// are used in the state directory and in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology (numbered from 0 in topology order).
    pub subtopology: u32,
    /// The input partition.
    pub partition: i32,
}

impl TaskId {
    /// The task for `partition` of `subtopology`.
    pub fn new(subtopology: u32, partition: i32) -> Self {
        TaskId { subtopology, partition }
    }

    /// Parses `<sub-topology>_<partition>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (s, p) = text.split_once('_')?;
        Some(TaskId { subtopology: s.parse().ok()?, partition: p.parse().ok()? })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_print_and_parse_as_kafka_names_them() {
        let id = TaskId::new(1, 12);
        assert_eq!(id.to_string(), "1_12");
        assert_eq!(TaskId::parse("1_12"), Some(id));
        assert_eq!(TaskId::parse("1-12"), None);
        assert_eq!(TaskId::parse("x_1"), None);
    }

    #[test]
    fn records_keep_timestamp_and_headers_through_key_and_value_changes() {
        let r = Record::new("k", 1, 5).with_header("h", None).with_value("one").with_key(7).with_timestamp(9);
        assert_eq!(r, Record { key: 7, value: "one", timestamp: 9, headers: vec![("h".into(), None)] });
    }
}
