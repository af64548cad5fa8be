//! A stream thread: one consumer-group member with its own consumer and producer, running
//! the tasks the group gives it.
//!
//! ```text
//! loop:
//!   a rebalance is pending?  -> commit first (eager: every task is revoked), then poll,
//!                                which rejoins: revoked tasks are suspended with their
//!                                state, assigned ones created (restoring ones paused)
//!   else poll                 -> returns early if a rebalance becomes due meanwhile
//!   records -> their task's queue; each task takes the record with the lowest timestamp
//!   wall-clock punctuations
//!   one step of restoration   -> a task whose stores caught up starts running
//!   commit.interval.ms passed -> flush caches, wait for the producer's acks, checkpoint,
//!                                commit the input offsets
//! ```
//!
//! The thread is a plain OS thread (tasks hold `Rc`s, so they stay on it); the clients'
//! network work runs on the application's tokio runtime, which the thread blocks on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use freshet_log::client::{ClientError, Consumer, ConsumerRecord, RebalanceContext, RebalanceListener, TopicPartition};
use freshet_log::codes;
use freshet_log::time::{Clock, SystemClock};
use parking_lot::Mutex;

use super::collector::ProducerCollector;
use super::protocol::ThreadLink;
use super::restore::{ChangelogReader, Restore};
use super::{Shared, ThreadState};
use crate::error::{Result, StreamsError};
use crate::processor::PunctuationType;
use crate::record::TaskId;
use crate::state::checkpoint::{self, CHECKPOINT_FILE};
use crate::state::{SharedStore, StoreInner, StoreKind, StoreSpec};
use crate::task::StreamTask;

/// A checkpoint is written when the changelogs of a task moved this far since the last
/// one (as Kafka's `OFFSET_DELTA_THRESHOLD_FOR_CHECKPOINT`), or when the task is suspended
/// or closed: flushing RocksDB's memtables at every commit would cost more than it saves.
const CHECKPOINT_DELTA: i64 = 10_000;

/// How long opening a store waits for another thread of this instance to release it.
const STORE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long a restoration step may take while other tasks are running.
const RESTORE_STEP_WHILE_RUNNING: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Revoked,
    Lost,
    Assigned,
}

/// Tells the thread what the consumer did in `poll`; the thread acts on it after.
struct Listener(Arc<Mutex<Vec<Event>>>);

impl RebalanceListener for Listener {
    fn on_partitions_revoked(&mut self, _revoked: &[TopicPartition], _ctx: &mut RebalanceContext) {
        self.0.lock().push(Event::Revoked);
    }

    fn on_partitions_assigned(&mut self, _assigned: &[TopicPartition], _ctx: &mut RebalanceContext) {
        self.0.lock().push(Event::Assigned);
    }

    fn on_partitions_lost(&mut self, _lost: &[TopicPartition], _ctx: &mut RebalanceContext) {
        self.0.lock().push(Event::Lost);
    }
}

/// Tasks are told what is coming this many records at a time, one batch ahead of the
/// one processed: their loads then overlap each other, and arrive in the time of a few
/// records.
const PREFETCH_BATCH: usize = 8;

/// A task's input, one queue per partition; the next record is the head with the lowest
/// timestamp, as Kafka's `PartitionGroup` picks it.
/// Records of one input partition waiting for their task, with their timestamps.
type PartitionQueue = ((Arc<str>, i32), VecDeque<(i64, ConsumerRecord)>);

#[derive(Default)]
struct PartitionGroup {
    queues: Vec<PartitionQueue>,
    len: usize,
}

impl PartitionGroup {
    fn push(&mut self, timestamp: i64, record: ConsumerRecord) {
        // The records of one fetch share their topic's allocation: compare pointers first,
        // and remember a new fetch's allocation once its name matched.
        let same = |tp: &(Arc<str>, i32)| Arc::ptr_eq(&tp.0, &record.topic) && tp.1 == record.partition;
        let found = self.queues.iter().position(|(tp, _)| same(tp)).or_else(|| {
            let i = self.queues.iter().position(|(tp, _)| tp.0 == record.topic && tp.1 == record.partition)?;
            self.queues[i].0.0 = record.topic.clone();
            Some(i)
        });
        let queue = match found {
            Some(i) => &mut self.queues[i].1,
            None => {
                self.queues.push(((record.topic.clone(), record.partition), VecDeque::new()));
                &mut self.queues.last_mut().expect("just pushed").1
            }
        };
        queue.push_back((timestamp, record));
        self.len += 1;
    }

