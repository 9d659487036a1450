use std::path::Path;

use bytes::{Bytes, BytesMut};
use records::{BatchHeader, BatchOptions, BatchWriter};
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
        Ok(MetadataLog { log, image, checkpoints: Vec::new(), cluster_id: String::new() })
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

    fn write_checkpoints(&self) -> Result<()> {
        let checkpoint = Checkpoint { cluster_id: self.cluster_id.clone(), end_offset: self.end_offset() };
        for path in &self.checkpoints {
            checkpoint.write(path)?;
        }
        Ok(())
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
        let mut batch = encode(records, now_ms)?;
        self.log.append(&mut batch, 0, now_ms)?;
        self.log.flush()?;
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
fn decode_batch(chunk: Bytes, offset: i64) -> std::result::Result<(Vec<MetadataRecord>, i64), String> {
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
fn encode(records: &[MetadataRecord], now_ms: i64) -> Result<BytesMut> {
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
