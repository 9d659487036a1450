//! Log compaction for topics with `cleanup.policy=compact` (first of all
//! `__consumer_offsets`): in the segments no longer written to, only the latest
//! record of each key is kept; tombstones (null values) go once they are older
//! than `delete.retention.ms`. Offsets never change: survivors keep theirs, and
//! a read of a removed offset returns the next record, as in Kafka.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
use storage::{Log, SegmentInfo};

use crate::error::{BrokerError, Result};
use crate::record_batch;

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

/// One inactive segment as it would be after cleaning.
struct Cleaned {
    info: SegmentInfo,
    /// The surviving records, re-encoded (each original batch's survivors stay one batch).
    batches: BytesMut,
    kept: usize,
    removed: usize,
}

/// The offset of the latest record of every key in the whole log.
fn latest_offsets(log: &Log) -> Result<HashMap<Bytes, i64>> {
    let mut latest = HashMap::new();
    let read = |offset| Ok(log.read(offset, 4 << 20)?);
    record_batch::scan(read, log.log_start_offset(), log.log_end_offset(), |records, _| {
        for r in records.into_iter().filter(|r| !r.control) {
            if let Some(key) = r.key {
                latest.insert(key, r.offset);
            }
        }
        Ok(())
    })?;
    Ok(latest)
}

/// The offset after the last inactive segment: cleaning again only helps once
/// this moves (a segment rolled).
pub(crate) fn cleanable_end(log: &Log) -> Result<i64> {
    Ok(log.inactive_segments()?.last().map_or(-1, |s| s.next_offset))
}

/// Keeps, of one segment, the latest record of each key (and control and
/// keyless records); tombstones only while `delete.retention.ms` has not passed.
fn clean_segment(log: &Log, info: SegmentInfo, latest: &HashMap<Bytes, i64>, policy: &CleanPolicy, now_ms: i64) -> Result<Cleaned> {
    let bytes = log.read_segment(info.base_offset)?;
    let tombstones_expire = info.largest_timestamp + policy.delete_retention_ms <= now_ms;
    let mut cleaned = Cleaned { info, batches: BytesMut::new(), kept: 0, removed: 0 };
    // The segment is read whole: the scan gets it once, then nothing.
    let mut whole = Some(bytes);
    let read_once = |_| Ok(whole.take().unwrap_or_default());
    record_batch::scan(read_once, info.base_offset, info.next_offset, |records, compression| {
        let count = records.len();
        let survivors: Vec<Record> = records
            .into_iter()
            .filter(|r| match &r.key {
                Some(key) if !r.control => {
                    latest.get(key) == Some(&r.offset) && !(r.value.is_none() && tombstones_expire)
                }
                _ => true,
            })
            .collect();
        cleaned.kept += survivors.len();
        cleaned.removed += count - survivors.len();
        if survivors.is_empty() {
            return Ok(());
        }
        RecordBatchEncoder::encode(&mut cleaned.batches, &survivors, &RecordEncodeOptions { version: 2, compression })
            .map_err(|e| BrokerError::kafka(ResponseError::UnknownServerError, format!("log cleaner cannot re-encode records: {e}")))
    })?;
    Ok(cleaned)
}

/// Cleans the inactive segments of one partition's log: once at least
/// `min.cleanable.dirty.ratio` of their records are superseded, every run of
/// neighbouring segments that lose records is rewritten as one segment of at
/// most `segment.bytes`.
pub(crate) fn clean_log(log: &mut Log, policy: &CleanPolicy, now_ms: i64) -> Result<CleanStats> {
    let segments = log.inactive_segments()?;
    if segments.is_empty() {
        return Ok(CleanStats::default());
    }
    let latest = latest_offsets(log)?;
    let cleaned = segments
        .into_iter()
        .map(|info| clean_segment(log, info, &latest, policy, now_ms))
        .collect::<Result<Vec<_>>>()?;
    let total: usize = cleaned.iter().map(|c| c.kept + c.removed).sum();
    let superseded: usize = cleaned.iter().map(|c| c.removed).sum();
    if superseded == 0 || (superseded as f64) < policy.min_dirty_ratio * total as f64 {
        return Ok(CleanStats::default());
    }
    let mut stats = CleanStats::default();
    let mut run: Vec<Cleaned> = Vec::new();
    for segment in cleaned {
        let size = run.iter().map(|c| c.batches.len()).sum::<usize>() + segment.batches.len();
        if segment.removed == 0 || size as u64 > policy.segment_bytes {
            replace(log, &mut run, &mut stats)?;
        }
        if segment.removed > 0 {
            run.push(segment);
        }
    }
    replace(log, &mut run, &mut stats)?;
    Ok(stats)
}

/// Swaps a run of cleaned neighbouring segments in as one segment.
fn replace(log: &mut Log, run: &mut Vec<Cleaned>, stats: &mut CleanStats) -> Result<()> {
    let (Some(first), Some(last)) = (run.first(), run.last()) else { return Ok(()) };
    let (first, last) = (first.info.base_offset, last.info.base_offset);
    let mut bytes = BytesMut::new();
    for c in run.iter() {
        bytes.extend_from_slice(&c.batches);
        stats.kept += c.kept;
        stats.removed += c.removed;
    }
    stats.segments += run.len();
    log.replace_segments(first, last, &bytes)?;
    run.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::Compression;
    use storage::LogConfig;

    use super::*;

    fn batch(records: &[(&str, Option<&str>)], now: i64) -> BytesMut {
        let entries = records.iter().map(|(k, v)| (Some(Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string())), now));
        crate::record_batch::encode(entries, Compression::Gzip).expect("encode")
    }

    /// Every record of the log as (offset, key, value).
    fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let read = |offset| Ok(log.read(offset, 1 << 20)?);
        record_batch::scan(read, log.log_start_offset(), log.log_end_offset(), |records, _| {
            let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
            out.extend(records.into_iter().map(|r| (r.offset, text(r.key).unwrap_or_default(), text(r.value))));
            Ok(())
        })
        .expect("decode");
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
