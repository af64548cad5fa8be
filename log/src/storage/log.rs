//! `Log`: one partition's log, a sequence of [`LogSegment`]s with one active segment at the
//! end. It validates and appends batches, assigns offsets, rolls segments, serves reads as
//! file ranges, applies retention and DeleteRecords, flushes, and truncates for replication.
//!
//! The log is a plain struct: mutation takes `&mut self`, reads take `&self`. Its owner
//! (the [`super::LogManager`]) wraps it in a lock, and background work (retention, the
//! cleaner, flushing) goes through the same lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::config::LogConfig;
use super::error::{LogError, Result};
use super::index::TimestampOffset;
use super::leader_epoch::LeaderEpochCache;
use super::producer_state::{ProducerStateManager, SequenceCheck};
use super::quarantine::{Quarantine, Quarantined};
use super::segment::{AppendedBatch, FileRange, LogSegment};
use super::validator::{self, ValidatedBatch, validate_request};
use crate::record::batch::BatchMut;
use crate::record::{BatchRules, TimestampType};

/// Who is appending: the rules differ (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer: full validation, no control batches.
    Client,
    /// A broker coordinator writing its own records (offsets, transaction markers).
    Coordinator,
}

/// What [`Log::open`] needs from the log's owner.
#[derive(Debug, Clone)]
pub struct LogOpenOptions {
    /// Offsets below this were fsynced before the last shutdown.
    pub recovery_point: i64,
    /// The checkpointed log start offset, if any.
    pub log_start_offset: Option<i64>,
    /// Whether the previous shutdown was clean; if not, everything after the recovery
    /// point is re-validated.
    pub had_clean_shutdown: bool,
    /// The current time.
    pub now_ms: i64,
    /// Where unparseable data goes; by default `quarantine/` beside the partition directory.
    pub quarantine: Option<Quarantine>,
    /// Where the dirty (not yet compacted) part of the log starts.
    pub cleaner_checkpoint: Option<i64>,
}

impl LogOpenOptions {
    /// Options for a log whose previous shutdown is unknown (so it is treated as unclean).
    pub fn new(now_ms: i64) -> Self {
        Self {
            recovery_point: 0,
            log_start_offset: None,
            had_clean_shutdown: false,
            now_ms,
            quarantine: None,
            cleaner_checkpoint: None,
        }
    }
}

/// What loading a log found and did.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Segments re-validated batch by batch.
    pub recovered_segments: usize,
    /// Bytes cut off damaged tails (saved in the quarantine first).
    pub truncated_bytes: u64,
    /// Files moved aside, and why.
    pub quarantined: Vec<Quarantined>,
    /// Cleaner swaps completed after a crash.
    pub completed_swaps: usize,
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest timestamp appended.
    pub max_timestamp: i64,
    /// Offset of the batch carrying it.
    pub offset_of_max_timestamp: i64,
    /// The broker's append time if the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Records appended.
    pub records: i64,
    /// Batches appended.
    pub batches: usize,
    /// Bytes appended.
    pub bytes: u64,
    /// The batch was a retry of one already written (idempotent producer): nothing was
    /// appended and the offsets are the original ones.
    pub duplicate: bool,
}

/// A read's result: whole batches as file ranges, plus the log's bounds at the time.
#[derive(Debug, Clone, Default)]
pub struct FetchDataInfo {
    /// File ranges, in offset order.
    pub ranges: Vec<FileRange>,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Log end offset.
    pub log_end_offset: i64,
    /// High watermark.
    pub high_watermark: i64,
}

impl FetchDataInfo {
    /// Total bytes across the ranges.
    pub fn total_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.length).sum()
    }

    /// Reads every range into one buffer.
    pub fn read_to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.total_bytes() as usize);
        for r in &self.ranges {
            out.extend_from_slice(&r.read_to_vec()?);
        }
        Ok(out)
    }
}

