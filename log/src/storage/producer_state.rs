//! `ProducerStateManager`: idempotent-producer state for one partition, as in Kafka.
//!
//! For each producer id it remembers the epoch and the last [`MAX_BATCHES_PER_PRODUCER`]
//! batches (first and last sequence, offsets). An append from an idempotent producer is
//! checked against it before anything is written:
//!
//! - a batch already seen (same epoch and sequence range) is a **duplicate**: the caller
//!   acknowledges it with the original offsets and writes nothing;
//! - an older epoch is `INVALID_PRODUCER_EPOCH`;
//! - a new epoch must start at sequence 0; an unknown producer starting elsewhere is
//!   `UNKNOWN_PRODUCER_ID`;
//! - otherwise the first sequence must follow the last one (wrapping at `i32::MAX`), or the
//!   batch is `OUT_OF_ORDER_SEQUENCE_NUMBER`.
//!
//! The state survives restarts through `<offset>.snapshot` files written when a segment
//! rolls and at clean shutdown; loading takes the newest snapshot at or below the log end
//! and replays the batch headers after it.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use super::error::{IoContext, LogError, Result};
use crate::record::BatchHeader;

/// Batches remembered per producer (the producer's `max.in.flight.requests.per.connection` bound).
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// File extension of producer-state snapshots.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept besides the newest.
const OLD_SNAPSHOTS_KEPT: usize = 1;
const SNAPSHOT_VERSION: u16 = 1;

/// One batch a producer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// First sequence number.
    pub first_seq: i32,
    /// Last sequence number.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's max timestamp.
    pub timestamp: i64,
}

/// What the manager knows about one producer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    /// Current epoch.
    pub epoch: i16,
    /// The newest batches, oldest first.
    pub batches: VecDeque<BatchMetadata>,
}

/// The outcome of checking a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// Seen before: acknowledge with these offsets, append nothing.
    Duplicate(BatchMetadata),
}

/// Why a producer's batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The batch's epoch is older than the producer's current one.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch in the batch.
        epoch: i16,
        /// The producer's current epoch.
        current: i16,
    },
    /// The first sequence does not follow the last one.
    #[error("producer {producer_id} sent sequence {first_seq} but {expected} was expected")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// First sequence of the batch.
        first_seq: i32,
        /// The sequence that would have been in order.
        expected: i32,
    },
    /// An unknown producer (or new epoch) did not start at sequence 0.
    #[error("producer {producer_id} is unknown here and its batch starts at sequence {first_seq}, not 0")]
    UnknownProducerId {
        /// Producer id.
        producer_id: i64,
        /// First sequence of the batch.
        first_seq: i32,
    },
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

fn last_seq_of(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    if last > i64::from(i32::MAX) { (last - i64::from(i32::MAX) - 1) as i32 } else { last as i32 }
}

