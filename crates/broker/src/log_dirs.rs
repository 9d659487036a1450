//! The broker's log directories: the `.lock` each running broker holds,
//! `meta.properties`, the clean-shutdown marker, the metadata checkpoint, and
//! where each partition's directory lives.
//!
//! Nothing here deletes data it cannot prove is garbage: a partition directory
//! that the metadata does not account for is renamed aside
//! (`<topic>-<partition>.<id>-stray`, Kafka's name for stray logs); only one
//! whose `partition.metadata` names a topic id the metadata log deleted is
//! removed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metadata::{Checkpoint, CHECKPOINT_FILE};
use thiserror::Error;
use uuid::Uuid;

use crate::log_dir_health::{LogDirHealth, LogDirHealths};

/// Written at clean shutdown, removed at start: its absence means recovery.
const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
const META_PROPERTIES: &str = "meta.properties";
/// Kafka's per-partition file naming the topic id, so a recreated topic of the
/// same name never picks up a deleted one's data.
const PARTITION_METADATA: &str = "partition.metadata";
/// Held with an exclusive `flock` for the broker process's life, as Kafka does;
/// the kernel drops it when the process dies, so a crash never leaves it stale.
const LOCK_FILE: &str = ".lock";
/// The metadata log's topic; no client topic may use the name.
pub(crate) const METADATA_TOPIC: &str = "__cluster_metadata";
/// Suffix of partition directories set aside (Kafka's stray-log suffix).
const STRAY_SUFFIX: &str = "-stray";

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
    /// Another process holds the directory's lock.
    #[error("log dir {dir} is in use: another broker holds its lock ({dir}/.lock); stop it or give this broker other log.dirs")]
    Locked {
        /// The log dir.
        dir: PathBuf,
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
    /// meta.properties is empty, garbled or missing next to existing data.
    #[error("log dir {path}: {reason}; restore it (the data next to it is left untouched)")]
    MetaProperties {
        /// The meta.properties file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The metadata checkpoint cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] metadata::MetadataError),
    /// Every log dir failed: there is nowhere to place a new partition.
    #[error("no log dir is online: every one of them failed")]
    AllOffline,
    /// A topic operation asked for the metadata log's own directory.
    #[error("log dir {dir}: {name} is the metadata log's directory, not a topic's")]
    Reserved {
        /// The log dir.
        dir: PathBuf,
        /// The partition directory name asked for.
        name: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogDirError + '_ {
    move |source| LogDirError::Io { path: path.to_path_buf(), source }
}

/// A `<topic>-<partition>` directory found in a log dir.
#[derive(Debug, Clone)]
pub(crate) struct PartitionDir {
    /// The directory.
    pub(crate) path: PathBuf,
    /// Topic name, from the directory name.
    pub(crate) topic: String,
    /// Partition index, from the directory name.
    pub(crate) partition: i32,
    /// The topic id its `partition.metadata` names, if readable.
    pub(crate) topic_id: Option<Uuid>,
}

/// Whether a partition is being created or was already in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the metadata image: an existing directory is its data, even when its
    /// `partition.metadata` is missing or unreadable (rewritten from the image).
    Existing,
    /// Being created now: any existing directory of that name is not its data.
    New,
}

/// The configured log directories, opened and locked.
pub(crate) struct LogDirs {
    dirs: Vec<PathBuf>,
    /// The `.lock` files, flocked; dropped (unlocked) with the broker.
    _locks: Vec<File>,
    /// The cluster id from meta.properties (created on first start).
    pub(crate) cluster_id: String,
    /// True if every dir was shut down cleanly last time.
    pub(crate) clean_shutdown: bool,
    /// The highest committed metadata end offset any checkpoint records, and
    /// that checkpoint's path.
    committed: Option<(PathBuf, i64)>,
    /// Which dirs failed: nothing is written to those again.
    health: LogDirHealths,
}

impl LogDirs {
    /// Locks every dir (creating missing ones) before reading or writing
    /// anything else in it, then checks or writes meta.properties and reads the
    /// clean-shutdown markers and metadata checkpoints.
    pub(crate) fn open(dirs: &[PathBuf], node_id: i32) -> Result<LogDirs, LogDirError> {
        let mut locks = Vec::with_capacity(dirs.len());
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            locks.push(lock(dir)?);
        }
        let mut cluster_id: Option<String> = None;
        let mut clean_shutdown = true;
        let mut committed: Option<(PathBuf, i64)> = None;
        let mut fresh = Vec::new();
        for dir in dirs {
            let meta = dir.join(META_PROPERTIES);
            let found = match std::fs::read_to_string(&meta) {
                Ok(text) => read_meta_properties(&meta, &text, node_id)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(what) = existing_data(dir)? {
                        return Err(LogDirError::MetaProperties {
                            path: meta,
                            reason: format!("meta.properties is missing but the directory holds data ({what})"),
                        });
                    }
                    fresh.push(dir.clone());
                    continue;
                }
                Err(e) => return Err(io(&meta)(e)),
            };
            match &cluster_id {
                Some(expected) if *expected != found => {
                    return Err(LogDirError::ClusterIdMismatch { path: meta, found, expected: expected.clone() })
                }
                _ => cluster_id = Some(found.clone()),
            }
            let checkpoint_path = dir.join(CHECKPOINT_FILE);
            if let Some(checkpoint) = Checkpoint::read(&checkpoint_path)? {
                if checkpoint.cluster_id != found {
                    return Err(LogDirError::MetaProperties {
                        path: meta,
                        reason: format!(
                            "meta.properties has cluster.id {found} but the data here belongs to cluster {} ({})",
                            checkpoint.cluster_id,
                            checkpoint_path.display()
                        ),
                    });
                }
                if committed.as_ref().is_none_or(|(_, c)| checkpoint.end_offset > *c) {
                    committed = Some((checkpoint_path, checkpoint.end_offset));
                }
            }
            if !dir.join(CLEAN_SHUTDOWN_FILE).exists() {
                clean_shutdown = false;
            }
        }
        let cluster_id = cluster_id.unwrap_or_else(new_cluster_id);
        for dir in fresh {
            write_meta_properties(&dir, &cluster_id, node_id)?;
        }
        Ok(LogDirs { dirs: dirs.to_vec(), _locks: locks, cluster_id, clean_shutdown, committed, health: LogDirHealths::new(dirs) })
    }

    /// Each dir's `directory.id` from its meta.properties (Kafka's log dir
    /// uuid, what BrokerRegistration and BrokerHeartbeat name dirs by); a dir
    /// without a readable one is left out.
    pub(crate) fn directory_ids(&self) -> Vec<(PathBuf, Uuid)> {
        self.dirs
            .iter()
            .filter_map(|dir| {
                let text = std::fs::read_to_string(dir.join(META_PROPERTIES)).ok()?;
                let value = text.lines().find_map(|l| l.trim().strip_prefix("directory.id="))?;
                Some((dir.clone(), uuid_from_base64(value.trim())?))
            })
            .collect()
    }

    /// Removes the clean-shutdown markers: from here on the broker may write,
    /// so a crash must lead to recovery. Called once start-up checks passed
    /// (a refused start leaves the markers as they were).
    pub(crate) fn consume_clean_shutdown_markers(&self) -> Result<(), LogDirError> {
        // A dir offline from start (an unreadable high watermark checkpoint)
        // is not written: its logs stay unopened, as they were.
        for dir in self.online() {
            let marker = dir.join(CLEAN_SHUTDOWN_FILE);
            match std::fs::remove_file(&marker) {
                Ok(()) => sync_dir(dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&marker)(e)),
            }
        }
        Ok(())
    }

    /// The configured log directories.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The health of every log dir (shared with the partitions in them).
    pub(crate) fn health(&self) -> &LogDirHealths {
        &self.health
    }

    /// The directory of the metadata log.
    pub(crate) fn metadata_dir(&self) -> PathBuf {
        self.dirs[0].join(format!("{METADATA_TOPIC}-0"))
    }

    /// The metadata checkpoint file of every log dir.
    pub(crate) fn checkpoint_paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join(CHECKPOINT_FILE)).collect()
    }

    /// The highest committed metadata end offset a checkpoint records, and
    /// that checkpoint's path.
    pub(crate) fn committed(&self) -> Option<&(PathBuf, i64)> {
        self.committed.as_ref()
    }

    /// Every `<topic>-<partition>` directory in the log dirs (the metadata
    /// log's and set-aside ones excluded), in name order.
    pub(crate) fn partition_dirs(&self) -> Result<Vec<PartitionDir>, LogDirError> {
        let mut found = Vec::new();
        for dir in &self.dirs {
            for entry in std::fs::read_dir(dir).map_err(io(dir))? {
                let entry = entry.map_err(io(dir))?;
                if !entry.file_type().map_err(io(dir))?.is_dir() {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                let Some((topic, partition)) = parse_partition_dir_name(&name) else { continue };
                if topic == METADATA_TOPIC {
                    continue;
                }
                let path = entry.path();
                let topic_id = read_topic_id(&path);
                found.push(PartitionDir { path, topic: topic.to_string(), partition, topic_id });
            }
        }
        found.sort_by(|a, b| (&a.topic, a.partition, &a.path).cmp(&(&b.topic, b.partition, &b.path)));
        Ok(found)
    }

    /// The directory for a partition and whether it was created now: where it
    /// already is, else a new one in the log dir holding the fewest entries.
    ///
    /// An existing directory of that name whose `partition.metadata` names
    /// another topic id is deleted if `removed(id)` (a deleted topic's leftover,
    /// as Kafka deletes it), else set aside as a stray. With
    /// [`Placement::Existing`] a directory whose `partition.metadata` is missing
    /// or unreadable is this partition's (the file is rewritten from the
    /// image); with [`Placement::New`] it is set aside. The metadata log's
    /// directory is never handed out.
    pub(crate) fn partition_dir(
        &self,
        topic: &str,
        partition: i32,
        topic_id: Uuid,
        placement: Placement,
        removed: &dyn Fn(Uuid) -> bool,
    ) -> Result<(PathBuf, bool), LogDirError> {
        let name = format!("{topic}-{partition}");
        if topic == METADATA_TOPIC {
            return Err(LogDirError::Reserved { dir: self.dirs[0].clone(), name });
        }
        for dir in self.online() {
            let candidate = dir.join(&name);
            if !candidate.is_dir() {
                continue;
            }
            match read_topic_id(&candidate) {
                Some(id) if id == topic_id => return Ok((candidate, false)),
                Some(id) if removed(id) => remove_deleted(&candidate, id)?,
                None if placement == Placement::Existing => {
                    tracing::warn!(dir = %candidate.display(), %topic_id, "partition.metadata is missing or unreadable: rewriting it from the metadata");
                    write_partition_metadata(&candidate, topic_id)?;
                    return Ok((candidate, false));
                }
                other => {
                    let why = match other {
                        Some(id) => format!("it belongs to topic id {id}, not {topic_id}"),
                        None => "it has no readable partition.metadata and the partition is new".to_string(),
                    };
                    set_aside(&candidate, &why)?;
                }
            }
        }
        let root = self
            .online()
            .min_by_key(|d| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0))
            .ok_or(LogDirError::AllOffline)?;
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if let Err(e) = write_partition_metadata(&dir, topic_id).and_then(|()| sync_dir(root)) {
            // A disk fault takes the dir offline; running out of descriptors is no disk fault.
            let descriptors = [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE].map(|e| Some(e.raw_os_error()));
            if let (LogDirError::Io { source, .. }, Some(health)) = (&e, self.health.of(root)) {
                if !descriptors.contains(&source.raw_os_error()) {
                    health.fail(&e);
                }
            }
            // Created here and not handed out: nothing may be left behind.
            // Unlinks and rmdir need no descriptor (the failure may be EMFILE).
            let metadata = dir.join(PARTITION_METADATA);
            let _ = std::fs::remove_file(storage::checkpoint::temporary_path(&metadata));
            let _ = std::fs::remove_file(&metadata);
            if let Err(cleanup) = std::fs::remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %cleanup, "cannot remove the directory of a failed partition creation");
            }
            return Err(e);
        }
        Ok((dir, true))
    }

    /// The partition's directory in a failed log dir and that dir's health,
    /// if it has one there (its `partition.metadata` names `topic_id`, or,
    /// with [`Placement::Existing`], none is readable): such a partition is
    /// offline rather than created anew in another dir.
    pub(crate) fn failed_dir_of(&self, topic: &str, partition: i32, topic_id: Uuid, placement: Placement) -> Option<(PathBuf, &Arc<LogDirHealth>)> {
        let name = format!("{topic}-{partition}");
        self.health.iter().filter(|h| h.is_offline()).map(|h| (h.path().join(&name), h)).find(|(dir, _)| {
            dir.is_dir()
                && match read_topic_id(dir) {
                    Some(id) => id == topic_id,
                    None => placement == Placement::Existing,
                }
        })
    }

    /// Settles partition directories the metadata does not know (`known`
    /// holds the `(topic, partition)` pairs it does): deletes those of topics
    /// it deleted, sets the others aside as strays. Returns how many were set aside.
    pub(crate) fn sweep_strays(
        &self,
        known: &HashSet<(String, i32)>,
        removed: &dyn Fn(Uuid) -> bool,
    ) -> Result<usize, LogDirError> {
        let mut strays = 0;
        for found in self.partition_dirs()? {
            if known.contains(&(found.topic.clone(), found.partition)) || !self.health.writable(&found.path) {
                continue;
            }
            match found.topic_id {
                Some(id) if removed(id) => remove_deleted(&found.path, id)?,
                _ => {
                    set_aside(&found.path, "no topic in the metadata owns it")?;
                    strays += 1;
                }
            }
        }
        Ok(strays)
    }

    /// The dirs that have not failed.
    fn online(&self) -> impl Iterator<Item = &PathBuf> {
        self.dirs.iter().filter(|d| self.health.writable(d))
    }

    /// Marks every log dir that has not failed as cleanly shut down (a failed
    /// one is recovered at the next start).
    pub(crate) fn mark_clean_shutdown(&self) -> Result<(), LogDirError> {
        for dir in self.online() {
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

/// Opens `<dir>/.lock` and takes an exclusive, non-blocking flock on it.
fn lock(dir: &Path) -> Result<File, LogDirError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(LogDirError::Locked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// The cluster id of a meta.properties file, checking its node.id.
fn read_meta_properties(path: &Path, text: &str, node_id: i32) -> Result<String, LogDirError> {
    let props: HashMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    if let Some(found) = props.get("node.id") {
        if *found != node_id.to_string() {
            return Err(LogDirError::NodeIdMismatch {
                path: path.to_path_buf(),
                found: (*found).to_string(),
                configured: node_id,
            });
        }
    }
    match props.get("cluster.id").filter(|c| !c.is_empty()) {
        Some(id) => Ok((*id).to_string()),
        None => Err(LogDirError::MetaProperties {
            path: path.to_path_buf(),
            reason: "meta.properties is empty or garbled: it has no cluster.id".to_string(),
        }),
    }
}

/// What in a log dir without meta.properties shows it is not fresh: a
/// subdirectory (partition or metadata log) or a metadata checkpoint.
fn existing_data(dir: &Path) -> Result<Option<String>, LogDirError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().map_err(io(dir))?.is_dir();
        if (is_dir && name != "lost+found") || name == CHECKPOINT_FILE {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Splits `<topic>-<partition>` (a legal topic name, a decimal partition).
fn parse_partition_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    crate::topics::validate_topic_name(topic).ok()?;
    Some((topic, partition.parse().ok()?))
}

/// The topic id in a partition directory's `partition.metadata`, if readable.
fn read_topic_id(dir: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(dir.join(PARTITION_METADATA)).ok()?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "topic_id")
        .and_then(|(_, v)| Uuid::parse_str(v.trim()).ok())
}

fn write_partition_metadata(dir: &Path, topic_id: Uuid) -> Result<(), LogDirError> {
    write_synced(&dir.join(PARTITION_METADATA), format!("version: 0\ntopic_id: {topic_id}\n").as_bytes())
}

/// Removes the directory of a partition of a deleted topic.
fn remove_deleted(dir: &Path, topic_id: Uuid) -> Result<(), LogDirError> {
    tracing::info!(dir = %dir.display(), %topic_id, "removing the directory of a deleted topic");
    std::fs::remove_dir_all(dir).map_err(io(dir))
}

/// Renames a partition directory to `<name>.<unique id>-stray` (Kafka's stray
/// naming) with one WARN line; its data stays for the operator.
fn set_aside(dir: &Path, why: &str) -> Result<(), LogDirError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let target = dir.with_file_name(format!("{name}.{}{STRAY_SUFFIX}", Uuid::new_v4().simple()));
    tracing::warn!(dir = %dir.display(), renamed_to = %target.display(), "stray partition directory ({why}): renamed aside, data kept");
    std::fs::rename(dir, &target).map_err(io(dir))?;
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogDirError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LogDirError> {
    storage::checkpoint::write_durably(path, bytes).map_err(io(path))
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

/// The UUID of its URL-safe base64 text form ([`base64_uuid`]), if valid.
fn uuid_from_base64(text: &str) -> Option<Uuid> {
    if text.len() != 22 {
        return None;
    }
    let mut bytes = [0u8; 16];
    let (mut acc, mut bits, mut n) = (0u32, 0, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 && n < 16 {
            bits -= 8;
            bytes[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    Some(Uuid::from_bytes(bytes))
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
    fn a_directory_id_reads_back_as_the_uuid_it_was_written_from() {
        for _ in 0..50 {
            let uuid = Uuid::new_v4();
            assert_eq!(uuid_from_base64(&base64_uuid(uuid)), Some(uuid));
        }
        assert_eq!(uuid_from_base64("not a uuid"), None);
    }

    fn never(_: Uuid) -> bool {
        false
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn cluster_id_is_kept_across_restarts_and_clean_shutdown_is_detected() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = vec![tmp.path().join("a")];
        let first = LogDirs::open(&dirs, 1).expect("open");
        assert_eq!(first.cluster_id.len(), 22);
        first.mark_clean_shutdown().expect("mark");
        let cluster_id = first.cluster_id.clone();
        drop(first);
        let second = LogDirs::open(&dirs, 1).expect("reopen");
        assert_eq!(second.cluster_id, cluster_id);
        assert!(second.clean_shutdown);
        second.consume_clean_shutdown_markers().expect("consume");
        drop(second);
        let third = LogDirs::open(&dirs, 1).expect("reopen after crash");
        assert!(!third.clean_shutdown, "marker is consumed at start");
    }

    #[test]
    fn a_second_opener_is_refused_until_the_first_is_gone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = vec![tmp.path().to_path_buf()];
        let first = LogDirs::open(&dirs, 1).expect("open");
        let err = LogDirs::open(&dirs, 1).err().expect("locked");
        assert!(matches!(err, LogDirError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another broker holds its lock"), "{err}");
        drop(first);
        LogDirs::open(&dirs, 1).expect("lock released with its holder");
    }

    #[test]
    fn other_node_id_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = vec![tmp.path().to_path_buf()];
        drop(LogDirs::open(&dirs, 1).expect("open"));
        let err = LogDirs::open(&dirs, 2).err().expect("must fail");
        assert!(err.to_string().contains("node.id"));
    }

    #[test]
    fn meta_properties_empty_or_missing_next_to_data_or_of_another_cluster_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = vec![tmp.path().to_path_buf()];
        let opened = LogDirs::open(&dirs, 1).expect("open");
        let cluster = opened.cluster_id.clone();
        let (part, _) = opened.partition_dir("t", 0, Uuid::new_v4(), Placement::New, &never).expect("dir");
        drop(opened);
        let meta = tmp.path().join(META_PROPERTIES);
        std::fs::write(&meta, b"").expect("empty");
        let err = LogDirs::open(&dirs, 1).err().expect("empty refused");
        assert!(err.to_string().contains("no cluster.id"), "{err}");
        std::fs::remove_file(&meta).expect("remove");
        let err = LogDirs::open(&dirs, 1).err().expect("missing refused");
        assert!(err.to_string().contains("is missing but the directory holds data"), "{err}");
        assert!(!meta.exists(), "a refused start writes nothing");
        std::fs::write(&meta, "cluster.id=other\nnode.id=1\n").expect("write");
        Checkpoint { cluster_id: cluster, end_offset: 3 }.write(&tmp.path().join(CHECKPOINT_FILE)).expect("cp");
        let err = LogDirs::open(&dirs, 1).err().expect("other cluster refused");
        assert!(err.to_string().contains("belongs to cluster"), "{err}");
        assert!(part.is_dir());
    }

    #[test]
    fn recreated_topic_does_not_reuse_old_directory_and_nothing_is_deleted_on_doubt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = LogDirs::open(&[tmp.path().to_path_buf()], 1).expect("open");
        let old_id = Uuid::new_v4();
        let (old, created) = dirs.partition_dir("t", 0, old_id, Placement::New, &never).expect("dir");
        assert!(created);
        std::fs::write(old.join("00000000000000000000.log"), b"old").expect("write");
        // Another topic id that the metadata never deleted: set aside, kept.
        let (new, _) = dirs.partition_dir("t", 0, Uuid::new_v4(), Placement::New, &never).expect("dir");
        assert!(!new.join("00000000000000000000.log").exists());
        let stray: Vec<String> = entries(tmp.path()).into_iter().filter(|n| n.ends_with("-stray")).collect();
        assert_eq!(stray.len(), 1, "{stray:?}");
        assert!(stray[0].starts_with("t-0."));
        assert_eq!(std::fs::read(tmp.path().join(&stray[0]).join("00000000000000000000.log")).expect("kept"), b"old");
        // A deleted topic's id: removed.
        std::fs::write(new.join("00000000000000000000.log"), b"deleted").expect("write");
        let gone = read_topic_id(&new).expect("id");
        let (newer, _) = dirs.partition_dir("t", 0, Uuid::new_v4(), Placement::New, &|id| id == gone).expect("dir");
        assert!(!newer.join("00000000000000000000.log").exists());
        assert_eq!(entries(tmp.path()).iter().filter(|n| n.ends_with("-stray")).count(), 1);
    }

    #[test]
    fn missing_partition_metadata_is_rewritten_for_an_existing_partition() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = LogDirs::open(&[tmp.path().to_path_buf()], 1).expect("open");
        let id = Uuid::new_v4();
        let (dir, _) = dirs.partition_dir("c", 0, id, Placement::New, &never).expect("dir");
        std::fs::write(dir.join("00000000000000000000.log"), b"data").expect("write");
        std::fs::write(dir.join(PARTITION_METADATA), b"garbage").expect("garble");
        let (again, created) = dirs.partition_dir("c", 0, id, Placement::Existing, &never).expect("dir");
        assert_eq!((again.as_path(), created), (dir.as_path(), false));
        assert_eq!(read_topic_id(&dir), Some(id));
        assert!(dir.join("00000000000000000000.log").exists());
    }

    #[test]
    fn the_metadata_log_directory_is_never_a_partition_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = LogDirs::open(&[tmp.path().to_path_buf()], 1).expect("open");
        let err = dirs.partition_dir(METADATA_TOPIC, 0, Uuid::new_v4(), Placement::New, &never).expect_err("refused");
        assert!(matches!(err, LogDirError::Reserved { .. }), "{err}");
    }

    #[test]
    fn strays_are_set_aside_and_deleted_topics_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dirs = LogDirs::open(&[tmp.path().to_path_buf()], 1).expect("open");
        let deleted = Uuid::new_v4();
        dirs.partition_dir("kept", 0, Uuid::new_v4(), Placement::New, &never).expect("dir");
        dirs.partition_dir("stray", 0, Uuid::new_v4(), Placement::New, &never).expect("dir");
        dirs.partition_dir("gone", 0, deleted, Placement::New, &never).expect("dir");
        std::fs::create_dir_all(dirs.metadata_dir()).expect("metadata dir");
        let known: HashSet<(String, i32)> = [("kept".to_string(), 0)].into();
        assert_eq!(dirs.sweep_strays(&known, &|id| id == deleted).expect("sweep"), 1);
        let names = entries(tmp.path());
        assert!(names.contains(&"kept-0".to_string()), "{names:?}");
        assert!(names.contains(&"__cluster_metadata-0".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("gone")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("stray-0.") && n.ends_with("-stray")), "{names:?}");
    }
}
