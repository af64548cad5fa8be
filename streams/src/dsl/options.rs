//! The option objects of the DSL, as Kafka names them: how a stream is read ([`Consumed`]),
//! written ([`Produced`]), grouped ([`Grouped`]), repartitioned ([`Repartitioned`]) and
//! materialized ([`Materialized`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::processor::nodes::{RecordTimestamp, TimestampExtractor, TimestampExtractorRef};
use crate::state::StoreKind;

/// How a source reads its topic: the serdes and the timestamp extractor.
#[derive(Clone)]
pub struct Consumed<KS, VS> {
    pub(crate) keys: KS,
    pub(crate) values: VS,
    pub(crate) extractor: TimestampExtractorRef,
    pub(crate) name: Option<String>,
}

impl<KS: std::fmt::Debug, VS: std::fmt::Debug> std::fmt::Debug for Consumed<KS, VS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumed").field("keys", &self.keys).field("values", &self.values).finish()
    }
}

impl<KS, VS> Consumed<KS, VS> {
    /// Reads keys with `keys` and values with `values`; timestamps as the records carry them.
    pub fn with(keys: KS, values: VS) -> Self {
        Consumed { keys, values, extractor: Arc::new(RecordTimestamp), name: None }
    }

    /// Takes event time from `extractor`.
    pub fn with_timestamp_extractor(mut self, extractor: impl TimestampExtractor + 'static) -> Self {
        self.extractor = Arc::new(extractor);
        self
    }

    /// Names the source operator.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a sink writes its topic.
#[derive(Debug, Clone)]
pub struct Produced<KS, VS> {
    pub(crate) keys: KS,
    pub(crate) values: VS,
    pub(crate) name: Option<String>,
}

impl<KS, VS> Produced<KS, VS> {
    /// Writes keys with `keys` and values with `values`.
    pub fn with(keys: KS, values: VS) -> Self {
        Produced { keys, values, name: None }
    }

    /// Names the sink operator.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How a grouped stream is written to its repartition topic, if it needs one.
#[derive(Debug, Clone)]
pub struct Grouped<KS, VS> {
    pub(crate) keys: KS,
    pub(crate) values: VS,
    pub(crate) name: Option<String>,
}

impl<KS, VS> Grouped<KS, VS> {
    /// Keys and values through `keys` and `values`.
    pub fn with(keys: KS, values: VS) -> Self {
        Grouped { keys, values, name: None }
    }

    /// Names the repartition topic `<application.id>-<name>-repartition`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// How `KStream::repartition` writes its topic.
#[derive(Debug, Clone)]
pub struct Repartitioned<KS, VS> {
    pub(crate) keys: KS,
    pub(crate) values: VS,
    pub(crate) name: Option<String>,
    pub(crate) partitions: Option<i32>,
}

impl<KS, VS> Repartitioned<KS, VS> {
    /// Keys and values through `keys` and `values`.
    pub fn with(keys: KS, values: VS) -> Self {
        Repartitioned { keys, values, name: None, partitions: None }
    }

    /// Names the topic `<application.id>-<name>-repartition`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The topic's partition count (default: that of the upstream source topics).
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }
}

/// No serde given: the operation takes it from upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSerde;

/// How a table or aggregation is kept: its store's name (which makes it queryable), where
/// it lives, and whether it has a cache and a changelog. Serdes are given where the
/// operation cannot infer them.
#[derive(Debug, Clone)]
pub struct Materialized<KS = NoSerde, VS = NoSerde> {
    pub(crate) name: Option<String>,
    pub(crate) kind: StoreKind,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) changelog_config: BTreeMap<String, String>,
    pub(crate) keys: KS,
    pub(crate) values: VS,
}

impl Default for Materialized {
    fn default() -> Self {
        Materialized::new()
    }
}

impl Materialized {
    /// An unnamed store (an internal name is generated; it cannot be queried).
    pub fn new() -> Self {
        Materialized {
            name: None,
            kind: StoreKind::Persistent,
            caching: true,
            logging: true,
            changelog_config: BTreeMap::new(),
            keys: NoSerde,
            values: NoSerde,
        }
    }

    /// The store `name`: queryable, and its changelog is `<application.id>-<name>-changelog`.
    pub fn as_(name: impl Into<String>) -> Self {
        Materialized { name: Some(name.into()), ..Materialized::new() }
    }
}

impl<KS, VS> Materialized<KS, VS> {
    /// Keys through `keys`.
    pub fn with_key_serde<S>(self, keys: S) -> Materialized<S, VS> {
        Materialized {
            name: self.name,
            kind: self.kind,
            caching: self.caching,
            logging: self.logging,
            changelog_config: self.changelog_config,
            keys,
            values: self.values,
        }
    }

    /// Values through `values`.
    pub fn with_value_serde<S>(self, values: S) -> Materialized<KS, S> {
        Materialized {
            name: self.name,
            kind: self.kind,
            caching: self.caching,
            logging: self.logging,
            changelog_config: self.changelog_config,
            keys: self.keys,
            values,
        }
    }

    /// Keeps the store in memory instead of RocksDB.
    pub fn in_memory(mut self) -> Self {
        self.kind = StoreKind::InMemory;
        self
    }

    /// The record cache (on by default).
    pub fn with_caching(mut self, on: bool) -> Self {
        self.caching = on;
        self
    }

    /// The changelog (on by default).
    pub fn with_logging(mut self, on: bool) -> Self {
        self.logging = on;
        self
    }

    /// A topic config for the changelog.
    pub fn with_changelog_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.changelog_config.insert(key.into(), value.into());
        self
    }
}
