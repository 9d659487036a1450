use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use records::{BatchHeader, BatchOptions, BatchWriter};
use storage::{Log, LogConfig};

use crate::checkpoint::Checkpoint;
use crate::delta::ImageDelta;
use crate::error::{MetadataError, Result};
use crate::image::Image;
use crate::record::MetadataRecord;
use crate::snapshot;

/// The durable metadata log and the image built from it.
///
/// Appends are atomic per call (one record batch) and fsynced before they are
/// applied, so an acknowledged topic creation survives a crash.
pub struct MetadataLog {
    log: Log,
    image: Image,
    /// Checkpoint files rewritten after every append, and the cluster id they record.
    checkpoints: Vec<std::path::PathBuf>,
    cluster_id: String,
    /// The records below this offset are in the latest snapshot.
    snapshot_offset: i64,
    /// Bytes appended since the latest snapshot (or since the log start).
    bytes_since_snapshot: u64,
    snapshot_bytes: u64,
    /// Which log dirs may still be written, and where write failures go.
    watch: Option<Arc<dyn LogDirWatch>>,
}

/// The broker's view of its log dirs' health, for the files the metadata log
/// writes: a failed write takes its log dir offline, and nothing is written
/// to an offline dir again.
pub trait LogDirWatch: Send + Sync {
    /// Whether the log dir holding `path` may still be written.
    fn writable(&self, path: &Path) -> bool;
    /// Writing `path` failed with an I/O error: its log dir failed.
    fn failed(&self, path: &Path, error: &dyn std::fmt::Display);
}

