//! The global-store thread: every instance keeps a full copy of each global table, read
//! from all partitions of its topic (the topic is its changelog).
//!
//! At start the thread reads each topic to the end it has then, before the stream threads
//! start (as Kafka bootstraps global stores), and keeps following it afterwards.
//!
//! Persistent global stores keep a checkpoint, `state.dir/<application.id>/global/<n>/
//! .checkpoint`: the offset of each topic partition their RocksDB holds everything
//! before, written after the stores are flushed, at each commit interval and at close. A
//! start resumes from it when every store of the part is on disk, and the checkpoint
//! covers every partition with an offset still within the topic (between its log start
//! and its end). Otherwise, and for in-memory stores, the checkpoint and the stores are
//! removed and the topic is read from the beginning. Replaying records past the
//! checkpoint after a crash is harmless: a global store only takes each key's latest
//! value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use freshet_log::client::{
    AdminClient, ClientConfig, Consumer, ConsumerConfig, OffsetReset, TopicInfo, TopicPartition,
};
use freshet_log::time::{Clock, SystemClock};
use parking_lot::Mutex;

use super::Shared;
use crate::error::{Result, StreamsError};
use crate::processor::PunctuationType;
use crate::record::TaskId;
use crate::state::checkpoint::{self, CHECKPOINT_FILE, Offsets};
use crate::state::{SharedStore, StoreInner, StoreKind, StoreSpec};
use crate::task::StreamTask;
use crate::task::context::{OutRecord, RecordCollector, TaskStore};

/// The sub-topology number global tasks get.
const GLOBAL: u32 = u32::MAX;

/// Global processors only update their store; anything they send is a topology mistake.
struct NoOutput;

impl RecordCollector for NoOutput {
    fn send(&mut self, record: OutRecord<'_>) -> Result<()> {
        Err(StreamsError::Topology(format!(
            "a global store's processor tried to write to topic {}; global stores only read their topic",
            record.topic
        )))
    }
}

pub(crate) struct GlobalThread {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    stores: Arc<Mutex<Vec<TaskStore>>>,
}

impl GlobalThread {
    /// Starts the thread and waits until every global store has caught up with its topic.
    pub fn start(shared: Arc<Shared>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stores = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (thread_stop, thread_stores) = (stop.clone(), stores.clone());
        let name = format!("{}-GlobalStreamThread", shared.application_id);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let _runtime = shared.handle.enter();
                if let Err(e) = run(&shared, &thread_stop, &thread_stores, &ready_tx) {
                    tracing::error!(error = %e, "global stream thread failed");
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| StreamsError::IllegalState(format!("starting the global thread: {e}")))?;
        let global = GlobalThread { stop, thread: Some(thread), stores };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(global),
            Ok(Err(e)) => {
                global.stop();
                Err(e)
            }
            Err(_) => {
                global.stop();
                Err(StreamsError::IllegalState("the global thread stopped before loading its stores".into()))
            }
        }
    }

    pub fn stores(&self) -> Vec<TaskStore> {
        self.stores.lock().clone()
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    registry: &Mutex<Vec<TaskStore>>,
    ready: &std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let handle = shared.handle.clone();
    let (mut consumer, topics) = connect(shared)?;
    let mut parts = Vec::new();
    // Each partition's log start and end as the thread starts: what a checkpoint must lie
    // between, and what loading the stores must reach.
    let mut watermarks: BTreeMap<TopicPartition, (i64, i64)> = BTreeMap::new();
    for (i, sub) in shared.topology.global_parts.iter().enumerate() {
        let part = GlobalPart::open(shared, i, sub, &consumer, &topics, &mut watermarks)?;
        registry.lock().extend(part.task.stores().cloned());
        parts.push(part);
    }
    let partitions: Vec<TopicPartition> = parts.iter().flat_map(|p| p.partitions.iter().cloned()).collect();
    handle.block_on(consumer.assign(&partitions))?;
    for part in &parts {
        match &part.resume {
            Some(offsets) => {
                for (tp, offset) in offsets {
                    consumer.seek(tp, *offset)?;
                }
                tracing::info!(dir = %part.dir.display(), "resuming a global store from its checkpoint");
            }
            None => consumer.seek_to_beginning(&part.partitions)?,
        }
    }
    let ends: Vec<(TopicPartition, i64)> = watermarks.into_iter().map(|(tp, (_, high))| (tp, high)).collect();
    let outcome = follow(shared, stop, &mut consumer, &mut parts, &ends, ready);
    for part in &mut parts {
        if outcome.is_ok()
            && let Err(e) = part.checkpoint(&mut consumer, &handle)
        {
            tracing::warn!(dir = %part.dir.display(), error = %e, "writing a global store's last checkpoint");
        }
        part.task.close();
    }
    registry.lock().clear();
    outcome
}

