//! The application runtime: [`KafkaStreams`] runs a topology against a Kafka cluster.
//!
//! - `start` checks the topology against the cluster and creates its internal topics
//!   ([`setup`]), locks the state directory, loads the global stores, and starts
//!   `num.stream.threads` stream threads ([`thread`]).
//! - Stream threads are members of the consumer group `application.id`. The group's
//!   leader shares the tasks out ([`protocol`], [`assignor`]); each thread restores the
//!   stores of its new tasks from their changelogs, then processes, and commits at least
//!   once: input offsets only after the output and changelog writes they caused are
//!   acknowledged.
//! - The application's state (CREATED, REBALANCING, RUNNING, PENDING_SHUTDOWN,
//!   NOT_RUNNING, ERROR) follows its threads, and a listener hears every change.
//! - Interactive queries read the stores of this instance's tasks; key metadata says which
//!   instance has a key's task.

pub(crate) mod assignor;
mod collector;
mod global;
pub(crate) mod protocol;
mod restore;
mod setup;
mod thread;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use freshet_log::client::partitioner::partition_for_key;
use freshet_log::client::{AdminClient, ClientConfig, ConsumerConfig, OffsetReset, ProducerConfig};
use parking_lot::{Condvar, Mutex};

use crate::config::StreamsConfig;
use crate::error::{Result, StreamsError};
use crate::record::TaskId;
use crate::serde::Serde;
use crate::state::ReadOnlyKeyValueStore;
use crate::state::checkpoint::DirLock;
use crate::task::context::TaskStore;
use crate::topology::{TopicRef, Topology};
use protocol::{ClusterView, StreamsAssignor, ThreadLink};

/// An application's state, as Kafka Streams names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Built, not started.
    Created,
    /// Threads are joining the group, or restoring state.
    Rebalancing,
    /// Every thread is processing its tasks.
    Running,
    /// `close` was called; threads are committing and stopping.
    PendingShutdown,
    /// Closed.
    NotRunning,
    /// A thread failed and the error handler said to shut the instance down.
    Error,
}

impl State {
    /// Whether interactive queries may read the stores.
    pub fn is_running_or_rebalancing(self) -> bool {
        matches!(self, State::Running | State::Rebalancing)
    }
}

/// What to do when a stream thread fails (Kafka's `StreamThreadExceptionResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadFailureResponse {
    /// Start a new thread in its place; its tasks are rebalanced and restored.
    ReplaceThread,
    /// Stop every thread of this instance; the state becomes ERROR.
    ShutdownClient,
}

/// The state of one stream thread, from which the application's follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThreadState {
    Starting,
    PartitionsRevoked,
    PartitionsAssigned,
    Running,
    PendingShutdown,
}

type StateListener = Arc<dyn Fn(State, State) + Send + Sync>;
type FailureHandler = Arc<dyn Fn(&StreamsError) -> ThreadFailureResponse + Send + Sync>;

struct Status {
    state: State,
    threads: BTreeMap<usize, ThreadState>,
    /// A thread failed and the instance is shutting down because of it.
    failed: bool,
}

/// What the application's threads share.
pub(crate) struct Shared {
    pub topology: Arc<Topology>,
    pub config: StreamsConfig,
    pub application_id: Arc<str>,
    /// This instance's id in the group protocol.
    pub process: String,
    /// `state.dir/<application.id>`.
    pub app_dir: PathBuf,
    pub handle: tokio::runtime::Handle,
    status: Mutex<Status>,
    changed: Condvar,
    listener: Mutex<Option<StateListener>>,
    failure_handler: Mutex<Option<FailureHandler>>,
    /// The stores of the tasks running here, for interactive queries.
    stores: Mutex<BTreeMap<TaskId, Vec<TaskStore>>>,
    pub view: Arc<Mutex<ClusterView>>,
    shutdown: AtomicBool,
    restored: AtomicU64,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    next_thread: Mutex<usize>,
}

impl Shared {
    pub fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    pub fn add_restored(&self, records: u64) {
        self.restored.fetch_add(records, Ordering::Relaxed);
    }

