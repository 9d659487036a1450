//! Log compaction for topics with `cleanup.policy=compact` (first of all
//! `__consumer_offsets`): in the segments no longer written to, only the latest
//! record of each key is kept; tombstones (null values) go once they are older
//! than `delete.retention.ms`. Offsets never change: survivors keep theirs, and
//! a read of a removed offset returns the next record, as in Kafka.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions};
use storage::batch::BatchIter;
use storage::{Log, SegmentInfo};

use crate::error::{BrokerError, Result};

/// What one cleaning pass of a partition did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanStats {
    /// Records dropped.
    pub(crate) removed: usize,
    /// Records kept in the rewritten segments.
    pub(crate) kept: usize,
    /// Segments rewritten.
    pub(crate) segments: usize,
}

/// How a partition is cleaned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CleanPolicy {
    /// `delete.retention.ms`: how long a tombstone outlives what it deleted.
    pub(crate) delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean only when at least this share of the
    /// inactive segments' records is superseded.
    pub(crate) min_dirty_ratio: f64,
    /// `segment.bytes`: rewritten segments are merged up to this size.
    pub(crate) segment_bytes: u64,
}

fn decode_error(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::kafka(ResponseError::CorruptMessage, format!("log cleaner cannot decode {what}: {e}"))
}

/// Calls `f` with every record batch of `bytes`, decoded, and its compression.
fn for_each_batch(bytes: &Bytes, mut f: impl FnMut(Vec<Record>, Compression)) -> Result<()> {
    for batch in BatchIter::stop_at_partial_tail(bytes) {
        let batch = batch.map_err(|e| decode_error("a batch", e))?;
        let compression = match batch.header.compression() {
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => Compression::None,
        };
        let mut raw = bytes.slice(batch.position..batch.position + batch.bytes.len());
        let set = RecordBatchDecoder::decode(&mut raw).map_err(|e| decode_error("a batch", e))?;
        f(set.records, compression);
    }
    Ok(())
}

/// The offset of the latest record of every key in the whole log.
fn latest_offsets(log: &Log) -> Result<HashMap<Bytes, i64>> {
    let mut latest = HashMap::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let chunk = log.read(offset, 4 << 20)?;
        if chunk.is_empty() {
            break;
        }
        let mut next = offset;
        for batch in BatchIter::stop_at_partial_tail(&chunk) {
            let batch = batch.map_err(|e| decode_error("a batch", e))?;
            next = batch.header.next_offset();
        }
        for_each_batch(&chunk.slice(..chunk.len()), |records, _| {
            for r in records {
                if let Some(key) = r.key {
                    latest.insert(key, r.offset);
                }
            }
        })?;
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(latest)
}

/// The offset after the last inactive segment: cleaning again only helps once
/// this moves (a segment rolled).
pub(crate) fn cleanable_end(log: &Log) -> Result<i64> {
    Ok(log.inactive_segments()?.last().map_or(-1, |s| s.next_offset))
}

