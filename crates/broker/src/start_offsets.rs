//! The per-log-dir offset checkpoints, Kafka's files and format:
//! * `log-start-offset-checkpoint`: log start offsets that DeleteRecords moved.
//!   A log knows only its segments; a start offset inside the oldest segment
//!   is remembered here. Kafka writes the file periodically; Potok writes it
//!   before answering DeleteRecords, so an acknowledged deletion survives a crash.
//! * `replication-offset-checkpoint`: high watermarks, every
//!   `replica.high.watermark.checkpoint.interval.ms` and at shutdown. A
//!   follower starts from its checkpointed high watermark; a leader on a
//!   single node starts with HW = LEO after recovery.
//! * `recovery-point-offset-checkpoint`: the offset below which each log is
//!   flushed, every `log.flush.offset.checkpoint.interval.ms` and at
//!   shutdown; an unclean start recovers only above it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use storage::checkpoint::{
    read_checkpoint, write_checkpoint, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_OFFSET_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
};

use crate::error::Result;
use crate::log_dir_health::LogDirHealth;
use crate::partition::Partition;
use crate::Broker;

/// One checkpoint file kind across the log dirs.
pub(crate) struct OffsetCheckpoint {
    /// The file name in each log dir.
    file: &'static str,
    /// What the files held at start, until each partition is opened.
    restored: Mutex<HashMap<(String, i32), i64>>,
    /// Serialises writers, so a later write always includes earlier changes.
    write_lock: Mutex<()>,
}

impl OffsetCheckpoint {
    /// Reads the checkpoint `file` of every log dir. As in Kafka, an
    /// unreadable file is logged and ignored: the partitions then start as if
    /// it had no entry for them.
    pub(crate) fn load(dirs: &[PathBuf], file: &'static str) -> OffsetCheckpoint {
        let mut restored = HashMap::new();
        for dir in dirs {
            let path = dir.join(file);
            match read_checkpoint(&path) {
                Ok(entries) => {
                    restored.extend(entries.into_iter().map(|(t, p, o)| ((t, p), o)));
                }
                Err(e) => tracing::warn!(error = %e, "ignoring {file} of {}", dir.display()),
            }
        }
        OffsetCheckpoint { file, restored: Mutex::new(restored), write_lock: Mutex::new(()) }
    }

    /// The offset checkpointed for a partition, once (at start-up).
    pub(crate) fn take(&self, topic: &str, partition: i32) -> Option<i64> {
        self.restored.lock().remove(&(topic.to_owned(), partition))
    }

    /// Forgets what start-up did not use (partitions of deleted topics), so a
    /// topic created later under the same name does not inherit it.
    pub(crate) fn finish_restore(&self) {
        self.restored.lock().clear();
    }

    /// Rewrites the checkpoint of the log dir `health` watches from the
    /// online partitions living there, with the offset `offset` gives (None:
    /// no entry), fsynced and renamed into place. A failed dir is not
    /// written; a failed write takes it offline.
    pub(crate) fn write(&self, health: &LogDirHealth, partitions: &[Arc<Partition>], offset: impl Fn(&Partition) -> Option<i64>) -> Result<()> {
        let _guard = self.write_lock.lock();
        if health.is_offline() {
            return Ok(());
        }
        let dir = health.path();
        let mut entries: Vec<_> = partitions
            .iter()
            .filter(|p| p.log_dir() == dir && p.check_online().is_ok())
            .filter_map(|p| Some((p.topic.clone(), p.index, offset(p)?)))
            .collect();
        entries.sort();
        Ok(health.watch(write_checkpoint(&dir.join(self.file), &entries))?)
    }
}

/// The three offset checkpoints of the log dirs.
pub(crate) struct OffsetCheckpoints {
    /// `log-start-offset-checkpoint`.
    pub(crate) log_start: OffsetCheckpoint,
    /// `replication-offset-checkpoint`.
    pub(crate) high_watermark: OffsetCheckpoint,
    /// `recovery-point-offset-checkpoint`.
    pub(crate) recovery_point: OffsetCheckpoint,
}