/// The idempotent-producer state of one partition.
#[derive(Debug, Default)]
pub struct ProducerStateManager {
    dir: PathBuf,
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// An empty manager for the partition in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), producers: BTreeMap::new() }
    }

    /// The state of one producer.
    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Number of producers tracked.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is tracked.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks a client batch (with a producer id) against the state, without changing it.
    pub fn check(&self, header: &BatchHeader) -> std::result::Result<SequenceCheck, SequenceError> {
        let producer_id = header.producer_id;
        let first_seq = header.base_sequence;
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::UnknownProducerId { producer_id, first_seq })
            };
        };
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id,
                epoch: header.producer_epoch,
                current: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrderSequence { producer_id, first_seq, expected: 0 })
            };
        }
        let last_seq = last_seq_of(header);
        if let Some(dup) = entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq) {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if first_seq != expected {
            return Err(SequenceError::OutOfOrderSequence { producer_id, first_seq, expected });
        }
        Ok(SequenceCheck::Append)
    }

    /// Checks `header` against this overlay if it knows the producer, else against `base`.
    pub(crate) fn check_with(
        &self,
        base: &Self,
        header: &BatchHeader,
    ) -> std::result::Result<SequenceCheck, SequenceError> {
        if self.producers.contains_key(&header.producer_id) { self.check(header) } else { base.check(header) }
    }

    /// Records `header` in this overlay (copying the producer from `base` first), with a
    /// placeholder offset: the overlay only answers sequence questions.
    pub(crate) fn stage(&mut self, base: &Self, header: &BatchHeader) {
        if let (false, Some(entry)) =
            (self.producers.contains_key(&header.producer_id), base.producers.get(&header.producer_id))
        {
            self.producers.insert(header.producer_id, entry.clone());
        }
        self.update(header, -1, -1);
    }

    /// Records a batch that was written at `first_offset`.
    pub fn update(&mut self, header: &BatchHeader, first_offset: i64, max_timestamp: i64) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if header.base_sequence < 0 {
            return; // transactional markers and unsequenced batches carry no sequence
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: last_seq_of(header),
            first_offset,
            last_offset: first_offset + i64::from(header.last_offset_delta),
            timestamp: max_timestamp,
        });
        while entry.batches.len() > MAX_BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers whose newest batch's timestamp is `expiration_ms` or more before
    /// `now_ms` (Kafka's `producer.id.expiration.ms`). Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.batches.back().is_none_or(|last| now_ms.saturating_sub(last.timestamp) < expiration_ms)
        });
        before - self.producers.len()
    }

    /// Forgets batches at or after `offset` (the log was truncated there); producers left
    /// with no batches are dropped.
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    fn snapshot_path(&self, offset: i64) -> PathBuf {
        self.dir.join(format!("{}{SNAPSHOT_SUFFIX}", super::segment::file_stem(offset)))
    }

    /// Offsets of the snapshot files present, ascending.
    pub fn snapshot_offsets(&self) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let name = entry.at(&self.dir)?.file_name().to_string_lossy().into_owned();
            if let Some(offset) = name.strip_suffix(SNAPSHOT_SUFFIX).and_then(|stem| stem.parse::<i64>().ok()) {
                out.push(offset);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Writes `<offset>.snapshot` atomically and prunes old snapshots.
    pub fn take_snapshot(&self, offset: i64) -> Result<()> {
        let mut body = Vec::new();
        body.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        body.extend_from_slice(&[0u8; 4]); // CRC32C of what follows, filled below
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, entry) in &self.producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.push(entry.batches.len() as u8);
            for b in &entry.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&body[6..]);
        body[2..6].copy_from_slice(&crc.to_be_bytes());
        super::checkpoint::write_atomically(&self.snapshot_path(offset), &body)?;
        let offsets = self.snapshot_offsets()?;
        let keep_from = offsets.len().saturating_sub(OLD_SNAPSHOTS_KEPT + 1);
        for old in &offsets[..keep_from] {
            let _ = std::fs::remove_file(self.snapshot_path(*old));
        }
        Ok(())
    }

    /// Loads the snapshot at `offset`. A damaged snapshot is an error naming the file.
    pub fn load_snapshot(&mut self, offset: i64) -> Result<()> {
        let path = self.snapshot_path(offset);
        let bytes = std::fs::read(&path).at(&path)?;
        let corrupt = |reason: &str| LogError::Corrupt { path: path.clone(), reason: reason.to_string() };
        if bytes.len() < 10 || u16::from_be_bytes([bytes[0], bytes[1]]) != SNAPSHOT_VERSION {
            return Err(corrupt("unknown producer snapshot version"));
        }
        if crc32c::crc32c(&bytes[6..]) != u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) {
            return Err(corrupt("producer snapshot CRC mismatch"));
        }
        let mut r = &bytes[6..];
        let mut take = |n: usize| -> Result<&[u8]> {
            if r.len() < n {
                return Err(corrupt("producer snapshot is truncated"));
            }
            let (head, tail) = r.split_at(n);
            r = tail;
            Ok(head)
        };
        let be64 = |b: &[u8]| i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let be32 = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let count = be32(take(4)?) as u32;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let pid = be64(take(8)?);
            let e = take(2)?;
            let epoch = i16::from_be_bytes([e[0], e[1]]);
            let n = take(1)?[0] as usize;
            let mut batches = VecDeque::with_capacity(n.min(MAX_BATCHES_PER_PRODUCER));
            for _ in 0..n {
                let b = take(32)?;
                batches.push_back(BatchMetadata {
                    first_seq: be32(&b[0..4]),
                    last_seq: be32(&b[4..8]),
                    first_offset: be64(&b[8..16]),
                    last_offset: be64(&b[16..24]),
                    timestamp: be64(&b[24..32]),
                });
            }
            producers.insert(pid, ProducerEntry { epoch, batches });
        }
        self.producers = producers;
        Ok(())
    }

    /// Deletes snapshots above `offset` (they describe data that no longer exists).
    pub fn delete_snapshots_after(&self, offset: i64) -> Result<()> {
        for s in self.snapshot_offsets()? {
            if s > offset {
                let path = self.snapshot_path(s);
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Compression, RecordBatch, RecordBatchBuilder};

    fn header(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        let mut b = RecordBatchBuilder::new(Compression::None).producer(pid, epoch, seq);
        for _ in 0..records {
            b.append(0, None, Some(b"v"), &[]);
        }
        *RecordBatch::parse(&b.build()).unwrap().0.header()
    }

    #[test]
    fn producers_expire_after_their_newest_batch_ages_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new(dir.path());
        s.update(&header(1, 0, 0, 1), 0, 1_000);
        s.update(&header(2, 0, 0, 1), 1, 1_000);
        s.update(&header(2, 0, 1, 1), 2, 5_000);
        assert_eq!(s.remove_expired(10_999, 10_000), 0);
        assert_eq!(s.remove_expired(11_000, 10_000), 1, "producer 1's last batch is 10 s old");
        assert!(s.producer(1).is_none() && s.producer(2).is_some());
        // An expired producer is unknown again: it must restart at sequence 0.
        assert_eq!(
            s.check(&header(1, 0, 1, 1)),
            Err(SequenceError::UnknownProducerId { producer_id: 1, first_seq: 1 })
        );
        assert_eq!(s.remove_expired(15_000, 10_000), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn sequences_duplicates_and_epochs_follow_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new(dir.path());
        assert_eq!(
            s.check(&header(7, 0, 3, 1)),
            Err(SequenceError::UnknownProducerId { producer_id: 7, first_seq: 3 })
        );
        let h = header(7, 0, 0, 3);
        assert_eq!(s.check(&h), Ok(SequenceCheck::Append));
        s.update(&h, 100, 1);
        // Retried batch: duplicate with the original offsets.
        match s.check(&header(7, 0, 0, 3)) {
            Ok(SequenceCheck::Duplicate(b)) => assert_eq!((b.first_offset, b.last_offset), (100, 102)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.check(&header(7, 0, 5, 1)),
            Err(SequenceError::OutOfOrderSequence { producer_id: 7, first_seq: 5, expected: 3 })
        );
        let h = header(7, 0, 3, 2);
        assert_eq!(s.check(&h), Ok(SequenceCheck::Append));
        s.update(&h, 103, 2);
        // A bumped epoch restarts at 0; the old epoch is fenced.
        assert!(matches!(s.check(&header(7, 1, 4, 1)), Err(SequenceError::OutOfOrderSequence { .. })));
        let h = header(7, 1, 0, 1);
        s.update(&h, 105, 3);
        assert_eq!(
            s.check(&header(7, 0, 5, 1)),
            Err(SequenceError::InvalidProducerEpoch { producer_id: 7, epoch: 0, current: 1 })
        );
        // Only the last five batches are remembered.
        for i in 1..=6 {
            s.update(&header(7, 1, i, 1), 105 + i64::from(i), 4);
        }
        assert_eq!(s.producer(7).unwrap().batches.len(), MAX_BATCHES_PER_PRODUCER);
        assert!(matches!(s.check(&header(7, 1, 1, 1)), Err(SequenceError::OutOfOrderSequence { .. })));
        assert!(matches!(s.check(&header(7, 1, 6, 1)), Ok(SequenceCheck::Duplicate(_))));
    }

    #[test]
    fn sequence_numbers_wrap_at_i32_max() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new(dir.path());
        s.update(&header(1, 0, i32::MAX - 1, 3), 0, 0);
        assert_eq!(s.producer(1).unwrap().batches[0].last_seq, 0);
        assert_eq!(s.check(&header(1, 0, 1, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerStateManager::new(dir.path());
        s.update(&header(1, 2, 0, 3), 0, 10);
        s.update(&header(9, 0, 0, 1), 3, 11);
        for offset in [4, 8, 12] {
            s.take_snapshot(offset).unwrap();
        }
        assert_eq!(s.snapshot_offsets().unwrap(), [8, 12], "old snapshots are pruned");
        let mut loaded = ProducerStateManager::new(dir.path());
        loaded.load_snapshot(12).unwrap();
        assert_eq!(loaded.producers, s.producers);
        let path = dir.path().join("00000000000000000012.snapshot");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(loaded.load_snapshot(12).unwrap_err().to_string().contains("CRC"));
        s.delete_snapshots_after(8).unwrap();
        assert_eq!(s.snapshot_offsets().unwrap(), [8]);
    }
}
