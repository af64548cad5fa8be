//! The global-store thread: every instance keeps a full copy of each global table, read
//! from all partitions of its topic (the topic is its changelog).
//!
//! At start the thread reads each topic to the end it has then, before the stream threads
//! start (as Kafka bootstraps global stores), and keeps following it afterwards. Global
//! stores are rebuilt from their topics at each start; they keep no checkpoint yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use freshet_log::client::{AdminClient, ClientConfig, Consumer, ConsumerConfig, OffsetReset, TopicPartition};
use freshet_log::time::{Clock, SystemClock};
use parking_lot::Mutex;

use super::Shared;
use crate::error::{Result, StreamsError};
use crate::processor::PunctuationType;
use crate::record::TaskId;
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
    let topology = shared.topology.clone();
    let mut consumer_config = ConsumerConfig::new(&shared.config.bootstrap_servers);
    consumer_config.client.client_id = format!("{}-global-consumer", shared.application_id);
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    consumer_config.enable_auto_commit = false;
    consumer_config.max_poll_records = 10_000;
    let mut admin_config = ClientConfig::new(&shared.config.bootstrap_servers);
    admin_config.client_id = format!("{}-global-admin", shared.application_id);
    let (mut consumer, topics) = handle.block_on(async {
        let admin = AdminClient::connect(admin_config).await?;
        let names: Vec<&str> = topology.globals.iter().map(|g| g.topic.as_str()).collect();
        let topics = admin.describe_topics(&names).await?;
        let consumer = Consumer::connect(consumer_config).await?;
        Ok::<_, freshet_log::client::ClientError>((consumer, topics))
    })?;
    let mut tasks = Vec::new();
    for (i, part) in topology.global_parts.iter().enumerate() {
        let dir = shared.app_dir.join("global").join(i.to_string());
        let mut open = |spec: &StoreSpec, _changelog: &str| {
            let store_dir = dir.join("rocksdb").join(&spec.name);
            if spec.kind == StoreKind::Persistent && store_dir.exists() {
                std::fs::remove_dir_all(&store_dir).map_err(|e| StreamsError::state_dir(&store_dir, e))?;
            }
            let bytes = StoreInner::open_bytes(spec.kind, &spec.name, Some(&dir))?;
            let store: SharedStore = Arc::new(Mutex::new(StoreInner::new(&spec.name, bytes, 0, false)));
            Ok(store)
        };
        let task = StreamTask::create(
            topology.clone(),
            part,
            shared.application_id.clone(),
            TaskId::new(GLOBAL, i as i32),
            Box::new(NoOutput),
            shared.config.deserialization_handler.clone(),
            &mut open,
            SystemClock.now_ms(),
        )?;
        registry.lock().extend(task.stores().cloned());
        tasks.push(task);
    }
    let mut partitions: Vec<TopicPartition> = Vec::new();
    for topic in &topics {
        partitions.extend((0..topic.partitions.len() as i32).map(|p| (topic.name.clone(), p)));
    }
    handle.block_on(consumer.assign(&partitions))?;
    let mut ends = Vec::new();
    for tp in &partitions {
        ends.push((tp.clone(), handle.block_on(consumer.watermarks(tp))?.1));
    }
    let mut bootstrapped = false;
    let mut last_flush = Instant::now();
    let mut last_progress = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let records = handle.block_on(consumer.poll(shared.config.poll))?;
        if !records.is_empty() {
            last_progress = Instant::now();
        }
        for record in records.iter() {
            let Some(task) = tasks.iter_mut().find_map(|t| t.accepts(&record.topic, record.partition).then_some(t))
            else {
                continue;
            };
            task.process(record.clone())?;
            task.punctuate(PunctuationType::StreamTime)?;
        }
        if !bootstrapped {
            let mut caught_up = true;
            for (tp, end) in &ends {
                caught_up &= handle.block_on(consumer.position(tp))? >= *end;
            }
            if caught_up {
                for task in &mut tasks {
                    task.flush()?;
                }
                bootstrapped = true;
                tracing::info!(partitions = partitions.len(), "global stores loaded");
                let _ = ready.send(Ok(()));
            } else if last_progress.elapsed() > Duration::from_secs(60) {
                return Err(StreamsError::IllegalState("loading the global stores made no progress for 60s".into()));
            }
        }
        if last_flush.elapsed() >= shared.config.commit_interval {
            for task in &mut tasks {
                task.flush()?;
            }
            last_flush = Instant::now();
        }
    }
    for task in &mut tasks {
        task.close();
    }
    registry.lock().clear();
    Ok(())
}