impl OffsetCheckpoints {
    /// Reads the checkpoints of every log dir.
    pub(crate) fn load(dirs: &[PathBuf]) -> OffsetCheckpoints {
        OffsetCheckpoints {
            log_start: OffsetCheckpoint::load(dirs, LOG_START_OFFSET_CHECKPOINT),
            high_watermark: OffsetCheckpoint::load(dirs, REPLICATION_OFFSET_CHECKPOINT),
            recovery_point: OffsetCheckpoint::load(dirs, RECOVERY_POINT_OFFSET_CHECKPOINT),
        }
    }

    /// Forgets every restored entry start-up did not use.
    pub(crate) fn finish_restore(&self) {
        for c in [&self.log_start, &self.high_watermark, &self.recovery_point] {
            c.finish_restore();
        }
    }
}

/// A start offset above 0 is worth remembering (0 is where every log starts).
fn moved_log_start(p: &Partition) -> Option<i64> {
    Some(p.log_start_offset()).filter(|&o| o > 0)
}

impl Broker {
    /// Rewrites every log dir's `log-start-offset-checkpoint` from the hosted
    /// partitions.
    pub(crate) fn checkpoint_log_start_offsets(&self) -> Result<()> {
        let partitions = self.replicas.all_partitions();
        for health in self.log_dirs.health().iter() {
            self.checkpoints.log_start.write(health, &partitions, moved_log_start)?;
        }
        Ok(())
    }

    /// Rewrites every log dir's `replication-offset-checkpoint` (high
    /// watermarks) and, with `recovery_points`, its
    /// `recovery-point-offset-checkpoint`, from the hosted partitions.
    pub(crate) fn checkpoint_replication_offsets(&self, recovery_points: bool) -> Result<()> {
        let partitions = self.replicas.all_partitions();
        for health in self.log_dirs.health().iter() {
            self.checkpoints.high_watermark.write(health, &partitions, |p| Some(p.high_watermark()))?;
            if recovery_points {
                self.checkpoints.recovery_point.write(health, &partitions, |p| p.recovery_point().ok())?;
            }
        }
        Ok(())
    }

    /// DeleteRecords for one partition: moves its log start offset and
    /// checkpoints it before returning the new low watermark.
    pub(crate) fn delete_records(&self, partition: &Partition, offset: i64) -> Result<i64> {
        let low_watermark = partition.delete_records_before(offset)?;
        if let Some(health) = self.log_dirs.health().of(partition.log_dir()) {
            self.checkpoints.log_start.write(health, &self.replicas.all_partitions(), moved_log_start)?;
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
        let offsets = OffsetCheckpoint::load(std::slice::from_ref(&root), LOG_START_OFFSET_CHECKPOINT);
        assert_eq!(offsets.take("t", 0), None);
        let entries = (0..3).map(|_| (None, Some(bytes::Bytes::from_static(b"v")), 1));
        let mut batch = crate::record_batch::encode(entries, records::Compression::None).expect("encode");
        p.append(&mut batch, 0).expect("append");
        assert!(p.delete_records_before(4).is_err(), "past the high watermark");
        assert_eq!(p.delete_records_before(2).expect("delete"), 2);
        assert_eq!(p.delete_records_before(1).expect("backwards"), 2, "never moves back");
        offsets.write(&LogDirHealth::new(root.clone(), false), std::slice::from_ref(&p), moved_log_start).expect("write");
        let text = std::fs::read_to_string(root.join(LOG_START_OFFSET_CHECKPOINT)).expect("read");
        assert_eq!(text, "0\n1\nt 0 2\n");
        let reloaded = OffsetCheckpoint::load(std::slice::from_ref(&root), LOG_START_OFFSET_CHECKPOINT);
        assert_eq!(reloaded.take("t", 0), Some(2));
        assert_eq!(reloaded.take("t", 0), None);
    }
}
