//! Makes this broker's storage follow the metadata log (Kafka's BrokerMetadataPublisher):
//! every committed change to topics, partitions or configs is applied to the local logs.
//! A partition placed on this broker gets its directory (with `partition.metadata`
//! naming the topic id), a config change reaches the logs it covers, and a deleted topic's
//! directories are removed. Start-up also settles directories the image does not know:
//! those of deleted topics (a crash interrupted their removal) are removed, those of an
//! unknown topic are adopted, so data on disk is never dropped unasked.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use uuid::Uuid;

use super::{ApiError, Broker, config};
use crate::controller::records::ConfigResource;
use crate::controller::{ClusterImage, ControllerRequest, CreateTopic, TopicImage};
use crate::replication::Transition;
use crate::storage::error::Result;
use crate::storage::{LogConfig, TopicPartition, partition_metadata};

/// How soon a failed publish is tried again.
const PUBLISH_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The image last applied to storage.
#[derive(Debug)]
pub(crate) struct Published {
    image: ClusterImage,
    defaults: LogConfig,
}

impl Published {
    /// Nothing published yet: an offset below any image's, even the empty one's (-1).
    pub(crate) fn new(defaults: LogConfig) -> Self {
        Self { image: ClusterImage { offset: NOTHING_PUBLISHED, ..ClusterImage::new() }, defaults }
    }
}

pub(crate) const NOTHING_PUBLISHED: i64 = -2;

/// The topic-config defaults the image's broker configs give, or the static ones when
/// those are invalid (logged: a bad stored value must not stop the broker).
pub(crate) fn log_defaults(config: &super::BrokerConfig, image: &ClusterImage) -> LogConfig {
    let empty = BTreeMap::new();
    let cluster_wide = image.configs.get(&ConfigResource::Broker(None)).unwrap_or(&empty);
    let own = image.configs.get(&ConfigResource::Broker(Some(config.node_id))).unwrap_or(&empty);
    config::effective_log_defaults(config, &[cluster_wide, own]).unwrap_or_else(|e| {
        tracing::error!(error = %e, "stored run-time broker configs are invalid; using the static ones");
        config.log_manager.default_log_config.clone()
    })
}

/// A topic's log config: the defaults with its overrides, or the defaults when those are
/// invalid (logged).
pub(crate) fn topic_log_config(defaults: &LogConfig, image: &ClusterImage, name: &str) -> LogConfig {
    let Some(overrides) = image.configs.get(&ConfigResource::Topic(name.to_owned())) else {
        return defaults.clone();
    };
    defaults.with_overrides(overrides).unwrap_or_else(|e| {
        tracing::error!(topic = %name, error = %e, "stored topic config is invalid; using the defaults");
        defaults.clone()
    })
}

impl Broker {
    /// Applies what the metadata log committed since the last call. Calls are serialised.
    pub(crate) fn publish_metadata(&self) -> Result<()> {
        let mut published = self.published.lock();
        if self.quorum.image_offset() == published.image.offset {
            return Ok(());
        }
        let image = self.quorum.image();
        let defaults = log_defaults(&self.config, &image);
        let defaults_changed = defaults != published.defaults;
        if defaults_changed {
            *self.log_defaults.write() = defaults.clone();
        }
        // Removals first: a topic deleted and created again under its name must not find
        // the old one's directories.
        for gone in published.image.topics.values().filter(|t| !image.topics.contains_key(&t.id)) {
            self.remove_topic_logs(&image, &gone.name, gone.id)?;
        }
        for topic in image.topics.values() {
            let before = published.image.topics.get(&topic.id);
            let resource = ConfigResource::Topic(topic.name.clone());
            let configs_changed = image.configs.get(&resource) != published.image.configs.get(&resource);
            if defaults_changed || configs_changed || before != Some(topic) {
                self.apply_topic(&image, &defaults, topic)?;
            }
        }
        self.published_offset.store(image.offset, std::sync::atomic::Ordering::Release);
        *published = Published { image, defaults };
        Ok(())
    }

    fn apply_topic(&self, image: &ClusterImage, defaults: &LogConfig, topic: &TopicImage) -> Result<()> {
        let config = topic_log_config(defaults, image, &topic.name);
        let min_insync_replicas = config.min_insync_replicas as i32;
        self.logs.set_topic_config(&topic.name, config);
        let node = self.config.node_id;
        let now = self.now_ms();
        for (index, registration) in topic.partitions.iter() {
            if !registration.replicas.contains(&node) {
                self.remove_moved_replica(&TopicPartition::new(topic.name.clone(), *index), topic.id)?;
                continue;
            }
            let tp = TopicPartition::new(topic.name.clone(), *index);
            let log = self.name_partition_log(&tp, topic.id)?;
            let transition = self.replicas.apply_registration(
                &tp,
                topic.id,
                &log,
                registration.clone(),
                min_insync_replicas,
                now,
            )?;
            if topic.name == super::group::OFFSETS_TOPIC {
                match transition {
                    Transition::BecameLeader { .. } => self.groups.leadership_changed(*index, true),
                    Transition::BecameFollower { .. } | Transition::Removed => {
                        self.groups.leadership_changed(*index, false)
                    }
                    Transition::Updated | Transition::Stale => {}
                }
            }
        }
        Ok(())
    }

