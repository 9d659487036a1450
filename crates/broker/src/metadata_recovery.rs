//! Start-up check of the metadata log against the data on disk, and the
//! `potok.metadata.recover` escape hatch that rebuilds topics from the
//! partition directories.
//!
//! The metadata log is the only record of which topics exist. If it is lost
//! or cut short while partition data remains, starting would forget topics
//! (and a later auto-creation would reuse their names), so start-up stops with
//! one line instead. "Cut short" is judged against the metadata checkpoint in
//! every log dir (the committed end offset, rewritten after every append); a
//! log dir written before checkpoints existed is judged by "empty metadata log
//! but partition directories exist".

use std::collections::BTreeMap;
use std::path::Path;

use metadata::{ConfigRecord, MetadataLog, MetadataRecord, PartitionRecord, TopicRecord, RESOURCE_TOPIC};
use uuid::Uuid;

use crate::log_dirs::{LogDirs, PartitionDir};

/// The setting that rebuilds topics from the partition directories.
pub(crate) const RECOVER_SETTING: &str = "potok.metadata.recover";

/// What the operator can do about a lost or damaged metadata log.
pub(crate) fn way_out() -> String {
    format!("restore it, or start once with --override {RECOVER_SETTING}=true to rebuild the topics from the partition directories")
}

/// Why the metadata log cannot be trusted to list every topic, if so: one
/// line naming the files and the way out.
/// `dir` is the metadata log's directory and `end` its end offset (0 when the
/// directory is missing).
pub(crate) fn missing_metadata(log_dirs: &LogDirs, dir: &Path, end: i64, found: &[PartitionDir]) -> Option<String> {
    let dir = dir.display();
    let way_out = way_out();
    if let Some((checkpoint, committed)) = log_dirs.committed() {
        if end < *committed {
            return Some(format!(
                "the metadata log {dir} ends at offset {end} but {} records offset {committed} as committed: the log is missing or truncated and topics would be lost; {way_out}",
                checkpoint.display()
            ));
        }
    }
    if end == 0 {
        if let Some(first) = found.first() {
            return Some(format!(
                "the metadata log {dir} is empty but {} partition directories exist (first {}): the log is missing and topics would be lost; {way_out}",
                found.len(),
                first.path.display()
            ));
        }
    }
    None
}

/// Appends a topic to the metadata for every topic name among `found` that the
/// metadata does not know, with the topic id of its `partition.metadata` (a
/// new id if none is readable; ids the metadata deleted are skipped), as many
/// partitions as the highest index found (missing ones start empty), and the
/// default configs except `extra_configs(name)`. Returns the names rebuilt.
pub(crate) fn rebuild_topics(
    metadata: &mut MetadataLog,
    found: &[PartitionDir],
    node_id: i32,
    extra_configs: &dyn Fn(&str) -> Vec<(String, String)>,
    now_ms: i64,
) -> metadata::Result<Vec<String>> {
    let mut by_topic: BTreeMap<&str, Vec<&PartitionDir>> = BTreeMap::new();
    for dir in found {
        by_topic.entry(dir.topic.as_str()).or_default().push(dir);
    }
    let mut rebuilt = Vec::new();
    for (name, dirs) in by_topic {
        let image = metadata.image();
        if image.topic(name).is_some() {
            continue;
        }
        let usable = |id: &Uuid| !image.was_removed(*id) && image.topic_by_id(*id).is_none();
        let topic_id = match dirs.iter().find_map(|d| d.topic_id.filter(usable)) {
            Some(id) => id,
            None if dirs.iter().all(|d| d.topic_id.is_some()) => continue,
            None => Uuid::new_v4(),
        };
        let count = dirs
            .iter()
            .filter(|d| d.topic_id.is_none_or(|id| id == topic_id))
            .map(|d| d.partition)
            .max()
            .map_or(0, |p| p + 1);
        let mut records = vec![MetadataRecord::Topic(TopicRecord { name: name.to_string(), topic_id })];
        records.extend((0..count).map(|partition| {
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition,
                replicas: vec![node_id],
                isr: vec![node_id],
                leader: node_id,
                leader_epoch: 0,
                ..Default::default()
            })
        }));
        records.extend(extra_configs(name).into_iter().map(|(key, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: name.to_string(),
                name: key,
                value: Some(value),
            })
        }));
        metadata.append(&records, now_ms)?;
        tracing::warn!(topic = name, %topic_id, partitions = count, "rebuilt topic from its partition directories (configs are defaults)");
        rebuilt.push(name.to_string());
    }
    Ok(rebuilt)
}
