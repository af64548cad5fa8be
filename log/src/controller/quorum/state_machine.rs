//! The quorum's state machine: committed metadata records applied, in order, to the
//! [`ClusterImage`] that the active controller decides from and every broker serves.
//! A snapshot is the image itself; the newest is kept in `metadata-snapshot` so that a
//! restart (or openraft purging the log behind it) loses nothing.
//!
//! openraft builds snapshots in a task of their own while entries keep being applied, so
//! the image and the id of the last entry in it change together, under one lock, and a
//! snapshot never replaces a newer one.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{MetadataBatch, MetadataRaft};
use crate::controller::{ClusterImage, ImageError};
use crate::storage::checkpoint::write_atomically;

type NodeId = u64;

const SNAPSHOT_FILE: &str = "metadata-snapshot";

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: ClusterImage,
}

/// The image and what it is made of, changed together.
#[derive(Debug, Default)]
struct Applied {
    image: ClusterImage,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// The state machine; clones share it.
#[derive(Debug, Clone)]
pub struct MetadataStateMachine {
    dir: PathBuf,
    applied: Arc<RwLock<Applied>>,
    /// The newest snapshot; its lock also serialises writes of the snapshot file.
    snapshot: Arc<Mutex<Option<SnapshotFile>>>,
    committed: tokio::sync::watch::Sender<i64>,
}

fn sm_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl MetadataStateMachine {
    /// Opens the state machine in `dir`, starting from its last snapshot.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let mut applied = Applied { image: ClusterImage::new(), ..Applied::default() };
        let mut snapshot = None;
        match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                applied = Applied {
                    image: file.image.clone(),
                    last_applied: file.meta.last_log_id,
                    membership: file.meta.last_membership.clone(),
                };
                snapshot = Some(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (committed, _) = tokio::sync::watch::channel(applied.image.offset);
        Ok(Self {
            dir: dir.to_path_buf(),
            applied: Arc::new(RwLock::new(applied)),
            snapshot: Arc::new(Mutex::new(snapshot)),
            committed,
        })
    }

    /// A copy of the committed image.
    pub fn image(&self) -> ClusterImage {
        self.applied.read().image.clone()
    }

    /// Runs `f` on the committed image without copying it. `f` must not read the image
    /// again: the lock is fair, so a second read would queue behind a waiting writer that
    /// waits for the first.
    pub fn with_image<T>(&self, f: impl FnOnce(&ClusterImage) -> T) -> T {
        f(&self.applied.read().image)
    }

    /// Watches the offset of the last committed record.
    pub fn committed_offset(&self) -> tokio::sync::watch::Receiver<i64> {
        self.committed.subscribe()
    }

    fn apply_batch(image: &mut ClusterImage, batch: &MetadataBatch) -> Result<(), ImageError> {
        for record in &batch.records {
            let offset = image.offset + 1;
            image.apply(offset, record)?;
        }
        Ok(())
    }

    /// Keeps `file` as the newest snapshot, on disk first, unless a newer one is kept.
    fn keep_snapshot(&self, file: &SnapshotFile) -> std::io::Result<bool> {
        let mut kept = self.snapshot.lock();
        if kept.as_ref().is_some_and(|k| k.meta.last_log_id > file.meta.last_log_id) {
            return Ok(false);
        }
        let bytes = serde_json::to_vec(file)?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(std::io::Error::other)?;
        *kept = Some(file.clone());
        Ok(true)
    }
}

impl RaftSnapshotBuilder<MetadataRaft> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError<NodeId>> {
        let file = {
            let applied = self.applied.read();
            let snapshot_id = match applied.last_applied {
                Some(id) => format!("{}-{}", id.leader_id, id.index),
                None => "empty".to_owned(),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            SnapshotFile { meta, image: applied.image.clone() }
        };
        self.keep_snapshot(&file).map_err(snapshot_error)?;
        let bytes = serde_json::to_vec(&file).map_err(snapshot_error)?;
        Ok(Snapshot { meta: file.meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<MetadataRaft> for MetadataStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let applied = self.applied.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    /// Each entry's reply is the offset of the last record in the image after it.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<i64>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        let offset = {
            let mut applied = self.applied.write();
            for entry in entries {
                if applied.last_applied.is_some_and(|last| entry.log_id <= last) {
                    replies.push(applied.image.offset);
                    continue; // already in the image (from the snapshot it started with)
                }
                match &entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => Self::apply_batch(&mut applied.image, batch).map_err(sm_error)?,
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    }
                }
                applied.last_applied = Some(entry.log_id);
                replies.push(applied.image.offset);
            }
            applied.image.offset
        };
        self.committed.send_replace(offset);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut file: SnapshotFile = serde_json::from_slice(snapshot.get_ref()).map_err(snapshot_error)?;
        file.meta = meta.clone();
        tracing::info!(snapshot = %meta.snapshot_id, "installing a metadata snapshot from the leader");
        self.keep_snapshot(&file).map_err(snapshot_error)?;
        let offset = {
            let mut applied = self.applied.write();
            *applied = Applied {
                image: file.image,
                last_applied: file.meta.last_log_id,
                membership: file.meta.last_membership.clone(),
            };
            applied.image.offset
        };
        self.committed.send_replace(offset);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, StorageError<NodeId>> {
        let Some(file) = self.snapshot.lock().clone() else { return Ok(None) };
        let bytes = serde_json::to_vec(&file).map_err(snapshot_error)?;
        Ok(Some(Snapshot { meta: file.meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
