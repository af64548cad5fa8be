//! `LogManager`: owns every partition log in one data directory.
//!
//! It locks the directory (so two processes cannot share it), loads all partitions in
//! parallel at start (recovering them if the last shutdown was not clean), creates and
//! deletes logs, keeps the directory-level checkpoints, and runs retention, flushing and
//! the cleaner on schedules in background threads. A clean [`LogManager::shutdown`]
//! flushes everything and leaves a marker so the next start skips recovery.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use super::TopicPartition;
use super::checkpoint::{read_offsets, sync_dir, write_offsets};
use super::cleaner::{CleanerConfig, CleanerStats, LogCleaner};
use super::config::LogConfig;
use super::error::{IoContext, LogError, Result};
use super::log::{LoadReport, Log, LogOpenOptions};
use super::quarantine::{QUARANTINE_DIR, Quarantine, Quarantined};
use crate::time::Clock;

/// Marker written by a clean shutdown.
pub const CLEAN_SHUTDOWN_FILE: &str = ".freshet_cleanshutdown";
/// Lock file held while the directory is open.
pub const LOCK_FILE: &str = ".lock";
/// Per-partition fsynced offsets.
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Per-partition log start offsets.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Per-partition cleaner positions.
pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";
/// Root entries the manager knows and leaves alone.
const KNOWN_ROOT_ENTRIES: &[&str] = &[
    CLEAN_SHUTDOWN_FILE,
    LOCK_FILE,
    RECOVERY_POINT_CHECKPOINT,
    LOG_START_OFFSET_CHECKPOINT,
    CLEANER_OFFSET_CHECKPOINT,
    QUARANTINE_DIR,
    super::meta_properties::META_PROPERTIES,
    "lost+found",
];
/// Suffix of a partition directory being deleted (`<topic>-<p>.<id>-delete`).
const DELETE_DIR_SUFFIX: &str = "-delete";

/// Settings of a log manager (broker-level, Kafka names in the field docs).
#[derive(Debug, Clone)]
pub struct LogManagerConfig {
    /// `log.dirs`: the data directory.
    pub data_dir: PathBuf,
    /// Topic config defaults (`log.*` broker settings).
    pub default_log_config: LogConfig,
    /// Cleaner settings.
    pub cleaner: CleanerConfig,
    /// `num.recovery.threads.per.data.dir`: threads that load partitions at start.
    pub recovery_threads: usize,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `log.flush.scheduler.interval.ms`: how often `flush.ms` and rolled segments are checked.
    pub flush_scheduler_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub checkpoint_interval_ms: u64,
    /// `producer.id.expiration.ms`: a producer idle this long (by the timestamp of its
    /// newest batch) is forgotten, and must start its sequences again.
    pub producer_id_expiration_ms: i64,
    /// `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval_ms: u64,
    /// Files at the top of the data directory that the layers above own (the broker's
    /// metadata): left alone, where any other unknown file is moved to quarantine.
    pub owned_root_files: Vec<String>,
}

impl LogManagerConfig {
    /// Kafka's defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            default_log_config: LogConfig::default(),
            cleaner: CleanerConfig::default(),
            recovery_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            retention_check_interval_ms: 300_000,
            flush_scheduler_interval_ms: 1_000,
            checkpoint_interval_ms: 60_000,
            producer_id_expiration_ms: 86_400_000,
            producer_id_expiration_check_interval_ms: 600_000,
            owned_root_files: Vec::new(),
        }
    }
}

/// What opening a data directory found.
#[derive(Debug, Default, Clone)]
pub struct ManagerLoadReport {
    /// Whether the previous shutdown was clean.
    pub had_clean_shutdown: bool,
    /// The broker's registration epoch when it shut down cleanly, as the clean-shutdown
    /// marker records it (KIP-966: the controller lets such a broker back at once).
    pub previous_broker_epoch: Option<i64>,
    /// Partitions loaded.
    pub logs_loaded: usize,
    /// Per-partition load reports, for partitions where something happened.
    pub logs: BTreeMap<TopicPartition, LoadReport>,
    /// Files moved aside at the directory level.
    pub quarantined: Vec<Quarantined>,
}

impl ManagerLoadReport {
    /// Every file moved aside, directory level and partition level.
    pub fn all_quarantined(&self) -> impl Iterator<Item = &Quarantined> {
        self.quarantined.iter().chain(self.logs.values().flat_map(|r| r.quarantined.iter()))
    }
}

/// A shared, lockable partition log.
pub type SharedLog = Arc<RwLock<Log>>;

