//! `partition.metadata`: the id of the topic a partition directory belongs to (KIP-516),
//! in Kafka's format:
//!
//! ```text
//! version: 0
//! topic_id: <the id, base64url without padding>
//! ```
//!
//! Directory names carry only the topic's name. The id tells a directory left over from a
//! deleted topic (whose deletion a crash interrupted) from one of a topic re-created under
//! the same name.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::checkpoint::write_atomically;
use super::error::{IoContext, LogError, Result};

/// The file's name.
pub const FILE_NAME: &str = "partition.metadata";

/// The topic id recorded in the partition directory `dir`, if it has one.
pub fn read_topic_id(dir: &Path) -> Result<Option<Uuid>> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&path),
    };
    let corrupt = |reason: String| LogError::Corrupt { path: path.clone(), reason };
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(':').ok_or_else(|| corrupt(format!("line '{line}' is not 'key: value'")))?;
        match key.trim() {
            "version" => version = Some(value.trim().to_owned()),
            "topic_id" => topic_id = Some(value.trim().to_owned()),
            other => return Err(corrupt(format!("unknown key '{other}'"))),
        }
    }
    if version.as_deref() != Some("0") {
        return Err(corrupt(format!("version {version:?} is not 0")));
    }
    let encoded = topic_id.ok_or_else(|| corrupt("no topic_id".into()))?;
    let bytes = URL_SAFE_NO_PAD.decode(&encoded).map_err(|e| corrupt(format!("topic_id '{encoded}': {e}")))?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| corrupt(format!("topic_id '{encoded}' is not 16 bytes")))?;
    Ok(Some(Uuid::from_bytes(bytes)))
}

/// Records `topic_id` in the partition directory `dir`, atomically.
pub fn write_topic_id(dir: &Path, topic_id: Uuid) -> Result<()> {
    let body = format!("version: 0\ntopic_id: {}\n", URL_SAFE_NO_PAD.encode(topic_id.as_bytes()));
    write_atomically(&dir.join(FILE_NAME), body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_id_round_trips_in_kafkas_format_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_topic_id(dir.path()).unwrap(), None);
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        write_topic_id(dir.path(), id).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text, "version: 0\ntopic_id: ASNFZ4mrze8BI0VniavN7w\n");
        assert_eq!(read_topic_id(dir.path()).unwrap(), Some(id));
        for damaged in ["version: 1\ntopic_id: ASNFZ4mrze8BI0VniavN7w\n", "version: 0\ntopic_id: abc\n", "garbage"] {
            std::fs::write(dir.path().join(FILE_NAME), damaged).unwrap();
            let err = read_topic_id(dir.path()).unwrap_err().to_string();
            assert!(err.contains(FILE_NAME), "{err}");
        }
    }
}