/// The settings of the metadata log, Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataLogConfig {
    /// `metadata.log.segment.bytes`: roll segments at this size. Default 1 GiB.
    pub segment_bytes: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`: write a snapshot
    /// once the log grew by more than this since the last. Default 20 MiB.
    pub snapshot_bytes: u64,
}

impl Default for MetadataLogConfig {
    fn default() -> Self {
        MetadataLogConfig { segment_bytes: 1 << 30, snapshot_bytes: 20 * 1024 * 1024 }
    }
}

/// The epoch snapshots are named with: a single node's log has only epoch 0.
const SNAPSHOT_EPOCH: i32 = 0;

/// One committed change: where it landed and what it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The offset of its last record.
    pub last_offset: i64,
    /// What its records changed in the image.
    pub delta: ImageDelta,
}

impl MetadataLog {
    /// Opens the log in `dir` (normally `<log.dirs[0]>/__cluster_metadata-0`) and
    /// replays it into an image; a corrupt record is an error naming the log.
    pub fn open(dir: &Path, clean_shutdown: bool) -> Result<MetadataLog> {
        Self::open_with(dir, clean_shutdown, false)
    }

    /// [`MetadataLog::open_configured`] with the default settings.
    pub fn open_with(dir: &Path, clean_shutdown: bool, cut_corrupt: bool) -> Result<MetadataLog> {
        Self::open_configured(dir, &MetadataLogConfig::default(), clean_shutdown, cut_corrupt)
    }

    /// Opens the log, loads its latest snapshot, if any, and replays the
    /// records after it, one batch (one change) at a time: a batch is applied
    /// only when all its records decode. With `cut_corrupt`, a corrupt batch
    /// and everything after it are cut from the log (one WARN) instead of
    /// failing, so an operator who chose to rebuild can start.
    pub fn open_configured(dir: &Path, config: &MetadataLogConfig, clean_shutdown: bool, cut_corrupt: bool) -> Result<MetadataLog> {
        let log_config = LogConfig { segment_bytes: config.segment_bytes, ..LogConfig::default() };
        let mut log = Log::open(dir, log_config, clean_shutdown)?;
        let from_log_start = |log: &Log| (Image::default(), log.log_start_offset());
        let (mut image, mut offset) = match snapshot::latest(dir)? {
            Some((snapshot_offset, path)) => {
                let loaded = if snapshot_offset > log.log_end_offset() {
                    Err(snapshot::error(&path, format!("the metadata log ends at offset {} before it", log.log_end_offset())))
                } else {
                    snapshot::read(&path)
                };
                match loaded {
                    Ok(image) => (image, snapshot_offset),
                    // Recovering: what the log still holds, then the partition directories.
                    Err(e) if cut_corrupt => {
                        tracing::warn!(error = %e, "ignoring the metadata snapshot");
                        from_log_start(&log)
                    }
                    Err(e) => return Err(e),
                }
            }
            None if log.log_start_offset() > 0 && !cut_corrupt => {
                return Err(MetadataError::CorruptRecord {
                    dir: dir.to_path_buf(),
                    offset: log.log_start_offset(),
                    reason: "the log starts here but no snapshot holds the records before it".into(),
                })
            }
            None => from_log_start(&log),
        };
        let snapshot_offset = offset;
        let mut bytes_since_snapshot = 0u64;
        while offset < log.log_end_offset() {
            // At least one whole batch, and only one.
            let chunk = log.read(offset, 1)?;
            if chunk.is_empty() {
                break;
            }
            let size = chunk.len() as u64;
            match decode_batch(chunk, offset) {
                Ok((records, next)) => {
                    image.apply_all(&records);
                    bytes_since_snapshot += size;
                    offset = next;
                }
                Err(reason) if cut_corrupt => {
                    tracing::warn!(dir = %dir.display(), offset, %reason, "cutting the metadata log at a corrupt record");
                    log.truncate_to(offset)?;
                    break;
                }
                Err(reason) => {
                    return Err(MetadataError::CorruptRecord { dir: dir.to_path_buf(), offset, reason })
                }
            }
        }
        Ok(MetadataLog {
            log,
            image,
            checkpoints: Vec::new(),
            cluster_id: String::new(),
            snapshot_offset,
            bytes_since_snapshot,
            snapshot_bytes: config.snapshot_bytes,
            watch: None,
        })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// The offset the next record will get: the committed end of the log.
    pub fn end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// From now on, records the committed end in a [`Checkpoint`] at each of
    /// `paths` after every append; writes them once now.
    pub fn set_checkpoints(&mut self, paths: Vec<std::path::PathBuf>, cluster_id: String) -> Result<()> {
        self.checkpoints = paths;
        self.cluster_id = cluster_id;
        self.write_checkpoints()
    }

    /// From now on, skips checkpoints in log dirs `watch` calls offline and
    /// reports I/O failures of the log and its checkpoints to it.
    pub fn set_log_dir_watch(&mut self, watch: Arc<dyn LogDirWatch>) {
        self.watch = Some(watch);
    }

    fn write_checkpoints(&self) -> Result<()> {
        let checkpoint = Checkpoint { cluster_id: self.cluster_id.clone(), end_offset: self.end_offset() };
        let mut first_error = None;
        for path in &self.checkpoints {
            if self.watch.as_ref().is_some_and(|w| !w.writable(path)) {
                continue;
            }
            if let Err(e) = checkpoint.write(path) {
                if let Some(w) = &self.watch {
                    w.failed(path, &e);
                }
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Reports an I/O failure of the log itself to the watch.
    fn watched<T>(&self, result: storage::Result<T>) -> Result<T> {
        if let (Err(e @ storage::StorageError::Io { .. }), Some(w)) = (&result, &self.watch) {
            w.failed(self.log.dir(), e);
        }
        Ok(result?)
    }

    fn watched_snapshot<T>(&self, result: Result<T>) -> Result<T> {
        if let (Err(e @ MetadataError::Snapshot { .. }), Some(w)) = (&result, &self.watch) {
            w.failed(self.log.dir(), e);
        }
        result
    }

    /// The current image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Appends `records` as one atomic batch, fsyncs, and applies them;
    /// returns the offset of the last one and what they changed. Writes a
    /// snapshot once more than `snapshot_bytes` were appended since the last.
    pub fn append(&mut self, records: &[MetadataRecord], now_ms: i64) -> Result<Committed> {
        if records.is_empty() {
            return Ok(Committed { last_offset: self.end_offset() - 1, delta: ImageDelta::default() });
        }
        let mut batch = encode(records, now_ms)?;
        let appended = self.log.append(&mut batch, 0, now_ms).map(|_| ());
        self.watched(appended)?;
        let flushed = self.log.flush();
        self.watched(flushed)?;
        let delta = self.image.apply_all(records);
        // The append is committed: a checkpoint left behind only weakens the
        // start-up check (it never claims more than was committed).
        if let Err(e) = self.write_checkpoints() {
            tracing::warn!(error = %e, "cannot update the metadata checkpoint");
        }
        self.bytes_since_snapshot += batch.len() as u64;
        if self.bytes_since_snapshot > self.snapshot_bytes {
            self.bytes_since_snapshot = 0;
            if let Err(e) = self.snapshot(now_ms) {
                // The change is committed and the log still holds every record;
                // an I/O failure was reported to the log dir watch above.
                tracing::error!(error = %e, "cannot write a metadata snapshot");
            }
        }
        Ok(Committed { last_offset: self.end_offset() - 1, delta })
    }

    /// Writes the image as a snapshot at the log end, removes older
    /// snapshots and deletes the segments wholly below it.
    /// A failed write or removal in the metadata dir is reported to the log
    /// dir watch like a failed append (the broker stops): never retried.
    pub fn snapshot(&mut self, now_ms: i64) -> Result<()> {
        let end = self.end_offset();
        let written = snapshot::write(self.log.dir(), &self.image, end, SNAPSHOT_EPOCH, now_ms);
        let path = self.watched_snapshot(written)?;
        let removed = snapshot::remove_older(self.log.dir(), end);
        self.watched_snapshot(removed)?;
        let advanced = self.log.advance_log_start_offset(end);
        let segments = self.watched(advanced)?;
        self.snapshot_offset = end;
        tracing::info!(snapshot = %path.display(), segments_deleted = segments, "wrote a metadata snapshot");
        Ok(())
    }

    /// The offset the latest snapshot holds the records up to (0 if none).
    pub fn snapshot_offset(&self) -> i64 {
        self.snapshot_offset
    }

    /// Flushes and closes the log.
    pub fn close(self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

/// The records of the one batch in `chunk` from `offset` on, and the offset
/// after the batch; the reason if any of it does not decode.
pub(crate) fn decode_batch(chunk: Bytes, offset: i64) -> std::result::Result<(Vec<MetadataRecord>, i64), String> {
    let header = BatchHeader::parse(&chunk).map_err(|e| e.to_string())?;
    // Metadata batches are written uncompressed; the bound only guards a forged one.
    let (raw, _) = records::decode_records(&header, &chunk, 64 << 20).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for record in raw {
        let record_offset = record.offset(&header);
        if record_offset < offset {
            continue;
        }
        let value = record.value.unwrap_or_default();
        let decoded: MetadataRecord =
            serde_json::from_slice(&value).map_err(|e| format!("record at offset {record_offset}: {e}"))?;
        records.push(decoded);
    }
    Ok((records, header.next_offset().max(offset + 1)))
}

/// One change as one batch, so that it is appended (and recovered) whole or not at all.
pub(crate) fn encode(records: &[MetadataRecord], now_ms: i64) -> Result<BytesMut> {
    let mut batch = BatchWriter::new(BatchOptions::default());
    for record in records {
        let value = serde_json::to_vec(record).map_err(|e| MetadataError::Encode(e.to_string()))?;
        batch.push(now_ms, None, Some(&value), std::iter::empty()).map_err(|e| MetadataError::Encode(e.to_string()))?;
    }
    batch.finish().map_err(|e| MetadataError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TopicRecord;
    use uuid::Uuid;

    #[test]
    fn one_change_is_one_batch_so_it_is_recovered_whole_or_not_at_all() {
        let records: Vec<MetadataRecord> = (0..3)
            .map(|i| MetadataRecord::Topic(TopicRecord { name: format!("t{i}"), topic_id: Uuid::new_v4() }))
            .collect();
        let buf = encode(&records, 1).expect("encode");
        let header = BatchHeader::parse(&buf).expect("header");
        assert_eq!(header.total_size(), buf.len());
        assert_eq!(header.record_count, 3);
    }

    #[test]
    fn a_corrupt_change_is_an_error_naming_the_log_or_is_cut_with_what_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("__cluster_metadata-0");
        let topic = |name: &str| MetadataRecord::Topic(TopicRecord { name: name.into(), topic_id: Uuid::new_v4() });
        let mut log = MetadataLog::open(&path, true).expect("open");
        log.append(&[topic("kept")], 1).expect("append");
        let first_end = std::fs::metadata(path.join(format!("{:020}.log", 0))).expect("stat").len() as usize;
        log.append(&[topic("damaged")], 2).expect("append");
        log.append(&[topic("after")], 3).expect("append");
        log.close().expect("close");
        let file = path.join(format!("{:020}.log", 0));
        let mut bytes = std::fs::read(&file).expect("read");
        bytes[first_end + 70] ^= 0xff; // inside the second batch's record
        std::fs::write(&file, &bytes).expect("write");

        let err = MetadataLog::open(&path, true).err().expect("corrupt");
        assert!(err.to_string().contains("__cluster_metadata-0") && err.to_string().contains("offset 1"), "{err}");
        let log = MetadataLog::open_with(&path, true, true).expect("cut");
        assert!(log.image().topic("kept").is_some());
        assert!(log.image().topic("damaged").is_none() && log.image().topic("after").is_none());
        assert_eq!(log.end_offset(), 1);
    }

    #[test]
    fn a_snapshot_that_cannot_be_written_fails_the_metadata_log_dir() {
        struct Failures(std::sync::Mutex<Vec<std::path::PathBuf>>);
        impl LogDirWatch for Failures {
            fn writable(&self, _: &Path) -> bool {
                true
            }
            fn failed(&self, path: &Path, _: &dyn std::fmt::Display) {
                self.0.lock().expect("lock").push(path.to_path_buf());
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("__cluster_metadata-0");
        let mut log = MetadataLog::open(&path, true).expect("open");
        let watch = Arc::new(Failures(std::sync::Mutex::new(Vec::new())));
        log.set_log_dir_watch(watch.clone());
        log.append(&[MetadataRecord::Topic(TopicRecord { name: "t".into(), topic_id: Uuid::new_v4() })], 1).expect("append");
        // A non-empty directory where the snapshot file must go: the rename fails.
        let blocker = path.join(snapshot::file_name(log.end_offset(), SNAPSHOT_EPOCH));
        std::fs::create_dir_all(blocker.join("x")).expect("blocker");
        assert!(log.snapshot(2).is_err());
        assert_eq!(*watch.0.lock().expect("lock"), vec![path.clone()], "the failure reached the log dir watch");
        assert_eq!(log.snapshot_offset(), 0, "no snapshot taken");
    }

    #[test]
    fn appended_records_are_replayed_on_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("__cluster_metadata-0");
        let id = Uuid::new_v4();
        {
            let mut log = MetadataLog::open(&path, true).expect("open");
            log.append(&[MetadataRecord::Topic(TopicRecord { name: "t".into(), topic_id: id })], 1)
                .expect("append");
            log.append(
                &[MetadataRecord::TopicConfig {
                    topic: "t".into(),
                    name: "retention.ms".into(),
                    value: Some("5".into()),
                }],
                2,
            )
            .expect("append");
            log.close().expect("close");
        }
        let log = MetadataLog::open(&path, false).expect("reopen");
        let topic = log.image().topic("t").expect("topic survives");
        assert_eq!(topic.id, id);
        assert_eq!(topic.configs.get("retention.ms").map(String::as_str), Some("5"));
    }
}