/// Owns a data directory's logs.
#[derive(Debug)]
pub struct LogManager {
    config: LogManagerConfig,
    clock: Arc<dyn Clock>,
    _lock: File,
    logs: RwLock<BTreeMap<TopicPartition, SharedLog>>,
    topic_configs: RwLock<HashMap<String, LogConfig>>,
    quarantine: Quarantine,
    cleaner: LogCleaner,
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The broker epoch the clean-shutdown marker records; -1: none.
    broker_epoch: std::sync::atomic::AtomicI64,
}

/// What the clean-shutdown marker holds (Kafka's format).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct CleanShutdown {
    version: i32,
    #[serde(rename = "BrokerEpoch")]
    broker_epoch: i64,
}

/// The broker epoch in a clean-shutdown marker, if it names one (an empty marker, from
/// before brokers registered, names none).
fn read_clean_shutdown_epoch(marker: &Path) -> Option<i64> {
    let bytes = std::fs::read(marker).ok()?;
    serde_json::from_slice::<CleanShutdown>(&bytes).ok().map(|c| c.broker_epoch).filter(|e| *e >= 0)
}

impl LogManager {
    /// Locks and loads `config.data_dir`. `topic_configs` holds per-topic overrides.
    pub fn open(
        config: LogManagerConfig,
        topic_configs: HashMap<String, LogConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, ManagerLoadReport)> {
        let dir = config.data_dir.clone();
        let lock = lock_data_dir(&dir)?;
        let quarantine = Quarantine::new(&dir);
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let mut report = ManagerLoadReport {
            had_clean_shutdown: marker.exists(),
            previous_broker_epoch: read_clean_shutdown_epoch(&marker),
            ..Default::default()
        };
        let checkpoints = Checkpoints::read(&dir, &quarantine, &mut report)?;
        let to_load = find_partition_dirs(&config, &quarantine, &mut report)?;
        let had_clean_shutdown = report.had_clean_shutdown;
        let loads = LoadAll {
            config: &config,
            topic_configs: &topic_configs,
            checkpoints: &checkpoints,
            quarantine: &quarantine,
        };
        let results = loads.run(to_load, had_clean_shutdown, clock.now_ms());
        let mut logs = BTreeMap::new();
        for (tp, loaded) in results {
            let (log, log_report) = loaded?;
            if log_report.recovered_segments > 0 || !log_report.quarantined.is_empty() || log_report.completed_swaps > 0
            {
                report.logs.insert(tp.clone(), log_report);
            }
            logs.insert(tp, Arc::new(RwLock::new(log)));
        }
        report.logs_loaded = logs.len();
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        if had_clean_shutdown {
            std::fs::remove_file(&marker).at(&marker)?;
            sync_dir(&dir)?;
        }
        tracing::info!(dir = %dir.display(), logs = logs.len(), clean = had_clean_shutdown, "loaded logs");
        let cleaner = LogCleaner::new(config.cleaner.clone());
        let manager = Arc::new(Self {
            config,
            clock,
            _lock: lock,
            logs: RwLock::new(logs),
            topic_configs: RwLock::new(topic_configs),
            quarantine,
            cleaner,
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            threads: Mutex::new(Vec::new()),
            broker_epoch: std::sync::atomic::AtomicI64::new(-1),
        });
        manager.checkpoint()?;
        Ok((manager, report))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The log of `tp`, if it exists.
    pub fn get_log(&self, tp: &TopicPartition) -> Option<SharedLog> {
        self.logs.read().get(tp).cloned()
    }

    /// Every log.
    pub fn logs(&self) -> Vec<(TopicPartition, SharedLog)> {
        self.logs.read().iter().map(|(tp, l)| (tp.clone(), l.clone())).collect()
    }

    /// The config a topic's logs use.
    pub fn topic_config(&self, topic: &str) -> LogConfig {
        self.topic_configs.read().get(topic).cloned().unwrap_or_else(|| self.config.default_log_config.clone())
    }

    /// Sets a topic's config and applies it to its existing logs.
    pub fn set_topic_config(&self, topic: &str, config: LogConfig) {
        self.topic_configs.write().insert(topic.to_string(), config.clone());
        for (tp, log) in self.logs.read().iter() {
            if tp.topic == topic {
                log.write().set_config(config.clone());
            }
        }
    }

    /// The log of `tp`, created empty if it does not exist.
    pub fn get_or_create_log(&self, tp: &TopicPartition) -> Result<SharedLog> {
        if let Some(log) = self.get_log(tp) {
            return Ok(log);
        }
        let mut logs = self.logs.write();
        if let Some(log) = logs.get(tp) {
            return Ok(log.clone());
        }
        super::validate_topic_name(&tp.topic).map_err(|reason| LogError::InvalidConfig {
            key: "topic".into(),
            value: tp.topic.clone(),
            reason,
        })?;
        let options =
            LogOpenOptions { quarantine: Some(self.quarantine.clone()), ..LogOpenOptions::new(self.clock.now_ms()) };
        let (log, _) = Log::open(self.config.data_dir.join(tp.dir_name()), self.topic_config(&tp.topic), options)?;
        sync_dir(&self.config.data_dir)?;
        let log = Arc::new(RwLock::new(log));
        logs.insert(tp.clone(), log.clone());
        Ok(log)
    }

    /// Deletes `tp`'s log: renames its directory out of the way (so a crash mid-delete
    /// finishes it on restart), then removes it.
    pub fn delete_log(&self, tp: &TopicPartition) -> Result<bool> {
        let Some(log) = self.logs.write().remove(tp) else {
            return Ok(false);
        };
        let guard = log.write();
        let stamp = self.clock.now_ms();
        let doomed = self.config.data_dir.join(format!("{}.{stamp}{DELETE_DIR_SUFFIX}", tp.dir_name()));
        std::fs::rename(&guard.dir, &doomed).at(&guard.dir)?;
        sync_dir(&self.config.data_dir)?;
        std::fs::remove_dir_all(&doomed).at(&doomed)?;
        Ok(true)
    }

    /// Moves `tp`'s directory into the quarantine (nothing is deleted) and stops serving it.
    pub fn quarantine_log(&self, tp: &TopicPartition, reason: &str) -> Result<Option<Quarantined>> {
        let Some(log) = self.logs.write().remove(tp) else {
            return Ok(None);
        };
        let guard = log.write();
        let moved = self.quarantine.move_aside(&guard.dir, "data-dir", reason)?;
        sync_dir(&self.config.data_dir)?;
        Ok(Some(moved))
    }

    /// One retention pass over every log. Returns segments deleted.
    pub fn run_retention(&self) -> Result<usize> {
        let now_ms = self.clock.now_ms();
        let mut deleted = 0;
        for (_, log) in self.logs() {
            deleted += log.write().delete_old_segments(now_ms)?;
        }
        Ok(deleted)
    }

    /// Deletes the files of retired segments whose `file.delete.delay.ms` has passed.
    /// Returns how many segments went.
    pub fn delete_retired_segments(&self) -> Result<usize> {
        let now_ms = self.clock.now_ms();
        let mut deleted = 0;
        for (_, log) in self.logs() {
            let due = log.write().take_due_retired(now_ms);
            for segment in due {
                // One that cannot be deleted now stays as a `.deleted` file, which the
                // next start removes; the others still go.
                match segment.delete() {
                    Ok(()) => deleted += 1,
                    Err(e) => tracing::warn!(error = %e, "deleting a retired segment"),
                }
            }
        }
        Ok(deleted)
    }

    /// Forgets idle producer ids in every log. Returns how many were removed.
    pub fn remove_expired_producers(&self) -> usize {
        let now_ms = self.clock.now_ms();
        self.logs()
            .into_iter()
            .map(|(_, log)| log.write().remove_expired_producers(now_ms, self.config.producer_id_expiration_ms))
            .sum()
    }

    /// One cleaner pass over every compacted log whose dirty ratio is high enough (or
    /// over all of them, if `force`).
    pub fn run_cleaner(&self, force: bool) -> Result<Vec<(TopicPartition, CleanerStats)>> {
        let now_ms = self.clock.now_ms();
        let mut out = Vec::new();
        for (tp, log) in self.logs() {
            if let Some(stats) = self.cleaner.clean(&log, now_ms, force)? {
                out.push((tp, stats));
            }
        }
        Ok(out)
    }

    /// Flushes logs whose `flush.ms` has passed or that have unflushed rolled segments.
    pub fn flush_due(&self) -> Result<()> {
        let now_ms = self.clock.now_ms();
        for (_, log) in self.logs() {
            // The fsync runs without the log's lock: produce and fetch on the partition go on.
            let plan = log.write().flush_plan_if_due(now_ms)?;
            if let Some(plan) = plan {
                plan.sync()?;
                log.write().complete_flush(plan);
            }
        }
        Ok(())
    }

    /// Writes the recovery-point, log-start and cleaner checkpoints.
    pub fn checkpoint(&self) -> Result<()> {
        let (mut recovery, mut starts, mut cleaner) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (tp, log) in self.logs() {
            let log = log.read();
            recovery.insert(tp.clone(), log.recovery_point());
            starts.insert(tp.clone(), log.log_start_offset());
            cleaner.insert(tp, log.cleaner_checkpoint());
        }
        let dir = &self.config.data_dir;
        write_offsets(&dir.join(RECOVERY_POINT_CHECKPOINT), &recovery)?;
        write_offsets(&dir.join(LOG_START_OFFSET_CHECKPOINT), &starts)?;
        write_offsets(&dir.join(CLEANER_OFFSET_CHECKPOINT), &cleaner)
    }

    /// Starts the background threads: retention, flushing and checkpoints on one, the
    /// cleaner on another. They stop at [`LogManager::shutdown`] or when the manager is dropped.
    pub fn start_background(self: &Arc<Self>) {
        let mut threads = self.threads.lock();
        let housekeeping = Arc::downgrade(self);
        let stop = self.stop.clone();
        threads.push(spawn_loop("log-housekeeping", stop.clone(), self.config.flush_scheduler_interval_ms, {
            let (mut last_retention, mut last_checkpoint, mut last_expiry) = (0i64, 0i64, 0i64);
            move || {
                let Some(m) = housekeeping.upgrade() else {
                    return false;
                };
                let now = m.clock.now_ms();
                // Each step runs whatever became of the one before it.
                let mut result = m.flush_due();
                if let Err(e) = m.delete_retired_segments() {
                    tracing::error!(error = %e, "deleting retired segments failed");
                }
                if result.is_ok() && now - last_retention >= m.config.retention_check_interval_ms as i64 {
                    last_retention = now;
                    result = m.run_retention().map(|_| ());
                }
                if now - last_expiry >= m.config.producer_id_expiration_check_interval_ms as i64 {
                    last_expiry = now;
                    m.remove_expired_producers();
                }
                if result.is_ok() && now - last_checkpoint >= m.config.checkpoint_interval_ms as i64 {
                    last_checkpoint = now;
                    result = m.checkpoint();
                }
                if let Err(e) = result {
                    tracing::error!(error = %e, "log housekeeping failed");
                }
                true
            }
        }));
        if self.config.cleaner.enabled {
            let cleaner = Arc::downgrade(self);
            threads.push(spawn_loop("log-cleaner", stop, self.config.cleaner.backoff_ms, move || {
                let Some(m) = cleaner.upgrade() else {
                    return false;
                };
                if let Err(e) = m.run_cleaner(false) {
                    tracing::error!(error = %e, "log cleaner pass failed");
                }
                true
            }));
        }
    }

    /// The broker's registration epoch, for the clean-shutdown marker to record.
    pub fn set_broker_epoch(&self, epoch: i64) {
        self.broker_epoch.store(epoch, std::sync::atomic::Ordering::Release);
    }

    /// Stops background work, flushes and closes every log, writes the checkpoints and
    /// the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<()> {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        for handle in self.threads.lock().drain(..) {
            let _ = handle.join();
        }
        let now_ms = self.clock.now_ms();
        for (_, log) in self.logs() {
            log.write().close(now_ms)?;
        }
        self.checkpoint()?;
        let marker = self.config.data_dir.join(CLEAN_SHUTDOWN_FILE);
        let epoch = self.broker_epoch.load(std::sync::atomic::Ordering::Acquire);
        let body = if epoch >= 0 {
            serde_json::to_vec(&CleanShutdown { version: 0, broker_epoch: epoch }).unwrap_or_default()
        } else {
            Vec::new()
        };
        std::fs::write(&marker, body).and_then(|()| File::open(&marker)?.sync_all()).at(&marker)?;
        sync_dir(&self.config.data_dir)?;
        tracing::info!(dir = %self.config.data_dir.display(), "log manager shut down cleanly");
        Ok(())
    }
}

