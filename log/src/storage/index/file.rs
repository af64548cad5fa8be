//! The entry list and file persistence shared by both index kinds.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::storage::error::{IoContext, Result};

/// A fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

/// Entries in memory, mirrored to a file up to `persisted`.
#[derive(Debug)]
pub(crate) struct IndexFile<E> {
    path: PathBuf,
    pub(crate) entries: Vec<E>,
    /// Entries already written to the file.
    persisted: usize,
    /// The file holds bytes beyond `persisted` entries that must be cut on the next flush.
    file_dirty: bool,
    max_entries: usize,
}

impl<E: IndexEntry> IndexFile<E> {
    /// An index with no entries; the file is (re)written on the first flush.
    pub(crate) fn empty(path: PathBuf, max_bytes: u64) -> Self {
        Self { path, entries: Vec::new(), persisted: 0, file_dirty: true, max_entries: max_entries::<E>(max_bytes) }
    }

    /// Loads the entries in `path`. A trailing partial entry is ignored (and cut on the
    /// next flush). Returns `Ok(None)` if the file does not exist.
    pub(crate) fn load(path: PathBuf, max_bytes: u64) -> Result<Option<Self>> {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).at(&path)?;
        let whole = bytes.len() / E::SIZE;
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        Ok(Some(Self {
            path,
            entries,
            persisted: whole,
            file_dirty: bytes.len() % E::SIZE != 0,
            max_entries: max_entries::<E>(max_bytes),
        }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    pub(crate) fn push(&mut self, entry: E) {
        self.entries.push(entry);
    }

    /// Keeps the first `len` entries.
    pub(crate) fn truncate(&mut self, len: usize) {
        if len < self.entries.len() {
            self.entries.truncate(len);
            if len < self.persisted {
                self.persisted = len;
                self.file_dirty = true;
            }
        }
    }

    /// Writes entries not yet in the file, then fsyncs it.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.persisted == self.entries.len() && !self.file_dirty {
            return Ok(());
        }
        let mut file = OpenOptions::new().create(true).write(true).truncate(false).open(&self.path).at(&self.path)?;
        if self.file_dirty {
            file.set_len((self.persisted * E::SIZE) as u64).at(&self.path)?;
        }
        let mut buf = Vec::with_capacity((self.entries.len() - self.persisted) * E::SIZE);
        for e in &self.entries[self.persisted..] {
            e.encode(&mut buf);
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start((self.persisted * E::SIZE) as u64)).at(&self.path)?;
        file.write_all(&buf).at(&self.path)?;
        file.sync_data().at(&self.path)?;
        self.persisted = self.entries.len();
        self.file_dirty = false;
        Ok(())
    }

    /// Renames the file (if it exists) and points at the new name.
    pub(crate) fn rename(&mut self, to: PathBuf) -> Result<()> {
        match std::fs::rename(&self.path, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&self.path),
        }
        self.path = to;
        Ok(())
    }

    /// Deletes the file.
    pub(crate) fn delete(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(&self.path),
            _ => Ok(()),
        }
    }
}

fn max_entries<E: IndexEntry>(max_bytes: u64) -> usize {
    (max_bytes as usize / E::SIZE).max(1)
}
