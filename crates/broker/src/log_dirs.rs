//! The broker's log directories: `meta.properties`, the clean-shutdown marker,
//! and where each partition's directory lives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use thiserror::Error;
use uuid::Uuid;

/// Written at clean shutdown, removed at start: its absence means recovery.
const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
const META_PROPERTIES: &str = "meta.properties";
/// Kafka's per-partition file naming the topic id, so a recreated topic of the
/// same name never picks up a deleted one's data.
const PARTITION_METADATA: &str = "partition.metadata";

/// A problem with a log directory, naming the path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LogDirError {
    /// An I/O failure.
    #[error("log dir {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// meta.properties disagrees with the configuration.
    #[error("log dir {path}: meta.properties has node.id {found} but node.id is {configured}")]
    NodeIdMismatch {
        /// The meta.properties file.
        path: PathBuf,
        /// node.id in the file.
        found: String,
        /// node.id configured.
        configured: i32,
    },
    /// Log dirs belong to different clusters.
    #[error("log dir {path}: cluster.id {found} differs from {expected} in another log dir")]
    ClusterIdMismatch {
        /// The meta.properties file.
        path: PathBuf,
        /// cluster.id in the file.
        found: String,
        /// cluster.id elsewhere.
        expected: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogDirError + '_ {
    move |source| LogDirError::Io { path: path.to_path_buf(), source }
}

/// The configured log directories, opened.
pub(crate) struct LogDirs {
    dirs: Vec<PathBuf>,
    /// The cluster id from meta.properties (created on first start).
    pub(crate) cluster_id: String,
    /// True if every dir was shut down cleanly last time.
    pub(crate) clean_shutdown: bool,
}

impl LogDirs {
    /// Creates missing dirs, checks or writes meta.properties, and consumes the
    /// clean-shutdown markers.
    pub(crate) fn open(dirs: &[PathBuf], node_id: i32) -> Result<LogDirs, LogDirError> {
        let mut cluster_id: Option<String> = None;
        let mut clean_shutdown = true;
        let mut fresh = Vec::new();
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let meta = dir.join(META_PROPERTIES);
            match std::fs::read_to_string(&meta) {
                Ok(text) => {
                    let props: HashMap<&str, &str> = text
                        .lines()
                        .filter(|l| !l.starts_with('#'))
                        .filter_map(|l| l.split_once('='))
                        .map(|(k, v)| (k.trim(), v.trim()))
                        .collect();
                    if let Some(found) = props.get("node.id") {
                        if *found != node_id.to_string() {
                            return Err(LogDirError::NodeIdMismatch {
                                path: meta.clone(),
                                found: (*found).to_string(),
                                configured: node_id,
                            });
                        }
                    }
                    if let Some(found) = props.get("cluster.id") {
                        match &cluster_id {
                            Some(expected) if expected != found => {
                                return Err(LogDirError::ClusterIdMismatch {
                                    path: meta.clone(),
                                    found: (*found).to_string(),
                                    expected: expected.clone(),
                                })
                            }
                            _ => cluster_id = Some((*found).to_string()),
                        }
                    }
                    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
                    if marker.exists() {
                        std::fs::remove_file(&marker).map_err(io(&marker))?;
                    } else {
                        clean_shutdown = false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh.push(dir.clone()),
                Err(e) => return Err(io(&meta)(e)),
            }
        }
        let cluster_id = cluster_id.unwrap_or_else(new_cluster_id);
        for dir in fresh {
            write_meta_properties(&dir, &cluster_id, node_id)?;
        }
        Ok(LogDirs { dirs: dirs.to_vec(), cluster_id, clean_shutdown })
    }

    /// The configured log directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The directory of the metadata log.
    pub(crate) fn metadata_dir(&self) -> PathBuf {
        self.dirs[0].join("__cluster_metadata-0")
    }

    /// The directory for a partition: where it already is, else the log dir
    /// holding the fewest partitions. A directory left by a deleted topic of the
    /// same name (different topic id) is removed first.
    pub(crate) fn partition_dir(&self, topic: &str, partition: i32, topic_id: Uuid) -> Result<PathBuf, LogDirError> {
        let name = format!("{topic}-{partition}");
        for dir in &self.dirs {
            let candidate = dir.join(&name);
            if candidate.is_dir() {
                let metadata = candidate.join(PARTITION_METADATA);
                let matches = std::fs::read_to_string(&metadata)
                    .map(|t| t.contains(&topic_id.to_string()))
                    .unwrap_or(false);
                if matches {
                    return Ok(candidate);
                }
                tracing::warn!(dir = %candidate.display(), "removing directory of a deleted topic with the same name");
                std::fs::remove_dir_all(&candidate).map_err(io(&candidate))?;
            }
        }
        let root = self
            .dirs
            .iter()
            .min_by_key(|d| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0))
            .unwrap_or(&self.dirs[0]);
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_synced(&dir.join(PARTITION_METADATA), format!("version: 0\ntopic_id: {topic_id}\n").as_bytes())?;
        Ok(dir)
    }

