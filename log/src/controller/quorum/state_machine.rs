//! The quorum's state machine: committed metadata records applied, in order, to the
//! [`ClusterImage`] that the active controller decides from and every broker serves.
//! A snapshot is the image itself; the newest is kept in `metadata-snapshot` so that a
//! restart (or openraft purging the log behind it) loses nothing.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{MetadataBatch, MetadataRaft};
use crate::controller::ClusterImage;
use crate::storage::checkpoint::write_atomically;

type NodeId = u64;

const SNAPSHOT_FILE: &str = "metadata-snapshot";

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: ClusterImage,
}

#[derive(Debug, Default)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<SnapshotFile>,
}

/// The state machine; clones share it.
#[derive(Debug, Clone)]
pub struct MetadataStateMachine {
    dir: PathBuf,
    image: Arc<RwLock<ClusterImage>>,
    applied: Arc<RwLock<Applied>>,
    committed: tokio::sync::watch::Sender<i64>,
}

fn read_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

impl MetadataStateMachine {
    /// Opens the state machine in `dir`, starting from its last snapshot.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let mut applied = Applied::default();
        let mut image = ClusterImage::new();
        match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                let snapshot: SnapshotFile = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                image = snapshot.image.clone();
                applied.last_applied = snapshot.meta.last_log_id;
                applied.membership = snapshot.meta.last_membership.clone();
                applied.snapshot = Some(snapshot);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (committed, _) = tokio::sync::watch::channel(image.offset);
        Ok(Self {
            dir: dir.to_path_buf(),
            image: Arc::new(RwLock::new(image)),
            applied: Arc::new(RwLock::new(applied)),
            committed,
        })
    }

    /// The committed image.
    pub fn image(&self) -> Arc<RwLock<ClusterImage>> {
        Arc::clone(&self.image)
    }

    /// Watches the offset of the last committed record.
    pub fn committed_offset(&self) -> tokio::sync::watch::Receiver<i64> {
        self.committed.subscribe()
    }

    fn apply_batch(&self, batch: &MetadataBatch) -> Result<(), crate::controller::ImageError> {
        let mut image = self.image.write();
        for record in &batch.records {
            let offset = image.offset + 1;
            image.apply(offset, record)?;
        }
        Ok(())
    }

    fn install(&self, file: SnapshotFile) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&file)?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(std::io::Error::other)?;
        *self.image.write() = file.image.clone();
        let mut applied = self.applied.write();
        applied.last_applied = file.meta.last_log_id;
        applied.membership = file.meta.last_membership.clone();
        applied.snapshot = Some(file);
        drop(applied);
        self.committed.send_replace(self.image.read().offset);
        Ok(())
    }
}

impl RaftSnapshotBuilder<MetadataRaft> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError<NodeId>> {
        let (image, last_applied, membership) = {
            let applied = self.applied.read();
            (self.image.read().clone(), applied.last_applied, applied.membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}", id.leader_id, id.index),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        let file = SnapshotFile { meta: meta.clone(), image };
        let bytes = serde_json::to_vec(&file).map_err(read_error)?;
        write_atomically(&self.dir.join(SNAPSHOT_FILE), &bytes).map_err(read_error)?;
        self.applied.write().snapshot = Some(file);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
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

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<MetadataRaft>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        for entry in entries {
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => self.apply_batch(batch).map_err(read_error)?,
                EntryPayload::Membership(m) => {
                    self.applied.write().membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            self.applied.write().last_applied = Some(entry.log_id);
            replies.push(());
        }
        self.committed.send_replace(self.image.read().offset);
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
        let mut file: SnapshotFile = serde_json::from_slice(snapshot.get_ref()).map_err(read_error)?;
        file.meta = meta.clone();
        tracing::info!(snapshot = %meta.snapshot_id, "installing a metadata snapshot from the leader");
        self.install(file).map_err(read_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetadataRaft>>, StorageError<NodeId>> {
        let Some(file) = self.applied.read().snapshot.clone() else { return Ok(None) };
        let bytes = serde_json::to_vec(&file).map_err(read_error)?;
        Ok(Some(Snapshot { meta: file.meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
