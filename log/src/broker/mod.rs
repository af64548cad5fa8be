//! The broker: Kafka's APIs served from the storage engine.
//!
//! [`Broker`] holds the state every request needs (the [`LogManager`], the topic
//! [`metadata::MetadataStore`], the clock) and answers decoded requests; the network
//! layer in [`crate::server`] only moves frames. Handlers live in [`handlers`], one file
//! per API family.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use freshet_log::broker::{Broker, BrokerConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let running = Broker::start(BrokerConfig::embedded(dir.path())).await?;
//! println!("Kafka clients can connect to {}", running.local_addr());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod cluster_config;
pub mod config;
pub mod fetch_session;
pub mod group;
pub(crate) mod handlers;
pub mod metadata;
mod purgatory;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use cluster_config::{ClusterConfig, Listener, ProcessRole, QuorumVoter};
pub use config::BrokerConfig;
use metadata::{MetadataStore, TopicMetadata};

use crate::codes;
use crate::storage::error::Result;
use crate::storage::{LogConfig, LogManager, LogManagerConfig, MetaProperties, TopicPartition, validate_topic_name};
use crate::time::{Clock, SystemClock};

/// Checks the cluster settings, and refuses, naming the key, what is parsed and checked but
/// not built yet: a multi-node controller quorum and nodes without the broker role.
fn refuse_unbuilt_modes(config: &BrokerConfig) -> Result<()> {
    config.validate()?;
    let cluster = &config.cluster;
    let refuse = |key: &str, value: String, reason: &str| {
        Err(crate::storage::LogError::InvalidConfig { key: key.into(), value, reason: reason.into() })
    };
    if !cluster.has_role(ProcessRole::Broker) {
        return refuse(
            "process.roles",
            "controller".into(),
            "dedicated controllers are not available yet: use broker,controller",
        );
    }
    if !cluster.is_single_node() {
        let voters = cluster.voters.iter().map(|v| v.id.to_string()).collect::<Vec<_>>().join(",");
        return refuse(
            "controller.quorum.voters",
            voters,
            "a multi-node controller quorum is not available yet: leave it unset for a single node",
        );
    }
    Ok(())
}

/// Every partition on a single node is led by this node in this epoch.
pub const LEADER_EPOCH: i32 = 0;
/// The most partitions one CreateTopics or auto-creation may ask for.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;

/// A request-level failure: a Kafka error code and a message for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Kafka error code.
    pub code: i16,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(code: i16, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Shared broker state.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) logs: Arc<LogManager>,
    pub(crate) metadata: Mutex<MetadataStore>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Long-polling fetches, woken by appends to the partitions they wait on.
    pub(crate) fetch_purgatory: purgatory::FetchPurgatory,
    /// Host and port that Metadata advertises.
    pub(crate) advertised: Mutex<(String, u16)>,
    /// Incremental fetch sessions (KIP-227).
    pub(crate) fetch_sessions: Mutex<fetch_session::FetchSessions>,
    /// Topic-config defaults: the static config plus broker configs changed at run time.
    pub(crate) log_defaults: RwLock<LogConfig>,
    /// The group coordinator.
    pub(crate) groups: group::GroupService,
}