    fn transition(&self, status: &mut Status, to: State) -> Option<(State, State)> {
        let from = status.state;
        if from == to {
            return None;
        }
        status.state = to;
        tracing::info!(application = %self.application_id, ?from, ?to, "state changed");
        Some((from, to))
    }

    fn notify(&self, change: Option<(State, State)>) {
        self.changed.notify_all();
        if let Some((from, to)) = change {
            let listener = self.listener.lock().clone();
            if let Some(listener) = listener {
                listener(to, from);
            }
        }
    }

    /// Records a thread's state; the application is RUNNING when every thread is.
    pub fn set_thread_state(&self, index: usize, state: ThreadState) {
        let change = {
            let mut status = self.status.lock();
            status.threads.insert(index, state);
            self.derive_state(&mut status)
        };
        self.notify(change);
    }

    fn derive_state(&self, status: &mut Status) -> Option<(State, State)> {
        if !status.state.is_running_or_rebalancing() {
            return None;
        }
        let all_running = status.threads.values().all(|s| *s == ThreadState::Running);
        self.transition(status, if all_running { State::Running } else { State::Rebalancing })
    }

    fn thread_ended(&self, index: usize) {
        let change = {
            let mut status = self.status.lock();
            status.threads.remove(&index);
            if status.threads.is_empty() && self.shutting_down() {
                let to = if status.failed { State::Error } else { State::NotRunning };
                self.transition(&mut status, to)
            } else {
                self.derive_state(&mut status)
            }
        };
        self.notify(change);
    }

    pub fn register_stores(&self, task: TaskId, stores: Vec<TaskStore>) {
        self.stores.lock().insert(task, stores);
    }

    pub fn unregister_stores(&self, task: TaskId) {
        self.stores.lock().remove(&task);
    }

    /// What a stream thread's consumer subscribes to: the topics of every sub-topology, or
    /// one pattern covering them when some source subscribes by pattern.
    pub fn subscription(&self) -> (Vec<String>, Option<String>) {
        let app = &self.application_id;
        let mut topics: BTreeSet<String> = BTreeSet::new();
        let mut patterns = Vec::new();
        for sub in &self.topology.subtopologies {
            topics.extend(sub.source_topics.iter().map(|t| t.resolve(app)));
            patterns.extend(sub.patterns.iter().map(|p| p.as_str().to_string()));
        }
        if patterns.is_empty() {
            return (topics.into_iter().collect(), None);
        }
        let mut parts: Vec<String> = topics.iter().map(|t| regex::escape(t)).collect();
        parts.extend(patterns.into_iter().map(|p| format!("(?:{p})")));
        (Vec::new(), Some(parts.join("|")))
    }

    /// The clients of stream thread `index`: its group consumer, its restore consumer and
    /// its producer.
    pub fn client_configs(
        &self,
        index: usize,
        link: Arc<ThreadLink>,
    ) -> Result<(ConsumerConfig, ConsumerConfig, ProducerConfig)> {
        let app = &self.config.application_id;
        let client_id = format!("{app}-{}-StreamThread-{}", self.process, index + 1);
        let mut consumer = ConsumerConfig::new(&self.config.bootstrap_servers);
        consumer.client.client_id = format!("{client_id}-consumer");
        consumer.max_poll_records = 1000;
        let mut producer = ProducerConfig::new(&self.config.bootstrap_servers);
        producer.client.client_id = format!("{client_id}-producer");
        // Kafka Streams' producer default: batches fill for up to 100 ms; commits flush.
        producer.linger = Duration::from_millis(100);
        producer.batch_size = 256 * 1024;
        let (restore_only, shared_properties): (Vec<_>, Vec<_>) =
            self.config.client_properties.iter().partition(|(key, _)| key.starts_with(RESTORE_CONSUMER_PREFIX));
        for (key, value) in shared_properties {
            let (consumer_only, producer_only) = (key.strip_prefix("consumer."), key.strip_prefix("producer."));
            let to_consumer = consumer_only.or(if producer_only.is_none() { Some(key) } else { None });
            let to_producer = producer_only.or(if consumer_only.is_none() { Some(key) } else { None });
            let consumer_ok = to_consumer.map(|k| consumer.set(k, value).is_ok());
            let producer_ok = to_producer.map(|k| producer.set(k, value).is_ok());
            if consumer_ok != Some(true) && producer_ok != Some(true) {
                return Err(StreamsError::config(key, value.as_str(), "no consumer or producer property of that name"));
            }
        }
        let mut restore = consumer.clone();
        restore.client.client_id = format!("{client_id}-restore-consumer");
        restore.max_poll_records = 10_000;
        for (key, value) in restore_only {
            let name = &key[RESTORE_CONSUMER_PREFIX.len()..];
            restore
                .set(name, value)
                .map_err(|_| StreamsError::config(key, value.as_str(), "no consumer property of that name"))?;
        }
        // What restoring relies on, whatever the overrides said (Kafka forces these too).
        restore.group_id = None;
        restore.enable_auto_commit = false;
        restore.auto_offset_reset = OffsetReset::Earliest;
        consumer.group_id = Some(app.clone());
        consumer.enable_auto_commit = false;
        consumer.auto_offset_reset = OffsetReset::Earliest;
        consumer.group_assignor = Some(Arc::new(StreamsAssignor {
            topology: self.topology.clone(),
            application_id: app.clone(),
            process: self.process.clone(),
            endpoint: self.config.application_server.clone(),
            app_dir: self.app_dir.clone(),
            thread: link,
            view: self.view.clone(),
        }));
        Ok((consumer, restore, producer))
    }
}

