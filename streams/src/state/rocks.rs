//! The persistent key-value store on RocksDB, one database per task store under
//! `state.dir/<application.id>/<task>/rocksdb/<store>`, as Kafka Streams lays it out.
//!
//! As in Kafka Streams, RocksDB's write-ahead log is off: the changelog topic is what makes
//! writes durable. At each commit the memtables are flushed to disk before the checkpoint
//! file records the changelog offset they reach, so after a crash the store holds at least
//! what the checkpoint says and restoring from there replays idempotent writes.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions};

use super::{BytesStore, KeyValueBytes};
use crate::error::{Result, StreamsError};

pub(crate) struct RocksDbStore {
    name: String,
    path: PathBuf,
    db: DB,
    write_options: WriteOptions,
}

impl std::fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStore").field("name", &self.name).field("path", &self.path).finish()
    }
}

/// RocksDB keeps one lock per database and process; opening a database this process has
/// open already fails with an IO error that says whose lock it is.
fn held_by_this_process(e: &rocksdb::Error) -> bool {
    e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("lock hold by current process")
}

fn options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Kafka Streams' defaults: a 16 MiB memtable, three of them.
    options.set_write_buffer_size(16 << 20);
    options.set_max_write_buffer_number(3);
    options
}

impl RocksDbStore {
    pub fn open(name: &str, path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| StreamsError::state_dir(path, e))?;
        let db = DB::open(&options(), path).map_err(|e| {
            if held_by_this_process(&e) {
                StreamsError::StoreLocked { store: name.to_string(), path: path.to_path_buf() }
            } else {
                StreamsError::store(name, format!("opening RocksDB at {}: {e}", path.display()))
            }
        })?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksDbStore { name: name.to_string(), path: path.to_path_buf(), db, write_options })
    }

    fn error(&self, what: &str, e: rocksdb::Error) -> StreamsError {
        StreamsError::store(&self.name, format!("{what} in {}: {e}", self.path.display()))
    }
}

impl BytesStore for RocksDbStore {
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        let value = self.db.get_pinned(key).map_err(|e| self.error("get", e))?;
        f(value.as_deref());
        Ok(())
    }

    fn write(&mut self, batch: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()> {
        let mut writes = WriteBatch::default();
        for (key, value) in batch {
            match value {
                Some(v) => writes.put(key, v),
                None => writes.delete(key),
            }
        }
        self.db.write_opt(writes, &self.write_options).map_err(|e| self.error("write", e))
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValueBytes>> {
        let mut read = ReadOptions::default();
        if let Bound::Excluded(to) = to {
            read.set_iterate_upper_bound(to.to_vec());
        }
        let mode = match from {
            Bound::Included(k) | Bound::Excluded(k) => IteratorMode::From(k, Direction::Forward),
            Bound::Unbounded => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_opt(mode, read) {
            let (key, value) = item.map_err(|e| self.error("range", e))?;
            if let Bound::Excluded(k) = from
                && &*key == k
            {
                continue;
            }
            if let Bound::Included(to) = to
                && &*key > to
            {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn approximate_num_entries(&self) -> u64 {
        self.db.property_int_value("rocksdb.estimate-num-keys").ok().flatten().unwrap_or(0)
    }

    fn flush(&mut self) -> Result<()> {
        self.db.flush().map_err(|e| self.error("flush", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_open_in_this_process_is_reported_as_locked_until_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rocksdb").join("counts");
        let first = RocksDbStore::open("counts", &path).unwrap();
        let e = RocksDbStore::open("counts", &path).unwrap_err();
        assert!(matches!(&e, StreamsError::StoreLocked { store, path: p } if store == "counts" && *p == path), "{e}");
        assert!(e.to_string().contains("still open"), "{e}");
        drop(first);
        RocksDbStore::open("counts", &path).unwrap();
    }

    #[test]
    fn other_open_failures_are_not_taken_for_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the database directory should be.
        let path = dir.path().join("counts");
        std::fs::write(&path, b"not a directory").unwrap();
        let e = RocksDbStore::open("counts", &path).unwrap_err();
        assert!(!matches!(e, StreamsError::StoreLocked { .. }), "{e}");
    }
}
