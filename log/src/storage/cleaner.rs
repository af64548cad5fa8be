//! The log cleaner: compaction for `cleanup.policy=compact` (and `compact,delete`).
//!
//! A pass over one log works in three phases, so that appends and reads continue while it
//! runs:
//!
//! 1. **Plan** (read lock): pick the cleanable segments: every inactive segment wholly
//!    below the high watermark and older than `min.compaction.lag.ms`. The part after the
//!    cleaner checkpoint is *dirty*; clean when dirty bytes / cleanable bytes reaches
//!    `min.cleanable.dirty.ratio`.
//! 2. **Copy** (no lock): build a map of key hash → latest offset over the dirty part
//!    (bounded by `log.cleaner.dedupe.buffer.size`), then rewrite the cleanable segments in
//!    groups into `.cleaned` files, keeping for each key only its latest record. Offsets
//!    and order are preserved; batches keep their base offset and producer fields.
//!    Tombstones get a delete horizon (KIP-534) the first time they are cleaned and are
//!    dropped by a later pass once `delete.retention.ms` has passed.
//! 3. **Swap** (write lock): rename `.cleaned` → `.swap` (the commit point), delete the
//!    replaced segments, rename `.swap` → final names. A crash at any point leaves either
//!    the old segments (a `.cleaned` file is discarded on load) or a `.swap` that loading
//!    finishes installing; both are complete, valid logs.
//!
//! The active segment is never touched.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use xxhash_rust::xxh3::xxh3_128;

use super::checkpoint::sync_dir;
use super::config::LogConfig;
use super::error::{IoContext, LogError, Result};
use super::log::Log;
use super::segment::{AppendedBatch, BatchReadError, CLEANED_SUFFIX, LogSegment, SWAP_SUFFIX, SequentialBatches};
use crate::record::{RecordBatch, RecordBatchBuilder, RecordIter};

/// Cleaner settings (broker-level, Kafka names in the field docs).
#[derive(Debug, Clone)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory for the key → offset map.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.backoff.ms`: pause between passes when nothing needs cleaning.
    pub backoff_ms: u64,
    /// `log.cleaner.enable`.
    pub enabled: bool,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self { dedupe_buffer_bytes: 128 << 20, backoff_ms: 15_000, enabled: true }
    }
}

/// Bytes one map entry costs: a 128-bit key hash, an offset and hash-table overhead.
const MAP_ENTRY_BYTES: usize = 40;
/// The cleaner writes cleaned batches in chunks of about this size.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Points at which a test can make the cleaner stop as if the process had died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanStage {
    /// The `.cleaned` files are written and synced; nothing is renamed.
    CleanedWritten,
    /// The `.log.swap` file exists; the old segments are untouched.
    SwapRenamed,
    /// The old segments are deleted; the `.swap` files are not renamed yet.
    OldSegmentsDeleted,
}

/// What a cleaning pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanerStats {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Records examined.
    pub records_read: u64,
    /// Records kept.
    pub records_retained: u64,
    /// Tombstones dropped because their delete horizon passed.
    pub tombstones_removed: u64,
    /// Bytes of the replaced segments.
    pub bytes_before: u64,
    /// Bytes of the cleaned segments.
    pub bytes_after: u64,
    /// The new cleaner checkpoint (start of the dirty part).
    pub cleaned_up_to: i64,
    /// The earliest delete horizon of a tombstone still in the cleaned part; a pass is due
    /// then even without new dirty data.
    pub earliest_delete_horizon_ms: Option<i64>,
    /// Set when a [`CleanStage`] stop was injected and the pass stopped there.
    pub interrupted_at: Option<CleanStage>,
}

/// A segment as the copy phase sees it: immutable, read through its own file handle.
#[derive(Debug, Clone)]
struct SegmentSnapshot {
    base_offset: i64,
    file: Arc<File>,
    size: u64,
    next_offset: i64,
    /// The first batch's timestamp: how long the segment's records have waited.
    first_timestamp: i64,
}

#[derive(Debug)]
struct CleanPlan {
    segments: Vec<SegmentSnapshot>,
    first_dirty_offset: i64,
    first_uncleanable_offset: i64,
    delete_retention_ms: i64,
}

impl CleanPlan {
    fn is_dirty(&self, s: &SegmentSnapshot) -> bool {
        s.base_offset >= self.first_dirty_offset || s.next_offset > self.first_dirty_offset
    }