/// Client properties under this prefix go to the restore consumer only (Kafka's
/// `StreamsConfig.RESTORE_CONSUMER_PREFIX`).
const RESTORE_CONSUMER_PREFIX: &str = "restore.consumer.";

/// Where an instance answers interactive queries (`application.server`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostInfo {
    /// The host.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl HostInfo {
    fn parse(endpoint: &str) -> Option<Self> {
        let (host, port) = endpoint.rsplit_once(':')?;
        Some(HostInfo { host: host.to_string(), port: port.parse().ok()? })
    }
}

impl std::fmt::Display for HostInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where a key lives: its partition, and the instance running that partition's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The instance with the active task, if the last assignment gave it to one with an
    /// `application.server`.
    pub active_host: Option<HostInfo>,
    /// The partition (and task) the key belongs to.
    pub partition: i32,
}

/// One instance of the application, as the last assignment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsMetadata {
    /// Its `application.server`.
    pub host: HostInfo,
    /// The tasks it runs.
    pub tasks: BTreeSet<TaskId>,
    /// The stores of those tasks.
    pub stores: BTreeSet<String>,
}

/// A Streams application instance: runs a [`Topology`] against a Kafka cluster with
/// `num.stream.threads` threads, sharing the work with every other instance that has the
/// same `application.id`.
///
/// ```no_run
/// use freshet_streams::{KafkaStreams, Materialized, Produced, StreamsBuilder, StreamsConfig, Consumed};
/// use freshet_streams::serde::Serdes;
///
/// let builder = StreamsBuilder::new();
/// builder
///     .stream("lines", Consumed::with(Serdes::optional(Serdes::string()), Serdes::string()))
///     .flat_map_values(|line| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
///     .group_by(|_, word| word.clone(), freshet_streams::Grouped::with(Serdes::string(), Serdes::string()))
///     .count(Materialized::as_("counts"))
///     .to_stream()
///     .to("word-counts", Produced::with(Serdes::string(), Serdes::optional(Serdes::i64())));
/// let streams = KafkaStreams::new(builder.build()?, StreamsConfig::new("wordcount", "127.0.0.1:9092"))?;
/// streams.start()?;
/// streams.wait_for(freshet_streams::State::Running, std::time::Duration::from_secs(30))?;
/// let counts = streams.store::<String, i64>("counts")?;
/// println!("{:?}", counts.get(&"kafka".to_string())?);
/// streams.close();
/// # Ok::<(), freshet_streams::StreamsError>(())
/// ```
pub struct KafkaStreams {
    shared: Arc<Shared>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    lock: Mutex<Option<DirLock>>,
    global: Mutex<Option<global::GlobalThread>>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("application_id", &self.shared.application_id)
            .field("state", &self.state())
            .finish()
    }
}

