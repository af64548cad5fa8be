//! Kafka's checkpoint file format, used for the recovery points, log start offsets,
//! cleaner offsets and leader epochs:
//!
//! ```text
//! 0            <- version
//! 2            <- number of entries
//! orders 0 1200
//! orders 1 998
//! ```
//!
//! Files are replaced atomically: written to `<name>.tmp`, fsynced, renamed over the old
//! file, and the directory fsynced, so a crash leaves either the old or the new contents.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::TopicPartition;
use super::error::{IoContext, LogError, Result};

const VERSION: u32 = 0;

/// Writes `entries` as a checkpoint file, atomically.
pub(crate) fn write_lines(path: &Path, entries: &[String]) -> Result<()> {
    let mut body = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        body.push_str(e);
        body.push('\n');
    }
    write_atomically(path, body.as_bytes())
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new contents:
/// write `<path>.tmp`, fsync it, rename it over `path`, fsync the directory. (Loading
/// removes stray `.tmp` files.)
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    std::fs::rename(&tmp, path).at(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a checkpoint file's entry lines. `Ok(None)` if the file does not exist; a
/// `Corrupt` error naming the line if it does not parse.
pub(crate) fn read_lines(path: &Path) -> Result<Option<Vec<String>>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8 text".into()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    let mut lines = text.lines();
    let version = lines.next().ok_or_else(|| corrupt(path, "empty file".into()))?;
    if version.trim() != VERSION.to_string() {
        return Err(corrupt(path, format!("line 1: unsupported version {version:?}")));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "line 2: expected the entry count".into()))?;
    let entries: Vec<String> = lines.map(str::to_string).collect();
    if entries.len() != count {
        return Err(corrupt(path, format!("line 2 says {count} entries but {} follow", entries.len())));
    }
    Ok(Some(entries))
}

/// Reads a `topic partition offset` checkpoint.
pub(crate) fn read_offsets(path: &Path) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut out = BTreeMap::new();
    for (i, line) in read_lines(path)?.unwrap_or_default().iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = match fields.as_slice() {
            [topic, partition, offset] => partition.parse().ok().zip(offset.parse().ok()).map(|(p, o)| (topic, p, o)),
            _ => None,
        };
        let Some((topic, partition, offset)) = parsed else {
            return Err(corrupt(path, format!("line {}: expected 'topic partition offset', got {line:?}", i + 3)));
        };
        out.insert(TopicPartition::new(*topic, partition), offset);
    }
    Ok(out)
}

/// Writes a `topic partition offset` checkpoint.
pub(crate) fn write_offsets(path: &Path, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    let lines: Vec<String> = offsets.iter().map(|(tp, o)| format!("{} {} {o}", tp.topic, tp.partition)).collect();
    write_lines(path, &lines)
}

/// fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

fn corrupt(path: &Path, reason: String) -> LogError {
    LogError::Corrupt { path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_damage_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recovery-point-offset-checkpoint");
        let offsets = BTreeMap::from([(TopicPartition::new("a.b-c", 3), 17), (TopicPartition::new("x", 0), 0)]);
        write_offsets(&path, &offsets).unwrap();
        assert_eq!(read_offsets(&path).unwrap(), offsets);
        assert!(read_offsets(&dir.path().join("missing")).unwrap().is_empty());

        std::fs::write(&path, "0\n2\na.b-c 3 17\nx zero 0\n").unwrap();
        let err = read_offsets(&path).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        std::fs::write(&path, "0\n5\n").unwrap();
        assert!(read_offsets(&path).unwrap_err().to_string().contains("says 5 entries"));
    }
}
