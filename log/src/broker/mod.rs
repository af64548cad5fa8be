//! The broker: Kafka's APIs served from the storage engine.
//!
//! [`Broker`] holds the state every request needs (the [`LogManager`], the metadata
//! quorum whose image says what the cluster holds, the clock) and answers decoded
//! requests; the network layer in [`crate::server`] only moves frames. Handlers live in
//! [`handlers`], one file per API family.
//!
//! Topic metadata lives in the metadata log (`__cluster_metadata-0` in the data
//! directory), replicated by the controller quorum. An administrative request becomes
//! records through the active controller ([`ControllerService`]); once they commit, the
//! [`metadata_publisher`] applies them to the local logs. `freshet server` runs a quorum
//! of one voter in-process, so a single node needs no set-up.
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

mod admin_manager;
pub mod cluster_config;
pub mod config;
mod controller_channel;
pub mod fetch_session;
pub mod group;
pub(crate) mod handlers;
pub mod lifecycle;
pub mod metadata_cache;
mod metadata_publisher;
pub mod migration;
mod purgatory;
pub mod replica_manager;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use admin_manager::NewTopic;
pub use cluster_config::{ClusterConfig, Listener, ProcessRole, QuorumVoter};
pub use config::BrokerConfig;
pub use lifecycle::BrokerLifecycleManager;
pub use metadata_cache::TopicMetadata;
pub use replica_manager::{Partition, ReplicaManager};

use crate::codes;
use crate::controller::quorum::{MetadataQuorum, QuorumConfig, QuorumError};
use crate::controller::service::ControllerService;
use crate::controller::{ControllerConfig, ControllerError, ControllerReply, ControllerRequest};
use crate::storage::error::{LogError, Result};
use crate::storage::{LogConfig, LogManager, LogManagerConfig, MetaProperties};
use crate::time::{Clock, SystemClock};

/// The metadata log's directory inside the data directory (Kafka's name).
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

/// Checks the cluster settings, and refuses, naming the key, a node without the broker
/// role, which [`crate::server::RunningController`] runs instead.
fn refuse_controller_only(config: &BrokerConfig) -> Result<()> {
    config.validate()?;
    let cluster = &config.cluster;
    if cluster.has_role(ProcessRole::Broker) {
        return Ok(());
    }
    let roles = cluster.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect::<Vec<_>>().join(",");
    let reason =
        "a controller-only node runs no broker: start it with RunningController::start, as freshet server does";
    Err(LogError::InvalidConfig { key: "process.roles".into(), value: roles, reason: reason.into() })
}

/// How long an administrative request waits for the active controller.
const CONTROLLER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    pub(crate) cluster_id: String,
    /// The metadata log, and the image it commits.
    pub(crate) quorum: Arc<MetadataQuorum>,
    /// The way to the active controller, here or on another node.
    pub(crate) controller: controller_channel::ControllerChannel,
    /// Registration, heartbeats and producer-id blocks.
    pub(crate) lifecycle: BrokerLifecycleManager,
    /// The image last applied to the local logs.
    published: Mutex<metadata_publisher::Published>,
    /// Its offset, readable while a publish is under way.
    published_offset: std::sync::atomic::AtomicI64,
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
    /// The partitions this broker holds replicas of.
    pub(crate) replicas: ReplicaManager,
}

impl Broker {
    /// Opens the data directory: starts the metadata quorum, migrates a data directory of
    /// the earlier format, loads every partition (recovering after a crash), registers with
    /// the controller and applies the metadata log to the local logs.
    pub async fn open(config: BrokerConfig) -> Result<Arc<Self>> {
        refuse_controller_only(&config)?;
        let meta = prepare_data_dir(&config)?;
        let quorum = Arc::new(start_quorum(&config, &meta.cluster_id).await?);
        let opened = Self::open_over(config, meta, quorum.clone()).await;
        if opened.is_err() {
            quorum.shutdown().await;
        }
        opened
    }

