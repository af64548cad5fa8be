//! A `LogSegment`: one `.log` file of batches plus its `.index` and `.timeindex`, named by
//! the 20-digit base offset (`00000000000000001234.log`).
//!
//! The segment appends already-validated batches, answers "where is offset X" through the
//! offset index and a short scan of batch headers, and on recovery re-reads its whole file,
//! checking every batch's CRC and rebuilding both indexes. All reads are positional
//! (`pread`), so a read never disturbs an append.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::LogConfig;
use super::error::{IoContext, LogError, Result};
use super::index::{OffsetIndex, TimeIndex, TimestampOffset};
use crate::record::batch::read_i32;
use crate::record::{BatchHeader, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD, RecordBatch, RecordError, RecordIter};

/// File extension of segment data.
pub const LOG_SUFFIX: &str = ".log";
/// File extension of the offset index.
pub const INDEX_SUFFIX: &str = ".index";
/// File extension of the time index.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// File extension of the aborted-transaction index (written by the transactions work).
pub const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// Suffix of a segment being written by the cleaner.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment that is committed but not yet swapped in.
pub const SWAP_SUFFIX: &str = ".swap";
/// Suffix of a segment scheduled for deletion.
pub const DELETED_SUFFIX: &str = ".deleted";

/// How many bytes of headers to read per `pread` while scanning.
const SCAN_CHUNK_BYTES: usize = 16 * 1024;
/// Recovery reads the segment through a buffer of this size.
const RECOVERY_BUFFER_BYTES: usize = 1 << 20;

/// The 20-digit file name stem for a base offset.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// A range of a segment file: what a fetch sends without copying through user space.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The open segment file. Holding it keeps the data readable even if the segment is
    /// deleted by retention meanwhile.
    pub file: Arc<File>,
    /// Path of the file when the range was taken (for diagnostics).
    pub path: PathBuf,
    /// Byte position of the first batch.
    pub position: u64,
    /// Length in bytes; always whole batches.
    pub length: u64,
    /// Base offset of the first batch in the range.
    pub first_offset: i64,
    /// Offset after the last batch in the range.
    pub next_offset: i64,
}

impl FileRange {
    /// Reads the range into memory (for tests, tools and non-zero-copy paths).
    pub fn read_to_vec(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.length as usize];
        self.file.read_exact_at(&mut buf, self.position).at(&self.path)?;
        Ok(buf)
    }
}

/// Per-batch facts the log hands to [`LogSegment::append`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendedBatch {
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub size: u64,
}

/// Why recovery stopped early, and where.
#[derive(Debug, Clone)]
pub(crate) struct Damage {
    pub position: u64,
    pub reason: String,
}

/// A batch header found while scanning, and where it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocatedBatch {
    pub position: u64,
    pub header: BatchHeader,
}

/// One segment of a partition's log.
#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    dir: PathBuf,
    suffix: String,
    log: Arc<File>,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    index_interval_bytes: u64,
    bytes_since_last_index_entry: u64,
    max_timestamp_so_far: i64,
    offset_of_max_timestamp_so_far: i64,
    rolling_based_timestamp: Option<i64>,
    created_ms: i64,
    next_offset: i64,
    /// Picks how much sooner than `segment.ms` this segment rolls (`segment.jitter.ms`).
    jitter_seed: u64,
    /// Disk reserved past the end of the file by `preallocate`, released on roll.
    preallocated: bool,
    /// Writeback was started for the bytes below this.
    written_back: u64,
}

impl LogSegment {
    fn path_for(dir: &Path, base_offset: i64, ext: &str, suffix: &str) -> PathBuf {
        dir.join(format!("{}{ext}{suffix}", file_stem(base_offset)))
    }

