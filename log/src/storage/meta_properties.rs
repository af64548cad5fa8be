//! `meta.properties`: which cluster and node a data directory belongs to (KIP-631). Kafka
//! writes it with `kafka-storage.sh format`; Freshet also formats a new, empty directory
//! on its first start, and migrates a directory written before this file existed (its
//! cluster id came from `freshet-metadata.json`).
//!
//! ```text
//! #
//! # Written by freshet
//! cluster.id=Ut2uJrxSQ6W1pRMGeQOXkg
//! directory.id=RGgkDcgwRW6yvGbOVZqfsA
//! node.id=1
//! version=1
//! ```
//!
//! A node refuses to start on a directory formatted for another node id or cluster id:
//! that is how a misconfigured node is kept from mixing two clusters' data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::checkpoint::write_atomically;
use super::error::{IoContext, LogError, Result};

/// The file name inside a data directory.
pub const META_PROPERTIES: &str = "meta.properties";

/// The file written by single-node Freshet before `meta.properties` existed.
const LEGACY_METADATA_FILE: &str = "freshet-metadata.json";

/// A data directory's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    /// The cluster this directory belongs to.
    pub cluster_id: String,
    /// The node that owns it.
    pub node_id: i32,
    /// This directory's own id (KIP-858).
    pub directory_id: String,
}

