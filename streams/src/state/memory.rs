//! The in-memory key-value store: a sorted map. Nothing survives a restart except what
//! the changelog restores.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{BytesStore, KeyValueBytes};
use crate::error::Result;

#[derive(Debug, Default)]
pub(crate) struct InMemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl BytesStore for InMemoryStore {
    fn get(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<()> {
        f(self.map.get(key).map(Vec::as_slice));
        Ok(())
    }

    fn write(&mut self, batch: &mut dyn Iterator<Item = (&[u8], Option<&[u8]>)>) -> Result<()> {
        for (key, value) in batch {
            match value {
                Some(v) => {
                    self.map.insert(key.to_vec(), v.to_vec());
                }
                None => {
                    self.map.remove(key);
                }
            }
        }
        Ok(())
    }

    fn range(&self, from: Bound<&[u8]>, to: Bound<&[u8]>, limit: usize) -> Result<Vec<KeyValueBytes>> {
        Ok(self.map.range::<[u8], _>((from, to)).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn approximate_num_entries(&self) -> u64 {
        self.map.len() as u64
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
