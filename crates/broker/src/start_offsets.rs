//! The per-log-dir offset checkpoints, Kafka's files and format:
//! * `log-start-offset-checkpoint`: log start offsets that DeleteRecords moved.
//!   A log knows only its segments; a start offset inside the oldest segment
//!   is remembered here. Kafka writes the file periodically; Potok writes it
//!   before answering DeleteRecords, so an acknowledged deletion survives a crash.
//! * `replication-offset-checkpoint`: high watermarks, every
//!   `replica.high.watermark.checkpoint.interval.ms` and at shutdown. A
//!   partition opens with min(checkpointed HW, log end) (no entry: the log
//!   start), then its leader moves it as its ISR allows: on a single node,
//!   the leader is its whole ISR, so HW = LEO after recovery.
//! * `recovery-point-offset-checkpoint`: the offset below which each log is
//!   flushed, every `log.flush.offset.checkpoint.interval.ms` and at
//!   shutdown; an unclean start recovers only above it.
//!
//! As in Kafka, an unreadable log start or recovery point file is logged and
//! ignored (`LogManager.loadLogs`), while an unreadable high watermark file
//! takes its log dir offline (`CheckpointFileWithFailureHandler`); for the
//! dir holding the metadata log that stops start-up, as Kafka halts. No file
//! is written to an offline dir.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use storage::checkpoint::{
    read_checkpoint, write_checkpoint, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_OFFSET_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
};

use crate::error::Result;
use crate::log_dir_health::{LogDirHealth, LogDirHealths};
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

/// What an unreadable checkpoint file does at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Logged and ignored: the partitions start as if it had no entry for them.
    Ignored,
    /// Takes its log dir offline; the dir holding the metadata log fails
    /// start-up instead (Err).
    FailsDir,
}

