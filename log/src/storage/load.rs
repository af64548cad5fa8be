//! Loading a partition directory into a [`Log`]: sorting out the files, finishing or
//! discarding an interrupted clean, opening segments, and recovering after a crash.
//!
//! Recovery re-reads every segment from the one holding the recovery point onward,
//! checking each batch's framing and CRC and rebuilding the indexes. At the first damage
//! the rest of that segment is copied to the quarantine and cut off, and any later
//! segments are moved to the quarantine whole: nothing after damage is served, and nothing
//! unparseable is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::checkpoint::sync_dir;
use super::config::LogConfig;
use super::error::{IoContext, Result};
use super::leader_epoch::LeaderEpochCache;
use super::log::{LoadReport, Log, LogOpenOptions};
use super::partition_metadata::FILE_NAME as PARTITION_METADATA;
use super::producer_state::{ProducerStateManager, SNAPSHOT_SUFFIX};
use super::quarantine::Quarantine;
use super::segment::{
    CLEANED_SUFFIX, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, LogSegment, RecoveryRules, SWAP_SUFFIX,
    TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX,
};

/// What a file in a partition directory is.
#[derive(Debug, PartialEq, Eq)]
enum FileKind {
    Segment(i64),
    Index,
    Swap { base: i64, is_log: bool },
    Leftover,
    Known,
    Foreign(&'static str),
}

fn classify(name: &str) -> FileKind {
    if name == LeaderEpochCache::FILE_NAME || name == PARTITION_METADATA {
        return FileKind::Known;
    }
    if name.ends_with(".tmp") || name.ends_with(CLEANED_SUFFIX) || name.ends_with(DELETED_SUFFIX) {
        return FileKind::Leftover;
    }
    let (stem, rest) = name.split_at(name.find('.').unwrap_or(name.len()));
    let Some(base) =
        (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse::<i64>().ok()).flatten()
    else {
        return FileKind::Foreign("not a file Freshet writes (no 20-digit offset prefix)");
    };
    match rest {
        LOG_SUFFIX => FileKind::Segment(base),
        INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX => FileKind::Index,
        SNAPSHOT_SUFFIX => FileKind::Known,
        _ => match rest.strip_suffix(SWAP_SUFFIX) {
            Some(LOG_SUFFIX) => FileKind::Swap { base, is_log: true },
            Some(INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX) => FileKind::Swap { base, is_log: false },
            _ => FileKind::Foreign("unknown extension after the offset prefix"),
        },
    }
}

pub(crate) fn load(dir: PathBuf, config: LogConfig, options: LogOpenOptions) -> Result<(Log, LoadReport)> {
    std::fs::create_dir_all(&dir).at(&dir)?;
    let name = dir.file_name().map_or_else(|| "log".to_string(), |n| n.to_string_lossy().into_owned());
    let quarantine =
        options.quarantine.clone().unwrap_or_else(|| Quarantine::new(dir.parent().unwrap_or(Path::new("."))));
    let mut loader = Loader { dir, name, quarantine, report: LoadReport::default() };

    let (mut bases, swaps) = loader.scan_directory()?;
    let leader_epoch_cache = loader.load_leader_epochs()?;
    let rules = RecoveryRules {
        gaps_allowed: config.compact(),
        contiguous_from: options.cleaner_checkpoint.unwrap_or(0),
        epochs: leader_epoch_cache.entries(),
    };
    let mut segments = loader.finish_swaps(&config, swaps, &mut bases, &rules)?;
    let problems = loader.open_segments(&config, bases, &mut segments)?;
    let recover_from = if options.had_clean_shutdown {
        i64::MAX
    } else {
        segments.range(..=options.recovery_point).next_back().map_or(i64::MIN, |(b, _)| *b)
    };
    let max_batch = config.max_batch_bytes();
    if let Some(damaged) = loader.recover_segments(&mut segments, &problems, recover_from, max_batch, &rules)? {
        loader.quarantine_after(&mut segments, damaged)?;
    }
    loader.assemble(config, segments, leader_epoch_cache, &options)
}

/// What loading one partition directory shares between its steps.
struct Loader {
    dir: PathBuf,
    name: String,
    quarantine: Quarantine,
    report: LoadReport,
}

impl Loader {
    /// Step 1: sorts out the directory. Returns the segment bases and the committed
    /// cleaner swaps; leftovers of interrupted operations and orphan indexes are removed,
    /// and files that are not ours are moved to the quarantine.
    fn scan_directory(&mut self) -> Result<(BTreeSet<i64>, BTreeSet<i64>)> {
        let dir = self.dir.clone();
        let mut bases = BTreeSet::new();
        let mut swaps = BTreeSet::new();
        let mut swap_indexes = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(&dir).at(&dir)?.collect::<std::io::Result<Vec<_>>>().at(&dir)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().at(&path)?.is_dir() {
                self.move_aside(&path, "a directory inside a partition directory".to_string())?;
                continue;
            }
            match classify(&file_name) {
                FileKind::Segment(base) => {
                    bases.insert(base);
                }
                FileKind::Swap { base, is_log: true } => {
                    swaps.insert(base);
                }
                FileKind::Swap { base, is_log: false } => swap_indexes.push((base, path)),
                FileKind::Index | FileKind::Known => {}
                FileKind::Leftover => {
                    // Our own scratch files: an unfinished clean (its sources are intact), a
                    // segment already chosen for deletion, or an unrenamed checkpoint.
                    tracing::info!(file = %path.display(), "removing leftover file from an interrupted operation");
                    std::fs::remove_file(&path).at(&path)?;
                }
                FileKind::Foreign(reason) => self.move_aside(&path, reason.to_string())?,
            }
        }
        for (base, path) in swap_indexes {
            if !swaps.contains(&base) {
                // The clean crashed before its .log was renamed to .swap: not committed.
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        self.remove_orphan_indexes(&bases, &swaps)?;
        Ok((bases, swaps))
    }

    /// Indexes whose `.log` is gone are derived data: dropped.
    fn remove_orphan_indexes(&self, bases: &BTreeSet<i64>, swaps: &BTreeSet<i64>) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let path = entry.at(&self.dir)?.path();
            let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if classify(&file_name) == FileKind::Index {
                let stem_base = file_name[..20].parse::<i64>().unwrap_or(-1);
                if !bases.contains(&stem_base) && !swaps.contains(&stem_base) {
                    std::fs::remove_file(&path).at(&path)?;
                }
            }
        }
        Ok(())
    }

