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
use super::producer_state::{ProducerStateManager, SNAPSHOT_SUFFIX};
use super::quarantine::Quarantine;
use super::segment::{
    CLEANED_SUFFIX, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, LogSegment, RecoveryRules, SWAP_SUFFIX,
    TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX,
};

/// Kafka's topic-id file.
const PARTITION_METADATA: &str = "partition.metadata";

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
    let mut report = LoadReport::default();

    // 1. Sort out the directory.
    let mut bases = BTreeSet::new();
    let mut swaps = BTreeSet::new();
    let mut swap_indexes = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir).at(&dir)?.collect::<std::io::Result<Vec<_>>>().at(&dir)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().at(&path)?.is_dir() {
            report.quarantined.push(quarantine.move_aside(&path, &name, "a directory inside a partition directory")?);
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
            FileKind::Foreign(reason) => {
                report.quarantined.push(quarantine.move_aside(&path, &name, reason)?);
            }
        }
    }
    for (base, path) in swap_indexes {
        if !swaps.contains(&base) {
            // The clean crashed before its .log was renamed to .swap: not committed.
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    // Orphan indexes (their .log is gone) are derived data; drop them.
    for entry in std::fs::read_dir(&dir).at(&dir)? {
        let path = entry.at(&dir)?.path();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if classify(&file_name) == FileKind::Index {
            let stem_base = file_name[..20].parse::<i64>().unwrap_or(-1);
            if !bases.contains(&stem_base) && !swaps.contains(&stem_base) {
                std::fs::remove_file(&path).at(&path)?;
            }
        }
    }

    let leader_epoch_cache = match LeaderEpochCache::load(&dir) {
        Ok(cache) => cache,
        Err(e) => {
            let path = dir.join(LeaderEpochCache::FILE_NAME);
            report.quarantined.push(quarantine.move_aside(&path, &name, e.to_string())?);
            LeaderEpochCache::empty(&dir)
        }
    };
    let rules = RecoveryRules {
        gaps_allowed: config.compact(),
        contiguous_from: options.cleaner_checkpoint.unwrap_or(0),
        epochs: leader_epoch_cache.entries(),
    };
    // Cleaned (swap) segments may have gaps anywhere.
    let swap_rules = RecoveryRules { gaps_allowed: true, ..rules };

    // 2. Finish cleaner swaps: a .log.swap is a committed clean whose old segments may
    //    still be present.
    let mut segments: BTreeMap<i64, LogSegment> = BTreeMap::new();
    let max_batch = config.max_batch_bytes();
    for base in swaps {
        let (mut swap, _) = LogSegment::open(&dir, base, &config, SWAP_SUFFIX)?;
        if let Some(damage) = swap.recover(max_batch, &swap_rules)? {
            save_and_truncate(&quarantine, &name, &mut swap, damage.position, &damage.reason, &mut report)?;
        }
        let end = swap.next_offset().max(base + 1);
        let replaced: Vec<i64> = bases.range(base..end).copied().collect();
        for old in replaced {
            bases.remove(&old);
            let (old_segment, _) = LogSegment::open(&dir, old, &config, "")?;
            old_segment.delete()?;
        }
        swap.change_suffix("")?;
        swap.flush_indexes()?;
        tracing::info!(log = %name, base, "completed an interrupted cleaner swap");
        report.completed_swaps += 1;
        bases.remove(&base);
        segments.insert(base, swap);
    }
    if report.completed_swaps > 0 {
        sync_dir(&dir)?;
    }

    // 3. Open the remaining segments; decide which need recovery.
    let mut problems = BTreeMap::new();
    for base in bases {
        let (segment, problem) = LogSegment::open(&dir, base, &config, "")?;
        if let Some(p) = problem {
            problems.insert(base, p);
        }
        segments.insert(base, segment);
    }
    let recover_from = if options.had_clean_shutdown {
        i64::MAX
    } else {
        segments.range(..=options.recovery_point).next_back().map_or(i64::MIN, |(b, _)| *b)
    };
    let mut damaged_at: Option<i64> = None;
    let mut previous_next: Option<i64> = None;
    let all_bases: Vec<i64> = segments.keys().copied().collect();
    for base in &all_bases {
        if damaged_at.is_some() {
            break;
        }
        let Some(segment) = segments.get_mut(base) else {
            continue;
        };
        let overlap = previous_next.is_some_and(|p| *base < p);
        if *base >= recover_from || problems.contains_key(base) {
            if let Some(p) = problems.get(base) {
                tracing::warn!(log = %name, base, problem = %p, "segment needs recovery");
                // An index that exists but does not parse is set aside, not overwritten.
                if p.starts_with("offset index") || p.starts_with("time index") {
                    for ext in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                        let path = dir.join(format!("{}{ext}", super::segment::file_stem(*base)));
                        if path.exists() {
                            report.quarantined.push(quarantine.move_aside(
                                &path,
                                &name,
                                format!("index rebuilt: {p}"),
                            )?);
                        }
                    }
                }
            }
            report.recovered_segments += 1;
            if let Some(damage) = segment.recover(max_batch, &rules)? {
                save_and_truncate(&quarantine, &name, segment, damage.position, &damage.reason, &mut report)?;
                damaged_at = Some(*base);
            }
            segment.flush()?;
        }
        if overlap {
            damaged_at = Some(*base - 1);
            tracing::warn!(log = %name, base, "segment overlaps the previous one");
        }
        previous_next = Some(segment.next_offset());
    }
    if let Some(damaged) = damaged_at {
        let later: Vec<i64> = segments.range(damaged + 1..).map(|(b, _)| *b).collect();
        for base in later {
            let Some(segment) = segments.remove(&base) else {
                continue;
            };
            let reason = format!("follows damage in segment {}", super::segment::file_stem(damaged.max(0)));
            let log_path = segment.log_path();
            drop(segment);
            report.quarantined.push(quarantine.move_aside(&log_path, &name, reason)?);
            for ext in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
                let _ = std::fs::remove_file(dir.join(format!("{}{ext}", super::segment::file_stem(base))));
            }
        }
    }

    // 4. Offsets and epochs.
    let first_base = segments.keys().next().copied();
    let mut log_start_offset = options.log_start_offset.unwrap_or(0).max(first_base.unwrap_or(0));
    if segments.is_empty() {
        let segment = LogSegment::create(&dir, log_start_offset, &config, options.now_ms, "")?;
        segments.insert(log_start_offset, segment);
    }
    let mut log_end_offset = segments.values().next_back().map_or(log_start_offset, LogSegment::next_offset);
    let dir_for_state = dir.clone();
    let mut log = Log {
        dir,
        name,
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
        producer_state: ProducerStateManager::new(&dir_for_state),
        quarantine: quarantine.clone(),
        retired: Vec::new(),
        truncations: 0,
    };
    if log_start_offset > log_end_offset {
        // Every record is below the checkpointed start (deleted by DeleteRecords).
        log.truncate_fully_and_start_at(log_start_offset, options.now_ms)?;
        log_end_offset = log_start_offset;
    }
    log_start_offset = log.log_start_offset;
    log.leader_epoch_cache.truncate_from_end(log_end_offset)?;
    log.leader_epoch_cache.truncate_from_start(log_start_offset)?;
    log.cleaner_checkpoint =
        options.cleaner_checkpoint.unwrap_or(log_start_offset).clamp(log_start_offset, log_end_offset);
    rebuild_producer_state(&mut log, &quarantine, &mut report)?;
    Ok((log, report))
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

fn save_and_truncate(
    quarantine: &Quarantine,
    group: &str,
    segment: &mut LogSegment,
    position: u64,
    reason: &str,
    report: &mut LoadReport,
) -> Result<()> {
    let path = segment.log_path();
    let file_len = segment.file().metadata().at(&path)?.len();
    let tail_len = file_len.saturating_sub(position);
    let mut tail = vec![0u8; tail_len as usize];
    segment.file().read_exact_at(&mut tail, position).at(&path)?;
    let why = format!("damaged at byte {position}: {reason}");
    report.quarantined.push(quarantine.save_tail(&path, group, position, &tail, why)?);
    segment.truncate_at_position(position)?;
    report.truncated_bytes += tail_len;
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