fn spawn_loop(
    name: &str,
    stop: Arc<(Mutex<bool>, Condvar)>,
    interval_ms: u64,
    mut tick: impl FnMut() -> bool + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            loop {
                {
                    let mut stopped = stop.0.lock();
                    if !*stopped {
                        stop.1.wait_for(&mut stopped, Duration::from_millis(interval_ms.max(1)));
                    }
                    if *stopped {
                        return;
                    }
                }
                if !tick() {
                    return;
                }
            }
        })
        .expect("spawning a log manager thread")
}

/// Creates the data directory and takes its lock (one manager per directory).
fn lock_data_dir(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).at(dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).at(&lock_path)?;
    if lock.try_lock().is_err() {
        return Err(LogError::DirectoryLocked { path: dir.to_path_buf() });
    }
    Ok(lock)
}

/// The offset checkpoints at the top of the data directory.
struct Checkpoints {
    recovery_points: BTreeMap<TopicPartition, i64>,
    log_starts: BTreeMap<TopicPartition, i64>,
    cleaner_offsets: BTreeMap<TopicPartition, i64>,
}

impl Checkpoints {
    /// Reads them; a damaged one is moved to the quarantine and read as empty.
    fn read(dir: &Path, quarantine: &Quarantine, report: &mut ManagerLoadReport) -> Result<Self> {
        let mut read = |name: &str| -> Result<BTreeMap<TopicPartition, i64>> {
            let path = dir.join(name);
            match read_offsets(&path) {
                Ok(map) => Ok(map),
                Err(LogError::Corrupt { reason, .. }) => {
                    report.quarantined.push(quarantine.move_aside(&path, "checkpoints", reason)?);
                    Ok(BTreeMap::new())
                }
                Err(e) => Err(e),
            }
        };
        Ok(Self {
            recovery_points: read(RECOVERY_POINT_CHECKPOINT)?,
            log_starts: read(LOG_START_OFFSET_CHECKPOINT)?,
            cleaner_offsets: read(CLEANER_OFFSET_CHECKPOINT)?,
        })
    }
}