impl KafkaStreams {
    /// An application instance in state CREATED. The configuration is checked here.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{}-client", config.application_id))
            .enable_all()
            .build()
            .map_err(|e| StreamsError::IllegalState(format!("starting the client runtime: {e}")))?;
        let application_id: Arc<str> = config.application_id.as_str().into();
        let app_dir = config.state_dir.join(&config.application_id);
        let shared = Arc::new(Shared {
            topology: Arc::new(topology),
            application_id,
            process: uuid::Uuid::new_v4().to_string(),
            app_dir,
            handle: runtime.handle().clone(),
            config,
            status: Mutex::new(Status { state: State::Created, threads: BTreeMap::new(), failed: false }),
            changed: Condvar::new(),
            listener: Mutex::new(None),
            failure_handler: Mutex::new(None),
            stores: Mutex::new(BTreeMap::new()),
            view: Arc::new(Mutex::new(ClusterView::default())),
            shutdown: AtomicBool::new(false),
            restored: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            next_thread: Mutex::new(0),
        });
        Ok(KafkaStreams {
            shared,
            runtime: Mutex::new(Some(runtime)),
            lock: Mutex::new(None),
            global: Mutex::new(None),
        })
    }

    /// Calls `listener(new, old)` on every state change (on the thread that caused it).
    pub fn set_state_listener(&self, listener: impl Fn(State, State) + Send + Sync + 'static) {
        *self.shared.listener.lock() = Some(Arc::new(listener));
    }

    /// Decides what happens when a stream thread fails; without one, the instance shuts
    /// down (state ERROR), as Kafka's default does.
    pub fn set_uncaught_exception_handler(
        &self,
        handler: impl Fn(&StreamsError) -> ThreadFailureResponse + Send + Sync + 'static,
    ) {
        *self.shared.failure_handler.lock() = Some(Arc::new(handler));
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.shared.status.lock().state
    }

    /// Waits until the state is `state`, up to `timeout`. Fails at once if the instance
    /// stopped (NOT_RUNNING or ERROR) and that is not what was waited for.
    pub fn wait_for(&self, state: State, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut status = self.shared.status.lock();
        loop {
            if status.state == state {
                return Ok(());
            }
            if matches!(status.state, State::NotRunning | State::Error) {
                return Err(StreamsError::IllegalState(format!(
                    "the application is {:?}; it will not become {state:?}",
                    status.state
                )));
            }
            if self.shared.changed.wait_until(&mut status, deadline).timed_out() {
                return Err(StreamsError::IllegalState(format!(
                    "still {:?} after {timeout:?}, waiting for {state:?}",
                    status.state
                )));
            }
        }
    }

    /// Starts the instance: checks the topology against the cluster (missing source
    /// topics, co-partitioning), creates internal topics, locks the state directory, loads
    /// global stores and starts the stream threads. Errors leave the instance CREATED.
    pub fn start(&self) -> Result<()> {
        if self.state() != State::Created {
            return Err(StreamsError::IllegalState(format!("start called in state {:?}", self.state())));
        }
        let shared = self.shared.clone();
        let lock = DirLock::acquire(&shared.app_dir)?;
        // Run on a thread of our own, so that calling `start` from async code is fine.
        let prepared = std::thread::scope(|s| {
            s.spawn(|| {
                shared.handle.block_on(async {
                    let mut client = ClientConfig::new(&shared.config.bootstrap_servers);
                    client.client_id = format!("{}-admin", shared.config.application_id);
                    let admin = AdminClient::connect(client).await?;
                    setup::prepare(&shared.topology, &shared.config, &admin).await
                })
            })
            .join()
        })
        .map_err(|_| StreamsError::IllegalState("the start-up thread panicked".into()))??;
        tracing::info!(application = %shared.application_id, tasks = ?prepared, "internal topics ready");
        *self.lock.lock() = Some(lock);
        if !shared.topology.globals.is_empty() {
            let global = global::GlobalThread::start(shared.clone())?;
            *self.global.lock() = Some(global);
        }
        let change = {
            let mut status = shared.status.lock();
            shared.transition(&mut status, State::Rebalancing)
        };
        shared.notify(change);
        for _ in 0..shared.config.num_stream_threads {
            spawn_thread(&shared);
        }
        Ok(())
    }

    /// Stops the instance: each thread commits, writes its checkpoints and leaves the
    /// group. Waits up to `timeout`; returns whether everything stopped in time.
    pub fn close_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let change = {
            let mut status = self.shared.status.lock();
            self.shared.shutdown.store(true, Ordering::Release);
            match status.state {
                State::Created | State::NotRunning => self.shared.transition(&mut status, State::NotRunning),
                State::Error if status.threads.is_empty() => None,
                _ if status.threads.is_empty() => self.shared.transition(&mut status, State::NotRunning),
                _ => self.shared.transition(&mut status, State::PendingShutdown),
            }
        };
        self.shared.notify(change);
        let stopped = {
            let mut status = self.shared.status.lock();
            while !status.threads.is_empty() {
                if self.shared.changed.wait_until(&mut status, deadline).timed_out() {
                    break;
                }
            }
            status.threads.is_empty()
        };
        if stopped {
            for handle in std::mem::take(&mut *self.shared.threads.lock()) {
                let _ = handle.join();
            }
        }
        if let Some(global) = self.global.lock().take() {
            global.stop();
        }
        let change = {
            let mut status = self.shared.status.lock();
            if stopped && status.state == State::PendingShutdown {
                let to = if status.failed { State::Error } else { State::NotRunning };
                self.shared.transition(&mut status, to)
            } else {
                None
            }
        };
        self.shared.notify(change);
        if stopped {
            *self.lock.lock() = None;
        }
        stopped
    }

    /// [`KafkaStreams::close_timeout`] without a limit.
    pub fn close(&self) {
        self.close_timeout(Duration::from_secs(u64::MAX / 4));
    }

    /// Deletes this instance's local state (`state.dir/<application.id>`), as Kafka's
    /// `cleanUp`: only while not running. Stores are rebuilt from their changelogs.
    pub fn clean_up(&self) -> Result<()> {
        if !matches!(self.state(), State::Created | State::NotRunning | State::Error) {
            return Err(StreamsError::IllegalState(format!(
                "clean_up needs a stopped instance, not {:?}",
                self.state()
            )));
        }
        match std::fs::remove_dir_all(&self.shared.app_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StreamsError::state_dir(&self.shared.app_dir, e)),
        }
    }

    /// Records restored from changelogs since start, over all threads.
    pub fn restored_records(&self) -> u64 {
        self.shared.restored.load(Ordering::Relaxed)
    }

    /// The tasks running on this instance.
    pub fn local_tasks(&self) -> BTreeSet<TaskId> {
        self.shared.stores.lock().keys().copied().collect()
    }

    /// Every local instance of store `name`, for reading. Its keys are spread over tasks,
    /// so this instance has only those of its own tasks; see
    /// [`KafkaStreams::query_metadata_for_key`] for where the others are.
    pub fn store<K: 'static, V: 'static>(&self, name: &str) -> Result<ReadOnlyKeyValueStore<K, V>> {
        let state = self.state();
        if !state.is_running_or_rebalancing() {
            return Err(StreamsError::IllegalState(format!(
                "store '{name}' cannot be queried while the application is {state:?}"
            )));
        }
        let Some(spec) = self.shared.topology.stores.get(name) else {
            return Err(StreamsError::store(name, "no such store in this topology"));
        };
        let serdes = spec.serdes::<K, V>("an interactive query")?;
        let mut stores = Vec::new();
        let mut topic = None;
        for list in self.shared.stores.lock().values() {
            for store in list.iter().filter(|s| s.spec.name == name) {
                stores.push(store.store.clone());
                topic.get_or_insert_with(|| store.changelog.clone());
            }
        }
        if let Some(global) = self.global.lock().as_ref() {
            for store in global.stores().into_iter().filter(|s| s.spec.name == name) {
                stores.push(store.store.clone());
                topic.get_or_insert_with(|| store.changelog.clone());
            }
        }
        let topic = topic.unwrap_or_else(|| crate::topology::changelog_topic(&self.shared.application_id, name).into());
        Ok(ReadOnlyKeyValueStore { stores, topic, serdes })
    }

    /// The partition of `key` in store `store`, and the instance (by `application.server`)
    /// that runs its task, so that an application can route a lookup there.
    pub fn query_metadata_for_key<KS: Serde>(
        &self,
        store: &str,
        key: &KS::Target,
        key_serde: &KS,
    ) -> Result<KeyQueryMetadata> {
        let topology = &self.shared.topology;
        let Some(sub) = topology.subtopologies.iter().find(|s| s.stores.iter().any(|n| n == store)) else {
            return Err(StreamsError::store(store, "no such store in this topology (or it is global)"));
        };
        let view = self.shared.view.lock();
        let Some(&partitions) = view.partitions.get(&sub.id) else {
            return Err(StreamsError::IllegalState(format!(
                "no assignment yet covers store '{store}'; wait for the application to be RUNNING"
            )));
        };
        let topic = crate::topology::changelog_topic(&self.shared.application_id, store);
        let mut bytes = Vec::new();
        let present = key_serde
            .serialize_nullable(&topic, key, &mut bytes)
            .map_err(|e| StreamsError::Serialization { operator: format!("key metadata of {store}"), source: e })?;
        if !present {
            return Err(StreamsError::store(store, "a null key has no partition"));
        }
        let partition = partition_for_key(&bytes, partitions);
        let task = TaskId::new(sub.id, partition);
        let active_host =
            view.hosts.iter().find(|(_, tasks)| tasks.contains(&task)).and_then(|(h, _)| HostInfo::parse(h));
        Ok(KeyQueryMetadata { active_host, partition })
    }

    /// Every instance the last assignment knows (those with an `application.server`).
    pub fn metadata_for_all_clients(&self) -> Vec<StreamsMetadata> {
        let topology = &self.shared.topology;
        let view = self.shared.view.lock();
        view.hosts
            .iter()
            .filter_map(|(host, tasks)| {
                let host = HostInfo::parse(host)?;
                let stores = tasks
                    .iter()
                    .filter_map(|t| topology.subtopologies.get(t.subtopology as usize))
                    .flat_map(|s| s.stores.iter().cloned())
                    .collect();
                Some(StreamsMetadata { host, tasks: tasks.clone(), stores })
            })
            .collect()
    }

    /// The names of the internal topics this application uses (resolved).
    pub fn internal_topics(&self) -> Vec<String> {
        let app = &self.shared.application_id;
        let topology = &self.shared.topology;
        let mut topics: Vec<String> =
            topology.repartition_topics.keys().map(|n| TopicRef::Internal(n.clone()).resolve(app)).collect();
        topics.extend(topology.changelogs(app).into_iter().map(|(_, t)| t));
        topics
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if !matches!(self.state(), State::NotRunning | State::Created) {
            self.close_timeout(Duration::from_secs(30));
        }
        if let Some(runtime) = self.runtime.lock().take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts a stream thread with the next index.
fn spawn_thread(shared: &Arc<Shared>) {
    let index = {
        let mut next = shared.next_thread.lock();
        *next += 1;
        *next - 1
    };
    shared.set_thread_state(index, ThreadState::Starting);
    let thread_shared = shared.clone();
    let name = format!("{}-StreamThread-{}", shared.application_id, index + 1);
    let spawned = std::thread::Builder::new().name(name).spawn(move || run_thread(thread_shared, index));
    match spawned {
        Ok(handle) => shared.threads.lock().push(handle),
        Err(e) => {
            tracing::error!(error = %e, "could not start a stream thread");
            shared.thread_ended(index);
        }
    }
}

fn run_thread(shared: Arc<Shared>, index: usize) {
    let _runtime = shared.handle.enter();
    let outcome = thread::StreamThread::create(index, shared.clone()).and_then(|t| t.run());
    if let Err(e) = outcome {
        tracing::error!(thread = index + 1, error = %e, "stream thread failed");
        let handler = shared.failure_handler.lock().clone();
        // A handler that panics answers SHUTDOWN_CLIENT.
        let response = handler.map_or(ThreadFailureResponse::ShutdownClient, |h| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&e)))
                .unwrap_or(ThreadFailureResponse::ShutdownClient)
        });
        match response {
            ThreadFailureResponse::ReplaceThread if !shared.shutting_down() => {
                spawn_thread(&shared);
            }
            _ => {
                shared.status.lock().failed = true;
                shared.shutdown.store(true, Ordering::Release);
            }
        }
    }
    shared.thread_ended(index);
}
