//! The files of a task's state directory: `.checkpoint`, in Kafka's `OffsetCheckpoint`
//! format (a version line, a count, then `topic partition offset` lines), saying up to
//! which changelog offset each store is on disk; and the `.lock` file that keeps two
//! instances from sharing one state directory.

use freshet_log::client::TopicPartition;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StreamsError};

pub(crate) const CHECKPOINT_FILE: &str = ".checkpoint";
const VERSION: u32 = 0;

/// Changelog partition -> the next offset to restore from.
pub(crate) type Offsets = BTreeMap<TopicPartition, i64>;

/// Reads a checkpoint file; a missing file is no checkpoint. A file that does not parse is
/// an error that names it and the line, because restoring from a guess could lose writes.
pub(crate) fn read(path: &Path) -> Result<Offsets> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Offsets::new()),
        Err(e) => return Err(StreamsError::state_dir(path, e)),
    };
    let bad = |line: usize, what: &str| StreamsError::state_dir(path, format!("line {line}: {what}"));
    let mut lines = text.lines();
    match lines.next().map(str::trim) {
        Some(v) if v == VERSION.to_string() => {}
        Some(v) => return Err(bad(1, &format!("unknown checkpoint version '{v}'"))),
        None => return Err(bad(1, "empty file")),
    }
    let count: usize = lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| bad(2, "not an entry count"))?;
    let mut offsets = Offsets::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [topic, partition, offset] = fields[..] else {
            return Err(bad(i + 3, "expected 'topic partition offset'"));
        };
        let partition: i32 = partition.parse().map_err(|_| bad(i + 3, "partition is not a number"))?;
        let offset: i64 = offset.parse().map_err(|_| bad(i + 3, "offset is not a number"))?;
        offsets.insert(TopicPartition::new(topic, partition), offset);
    }
    if offsets.len() != count {
        return Err(bad(2, &format!("says {count} entries, the file has {}", offsets.len())));
    }
    Ok(offsets)
}

/// Writes a checkpoint atomically: a temporary file, synced, then renamed over the old one.
pub(crate) fn write(path: &Path, offsets: &Offsets) -> Result<()> {
    let mut text = format!("{VERSION}\n{}\n", offsets.len());
    for (TopicPartition { topic, partition }, offset) in offsets {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| StreamsError::state_dir(path, e);
    let mut file = File::create(&tmp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// An exclusive lock on a state directory, held while the value lives.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StreamsError::state_dir(dir, e))?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StreamsError::state_dir(&path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StreamsError::state_dir(
                dir,
                "locked by another process; two instances of one application need different state.dir values",
            )),
            Err(e) => Err(StreamsError::state_dir(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        assert!(read(&path).unwrap().is_empty());
        let offsets: Offsets = [(TopicPartition::new("app-counts-changelog", 2), 1500)].into_iter().collect();
        write(&path, &offsets).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n1\napp-counts-changelog 2 1500\n");
        assert_eq!(read(&path).unwrap(), offsets);
    }

    #[test]
    fn a_corrupt_checkpoint_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHECKPOINT_FILE);
        for (text, what) in [
            ("7\n0\n", "line 1: unknown checkpoint version '7'"),
            ("0\nx\n", "line 2: not an entry count"),
            ("0\n1\nt 0\n", "line 3: expected 'topic partition offset'"),
            ("0\n1\nt zero 5\n", "line 3: partition is not a number"),
            ("0\n2\nt 0 5\n", "line 2: says 2 entries, the file has 1"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_state_directory_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let e = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("locked by another process"), "{e}");
        drop(lock);
        DirLock::acquire(dir.path()).unwrap();
    }
}