    /// Marks every log dir as cleanly shut down.
    pub(crate) fn mark_clean_shutdown(&self) -> Result<(), LogDirError> {
        for dir in &self.dirs {
            write_synced(&dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        }
        Ok(())
    }
}

/// The name of the file that marks a formatted log directory.
pub const META_PROPERTIES_FILE: &str = META_PROPERTIES;

/// Writes (fsynced) a fresh `meta.properties` into `dir` as Kafka's KRaft
/// format does: version 1, the cluster id, the node id and a new directory id.
/// `LogDirs::open` writes it for a fresh directory, `kafka-storage format` ahead of it.
pub fn write_meta_properties(dir: &Path, cluster_id: &str, node_id: i32) -> Result<(), LogDirError> {
    let text = format!(
        "#\n#Written by Potok\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\ndirectory.id={}\n",
        new_cluster_id()
    );
    write_synced(&dir.join(META_PROPERTIES), text.as_bytes())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LogDirError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding,
/// never starting with `-` (as Kafka's `Uuid.randomUuid`, so that it can follow
/// a flag on a command line).
pub fn new_cluster_id() -> String {
    loop {
        let id = base64_uuid(Uuid::new_v4());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A UUID in URL-safe base64 without padding (22 characters), Kafka's text form.
fn base64_uuid(uuid: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid.into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_kept_across_restarts_and_clean_shutdown_is_detected() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = vec![tmp.path().join("a")];
        let first = LogDirs::open(&dirs, 1).expect("open");
        assert_eq!(first.cluster_id.len(), 22);
        first.mark_clean_shutdown().expect("mark");
        let second = LogDirs::open(&dirs, 1).expect("reopen");
        assert_eq!(second.cluster_id, first.cluster_id);
        assert!(second.clean_shutdown);
        let third = LogDirs::open(&dirs, 1).expect("reopen after crash");
        assert!(!third.clean_shutdown, "marker is consumed at start");
    }

    #[test]
    fn other_node_id_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = vec![tmp.path().to_path_buf()];
        LogDirs::open(&dirs, 1).expect("open");
        let err = LogDirs::open(&dirs, 2).err().expect("must fail");
        assert!(err.to_string().contains("node.id"));
    }

    #[test]
    fn recreated_topic_does_not_reuse_old_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = LogDirs::open(&[tmp.path().to_path_buf()], 1).expect("open");
        let old = dirs.partition_dir("t", 0, Uuid::new_v4()).expect("dir");
        std::fs::write(old.join("00000000000000000000.log"), b"old").expect("write");
        let new = dirs.partition_dir("t", 0, Uuid::new_v4()).expect("dir");
        assert!(!new.join("00000000000000000000.log").exists());
    }
}