    /// Creates a new, empty segment (replacing any file of the same name).
    pub fn create(dir: &Path, base_offset: i64, config: &LogConfig, now_ms: i64, suffix: &str) -> Result<Self> {
        let log_path = Self::path_for(dir, base_offset, LOG_SUFFIX, suffix);
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&log_path).at(&log_path)?;
        // Only active segments grow by appends; the cleaner writes its output at once.
        let preallocated =
            config.preallocate && suffix.is_empty() && preallocate(&file, config.segment_bytes, &log_path)?;
        let index_path = Self::path_for(dir, base_offset, INDEX_SUFFIX, suffix);
        let time_path = Self::path_for(dir, base_offset, TIME_INDEX_SUFFIX, suffix);
        Ok(Self {
            base_offset,
            dir: dir.to_path_buf(),
            suffix: suffix.to_string(),
            log: Arc::new(file),
            size: 0,
            offset_index: OffsetIndex::empty(index_path, base_offset, config.segment_index_bytes),
            time_index: TimeIndex::empty(time_path, base_offset, config.segment_index_bytes),
            index_interval_bytes: config.index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: -1,
            offset_of_max_timestamp_so_far: base_offset,
            rolling_based_timestamp: None,
            created_ms: now_ms,
            next_offset: base_offset,
            jitter_seed: jitter_seed(dir, base_offset),
            preallocated,
            written_back: 0,
        })
    }

    /// Opens an existing segment without validating its batches. Returns the segment and
    /// whether it needs [`LogSegment::recover`]: its indexes are missing or insane, or its
    /// tail does not end on a batch boundary.
    pub fn open(dir: &Path, base_offset: i64, config: &LogConfig, suffix: &str) -> Result<(Self, Option<String>)> {
        let log_path = Self::path_for(dir, base_offset, LOG_SUFFIX, suffix);
        let file = OpenOptions::new().read(true).write(true).open(&log_path).at(&log_path)?;
        let meta = file.metadata().at(&log_path)?;
        let size = meta.len();
        let created_ms = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let index_path = Self::path_for(dir, base_offset, INDEX_SUFFIX, suffix);
        let time_path = Self::path_for(dir, base_offset, TIME_INDEX_SUFFIX, suffix);
        let offset_index = OffsetIndex::load(index_path.clone(), base_offset, config.segment_index_bytes)?;
        let time_index = TimeIndex::load(time_path.clone(), base_offset, config.segment_index_bytes)?;
        let mut problem = None;
        if offset_index.is_none() || time_index.is_none() {
            problem = Some("index file missing".to_string());
        }
        let offset_index =
            offset_index.unwrap_or_else(|| OffsetIndex::empty(index_path, base_offset, config.segment_index_bytes));
        let time_index =
            time_index.unwrap_or_else(|| TimeIndex::empty(time_path, base_offset, config.segment_index_bytes));
        if problem.is_none() {
            if let Err(e) = offset_index.sanity_check(size) {
                problem = Some(format!("offset index: {e}"));
            } else if let Err(e) = time_index.sanity_check() {
                problem = Some(format!("time index: {e}"));
            }
        }
        let mut segment = Self {
            base_offset,
            dir: dir.to_path_buf(),
            suffix: suffix.to_string(),
            log: Arc::new(file),
            size,
            offset_index,
            time_index,
            index_interval_bytes: config.index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp_so_far: -1,
            offset_of_max_timestamp_so_far: base_offset,
            rolling_based_timestamp: None,
            created_ms,
            next_offset: base_offset,
            jitter_seed: jitter_seed(dir, base_offset),
            // A reservation a crash left behind is given back when the segment rolls.
            preallocated: allocated_past_end(&meta),
            written_back: size,
        };
        if let Some(last) = segment.time_index.last_entry() {
            segment.max_timestamp_so_far = last.timestamp;
            segment.offset_of_max_timestamp_so_far = last.offset;
        }
        if problem.is_none() {
            // Walk the headers after the last index entry: cheap, and it proves the file
            // ends on a batch boundary and tells us the next offset.
            let start = segment.offset_index.last_entry().map_or(0, |e| u64::from(e.position));
            match segment.scan_tail(start) {
                Ok(()) => {}
                Err(reason) => problem = Some(reason),
            }
        }
        if problem.is_none() && size > 0 {
            segment.rolling_based_timestamp = segment.batch_at(0).ok().map(|b| b.header.max_timestamp);
        }
        Ok((segment, problem))
    }

    fn scan_tail(&mut self, start: u64) -> std::result::Result<(), String> {
        let mut pos = start;
        let mut next = self.base_offset;
        let mut since_index = 0u64;
        while pos < self.size {
            let found = self.batch_at(pos).map_err(|e| format!("at byte {pos}: {e}"))?;
            let end = pos + found.header.size_bytes() as u64;
            if end > self.size {
                return Err(format!("batch at byte {pos} runs past the end of the file"));
            }
            if found.header.base_offset < next && pos != start {
                return Err(format!("batch at byte {pos} goes back to offset {}", found.header.base_offset));
            }
            if found.header.max_timestamp > self.max_timestamp_so_far {
                self.max_timestamp_so_far = found.header.max_timestamp;
                self.offset_of_max_timestamp_so_far = found.header.last_offset();
            }
            next = found.header.next_offset();
            since_index += found.header.size_bytes() as u64;
            pos = end;
        }
        self.next_offset = next.max(self.offset_index.last_entry().map_or(self.base_offset, |e| e.offset + 1));
        self.bytes_since_last_index_entry = since_index;
        Ok(())
    }

    /// Reads and parses the header of the batch at `position`.
    pub(crate) fn batch_at(&self, position: u64) -> std::result::Result<LocatedBatch, RecordError> {
        let mut buf = [0u8; RECORD_BATCH_OVERHEAD];
        let available = self.size.saturating_sub(position).min(RECORD_BATCH_OVERHEAD as u64) as usize;
        let n =
            self.log.read_at(&mut buf[..available], position).map_err(|e| RecordError::Unreadable(e.to_string()))?;
        let header = BatchHeader::parse(&buf[..n])?;
        if header.batch_length < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
            return Err(RecordError::InvalidLength {
                length: i64::from(header.batch_length),
                reason: "shorter than a header",
            });
        }
        if header.magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic(header.magic));
        }
        Ok(LocatedBatch { position, header })
    }

    /// Iterates batch headers from `position` to the end of the segment.
    pub(crate) fn batches_from(&self, position: u64) -> HeaderScan<'_> {
        HeaderScan { segment: self, position, buf: Vec::new(), buf_start: 0 }
    }

    /// Base offset (the first offset this segment may hold).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Bytes in the `.log` file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The offset after the last batch (the base offset if empty).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The largest timestamp in the segment, or -1 if empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp_so_far
    }

    /// The timestamp retention and `segment.ms` measure age by: the newest record's, or the
    /// file's modification time for an empty segment (as in Kafka).
    pub fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp_so_far >= 0 { self.max_timestamp_so_far } else { self.created_ms }
    }

    /// Path of the `.log` file.
    pub fn log_path(&self) -> PathBuf {
        Self::path_for(&self.dir, self.base_offset, LOG_SUFFIX, &self.suffix)
    }

    /// The open `.log` file.
    pub fn file(&self) -> &Arc<File> {
        &self.log
    }

    /// The offset index.
    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    /// The time index.
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// The max timestamp of the segment's first batch, if it has one.
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.rolling_based_timestamp
    }

    /// Whether `offset` can be stored relative to this segment's base.
    pub fn can_hold_offset(&self, offset: i64) -> bool {
        (0..=i64::from(i32::MAX)).contains(&(offset - self.base_offset))
    }

    /// How much sooner than `segment.ms` this segment rolls: below
    /// `min(segment.jitter.ms, segment.ms)`, as in Kafka.
    fn roll_jitter_ms(&self, config: &LogConfig) -> i64 {
        let bound = config.segment_jitter_ms.min(config.max_segment_ms());
        if bound <= 0 { 0 } else { (self.jitter_seed % bound as u64) as i64 }
    }

    /// Whether appending `bytes` more should roll to a new segment first.
    pub fn should_roll(&self, config: &LogConfig, append_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        if self.size == 0 {
            return false;
        }
        let too_old = now_ms - self.rolling_based_timestamp.unwrap_or(self.created_ms)
            > config.max_segment_ms() - self.roll_jitter_ms(config);
        self.size + append_bytes > config.segment_bytes
            || too_old
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || !self.can_hold_offset(last_offset)
    }

    /// Appends validated batches at the end of the file.
    pub(crate) fn append(&mut self, records: &[u8], batches: &[AppendedBatch]) -> Result<()> {
        debug_assert_eq!(records.len() as u64, batches.iter().map(|b| b.size).sum::<u64>());
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let log_path = self.log_path();
        if let Err(e) = self.log.write_all_at(records, self.size) {
            // Leave the file exactly as it was: a partial write must not become a torn tail.
            let _ = self.log.set_len(self.size);
            return Err(e).at(log_path);
        }
        if self.rolling_based_timestamp.is_none() {
            self.rolling_based_timestamp = Some(first.max_timestamp);
        }
        self.append_index_entries(batches, self.size);
        self.size += records.len() as u64;
        self.written_back = self.written_back.min(self.size);
        if self.size - self.written_back >= WRITEBACK_BYTES {
            start_writeback(&self.log, self.written_back, self.size - self.written_back, &log_path);
            self.written_back = self.size;
        }
        Ok(())
    }

    /// Finds the first batch whose last offset is ≥ `offset`, scanning from the index.
    pub(crate) fn translate_offset(&self, offset: i64) -> Result<Option<LocatedBatch>> {
        let start = self.offset_index.lookup(offset);
        for found in self.batches_from(u64::from(start.position)) {
            let found = found.map_err(|e| self.corrupt(e))?;
            if found.header.last_offset() >= offset {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Whole batches starting with the one containing `start_offset`, at most `max_bytes`
    /// (but at least one batch if `min_one_batch`), stopping before any batch that starts
    /// at or after `max_offset`.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: u64,
        max_offset: Option<i64>,
        min_one_batch: bool,
    ) -> Result<Option<FileRange>> {
        let Some(first) = self.translate_offset(start_offset)? else {
            return Ok(None);
        };
        if max_offset.is_some_and(|m| first.header.last_offset() >= m) {
            return Ok(None);
        }
        let first_size = first.header.size_bytes() as u64;
        // Stop before the batch holding `max_offset`: a batch that straddles the high
        // watermark is not committed as a whole, so it is not served yet.
        let limit = match max_offset {
            Some(m) if m < self.next_offset => self.translate_offset(m)?.map_or(self.size, |b| b.position),
            _ => self.size,
        };
        let budget_end = first.position + max_bytes;
        if budget_end < first.position + first_size {
            if !min_one_batch {
                return Ok(None);
            }
            return Ok(Some(self.range(
                first.position,
                first_size,
                first.header.base_offset,
                first.header.next_offset(),
            )));
        }
        let end_limit = budget_end.min(limit);
        // Jump with the index to the last indexed batch that still starts inside the
        // budget, then walk headers to find the last whole batch that fits.
        let mut end = first.position + first_size;
        if let Some(entry) = self.offset_index.lookup_position_at_most(end_limit) {
            end = end.max(u64::from(entry.position));
        }
        let mut next_offset = if end == self.size { self.next_offset } else { first.header.next_offset() };
        for found in self.batches_from(end) {
            let found = found.map_err(|e| self.corrupt(e))?;
            next_offset = found.header.base_offset;
            let batch_end = found.position + found.header.size_bytes() as u64;
            if batch_end > end_limit {
                break;
            }
            end = batch_end;
            next_offset = found.header.next_offset();
        }
        Ok(Some(self.range(first.position, end - first.position, first.header.base_offset, next_offset)))
    }

    fn range(&self, position: u64, length: u64, first_offset: i64, next_offset: i64) -> FileRange {
        FileRange { file: self.log.clone(), path: self.log_path(), position, length, first_offset, next_offset }
    }

    fn corrupt(&self, e: RecordError) -> LogError {
        LogError::Corrupt { path: self.log_path(), reason: e.to_string() }
    }

    /// Reads the whole batch at `position` into memory.
    pub(crate) fn read_batch(&self, located: &LocatedBatch) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; located.header.size_bytes()];
        self.log.read_exact_at(&mut buf, located.position).at(self.log_path())?;
        Ok(buf)
    }

    /// The first record at or after `start_offset` whose timestamp is ≥ `timestamp`.
    pub fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        start_offset: i64,
        max_decompressed: usize,
    ) -> Result<Option<TimestampOffset>> {
        let from = self.time_index.lookup(timestamp).map_or(self.base_offset, |e| e.offset).max(start_offset);
        let position = self.offset_index.lookup(from).position;
        for found in self.batches_from(u64::from(position)) {
            let found = found.map_err(|e| self.corrupt(e))?;
            if found.header.max_timestamp < timestamp || found.header.last_offset() < start_offset {
                continue;
            }
            let bytes = self.read_batch(&found)?;
            let (batch, _) = RecordBatch::parse(&bytes).map_err(|e| self.corrupt(e))?;
            let payload = batch.records_payload(max_decompressed).map_err(|e| self.corrupt(e))?;
            for record in RecordIter::new(&payload, batch.header().records_count) {
                let record = record.map_err(|e| self.corrupt(e))?;
                let offset = batch.header().base_offset + i64::from(record.offset_delta);
                let ts = match batch.header().timestamp_type() {
                    crate::record::TimestampType::LogAppendTime => batch.header().max_timestamp,
                    crate::record::TimestampType::CreateTime => batch.record_timestamp(&record),
                };
                if offset >= start_offset && ts >= timestamp {
                    return Ok(Some(TimestampOffset { timestamp: ts, offset }));
                }
            }
        }
        Ok(None)
    }

    /// Re-reads the whole file: checks every batch's framing, magic and CRC, rebuilds both
    /// indexes, and reports the first damage (the caller saves and truncates the tail).
    pub(crate) fn recover(&mut self, max_batch_bytes: usize, rules: &RecoveryRules<'_>) -> Result<Option<Damage>> {
        self.offset_index.clear();
        self.time_index.clear();
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp_so_far = -1;
        self.offset_of_max_timestamp_so_far = self.base_offset;
        self.rolling_based_timestamp = None;
        self.next_offset = self.base_offset;
        let log_path = self.log_path();
        let mut reader = SequentialBatches::new(self.log.clone(), 0, self.size, max_batch_bytes);
        let damage = loop {
            let (position, bytes) = match reader.next_batch() {
                Ok(Some(found)) => found,
                Ok(None) => break None,
                Err(BatchReadError::Damaged { position, reason }) => {
                    break Some(Damage { position, reason });
                }
                Err(BatchReadError::Io(e)) => return Err(e).at(&log_path),
            };
            let damaged = |reason: String| Some(Damage { position, reason });
            let batch = match RecordBatch::parse(bytes) {
                Ok((b, _)) => b,
                Err(e) => break damaged(e.to_string()),
            };
            if let Err(e) = batch.check_integrity() {
                break damaged(e.to_string());
            }
            let h = *batch.header();
            if h.records_count < 0 || h.last_offset_delta < 0 {
                break damaged("negative record count or last offset delta".to_string());
            }
            // The base offset and leader epoch are outside the CRC, so check them against
            // what the log knows: offsets are contiguous except where compaction removed
            // batches, and every epoch was recorded in the epoch cache before its batches.
            let gap_allowed = rules.gaps_allowed || self.next_offset < rules.contiguous_from;
            let offsets_ok = h.base_offset == self.next_offset || (gap_allowed && h.base_offset > self.next_offset);
            if !offsets_ok || !self.can_hold_offset(h.last_offset()) {
                break damaged(format!(
                    "batch offsets {}..={} do not follow {}",
                    h.base_offset,
                    h.last_offset(),
                    self.next_offset
                ));
            }
            if let Some(expected) = rules.epoch_at(h.base_offset)
                && h.partition_leader_epoch != expected
            {
                break damaged(format!(
                    "batch leader epoch {} but the epoch cache says {expected}",
                    h.partition_leader_epoch
                ));
            }
            let size = bytes.len() as u64;
            self.append_index_entries(
                &[AppendedBatch { last_offset: h.last_offset(), max_timestamp: h.max_timestamp, size }],
                position,
            );
            if self.rolling_based_timestamp.is_none() {
                self.rolling_based_timestamp = Some(h.max_timestamp);
            }
        };
        self.size = damage.as_ref().map_or(self.size, |d| d.position);
        Ok(damage)
    }

    fn append_index_entries(&mut self, batches: &[AppendedBatch], mut position: u64) {
        for b in batches {
            if b.max_timestamp > self.max_timestamp_so_far {
                self.max_timestamp_so_far = b.max_timestamp;
                self.offset_of_max_timestamp_so_far = b.last_offset;
            }
            if self.bytes_since_last_index_entry > self.index_interval_bytes {
                self.offset_index.append(b.last_offset, position as u32);
                self.time_index.maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp_so_far);
                self.bytes_since_last_index_entry = 0;
            }
            position += b.size;
            self.bytes_since_last_index_entry += b.size;
            self.next_offset = b.last_offset + 1;
        }
    }

    /// Cuts the file at `position` (a batch boundary found by recovery or truncation).
    pub(crate) fn truncate_at_position(&mut self, position: u64) -> Result<()> {
        self.written_back = self.written_back.min(position);
        self.log.set_len(position).at(self.log_path())?;
        self.size = position;
        Ok(())
    }

    /// Removes every batch whose last offset is ≥ `offset`'s batch. Returns bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let Some(found) = self.translate_offset(offset)? else {
            return Ok(0);
        };
        let removed = self.size - found.position;
        self.truncate_at_position(found.position)?;
        self.offset_index.truncate_to(offset);
        self.time_index.truncate_to(offset);
        self.max_timestamp_so_far = -1;
        self.offset_of_max_timestamp_so_far = self.base_offset;
        if let Some(last) = self.time_index.last_entry() {
            self.max_timestamp_so_far = last.timestamp;
            self.offset_of_max_timestamp_so_far = last.offset;
        }
        let start = self.offset_index.last_entry().map_or(0, |e| u64::from(e.position));
        self.scan_tail(start).map_err(|reason| LogError::Corrupt { path: self.log_path(), reason })?;
        if self.size == 0 {
            self.rolling_based_timestamp = None;
        }
        Ok(removed)
    }

    /// Called when a newer segment takes over: records the final max timestamp in the time
    /// index (so a reload knows it) and persists both indexes.
    pub(crate) fn on_become_inactive(&mut self) -> Result<()> {
        if std::mem::take(&mut self.preallocated) {
            // Truncating to the current length releases the blocks reserved past it.
            let path = self.log_path();
            self.log.set_len(self.size).at(&path)?;
        }
        if self.max_timestamp_so_far >= 0 {
            self.time_index.maybe_append(self.max_timestamp_so_far, self.offset_of_max_timestamp_so_far);
        }
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// fsyncs the data and the indexes.
    pub fn flush(&mut self) -> Result<()> {
        self.log.sync_data().at(self.log_path())?;
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Writes the indexes without syncing data (used at close together with a final sync).
    pub(crate) fn flush_indexes(&mut self) -> Result<()> {
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Renames all files from the current suffix to `suffix`. The `.log` file is renamed
    /// last: its name is what recovery trusts.
    pub(crate) fn change_suffix(&mut self, suffix: &str) -> Result<()> {
        let old_log = self.log_path();
        self.offset_index.rename(Self::path_for(&self.dir, self.base_offset, INDEX_SUFFIX, suffix))?;
        self.time_index.rename(Self::path_for(&self.dir, self.base_offset, TIME_INDEX_SUFFIX, suffix))?;
        let new_log = Self::path_for(&self.dir, self.base_offset, LOG_SUFFIX, suffix);
        std::fs::rename(&old_log, &new_log).at(&old_log)?;
        self.suffix = suffix.to_string();
        Ok(())
    }

    /// Deletes the segment's files. Open [`FileRange`]s stay readable until dropped.
    pub(crate) fn delete(&self) -> Result<()> {
        let log_path = self.log_path();
        match std::fs::remove_file(&log_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(log_path),
            _ => {}
        }
        self.offset_index.delete()?;
        self.time_index.delete()?;
        let txn = Self::path_for(&self.dir, self.base_offset, TXN_INDEX_SUFFIX, &self.suffix);
        let _ = std::fs::remove_file(txn);
        Ok(())
    }
}

/// Iterates batch headers through a reusable buffer, one `pread` per chunk.
pub(crate) struct HeaderScan<'a> {
    segment: &'a LogSegment,
    position: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl Iterator for HeaderScan<'_> {
    type Item = std::result::Result<LocatedBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        let size = self.segment.size;
        if self.position >= size {
            return None;
        }
        let need = (size - self.position).min(RECORD_BATCH_OVERHEAD as u64) as usize;
        let in_buf =
            self.position >= self.buf_start && self.position + need as u64 <= self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let len = (size - self.position).min(SCAN_CHUNK_BYTES as u64) as usize;
            self.buf.resize(len, 0);
            if let Err(e) = self.segment.log.read_exact_at(&mut self.buf, self.position) {
                self.position = size;
                return Some(Err(RecordError::Unreadable(e.to_string())));
            }
            self.buf_start = self.position;
        }
        let at = (self.position - self.buf_start) as usize;
        let result = BatchHeader::parse(&self.buf[at..at + need]).and_then(|header| {
            if header.batch_length < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
                return Err(RecordError::InvalidLength {
                    length: i64::from(header.batch_length),
                    reason: "shorter than a header",
                });
            }
            if self.position + header.size_bytes() as u64 > size {
                return Err(RecordError::Truncated {
                    needed: header.size_bytes(),
                    available: (size - self.position) as usize,
                });
            }
            Ok(LocatedBatch { position: self.position, header })
        });
        match &result {
            Ok(found) => self.position += found.header.size_bytes() as u64,
            Err(_) => self.position = size,
        }
        Some(result)
    }
}

