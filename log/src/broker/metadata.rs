//! The broker's topic metadata: each topic's id, partition count and config overrides,
//! kept in `<data dir>/freshet-metadata.json` and replaced atomically on every change.
//! (The controller quorum replaces this file when replication arrives.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::storage::error::{IoContext, LogError, Result};

/// File name inside the data directory.
pub const METADATA_FILE: &str = "freshet-metadata.json";

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    /// The topic id (KIP-516), as 32 hex digits.
    pub id: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level config overrides, by Kafka name.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

impl TopicMetadata {
    /// The id as a UUID.
    pub fn uuid(&self) -> uuid::Uuid {
        uuid::Uuid::parse_str(&self.id).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MetadataFile {
    cluster_id: String,
    #[serde(default)]
    topics: BTreeMap<String, TopicMetadata>,
    /// The next idempotent producer id to hand out.
    #[serde(default)]
    next_producer_id: i64,
    /// Broker configs changed at run time, by resource name: `""` for the cluster-wide
    /// default, else a node id. Kafka property names and values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    dynamic_broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Topics deleted for clients whose partition directories may still exist. A topic
    /// moves here from `topics` in one atomic write, so a crash before its directories are
    /// gone leaves a deletion that the next start finishes, never a topic to adopt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    deleting_topics: BTreeMap<String, TopicMetadata>,
}

/// The topics, persisted.
#[derive(Debug)]
pub struct MetadataStore {
    path: PathBuf,
    state: MetadataFile,
}

impl MetadataStore {
    /// Loads the store from `data_dir`, or starts an empty one for `cluster_id` (from
    /// `meta.properties`). A damaged file, or one of another cluster, is an error naming
    /// it: topics are not guessed.
    pub fn open(data_dir: &Path, cluster_id: &str) -> Result<Self> {
        let path = data_dir.join(METADATA_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
                path: path.clone(),
                reason: format!("not valid topic metadata: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                MetadataFile { cluster_id: cluster_id.to_owned(), ..MetadataFile::default() }
            }
            Err(e) => return Err(e).at(&path),
        };
        if state.cluster_id != cluster_id {
            let reason = format!("holds topics of cluster {}, but meta.properties says {cluster_id}", state.cluster_id);
            return Err(LogError::Corrupt { path, reason });
        }
        let store = Self { path, state };
        store.persist()?;
        Ok(store)
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.state.cluster_id
    }

    /// A topic.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.state.topics.get(name)
    }

    /// All topics.
    pub fn topics(&self) -> &BTreeMap<String, TopicMetadata> {
        &self.state.topics
    }

    /// Adds a topic and persists.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMetadata> {
        let topic = TopicMetadata { id: uuid::Uuid::new_v4().simple().to_string(), partitions, configs };
        self.state.topics.insert(name.to_string(), topic.clone());
        self.persist()?;
        Ok(topic)
    }

    /// Hands out a producer id that was never used before, durably.
    pub fn allocate_producer_id(&mut self) -> Result<i64> {
        let id = self.state.next_producer_id;
        self.state.next_producer_id += 1;
        self.persist()?;
        Ok(id)
    }

    /// Deletes a topic for clients, durably: it moves to the deletions in progress until
    /// [`Self::finish_topic_deletion`]. `None` if there is no such topic.
    pub fn begin_topic_deletion(&mut self, name: &str) -> Result<Option<TopicMetadata>> {
        let Some(topic) = self.state.topics.remove(name) else { return Ok(None) };
        self.state.deleting_topics.insert(name.to_string(), topic.clone());
        self.persist()?;
        Ok(Some(topic))
    }

    /// Forgets a deletion whose partition directories are gone.
    pub fn finish_topic_deletion(&mut self, name: &str) -> Result<()> {
        if self.state.deleting_topics.remove(name).is_some() {
            self.persist()?;
        }
        Ok(())
    }

    /// Topics deleted whose directories may still be on disk.
    pub fn topics_being_deleted(&self) -> &BTreeMap<String, TopicMetadata> {
        &self.state.deleting_topics
    }

    /// Replaces a topic's config overrides and persists.
    pub fn set_configs(&mut self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        if let Some(topic) = self.state.topics.get_mut(name) {
            topic.configs = configs;
        }
        self.persist()
    }

    /// Broker configs set at run time for `resource` (`""`: the cluster-wide default).
    pub fn dynamic_broker_configs(&self, resource: &str) -> BTreeMap<String, String> {
        self.state.dynamic_broker_configs.get(resource).cloned().unwrap_or_default()
    }

    /// Replaces the run-time broker configs of `resource` and persists.
    pub fn set_dynamic_broker_configs(&mut self, resource: &str, configs: BTreeMap<String, String>) -> Result<()> {
        if configs.is_empty() {
            self.state.dynamic_broker_configs.remove(resource);
        } else {
            self.state.dynamic_broker_configs.insert(resource.to_string(), configs);
        }
        self.persist()
    }

    /// Sets a topic's partition count and persists.
    pub fn set_partitions(&mut self, name: &str, partitions: i32) -> Result<()> {
        if let Some(topic) = self.state.topics.get_mut(name) {
            topic.partitions = partitions;
        }
        self.persist()
    }

    fn persist(&self) -> Result<()> {
        let body = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| LogError::Corrupt { path: self.path.clone(), reason: e.to_string() })?;
        crate::storage::checkpoint::write_atomically(&self.path, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_a_reopen_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetadataStore::open(dir.path(), "c1").unwrap();
        let cluster = store.cluster_id().to_string();
        let t = store.create_topic("orders", 3, BTreeMap::from([("retention.ms".into(), "1000".into())])).unwrap();
        assert_ne!(t.uuid(), uuid::Uuid::nil());
        let other = store.create_topic("payments", 1, BTreeMap::new()).unwrap();
        assert_ne!(t.id, other.id);
        drop(store);
        let store = MetadataStore::open(dir.path(), "c1").unwrap();
        assert_eq!(store.cluster_id(), cluster);
        assert_eq!(store.topic("orders"), Some(&t));
        drop(store);
        let err = MetadataStore::open(dir.path(), "c2").unwrap_err().to_string();
        assert!(err.contains("c1") && err.contains("c2"), "another cluster's topics are refused: {err}");
        let mut store = MetadataStore::open(dir.path(), "c1").unwrap();
        assert_eq!(store.begin_topic_deletion("orders").unwrap(), Some(t.clone()));
        drop(store);
        // A deletion in progress survives a restart, and the topic stays gone for clients.
        let mut store = MetadataStore::open(dir.path(), "c1").unwrap();
        assert_eq!(store.topic("orders"), None);
        assert_eq!(store.topics_being_deleted().get("orders"), Some(&t));
        store.finish_topic_deletion("orders").unwrap();
        drop(store);
        assert!(MetadataStore::open(dir.path(), "c1").unwrap().topics_being_deleted().is_empty());
        std::fs::write(dir.path().join(METADATA_FILE), b"{ not json").unwrap();
        let err = MetadataStore::open(dir.path(), "c1").unwrap_err().to_string();
        assert!(err.contains(METADATA_FILE), "{err}");
    }
}