    /// The leader epoch checkpoint; a damaged one is set aside and the cache starts empty.
    fn load_leader_epochs(&mut self) -> Result<LeaderEpochCache> {
        match LeaderEpochCache::load(&self.dir) {
            Ok(cache) => Ok(cache),
            Err(e) => {
                let path = self.dir.join(LeaderEpochCache::FILE_NAME);
                self.move_aside(&path, e.to_string())?;
                Ok(LeaderEpochCache::empty(&self.dir))
            }
        }
    }

    /// Step 2: finishes cleaner swaps. A `.log.swap` is a committed clean whose old
    /// segments may still be present: they are deleted and the swap takes their place.
    fn finish_swaps(
        &mut self,
        config: &LogConfig,
        swaps: BTreeSet<i64>,
        bases: &mut BTreeSet<i64>,
        rules: &RecoveryRules<'_>,
    ) -> Result<BTreeMap<i64, LogSegment>> {
        // Cleaned (swap) segments may have gaps anywhere.
        let swap_rules = RecoveryRules { gaps_allowed: true, ..*rules };
        let max_batch = config.max_batch_bytes();
        let mut segments = BTreeMap::new();
        for base in swaps {
            let (mut swap, _) = LogSegment::open(&self.dir, base, config, SWAP_SUFFIX)?;
            if let Some(damage) = swap.recover(max_batch, &swap_rules)? {
                self.save_and_truncate(&mut swap, damage.position, &damage.reason)?;
            }
            let end = swap.next_offset().max(base + 1);
            let replaced: Vec<i64> = bases.range(base..end).copied().collect();
            for old in replaced {
                bases.remove(&old);
                let (old_segment, _) = LogSegment::open(&self.dir, old, config, "")?;
                old_segment.delete()?;
            }
            swap.change_suffix("")?;
            swap.flush_indexes()?;
            tracing::info!(log = %self.name, base, "completed an interrupted cleaner swap");
            self.report.completed_swaps += 1;
            bases.remove(&base);
            segments.insert(base, swap);
        }
        if self.report.completed_swaps > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(segments)
    }