    /// Dirty bytes over all cleanable bytes; `None` when nothing is dirty.
    fn dirty_ratio(&self) -> Option<f64> {
        let (mut clean, mut dirty) = (0u64, 0u64);
        for s in &self.segments {
            if self.is_dirty(s) {
                dirty += s.size;
            } else {
                clean += s.size;
            }
        }
        (dirty > 0).then(|| dirty as f64 / (clean + dirty) as f64)
    }

    /// When the oldest cleanable dirty records were written.
    /// (Kafka's: the earliest first-batch timestamp over the dirty segments, ignoring
    /// batches without one.)
    fn first_dirty_timestamp(&self) -> Option<i64> {
        self.segments.iter().filter(|s| self.is_dirty(s) && s.first_timestamp > 0).map(|s| s.first_timestamp).min()
    }
}

/// What one cleaning pass over a log works with.
struct Pass {
    dir: PathBuf,
    name: String,
    config: LogConfig,
    max_batch: usize,
    max_decompressed: usize,
    now_ms: i64,
}

/// The dirty part's keys, each with the offset of its latest record.
struct OffsetMap {
    latest: HashMap<u128, i64>,
    /// The map covers offsets below this.
    end: i64,
    /// The base offset of each producer's last batch (kept for its sequence state).
    last_batch_of_producer: HashMap<i64, i64>,
}

/// Compacts logs. One cleaner should work on a given log at a time.
#[derive(Debug, Default)]
pub struct LogCleaner {
    config: CleanerConfig,
    stop_at: Option<CleanStage>,
}

impl LogCleaner {
    /// A cleaner with `config`.
    pub fn new(config: CleanerConfig) -> Self {
        Self { config, stop_at: None }
    }

    /// Makes every pass stop at `stage`, leaving the files as a crash there would.
    #[doc(hidden)]
    pub fn stop_at(mut self, stage: CleanStage) -> Self {
        self.stop_at = Some(stage);
        self
    }

    /// The dirty ratio of `log` if it is compacted and has cleanable segments.
    pub fn dirty_ratio(log: &Log, now_ms: i64) -> Option<f64> {
        Self::plan(log, now_ms).and_then(|plan| plan.dirty_ratio())
    }

    fn plan(log: &Log, now_ms: i64) -> Option<CleanPlan> {
        if !log.config.compact() {
            return None;
        }
        let lag_cutoff = now_ms.saturating_sub(log.config.min_compaction_lag_ms);
        let bases: Vec<i64> = log.segments.keys().copied().collect();
        let mut segments = Vec::new();
        let mut first_uncleanable = log.active_segment().base_offset();
        for (i, base) in bases.iter().enumerate() {
            let segment = &log.segments[base];
            let upper_bound = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let too_new = log.config.min_compaction_lag_ms > 0 && segment.largest_timestamp() > lag_cutoff;
            if i + 1 == bases.len() || upper_bound > log.high_watermark || too_new {
                first_uncleanable = *base;
                break;
            }
            segments.push(SegmentSnapshot {
                base_offset: *base,
                file: segment.file().clone(),
                size: segment.size(),
                next_offset: upper_bound,
                first_timestamp: segment.first_batch_timestamp().unwrap_or_else(|| segment.largest_timestamp()),
            });
        }
        let first_dirty_offset = log.cleaner_checkpoint.max(log.log_start_offset);
        if segments.is_empty() {
            return None;
        }
        Some(CleanPlan {
            segments,
            first_dirty_offset,
            first_uncleanable_offset: first_uncleanable,
            delete_retention_ms: log.config.delete_retention_ms,
        })
    }

    /// Whether a pass over `log` is due: its dirty ratio reached `min.cleanable.dirty.ratio`,
    /// a dirty record has waited `max.compaction.lag.ms` (KIP-354), or a tombstone's delete
    /// horizon has passed.
    pub fn is_due(log: &Log, now_ms: i64) -> bool {
        if !log.config.compact() {
            return false;
        }
        let horizon_due = log.next_tombstone_horizon_ms.is_some_and(|h| now_ms >= h);
        let Some(plan) = Self::plan(log, now_ms) else {
            return horizon_due;
        };
        let Some(ratio) = plan.dirty_ratio() else {
            return horizon_due;
        };
        let lag_due =
            plan.first_dirty_timestamp().is_some_and(|t| t < now_ms.saturating_sub(log.config.max_compaction_lag_ms));
        ratio >= log.config.min_cleanable_dirty_ratio || lag_due || horizon_due
    }