/// What recovery may assume about batch fields the CRC does not cover.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RecoveryRules<'a> {
    /// Offset gaps may appear anywhere (compacted topics, whose followers copy gaps).
    pub gaps_allowed: bool,
    /// Below this offset the log was cleaned, so gaps may appear.
    pub contiguous_from: i64,
    /// The leader-epoch cache; empty if unknown (then epochs are not checked).
    pub epochs: &'a [super::leader_epoch::EpochEntry],
}

impl RecoveryRules<'_> {
    fn epoch_at(&self, offset: i64) -> Option<i32> {
        if self.epochs.is_empty() {
            return None;
        }
        let idx = self.epochs.partition_point(|e| e.start_offset <= offset);
        Some(idx.checked_sub(1).map_or(-1, |i| self.epochs[i].epoch))
    }
}

/// Why [`SequentialBatches`] stopped.
#[derive(Debug)]
pub(crate) enum BatchReadError {
    /// The bytes at `position` are not a whole, plausible batch.
    Damaged { position: u64, reason: String },
    /// The file could not be read.
    Io(std::io::Error),
}

/// Reads a segment file batch by batch, front to back, through a large buffer of
/// positional reads (so it never moves the file's shared cursor). Checks framing only.
pub(crate) struct SequentialBatches {
    reader: BufReader<PositionalReader>,
    position: u64,
    end: u64,
    max_batch_bytes: usize,
    batch: Vec<u8>,
}