    async fn open_over(config: BrokerConfig, meta: MetaProperties, quorum: Arc<MetadataQuorum>) -> Result<Arc<Self>> {
        let data_dir = config.data_dir().to_path_buf();
        migration::migrate(&data_dir, &quorum, config.node_id, &meta.cluster_id).await?;
        let image = quorum.image();
        let defaults = metadata_publisher::log_defaults(&config, &image);
        // Loaded with their own configs, so a compacted topic is recovered as compacted
        // (a deleted one whose removal a crash interrupted included: it gets the defaults).
        let topic_configs: HashMap<String, LogConfig> = image
            .topic_ids
            .keys()
            .map(|name| (name.clone(), metadata_publisher::topic_log_config(&defaults, &image, name)))
            .collect();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut manager_config =
            LogManagerConfig { default_log_config: defaults.clone(), ..config.log_manager.clone() };
        manager_config.owned_root_files.extend(
            [
                METADATA_LOG_DIR,
                migration::LEGACY_METADATA_FILE,
                migration::MIGRATED_METADATA_FILE,
                replica_manager::HIGH_WATERMARK_CHECKPOINT,
            ]
            .map(String::from),
        );
        let manager_clock = clock.clone();
        let (logs, report) =
            tokio::task::spawn_blocking(move || LogManager::open(manager_config, topic_configs, manager_clock))
                .await
                .map_err(|e| LogError::Closed(format!("log recovery task failed: {e}")))??;
        for q in report.all_quarantined() {
            tracing::warn!(file = %q.original.display(), moved_to = %q.moved_to.display(), reason = %q.reason, "moved aside at start");
        }
        let advertised =
            config.advertised.clone().unwrap_or_else(|| (config.listener.ip().to_string(), config.listener.port()));
        let fetch_sessions = Mutex::new(fetch_session::FetchSessions::new(config.fetch_session_slots));
        let mut group_config = config.group.clone();
        let offsets_topic = image.topic(group::OFFSETS_TOPIC).map(|t| t.partitions.len() as i32);
        if let Some(partitions) = offsets_topic {
            // The group→partition hash must keep using the partition count the topic has.
            group_config.offsets_partitions = partitions;
        }
        let groups = group::GroupService::new(group_config, clock.now_ms(), offsets_topic.is_some());
        let lifecycle = BrokerLifecycleManager::new(report.previous_broker_epoch);
        let replication = crate::replication::ReplicationConfig {
            replica_lag_time_max_ms: config.cluster.replica_lag_time_max_ms,
            ..Default::default()
        };
        let replicas = ReplicaManager::open(config.node_id, replication, &data_dir);
        let local_controller = config.cluster.has_role(ProcessRole::Controller).then(|| {
            let controller = Arc::new(
                ControllerService::new(quorum.clone(), controller_config(&config), clock.clone())
                    .with_local_broker(config.node_id, lifecycle.incarnation_id()),
            );
            let handler: Arc<dyn crate::controller::quorum::network::ControllerHandler> = controller.clone();
            quorum.serve_controller(Arc::downgrade(&handler));
            controller
        });
        let controller = controller_channel::ControllerChannel::new(quorum.clone(), local_controller);
        let broker = Arc::new(Self {
            config,
            logs,
            cluster_id: meta.cluster_id,
            quorum,
            controller,
            lifecycle,
            published: Mutex::new(metadata_publisher::Published::new(defaults.clone())),
            published_offset: std::sync::atomic::AtomicI64::new(metadata_publisher::NOTHING_PUBLISHED),
            clock,
            fetch_purgatory: purgatory::FetchPurgatory::default(),
            advertised: Mutex::new(advertised),
            fetch_sessions,
            log_defaults: RwLock::new(defaults),
            groups,
            replicas,
        });
        broker.lifecycle.start(&broker).await.map_err(controller_failure)?;
        broker.settle_unknown_logs().await.map_err(controller_failure)?;
        broker.publish_metadata()?;
        broker.replicas.forget_unclaimed_checkpoints();
        broker.lifecycle.wait_until_unfenced(&broker).await.map_err(controller_failure)?;
        broker.publish_metadata()?;
        Ok(broker)
    }

