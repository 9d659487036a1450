//! Metadata snapshots: the whole [`Image`] as of an offset of the metadata
//! log, so the log before it can go and start-up replays only the tail.
//!
//! As in Kafka, a snapshot is a file `<end offset>-<epoch>.checkpoint` (20 and
//! 10 digits) in the metadata log's directory holding records that rebuild
//! the image ([`Image::to_records`]) in one record batch (magic 2, CRC-32C),
//! written durably (temporary file, fsync, rename, directory fsync). An empty
//! image is an empty file.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::{MetadataError, Result};
use crate::image::Image;
use crate::log::{decode_batch, encode};

const SUFFIX: &str = ".checkpoint";

/// The file name of the snapshot holding the records below `end_offset`.
pub fn file_name(end_offset: i64, epoch: i32) -> String {
    format!("{end_offset:020}-{epoch:010}{SUFFIX}")
}

/// The end offset of a snapshot file name.
fn parse_name(name: &str) -> Option<i64> {
    let (offset, epoch) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let valid = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    (valid(offset, 20) && valid(epoch, 10)).then(|| offset.parse().ok()).flatten()
}

pub(crate) fn error(path: &Path, reason: impl Into<String>) -> MetadataError {
    MetadataError::Snapshot { path: path.to_path_buf(), reason: reason.into() }
}

/// Every snapshot in `dir`: end offset and path, oldest first.
fn list(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| error(dir, e.to_string()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| error(dir, e.to_string()))?;
        if let Some(offset) = entry.file_name().to_str().and_then(parse_name) {
            found.push((offset, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The newest snapshot in `dir`, if any.
pub(crate) fn latest(dir: &Path) -> Result<Option<(i64, PathBuf)>> {
    Ok(list(dir)?.pop())
}

/// Writes `image` as the snapshot of the records below `end_offset`.
pub(crate) fn write(dir: &Path, image: &Image, end_offset: i64, epoch: i32, now_ms: i64) -> Result<PathBuf> {
    let path = dir.join(file_name(end_offset, epoch));
    let records = image.to_records();
    let bytes = if records.is_empty() { Default::default() } else { encode(&records, now_ms)? };
    storage::checkpoint::write_durably(&path, &bytes).map_err(|e| error(&path, e.to_string()))?;
    Ok(path)
}

/// Reads the image a snapshot holds; an error names the file.
pub(crate) fn read(path: &Path) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(|e| error(path, e.to_string()))?;
    if bytes.is_empty() {
        return Ok(Image::default());
    }
    let header = records::batch::validate(&bytes, usize::MAX).map_err(|e| error(path, e.to_string()))?;
    if header.total_size() != bytes.len() {
        return Err(error(path, format!("{} bytes after its record batch", bytes.len().saturating_sub(header.total_size()))));
    }
    let (records, _) = decode_batch(Bytes::from(bytes), 0).map_err(|reason| error(path, reason))?;
    Ok(Image::from_records(&records))
}

/// Removes the snapshots in `dir` older than the one at `end_offset`.
pub(crate) fn remove_older(dir: &Path, end_offset: i64) -> Result<()> {
    for (offset, path) in list(dir)? {
        if offset < end_offset {
            std::fs::remove_file(&path).map_err(|e| error(&path, e.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{MetadataLog, MetadataLogConfig};
    use crate::record::{ConfigRecord, MetadataRecord, PartitionRecord, TopicRecord, RESOURCE_TOPIC};
    use uuid::Uuid;

    fn topic(name: &str) -> Vec<MetadataRecord> {
        let topic_id = Uuid::new_v4();
        vec![
            MetadataRecord::Topic(TopicRecord { name: name.into(), topic_id }),
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 4,
                ..Default::default()
            }),
            MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_TOPIC,
                resource_name: name.into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
            }),
        ]
    }

    #[test]
    fn names_follow_kafka() {
        assert_eq!(file_name(42, 3), "00000000000000000042-0000000003.checkpoint");
        assert_eq!(parse_name(&file_name(42, 3)), Some(42));
        assert_eq!(parse_name("00000000000000000042.log"), None);
        assert_eq!(parse_name("00000000000000000042-0000000003.checkpoint.tmp"), None);
    }

    #[test]
    fn a_snapshot_round_trips_the_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut image = Image::default();
        image.apply_all(&topic("a"));
        image.apply_all(&topic("b"));
        let path = write(dir.path(), &image, 7, 0, 1).expect("write");
        assert_eq!(read(&path).expect("read"), image);
        let empty = write(dir.path(), &Image::default(), 8, 0, 1).expect("write");
        assert_eq!(read(&empty).expect("read"), Image::default());
        assert_eq!(latest(dir.path()).expect("latest").map(|(o, _)| o), Some(8));

        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let err = read(&path).expect_err("corrupt");
        assert!(err.to_string().contains("00000000000000000007-0000000000.checkpoint"), "{err}");
    }

    #[test]
    fn the_log_snapshots_past_its_threshold_deletes_old_segments_and_reopens_from_snapshot_and_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("__cluster_metadata-0");
        // Small segments and a small threshold: every few changes roll and snapshot.
        let config = MetadataLogConfig { segment_bytes: 600, snapshot_bytes: 1500 };
        let mut log = MetadataLog::open_configured(&path, &config, true, false).expect("open");
        for i in 0..20 {
            log.append(&topic(&format!("t{i}")), i).expect("append");
        }
        let snapshot_offset = log.snapshot_offset();
        assert!(snapshot_offset > 0, "a snapshot was written");
        // A tail after the snapshot.
        log.append(&topic("tail"), 21).expect("append");
        assert!(snapshot_offset < log.end_offset());
        let snapshots = list(&path).expect("list");
        assert_eq!(snapshots.len(), 1, "older snapshots are removed: {snapshots:?}");
        let first_segment = std::fs::read_dir(&path)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse::<i64>().ok())
            .min()
            .expect("a segment");
        assert!(first_segment > 0 && first_segment <= snapshot_offset, "segments below the snapshot are deleted: first {first_segment}");
        let image = log.image().clone();
        let end = log.end_offset();
        log.close().expect("close");

        let reopened = MetadataLog::open_configured(&path, &config, true, false).expect("reopen");
        assert_eq!(reopened.image(), &image);
        assert_eq!(reopened.end_offset(), end);
        assert_eq!(reopened.image().topics().count(), 21);
        drop(reopened);

        // The snapshot is the only copy of the records before it: losing it is an
        // error, unless recovering, which keeps what the log still holds.
        std::fs::remove_file(&snapshots[0].1).expect("remove");
        let err = MetadataLog::open_configured(&path, &config, true, false).err().expect("no snapshot");
        assert!(err.to_string().contains("no snapshot"), "{err}");
        let recovered = MetadataLog::open_configured(&path, &config, true, true).expect("recover");
        assert!(recovered.image().topic("tail").is_some() && recovered.image().topic("t0").is_none());
    }
}
