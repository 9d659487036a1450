//! The metadata checkpoint: a small file in every log dir recording the
//! cluster id and the metadata log's committed end offset, rewritten (and
//! fsynced) after every metadata append.
//!
//! It lives beside the partition directories, outside the metadata log's own
//! directory, so that a metadata log that is lost or cut short is detected at
//! start instead of silently forgetting topics whose data is still on disk.

use std::path::{Path, PathBuf};

use crate::error::{MetadataError, Result};

/// The checkpoint's file name in each log dir.
pub const CHECKPOINT_FILE: &str = "metadata-offset-checkpoint";

/// What a checkpoint records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The cluster the log dir belongs to.
    pub cluster_id: String,
    /// The metadata log's end offset after the last committed append.
    pub end_offset: i64,
}

impl Checkpoint {
    /// Reads the checkpoint at `path`; `None` if there is no file.
    pub fn read(path: &Path) -> Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(checkpoint_err(path, e.to_string())),
        };
        let mut cluster_id = None;
        let mut end_offset = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("cluster.id", v)) if !v.is_empty() => cluster_id = Some(v.to_string()),
                Some(("metadata.log.end.offset", v)) => end_offset = v.parse::<i64>().ok().filter(|o| *o >= 0),
                _ => {}
            }
        }
        match (cluster_id, end_offset) {
            (Some(cluster_id), Some(end_offset)) => Ok(Some(Checkpoint { cluster_id, end_offset })),
            _ => Err(checkpoint_err(path, "garbled: needs cluster.id and metadata.log.end.offset".into())),
        }
    }

    /// Writes the checkpoint to `path` durably: a temporary file, fsynced,
    /// renamed over the old one, and the directory fsynced.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = format!(
            "#Written by Potok: the committed end of the metadata log, checked at start\nversion=0\ncluster.id={}\nmetadata.log.end.offset={}\n",
            self.cluster_id, self.end_offset
        );
        storage::checkpoint::write_durably(path, text.as_bytes()).map_err(|e| checkpoint_err(path, e.to_string()))
    }
}

fn checkpoint_err(path: &Path, reason: String) -> MetadataError {
    MetadataError::Checkpoint { path: PathBuf::from(path), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(CHECKPOINT_FILE);
        assert_eq!(Checkpoint::read(&path).expect("read"), None);
        let c = Checkpoint { cluster_id: "abc".into(), end_offset: 42 };
        c.write(&path).expect("write");
        assert_eq!(Checkpoint::read(&path).expect("read"), Some(c));
        std::fs::write(&path, b"junk").expect("write");
        let err = Checkpoint::read(&path).expect_err("garbled");
        assert!(err.to_string().contains(CHECKPOINT_FILE), "{err}");
    }
}
