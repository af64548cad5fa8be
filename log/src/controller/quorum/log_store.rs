//! The quorum's Raft log on disk: `raft-log` holds entries as frames of
//! `[length u32][crc32c u32][entry]`, appended and fsynced before openraft is told they are
//! durable; `raft-vote` and `raft-purged` are replaced atomically. A frame torn by a crash
//! is cut off when the log is opened: Raft acknowledged nothing past the last fsync.
//!
//! Every entry also stays in memory (metadata is small, and snapshots let openraft purge
//! what they cover); the file is rewritten without purged entries once they make up most
//! of it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;

use super::MetadataRaft;
use crate::storage::checkpoint::write_atomically;

const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "raft-vote";
const PURGED_FILE: &str = "raft-purged";
/// Held while the log is open, so two processes never append to it.
const LOCK_FILE: &str = ".lock";
/// The largest frame accepted when reading the log back.
const MAX_FRAME_BYTES: usize = 64 << 20;

type NodeId = u64;

/// Entry index → (entry, position of its frame in the file).
type EntryIndex = BTreeMap<u64, (Entry<MetadataRaft>, u64)>;

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    file: File,
    entries: EntryIndex,
    end_position: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    _lock: File,
}

/// The Raft log store; clones share one log.
#[derive(Debug, Clone)]
pub struct MetadataLogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    write_atomically(path, &bytes).map_err(std::io::Error::other)
}

fn frame(entry: &Entry<MetadataRaft>) -> serde_json::Result<Vec<u8>> {
    let body = serde_json::to_vec(entry)?;
    let mut framed = Vec::with_capacity(body.len() + 8);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    framed.extend_from_slice(&body);
    Ok(framed)
}

/// Reads frames from the start; returns the entries and where the intact part ends. Only
/// the last frame may be damaged (torn by a crash before its fsync finished, so never
/// acknowledged); damage before other frames is corruption, and an error naming the byte.
fn read_frames(file: &mut File) -> std::io::Result<(EntryIndex, u64)> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let mut entries = BTreeMap::new();
    let mut pos = 0usize;
    while pos + 8 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]) as usize;
        let crc = u32::from_be_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
        let end = pos + 8 + len;
        let body = bytes.get(pos + 8..end).filter(|_| len <= MAX_FRAME_BYTES);
        let entry = body
            .filter(|b| crc32c::crc32c(b) == crc)
            .and_then(|b| serde_json::from_slice::<Entry<MetadataRaft>>(b).ok());
        match entry {
            Some(entry) => {
                entries.insert(entry.log_id.index, (entry, pos as u64));
                pos = end;
            }
            None if end >= bytes.len() => break,
            None => {
                let reason = format!("the frame at byte {pos} is damaged and more frames follow it");
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, reason));
            }
        }
    }
    Ok((entries, pos as u64))
}

impl MetadataLogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE))?;
        if lock.try_lock().is_err() {
            let reason = "the metadata log is open in another process (or another broker in this one)";
            return Err(std::io::Error::new(std::io::ErrorKind::ResourceBusy, reason));
        }
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let (entries, end_position) = read_frames(&mut file)?;
        let length = file.metadata()?.len();
        if length > end_position {
            tracing::warn!(path = %path.display(), kept = end_position, length, "cutting a torn tail off the metadata log");
            file.set_len(end_position)?;
            file.sync_all()?;
        }
        let last_purged: Option<LogId<NodeId>> = read_json(&dir.join(PURGED_FILE))?;
        let mut entries = entries;
        // A purge is recorded before the file is compacted: entries it covers may remain.
        entries.retain(|index, _| last_purged.is_none_or(|p| *index > p.index));
        let inner = Inner {
            dir: dir.to_path_buf(),
            file,
            entries,
            end_position,
            last_purged,
            vote: read_json(&dir.join(VOTE_FILE))?,
            _lock: lock,
        };
        Ok(Self { inner: Arc::new(Mutex::new(inner)) })
    }

    /// Rewrites the file with only the entries still held.
    fn compact(inner: &mut Inner) -> std::io::Result<()> {
        let mut body = Vec::new();
        let mut entries = BTreeMap::new();
        for (index, (entry, _)) in &inner.entries {
            let position = body.len() as u64;
            body.extend_from_slice(&frame(entry)?);
            entries.insert(*index, (entry.clone(), position));
        }
        let path = inner.dir.join(LOG_FILE);
        write_atomically(&path, &body).map_err(std::io::Error::other)?;
        inner.file = OpenOptions::new().read(true).write(true).open(&path)?;
        inner.entries = entries;
        inner.end_position = body.len() as u64;
        Ok(())
    }
}

impl RaftLogReader<MetadataRaft> for MetadataLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<MetadataRaft>>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        Ok(inner.entries.range(range).map(|(_, (e, _))| e.clone()).collect())
    }
}

impl RaftLogStorage<MetadataRaft> for MetadataLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        let last = inner.entries.values().next_back().map(|(e, _)| e.log_id).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        write_json(&inner.dir.join(VOTE_FILE), vote).map_err(io_error)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<MetadataRaft>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + Send,
        I::IntoIter: Send,
    {
        let mut inner = self.inner.lock();
        let mut bytes = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let position = inner.end_position + bytes.len() as u64;
            bytes.extend_from_slice(&frame(&entry).map_err(io_error)?);
            added.push((entry, position));
        }
        let end = inner.end_position;
        let written = inner
            .file
            .seek(SeekFrom::Start(end))
            .and_then(|_| inner.file.write_all(&bytes))
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = written {
            callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(io_error(e));
        }
        inner.end_position += bytes.len() as u64;
        for (entry, position) in added {
            inner.entries.insert(entry.log_id.index, (entry, position));
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        let Some(position) = inner.entries.get(&log_id.index).map(|(_, p)| *p) else { return Ok(()) };
        inner.file.set_len(position).and_then(|()| inner.file.sync_all()).map_err(io_error)?;
        inner.end_position = position;
        inner.entries.retain(|index, _| *index < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        write_json(&inner.dir.join(PURGED_FILE), &log_id).map_err(io_error)?;
        inner.last_purged = Some(log_id);
        inner.entries.retain(|index, _| *index > log_id.index);
        let live_bytes = inner.end_position - inner.entries.values().next().map_or(inner.end_position, |(_, p)| *p);
        if live_bytes * 2 < inner.end_position {
            Self::compact(&mut inner).map_err(io_error)?;
        }
        Ok(())
    }
}