    fn pop(&mut self) -> Option<ConsumerRecord> {
        if self.len == 0 {
            return None;
        }
        let queue = if self.queues.len() == 1 {
            &mut self.queues[0].1
        } else {
            self.queues.iter_mut().filter(|(_, q)| !q.is_empty()).min_by_key(|(_, q)| q[0].0).map(|(_, q)| q)?
        };
        self.len -= 1;
        queue.pop_front().map(|(_, r)| r)
    }
}

/// Input partition -> the task that reads it. Polls return records partition by partition,
/// and the records of one fetch share their topic's allocation, so the last answer is
/// remembered and checked by pointer before the map is asked.
#[derive(Default)]
struct Routes {
    map: HashMap<(Arc<str>, i32), TaskId>,
    last: Option<(Arc<str>, i32, TaskId)>,
}

impl Routes {
    fn get(&mut self, topic: &Arc<str>, partition: i32) -> Option<TaskId> {
        if let Some((t, p, id)) = &self.last
            && Arc::ptr_eq(t, topic)
            && *p == partition
        {
            return Some(*id);
        }
        let id = *self.map.get(&(topic.clone(), partition))?;
        self.last = Some((topic.clone(), partition, id));
        Some(id)
    }

    fn insert(&mut self, topic: Arc<str>, partition: i32, id: TaskId) {
        self.last = None;
        self.map.insert((topic, partition), id);
    }

    fn clear(&mut self) {
        self.last = None;
        self.map.clear();
    }

    /// How many input partitions route to task `id`.
    fn partitions_of(&self, id: TaskId) -> usize {
        self.map.values().filter(|t| **t == id).count()
    }
}

/// A task this thread runs, with what it needs beyond the task itself.
struct RunningTask {
    task: StreamTask,
    input: PartitionGroup,
    /// The task reads one input partition of this thread's assignment.
    single_input: bool,
    dir: PathBuf,
    /// Changelog partition -> the offset the last checkpoint (or restoration) reached.
    checkpointed: BTreeMap<TopicPartition, i64>,
    /// Input partition -> the offset last committed.
    committed: BTreeMap<(Arc<str>, i32), i64>,
}

pub(crate) struct StreamThread {
    pub index: usize,
    shared: Arc<Shared>,
    link: Arc<ThreadLink>,
    consumer: Consumer,
    changelogs: ChangelogReader,
    collector: ProducerCollector,
    events: Arc<Mutex<Vec<Event>>>,
    active: BTreeMap<TaskId, RunningTask>,
    /// Tasks whose stores are still being restored; their input partitions are paused.
    restoring: BTreeMap<TaskId, RunningTask>,
    suspended: BTreeMap<TaskId, RunningTask>,
    routes: Routes,
    /// Records were processed since the last commit.
    dirty: bool,
    last_commit: Instant,
}

fn migrated(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            codes::ILLEGAL_GENERATION
                | codes::UNKNOWN_MEMBER_ID
                | codes::REBALANCE_IN_PROGRESS
                | codes::FENCED_INSTANCE_ID
        )
    )
}

