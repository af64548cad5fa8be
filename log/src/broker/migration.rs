//! Moves the topic metadata of the earlier single-node format (`freshet-metadata.json`)
//! into the metadata log on first start, as one Raft entry: topics with their ids and
//! configs, every partition on this node, run-time broker configs and the producer-id
//! counter. Deletions that file had in progress are finished first. The file is then
//! renamed to `freshet-metadata.json.migrated` and kept, never read again.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use uuid::Uuid;

use crate::controller::quorum::MetadataQuorum;
use crate::controller::records::{ConfigResource, MetadataRecord, PartitionRecord};
use crate::controller::{ClusterImage, PartitionRegistration};
use crate::storage::TopicPartition;
use crate::storage::error::{IoContext, LogError, Result};

/// The earlier format's file, inside the data directory.
pub const LEGACY_METADATA_FILE: &str = "freshet-metadata.json";
/// What it is renamed to once migrated.
pub const MIGRATED_METADATA_FILE: &str = "freshet-metadata.json.migrated";

#[derive(Debug, Deserialize)]
struct LegacyTopic {
    id: String,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct LegacyFile {
    cluster_id: String,
    #[serde(default)]
    topics: BTreeMap<String, LegacyTopic>,
    #[serde(default)]
    next_producer_id: i64,
    #[serde(default)]
    dynamic_broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    deleting_topics: BTreeMap<String, LegacyTopic>,
}

/// Migrates `data_dir`'s legacy metadata, if it has any, into `quorum`. A damaged file,
/// or one of another cluster, is an error naming it: topics are not guessed.
pub(crate) async fn migrate(data_dir: &Path, quorum: &MetadataQuorum, node_id: i32, cluster_id: &str) -> Result<()> {
    let path = data_dir.join(LEGACY_METADATA_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(&path),
    };
    let corrupt = |reason: String| LogError::Corrupt { path: path.clone(), reason };
    let legacy: LegacyFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not valid topic metadata: {e}")))?;
    if !quorum.voter_addresses().is_empty() {
        return Err(corrupt(
            "is the single-node format: start this node once as a single node (without controller.quorum.voters) \
             to move it into the metadata log, then join it to the cluster"
                .into(),
        ));
    }
    if legacy.cluster_id != cluster_id {
        return Err(corrupt(format!(
            "holds topics of cluster {}, but meta.properties says {cluster_id}",
            legacy.cluster_id
        )));
    }
    // A crash after the append but before the rename leaves both: the log has it all.
    if quorum.image().offset < 0 {
        for name in legacy.deleting_topics.keys() {
            remove_partition_dirs(data_dir, name)?;
        }
        let records = records(&legacy, &partition_counts(data_dir)?, node_id, &path)?;
        check_replays(&records, &path)?;
        let topics = legacy.topics.len();
        quorum.append(records).await.map_err(|e| corrupt(format!("could not write the metadata log: {e}")))?;
        tracing::info!(path = %path.display(), topics, "moved topic metadata into the metadata log");
    }
    let migrated = data_dir.join(MIGRATED_METADATA_FILE);
    std::fs::rename(&path, &migrated).at(&path)?;
    crate::storage::checkpoint::sync_dir(data_dir)
}

fn records(
    legacy: &LegacyFile,
    on_disk: &BTreeMap<String, i32>,
    node_id: i32,
    path: &Path,
) -> Result<Vec<MetadataRecord>> {
    let mut records = Vec::new();
    for (name, topic) in &legacy.topics {
        let topic_id = Uuid::parse_str(&topic.id).map_err(|e| LogError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("topic {name} has id '{}': {e}", topic.id),
        })?;
        records.push(MetadataRecord::Topic { name: name.clone(), topic_id });
        for (key, value) in &topic.configs {
            let resource = ConfigResource::Topic(name.clone());
            records.push(MetadataRecord::Config { resource, name: key.clone(), value: Some(value.clone()) });
        }
        // A CreatePartitions that a crash cut short may have left more directories.
        let partitions = topic.partitions.max(on_disk.get(name).copied().unwrap_or(0));
        for partition in 0..partitions {
            let registration = PartitionRegistration {
                replicas: vec![node_id],
                isr: vec![node_id],
                elr: Vec::new(),
                leader: node_id,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            };
            records.push(MetadataRecord::Partition(PartitionRecord { topic_id, partition, registration }));
        }
    }
    for (resource, configs) in &legacy.dynamic_broker_configs {
        let resource = ConfigResource::Broker(resource.parse().ok());
        for (key, value) in configs {
            let record =
                MetadataRecord::Config { resource: resource.clone(), name: key.clone(), value: Some(value.clone()) };
            records.push(record);
        }
    }
    if legacy.next_producer_id > 0 {
        records.push(MetadataRecord::ProducerIds {
            broker_id: node_id,
            broker_epoch: -1,
            next_producer_id: legacy.next_producer_id,
        });
    }
    Ok(records)
}

/// The records must replay cleanly (ids unique and well formed) before they are written.
fn check_replays(records: &[MetadataRecord], path: &Path) -> Result<()> {
    let mut image = ClusterImage::new();
    for (offset, record) in records.iter().enumerate() {
        image
            .apply(offset as i64, record)
            .map_err(|e| LogError::Corrupt { path: path.to_path_buf(), reason: e.reason })?;
    }
    Ok(())
}

/// Partition directories in `data_dir`: topic → highest partition + 1.
fn partition_counts(data_dir: &Path) -> Result<BTreeMap<String, i32>> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(data_dir).at(data_dir)? {
        let entry = entry.at(data_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(tp) = TopicPartition::parse_dir_name(&name).filter(|_| entry.path().is_dir()) {
            let count = counts.entry(tp.topic).or_insert(0);
            *count = (*count).max(tp.partition + 1);
        }
    }
    Ok(counts)
}

fn remove_partition_dirs(data_dir: &Path, topic: &str) -> Result<()> {
    for entry in std::fs::read_dir(data_dir).at(data_dir)? {
        let entry = entry.at(data_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if TopicPartition::parse_dir_name(&name).is_some_and(|tp| tp.topic == topic) && entry.path().is_dir() {
            tracing::info!(dir = %entry.path().display(), "finishing an interrupted topic deletion");
            std::fs::remove_dir_all(entry.path()).at(entry.path())?;
        }
    }
    Ok(())
}