/// The partition directories to load. Deletions a crash interrupted are finished, and
/// entries that are neither ours nor the layers' above go to the quarantine.
fn find_partition_dirs(
    config: &LogManagerConfig,
    quarantine: &Quarantine,
    report: &mut ManagerLoadReport,
) -> Result<Vec<(TopicPartition, PathBuf)>> {
    let dir = &config.data_dir;
    let mut to_load = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).at(dir)?.collect::<std::io::Result<Vec<_>>>().at(dir)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if KNOWN_ROOT_ENTRIES.contains(&name.as_str())
            || config.owned_root_files.contains(&name)
            || name.ends_with(".tmp")
        {
            continue;
        }
        let is_dir = entry.file_type().at(&path)?.is_dir();
        if is_dir && name.ends_with(DELETE_DIR_SUFFIX) {
            tracing::info!(dir = %path.display(), "finishing deletion of a deleted partition");
            std::fs::remove_dir_all(&path).at(&path)?;
            continue;
        }
        match TopicPartition::parse_dir_name(&name).filter(|_| is_dir) {
            Some(tp) => to_load.push((tp, path)),
            None => report.quarantined.push(quarantine.move_aside(
                &path,
                "data-dir",
                "not a partition directory (expected <topic>-<partition>)",
            )?),
        }
    }
    Ok(to_load)
}