    /// Stops and deletes this broker's replica of `tp`, when it has one: a reassignment
    /// moved it to other brokers (Kafka's StopReplica with deletion).
    fn remove_moved_replica(&self, tp: &TopicPartition, topic_id: Uuid) -> Result<()> {
        let Some(log) = self.logs.get_log(tp) else { return Ok(()) };
        if partition_metadata::read_topic_id(log.read().dir())?.is_some_and(|id| id != topic_id) {
            return Ok(()); // another topic's data: not this one's to delete
        }
        if tp.topic == super::group::OFFSETS_TOPIC {
            self.groups.leadership_changed(tp.partition, false);
        }
        self.replicas.remove(tp);
        self.logs.delete_log(tp)?;
        tracing::info!(partition = %tp, "deleted a replica that moved to other brokers");
        Ok(())
    }

    /// The log of `tp`, created if need be, with `partition.metadata` naming `topic_id`.
    /// A directory naming another id is moved aside and the log starts afresh.
    fn name_partition_log(&self, tp: &TopicPartition, topic_id: Uuid) -> Result<crate::storage::manager::SharedLog> {
        {
            let log = self.logs.get_or_create_log(tp)?;
            let dir = log.read().dir().to_path_buf();
            match partition_metadata::read_topic_id(&dir)? {
                Some(id) if id == topic_id => return Ok(log),
                None => {
                    partition_metadata::write_topic_id(&dir, topic_id)?;
                    return Ok(log);
                }
                Some(other) => {
                    // Another topic's data under this name: keep it aside, start afresh.
                    let reason = format!("it holds topic id {other}, but the metadata log names {topic_id}");
                    tracing::error!(partition = %tp, %reason, "moving the partition directory aside");
                    self.replicas.remove(tp);
                    self.logs.quarantine_log(tp, &reason)?;
                }
            }
        }
        let log = self.logs.get_or_create_log(tp)?;
        partition_metadata::write_topic_id(log.read().dir(), topic_id)?;
        Ok(log)
    }

    /// Removes the local logs of a deleted topic. A log that names another topic id is
    /// kept, and so is one that names none while a topic of the same name exists: it may
    /// be that topic's, set up by a publish that failed before naming it.
    fn remove_topic_logs(&self, image: &ClusterImage, name: &str, id: Uuid) -> Result<()> {
        let name_reused = image.topic_ids.contains_key(name);
        for (tp, log) in self.logs.logs().into_iter().filter(|(tp, _)| tp.topic == name) {
            let recorded = partition_metadata::read_topic_id(log.read().dir())?;
            if recorded == Some(id) || (recorded.is_none() && !name_reused) {
                self.replicas.remove(&tp);
                self.logs.delete_log(&tp)?;
            }
        }
        tracing::info!(topic = name, %id, "removed the logs of a deleted topic");
        Ok(())
    }

    /// Settles the directories on disk that the image does not place here, before the first
    /// publish: removes those of deleted topics and adopts those of unknown ones.
    pub(crate) async fn settle_unknown_logs(&self) -> Result<(), ApiError> {
        let mut adopt: BTreeMap<String, (Option<Uuid>, i32)> = BTreeMap::new();
        for (tp, log) in self.logs.logs() {
            let dir = log.read().dir().to_path_buf();
            let recorded = partition_metadata::read_topic_id(&dir).map_err(super::storage_error)?;
            let known = self.with_image(|image| image.topic(&tp.topic).map(|t| t.id));
            let removed = self.with_image(|image| recorded.is_some_and(|id| image.removed_topics.contains(&id)));
            match (known, recorded) {
                _ if removed => {
                    tracing::info!(partition = %tp, "finishing the removal of a deleted topic's partition");
                    self.logs.delete_log(&tp).map_err(super::storage_error)?;
                }
                (Some(_), None) => {} // a directory of the previous format: the publisher names it
                (Some(id), Some(r)) if id == r => {}
                (Some(_), Some(_)) => {
                    let reason =
                        "it belongs to an earlier topic of the same name, which the metadata log does not know";
                    tracing::error!(partition = %tp, reason, "moving the partition directory aside");
                    self.logs.quarantine_log(&tp, reason).map_err(super::storage_error)?;
                }
                (None, recorded) => {
                    let entry = adopt.entry(tp.topic.clone()).or_insert((recorded, 0));
                    entry.1 = entry.1.max(tp.partition + 1);
                }
            }
        }
        for (name, (id, partitions)) in adopt {
            self.adopt_topic(&name, id, partitions).await?;
        }
        Ok(())
    }

    async fn adopt_topic(&self, name: &str, id: Option<Uuid>, partitions: i32) -> Result<(), ApiError> {
        tracing::warn!(topic = name, partitions, "adopting partitions found on disk without topic metadata");
        let node = self.config.node_id;
        let request = CreateTopic {
            name: name.to_owned(),
            topic_id: id.unwrap_or_else(Uuid::new_v4),
            partitions: Some(partitions),
            replication_factor: Some(1),
            configs: Vec::new(),
            assignments: vec![vec![node]; partitions as usize],
        };
        self.run_controller(ControllerRequest::CreateTopic(request)).await.map(|_| ())
    }

    /// The offset of the image last applied to the local logs. Never waits for a publish
    /// in progress (heartbeats ask for it).
    pub(crate) fn published_offset(&self) -> i64 {
        self.published_offset.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Applies each commit of the metadata log until `stop`. A failed publish (a full
    /// disk, say) is tried again every second until it succeeds.
    pub(crate) async fn run_metadata_publisher(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
        let mut committed = broker.quorum.committed_offset();
        let mut failing = false;
        loop {
            tokio::select! {
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
                changed = committed.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(PUBLISH_RETRY), if failing => {}
            }
            let publisher = broker.clone();
            let applied = tokio::task::spawn_blocking(move || publisher.publish_metadata()).await;
            failing = match applied {
                Ok(Ok(())) => false,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "applying metadata to storage failed; retrying");
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "the metadata publisher task failed; retrying");
                    true
                }
            };
        }
    }
}
