//! Where the log puts data it cannot parse. Nothing is ever deleted because it looks wrong:
//! foreign files, damaged checkpoints, torn segment tails and segments after a corruption
//! are moved (or, for a tail, copied before truncation) into `<data dir>/quarantine/`, and
//! each move is logged and reported to the caller.

use std::path::{Path, PathBuf};

use super::error::{IoContext, Result};

/// The folder name under the data directory.
pub const QUARANTINE_DIR: &str = "quarantine";

/// One file set aside, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Where it was.
    pub original: PathBuf,
    /// Where it is now.
    pub moved_to: PathBuf,
    /// Why it was set aside.
    pub reason: String,
}

/// Moves unparseable data out of the way.
#[derive(Debug, Clone)]
pub struct Quarantine {
    root: PathBuf,
}

impl Quarantine {
    /// A quarantine under `data_dir/quarantine`.
    pub fn new(data_dir: &Path) -> Self {
        Self { root: data_dir.join(QUARANTINE_DIR) }
    }

    /// The quarantine folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn destination(&self, group: &str, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(group);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let mut candidate = dir.join(name);
        let mut n = 1;
        while candidate.exists() {
            candidate = dir.join(format!("{name}.{n}"));
            n += 1;
        }
        Ok(candidate)
    }

    /// Moves `path` into the quarantine under `group` (usually the partition's name).
    pub fn move_aside(&self, path: &Path, group: &str, reason: impl Into<String>) -> Result<Quarantined> {
        let name = path.file_name().map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
        let dest = self.destination(group, &name)?;
        std::fs::rename(path, &dest).at(path)?;
        let q = Quarantined { original: path.to_path_buf(), moved_to: dest, reason: reason.into() };
        tracing::warn!(file = %q.original.display(), moved_to = %q.moved_to.display(), reason = %q.reason, "moved unreadable data aside");
        Ok(q)
    }

    /// Copies `bytes` (a damaged tail about to be truncated off `path`) into the quarantine.
    pub fn save_tail(
        &self,
        path: &Path,
        group: &str,
        position: u64,
        bytes: &[u8],
        reason: impl Into<String>,
    ) -> Result<Quarantined> {
        let name = path.file_name().map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
        let dest = self.destination(group, &format!("{name}.tail-from-byte-{position}"))?;
        std::fs::write(&dest, bytes).at(&dest)?;
        let q = Quarantined { original: path.to_path_buf(), moved_to: dest, reason: reason.into() };
        tracing::warn!(file = %q.original.display(), position, bytes = bytes.len(), saved_to = %q.moved_to.display(), reason = %q.reason, "truncated a damaged log tail");
        Ok(q)
    }
}
