//! Log start offsets that DeleteRecords moved, kept across restarts in each log
//! dir's `log-start-offset-checkpoint` (Kafka's file and format).
//!
//! A log knows only its segments; a start offset inside the oldest segment is
//! remembered here. Kafka writes the file periodically; Potok writes it before
//! answering DeleteRecords, so an acknowledged deletion survives a crash.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use storage::checkpoint::{read_checkpoint, write_checkpoint, LOG_START_OFFSET_CHECKPOINT};

use crate::error::Result;
use crate::log_dir_health::LogDirHealth;
use crate::partition::Partition;
use crate::Broker;

/// The checkpointed start offsets of the log dirs.
pub(crate) struct LogStartOffsets {
    /// What the files held at start, until each partition is opened.
    restored: Mutex<HashMap<(String, i32), i64>>,
    /// Serialises writers, so a later write always includes earlier changes.
    write_lock: Mutex<()>,
}

impl LogStartOffsets {
    /// Reads the checkpoint of every log dir. As in Kafka, an unreadable file is
    /// logged and ignored: the partitions then start at their oldest segment.
    pub(crate) fn load(dirs: &[PathBuf]) -> LogStartOffsets {
        let mut restored = HashMap::new();
        for dir in dirs {
            let path = dir.join(LOG_START_OFFSET_CHECKPOINT);
            match read_checkpoint(&path) {
                Ok(entries) => {
                    restored.extend(entries.into_iter().map(|(t, p, o)| ((t, p), o)));
                }
                Err(e) => tracing::warn!(error = %e, "ignoring the log start offsets of {}", dir.display()),
            }
        }
        LogStartOffsets { restored: Mutex::new(restored), write_lock: Mutex::new(()) }
    }

    /// The start offset checkpointed for a partition, once (at start-up).
    pub(crate) fn take(&self, topic: &str, partition: i32) -> Option<i64> {
        self.restored.lock().remove(&(topic.to_owned(), partition))
    }

    /// Forgets what start-up did not use (partitions of deleted topics), so a
    /// topic created later under the same name starts at 0.
    pub(crate) fn finish_restore(&self) {
        self.restored.lock().clear();
    }

    /// Rewrites the checkpoint of the log dir `health` watches from the
    /// partitions living there whose start offset is above 0 (fsynced and
    /// renamed into place). A failed dir is not written; a failed write takes
    /// it offline.
    pub(crate) fn write(&self, health: &LogDirHealth, partitions: &[Arc<Partition>]) -> Result<()> {
        let _guard = self.write_lock.lock();
        if health.is_offline() {
            return Ok(());
        }
        let dir = health.path();
        let mut entries: Vec<_> = partitions
            .iter()
            .filter(|p| p.log_dir() == dir && p.log_start_offset() > 0)
            .map(|p| (p.topic.clone(), p.index, p.log_start_offset()))
            .collect();
        entries.sort();
        Ok(health.watch(write_checkpoint(&dir.join(LOG_START_OFFSET_CHECKPOINT), &entries))?)
    }
}

impl Broker {
    /// Rewrites every log dir's `log-start-offset-checkpoint` from the hosted
    /// partitions.
    pub(crate) fn checkpoint_log_start_offsets(&self) -> Result<()> {
        let partitions = self.replicas.all_partitions();
        for health in self.log_dirs.health().iter() {
            self.log_start_offsets.write(health, &partitions)?;
        }
        Ok(())
    }

    /// DeleteRecords for one partition: moves its log start offset and
    /// checkpoints it before returning the new low watermark.
    pub(crate) fn delete_records(&self, partition: &Partition, offset: i64) -> Result<i64> {
        let low_watermark = partition.delete_records_before(offset)?;
        if let Some(health) = self.log_dirs.health().of(partition.log_dir()) {
            self.log_start_offsets.write(health, &self.replicas.all_partitions())?;
        }
        Ok(low_watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::{Log, LogConfig};
    use uuid::Uuid;

    #[test]
    fn written_offsets_are_restored_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let log = Log::open(&root.join("t-0"), LogConfig::default(), true).expect("open");
        let p = Arc::new(Partition::new("t".into(), Uuid::new_v4(), 0, log, 0));
        let offsets = LogStartOffsets::load(std::slice::from_ref(&root));
        assert_eq!(offsets.take("t", 0), None);
        let entries = (0..3).map(|_| (None, Some(bytes::Bytes::from_static(b"v")), 1));
        let mut batch = crate::record_batch::encode(entries, kafka_protocol::records::Compression::None).expect("encode");
        p.append(&mut batch, 0).expect("append");
        assert!(p.delete_records_before(4).is_err(), "past the high watermark");
        assert_eq!(p.delete_records_before(2).expect("delete"), 2);
        assert_eq!(p.delete_records_before(1).expect("backwards"), 2, "never moves back");
        offsets.write(&LogDirHealth::new(root.clone(), false), std::slice::from_ref(&p)).expect("write");
        let text = std::fs::read_to_string(root.join(LOG_START_OFFSET_CHECKPOINT)).expect("read");
        assert_eq!(text, "0\n1\nt 0 2\n");
        let reloaded = LogStartOffsets::load(std::slice::from_ref(&root));
        assert_eq!(reloaded.take("t", 0), Some(2));
        assert_eq!(reloaded.take("t", 0), None);
    }
}
