//! Restoring stores from their changelogs a step at a time (Kafka's `StoreChangelogReader`).
//!
//! A stream thread hands new tasks' restorations to its reader and calls [`ChangelogReader::step`]
//! once per loop, between polls of its main consumer: the member keeps polling (so a restore
//! longer than `max.poll.interval.ms` does not cost it its partitions) and the tasks that are
//! already running keep processing. Each step reads one poll of the restore consumer and
//! writes it straight to the stores underneath their caches.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use freshet_log::client::{Consumer, ConsumerRecord, TopicPartition};

use crate::error::{Result, StreamsError};
use crate::record::TaskId;
use crate::state::SharedStore;

/// How long restoration may go without progress before it is an error.
const RESTORE_STALL: Duration = Duration::from_secs(60);

/// Where a store's restoration starts and ends.
pub(crate) struct Restore {
    pub task: TaskId,
    pub tp: TopicPartition,
    pub store: SharedStore,
    /// The checkpointed offset; `None` restores from the beginning into an empty store.
    pub start: Option<i64>,
    /// The changelog's end when the task was created.
    pub end: i64,
}

impl Restore {
    /// Whether the changelog holds anything to read.
    pub fn has_work(&self) -> bool {
        self.start.unwrap_or(0) < self.end
    }
}

/// A restoration that finished: the store holds its changelog up to `end`.
pub(crate) struct Restored {
    pub task: TaskId,
    pub tp: TopicPartition,
    pub end: i64,
}

/// The changelog partitions being read, and the restore consumer reading them.
pub(crate) struct ChangelogReader {
    consumer: Consumer,
    handle: tokio::runtime::Handle,
    pending: HashMap<TopicPartition, Restore>,
    last_progress: Instant,
    began: Instant,
    /// Records restored since the reader last went idle.
    restored: u64,
}

impl ChangelogReader {
    pub fn new(consumer: Consumer, handle: tokio::runtime::Handle) -> Self {
        Self {
            consumer,
            handle,
            pending: HashMap::new(),
            last_progress: Instant::now(),
            began: Instant::now(),
            restored: 0,
        }
    }

    /// The restore consumer, for the watermarks a new task's restore plan needs.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether any store of `task` is still being restored.
    pub fn is_restoring(&self, task: TaskId) -> bool {
        self.pending.values().any(|r| r.task == task)
    }

    /// Starts reading `restores` (which must have work), beside those under way.
    pub fn add(&mut self, restores: Vec<Restore>) -> Result<()> {
        if restores.is_empty() {
            return Ok(());
        }
        if self.pending.is_empty() {
            self.began = Instant::now();
            self.restored = 0;
        }
        self.last_progress = Instant::now();
        let mut partitions: Vec<TopicPartition> = self.pending.keys().cloned().collect();
        partitions.extend(restores.iter().map(|r| r.tp.clone()));
        // Partitions already assigned keep their positions.
        self.handle.block_on(self.consumer.assign(&partitions))?;
        for r in restores {
            match r.start {
                Some(offset) => self.consumer.seek(&r.tp, offset)?,
                None => self.consumer.seek_to_beginning(std::slice::from_ref(&r.tp))?,
            }
            self.pending.insert(r.tp.clone(), r);
        }
        Ok(())
    }

    /// Where the restorations of `task` have got to.
    pub fn positions(&mut self, task: TaskId) -> Result<Vec<(TopicPartition, i64)>> {
        let tps: Vec<TopicPartition> =
            self.pending.iter().filter(|(_, r)| r.task == task).map(|(tp, _)| tp.clone()).collect();
        let mut out = Vec::with_capacity(tps.len());
        for tp in tps {
            let position = self.handle.block_on(self.consumer.position(&tp))?;
            out.push((tp, position));
        }
        Ok(out)
    }

    /// Stops every restoration (their tasks were closed).
    pub fn stop_all(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.clear();
        self.handle.block_on(self.consumer.assign(&[]))?;
        Ok(())
    }

    /// Reads one poll's worth (waiting at most `timeout`) into the stores. Returns the
    /// restorations that finished, and the records restored in this step.
    pub fn step(&mut self, timeout: Duration) -> Result<(Vec<Restored>, u64)> {
        if self.pending.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let records = self.handle.block_on(self.consumer.poll(timeout))?;
        let mut done = Vec::new();
        let mut restored = 0;
        if !records.is_empty() {
            let all: Vec<&ConsumerRecord> = records.iter().collect();
            for run in all.chunk_by(|a, b| a.topic == b.topic && a.partition == b.partition) {
                let tp = TopicPartition::new(run[0].topic.to_string(), run[0].partition);
                let Some(restore) = self.pending.get(&tp) else { continue };
                let batch = run.iter().filter(|r| r.offset < restore.end);
                let mut pairs = batch.clone().filter_map(|r| r.key.as_deref().map(|k| (k, r.value.as_deref())));
                restore.store.lock().restore(&mut pairs)?;
                restored += batch.count() as u64;
            }
        }
        // Compacted changelogs have gaps: a partition is done when its position reaches
        // the end, even if the last offsets were compacted away.
        let ends: Vec<(TopicPartition, i64)> = self.pending.iter().map(|(tp, r)| (tp.clone(), r.end)).collect();
        for (tp, end) in ends {
            if self.handle.block_on(self.consumer.position(&tp))? >= end
                && let Some(r) = self.pending.remove(&tp)
            {
                done.push(Restored { task: r.task, tp, end });
            }
        }
        self.restored += restored;
        if restored > 0 || !done.is_empty() {
            self.last_progress = Instant::now();
        } else {
            self.check_stall()?;
        }
        if self.pending.is_empty() {
            self.finish()?;
        } else if !done.is_empty() {
            // Stop reading what is restored: a running task's new changelog writes would
            // take the places of the records still needed.
            let partitions: Vec<TopicPartition> = self.pending.keys().cloned().collect();
            self.handle.block_on(self.consumer.assign(&partitions))?;
        }
        Ok((done, restored))
    }

    fn check_stall(&self) -> Result<()> {
        if self.last_progress.elapsed() <= RESTORE_STALL {
            return Ok(());
        }
        let left: Vec<String> = self.pending.keys().map(ToString::to_string).collect();
        Err(StreamsError::IllegalState(format!(
            "restoring {} made no progress for {}s",
            left.join(", "),
            RESTORE_STALL.as_secs()
        )))
    }

    fn finish(&mut self) -> Result<()> {
        self.handle.block_on(self.consumer.assign(&[]))?;
        let seconds = self.began.elapsed().as_secs_f64();
        tracing::info!(
            records = self.restored,
            seconds,
            per_second = (self.restored as f64 / seconds.max(1e-9)) as u64,
            "restored state from changelogs"
        );
        Ok(())
    }
}