impl StreamThread {
    /// Connects the thread's clients and subscribes. Runs on the thread itself.
    pub fn create(index: usize, shared: Arc<Shared>) -> Result<Self> {
        let link = Arc::new(ThreadLink::default());
        let handle = shared.handle.clone();
        let (consumer_config, restore_config, producer_config) = shared.client_configs(index, link.clone())?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let (consumer, restore_consumer, producer) = handle.block_on(async {
            let mut consumer = Consumer::connect(consumer_config).await?;
            let restore_consumer = Consumer::connect(restore_config).await?;
            let producer = freshet_log::client::Producer::connect(producer_config).await?;
            let listener = Box::new(Listener(events.clone()));
            let (topics, pattern) = shared.subscription();
            match pattern {
                Some(pattern) => consumer.subscribe_pattern(&pattern, Some(listener)).await?,
                None => {
                    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                    consumer.subscribe_with_listener(&topics, listener).await?;
                }
            }
            Ok::<_, ClientError>((consumer, restore_consumer, producer))
        })?;
        Ok(StreamThread {
            index,
            changelogs: ChangelogReader::new(restore_consumer, handle.clone()),
            collector: ProducerCollector::new(producer, handle),
            shared,
            link,
            consumer,
            events,
            active: BTreeMap::new(),
            restoring: BTreeMap::new(),
            suspended: BTreeMap::new(),
            routes: Routes::default(),
            dirty: false,
            last_commit: Instant::now(),
        })
    }