impl SequentialBatches {
    pub(crate) fn new(file: Arc<File>, start: u64, end: u64, max_batch_bytes: usize) -> Self {
        let reader = BufReader::with_capacity(RECOVERY_BUFFER_BYTES, PositionalReader { file, position: start });
        Self { reader, position: start, end, max_batch_bytes, batch: Vec::new() }
    }

    /// The next batch and its position, `None` at the end.
    pub(crate) fn next_batch(&mut self) -> std::result::Result<Option<(u64, &[u8])>, BatchReadError> {
        let position = self.position;
        if position == self.end {
            return Ok(None);
        }
        let damaged = |reason: String| Err(BatchReadError::Damaged { position, reason });
        let remaining = self.end - position;
        if remaining < LOG_OVERHEAD as u64 {
            return damaged(format!("{remaining} trailing bytes are too few for a batch header"));
        }
        self.batch.resize(LOG_OVERHEAD, 0);
        self.reader.read_exact(&mut self.batch).map_err(BatchReadError::Io)?;
        let length = read_i32(&self.batch, 8);
        let size = i64::from(length) + LOG_OVERHEAD as i64;
        if size < RECORD_BATCH_OVERHEAD as i64 || size as u64 > self.max_batch_bytes as u64 {
            return damaged(format!("batch length field {length} is impossible"));
        }
        if size as u64 > remaining {
            return damaged(format!("batch of {size} bytes is torn: only {remaining} bytes remain"));
        }
        self.batch.resize(size as usize, 0);
        self.reader.read_exact(&mut self.batch[LOG_OVERHEAD..]).map_err(BatchReadError::Io)?;
        self.position += size as u64;
        Ok(Some((position, &self.batch)))
    }
}