    /// Cleans `log` if a pass [is due](Self::is_due), or whenever it has cleanable segments
    /// if `force`. Returns `None` if there was nothing to do.
    pub fn clean(&self, log: &RwLock<Log>, now_ms: i64, force: bool) -> Result<Option<CleanerStats>> {
        let (plan, pass) = {
            let guard = log.read();
            if !force && !Self::is_due(&guard, now_ms) {
                return Ok(None);
            }
            let Some(plan) = Self::plan(&guard, now_ms) else {
                return Ok(None);
            };
            let config = guard.config.clone();
            let pass = Pass {
                dir: guard.dir.clone(),
                name: guard.name.clone(),
                max_batch: config.max_batch_bytes(),
                max_decompressed: config.max_decompressed_bytes(),
                config,
                now_ms,
            };
            (plan, pass)
        };
        let offsets = self.build_offset_map(&plan, &pass)?;
        let mut stats = CleanerStats { cleaned_up_to: offsets.end, ..CleanerStats::default() };
        for group in group_segments(&plan.segments, pass.config.segment_bytes) {
            let Some(cleaned) = Self::write_cleaned(&plan, &pass, &group, &offsets, &mut stats)? else {
                continue;
            };
            if self.stop_at == Some(CleanStage::CleanedWritten) {
                stats.interrupted_at = Some(CleanStage::CleanedWritten);
                return Ok(Some(stats));
            }
            if !self.swap_in(log, &pass, &group, cleaned, &mut stats)? {
                return Ok(Some(stats));
            }
        }
        let mut guard = log.write();
        guard.cleaner_checkpoint = guard.cleaner_checkpoint.max(offsets.end);
        guard.next_tombstone_horizon_ms = stats.earliest_delete_horizon_ms;
        tracing::info!(log = %pass.name, ?stats, "cleaned log");
        Ok(Some(stats))
    }