    /// Step 3: opens the remaining segments. Returns those whose indexes need rebuilding,
    /// with why.
    fn open_segments(
        &mut self,
        config: &LogConfig,
        bases: BTreeSet<i64>,
        segments: &mut BTreeMap<i64, LogSegment>,
    ) -> Result<BTreeMap<i64, String>> {
        let mut problems = BTreeMap::new();
        for base in bases {
            let (segment, problem) = LogSegment::open(&self.dir, base, config, "")?;
            if let Some(p) = problem {
                problems.insert(base, p);
            }
            segments.insert(base, segment);
        }
        Ok(problems)
    }

    /// Step 4: recovers every segment from `recover_from` on, and any with a problem.
    /// Returns the base of the first damaged (or overlapping) segment: nothing after it
    /// can be trusted.
    fn recover_segments(
        &mut self,
        segments: &mut BTreeMap<i64, LogSegment>,
        problems: &BTreeMap<i64, String>,
        recover_from: i64,
        max_batch: usize,
        rules: &RecoveryRules<'_>,
    ) -> Result<Option<i64>> {
        let mut previous_next: Option<i64> = None;
        let mut damaged = None;
        for (base, segment) in segments.iter_mut() {
            let overlap = previous_next.is_some_and(|p| *base < p);
            if *base >= recover_from || problems.contains_key(base) {
                if let Some(p) = problems.get(base) {
                    tracing::warn!(log = %self.name, base, problem = %p, "segment needs recovery");
                    self.set_aside_unparsable_indexes(*base, p)?;
                }
                self.report.recovered_segments += 1;
                if let Some(damage) = segment.recover(max_batch, rules)? {
                    self.save_and_truncate(segment, damage.position, &damage.reason)?;
                    damaged = Some(*base);
                }
                segment.flush()?;
            }
            if overlap {
                // The overlapping segment goes too.
                tracing::warn!(log = %self.name, base, "segment overlaps the previous one");
                return Ok(Some(*base - 1));
            }
            if damaged.is_some() {
                return Ok(damaged);
            }
            previous_next = Some(segment.next_offset());
        }
        Ok(None)
    }

    /// An index that exists but does not parse is set aside, not overwritten.
    fn set_aside_unparsable_indexes(&mut self, base: i64, problem: &str) -> Result<()> {
        if !(problem.starts_with("offset index") || problem.starts_with("time index")) {
            return Ok(());
        }
        for ext in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = self.dir.join(format!("{}{ext}", super::segment::file_stem(base)));
            if path.exists() {
                self.move_aside(&path, format!("index rebuilt: {problem}"))?;
            }
        }
        Ok(())
    }

    /// Moves every segment after `damaged` to the quarantine whole.
    fn quarantine_after(&mut self, segments: &mut BTreeMap<i64, LogSegment>, damaged: i64) -> Result<()> {
        let later: Vec<i64> = segments.range(damaged + 1..).map(|(b, _)| *b).collect();
        for base in later {
            let Some(segment) = segments.remove(&base) else {
                continue;
            };
            let reason = format!("follows damage in segment {}", super::segment::file_stem(damaged.max(0)));
            let log_path = segment.log_path();
            drop(segment);
            self.move_aside(&log_path, reason)?;
            for ext in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
                let _ = std::fs::remove_file(self.dir.join(format!("{}{ext}", super::segment::file_stem(base))));
            }
        }
        Ok(())
    }

    /// Step 5: the log itself: offsets, epochs, the cleaner checkpoint and the producer
    /// state, from what survived.
    fn assemble(
        mut self,
        config: LogConfig,
        mut segments: BTreeMap<i64, LogSegment>,
        leader_epoch_cache: LeaderEpochCache,
        options: &LogOpenOptions,
    ) -> Result<(Log, LoadReport)> {
        let first_base = segments.keys().next().copied();
        let log_start_offset = options.log_start_offset.unwrap_or(0).max(first_base.unwrap_or(0));
        if segments.is_empty() {
            let segment = LogSegment::create(&self.dir, log_start_offset, &config, options.now_ms, "")?;
            segments.insert(log_start_offset, segment);
        }
        let mut log_end_offset = segments.values().next_back().map_or(log_start_offset, LogSegment::next_offset);
        let mut log = Log {
            producer_state: ProducerStateManager::new(&self.dir),
            dir: self.dir,
            name: self.name,
            config,
            segments,
            log_start_offset,
            recovery_point: log_end_offset,
            high_watermark: log_end_offset,
            high_watermark_tracks_log_end: true,
            leader_epoch_cache,
            unflushed_records: 0,
            last_flush_ms: options.now_ms,
            cleaner_checkpoint: 0,
            next_tombstone_horizon_ms: None,
            quarantine: self.quarantine.clone(),
            retired: Vec::new(),
            truncations: 0,
        };
        if log_start_offset > log_end_offset {
            // Every record is below the checkpointed start (deleted by DeleteRecords).
            log.truncate_fully_and_start_at(log_start_offset, options.now_ms)?;
            log_end_offset = log_start_offset;
        }
        let log_start_offset = log.log_start_offset;
        log.leader_epoch_cache.truncate_from_end(log_end_offset)?;
        log.leader_epoch_cache.truncate_from_start(log_start_offset)?;
        log.cleaner_checkpoint =
            options.cleaner_checkpoint.unwrap_or(log_start_offset).clamp(log_start_offset, log_end_offset);
        rebuild_producer_state(&mut log, &self.quarantine, &mut self.report)?;
        Ok((log, self.report))
    }

    fn move_aside(&mut self, path: &Path, reason: String) -> Result<()> {
        self.report.quarantined.push(self.quarantine.move_aside(path, &self.name, reason)?);
        Ok(())
    }

    /// Copies a damaged segment's tail to the quarantine and cuts it off.
    fn save_and_truncate(&mut self, segment: &mut LogSegment, position: u64, reason: &str) -> Result<()> {
        let path = segment.log_path();
        let file_len = segment.file().metadata().at(&path)?.len();
        let tail_len = file_len.saturating_sub(position);
        let mut tail = vec![0u8; tail_len as usize];
        segment.file().read_exact_at(&mut tail, position).at(&path)?;
        let why = format!("damaged at byte {position}: {reason}");
        self.report.quarantined.push(self.quarantine.save_tail(&path, &self.name, position, &tail, why)?);
        segment.truncate_at_position(position)?;
        self.report.truncated_bytes += tail_len;
        Ok(())
    }
}

