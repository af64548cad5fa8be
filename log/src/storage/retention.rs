//! Retention on a [`Log`]: `retention.ms`, `retention.bytes` and DeleteRecords remove whole
//! segments from the oldest, never past the high watermark, and a removed segment is
//! retired (renamed `.deleted`, its files deleted after `file.delete.delay.ms`).

use super::error::{LogError, Result};
use super::log::Log;
use super::segment::{DELETED_SUFFIX, LogSegment};

impl Log {
    /// Applies `retention.ms`, `retention.bytes` (if `cleanup.policy` includes delete) and the
    /// log start offset: deletes whole segments from the oldest, never past the high
    /// watermark. Returns how many segments were deleted.
    pub fn delete_old_segments(&mut self, now_ms: i64) -> Result<usize> {
        let mut deleted = self.delete_segments_while(|s, _| s.next_offset_bound <= s.log_start_offset, now_ms)?;
        if self.config.delete() {
            let retention_ms = self.config.retention_ms;
            if retention_ms >= 0 {
                deleted += self.delete_segments_while(|s, _| now_ms - s.largest_timestamp > retention_ms, now_ms)?;
            }
            if self.config.retention_bytes >= 0 {
                let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
                deleted += self.delete_segments_while(
                    |s, _| {
                        let fits = excess - s.size as i64 >= 0;
                        if fits {
                            excess -= s.size as i64;
                        }
                        fits
                    },
                    now_ms,
                )?;
            }
        }
        Ok(deleted)
    }

    /// Deletes segments from the oldest while `predicate` holds and each segment lies wholly
    /// below the high watermark. Empty active segments are never deleted; if every segment
    /// goes, a fresh active segment starts at the log end.
    fn delete_segments_while(
        &mut self,
        mut predicate: impl FnMut(&SegmentFacts, usize) -> bool,
        now_ms: i64,
    ) -> Result<usize> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let leo = self.log_end_offset();
        let mut doomed = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            let segment = &self.segments[base];
            let upper_bound = bases.get(i + 1).copied().unwrap_or(leo);
            let is_active = i + 1 == bases.len();
            if upper_bound > self.high_watermark || (is_active && segment.size() == 0) {
                break;
            }
            let facts = SegmentFacts {
                next_offset_bound: upper_bound,
                log_start_offset: self.log_start_offset,
                largest_timestamp: segment.largest_timestamp(),
                size: segment.size(),
            };
            if !predicate(&facts, i) {
                break;
            }
            doomed.push(*base);
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        if doomed.len() == bases.len() {
            self.roll(now_ms)?;
        }
        for base in &doomed {
            if let Some(segment) = self.segments.remove(base) {
                tracing::info!(log = %self.name, base, bytes = segment.size(), "deleting segment");
                self.retire_segment(segment, now_ms)?;
            }
        }
        let first_base = self.segments.keys().next().copied().unwrap_or(leo);
        self.advance_log_start_offset(first_base)?;
        Ok(doomed.len())
    }

    fn advance_log_start_offset(&mut self, offset: i64) -> Result<()> {
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.leader_epoch_cache.truncate_from_start(offset)?;
            self.high_watermark = self.high_watermark.max(offset);
            self.recovery_point = self.recovery_point.max(offset);
            self.cleaner_checkpoint = self.cleaner_checkpoint.max(offset);
        }
        Ok(())
    }

    /// DeleteRecords: makes offsets below `offset` unreadable and frees the segments wholly
    /// below it. `offset` may not pass the high watermark. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64, now_ms: i64) -> Result<i64> {
        if offset > self.high_watermark || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.high_watermark,
            });
        }
        self.advance_log_start_offset(offset)?;
        self.delete_segments_while(|s, _| s.next_offset_bound <= s.log_start_offset, now_ms)?;
        Ok(self.log_start_offset)
    }

    /// Takes a segment out of service: deleted now if `file.delete.delay.ms` is 0, else
    /// renamed `.deleted` (a restart removes such files) and deleted once the delay passed.
    pub(crate) fn retire_segment(&mut self, mut segment: LogSegment, now_ms: i64) -> Result<()> {
        if self.config.file_delete_delay_ms == 0 {
            return segment.delete();
        }
        segment.change_suffix(DELETED_SUFFIX)?;
        self.retired.push((now_ms.saturating_add(self.config.file_delete_delay_ms), segment));
        Ok(())
    }

    /// Hands over the retired segments whose delay has passed, for the caller to delete
    /// outside the log's lock.
    pub(crate) fn take_due_retired(&mut self, now_ms: i64) -> Vec<LogSegment> {
        let (due, waiting) = std::mem::take(&mut self.retired).into_iter().partition(|(at, _)| *at <= now_ms);
        self.retired = waiting;
        due.into_iter().map(|(_, segment)| segment).collect()
    }
}

/// What retention predicates see of a segment.
#[derive(Debug, Clone, Copy)]
struct SegmentFacts {
    next_offset_bound: i64,
    log_start_offset: i64,
    largest_timestamp: i64,
    size: u64,
}