/// A random id the way Kafka prints them: 16 random bytes in URL-safe base64, no padding,
/// and, as Kafka's, never starting with `-`, which a command line would take for a flag.
pub fn random_uuid() -> String {
    loop {
        let id = URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// The cluster id that the nodes of a new cluster give themselves when nobody formatted
/// their directories: the same on every node that names the same voters, in any order, and
/// shaped like Kafka's (16 bytes in URL-safe base64, never starting with `-`). Operators
/// who want their own run `freshet storage format --cluster-id` on every node first.
pub fn cluster_id_for_voters(voters: &[String]) -> String {
    let mut sorted = voters.to_vec();
    sorted.sort();
    let mut bytes = xxhash_rust::xxh3::xxh3_128(sorted.join(",").as_bytes()).to_be_bytes();
    bytes[0] &= 0x7f; // the first character is then below '-' in the alphabet
    URL_SAFE_NO_PAD.encode(bytes)
}

fn refuse(dir: &Path, reason: String) -> LogError {
    LogError::DataDirectory { path: dir.to_path_buf(), reason }
}

impl MetaProperties {
    /// Reads `dir/meta.properties`; `None` when there is none. A damaged file is an error
    /// naming the line or the missing key.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(META_PROPERTIES);
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| LogError::Corrupt { path: path.clone(), reason: "not UTF-8 text".into() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        let corrupt = |reason: String| LogError::Corrupt { path: path.clone(), reason };
        let mut props = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (key, value) =
                line.split_once(['=', ':']).ok_or_else(|| corrupt(format!("line {}: expected key=value", i + 1)))?;
            props.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let get = |key: &str| props.get(key).filter(|v| !v.is_empty()).ok_or_else(|| corrupt(format!("no {key}")));
        if get("version")? != "1" {
            return Err(corrupt(format!("version {} is not supported (expected 1)", props["version"])));
        }
        let node_id = get("node.id")?;
        let node_id = node_id.parse().map_err(|_| corrupt(format!("node.id {node_id:?} is not a number")))?;
        let meta = Self {
            cluster_id: get("cluster.id")?.clone(),
            node_id,
            directory_id: props.get("directory.id").cloned().unwrap_or_else(random_uuid),
        };
        if !props.contains_key("directory.id") {
            // Written by a tool without KIP-858: the new id must stay the directory's own.
            meta.write(dir)?;
        }
        Ok(Some(meta))
    }

    /// Writes `dir/meta.properties` atomically, creating `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).at(dir)?;
        let body = format!(
            "#\n# Written by freshet\ncluster.id={}\ndirectory.id={}\nnode.id={}\nversion=1\n",
            self.cluster_id, self.directory_id, self.node_id
        );
        write_atomically(&dir.join(META_PROPERTIES), body.as_bytes())
    }

    /// `freshet storage format`: writes a new `meta.properties` into `dir`. A directory that
    /// is already formatted is refused unless `ignore_formatted` and it matches.
    pub fn format(dir: &Path, cluster_id: &str, node_id: i32, ignore_formatted: bool) -> Result<Self> {
        if cluster_id.trim().is_empty() {
            return Err(refuse(dir, "the cluster id is empty".into()));
        }
        if let Some(existing) = Self::load(dir)? {
            if !ignore_formatted {
                return Err(refuse(
                    dir,
                    format!("already formatted (cluster {}, node {})", existing.cluster_id, existing.node_id),
                ));
            }
            existing.check(dir, node_id, Some(cluster_id))?;
            return Ok(existing);
        }
        let formatted = Self { cluster_id: cluster_id.to_owned(), node_id, directory_id: random_uuid() };
        formatted.write(dir)?;
        Ok(formatted)
    }

    /// What a node does at start: load `meta.properties` and check it is this node's and
    /// this cluster's (when `expected_cluster_id` is given). A directory without one is
    /// formatted: with the cluster id of a directory written before `meta.properties`
    /// existed, else `expected_cluster_id`, else a new one.
    pub fn ensure(dir: &Path, node_id: i32, expected_cluster_id: Option<&str>) -> Result<Self> {
        Self::ensure_or_format_with(dir, node_id, expected_cluster_id, random_uuid)
    }

    /// Like [`MetaProperties::ensure`], but a new directory of no earlier format gets
    /// `new_cluster_id()`: the id every node of a new cluster derives alike.
    pub fn ensure_or_format_with(
        dir: &Path,
        node_id: i32,
        expected_cluster_id: Option<&str>,
        new_cluster_id: impl FnOnce() -> String,
    ) -> Result<Self> {
        if let Some(existing) = Self::load(dir)? {
            existing.check(dir, node_id, expected_cluster_id)?;
            return Ok(existing);
        }
        let legacy = legacy_cluster_id(dir)?;
        if let (Some(old), Some(expected)) = (&legacy, expected_cluster_id)
            && old != expected
        {
            return Err(refuse(dir, format!("holds data of cluster {old}, not {expected}")));
        }
        let cluster_id = legacy.clone().or(expected_cluster_id.map(str::to_owned)).unwrap_or_else(new_cluster_id);
        let formatted = Self { cluster_id, node_id, directory_id: random_uuid() };
        formatted.write(dir)?;
        match legacy {
            Some(_) => {
                tracing::info!(dir = %dir.display(), cluster_id = %formatted.cluster_id, "migrated a single-node data directory: wrote meta.properties")
            }
            None => {
                tracing::info!(dir = %dir.display(), cluster_id = %formatted.cluster_id, node_id, "formatted a new data directory")
            }
        }
        Ok(formatted)
    }

    fn check(&self, dir: &Path, node_id: i32, expected_cluster_id: Option<&str>) -> Result<()> {
        if self.node_id != node_id {
            return Err(refuse(
                dir,
                format!(
                    "formatted for node.id={}, but this node is node.id={node_id}; \
                     point log.dirs at this node's own directory, or set node.id={}",
                    self.node_id, self.node_id
                ),
            ));
        }
        if let Some(expected) = expected_cluster_id
            && expected != self.cluster_id
        {
            return Err(refuse(
                dir,
                format!("formatted for cluster {}, but this node joins cluster {expected}", self.cluster_id),
            ));
        }
        Ok(())
    }

    /// The path of the file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(META_PROPERTIES)
    }
}