/// Loads partition directories on `recovery.threads` threads.
struct LoadAll<'a> {
    config: &'a LogManagerConfig,
    topic_configs: &'a HashMap<String, LogConfig>,
    checkpoints: &'a Checkpoints,
    quarantine: &'a Quarantine,
}

type Loaded = (TopicPartition, Result<(Log, LoadReport)>);

impl LoadAll<'_> {
    fn run(&self, to_load: Vec<(TopicPartition, PathBuf)>, had_clean_shutdown: bool, now_ms: i64) -> Vec<Loaded> {
        let queue = Mutex::new(to_load);
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..self.config.recovery_threads.max(1) {
                scope.spawn(|| {
                    loop {
                        // Not `while let`: its guard would live through the load.
                        let Some((tp, path)) = queue.lock().pop() else { break };
                        let loaded = self.load_one(&tp, path, had_clean_shutdown, now_ms);
                        results.lock().push((tp, loaded));
                    }
                });
            }
        });
        results.into_inner()
    }

    fn load_one(
        &self,
        tp: &TopicPartition,
        path: PathBuf,
        had_clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<(Log, LoadReport)> {
        let log_config =
            self.topic_configs.get(&tp.topic).cloned().unwrap_or_else(|| self.config.default_log_config.clone());
        let options = LogOpenOptions {
            recovery_point: self.checkpoints.recovery_points.get(tp).copied().unwrap_or(0),
            log_start_offset: self.checkpoints.log_starts.get(tp).copied(),
            had_clean_shutdown,
            now_ms,
            quarantine: Some(self.quarantine.clone()),
            cleaner_checkpoint: self.checkpoints.cleaner_offsets.get(tp).copied(),
        };
        let (mut log, report) = Log::open(path, log_config, options)?;
        // As Kafka does on load: producers that expired while down stay gone.
        log.remove_expired_producers(now_ms, self.config.producer_id_expiration_ms);
        Ok((log, report))
    }
}