/// One partition's log.
#[derive(Debug)]
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) name: String,
    pub(crate) config: LogConfig,
    pub(crate) segments: BTreeMap<i64, LogSegment>,
    pub(crate) log_start_offset: i64,
    pub(crate) recovery_point: i64,
    pub(crate) high_watermark: i64,
    pub(crate) high_watermark_tracks_log_end: bool,
    pub(crate) leader_epoch_cache: LeaderEpochCache,
    pub(crate) unflushed_records: i64,
    pub(crate) last_flush_ms: i64,
    pub(crate) cleaner_checkpoint: i64,
    /// When the next tombstone in the cleaned part may be removed (known only after a
    /// cleaning pass in this process; until then, the next dirty-triggered pass finds it).
    pub(crate) next_tombstone_horizon_ms: Option<i64>,
    pub(crate) producer_state: ProducerStateManager,
    pub(crate) quarantine: Quarantine,
    /// Segments taken out of the log and renamed `.deleted`, with when their files go
    /// (`file.delete.delay.ms`, so readers holding their ranges can finish).
    pub(crate) retired: Vec<(i64, LogSegment)>,
    /// Truncations so far: a flush planned before one must not move the recovery point.
    pub(crate) truncations: u64,
}

/// Segment files to fsync outside the log's lock, and the offset that makes durable.
#[derive(Debug)]
pub struct FlushPlan {
    files: Vec<(std::sync::Arc<std::fs::File>, PathBuf)>,
    upto: i64,
    truncations: u64,
    now_ms: i64,
    unflushed: i64,
}