/// The global consumer, and the global topics' descriptions.
fn connect(shared: &Shared) -> Result<(Consumer, Vec<TopicInfo>)> {
    let mut consumer_config = ConsumerConfig::new(&shared.config.bootstrap_servers);
    consumer_config.client.client_id = format!("{}-global-consumer", shared.application_id);
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    consumer_config.enable_auto_commit = false;
    consumer_config.max_poll_records = 10_000;
    let mut admin_config = ClientConfig::new(&shared.config.bootstrap_servers);
    admin_config.client_id = format!("{}-global-admin", shared.application_id);
    let topology = &shared.topology;
    let connected = shared.handle.block_on(async {
        let admin = AdminClient::connect(admin_config).await?;
        let names: Vec<&str> = topology.globals.iter().map(|g| g.topic.as_str()).collect();
        let topics = admin.describe_topics(&names).await?;
        let consumer = Consumer::connect(consumer_config).await?;
        Ok::<_, freshet_log::client::ClientError>((consumer, topics))
    })?;
    Ok(connected)
}

/// Reads the global topics until stopped: first to the ends they had at the start (then
/// `ready` is told), afterwards as they grow, checkpointing every commit interval.
fn follow(
    shared: &Shared,
    stop: &AtomicBool,
    consumer: &mut Consumer,
    parts: &mut [GlobalPart],
    ends: &[(TopicPartition, i64)],
    ready: &std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let handle = shared.handle.clone();
    let mut bootstrapped = false;
    let mut last_flush = Instant::now();
    let mut last_progress = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let records = handle.block_on(consumer.poll(shared.config.poll))?;
        if !records.is_empty() {
            last_progress = Instant::now();
        }
        for record in records.iter() {
            let Some(task) =
                parts.iter_mut().find_map(|p| p.task.accepts(&record.topic, record.partition).then_some(&mut p.task))
            else {
                continue;
            };
            task.process(record.clone())?;
            task.punctuate(PunctuationType::StreamTime)?;
        }
        if !bootstrapped {
            let mut caught_up = true;
            for (tp, end) in ends {
                caught_up &= handle.block_on(consumer.position(tp))? >= *end;
            }
            if caught_up {
                for part in parts.iter_mut() {
                    part.checkpoint(consumer, &handle)?;
                }
                bootstrapped = true;
                tracing::info!(partitions = ends.len(), "global stores loaded");
                let _ = ready.send(Ok(()));
            } else if last_progress.elapsed() > Duration::from_secs(60) {
                return Err(StreamsError::IllegalState("loading the global stores made no progress for 60s".into()));
            }
        }
        if last_flush.elapsed() >= shared.config.commit_interval {
            for part in parts.iter_mut() {
                part.checkpoint(consumer, &handle)?;
            }
            last_flush = Instant::now();
        }
    }
    Ok(())
}

/// The task that keeps one global store (or the stores of one global processor) up to date.
struct GlobalPart {
    task: StreamTask,
    dir: PathBuf,
    /// The partitions of its topic.
    partitions: Vec<TopicPartition>,
    /// Whether its stores are on disk, so that a checkpoint means something.
    persistent: bool,
    /// The checkpoint it resumed from, if any.
    resume: Option<Offsets>,
}