/// Loads the newest producer snapshot at or below the log end and replays the batch
/// headers after it. A damaged snapshot is set aside and the state rebuilt from the log.
pub(crate) fn rebuild_producer_state(log: &mut Log, quarantine: &Quarantine, report: &mut LoadReport) -> Result<()> {
    let leo = log.log_end_offset();
    let mut state = ProducerStateManager::new(&log.dir);
    state.delete_snapshots_after(leo)?;
    let mut from = log.log_start_offset;
    if let Some(&latest) = state.snapshot_offsets()?.last() {
        match state.load_snapshot(latest) {
            Ok(()) => from = latest.max(from),
            Err(e) => {
                let path = log.dir.join(format!("{}{SNAPSHOT_SUFFIX}", super::segment::file_stem(latest)));
                report.quarantined.push(quarantine.move_aside(&path, &log.name, e.to_string())?);
                state = ProducerStateManager::new(&log.dir);
            }
        }
    }
    for segment in log.segments.values().filter(|s| s.next_offset() > from && s.size() > 0) {
        let start =
            if from > segment.base_offset() { u64::from(segment.offset_index().lookup(from).position) } else { 0 };
        for found in segment.batches_from(start) {
            let header = found
                .map_err(|e| super::error::LogError::Corrupt { path: segment.log_path(), reason: e.to_string() })?
                .header;
            if header.last_offset() >= from && header.has_producer_id() {
                state.update(&header, header.base_offset, header.max_timestamp);
            }
        }
    }
    log.producer_state = state;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_classified_like_kafka() {
        assert_eq!(classify("00000000000000000042.log"), FileKind::Segment(42));
        assert_eq!(classify("00000000000000000042.index"), FileKind::Index);
        assert_eq!(classify("00000000000000000042.timeindex"), FileKind::Index);
        assert_eq!(classify("00000000000000000042.log.swap"), FileKind::Swap { base: 42, is_log: true });
        assert_eq!(classify("00000000000000000042.index.swap"), FileKind::Swap { base: 42, is_log: false });
        assert_eq!(classify("00000000000000000042.log.cleaned"), FileKind::Leftover);
        assert_eq!(classify("leader-epoch-checkpoint"), FileKind::Known);
        assert!(matches!(classify("42.log"), FileKind::Foreign(_)));
        assert!(matches!(classify("notes.txt"), FileKind::Foreign(_)));
        assert!(matches!(classify("00000000000000000042.log.bak"), FileKind::Foreign(_)));
    }
}