    /// Runs until the application shuts down or an error stops the thread.
    /// A panic outside the tasks' guards (in a timestamp extractor while routing, or a
    /// bug of the runtime) fails the thread like an error, so that it still closes its
    /// stores and leaves the group.
    pub fn run(mut self) -> Result<()> {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run_loop())).unwrap_or_else(|payload| {
            Err(StreamsError::panicked("-", format!("in stream thread {}", self.index + 1), &*payload))
        });
        self.shutdown(outcome.is_ok());
        outcome
    }

    fn run_loop(&mut self) -> Result<()> {
        while !self.shared.shutting_down() {
            let Some(records) = self.poll()? else { continue };
            let mut records = records.into_iter();
            let mut until_prefetch = 0;
            let mut rewind = HashMap::new();
            while let Some(record) = records.next() {
                if until_prefetch == 0 {
                    // The batch after the next: the next one's loads are under way.
                    let ahead = records.as_slice();
                    self.prefetch(&ahead[ahead.len().min(PREFETCH_BATCH - 1)..ahead.len().min(2 * PREFETCH_BATCH - 1)]);
                    until_prefetch = PREFETCH_BATCH;
                }
                until_prefetch -= 1;
                self.route(record, &mut rewind)?;
            }
            for (tp, offset) in rewind {
                // Read again once the task has restored (its partition is paused until then).
                self.consumer.seek(&tp, offset)?;
            }
            self.process()?;
            self.punctuate_wall_clock()?;
            self.collector.dispatch();
            self.restore_step()?;
            let requested = self.active.values().any(|t| t.task.ctx.commit_requested);
            if self.last_commit.elapsed() >= self.shared.config.commit_interval || requested {
                self.commit(false)?;
            }
        }
        Ok(())
    }

    /// Polls the main consumer. A due rebalance is run only after a commit, so the
    /// revocation finds no uncommitted work and the tasks keep their state (Kafka commits
    /// in its revocation callback); otherwise the poll returns early when one becomes due.
    /// `None`: the poll failed in a way the next one retries.
    fn poll(&mut self) -> Result<Option<freshet_log::client::ConsumerRecords>> {
        // Restoration goes on between polls: do not wait for input meanwhile.
        let timeout = if self.restoring.is_empty() { self.shared.config.poll } else { Duration::ZERO };
        let handle = self.shared.handle.clone();
        let polled = if self.consumer.rebalance_pending() {
            if self.consumer.partitions_lost() {
                // Others may own the tasks already: nothing of theirs is written now, and
                // their state stays only if nothing was processed since the last commit.
                if !self.active.is_empty() || !self.restoring.is_empty() {
                    self.close_all(!self.dirty);
                }
            } else if !self.active.is_empty() {
                self.commit(true)?;
            }
            handle.block_on(self.consumer.poll(timeout))
        } else {
            handle.block_on(self.consumer.poll_deferring_rebalance(timeout))
        };
        self.handle_rebalance()?;
        match polled {
            Ok(records) => Ok(Some(records)),
            Err(e) if e.is_retriable() || migrated(&e) => {
                tracing::warn!(thread = self.index, error = %e, "poll failed; retrying");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Lets the task of a record processed soon start loading what it will look up: an
    /// aggregation's cache slot is usually not in the CPU's caches, and waiting for it
    /// was a fifth of word count's time.
    fn prefetch(&mut self, records: &[ConsumerRecord]) {
        let Some(first) = records.first() else { return };
        // Polls return records partition by partition: hint the leading run of one.
        let run = records.iter().take_while(|r| Arc::ptr_eq(&r.topic, &first.topic) && r.partition == first.partition);
        let run = &records[..run.count()];
        if let Some(id) = self.routes.get(&first.topic, first.partition)
            && let Some(task) = self.active.get_mut(&id)
        {
            task.task.prefetch(run);
        }
    }

    /// Hands a polled record to its task: at once if the task reads one partition (its
    /// records come in order, there is nothing to choose between), else to the queue that
    /// picks between the task's partitions by timestamp.
    /// A record of a task still restoring (fetched before its partition was paused) is
    /// noted in `rewind`, to be read again.
    fn route(&mut self, record: ConsumerRecord, rewind: &mut HashMap<TopicPartition, i64>) -> Result<()> {
        let Some(id) = self.routes.get(&record.topic, record.partition) else {
            tracing::debug!(topic = %record.topic, partition = record.partition, "a record of no task of this thread");
            return Ok(());
        };
        let Some(task) = self.active.get_mut(&id) else {
            if self.restoring.contains_key(&id) {
                rewind.entry(TopicPartition::new(record.topic.to_string(), record.partition)).or_insert(record.offset);
            }
            return Ok(());
        };
        if task.single_input && task.input.len == 0 {
            task.task.process(record)?;
            task.task.punctuate(PunctuationType::StreamTime)?;
            self.dirty = true;
            return Ok(());
        }
        match task.task.timestamp_of(&record) {
            Some(ts) => task.input.push(ts, record),
            None => tracing::warn!(task = %id, topic = %record.topic, "a record of a topic the task does not read"),
        }
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        for running in self.active.values_mut() {
            while let Some(record) = running.input.pop() {
                running.task.process(record)?;
                running.task.punctuate(PunctuationType::StreamTime)?;
                self.dirty = true;
            }
        }
        Ok(())
    }

    fn punctuate_wall_clock(&mut self) -> Result<()> {
        let now = SystemClock.now_ms();
        for running in self.active.values_mut() {
            running.task.set_wall_clock(now);
            if running.task.punctuate(PunctuationType::WallClockTime)? {
                self.dirty = true;
            }
        }
        Ok(())
    }

    /// At-least-once commit: caches flushed, every write acknowledged, checkpoints
    /// written, then the input offsets committed. Returns false if the tasks had moved to
    /// another member (they are closed, uncommitted).
    fn commit(&mut self, force_checkpoint: bool) -> Result<bool> {
        for running in self.active.values_mut() {
            running.task.flush()?;
        }
        self.collector.flush()?;
        for running in self.active.values_mut() {
            checkpoint_task(running, &self.collector, force_checkpoint)?;
        }
        let mut offsets = Vec::new();
        for running in self.active.values() {
            for (topic, partition, offset) in running.task.consumed() {
                if running.committed.get(&(topic.clone(), partition)) != Some(&offset) {
                    offsets.push((TopicPartition::new(topic.to_string(), partition), offset, None));
                }
            }
        }
        if !offsets.is_empty() {
            match self.shared.handle.block_on(self.consumer.commit_offsets_sync(&offsets)) {
                Ok(()) => {}
                Err(e) if migrated(&e) => {
                    // The stores hold exactly what their changelogs were acknowledged to
                    // hold: the state stays, and the uncommitted input is read again.
                    tracing::warn!(thread = self.index, error = %e, "tasks moved to another member before their commit");
                    self.close_all(true);
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
            for running in self.active.values_mut() {
                let consumed = running.task.consumed().map(|(topic, partition, o)| ((topic.clone(), partition), o));
                running.committed.extend(consumed.collect::<Vec<_>>());
            }
        }
        self.dirty = false;
        self.last_commit = Instant::now();
        Ok(true)
    }

    fn handle_rebalance(&mut self) -> Result<()> {
        let events = std::mem::take(&mut *self.events.lock());
        for event in events {
            match event {
                Event::Revoked if !self.dirty => self.suspend_all()?,
                // Others may own the tasks already; with nothing uncommitted their state stays.
                Event::Lost if !self.dirty => self.close_all(true),
                Event::Revoked | Event::Lost => {
                    if !self.active.is_empty() {
                        tracing::warn!(
                            thread = self.index,
                            ?event,
                            "tasks revoked with uncommitted work; closing them dirty"
                        );
                    }
                    self.close_all(false);
                }
                Event::Assigned => self.on_assigned()?,
            }
        }
        Ok(())
    }

    /// Eager revocation after a commit: tasks keep their stores open in case they come
    /// back. Restorations stop; their tasks close (what they restored stays, and their
    /// checkpoints are as they were).
    fn suspend_all(&mut self) -> Result<()> {
        self.shared.set_thread_state(self.index, ThreadState::PartitionsRevoked);
        for (id, running) in std::mem::take(&mut self.active) {
            self.shared.unregister_stores(id);
            self.suspended.insert(id, running);
        }
        self.close_restoring(true)?;
        self.routes.clear();
        Ok(())
    }

    /// Closes the tasks still restoring. With `checkpoint` (a clean close: every polled
    /// record reached its store), each gets a checkpoint at the positions it reached, so
    /// restoring it here again goes on from there; otherwise its checkpoint goes.
    fn close_restoring(&mut self, checkpoint: bool) -> Result<()> {
        for (id, mut running) in std::mem::take(&mut self.restoring) {
            let written = if checkpoint {
                self.changelogs.positions(id).and_then(|reached| {
                    running.checkpointed.extend(reached);
                    running.task.flush_stores()?;
                    checkpoint::write(&running.dir.join(CHECKPOINT_FILE), &running.checkpointed)
                })
            } else {
                Err(StreamsError::IllegalState("not a clean close".into()))
            };
            if let Err(e) = written {
                tracing::debug!(task = %id, error = %e, "a restore cut short starts over next time");
                let _ = std::fs::remove_file(running.dir.join(CHECKPOINT_FILE));
            }
            running.task.close();
        }
        self.changelogs.stop_all()
    }

    /// Closes every task. Without `keep_state` their work since the last commit may be
    /// in the stores and not in the changelogs: the checkpoints go, so the stores are
    /// rebuilt from the changelogs when the tasks come back.
    fn close_all(&mut self, keep_state: bool) {
        self.shared.set_thread_state(self.index, ThreadState::PartitionsRevoked);
        for (id, mut running) in std::mem::take(&mut self.active) {
            self.shared.unregister_stores(id);
            running.task.close();
            if !keep_state {
                let _ = std::fs::remove_file(running.dir.join(CHECKPOINT_FILE));
            }
        }
        if let Err(e) = self.close_restoring(true) {
            tracing::warn!(thread = self.index, error = %e, "stopping restoration");
        }
        self.routes.clear();
        self.dirty = false;
    }

    fn on_assigned(&mut self) -> Result<()> {
        self.shared.set_thread_state(self.index, ThreadState::PartitionsAssigned);
        let info = self.link.assignment.lock().take().unwrap_or_default();
        let tasks = info.task_ids();
        for (id, mut running) in std::mem::take(&mut self.suspended) {
            if tasks.contains(&id) {
                self.active.insert(id, running);
            } else {
                running.task.close();
            }
        }
        let new: Vec<TaskId> = tasks.iter().filter(|t| !self.active.contains_key(t)).copied().collect();
        self.create_tasks(&new)?;
        *self.link.previous.lock() = tasks.clone();
        self.routes.clear();
        for TopicPartition { topic, partition } in self.consumer.assignment() {
            let Some(sub) = self.shared.topology.subtopology_of_topic(&topic, &self.shared.application_id) else {
                continue;
            };
            let id = TaskId::new(sub.id, partition);
            if self.active.contains_key(&id) || self.restoring.contains_key(&id) {
                self.routes.insert(topic.as_str().into(), partition, id);
            }
            if self.restoring.contains_key(&id) {
                self.consumer.pause(&[TopicPartition::new(topic.clone(), partition)])?;
            }
        }
        for (id, running) in self.active.iter_mut().chain(self.restoring.iter_mut()) {
            running.single_input = self.routes.partitions_of(*id) == 1;
        }
        self.size_caches();
        for (id, running) in &self.active {
            self.shared.register_stores(*id, running.task.stores().cloned().collect());
        }
        tracing::info!(thread = self.index, tasks = ?tasks.iter().map(ToString::to_string).collect::<Vec<_>>(), restoring = self.restoring.len(), "tasks assigned");
        self.last_commit = Instant::now();
        if self.restoring.is_empty() {
            self.shared.set_thread_state(self.index, ThreadState::Running);
        }
        Ok(())
    }

    /// `cache.max.bytes` is the instance's; each thread gets its share, split over the
    /// caching stores of its tasks.
    fn size_caches(&self) {
        let tasks = self.active.values().chain(self.restoring.values());
        let caching: Vec<&SharedStore> =
            tasks.flat_map(|r| r.task.stores()).filter(|s| s.spec.caching).map(|s| &s.store).collect();
        if caching.is_empty() {
            return;
        }
        let share = self.shared.config.cache_max_bytes / self.shared.config.num_stream_threads.max(1) / caching.len();
        for store in caching {
            store.lock().set_cache_bytes(share);
        }
    }

    /// Opens the stores of new tasks (a persistent store without a usable checkpoint starts
    /// empty). Tasks with changelog records to restore wait in `restoring`; the others run.
    fn create_tasks(&mut self, ids: &[TaskId]) -> Result<()> {
        for &id in ids {
            let (mut running, plan) = self.create_task(id)?;
            let (work, current): (Vec<Restore>, Vec<Restore>) = plan.into_iter().partition(Restore::has_work);
            for r in current {
                running.checkpointed.insert(r.tp, r.end);
            }
            if work.is_empty() {
                self.active.insert(id, running);
            } else {
                self.changelogs.add(work)?;
                self.restoring.insert(id, running);
            }
        }
        Ok(())
    }

    /// One step of restoration: tasks whose stores caught up with their changelogs start
    /// running (their partitions resume), and the thread runs once none is left.
    fn restore_step(&mut self) -> Result<()> {
        if self.restoring.is_empty() {
            return Ok(());
        }
        // Restore polls until the budget is spent, then back to the main poll: often enough
        // to stay in the group, and to keep the running tasks processing.
        let budget = if self.active.is_empty() { self.shared.config.poll } else { RESTORE_STEP_WHILE_RUNNING };
        let began = Instant::now();
        let mut done = Vec::new();
        while !self.changelogs.is_idle() && began.elapsed() < budget {
            let (finished, records) = self.changelogs.step(budget.saturating_sub(began.elapsed()))?;
            self.shared.add_restored(records);
            done.extend(finished);
        }
        // Every finished changelog is recorded before any task starts: a task may finish
        // several in one step.
        for r in &done {
            if let Some(running) = self.restoring.get_mut(&r.task) {
                running.checkpointed.insert(r.tp.clone(), r.end);
            }
        }
        for r in done {
            if !self.changelogs.is_restoring(r.task)
                && let Some(running) = self.restoring.remove(&r.task)
            {
                self.start_restored(r.task, running)?;
            }
        }
        if self.restoring.is_empty() {
            self.shared.set_thread_state(self.index, ThreadState::Running);
        }
        Ok(())
    }

    fn start_restored(&mut self, id: TaskId, running: RunningTask) -> Result<()> {
        let inputs: Vec<TopicPartition> = self
            .routes
            .map
            .iter()
            .filter(|(_, t)| **t == id)
            .map(|((topic, p), _)| TopicPartition::new(topic.to_string(), *p))
            .collect();
        self.consumer.resume(&inputs)?;
        self.shared.register_stores(id, running.task.stores().cloned().collect());
        tracing::debug!(thread = self.index, task = %id, "restored; the task runs");
        self.active.insert(id, running);
        Ok(())
    }

    fn create_task(&mut self, id: TaskId) -> Result<(RunningTask, Vec<Restore>)> {
        let shared = self.shared.clone();
        let topology = &shared.topology;
        let sub = topology.subtopologies.get(id.subtopology as usize).ok_or_else(|| {
            StreamsError::IllegalState(format!("assigned task {id} of a sub-topology this topology lacks"))
        })?;
        let dir = shared.app_dir.join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::state_dir(&dir, e))?;
        let checkpoint_path = dir.join(CHECKPOINT_FILE);
        let checkpoint = checkpoint::read(&checkpoint_path).unwrap_or_else(|e| {
            tracing::warn!(task = %id, error = %e, "ignoring a corrupt checkpoint; the task's stores are rebuilt from their changelogs");
            checkpoint::Offsets::new()
        });
        // Where each logged store restores from: its checkpoint, if the changelog still
        // has that offset; otherwise from the beginning, into an empty store.
        let mut starts: HashMap<String, (TopicPartition, Option<i64>, i64)> = HashMap::new();
        for name in &sub.stores {
            let Some(spec) = topology.stores.get(name) else { continue };
            if !spec.logging {
                continue;
            }
            let tp = TopicPartition::new(crate::topology::changelog_topic(&shared.application_id, name), id.partition);
            let (low, high) = self.shared.handle.block_on(self.changelogs.consumer().watermarks(&tp))?;
            let start = match (spec.kind, checkpoint.get(&tp)) {
                (StoreKind::Persistent, Some(&offset)) if (low..=high).contains(&offset) => Some(offset),
                (StoreKind::Persistent, Some(&offset)) => {
                    tracing::warn!(task = %id, store = %name, offset, low, high, "the checkpoint is outside the changelog; rebuilding the store");
                    None
                }
                _ => None,
            };
            starts.insert(name.clone(), (tp, start, high));
        }
        let cache_bytes = shared.config.cache_max_bytes;
        let mut opened: Vec<(String, SharedStore)> = Vec::new();
        let mut open = |spec: &StoreSpec, _changelog: &str| {
            let store_dir = dir.join("rocksdb").join(&spec.name);
            let fresh = starts.get(&spec.name).is_some_and(|(_, start, _)| start.is_none());
            let mut stale = spec.kind == StoreKind::Persistent && fresh && store_dir.exists();
            // A task that moved between two threads of this instance may still be open in
            // the other one until it handles its own assignment: wait for its lock.
            let waited = Instant::now();
            let open_when_free = || loop {
                match StoreInner::open_bytes(spec.kind, &spec.name, Some(&dir)) {
                    Ok(bytes) => break Ok(bytes),
                    Err(StreamsError::StoreLocked { .. }) if waited.elapsed() < STORE_LOCK_WAIT => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => break Err(e),
                }
            };
            let mut bytes = match open_when_free() {
                Ok(bytes) => bytes,
                // A logged store is a copy of its changelog: one that RocksDB cannot open
                // (corrupt or truncated files) is rebuilt from it, from the beginning.
                Err(e @ StreamsError::Store { .. }) if spec.kind == StoreKind::Persistent && spec.logging => {
                    tracing::warn!(task = %id, store = %spec.name, error = %e, "the store does not open; rebuilding it from its changelog");
                    // The checkpoint goes before the store: a crash during the rebuild must
                    // not leave an entry for it beside an empty store.
                    let _ = std::fs::remove_file(&checkpoint_path);
                    std::fs::remove_dir_all(&store_dir).map_err(|e| StreamsError::state_dir(&store_dir, e))?;
                    if let Some((_, start, _)) = starts.get_mut(&spec.name) {
                        *start = None;
                    }
                    stale = false;
                    open_when_free()?
                }
                Err(e) => return Err(e),
            };
            if stale {
                // Emptied only once this thread holds it: deleting the files while the
                // other thread still wrote to them failed, and would have failed it.
                drop(bytes);
                let _ = std::fs::remove_file(&checkpoint_path);
                std::fs::remove_dir_all(&store_dir).map_err(|e| StreamsError::state_dir(&store_dir, e))?;
                bytes = open_when_free()?;
            }
            let cache = if spec.caching { cache_bytes } else { 0 };
            let store: SharedStore = Arc::new(Mutex::new(StoreInner::new(&spec.name, bytes, cache, spec.logging)));
            opened.push((spec.name.clone(), store.clone()));
            Ok(store)
        };
        let task = StreamTask::create(
            topology.clone(),
            sub,
            shared.application_id.clone(),
            id,
            self.collector.boxed(),
            shared.config.deserialization_handler.clone(),
            &mut open,
            SystemClock.now_ms(),
        )?;
        // A checkpoint entry not used (the store is rebuilt) must not outlive this
        // incarnation: a rebuild cut short would otherwise resume from it.
        let used: checkpoint::Offsets =
            starts.values().filter_map(|(tp, start, _)| start.map(|s| (tp.clone(), s))).collect();
        // (A file is written only with entries: its presence tells the assignor that this
        // instance has the task's state.)
        if used.is_empty() {
            let _ = std::fs::remove_file(&checkpoint_path);
        } else if used != checkpoint || !checkpoint_path.exists() {
            checkpoint::write(&checkpoint_path, &used)?;
        }
        let restores = opened
            .into_iter()
            .filter_map(|(name, store)| {
                starts.remove(&name).map(|(tp, start, end)| Restore { task: id, tp, store, start, end })
            })
            .collect();
        let running = RunningTask {
            task,
            input: PartitionGroup::default(),
            single_input: false,
            dir,
            checkpointed: BTreeMap::new(),
            committed: BTreeMap::new(),
        };
        Ok((running, restores))
    }

    /// Commits (checkpointing everything), closes the tasks and the clients.
    fn shutdown(mut self, mut clean: bool) {
        self.shared.set_thread_state(self.index, ThreadState::PendingShutdown);
        if clean && !self.active.is_empty() {
            match self.commit(true) {
                Ok(_) => {}
                Err(e) => {
                    // The stores may now be ahead of their changelogs: not a clean close.
                    tracing::warn!(thread = self.index, error = %e, "the final commit failed");
                    clean = false;
                }
            }
        }
        if let Err(e) = self.close_restoring(clean) {
            tracing::warn!(thread = self.index, error = %e, "stopping restoration");
        }
        let tasks: Vec<(TaskId, RunningTask)> = std::mem::take(&mut self.active).into_iter().collect();
        for (id, mut running) in tasks.into_iter().chain(std::mem::take(&mut self.suspended)) {
            self.shared.unregister_stores(id);
            running.task.close();
            if !clean {
                let _ = std::fs::remove_file(running.dir.join(CHECKPOINT_FILE));
            }
        }
        self.collector.close();
        let handle = self.shared.handle.clone();
        if let Err(e) = handle.block_on(self.consumer.close()) {
            tracing::warn!(thread = self.index, error = %e, "leaving the group");
        }
    }
}

/// Writes a task's checkpoint when forced or when its changelogs moved enough: the stores
/// are flushed to disk first, so the file never claims more than they hold.
fn checkpoint_task(running: &mut RunningTask, collector: &ProducerCollector, force: bool) -> Result<()> {
    let partition = running.task.id.partition;
    let mut offsets = checkpoint::Offsets::new();
    let mut moved = 0;
    for store in running.task.stores() {
        if !store.spec.logging || store.spec.kind != StoreKind::Persistent {
            continue;
        }
        let tp = TopicPartition::new(store.changelog.to_string(), partition);
        let base = running.checkpointed.get(&tp).copied();
        let offset = match (collector.acked(&store.changelog, partition), base) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => continue,
        };
        moved += offset - base.unwrap_or(0);
        offsets.insert(tp, offset);
    }
    if offsets.is_empty() || (!force && moved < CHECKPOINT_DELTA) {
        return Ok(());
    }
    running.task.flush_stores()?;
    checkpoint::write(&running.dir.join(CHECKPOINT_FILE), &offsets)?;
    running.checkpointed.extend(offsets);
    Ok(())
}
