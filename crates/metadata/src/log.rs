use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};
use storage::{Log, LogConfig};

use crate::checkpoint::Checkpoint;
use crate::error::{MetadataError, Result};
use crate::image::Image;
use crate::record::MetadataRecord;

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

impl MetadataLog {
    /// Opens the log in `dir` (normally `<log.dirs[0]>/__cluster_metadata-0`) and
    /// replays it into an image; a corrupt record is an error naming the log.
    pub fn open(dir: &Path, clean_shutdown: bool) -> Result<MetadataLog> {
        Self::open_with(dir, clean_shutdown, false)
    }

    /// Opens and replays the log, one batch (one change) at a time: a batch
    /// is applied only when all its records decode. With `cut_corrupt`, a
    /// corrupt batch and everything after it are cut from the log (one WARN)
    /// instead of failing, so an operator who chose to rebuild can start.
    pub fn open_with(dir: &Path, clean_shutdown: bool, cut_corrupt: bool) -> Result<MetadataLog> {
        let mut log = Log::open(dir, LogConfig::default(), clean_shutdown)?;
        let mut image = Image::default();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            // At least one whole batch, and only one.
            let chunk = log.read(offset, 1)?;
            if chunk.is_empty() {
                break;
            }
            match decode_batch(chunk, offset) {
                Ok((records, next)) => {
                    for record in &records {
                        image.apply(record);
                    }
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
        Ok(MetadataLog { log, image, checkpoints: Vec::new(), cluster_id: String::new(), watch: None })
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

    /// The current image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Appends `records` as one atomic batch, fsyncs, and applies them.
    pub fn append(&mut self, records: &[MetadataRecord], now_ms: i64) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = encode(records, self.log.log_end_offset(), now_ms)?;
        let appended = self.log.append(&mut batch, 0, now_ms).map(|_| ());
        self.watched(appended)?;
        let flushed = self.log.flush();
        self.watched(flushed)?;
        for record in records {
            self.image.apply(record);
        }
        // The append is committed: a checkpoint left behind only weakens the
        // start-up check (it never claims more than was committed).
        if let Err(e) = self.write_checkpoints() {
            tracing::warn!(error = %e, "cannot update the metadata checkpoint");
        }
        Ok(())
    }

    /// Flushes and closes the log.
    pub fn close(self) -> Result<()> {
        Ok(self.log.close()?)
    }
}

/// The records of the one batch in `chunk` from `offset` on, and the offset
/// after the batch; the reason if any of it does not decode.
fn decode_batch(mut chunk: Bytes, offset: i64) -> std::result::Result<(Vec<MetadataRecord>, i64), String> {
    let header = storage::batch::BatchHeader::parse(&chunk).map_err(|e| e.to_string())?;
    let sets = RecordBatchDecoder::decode_all(&mut chunk).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for record in sets.into_iter().flat_map(|s| s.records) {
        if record.offset < offset {
            continue;
        }
        let value = record.value.unwrap_or_default();
        let decoded: MetadataRecord =
            serde_json::from_slice(&value).map_err(|e| format!("record at offset {}: {e}", record.offset))?;
        records.push(decoded);
    }
    Ok((records, header.next_offset().max(offset + 1)))
}

fn encode(records: &[MetadataRecord], base_offset: i64, now_ms: i64) -> Result<BytesMut> {
    let mut kafka_records = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        let value = serde_json::to_vec(record).map_err(|e| MetadataError::Encode(e.to_string()))?;
        kafka_records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            // Equal offset - sequence keeps all records in one batch, so a
            // change is appended (and recovered) whole or not at all.
            sequence: i as i32,
            timestamp: now_ms,
            key: None,
            value: Some(Bytes::from(value)),
            headers: Default::default(),
        });
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &kafka_records,
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .map_err(|e| MetadataError::Encode(e.to_string()))?;
    Ok(buf)
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
        let buf = encode(&records, 7, 1).expect("encode");
        let header = storage::batch::BatchHeader::parse(&buf).expect("header");
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