impl OffsetCheckpoint {
    /// Reads the checkpoint `file` of every online log dir; an unreadable
    /// one is handled as `unreadable` says.
    pub(crate) fn load(healths: &LogDirHealths, file: &'static str, unreadable: Unreadable) -> std::result::Result<OffsetCheckpoint, storage::StorageError> {
        let mut restored = HashMap::new();
        for health in healths.iter().filter(|h| !h.is_offline()) {
            let dir = health.path();
            match read_checkpoint(&dir.join(file)) {
                Ok(entries) => {
                    restored.extend(entries.into_iter().map(|(t, p, o)| ((t, p), o)));
                }
                Err(e) => match unreadable {
                    Unreadable::Ignored => tracing::warn!(error = %e, "ignoring {file} of {}", dir.display()),
                    Unreadable::FailsDir if health.holds_metadata() => return Err(e),
                    Unreadable::FailsDir => health.fail(&format_args!("{e} (repair or remove the file, then restart)")),
                },
            }
        }
        Ok(OffsetCheckpoint { file, restored: Mutex::new(restored), write_lock: Mutex::new(()) })
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
    /// Reads the checkpoints of every log dir. Err: the high watermarks of
    /// the dir holding the metadata log cannot be read.
    pub(crate) fn load(healths: &LogDirHealths) -> std::result::Result<OffsetCheckpoints, storage::StorageError> {
        // The high watermarks first: a dir they take offline is not read further.
        let high_watermark = OffsetCheckpoint::load(healths, REPLICATION_OFFSET_CHECKPOINT, Unreadable::FailsDir)?;
        Ok(OffsetCheckpoints {
            log_start: OffsetCheckpoint::load(healths, LOG_START_OFFSET_CHECKPOINT, Unreadable::Ignored)?,
            high_watermark,
            recovery_point: OffsetCheckpoint::load(healths, RECOVERY_POINT_OFFSET_CHECKPOINT, Unreadable::Ignored)?,
        })
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
    use crate::config::ServerConfig;
    use crate::topics::NewTopic;
    use crate::{now_ms, StartError};
    use kafka_protocol::error::ResponseError;
    use metadata::{MetadataRecord, PartitionRecord};
    use storage::{Log, LogConfig};
    use uuid::Uuid;

    fn config(dirs: &[&std::path::Path]) -> ServerConfig {
        let dirs = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(",");
        let entry = |k: &str, v: &str| (k.to_string(), v.to_string(), "test".to_string());
        ServerConfig::from_entries(vec![entry("node.id", "1"), entry("log.dirs", &dirs)]).expect("config")
    }

    fn create(broker: &Broker, partitions: i32, records: usize) -> Uuid {
        let new = NewTopic { name: "t".into(), num_partitions: partitions, replication_factor: -1, assignments: Vec::new(), configs: Vec::new() };
        let topic = broker.create_topic(new, false).expect("create");
        for index in 0..partitions {
            let entries = (0..records).map(|_| (None, Some(bytes::Bytes::from_static(b"v")), 1));
            let mut batch = crate::record_batch::encode(entries, records::Compression::None).expect("encode");
            broker.replicas.partition("t", index).expect("hosted").append(&mut batch, 0).expect("append");
        }
        topic.id
    }

    #[test]
    fn a_restarted_follower_starts_at_its_checkpointed_high_watermark_and_a_sole_leader_at_its_log_end() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(config(&[tmp.path()])).expect("open");
        let id = create(&broker, 2, 5);
        // Partition 1 now follows broker 2 (no fetcher runs outside a runtime).
        let follow = MetadataRecord::Partition(PartitionRecord { topic_id: id, partition: 1, replicas: vec![1, 2], isr: vec![1, 2], leader: 2, leader_epoch: 1, ..Default::default() });
        {
            let mut controller = broker.controller.lock();
            let committed = controller.commit(&[follow], now_ms()).expect("commit");
            broker.publish_change(&committed, controller.image(), None);
        }
        broker.shutdown().expect("shutdown");
        drop(broker);
        let checkpoint = tmp.path().join(REPLICATION_OFFSET_CHECKPOINT);
        assert_eq!(std::fs::read_to_string(&checkpoint).expect("read"), "0\n2\nt 0 5\nt 1 5\n");
        // As if checkpointed before the last records were committed.
        write_checkpoint(&checkpoint, &[("t".into(), 0, 2), ("t".into(), 1, 3)]).expect("write");
        let broker = Broker::open(config(&[tmp.path()])).expect("reopen");
        let offsets = |index| broker.replicas.partition("t", index).expect("hosted").offsets();
        assert_eq!(offsets(0).high_watermark, 5, "a sole leader is its whole ISR: a consumer reads everything");
        assert_eq!(offsets(1).high_watermark, 3, "a follower keeps the checkpointed one until its leader's moves");
        assert_eq!(offsets(1).log_end, 5);
        broker.shutdown().expect("shutdown");
    }

    #[test]
    fn an_unreadable_high_watermark_file_takes_its_log_dir_offline_or_refuses_start_in_the_metadata_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let broker = Broker::open(config(&[&a, &b])).expect("open");
        create(&broker, 2, 3);
        let in_b = (0..2).find(|&i| broker.replicas.partition("t", i).expect("hosted").log_dir() == b).expect("a partition in b");
        broker.shutdown().expect("shutdown");
        drop(broker);
        let garbage = "0\n1\nt x\n";
        std::fs::write(b.join(REPLICATION_OFFSET_CHECKPOINT), garbage).expect("corrupt");
        let broker = Broker::open(config(&[&a, &b])).expect("another dir's damage does not stop start-up");
        assert_eq!(broker.offline_log_dirs(), vec![b.clone()]);
        let offline = broker.replicas.partition("t", in_b).expect("hosted");
        let err = offline.read(0, 1 << 20).expect_err("offline");
        assert_eq!(err.response_error(), ResponseError::KafkaStorageError);
        assert!(err.to_string().contains(REPLICATION_OFFSET_CHECKPOINT), "{err}");
        let online = broker.replicas.partition("t", 1 - in_b).expect("hosted");
        assert_eq!(online.high_watermark(), 3);
        broker.shutdown().expect("shutdown");
        drop((offline, online, broker));
        assert_eq!(std::fs::read_to_string(b.join(REPLICATION_OFFSET_CHECKPOINT)).expect("read"), garbage, "nothing written to the offline dir");
        assert!(b.join(format!("t-{in_b}")).is_dir(), "its data stays");

        std::fs::write(a.join(REPLICATION_OFFSET_CHECKPOINT), garbage).expect("corrupt");
        let err = Broker::open(config(&[&a, &b])).err().expect("the metadata log's dir refuses start-up");
        assert!(matches!(err, StartError::HighWatermarks(_)), "{err}");
        assert!(err.to_string().contains(&a.join(REPLICATION_OFFSET_CHECKPOINT).display().to_string()), "{err}");
    }

    #[test]
    fn written_offsets_are_restored_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let log = Log::open(&root.join("t-0"), LogConfig::default(), true).expect("open");
        let p = Arc::new(Partition::new("t".into(), Uuid::new_v4(), 0, log, 0));
        let offsets = OffsetCheckpoint::load(&LogDirHealths::new(std::slice::from_ref(&root)), LOG_START_OFFSET_CHECKPOINT, Unreadable::Ignored).expect("load");
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
        let reloaded = OffsetCheckpoint::load(&LogDirHealths::new(std::slice::from_ref(&root)), LOG_START_OFFSET_CHECKPOINT, Unreadable::Ignored).expect("load");
        assert_eq!(reloaded.take("t", 0), Some(2));
        assert_eq!(reloaded.take("t", 0), None);
    }
}
