//! The `.index` file: sparse relative offset → byte position in the segment's `.log`.

use std::path::PathBuf;

use super::file::{IndexEntry, IndexFile};
use crate::storage::error::Result;

/// An offset and the file position of the batch that contains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    /// Absolute offset.
    pub offset: i64,
    /// Byte position in the `.log` file.
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    relative_offset: u32,
    position: u32,
}

impl IndexEntry for Entry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// A segment's offset index.
#[derive(Debug)]
pub struct OffsetIndex {
    base_offset: i64,
    file: IndexFile<Entry>,
}

impl OffsetIndex {
    /// An empty index for a new segment.
    pub fn empty(path: PathBuf, base_offset: i64, max_bytes: u64) -> Self {
        Self { base_offset, file: IndexFile::empty(path, max_bytes) }
    }

    /// Loads an existing index file, or `None` if there is none.
    pub fn load(path: PathBuf, base_offset: i64, max_bytes: u64) -> Result<Option<Self>> {
        Ok(IndexFile::load(path, max_bytes)?.map(|file| Self { base_offset, file }))
    }

    /// Checks that entries strictly increase in both offset and position and point inside
    /// a log of `log_size` bytes. A failing index is rebuilt from the log.
    pub fn sanity_check(&self, log_size: u64) -> std::result::Result<(), String> {
        let mut prev: Option<Entry> = None;
        for (i, e) in self.file.entries.iter().enumerate() {
            if u64::from(e.position) >= log_size.max(1) {
                return Err(format!("entry {i} points at byte {} past the log's {log_size} bytes", e.position));
            }
            if let Some(p) = prev
                && (e.relative_offset <= p.relative_offset || e.position <= p.position)
            {
                return Err(format!("entry {i} does not increase: {e:?} after {p:?}"));
            }
            prev = Some(*e);
        }
        Ok(())
    }

    /// The largest indexed offset ≤ `target` and its position; the segment start if none.
    pub fn lookup(&self, target: i64) -> OffsetPosition {
        let entries = &self.file.entries;
        let idx = entries.partition_point(|e| self.base_offset + i64::from(e.relative_offset) <= target);
        match idx.checked_sub(1).map(|i| entries[i]) {
            Some(e) => OffsetPosition { offset: self.base_offset + i64::from(e.relative_offset), position: e.position },
            None => OffsetPosition { offset: self.base_offset, position: 0 },
        }
    }

    /// The last entry whose position is ≤ `position`.
    pub fn lookup_position_at_most(&self, position: u64) -> Option<OffsetPosition> {
        let entries = &self.file.entries;
        let idx = entries.partition_point(|e| u64::from(e.position) <= position);
        idx.checked_sub(1).map(|i| OffsetPosition {
            offset: self.base_offset + i64::from(entries[i].relative_offset),
            position: entries[i].position,
        })
    }

    /// Appends an entry. Offsets and positions must increase.
    pub fn append(&mut self, offset: i64, position: u32) {
        let relative = offset - self.base_offset;
        assert!((0..=i64::from(u32::MAX)).contains(&relative), "offset {offset} outside the segment");
        if let Some(last) = self.file.entries.last() {
            assert!(
                relative as u32 > last.relative_offset && position > last.position,
                "offset index must grow: ({offset}, {position}) after {last:?}"
            );
        }
        self.file.push(Entry { relative_offset: relative as u32, position });
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

    /// The last entry.
    pub fn last_entry(&self) -> Option<OffsetPosition> {
        self.file
            .entries
            .last()
            .map(|e| OffsetPosition { offset: self.base_offset + i64::from(e.relative_offset), position: e.position })
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

    /// The file path.
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lookup_finds_the_greatest_entry_at_or_below(
            gaps in proptest::collection::vec((1u32..100, 1u32..5000), 0..300),
            probes in proptest::collection::vec(0i64..40_000, 1..50),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let base = 1000;
            let mut index = OffsetIndex::empty(dir.path().join("x.index"), base, 1 << 20);
            let mut model = Vec::new();
            let (mut off, mut pos) = (base, 0u32);
            for (g_off, g_pos) in gaps {
                off += i64::from(g_off);
                pos += g_pos;
                index.append(off, pos);
                model.push((off, pos));
            }
            for probe in probes {
                let target = base + probe - 100;
                let expected = model.iter().rev().find(|(o, _)| *o <= target).copied().unwrap_or((base, 0));
                let got = index.lookup(target);
                prop_assert_eq!((got.offset, got.position), expected);
            }
            // Persisted and reloaded, the index answers the same.
            index.flush().unwrap();
            let reloaded = OffsetIndex::load(dir.path().join("x.index"), base, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(reloaded.len(), model.len());
            prop_assert!(reloaded.sanity_check(u64::from(pos) + 1).is_ok());
        }

        #[test]
        fn truncation_keeps_exactly_the_entries_below(n in 0usize..100, cut in 0i64..120) {
            let dir = tempfile::tempdir().unwrap();
            let mut index = OffsetIndex::empty(dir.path().join("x.index"), 0, 1 << 20);
            for i in 0..n {
                index.append(i as i64 + 1, (i as u32 + 1) * 10);
            }
            index.flush().unwrap();
            index.truncate_to(cut);
            prop_assert_eq!(index.len() as i64, (cut - 1).clamp(0, n as i64));
            index.flush().unwrap();
            let reloaded = OffsetIndex::load(dir.path().join("x.index"), 0, 1 << 20).unwrap().unwrap();
            prop_assert_eq!(reloaded.len(), index.len());
        }
    }

    #[test]
    fn a_shuffled_index_fails_its_sanity_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0, 0, 0, 5, 0, 0, 0, 50, 0, 0, 0, 2, 0, 0, 0, 60]).unwrap();
        let index = OffsetIndex::load(path, 0, 1 << 20).unwrap().unwrap();
        assert!(index.sanity_check(100).unwrap_err().contains("entry 1"));
    }
}