    /// Phase 2a: the latest offset of each key over the dirty part, as far as the map's
    /// memory (`log.cleaner.dedupe.buffer.size`) reaches.
    fn build_offset_map(&self, plan: &CleanPlan, pass: &Pass) -> Result<OffsetMap> {
        let max_entries = (self.config.dedupe_buffer_bytes / MAP_ENTRY_BYTES).max(1);
        let mut offsets =
            OffsetMap { latest: HashMap::new(), end: plan.first_dirty_offset, last_batch_of_producer: HashMap::new() };
        'segments: for s in &plan.segments {
            let mut batches = SequentialBatches::new(s.file.clone(), 0, s.size, pass.max_batch);
            while let Some((_, bytes)) = next_batch(&mut batches, &pass.dir)? {
                let (batch, _) = RecordBatch::parse(bytes).map_err(|e| corrupt(&pass.dir, s, e))?;
                let h = *batch.header();
                if h.has_producer_id() {
                    offsets.last_batch_of_producer.insert(h.producer_id, h.base_offset);
                }
                if h.last_offset() < plan.first_dirty_offset || h.is_control() {
                    continue;
                }
                if offsets.latest.len() >= max_entries && offsets.end > plan.first_dirty_offset {
                    // The map is full: clean up to here now, the rest on a later pass.
                    break 'segments;
                }
                let payload = batch.records_payload(pass.max_decompressed).map_err(|e| corrupt(&pass.dir, s, e))?;
                for record in RecordIter::new(&payload, h.records_count) {
                    let record = record.map_err(|e| corrupt(&pass.dir, s, e))?;
                    if let Some(key) = record.key {
                        offsets.latest.insert(xxh3_128(key), h.base_offset + i64::from(record.offset_delta));
                    }
                }
                offsets.end = h.next_offset();
            }
        }
        offsets.end = offsets.end.min(plan.first_uncleanable_offset);
        Ok(offsets)
    }

    /// Phase 2b: writes the kept batches of one group of segments into a `.cleaned`
    /// segment. `None` if nothing would change.
    fn write_cleaned(
        plan: &CleanPlan,
        pass: &Pass,
        group: &[SegmentSnapshot],
        offsets: &OffsetMap,
        stats: &mut CleanerStats,
    ) -> Result<Option<LogSegment>> {
        let first = &group[0];
        let mut cleaned = LogSegment::create(&pass.dir, first.base_offset, &pass.config, pass.now_ms, CLEANED_SUFFIX)?;
        let mut pending = Vec::with_capacity(WRITE_CHUNK_BYTES);
        let mut pending_meta = Vec::new();
        let mut changed = group.len() > 1;
        for s in group {
            stats.bytes_before += s.size;
            let mut batches = SequentialBatches::new(s.file.clone(), 0, s.size, pass.max_batch);
            while let Some((_, bytes)) = next_batch(&mut batches, &pass.dir)? {
                let kept = filter_batch(
                    bytes,
                    &offsets.latest,
                    &offsets.last_batch_of_producer,
                    plan.delete_retention_ms,
                    pass.now_ms,
                    pass.max_decompressed,
                    stats,
                )
                .map_err(|e| corrupt(&pass.dir, s, e))?;
                let Some((batch_bytes, meta)) = kept else {
                    changed = true;
                    continue;
                };
                changed |= batch_bytes.as_slice() != bytes;
                pending.extend_from_slice(&batch_bytes);
                pending_meta.push(meta);
                if pending.len() >= WRITE_CHUNK_BYTES {
                    cleaned.append(&pending, &pending_meta)?;
                    pending.clear();
                    pending_meta.clear();
                }
            }
        }
        cleaned.append(&pending, &pending_meta)?;
        if !changed {
            // Nothing to gain from swapping in an identical copy.
            cleaned.delete()?;
            return Ok(None);
        }
        cleaned.on_become_inactive()?;
        cleaned.flush()?;
        stats.bytes_after += cleaned.size();
        stats.segments_cleaned += group.len();
        Ok(Some(cleaned))
    }

    /// Phase 3: swaps a cleaned segment in for its group under the write lock, if the
    /// sources are still as planned. False if the pass stops here (sources changed, or a
    /// test's `stop_at`).
    fn swap_in(
        &self,
        log: &RwLock<Log>,
        pass: &Pass,
        group: &[SegmentSnapshot],
        mut cleaned: LogSegment,
        stats: &mut CleanerStats,
    ) -> Result<bool> {
        let mut guard = log.write();
        let unchanged = group.iter().all(|s| {
            guard
                .segments
                .get(&s.base_offset)
                .is_some_and(|cur| Arc::ptr_eq(cur.file(), &s.file) && cur.size() == s.size)
        });
        if !unchanged {
            tracing::info!(log = %pass.name, "segments changed during cleaning; discarding this pass");
            cleaned.delete()?;
            return Ok(false);
        }
        cleaned.change_suffix(SWAP_SUFFIX)?;
        sync_dir(&pass.dir)?;
        if self.stop_at == Some(CleanStage::SwapRenamed) {
            stats.interrupted_at = Some(CleanStage::SwapRenamed);
            return Ok(false);
        }
        for s in group {
            if let Some(old) = guard.segments.remove(&s.base_offset) {
                guard.retire_segment(old, pass.now_ms)?;
            }
        }
        if self.stop_at == Some(CleanStage::OldSegmentsDeleted) {
            stats.interrupted_at = Some(CleanStage::OldSegmentsDeleted);
            return Ok(false);
        }
        cleaned.change_suffix("")?;
        sync_dir(&pass.dir)?;
        guard.segments.insert(group[0].base_offset, cleaned);
        Ok(true)
    }
}

fn next_batch<'a>(batches: &'a mut SequentialBatches, dir: &std::path::Path) -> Result<Option<(u64, &'a [u8])>> {
    match batches.next_batch() {
        Ok(found) => Ok(found),
        Err(BatchReadError::Io(e)) => Err(e).at(dir),
        Err(BatchReadError::Damaged { position, reason }) => Err(LogError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!("cleaner found damage at byte {position}: {reason}"),
        }),
    }
}

fn corrupt(dir: &std::path::Path, s: &SegmentSnapshot, e: crate::record::RecordError) -> LogError {
    LogError::Corrupt {
        path: dir.join(format!("{}.log", super::segment::file_stem(s.base_offset))),
        reason: e.to_string(),
    }
}

/// Consecutive segments whose total size fits in one segment and whose offsets fit a
/// segment's relative-offset range.
fn group_segments(segments: &[SegmentSnapshot], segment_bytes: u64) -> Vec<Vec<SegmentSnapshot>> {
    let mut groups: Vec<Vec<SegmentSnapshot>> = Vec::new();
    let mut size = 0u64;
    for s in segments {
        let fits = groups.last().is_some_and(|g| {
            size + s.size <= segment_bytes && s.next_offset - 1 - g[0].base_offset <= i64::from(i32::MAX)
        });
        if fits {
            size += s.size;
            if let Some(g) = groups.last_mut() {
                g.push(s.clone());
            }
        } else {
            size = s.size;
            groups.push(vec![s.clone()]);
        }
    }
    groups
}