/// The cluster id of a directory written by single-node Freshet before `meta.properties`.
fn legacy_cluster_id(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(LEGACY_METADATA_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(&path),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| LogError::Corrupt { path: path.clone(), reason: format!("not valid topic metadata: {e}") })?;
    let id = value.get("cluster_id").and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    Ok(id.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_formats_itself_and_then_belongs_to_its_node() {
        let dir = tempfile::tempdir().unwrap();
        let first = MetaProperties::ensure(dir.path(), 1, None).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        assert_eq!(MetaProperties::ensure(dir.path(), 1, None).unwrap(), first);
        assert_eq!(MetaProperties::ensure(dir.path(), 1, Some(&first.cluster_id)).unwrap(), first);

        let err = MetaProperties::ensure(dir.path(), 2, None).unwrap_err().to_string();
        assert!(err.contains("node.id=1") && err.contains("node.id=2"), "{err}");
        let err = MetaProperties::ensure(dir.path(), 1, Some("another")).unwrap_err().to_string();
        assert!(err.contains("cluster") && err.contains("another"), "{err}");
    }

    #[test]
    fn nodes_naming_the_same_voters_derive_the_same_cluster_id() {
        let voters = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = cluster_id_for_voters(&voters(&["1@h:1", "2@h:2", "3@h:3"]));
        assert_eq!(a, cluster_id_for_voters(&voters(&["3@h:3", "1@h:1", "2@h:2"])));
        assert_ne!(a, cluster_id_for_voters(&voters(&["1@h:1", "2@h:2", "3@h:4"])));
        assert_eq!(a.len(), 22);
        for port in 0..2_000 {
            assert!(!cluster_id_for_voters(&voters(&[&format!("1@h:{port}")])).starts_with('-'));
        }
        // A new directory takes it; an existing one keeps its own.
        let dir = tempfile::tempdir().unwrap();
        let formatted = MetaProperties::ensure_or_format_with(dir.path(), 1, None, || a.clone()).unwrap();
        assert_eq!(formatted.cluster_id, a);
        let again = MetaProperties::ensure_or_format_with(dir.path(), 1, None, || "other".into()).unwrap();
        assert_eq!(again.cluster_id, a);
    }

    #[test]
    fn random_ids_never_look_like_flags() {
        for _ in 0..2_000 {
            let id = random_uuid();
            assert!(id.len() == 22 && !id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn format_refuses_a_formatted_directory_unless_told_and_matching() {
        let dir = tempfile::tempdir().unwrap();
        let id = random_uuid();
        MetaProperties::format(dir.path(), &id, 3, false).unwrap();
        assert!(MetaProperties::format(dir.path(), &id, 3, false).is_err());
        assert!(MetaProperties::format(dir.path(), &id, 3, true).is_ok());
        assert!(MetaProperties::format(dir.path(), "other", 3, true).is_err());
        assert!(MetaProperties::format(tempfile::tempdir().unwrap().path(), " ", 3, false).is_err());
        let text = std::fs::read_to_string(MetaProperties::path(dir.path())).unwrap();
        assert!(text.contains(&format!("cluster.id={id}")) && text.contains("node.id=3") && text.contains("version=1"));
    }

    #[test]
    fn a_directory_id_given_once_stays() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(MetaProperties::path(dir.path()), "version=1\ncluster.id=c\nnode.id=4\n").unwrap();
        let first = MetaProperties::load(dir.path()).unwrap().unwrap();
        assert_eq!(MetaProperties::load(dir.path()).unwrap().unwrap().directory_id, first.directory_id);
    }

    #[test]
    fn a_single_node_directory_keeps_its_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_METADATA_FILE), r#"{"cluster_id":"0f3c","topics":{}}"#).unwrap();
        let migrated = MetaProperties::ensure(dir.path(), 1, None).unwrap();
        assert_eq!(migrated.cluster_id, "0f3c");
        std::fs::remove_file(MetaProperties::path(dir.path())).unwrap();
        assert!(MetaProperties::ensure(dir.path(), 1, Some("elsewhere")).is_err());
    }

    #[test]
    fn a_damaged_file_is_an_error_that_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = MetaProperties::path(dir.path());
        for (body, expected) in [
            ("version=1\nnode.id=1\n", "no cluster.id"),
            ("version=1\ncluster.id=x\nnode.id=one\n", "not a number"),
            ("version=0\ncluster.id=x\nnode.id=1\n", "version 0"),
            ("version=1\ngarbage\n", "line 2"),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = MetaProperties::ensure(dir.path(), 1, None).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("meta.properties"), "{body:?}: {err}");
        }
    }
}