impl GlobalPart {
    /// Opens global part `index`: its stores resume from their checkpoint if it is usable,
    /// else they (and the checkpoint) are removed and rebuilt from the topic. Records the
    /// watermarks of the topic's partitions.
    fn open(
        shared: &Shared,
        index: usize,
        sub: &crate::topology::Subtopology,
        consumer: &Consumer,
        topics: &[TopicInfo],
        watermarks: &mut BTreeMap<TopicPartition, (i64, i64)>,
    ) -> Result<Self> {
        let topology = &shared.topology;
        let dir = shared.app_dir.join("global").join(index.to_string());
        let topic = topology.globals.iter().find(|g| sub.stores.contains(&g.store)).map(|g| g.topic.clone());
        let count = topics.iter().find(|t| Some(&t.name) == topic.as_ref()).map_or(0, |t| t.partitions.len() as i32);
        let own: Vec<TopicPartition> =
            topic.iter().flat_map(|t| (0..count).map(|p| TopicPartition::new(t.clone(), p))).collect();
        for tp in &own {
            watermarks.insert(tp.clone(), shared.handle.block_on(consumer.watermarks(tp))?);
        }
        let persistent =
            sub.stores.iter().all(|s| topology.stores.get(s).is_some_and(|spec| spec.kind == StoreKind::Persistent));
        // A checkpoint speaks for the stores on disk: each must still be there (a store
        // renamed since, say, by a new operator before it, starts empty).
        let on_disk = sub.stores.iter().all(|s| dir.join("rocksdb").join(s).is_dir());
        let resume = if persistent && on_disk { usable_checkpoint(&dir, &own, watermarks) } else { None };
        if resume.is_none() {
            remove_local_state(&dir)?;
        }
        let mut open = |spec: &StoreSpec, _changelog: &str| {
            let bytes = StoreInner::open_bytes(spec.kind, &spec.name, Some(&dir))?;
            let store: SharedStore = Arc::new(Mutex::new(StoreInner::new(&spec.name, bytes, 0, false)));
            Ok(store)
        };
        let task = StreamTask::create(
            topology.clone(),
            sub,
            shared.application_id.clone(),
            TaskId::new(GLOBAL, index as i32),
            Box::new(NoOutput),
            shared.config.deserialization_handler.clone(),
            &mut open,
            SystemClock.now_ms(),
        )?;
        Ok(GlobalPart { task, dir, partitions: own, persistent, resume })
    }

    /// Flushes the caches and, for persistent stores, makes them durable and writes the
    /// consumer's positions (every polled record is processed by now) as the checkpoint.
    fn checkpoint(&mut self, consumer: &mut Consumer, handle: &tokio::runtime::Handle) -> Result<()> {
        self.task.flush()?;
        if !self.persistent {
            return Ok(());
        }
        self.task.flush_stores()?;
        let mut offsets = Offsets::new();
        for tp in &self.partitions {
            offsets.insert(tp.clone(), handle.block_on(consumer.position(tp))?);
        }
        checkpoint::write(&self.dir.join(CHECKPOINT_FILE), &offsets)
    }
}

/// Removes a global part's checkpoint and stores. The checkpoint goes first: a crash
/// while the stores are rebuilt must not leave it beside them.
fn remove_local_state(dir: &std::path::Path) -> Result<()> {
    for path in [dir.join(CHECKPOINT_FILE), dir.join("rocksdb")] {
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StreamsError::state_dir(&path, e)),
            _ => {}
        }
    }
    Ok(())
}

/// The checkpoint of a global part, if it can be resumed from: it names every partition
/// of the topic, and each offset is between the partition's log start and its end. A
/// checkpoint that does not parse, or that the topic outgrew (records deleted past it, or
/// the topic recreated), is reported and dropped, and the store is rebuilt.
fn usable_checkpoint(
    dir: &std::path::Path,
    partitions: &[TopicPartition],
    watermarks: &BTreeMap<TopicPartition, (i64, i64)>,
) -> Option<Offsets> {
    let path = dir.join(CHECKPOINT_FILE);
    let offsets = match checkpoint::read(&path) {
        Ok(offsets) if offsets.is_empty() => return None,
        Ok(offsets) => offsets,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a corrupt checkpoint; the global store is rebuilt from its topic");
            return None;
        }
    };
    for tp in partitions {
        let (low, high) = watermarks[tp];
        match offsets.get(tp) {
            Some(&offset) if (low..=high).contains(&offset) => {}
            found => {
                tracing::warn!(
                    checkpoint = %path.display(), topic = %tp.topic, partition = tp.partition, offset = ?found, low, high,
                    "the global store's checkpoint is outside its topic; the store is rebuilt"
                );
                return None;
            }
        }
    }
    if offsets.len() != partitions.len() {
        tracing::warn!(checkpoint = %path.display(), "the global topic's partitions changed; the store is rebuilt");
        return None;
    }
    Some(offsets)
}
