//! A partition log in memory: entries of (leader epoch, value), the part that reached disk,
//! and the epoch history kept the way `storage::Log` keeps it.

use freshet_log::storage::EpochHistory;

/// One record: the epoch its leader wrote it in, and a value unique to the whole run.
pub type Entry = (i32, u64);

#[derive(Debug, Default, Clone)]
pub struct SimLog {
    pub entries: Vec<Entry>,
    /// Entries below this survive a crash.
    pub flushed: usize,
    pub epochs: EpochHistory,
    /// The high watermark as last checkpointed.
    pub hw_checkpoint: i64,
}

impl SimLog {
    pub fn end(&self) -> i64 {
        self.entries.len() as i64
    }

    pub fn append_as_leader(&mut self, epoch: i32, value: u64) -> i64 {
        let offset = self.end();
        self.epochs.assign(epoch, offset);
        self.entries.push((epoch, value));
        offset
    }

    pub fn append_as_follower(&mut self, entries: &[Entry]) {
        for entry in entries {
            let offset = self.end();
            self.epochs.assign(entry.0, offset);
            self.entries.push(*entry);
        }
    }

    pub fn truncate(&mut self, offset: i64) {
        let offset = offset.clamp(0, self.end()) as usize;
        self.entries.truncate(offset);
        self.flushed = self.flushed.min(offset);
        self.epochs.truncate_from_end(offset as i64);
        self.hw_checkpoint = self.hw_checkpoint.min(offset as i64);
    }

    pub fn flush(&mut self, high_watermark: i64) {
        self.flushed = self.entries.len();
        self.hw_checkpoint = high_watermark.min(self.end());
    }

    /// What is left after kill -9: the flushed prefix.
    pub fn crash(&mut self) {
        self.truncate(self.flushed as i64);
    }
}