/// Cleans the inactive segments of one partition's log.
pub(crate) fn clean_log(log: &mut Log, policy: &CleanPolicy, now_ms: i64) -> Result<CleanStats> {
    let segments = log.inactive_segments()?;
    if segments.is_empty() {
        return Ok(CleanStats::default());
    }
    let latest = latest_offsets(log)?;
    // Decide per segment what survives, then merge neighbours.
    let mut rewritten: Vec<(SegmentInfo, BytesMut, usize, usize)> = Vec::new();
    let (mut total, mut superseded) = (0usize, 0usize);
    for info in segments {
        let bytes = log.read_segment(info.base_offset)?;
        let tombstones_expire = info.largest_timestamp + policy.delete_retention_ms <= now_ms;
        let mut out = BytesMut::new();
        let (mut kept, mut removed) = (0usize, 0usize);
        let mut failure = None;
        for_each_batch(&bytes, |records, compression| {
            let count = records.len();
            let survivors: Vec<Record> = records
                .into_iter()
                .filter(|r| {
                    // Control records and keyless records are left alone.
                    let Some(key) = &r.key else { return true };
                    if r.control {
                        return true;
                    }
                    latest.get(key) == Some(&r.offset) && !(r.value.is_none() && tombstones_expire)
                })
                .collect();
            kept += survivors.len();
            removed += count - survivors.len();
            if survivors.is_empty() {
                return;
            }
            if let Err(e) = RecordBatchEncoder::encode(&mut out, &survivors, &RecordEncodeOptions { version: 2, compression }) {
                failure = Some(e.to_string());
            }
        })?;
        if let Some(e) = failure {
            return Err(decode_error("re-encoding survivors", e));
        }
        total += kept + removed;
        superseded += removed;
        rewritten.push((info, out, kept, removed));
    }
    if superseded == 0 || (superseded as f64) < policy.min_dirty_ratio * total as f64 {
        return Ok(CleanStats::default());
    }
    let mut stats = CleanStats::default();
    let mut group: Vec<(SegmentInfo, BytesMut, usize, usize)> = Vec::new();
    let flush = |group: &mut Vec<(SegmentInfo, BytesMut, usize, usize)>, log: &mut Log, stats: &mut CleanStats| -> Result<()> {
        if group.is_empty() {
            return Ok(());
        }
        let first = group[0].0.base_offset;
        let last = group[group.len() - 1].0.base_offset;
        let mut bytes = BytesMut::new();
        for (_, b, kept, removed) in group.iter() {
            bytes.extend_from_slice(b);
            stats.kept += kept;
            stats.removed += removed;
        }
        stats.segments += group.len();
        log.replace_segments(first, last, &bytes)?;
        group.clear();
        Ok(())
    };
    for entry in rewritten {
        let size: usize = group.iter().map(|(_, b, _, _)| b.len()).sum::<usize>() + entry.1.len();
        if !group.is_empty() && size as u64 > policy.segment_bytes {
            flush(&mut group, log, &mut stats)?;
        }
        group.push(entry);
    }
    flush(&mut group, log, &mut stats)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use storage::LogConfig;

    use super::*;

    fn batch(records: &[(&str, Option<&str>)], now: i64) -> BytesMut {
        let entries = records.iter().map(|(k, v)| (Some(Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string())), now));
        crate::record_batch::encode(entries, Compression::Gzip).expect("encode")
    }

    /// Every record of the log as (offset, key, value).
    fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let chunk = log.read(offset, 1 << 20).expect("read");
            let mut next = offset;
            for_each_batch(&chunk, |records, _| {
                for r in records {
                    next = r.offset + 1;
                    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
                    out.push((r.offset, text(r.key).unwrap_or_default(), text(r.value)));
                }
            })
            .expect("decode");
            for b in BatchIter::stop_at_partial_tail(&chunk) {
                next = next.max(b.expect("batch").header.next_offset());
            }
            offset = next;
        }
        out
    }

    fn log_with_history(dir: &std::path::Path) -> Log {
        let config = LogConfig { segment_bytes: 200, ..LogConfig::default() };
        let mut log = Log::open(dir, config, true).expect("open");
        for round in 0..4 {
            let value = format!("v{round}");
            let mut b = batch(&[("a", Some(&value)), ("b", Some(&value)), ("c", Some(&value))], 1_000);
            log.append(&mut b, 0, 1_000).expect("append");
        }
        let mut b = batch(&[("b", None)], 1_000);
        log.append(&mut b, 0, 1_000).expect("append tombstone");
        let mut b = batch(&[("d", Some("last"))], 1_000);
        log.append(&mut b, 0, 1_000).expect("append");
        log
    }

    #[test]
    fn compaction_keeps_the_latest_record_of_each_key_at_its_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with_history(dir.path());
        assert!(log.inactive_segments().expect("segments").len() >= 2, "small segments rolled");
        let end = log.log_end_offset();
        let policy = CleanPolicy { delete_retention_ms: 60_000, min_dirty_ratio: 0.5, segment_bytes: 200 };
        let stats = clean_log(&mut log, &policy, 2_000).expect("clean");
        assert!(stats.removed >= 8, "{stats:?}");
        assert_eq!(log.log_end_offset(), end, "offsets never change");
        let after = contents(&log);
        let keys: Vec<&str> = after.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a", "c", "b", "d"], "{after:?}");
        assert_eq!(after[0], (9, "a".into(), Some("v3".into())));
        assert_eq!(after[2], (12, "b".into(), None), "the tombstone stays within delete.retention.ms");

        // Nothing left to clean: a second pass changes nothing.
        assert_eq!(clean_log(&mut log, &policy, 2_000).expect("clean").segments, 0);
    }

    #[test]
    fn tombstones_go_after_delete_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with_history(dir.path());
        let policy = CleanPolicy { delete_retention_ms: 10, min_dirty_ratio: 0.0, segment_bytes: 1 << 20 };
        clean_log(&mut log, &policy, 1_000_000).expect("clean");
        let keys: Vec<String> = contents(&log).into_iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys, vec!["a", "c", "d"]);
    }

    #[test]
    fn a_log_with_little_to_remove_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = log_with_history(dir.path());
        let before = contents(&log);
        let policy = CleanPolicy { delete_retention_ms: 60_000, min_dirty_ratio: 0.99, segment_bytes: 200 };
        assert_eq!(clean_log(&mut log, &policy, 2_000).expect("clean"), CleanStats::default());
        assert_eq!(contents(&log), before);
    }
}
