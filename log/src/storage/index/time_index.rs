//! The `.timeindex` file: the largest timestamp seen so far → the offset where it was first
//! seen. Entries are only added when the timestamp grows, so both columns increase.

use std::path::PathBuf;

use super::file::{IndexEntry, IndexFile};
use crate::storage::error::Result;

/// A timestamp and the offset of the record that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// Absolute offset.
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    timestamp: i64,
    relative_offset: u32,
}

impl IndexEntry for Entry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        Self { timestamp: i64::from_be_bytes(ts), relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]) }
    }
}

/// A segment's time index.
#[derive(Debug)]
pub struct TimeIndex {
    base_offset: i64,
    file: IndexFile<Entry>,
}

impl TimeIndex {
    /// An empty index for a new segment.
    pub fn empty(path: PathBuf, base_offset: i64, max_bytes: u64) -> Self {
        Self { base_offset, file: IndexFile::empty(path, max_bytes) }
    }

    /// Loads an existing index file, or `None` if there is none.
    pub fn load(path: PathBuf, base_offset: i64, max_bytes: u64) -> Result<Option<Self>> {
        Ok(IndexFile::load(path, max_bytes)?.map(|file| Self { base_offset, file }))
    }

    /// Checks that both columns increase.
    pub fn sanity_check(&self) -> std::result::Result<(), String> {
        for (i, pair) in self.file.entries.windows(2).enumerate() {
            if pair[1].timestamp <= pair[0].timestamp || pair[1].relative_offset < pair[0].relative_offset {
                return Err(format!("entry {} does not increase: {:?} after {:?}", i + 1, pair[1], pair[0]));
            }
        }
        Ok(())
    }

    /// Adds an entry if `timestamp` is larger than the last one.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let relative = offset - self.base_offset;
        debug_assert!((0..=i64::from(u32::MAX)).contains(&relative));
        if let Some(last) = self.file.entries.last() {
            if timestamp <= last.timestamp {
                return;
            }
            debug_assert!(relative as u32 >= last.relative_offset);
        }
        self.file.push(Entry { timestamp, relative_offset: relative as u32 });
    }

    /// The entry with the largest timestamp ≤ `target`; every record before its offset has
    /// a smaller timestamp. `None` if even the first entry is newer.
    pub fn lookup(&self, target: i64) -> Option<TimestampOffset> {
        let entries = &self.file.entries;
        let idx = entries.partition_point(|e| e.timestamp <= target);
        idx.checked_sub(1).map(|i| self.to_public(entries[i]))
    }

    /// The last entry: the segment's largest timestamp once the segment is closed.
    pub fn last_entry(&self) -> Option<TimestampOffset> {
        self.file.entries.last().map(|e| self.to_public(*e))
    }

    fn to_public(&self, e: Entry) -> TimestampOffset {
        TimestampOffset { timestamp: e.timestamp, offset: self.base_offset + i64::from(e.relative_offset) }
    }

    /// Removes entries for offsets ≥ `offset`.
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self.file.entries.partition_point(|e| self.base_offset + i64::from(e.relative_offset) < offset);
        self.file.truncate(keep);
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.file.truncate(0);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.file.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
    }

    /// Whether `segment.index.bytes` is reached.
    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Persists and fsyncs new entries.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush()
    }

    pub(crate) fn rename(&mut self, to: PathBuf) -> Result<()> {
        self.file.rename(to)
    }

    pub(crate) fn delete(&self) -> Result<()> {
        self.file.delete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lookup_matches_a_linear_scan(
            stamps in proptest::collection::vec(0i64..10_000, 0..300),
            probe in -10i64..10_010,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut index = TimeIndex::empty(dir.path().join("x.timeindex"), 50, 1 << 20);
            let mut model: Vec<(i64, i64)> = Vec::new();
            for (i, ts) in stamps.into_iter().enumerate() {
                index.maybe_append(ts, 50 + i as i64);
                if model.last().is_none_or(|(last, _)| ts > *last) {
                    model.push((ts, 50 + i as i64));
                }
            }
            let expected = model.iter().rev().find(|(ts, _)| *ts <= probe).map(|&(timestamp, offset)| TimestampOffset { timestamp, offset });
            prop_assert_eq!(index.lookup(probe), expected);
            prop_assert!(index.sanity_check().is_ok());
        }
    }
}