impl FlushPlan {
    /// Fsyncs the planned files. A file deleted since (by retention) still syncs: the
    /// plan holds it open.
    pub fn sync(&self) -> Result<()> {
        for (file, path) in &self.files {
            file.sync_data().map_err(|source| LogError::Io { path: path.clone(), source })?;
        }
        Ok(())
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it if the last shutdown was not
    /// clean. Damaged data is moved to the quarantine and listed in the report.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig, options: LogOpenOptions) -> Result<(Self, LoadReport)> {
        super::load::load(dir.into(), config, options)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory name (`<topic>-<partition>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the config (takes effect for the next roll, retention and cleaning).
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The first readable offset.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active_segment().next_offset()
    }

    /// Offsets below this are fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// The high watermark: offsets below it are committed.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Where the dirty (uncompacted) part of the log starts.
    pub fn cleaner_checkpoint(&self) -> i64 {
        self.cleaner_checkpoint
    }

    /// The leader-epoch cache.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.leader_epoch_cache
    }

    /// By default the high watermark follows the log end (a single-replica partition).
    /// Replication turns this off and moves it with [`Log::update_high_watermark`].
    pub fn set_high_watermark_tracks_log_end(&mut self, on: bool) {
        self.high_watermark_tracks_log_end = on;
        if on {
            self.high_watermark = self.log_end_offset();
        }
    }

    /// Records that `epoch` begins at the log end: this replica now leads in it (KIP-101),
    /// so OffsetForLeaderEpoch and diverging fetches answer from here on.
    pub fn begin_leader_epoch(&mut self, epoch: i32) -> Result<()> {
        let leo = self.log_end_offset();
        self.leader_epoch_cache.assign(epoch, leo)
    }

    /// Sets the high watermark, clamped to `[log start, log end]`.
    pub fn update_high_watermark(&mut self, offset: i64) -> i64 {
        self.high_watermark = offset.clamp(self.log_start_offset, self.log_end_offset());
        self.high_watermark
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &LogSegment> {
        self.segments.values()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(LogSegment::size).sum()
    }

    pub(crate) fn active_segment(&self) -> &LogSegment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }

    fn active_segment_mut(&mut self) -> &mut LogSegment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// Appends a producer's (or coordinator's) batches. Every batch is validated before
    /// anything is written; on any error the log is unchanged. Offsets, the leader epoch
    /// and (under LogAppendTime) timestamps are written into `records` in place, unless
    /// the topic's `compression.type` makes the log store a recompressed copy.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        origin: AppendOrigin,
        now_ms: i64,
    ) -> Result<LogAppendInfo> {
        let rules = BatchRules {
            consecutive_offsets: true,
            require_keys: self.config.compact(),
            reject_control: origin == AppendOrigin::Client,
            max_decompressed_bytes: self.config.max_decompressed_bytes(),
        };
        let validated = validate_request(records, &self.config, &rules)?;
        if origin == AppendOrigin::Client {
            validator::check_timestamps(&validated, &self.config, now_ms)?;
        }
        if let Some(duplicate) = self.check_producer_sequences(records, &validated)? {
            return Ok(duplicate);
        }
        let mut recompressed: Vec<u8>;
        let (records, validated) = match validator::recompress(records, &validated, &self.config, &rules)? {
            Some((rewritten, revalidated)) => {
                recompressed = rewritten;
                (&mut recompressed[..], revalidated)
            }
            None => (records, validated),
        };
        let mut next = self.log_end_offset();
        let first_offset = next;
        let append_time = (self.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let mut batches = Vec::with_capacity(validated.len());
        let (mut max_timestamp, mut offset_of_max_timestamp) = (-1, first_offset);
        let mut record_count = 0i64;
        for v in &validated {
            let bytes = &mut records[v.position..v.position + v.size];
            let mut batch = BatchMut::new(bytes);
            batch.set_base_offset(next);
            batch.set_partition_leader_epoch(leader_epoch);
            let batch_max = match append_time {
                Some(t) => {
                    batch.set_max_timestamp(TimestampType::LogAppendTime, t);
                    t
                }
                None => {
                    if v.header_max_timestamp != v.max_timestamp || v.header_log_append_time {
                        batch.set_max_timestamp(TimestampType::CreateTime, v.max_timestamp);
                    }
                    v.max_timestamp
                }
            };
            let last_offset = next + i64::from(v.last_offset_delta);
            if batch_max > max_timestamp {
                max_timestamp = batch_max;
                offset_of_max_timestamp = last_offset;
            }
            batches.push(AppendedBatch { last_offset, max_timestamp: batch_max, size: v.size as u64 });
            record_count += i64::from(v.records);
            next = last_offset + 1;
        }
        let total: usize = validated.iter().map(|v| v.size).sum();
        let end = validated.last().map_or(0, |v| v.position + v.size);
        debug_assert_eq!(total, end);
        if leader_epoch >= 0 && self.leader_epoch_cache.latest_epoch().is_none_or(|e| leader_epoch > e) {
            self.leader_epoch_cache.assign(leader_epoch, first_offset)?;
        }
        self.append_validated(&records[..end], &batches, now_ms)?;
        self.update_producer_state(records, &validated, &batches);
        Ok(LogAppendInfo {
            first_offset,
            last_offset: next - 1,
            max_timestamp,
            offset_of_max_timestamp,
            log_append_time: append_time,
            log_start_offset: self.log_start_offset,
            records: record_count,
            batches: batches.len(),
            bytes: total as u64,
            duplicate: false,
        })
    }

    /// Appends batches that already carry their offsets (from a leader, or a cleaned
    /// log). Offsets must continue from the log end.
    pub fn append_as_follower(&mut self, records: &[u8], now_ms: i64) -> Result<LogAppendInfo> {
        let rules = BatchRules {
            consecutive_offsets: false,
            require_keys: false,
            reject_control: false,
            max_decompressed_bytes: self.config.max_decompressed_bytes(),
        };
        let validated = validate_request(records, &self.config, &rules)?;
        let mut expected = self.log_end_offset();
        let first_offset = validated.first().map_or(expected, |v| v.base_offset);
        let mut batches = Vec::with_capacity(validated.len());
        let (mut max_timestamp, mut offset_of_max_timestamp, mut record_count) = (-1, first_offset, 0i64);
        for v in &validated {
            if v.base_offset < expected {
                return Err(LogError::NonMonotonicOffset { offset: v.base_offset, log_end_offset: expected });
            }
            let last_offset = v.base_offset + i64::from(v.last_offset_delta);
            let batch_max = if v.header_log_append_time {
                v.header_max_timestamp
            } else {
                v.max_timestamp.max(v.header_max_timestamp)
            };
            if batch_max > max_timestamp {
                max_timestamp = batch_max;
                offset_of_max_timestamp = last_offset;
            }
            batches.push(AppendedBatch { last_offset, max_timestamp: batch_max, size: v.size as u64 });
            record_count += i64::from(v.records);
            expected = last_offset + 1;
        }
        for v in &validated {
            if v.partition_leader_epoch >= 0
                && self.leader_epoch_cache.latest_epoch().is_none_or(|e| v.partition_leader_epoch > e)
            {
                self.leader_epoch_cache.assign(v.partition_leader_epoch, v.base_offset)?;
            }
        }
        // An empty active segment that starts before the first offset would leave a hole
        // the index cannot describe; start the segment at the leader's offset instead.
        if self.active_segment().size() == 0 && self.active_segment().base_offset() < first_offset {
            let base = self.active_segment().base_offset();
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete()?;
            }
            let seg = LogSegment::create(&self.dir, first_offset, &self.config, now_ms, "")?;
            self.segments.insert(first_offset, seg);
        }
        self.append_validated(records, &batches, now_ms)?;
        self.update_producer_state(records, &validated, &batches);
        Ok(LogAppendInfo {
            first_offset,
            last_offset: expected - 1,
            max_timestamp,
            offset_of_max_timestamp,
            log_append_time: None,
            log_start_offset: self.log_start_offset,
            records: record_count,
            batches: batches.len(),
            bytes: records.len() as u64,
            duplicate: false,
        })
    }

    /// Checks idempotent batches against the producer state (and against earlier batches
    /// of the same request). A request that is one duplicate batch returns its original
    /// offsets; any sequence error refuses the whole request.
    fn check_producer_sequences(&self, records: &[u8], validated: &[ValidatedBatch]) -> Result<Option<LogAppendInfo>> {
        // Earlier batches of the same request, for multi-batch requests; built only when
        // a request carries idempotent batches, so plain appends allocate nothing here.
        let mut overlay: Option<ProducerStateManager> = None;
        for v in validated {
            let header = v.header(records);
            if !header.has_producer_id() || header.base_sequence < 0 {
                continue;
            }
            let check = match &overlay {
                None => self.producer_state.check(&header),
                Some(o) => o.check_with(&self.producer_state, &header),
            };
            match check? {
                SequenceCheck::Append => overlay
                    .get_or_insert_with(|| ProducerStateManager::new(&self.dir))
                    .stage(&self.producer_state, &header),
                SequenceCheck::Duplicate(original) if validated.len() == 1 => {
                    return Ok(Some(LogAppendInfo {
                        first_offset: original.first_offset,
                        last_offset: original.last_offset,
                        max_timestamp: original.timestamp,
                        offset_of_max_timestamp: original.last_offset,
                        log_append_time: None,
                        log_start_offset: self.log_start_offset,
                        records: 0,
                        batches: 0,
                        bytes: 0,
                        duplicate: true,
                    }));
                }
                SequenceCheck::Duplicate(_) => {
                    return Err(super::producer_state::SequenceError::OutOfOrderSequence {
                        producer_id: header.producer_id,
                        first_seq: header.base_sequence,
                        expected: -1,
                    }
                    .into());
                }
            }
        }
        Ok(None)
    }

    fn update_producer_state(&mut self, records: &[u8], validated: &[ValidatedBatch], appended: &[AppendedBatch]) {
        for (v, a) in validated.iter().zip(appended) {
            let header = v.header(records);
            if header.has_producer_id() {
                let first_offset = a.last_offset - i64::from(header.last_offset_delta);
                self.producer_state.update(&header, first_offset, a.max_timestamp);
            }
        }
    }

    /// The idempotent-producer state.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producer_state
    }

    /// Forgets producers idle for `expiration_ms` (by their newest batch's timestamp).
    pub fn remove_expired_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let removed = self.producer_state.remove_expired(now_ms, expiration_ms);
        if removed > 0 {
            tracing::debug!(log = %self.name, removed, "expired idle producer ids");
        }
        removed
    }

    fn append_validated(&mut self, records: &[u8], batches: &[AppendedBatch], now_ms: i64) -> Result<()> {
        let Some(last) = batches.last() else {
            return Ok(());
        };
        if self.active_segment().should_roll(&self.config, records.len() as u64, last.last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        self.active_segment_mut().append(records, batches)?;
        if self.high_watermark_tracks_log_end {
            self.high_watermark = self.log_end_offset();
        }
        self.unflushed_records += batches.len() as i64;
        if self.unflushed_records >= self.config.flush_messages {
            self.flush(now_ms)?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset. A no-op if the active segment
    /// is empty.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        if self.active_segment().size() == 0 {
            return Ok(());
        }
        let base = self.log_end_offset();
        self.active_segment_mut().on_become_inactive()?;
        let segment = LogSegment::create(&self.dir, base, &self.config, now_ms, "")?;
        self.producer_state.take_snapshot(base)?;
        tracing::debug!(log = %self.name, base, "rolled new segment");
        self.segments.insert(base, segment);
        Ok(())
    }

    /// Rolls if the active segment is older than `segment.ms` even without new appends
    /// (so time-based retention can reach it).
    pub fn maybe_roll_by_time(&mut self, now_ms: i64) -> Result<bool> {
        let roll = self.active_segment().should_roll(&self.config, 0, self.log_end_offset(), now_ms);
        if roll {
            self.roll(now_ms)?;
        }
        Ok(roll)
    }

    /// Reads whole batches starting with the one that contains `start_offset`, up to
    /// `max_bytes` (at least one batch if `min_one_batch`), never past `max_offset` (the
    /// high watermark for consumers) or the log end.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: u64,
        max_offset: Option<i64>,
        min_one_batch: bool,
    ) -> Result<FetchDataInfo> {
        let leo = self.log_end_offset();
        let mut info = FetchDataInfo {
            ranges: Vec::new(),
            log_start_offset: self.log_start_offset,
            log_end_offset: leo,
            high_watermark: self.high_watermark,
        };
        if start_offset < self.log_start_offset || start_offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset: start_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let upper = max_offset.map_or(leo, |m| m.min(leo));
        let mut next = start_offset;
        let mut budget = max_bytes;
        let first_base = self.segments.range(..=start_offset).next_back().map_or(start_offset, |(b, _)| *b);
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            if next >= upper {
                break;
            }
            let min_one = min_one_batch && info.ranges.is_empty();
            let Some(range) = segment.read(next, budget, Some(upper), min_one)? else {
                if segment.size() == 0 || segment.next_offset() <= next {
                    continue; // nothing at or after `next` here: empty, or compacted away
                }
                break; // the budget or the upper bound stops the read
            };
            budget = budget.saturating_sub(range.length);
            next = range.next_offset;
            info.ranges.push(range);
            if budget == 0 {
                break;
            }
        }
        Ok(info)
    }

    /// The first offset whose record timestamp is ≥ `timestamp`, with that timestamp; `None`
    /// if every record is older (a consumer then starts at the log end).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let max_decompressed = self.config.max_decompressed_bytes();
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset || segment.max_timestamp() < timestamp {
                continue;
            }
            if let Some(found) = segment.find_offset_by_timestamp(timestamp, self.log_start_offset, max_decompressed)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// fsyncs every segment holding offsets at or after the recovery point and moves the
    /// recovery point to the log end.
    pub fn flush(&mut self, now_ms: i64) -> Result<()> {
        let plan = self.begin_flush(now_ms)?;
        plan.sync()?;
        self.complete_flush(plan);
        Ok(())
    }

    /// The first half of a flush, under the log's lock: the index entries are written and
    /// the segment files that hold unflushed records are collected, so that the fsync
    /// ([`FlushPlan::sync`]) can run without the lock, while appends and reads go on.
    pub fn begin_flush(&mut self, now_ms: i64) -> Result<FlushPlan> {
        let upto = self.log_end_offset();
        let mut files = Vec::new();
        if self.recovery_point < upto {
            let start = self.segments.range(..=self.recovery_point).next_back().map_or(i64::MIN, |(b, _)| *b);
            for segment in self.segments.range_mut(start..).map(|(_, s)| s) {
                segment.flush_indexes()?;
                files.push((segment.file().clone(), segment.log_path()));
            }
        }
        Ok(FlushPlan { files, upto, truncations: self.truncations, now_ms, unflushed: self.unflushed_records })
    }

    /// The last half: what the plan synced is now the recovery point, unless the log was
    /// truncated meanwhile (the offsets the plan covered may hold other records now).
    pub fn complete_flush(&mut self, plan: FlushPlan) {
        if plan.truncations == self.truncations {
            self.recovery_point = self.recovery_point.max(plan.upto);
        }
        // Only once the fsync succeeded (a failed one is due again at the next check), and
        // only what the plan covered: appends during the fsync count towards the next one.
        self.unflushed_records = self.unflushed_records.saturating_sub(plan.unflushed);
        self.last_flush_ms = plan.now_ms;
    }

    /// [`Self::begin_flush`] if `flush.ms` has passed or a rolled segment is unflushed.
    pub fn flush_plan_if_due(&mut self, now_ms: i64) -> Result<Option<FlushPlan>> {
        let rolled_unflushed = self.recovery_point < self.active_segment().base_offset();
        let due = now_ms - self.last_flush_ms >= self.config.flush_ms && self.recovery_point < self.log_end_offset();
        if due || rolled_unflushed { self.begin_flush(now_ms).map(Some) } else { Ok(None) }
    }

    /// Removes every record at or after `offset` (whole batches, from the batch containing
    /// it), for a follower whose log diverged from the leader's.
    pub fn truncate_to(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        self.truncations += 1;
        if offset <= self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0), now_ms);
        }
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                self.retire_segment(segment, now_ms)?;
            }
        }
        if self.segments.is_empty() {
            let segment = LogSegment::create(&self.dir, offset, &self.config, now_ms, "")?;
            self.segments.insert(offset, segment);
        } else {
            self.active_segment_mut().truncate_to(offset)?;
        }
        let leo = self.log_end_offset();
        self.leader_epoch_cache.truncate_from_end(leo)?;
        // As in Kafka: reload from the newest snapshot at or below the new end and replay.
        let mut report = LoadReport::default();
        super::load::rebuild_producer_state(self, &self.quarantine.clone(), &mut report)?;
        self.recovery_point = self.recovery_point.min(leo);
        self.high_watermark = self.high_watermark.min(leo);
        self.cleaner_checkpoint = self.cleaner_checkpoint.min(leo);
        Ok(())
    }

    /// Deletes every segment and starts empty at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        self.truncations += 1;
        for (_, segment) in std::mem::take(&mut self.segments) {
            self.retire_segment(segment, now_ms)?;
        }
        let segment = LogSegment::create(&self.dir, offset, &self.config, now_ms, "")?;
        self.segments.insert(offset, segment);
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.high_watermark = offset;
        self.cleaner_checkpoint = offset;
        self.leader_epoch_cache.truncate_from_end(offset)?;
        self.leader_epoch_cache.truncate_from_start(offset)?;
        self.producer_state.truncate_from(offset);
        self.producer_state.delete_snapshots_after(offset)?;
        Ok(())
    }

    /// Flushes everything and records the final max timestamp, so the next open is fast.
    pub fn close(&mut self, now_ms: i64) -> Result<()> {
        self.flush(now_ms)?;
        let active = self.active_segment_mut();
        active.on_become_inactive()?;
        active.flush_indexes()?;
        self.producer_state.take_snapshot(self.log_end_offset())?;
        self.leader_epoch_cache.flush()
    }

    /// Deletes the whole log directory.
    pub fn delete(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| LogError::Io { path: self.dir.clone(), source })
    }
}
