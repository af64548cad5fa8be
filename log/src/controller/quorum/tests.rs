//! The log store and state machine against openraft's own storage test suite, and the log
//! file's recovery from a torn tail.

use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, LogId, RaftLogReader, StorageError};

use super::*;

struct Builder;

impl StoreBuilder<MetadataRaft, MetadataLogStore, MetadataStateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, MetadataLogStore, MetadataStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = MetadataLogStore::open(dir.path()).expect("a new log");
        let sm = MetadataStateMachine::open(dir.path()).expect("a new state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn the_stores_pass_openraft_s_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn entry(index: u64) -> Entry<MetadataRaft> {
    let record = MetadataRecord::RemoveTopic { topic_id: uuid::Uuid::from_u128(index as u128) };
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(MetadataBatch { records: vec![record] }),
    }
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_the_rest_survives() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = MetadataLogStore::open(dir.path()).unwrap();
        for i in 0..5 {
            openraft::storage::RaftLogStorageExt::blocking_append(&mut log, [entry(i)]).await.unwrap();
        }
    }
    let path = dir.path().join("raft-log");
    let mut bytes = std::fs::read(&path).unwrap();
    let intact = bytes.len();
    bytes.extend_from_slice(&[0, 0, 0, 200, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();

    let mut log = MetadataLogStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, intact);
    let entries = log.try_get_log_entries(0..10).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
    let locked = MetadataLogStore::open(dir.path()).unwrap_err().to_string();
    assert!(locked.contains("another process"), "one process at a time: {locked}");
    drop(log);

    // A flipped bit in an earlier frame is corruption, not a torn tail: the voter refuses
    // to start rather than forget entries it acknowledged.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = MetadataLogStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("byte 0") && err.contains("damaged"), "{err}");
}