/// `Read` over a shared file at a private position.
struct PositionalReader {
    file: Arc<File>,
    position: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Appended bytes after which a segment starts writing them back (`sync_file_range`), so
/// that dirty pages never pile up: the fsync of a rolled segment then has little left to
/// write, and the journal commit it forces does not stall appends to the next segment for
/// seconds. (RocksDB's `bytes_per_sync`; Kafka leaves it all to the kernel.) The cost is
/// on bursts faster than the disk, which become disk-bound sooner: a 1 GiB burst ran at
/// 0.7 times the rate in BENCHMARKS.md.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// Starts writeback of a byte range without waiting for it; durability still comes from
/// fsync. Best effort: a failure only means the kernel writes the pages back later.
/// (Neither std nor rustix wraps sync_file_range, hence the one unsafe call.)
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64, path: &Path) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else { return };
    // SAFETY: the descriptor belongs to `file`, which outlives the call; sync_file_range
    // only reads its arguments.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        tracing::debug!(path = %path.display(), error = %std::io::Error::last_os_error(), "could not start writeback");
    }
}

/// A value that is stable for a segment (derived from its path), from which its roll jitter
/// is drawn: partitions created together spread their time-based rolls, and the outcome
/// does not depend on a random source.
fn jitter_seed(dir: &Path, base_offset: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    (dir, base_offset).hash(&mut hasher);
    hasher.finish()
}

/// Reserves `bytes` of disk for a new segment without changing its length (so readers and
/// recovery see only what was appended). False where the filesystem cannot do it.
fn preallocate(file: &File, bytes: u64, path: &Path) -> Result<bool> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, bytes) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
            tracing::debug!(path = %path.display(), "the filesystem cannot preallocate; segment left to grow");
            Ok(false)
        }
        // The appends may well fit without the reservation (Kafka's sparse preallocation
        // does not reserve either): go on without it.
        Err(rustix::io::Errno::NOSPC) => {
            // A failed fallocate may keep part of its allocation: the file is still empty,
            // so truncating it to nothing gives that back.
            tracing::warn!(path = %path.display(), bytes, "no room to preallocate the segment");
            file.set_len(0).at(path)?;
            Ok(false)
        }
        Err(e) => Err(LogError::Io { path: path.to_path_buf(), source: e.into() }),
    }
}

/// Whether the file has blocks allocated well past its length (a preallocation).
fn allocated_past_end(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.blocks().saturating_mul(512) > meta.len().saturating_add(64 * 1024)
}