    /// The log manager.
    pub fn log_manager(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// The broker's configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The partitions this broker holds replicas of.
    pub fn replica_manager(&self) -> &ReplicaManager {
        &self.replicas
    }

    /// The metadata quorum this broker reads the cluster from.
    pub fn quorum(&self) -> &Arc<MetadataQuorum> {
        &self.quorum
    }

    /// Runs a request on the active controller, wherever it is, and waits until this
    /// node's metadata holds what it wrote. The controller's refusal is the error.
    pub(crate) async fn run_controller(&self, request: ControllerRequest) -> Result<ControllerReply, ApiError> {
        match self.controller.send(request, CONTROLLER_REQUEST_TIMEOUT).await? {
            Ok(reply) => Ok(reply),
            Err(e) => Err(ApiError::new(e.code(), e.to_string())),
        }
    }

    /// Like [`Broker::run_controller`], with the controller's refusal kept apart from a
    /// failure to reach it.
    pub(crate) async fn ask_controller(
        &self,
        request: ControllerRequest,
        timeout: std::time::Duration,
    ) -> Result<Result<ControllerReply, ControllerError>, ApiError> {
        self.controller.send(request, timeout).await
    }

    /// The effective config for a topic with these overrides.
    pub(crate) fn topic_config_for(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, ApiError> {
        self.log_defaults
            .read()
            .with_overrides(overrides)
            .map_err(|e| ApiError::new(codes::INVALID_CONFIG, e.to_string()))
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Wakes the long-polling fetches waiting on `tp`, which grew.
    pub(crate) fn notify_appended(&self, tp: &crate::storage::TopicPartition) {
        self.fetch_purgatory.appended(tp);
    }

    /// Stops the metadata quorum. The logs are the server's to close.
    pub(crate) async fn shutdown_quorum(&self) {
        self.quorum.shutdown().await;
    }
}

/// Starts this node's voter of the metadata quorum: in-process alone on a single node, or
/// on its controller listener among `controller.quorum.voters`.
/// Creates the data directory if needed and loads its `meta.properties`, formatting a new
/// one (with the cluster id every node of this cluster derives alike).
pub(crate) fn prepare_data_dir(config: &BrokerConfig) -> Result<MetaProperties> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(data_dir).map_err(|source| LogError::Io { path: data_dir.to_path_buf(), source })?;
    MetaProperties::ensure_or_format_with(data_dir, config.node_id, None, || config.cluster.new_cluster_id())
}

pub(crate) async fn start_quorum(config: &BrokerConfig, cluster_id: &str) -> Result<MetadataQuorum> {
    let dir = config.data_dir().join(METADATA_LOG_DIR);
    let cluster = &config.cluster;
    let mut quorum = QuorumConfig::single_node(config.node_id as u64, &dir);
    quorum.cluster_id = cluster_id.to_owned();
    quorum.heartbeat_ms = 50;
    if !cluster.is_single_node() {
        for voter in &cluster.voters {
            let addr = cluster_config::resolve(&voter.host, voter.port).ok_or_else(|| LogError::InvalidConfig {
                key: "controller.quorum.voters".into(),
                value: format!("{}@{}:{}", voter.id, voter.host, voter.port),
                reason: format!("{} does not resolve", voter.host),
            })?;
            quorum.voters.insert(voter.id as u64, addr);
        }
        quorum.listen = cluster.controller_listener().and_then(|l| l.bind_addr());
        // Elections across processes: a few hundred milliseconds, not tens.
        quorum.heartbeat_ms = 100;
    }
    MetadataQuorum::start(quorum).await.map_err(|e| match e {
        QuorumError::Storage { source, .. } if source.kind() == std::io::ErrorKind::ResourceBusy => {
            LogError::DirectoryLocked { path: config.data_dir().to_path_buf() }
        }
        QuorumError::Storage { path, source } => LogError::Io { path, source },
        other => LogError::DataDirectory { path: dir, reason: other.to_string() },
    })
}

/// The controller's settings from the broker's (the same Kafka keys).
pub(crate) fn controller_config(config: &BrokerConfig) -> ControllerConfig {
    let cluster = &config.cluster;
    let defaults = &config.log_manager.default_log_config;
    ControllerConfig {
        session_timeout_ms: cluster.broker_session_timeout_ms,
        default_replication_factor: cluster.default_replication_factor,
        num_partitions: config.num_partitions,
        min_insync_replicas: defaults.min_insync_replicas as i32,
        unclean_leader_election: defaults.unclean_leader_election_enable,
        auto_leader_rebalance: cluster.auto_leader_rebalance_enable,
        leader_imbalance_check_interval_ms: cluster.leader_imbalance_check_interval_seconds.saturating_mul(1000),
        ..ControllerConfig::default()
    }
}

fn controller_failure(e: ApiError) -> LogError {
    LogError::Controller { code: e.code, message: e.message }
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