/// Decides what survives of one batch. Returns the bytes to write (the original if
/// nothing changed) or `None` if the whole batch goes.
fn filter_batch(
    bytes: &[u8],
    map: &HashMap<u128, i64>,
    last_batch_of_producer: &HashMap<i64, i64>,
    delete_retention_ms: i64,
    now_ms: i64,
    max_decompressed: usize,
    stats: &mut CleanerStats,
) -> std::result::Result<Option<(Vec<u8>, AppendedBatch)>, crate::record::RecordError> {
    let (batch, _) = RecordBatch::parse(bytes)?;
    let h = *batch.header();
    let meta =
        |size: usize| AppendedBatch { last_offset: h.last_offset(), max_timestamp: h.max_timestamp, size: size as u64 };
    if h.is_control() {
        return Ok(Some((bytes.to_vec(), meta(bytes.len()))));
    }
    let payload = batch.records_payload(max_decompressed)?;
    let horizon_passed = h.delete_horizon_ms().is_some_and(|horizon| now_ms >= horizon);
    let mut kept = Vec::new();
    let mut tombstones_kept = false;
    let mut total = 0u64;
    for record in RecordIter::new(&payload, h.records_count) {
        let record = record?;
        total += 1;
        let offset = h.base_offset + i64::from(record.offset_delta);
        let superseded = record.key.is_some_and(|k| map.get(&xxh3_128(k)).is_some_and(|latest| offset < *latest));
        if superseded {
            continue;
        }
        if record.value.is_none() && record.key.is_some() {
            if horizon_passed {
                stats.tombstones_removed += 1;
                continue;
            }
            tombstones_kept = true;
        }
        kept.push(record);
    }
    stats.records_read += total;
    stats.records_retained += kept.len() as u64;
    // Tombstones seen for the first time get their horizon; the bytes must change.
    let needs_horizon = tombstones_kept && h.delete_horizon_ms().is_none();
    let horizon = match h.delete_horizon_ms() {
        Some(existing) if tombstones_kept => Some(existing),
        None if needs_horizon => Some(now_ms.saturating_add(delete_retention_ms)),
        _ => None,
    };
    if let Some(horizon) = horizon {
        stats.earliest_delete_horizon_ms = Some(stats.earliest_delete_horizon_ms.map_or(horizon, |e| e.min(horizon)));
    }
    // A batch whose horizon passed with no tombstones left is rewritten to drop the bit.
    if kept.len() as u64 == total && !needs_horizon && (tombstones_kept || !horizon_passed) {
        return Ok(Some((bytes.to_vec(), meta(bytes.len()))));
    }
    if kept.is_empty() {
        // Keep an empty header for a producer's last batch so its sequence survives.
        let producer_last = h.has_producer_id() && last_batch_of_producer.get(&h.producer_id) == Some(&h.base_offset);
        if !producer_last {
            return Ok(None);
        }
    }
    let mut builder = RecordBatchBuilder::new(h.compression()?)
        .base_offset(h.base_offset)
        .timestamp_type(h.timestamp_type())
        .partition_leader_epoch(h.partition_leader_epoch)
        .producer(h.producer_id, h.producer_epoch, h.base_sequence)
        .transactional(h.is_transactional())
        .last_offset_delta(h.last_offset_delta)
        .max_timestamp(h.max_timestamp);
    let new_base = horizon.or_else(|| kept.first().map(|r| batch.record_timestamp(r))).unwrap_or(h.base_timestamp);
    builder = match horizon {
        Some(horizon) => builder.delete_horizon_ms(horizon),
        None => builder.base_timestamp(new_base),
    };
    for record in &kept {
        let ts = batch.record_timestamp(record);
        if new_base == h.base_timestamp {
            builder.append_raw(record.raw, record.offset_delta, ts);
        } else {
            let headers: Vec<_> = record.headers().collect();
            builder.append_with_offset_delta(record.offset_delta, ts, record.key, record.value, &headers);
        }
    }
    let out = builder.build();
    let size = out.len();
    Ok(Some((out, meta(size))))
}