impl Broker {
    /// Opens the data directory and loads every partition (recovering after a crash).
    pub fn open(config: BrokerConfig) -> Result<Arc<Self>> {
        let data_dir = config.data_dir().to_path_buf();
        refuse_unbuilt_modes(&config)?;
        std::fs::create_dir_all(&data_dir)
            .map_err(|source| crate::storage::LogError::Io { path: data_dir.clone(), source })?;
        let meta = MetaProperties::ensure(&data_dir, config.node_id, None)?;
        let metadata = MetadataStore::open(&data_dir, &meta.cluster_id)?;
        let (cluster_wide, own) =
            (metadata.dynamic_broker_configs(""), metadata.dynamic_broker_configs(&config.node_id.to_string()));
        let defaults = config::effective_log_defaults(&config, &[&cluster_wide, &own]).unwrap_or_else(|e| {
            tracing::error!(error = %e, "stored run-time broker configs are invalid; using the static ones");
            config.log_manager.default_log_config.clone()
        });
        let mut topic_configs = HashMap::new();
        // A topic whose deletion a crash interrupted is loaded (then removed) with its own
        // config, so a compacted one is recovered as compacted.
        for (name, topic) in metadata.topics().iter().chain(metadata.topics_being_deleted()) {
            let config = defaults.with_overrides(&topic.configs).unwrap_or_else(|e| {
                tracing::error!(topic = %name, error = %e, "stored topic config is invalid; using the defaults");
                defaults.clone()
            });
            topic_configs.insert(name.clone(), config);
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut manager_config =
            LogManagerConfig { default_log_config: defaults.clone(), ..config.log_manager.clone() };
        manager_config.owned_root_files.push(metadata::METADATA_FILE.to_string());
        let (logs, report) = LogManager::open(manager_config, topic_configs, clock.clone())?;
        for q in report.all_quarantined() {
            tracing::warn!(file = %q.original.display(), moved_to = %q.moved_to.display(), reason = %q.reason, "moved aside at start");
        }
        let advertised =
            config.advertised.clone().unwrap_or_else(|| (config.listener.ip().to_string(), config.listener.port()));
        let fetch_sessions = Mutex::new(fetch_session::FetchSessions::new(config.fetch_session_slots));
        let mut group_config = config.group.clone();
        let offsets_topic = metadata.topic(group::OFFSETS_TOPIC).cloned();
        if let Some(topic) = &offsets_topic {
            // The group→partition hash must keep using the partition count the topic has.
            group_config.offsets_partitions = topic.partitions;
        }
        let groups = group::GroupService::new(group_config, clock.now_ms(), offsets_topic.is_some());
        let broker = Arc::new(Self {
            config,
            logs,
            metadata: Mutex::new(metadata),
            clock,
            fetch_purgatory: purgatory::FetchPurgatory::default(),
            advertised: Mutex::new(advertised),
            fetch_sessions,
            log_defaults: RwLock::new(defaults),
            groups,
        });
        broker.finish_topic_deletions()?;
        broker.reconcile()?;
        Ok(broker)
    }

    /// Removes the partition directories of topics whose deletion a crash interrupted.
    /// Runs before [`Self::reconcile`], which would otherwise adopt them as new topics.
    fn finish_topic_deletions(&self) -> Result<()> {
        let mut metadata = self.metadata.lock();
        for (name, topic) in metadata.topics_being_deleted().clone() {
            tracing::info!(topic = %name, partitions = topic.partitions, "finishing an interrupted topic deletion");
            self.delete_partition_logs(&name)?;
            metadata.finish_topic_deletion(&name)?;
        }
        Ok(())
    }

    /// Deletes every partition log of `topic` that exists, whatever the recorded count
    /// (a CreatePartitions cut short by a crash may have left more).
    fn delete_partition_logs(&self, topic: &str) -> Result<()> {
        for (tp, _) in self.logs.logs().into_iter().filter(|(tp, _)| tp.topic == topic) {
            self.logs.delete_log(&tp)?;
        }
        Ok(())
    }

    /// Makes the metadata and the partition directories agree: partitions on disk without
    /// metadata are adopted (so a data directory is never orphaned), and partitions in the
    /// metadata without a directory are created empty.
    fn reconcile(&self) -> Result<()> {
        let mut on_disk: BTreeMap<String, i32> = BTreeMap::new();
        for (tp, _) in self.logs.logs() {
            let count = on_disk.entry(tp.topic.clone()).or_insert(0);
            *count = (*count).max(tp.partition + 1);
        }
        let mut metadata = self.metadata.lock();
        for (topic, partitions) in &on_disk {
            match metadata.topic(topic) {
                None => {
                    tracing::warn!(topic, partitions, "adopting partitions found on disk without topic metadata");
                    metadata.create_topic(topic, *partitions, BTreeMap::new())?;
                }
                Some(t) if t.partitions < *partitions => metadata.set_partitions(topic, *partitions)?,
                Some(_) => {}
            }
        }
        for (topic, meta) in metadata.topics().clone() {
            for p in 0..meta.partitions {
                self.logs.get_or_create_log(&TopicPartition::new(topic.clone(), p))?;
            }
        }
        Ok(())
    }

    /// The log manager.
    pub fn log_manager(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A topic's metadata.
    pub fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.metadata.lock().topic(name).cloned()
    }

    /// Validates and creates a topic with `partitions` partitions and config overrides.
    /// With `validate_only`, checks everything and changes nothing.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMetadata, ApiError> {
        validate_topic_name(name).map_err(|e| ApiError::new(codes::INVALID_TOPIC_EXCEPTION, e))?;
        if !(1..=MAX_PARTITIONS_PER_TOPIC).contains(&partitions) {
            return Err(ApiError::new(
                codes::INVALID_PARTITIONS,
                format!("{partitions} partitions requested; between 1 and {MAX_PARTITIONS_PER_TOPIC} are allowed"),
            ));
        }
        // Under the metadata lock, so a concurrent change of the broker defaults cannot slip
        // between computing the config and recording the topic.
        let mut metadata = self.metadata.lock();
        let config = self.topic_config_for(&overrides)?;
        if metadata.topic(name).is_some() {
            return Err(ApiError::new(codes::TOPIC_ALREADY_EXISTS, format!("topic '{name}' already exists")));
        }
        if metadata.topics_being_deleted().contains_key(name) {
            return Err(ApiError::new(codes::TOPIC_ALREADY_EXISTS, format!("topic '{name}' is marked for deletion")));
        }
        if validate_only {
            return Ok(TopicMetadata { id: uuid::Uuid::nil().simple().to_string(), partitions, configs: overrides });
        }
        let topic = metadata.create_topic(name, partitions, overrides).map_err(storage_error)?;
        self.logs.set_topic_config(name, config);
        for p in 0..partitions {
            self.logs.get_or_create_log(&TopicPartition::new(name, p)).map_err(storage_error)?;
        }
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic in one durable step (its metadata moves to the deletions in
    /// progress, so it disappears for clients), then removes its partition directories and
    /// forgets the deletion. A crash in between is finished by the next start, and
    /// `create_topic` refuses the name while directories remain.
    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        refuse_internal_topic(name, "deleted")?;
        let Some(meta) = self.metadata.lock().begin_topic_deletion(name).map_err(storage_error)? else {
            return Err(ApiError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        // Without the metadata lock (produce and metadata requests need it): the topic is
        // gone for clients, and its name stays reserved until the directories are.
        self.delete_partition_logs(name).map_err(storage_error)?;
        self.metadata.lock().finish_topic_deletion(name).map_err(storage_error)?;
        tracing::info!(topic = name, partitions = meta.partitions, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<(), ApiError> {
        // The group -> partition hash depends on the count: every group would move.
        refuse_internal_topic(name, "given more partitions")?;
        let mut metadata = self.metadata.lock();
        let Some(meta) = metadata.topic(name).cloned() else {
            return Err(ApiError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        };
        if count <= meta.partitions || count > MAX_PARTITIONS_PER_TOPIC {
            return Err(ApiError::new(
                codes::INVALID_PARTITIONS,
                format!(
                    "topic '{name}' has {} partitions; the new count {count} must be larger (and at most {MAX_PARTITIONS_PER_TOPIC})",
                    meta.partitions
                ),
            ));
        }
        if validate_only {
            return Ok(());
        }
        for p in meta.partitions..count {
            self.logs.get_or_create_log(&TopicPartition::new(name, p)).map_err(storage_error)?;
        }
        metadata.set_partitions(name, count).map_err(storage_error)?;
        tracing::info!(topic = name, from = meta.partitions, to = count, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (validated first) and applies them to its logs.
    pub fn set_topic_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        // Its settings (compaction above all) are what keep the groups' offsets.
        refuse_internal_topic(name, "reconfigured")?;
        // Under the metadata lock, so a concurrent change of the broker defaults cannot slip
        // between computing the config and recording the topic.
        let mut metadata = self.metadata.lock();
        let config = self.topic_config_for(&overrides)?;
        if metadata.topic(name).is_none() {
            return Err(ApiError::new(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("topic '{name}' does not exist")));
        }
        if validate_only {
            return Ok(());
        }
        metadata.set_configs(name, overrides).map_err(storage_error)?;
        self.logs.set_topic_config(name, config);
        tracing::info!(topic = name, "changed topic config");
        Ok(())
    }

    /// The effective config for a topic with these overrides.
    pub(crate) fn topic_config_for(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, ApiError> {
        self.log_defaults
            .read()
            .with_overrides(overrides)
            .map_err(|e| ApiError::new(codes::INVALID_CONFIG, e.to_string()))
    }

    /// The broker configs changed at run time for `resource`: `""` for the cluster-wide
    /// defaults, or this broker's node id.
    pub fn dynamic_broker_configs(&self, resource: &str) -> BTreeMap<String, String> {
        self.metadata.lock().dynamic_broker_configs(resource)
    }

    /// Replaces the run-time broker configs of `resource` (`""`: cluster-wide, or this
    /// node's id), persists them and applies the new topic-config defaults to every topic
    /// that does not override them. Only the topic-config defaults can change at run time;
    /// other keys are refused, as Kafka refuses its static configs.
    pub fn set_dynamic_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let own = self.config.node_id.to_string();
        if !resource.is_empty() && resource != own {
            return Err(ApiError::new(codes::INVALID_REQUEST, format!("broker {resource} is not this broker ({own})")));
        }
        let fixed: Vec<&str> =
            configs.keys().map(String::as_str).filter(|k| !config::is_dynamic_broker_key(k)).collect();
        if !fixed.is_empty() {
            return Err(ApiError::new(
                codes::INVALID_REQUEST,
                format!("cannot update these configs dynamically: {}; set them in the config file", fixed.join(", ")),
            ));
        }
        let mut metadata = self.metadata.lock();
        let mut cluster_wide = metadata.dynamic_broker_configs("");
        let mut this_node = metadata.dynamic_broker_configs(&own);
        *(if resource.is_empty() { &mut cluster_wide } else { &mut this_node }) = configs.clone();
        let defaults = config::effective_log_defaults(&self.config, &[&cluster_wide, &this_node])
            .map_err(|e| ApiError::new(codes::INVALID_CONFIG, e.to_string()))?;
        let topics = metadata
            .topics()
            .iter()
            .map(|(name, topic)| {
                let config = defaults.with_overrides(&topic.configs).map_err(|e| {
                    ApiError::new(codes::INVALID_CONFIG, format!("topic '{name}' would get an invalid config: {e}"))
                })?;
                Ok((name.clone(), config))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        if validate_only {
            return Ok(());
        }
        metadata.set_dynamic_broker_configs(resource, configs).map_err(storage_error)?;
        *self.log_defaults.write() = defaults;
        for (name, config) in topics {
            self.logs.set_topic_config(&name, config);
        }
        tracing::info!(
            resource = if resource.is_empty() { "cluster default" } else { resource },
            "changed broker configs"
        );
        Ok(())
    }

    /// The current leader epoch of a partition. A single node leads every partition in
    /// epoch 0; replication moves this into the partition state.
    pub(crate) fn leader_epoch(&self, _tp: &TopicPartition) -> i32 {
        LEADER_EPOCH
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Wakes the long-polling fetches waiting on `tp`, which grew.
    pub(crate) fn notify_appended(&self, tp: &TopicPartition) {
        self.fetch_purgatory.appended(tp);
    }
}

/// Refuses an administrative change to `__consumer_offsets`, which the group coordinator
/// owns: `what` says what was asked ("deleted", "reconfigured", ...).
pub(crate) fn refuse_internal_topic(name: &str, what: &str) -> Result<(), ApiError> {
    if name != group::OFFSETS_TOPIC {
        return Ok(());
    }
    Err(ApiError::new(
        codes::INVALID_TOPIC_EXCEPTION,
        format!("'{name}' is internal and cannot be {what}: it holds the committed offsets of every consumer group"),
    ))
}

pub(crate) fn storage_error(e: crate::storage::LogError) -> ApiError {
    tracing::error!(error = %e, "storage error");
    ApiError::new(e.kafka_code(), e.to_string())
}
