//! The leader-epoch cache: for each leader epoch, the first offset written in it (KIP-101).
//! Replication uses it to answer OffsetForLeaderEpoch and to truncate divergent followers.
//! It lives in each partition's `leader-epoch-checkpoint` file.

use std::path::{Path, PathBuf};

use super::checkpoint::{read_lines, write_lines};
use super::error::{LogError, Result};

/// No epoch known (Kafka's UNDEFINED_EPOCH).
pub const UNDEFINED_EPOCH: i32 = -1;
/// No offset known (Kafka's UNDEFINED_EPOCH_OFFSET).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One epoch and the offset its leader started writing at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// Leader epoch.
    pub epoch: i32,
    /// First offset of that epoch.
    pub start_offset: i64,
}

/// The epoch history alone, without a file: what the cache answers, and what a replica
/// state machine consults without touching disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<EpochEntry>,
}

impl EpochHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. Entries that conflict (an epoch not
    /// older, or a start offset not earlier) are replaced, as in Kafka. Returns whether
    /// anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.entries.last()
            && last.epoch == epoch
            && last.start_offset <= start_offset
        {
            return false;
        }
        self.entries.retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// The end offset of `requested` epoch given the log end offset: the start offset of
    /// the next higher epoch, or the log end if `requested` is the latest. Returns the
    /// largest known epoch ≤ `requested` with it. An epoch older than every known one
    /// answers itself with the first known start offset, as Kafka does: nothing of it can
    /// lie beyond that. Undefined when no epoch is known at all.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        match self.entries.last() {
            None => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
            Some(_) if requested < 0 => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
            Some(last) if requested == last.epoch => (last.epoch, log_end_offset),
            Some(_) => {
                let higher = self.entries.partition_point(|e| e.epoch <= requested);
                if higher == 0 {
                    return (requested, self.entries[0].start_offset);
                }
                let epoch = self.entries[higher - 1].epoch;
                match self.entries.get(higher) {
                    Some(next) => (epoch, next.start_offset),
                    None => (epoch, log_end_offset),
                }
            }
        }
    }

    /// Drops epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Drops epochs wholly before `start_offset` (the log start moved there). The epoch
    /// that covers `start_offset` now starts there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if covering == 0 {
            return false;
        }
        let changed = covering > 1 || self.entries[0].start_offset != start_offset;
        self.entries.drain(..covering - 1);
        self.entries[0].start_offset = start_offset;
        changed
    }
}

/// The in-memory [`EpochHistory`], mirrored to its checkpoint file on every change.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    history: EpochHistory,
}

impl LeaderEpochCache {
    /// The checkpoint file name inside a partition directory.
    pub const FILE_NAME: &'static str = "leader-epoch-checkpoint";

    /// Loads the cache from `dir`. A damaged file is an error naming the line.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(Self::FILE_NAME);
        let mut entries: Vec<EpochEntry> = Vec::new();
        for (i, line) in read_lines(&path)?.unwrap_or_default().iter().enumerate() {
            let mut fields = line.split_whitespace();
            let parsed = fields.next().and_then(|e| e.parse().ok()).zip(fields.next().and_then(|o| o.parse().ok()));
            let Some((epoch, start_offset)) = parsed.filter(|_| fields.next().is_none()) else {
                return Err(LogError::Corrupt { path, reason: format!("line {}: expected 'epoch offset'", i + 3) });
            };
            if entries.last().is_some_and(|l| epoch <= l.epoch || start_offset < l.start_offset) {
                return Err(LogError::Corrupt { path, reason: format!("line {}: epochs must increase", i + 3) });
            }
            entries.push(EpochEntry { epoch, start_offset });
        }
        Ok(Self { path, history: EpochHistory { entries } })
    }

    /// An empty cache for `dir` (used after a damaged checkpoint was moved aside).
    pub fn empty(dir: &Path) -> Self {
        Self { path: dir.join(Self::FILE_NAME), history: EpochHistory::new() }
    }

    /// The history, for lookups.
    pub fn history(&self) -> &EpochHistory {
        &self.history
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        self.history.entries()
    }

    /// The newest epoch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.history.latest_epoch()
    }

    /// [`EpochHistory::assign`], written through.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if self.history.assign(epoch, start_offset) { self.flush() } else { Ok(()) }
    }

    /// [`EpochHistory::end_offset_for`].
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        self.history.end_offset_for(requested, log_end_offset)
    }

    /// [`EpochHistory::truncate_from_end`], written through.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        if self.history.truncate_from_end(end_offset) { self.flush() } else { Ok(()) }
    }

    /// [`EpochHistory::truncate_from_start`], written through.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        if self.history.truncate_from_start(start_offset) { self.flush() } else { Ok(()) }
    }

    /// Writes the checkpoint file.
    pub fn flush(&self) -> Result<()> {
        let lines: Vec<String> =
            self.history.entries.iter().map(|e| format!("{} {}", e.epoch, e.start_offset)).collect();
        write_lines(&self.path, &lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_answer_end_offsets_like_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        cache.assign(2, 10).unwrap();
        cache.assign(4, 25).unwrap();
        cache.assign(4, 30).unwrap(); // same epoch, later offset: ignored
        assert_eq!(cache.end_offset_for(4, 40), (4, 40));
        assert_eq!(cache.end_offset_for(3, 40), (2, 25));
        assert_eq!(cache.end_offset_for(2, 40), (2, 25));
        assert_eq!(cache.end_offset_for(1, 40), (1, 10));
        assert_eq!(cache.end_offset_for(UNDEFINED_EPOCH, 40), (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
        assert_eq!(cache.end_offset_for(9, 40), (4, 40));

        let reloaded = LeaderEpochCache::load(dir.path()).unwrap();
        assert_eq!(reloaded.entries(), cache.entries());

        cache.truncate_from_end(25).unwrap();
        assert_eq!(cache.entries(), [EpochEntry { epoch: 2, start_offset: 10 }]);
        cache.assign(5, 30).unwrap();
        cache.truncate_from_start(31).unwrap();
        assert_eq!(cache.entries(), [EpochEntry { epoch: 5, start_offset: 31 }]);
    }

    #[test]
    fn a_new_epoch_at_an_earlier_offset_replaces_conflicting_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path()).unwrap();
        cache.assign(1, 0).unwrap();
        cache.assign(2, 50).unwrap();
        cache.assign(3, 40).unwrap();
        assert_eq!(
            cache.entries(),
            [EpochEntry { epoch: 1, start_offset: 0 }, EpochEntry { epoch: 3, start_offset: 40 }]
        );
    }

    #[test]
    fn damage_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LeaderEpochCache::FILE_NAME), "0\n2\n1 0\n0 5\n").unwrap();
        let err = LeaderEpochCache::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
    }
}
