//! Log compaction for topics with `cleanup.policy=compact` (first of all
//! `__consumer_offsets`): in the segments no longer written to, only the latest
//! record of each key is kept; tombstones (null values) go once they are older
//! than `delete.retention.ms`. Offsets never change: survivors keep theirs, and
//! a read of a removed offset returns the next record, as in Kafka.
//!
//! Kept records are never re-encoded: as Kafka's `MemoryRecords.filterTo`, a
//! batch that loses records is rebuilt with its own base offset, last offset
//! delta, base timestamp, producer id, epoch and base sequence, so each kept
//! record's bytes (offset and timestamp deltas, key, value, every header in
//! order) are copied verbatim into it and recompressed with the batch's own
//! codec; a batch that loses nothing is copied whole. The last batch of each
//! producer id stays, empty if need be, so the producer's sequence carries on.
//! Neighbouring segments are merged while their cleaned size fits
//! `segment.bytes` (and the indexes `segment.index.bytes`), as Kafka's cleaner
//! groups segments, so segments emptied by compaction do not pile up.
//!
//! A pass copies, then swaps, as Kafka's cleaner does: [`plan`] reads the log
//! through a reader that takes the partition's lock for one chunk at a time and
//! builds the cleaned segments in memory, while produce and fetch go on;
//! then, for each run, the new segment's files are written and fsynced as
//! `.cleaned` files without the lock either ([`Replacement::stage`]), and
//! swapped in under the write lock only if the run's segments are still there
//! unchanged (`storage::Log::swap_in`; retention, DeleteRecords or a
//! truncation may have changed them meanwhile; such a run waits for the next
//! pass and its `.cleaned` files are deleted).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use records::batch::{self, BatchHeader, BatchIter, TimestampType};
use records::RawRecord;
use storage::{Log, LogConfig, ReplacementTarget, SegmentInfo, StagedReplacement};

use crate::error::{BrokerError, Result};
// A batch whose records decompress to more is kept whole (its keys then count
// as unknown: nothing it holds is removed, and older records of its keys may stay).
use crate::record_batch::MAX_DECOMPRESSED;

/// How much of the log one read brings in.
const READ_CHUNK: usize = 4 << 20;

/// What one cleaning pass of a partition did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanStats {
    /// Records dropped.
    pub(crate) removed: usize,
    /// Records kept in the rewritten segments.
    pub(crate) kept: usize,
    /// Segments rewritten.
    pub(crate) segments: usize,
    /// Runs not swapped in because their segments changed during the pass.
    pub(crate) skipped: usize,
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

/// What the cleaner learns from the whole log before it rewrites anything.
#[derive(Debug, Default)]
struct OffsetMap {
    /// Per key: the offset of its latest record, and whether that record is a
    /// tombstone old enough to go.
    latest: HashMap<Bytes, (i64, bool)>,
    /// Per producer id: the last offset of its last batch.
    producer_last: HashMap<i64, i64>,
    /// Records in the inactive segments.
    inactive_records: usize,
    /// Of those, the ones a later record of the same key supersedes.
    superseded: usize,
}

impl OffsetMap {
    /// Records of the inactive segments a pass would remove.
    fn removable(&self) -> usize {
        self.superseded + self.latest.values().filter(|(_, expired)| *expired).count()
    }
}

/// Reads whole batches from an offset, at most about `max_bytes` (as
/// [`Log::read`]); the cleaner reads the log only through it.
pub(crate) type ReadLog<'a> = dyn Fn(i64, usize) -> Result<Bytes> + 'a;

/// What a pass starts from: the inactive segments and the log's bounds and
/// settings when it began.
pub(crate) struct LogSnapshot {
    /// The inactive segments, oldest first.
    pub(crate) segments: Vec<SegmentInfo>,
    /// The log start offset.
    pub(crate) log_start: i64,
    /// The log end offset.
    pub(crate) log_end: i64,
    /// The log's settings (index sizes).
    pub(crate) config: LogConfig,
}

impl LogSnapshot {
    /// The snapshot of `log` now.
    pub(crate) fn of(log: &Log) -> Result<LogSnapshot> {
        Ok(LogSnapshot {
            segments: log.inactive_segments()?,
            log_start: log.log_start_offset(),
            log_end: log.log_end_offset(),
            config: log.config().clone(),
        })
    }

    /// The offset after the last inactive segment (-1 without one): cleaning
    /// again only helps once this moves (a segment rolled).
    pub(crate) fn cleanable_end(&self) -> i64 {
        self.segments.last().map_or(-1, |s| s.next_offset)
    }
}

/// Where a pass is, for a hook that holds it there (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PassPoint {
    /// About to read a chunk of the log (the build phase).
    Read,
    /// A replacement is built; about to check its segments are unchanged
    /// and write its `.cleaned` files.
    Stage,
    /// A replacement's `.cleaned` files are written and fsynced; about to
    /// take the write lock, re-check its segments and swap.
    Swap,
}

/// A run of neighbouring inactive segments and the one segment that replaces them.
pub(crate) struct Replacement {
    /// The segments replaced, as they were when the pass read them.
    segments: Vec<SegmentInfo>,
    batches: BytesMut,
    kept: usize,
    removed: usize,
}

/// The cleaned bytes of one inactive segment.
struct Cleaned {
    info: SegmentInfo,
    batches: BytesMut,
    batch_count: usize,
    kept: usize,
    removed: usize,
}

fn corrupt(offset: i64, why: impl std::fmt::Display) -> BrokerError {
    BrokerError::kafka(ResponseError::CorruptMessage, format!("log cleaner: corrupt record batch at offset {offset}: {why}"))
}

/// Calls `f` with every batch (header and whole bytes) that starts in
/// `[from, to)`, reading the log a chunk at a time.
fn for_each_batch(read: &ReadLog<'_>, from: i64, to: i64, mut f: impl FnMut(&BatchHeader, Bytes) -> Result<()>) -> Result<()> {
    let mut offset = from;
    while offset < to {
        let chunk = read(offset, READ_CHUNK)?;
        let mut next = offset;
        for b in BatchIter::new(&chunk) {
            let b = b.map_err(|e| corrupt(next, e))?;
            if b.header.base_offset >= to {
                return Ok(());
            }
            f(&b.header, chunk.slice(b.position..b.position + b.bytes.len()))?;
            next = b.header.next_offset();
        }
        if next <= offset {
            break; // nothing more to read (the rest is a gap)
        }
        offset = next;
    }
    Ok(())
}

/// The records of a batch, or `None` when they are too large to look at.
fn batch_records(header: &BatchHeader, bytes: &Bytes) -> Result<Option<Vec<RawRecord>>> {
    match records::decode_records(header, bytes, MAX_DECOMPRESSED) {
        Ok((records, _)) => Ok(Some(records)),
        Err(records::Error::OverBudget) => {
            tracing::warn!(offset = header.base_offset, limit = MAX_DECOMPRESSED, "log cleaner keeps a batch it cannot decompress within its limit");
            Ok(None)
        }
        Err(e) => Err(corrupt(header.base_offset, e)),
    }
}

/// Reads the whole log once: the latest offset of every key, the last batch of
/// every producer, and how much of the inactive segments a pass would remove.
fn build_offset_map(read: &ReadLog<'_>, snapshot: &LogSnapshot, policy: &CleanPolicy, now_ms: i64) -> Result<OffsetMap> {
    let mut map = OffsetMap::default();
    let segments = &snapshot.segments;
    let cleanable_end = segments.last().map_or(snapshot.log_start, |s| s.next_offset);
    let mut ranges: Vec<(i64, i64, bool, bool)> = segments
        .iter()
        .map(|s| (s.base_offset, s.next_offset, true, s.largest_timestamp + policy.delete_retention_ms <= now_ms))
        .collect();
    ranges.push((cleanable_end, snapshot.log_end, false, false));
    for (from, to, inactive, tombstones_expire) in ranges {
        for_each_batch(read, from, to, |header, bytes| {
            if header.producer_id >= 0 {
                map.producer_last.insert(header.producer_id, header.last_offset());
            }
            if header.is_control() {
                return Ok(());
            }
            let Some(records) = batch_records(header, &bytes)? else { return Ok(()) };
            if inactive {
                map.inactive_records += records.len();
            }
            for r in records {
                let Some(key) = r.key else { continue };
                let offset = header.base_offset + i64::from(r.offset_delta);
                let expired = inactive && tombstones_expire && r.value.is_none();
                // Copied: a slice would keep the whole read chunk alive.
                if let Some((previous, _)) = map.latest.insert(Bytes::copy_from_slice(&key), (offset, expired)) {
                    if previous < cleanable_end {
                        map.superseded += 1;
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok(map)
}

/// Keeps, of one batch, the latest record of each key (and keyless records);
/// tombstones only while `delete.retention.ms` has not passed. Returns the
/// batch to write, if any, and how many records it keeps and drops.
fn clean_batch(header: &BatchHeader, bytes: Bytes, map: &OffsetMap, tombstones_expire: bool) -> Result<(Option<Bytes>, usize, usize)> {
    let count = usize::try_from(header.record_count).unwrap_or(0);
    if header.is_control() {
        return Ok((Some(bytes), count, 0));
    }
    let Some(all) = batch_records(header, &bytes)? else { return Ok((Some(bytes), count, 0)) };
    let total = all.len();
    let kept: Vec<RawRecord> = all
        .into_iter()
        .filter(|r| match &r.key {
            Some(key) => {
                let offset = header.base_offset + i64::from(r.offset_delta);
                map.latest.get(key).map(|(o, _)| *o) == Some(offset) && !(r.value.is_none() && tombstones_expire)
            }
            None => true,
        })
        .collect();
    let removed = total - kept.len();
    if removed == 0 {
        return Ok((Some(bytes), total, 0));
    }
    let rebuilt = |h: &BatchHeader, n: usize, section: &[u8]| {
        let n = i32::try_from(n).map_err(|_| corrupt(h.base_offset, "too many records"))?;
        records::write_batch(h, n, section).map(BytesMut::freeze).map_err(|e| corrupt(h.base_offset, e))
    };
    if kept.is_empty() {
        // Kafka keeps a producer's last batch, empty, so that its next sequence
        // number still follows (an empty batch keeps offsets and sequence range).
        if header.producer_id >= 0 && map.producer_last.get(&header.producer_id) == Some(&header.last_offset()) {
            let mut h = *header;
            h.attributes &= !(batch::COMPRESSION_MASK | batch::DELETE_HORIZON_MASK);
            h.base_timestamp = header.max_timestamp;
            return Ok((Some(rebuilt(&h, 0, &[])?), 0, removed));
        }
        return Ok((None, 0, removed));
    }
    // Same base offset and base timestamp: every kept record's deltas stay valid.
    let mut h = *header;
    if header.timestamp_type() == TimestampType::CreateTime {
        h.max_timestamp = kept.iter().map(|r| header.base_timestamp.wrapping_add(r.timestamp_delta)).max().unwrap_or(header.max_timestamp);
    }
    let section: Vec<u8> = kept.iter().flat_map(|r| r.bytes.iter().copied()).collect();
    Ok((Some(rebuilt(&h, kept.len(), &section)?), kept.len(), removed))
}

/// One inactive segment as it would be after cleaning.
fn clean_segment(read: &ReadLog<'_>, info: SegmentInfo, map: &OffsetMap, policy: &CleanPolicy, now_ms: i64) -> Result<Cleaned> {
    let tombstones_expire = info.largest_timestamp + policy.delete_retention_ms <= now_ms;
    let mut cleaned = Cleaned { info, batches: BytesMut::new(), batch_count: 0, kept: 0, removed: 0 };
    for_each_batch(read, info.base_offset, info.next_offset, |header, bytes| {
        let (out, kept, removed) = clean_batch(header, bytes, map, tombstones_expire)?;
        if let Some(out) = out {
            cleaned.batches.extend_from_slice(&out);
            cleaned.batch_count += 1;
        }
        cleaned.kept += kept;
        cleaned.removed += removed;
        Ok(())
    })?;
    Ok(cleaned)
}

/// Cleans the inactive segments of one partition's log: once at least
/// `min.cleanable.dirty.ratio` of their records would go, every run of
/// neighbouring segments whose cleaned batches fit one segment (Kafka's
/// grouping) is rewritten as one segment; a segment that would lose nothing
/// and has no neighbour to merge with stays as it is. [`plan`], then each
/// replacement staged and swapped in, on one log (no other user: what
/// [`crate::partition::Partition::clean`] does under its locks).
#[cfg(test)]
pub(crate) fn clean_log(log: &mut Log, policy: &CleanPolicy, now_ms: i64) -> Result<CleanStats> {
    let snapshot = LogSnapshot::of(log)?;
    let replacements = {
        let read = |offset, max| Ok(log.read(offset, max)?);
        plan(&read, &snapshot, policy, now_ms)?
    };
    let mut stats = CleanStats::default();
    for mut r in replacements {
        let Some(target) = r.target(log)? else { continue };
        match log.swap_in(r.stage(target)?)? {
            storage::SwapOutcome::Swapped => stats.add(&r),
            storage::SwapOutcome::Changed(_) => unreachable!("nothing else uses the log"),
        }
    }
    Ok(stats)
}

/// Builds a pass's replacements from the log as `snapshot` saw it, reading
/// only through `read` (so the caller holds no lock across the pass). Empty
/// when too little would go.
pub(crate) fn plan(read: &ReadLog<'_>, snapshot: &LogSnapshot, policy: &CleanPolicy, now_ms: i64) -> Result<Vec<Replacement>> {
    if snapshot.segments.is_empty() {
        return Ok(Vec::new());
    }
    let map = build_offset_map(read, snapshot, policy, now_ms)?;
    let removable = map.removable();
    if removable == 0 || (removable as f64) < policy.min_dirty_ratio * map.inactive_records as f64 {
        return Ok(Vec::new());
    }
    let config = &snapshot.config;
    let limits = GroupLimits {
        bytes: policy.segment_bytes.min(u64::from(u32::MAX)),
        // Each batch adds at most one entry to each index; the time index's
        // 12-byte entries are the tighter limit.
        index_entries: config.segment_index_bytes / 12,
        index_interval: config.index_interval_bytes,
    };
    let mut replacements = Vec::new();
    let mut group: Vec<Cleaned> = Vec::new();
    for &info in &snapshot.segments {
        let segment = clean_segment(read, info, &map, policy, now_ms)?;
        if !limits.fit(&group, &segment) {
            replacements.extend(merge(&mut group));
        }
        group.push(segment);
    }
    replacements.extend(merge(&mut group));
    Ok(replacements)
}

impl CleanStats {
    /// Counts `r` as swapped in.
    pub(crate) fn add(&mut self, r: &Replacement) {
        self.kept += r.kept;
        self.removed += r.removed;
        self.segments += r.segments.len();
    }
}

impl Replacement {
    /// The base offset of the first segment replaced.
    pub(crate) fn first_base(&self) -> i64 {
        self.segments.first().map_or(-1, |s| s.base_offset)
    }

    /// Under the partition's read lock: what to write the replacement for, or
    /// `None` when the segments changed since the pass read them (the run is
    /// left for the next pass).
    pub(crate) fn target(&self, log: &Log) -> Result<Option<ReplacementTarget>> {
        let (Some(first), Some(last)) = (self.segments.first(), self.segments.last()) else { return Ok(None) };
        let current = log.inactive_segments()?;
        let same = |a: &SegmentInfo, b: &SegmentInfo| (a.base_offset, a.next_offset, a.size_bytes) == (b.base_offset, b.next_offset, b.size_bytes);
        let unchanged = current
            .iter()
            .position(|s| s.base_offset == first.base_offset)
            .and_then(|at| current.get(at..at + self.segments.len()))
            .is_some_and(|now| now.iter().zip(&self.segments).all(|(a, b)| same(a, b)));
        if !unchanged {
            tracing::debug!(dir = %log.dir().display(), first = first.base_offset, last = last.base_offset, "segments changed during the cleaning pass: left for the next one");
            return Ok(None);
        }
        Ok(Some(log.replacement_target(first.base_offset, last.base_offset)?))
    }

    /// Without any lock: writes and fsyncs the replacement's `.cleaned`
    /// files, then lets go of its bytes.
    pub(crate) fn stage(&mut self, target: ReplacementTarget) -> Result<StagedReplacement> {
        let batches = std::mem::take(&mut self.batches);
        Ok(target.stage(&batches)?)
    }
}

/// How large one merged segment may be.
struct GroupLimits {
    bytes: u64,
    index_entries: u64,
    index_interval: u64,
}

impl GroupLimits {
    /// Whether `next` can join the segments of `group` in one segment.
    fn fit(&self, group: &[Cleaned], next: &Cleaned) -> bool {
        let Some(first) = group.first() else { return true };
        let bytes = group.iter().chain([next]).map(|c| c.batches.len() as u64).sum::<u64>();
        let batches = group.iter().chain([next]).map(|c| c.batch_count as u64).sum::<u64>();
        let entries = batches.min(bytes / (self.index_interval + 1) + 1);
        let relative_end = next.info.next_offset - 1 - first.info.base_offset;
        bytes <= self.bytes && entries <= self.index_entries && relative_end <= i64::from(i32::MAX)
    }
}

/// A run of cleaned neighbouring segments as one replacement (a lone segment
/// only if it loses records); empties `group`.
fn merge(group: &mut Vec<Cleaned>) -> Option<Replacement> {
    let run = std::mem::take(group);
    if run.is_empty() || (run.len() == 1 && run[0].removed == 0) {
        return None;
    }
    let mut r = Replacement { segments: Vec::with_capacity(run.len()), batches: BytesMut::new(), kept: 0, removed: 0 };
    for c in run {
        r.batches.extend_from_slice(&c.batches);
        r.kept += c.kept;
        r.removed += c.removed;
        r.segments.push(c.info);
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use records::{write_batch, write_record, Compression as Codec};
    use storage::LogConfig;

    use super::*;
    use crate::record_batch;

    fn batch(records: &[(&str, Option<&str>)], now: i64) -> BytesMut {
        let entries = records.iter().map(|(k, v)| (Some(Bytes::from(k.to_string())), v.map(|v| Bytes::from(v.to_string())), now));
        crate::record_batch::encode(entries, Codec::Gzip).expect("encode")
    }

    /// Every record of the log as (offset, key, value).
    fn contents(log: &Log) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let read = |offset| Ok(log.read(offset, 1 << 20)?);
        record_batch::scan(read, log.log_start_offset(), log.log_end_offset(), |h, records| {
            let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
            out.extend(records.into_iter().map(|r| (r.offset(h), text(r.key).unwrap_or_default(), text(r.value))));
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

    /// A partition over [`log_with_history`], with a hook that holds a pass at
    /// the first `point` it reaches until the test lets it go on.
    struct HeldPass {
        started: std::sync::Barrier,
        resume: std::sync::Barrier,
        held: std::sync::atomic::AtomicBool,
        point: PassPoint,
    }

    impl HeldPass {
        fn new(point: PassPoint) -> HeldPass {
            let barrier = || std::sync::Barrier::new(2);
            HeldPass { started: barrier(), resume: barrier(), held: false.into(), point }
        }

        fn hook(&self, at: PassPoint) {
            if at == self.point && !self.held.swap(true, std::sync::atomic::Ordering::SeqCst) {
                self.started.wait();
                self.resume.wait();
            }
        }
    }

    fn partition_contents(p: &crate::partition::Partition) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        record_batch::scan(|offset| p.read(offset, 1 << 20), p.log_start_offset(), p.high_watermark(), |h, records| {
            let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
            out.extend(records.into_iter().map(|r| (r.offset(h), text(r.key).unwrap_or_default(), text(r.value))));
            Ok(())
        })
        .expect("decode");
        out
    }

    const POLICY: CleanPolicy = CleanPolicy { delete_retention_ms: 60_000, min_dirty_ratio: 0.5, segment_bytes: 200 };

    #[test]
    fn produce_and_fetch_go_on_while_a_pass_builds_its_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = crate::partition::Partition::new("t".into(), uuid::Uuid::new_v4(), 0, log_with_history(dir.path()), 0);
        let end = p.log_end_offset();
        let held = HeldPass::new(PassPoint::Read);
        let during: Vec<String> = (0..20).map(|i| format!("during-{i}")).collect();
        let (cleaned_to, stats) = std::thread::scope(|scope| {
            let pass = scope.spawn(|| p.clean_with(&POLICY, None, 2_000, &|at| held.hook(at)));
            held.started.wait();
            // The pass is held in its build phase: were it holding the partition's
            // lock, these would wait for it (and the test would never finish).
            for value in &during {
                p.append(&mut batch(&[("a", Some(value))], 1_000), 1_000).expect("append during the pass");
            }
            assert!(!p.read(0, 1 << 20).expect("fetch during the pass").is_empty());
            held.resume.wait();
            pass.join().expect("the pass")
        })
        .expect("clean");
        assert!(stats.removed >= 8 && stats.skipped == 0, "{stats:?}");
        assert!(cleaned_to > 0);
        let after = partition_contents(&p);
        let (old, new): (Vec<_>, Vec<_>) = after.into_iter().partition(|(o, _, _)| *o < end);
        let keys: Vec<&str> = old.iter().map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a", "c", "b", "d"], "{old:?}");
        let expected: Vec<(i64, String, Option<String>)> =
            during.iter().enumerate().map(|(i, v)| (end + i as i64, "a".to_string(), Some(v.clone()))).collect();
        assert_eq!(new, expected, "every append made during the pass is there, at its offset");
    }

    /// The names of the files in `dir` that end in `.cleaned`.
    fn cleaned_files(dir: &std::path::Path) -> Vec<String> {
        let names = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned());
        names.filter(|n| n.ends_with(".cleaned")).collect()
    }

    #[test]
    fn a_produce_during_the_cleaned_segment_write_is_not_blocked_by_the_cleaner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = crate::partition::Partition::new("t".into(), uuid::Uuid::new_v4(), 0, log_with_history(dir.path()), 0);
        let end = p.log_end_offset();
        let held = HeldPass::new(PassPoint::Swap);
        let (_, stats) = std::thread::scope(|scope| {
            let pass = scope.spawn(|| p.clean_with(&POLICY, None, 2_000, &|at| held.hook(at)));
            held.started.wait();
            // The first replacement's files are written and fsynced, and the
            // partition's lock is free: were the pass holding it, these would
            // wait for it (and the test would never finish).
            let staged = cleaned_files(dir.path());
            assert!(staged.iter().any(|n| n.ends_with(".log.cleaned")), "{staged:?}");
            p.append(&mut batch(&[("a", Some("during"))], 1_000), 1_000).expect("append during the write");
            assert!(!p.read(0, 1 << 20).expect("fetch during the write").is_empty());
            held.resume.wait();
            pass.join().expect("the pass")
        })
        .expect("clean");
        assert!(stats.removed >= 8 && stats.skipped == 0, "{stats:?}");
        assert!(cleaned_files(dir.path()).is_empty());
        let after = partition_contents(&p);
        let keys: Vec<&str> = after.iter().filter(|(o, _, _)| *o < end).map(|(_, k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a", "c", "b", "d"], "{after:?}");
        assert_eq!(after.last(), Some(&(end, "a".to_string(), Some("during".to_string()))));
    }

    #[test]
    fn a_run_whose_segments_changed_during_the_write_is_left_for_the_next_pass_and_its_cleaned_files_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = crate::partition::Partition::new("t".into(), uuid::Uuid::new_v4(), 0, log_with_history(dir.path()), 0);
        let before = partition_contents(&p);
        let first = std::fs::metadata(dir.path().join(format!("{:020}.log", 0))).expect("first segment").len();
        let held = HeldPass::new(PassPoint::Swap);
        let (cleaned_to, stats) = std::thread::scope(|scope| {
            let pass = scope.spawn(|| p.clean_with(&POLICY, None, 2_000, &|at| held.hook(at)));
            held.started.wait();
            assert!(!cleaned_files(dir.path()).is_empty(), "the first run's segment is written");
            // Retention deletes the oldest segment after the pass wrote its replacement.
            let total = p.size_in_bytes().expect("size");
            assert_eq!(p.apply_retention(None, Some(total - first), 2_000).expect("retention"), 1);
            held.resume.wait();
            pass.join().expect("the pass")
        })
        .expect("clean");
        assert!(stats.skipped >= 1, "{stats:?}");
        assert_eq!(cleaned_to, -1, "the next pass tries again");
        assert!(cleaned_files(dir.path()).is_empty(), "{:?}", cleaned_files(dir.path()));
        let start = p.log_start_offset();
        assert!(start > 0);
        let after = partition_contents(&p);
        // Nothing deleted came back, and what is left is what was there (a later run may have been cleaned).
        assert!(after.iter().all(|r| r.0 >= start && before.contains(r)), "{after:?}");
        assert_eq!(after.last(), before.last());
        let (_, again) = p.clean(&POLICY, Some(cleaned_to), 2_000).expect("the next pass");
        assert_eq!(again.skipped, 0, "{again:?}");
        let last = partition_contents(&p);
        assert!(last.iter().all(|r| before.contains(r)) && last.last() == before.last(), "{last:?}");
    }

    #[test]
    fn a_run_that_changed_before_its_write_is_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = crate::partition::Partition::new("t".into(), uuid::Uuid::new_v4(), 0, log_with_history(dir.path()), 0);
        let first = std::fs::metadata(dir.path().join(format!("{:020}.log", 0))).expect("first segment").len();
        let held = HeldPass::new(PassPoint::Stage);
        let (cleaned_to, stats) = std::thread::scope(|scope| {
            let pass = scope.spawn(|| p.clean_with(&POLICY, None, 2_000, &|at| {
                held.hook(at);
                if at == PassPoint::Swap {
                    // Only runs still unchanged get written: not the one of the deleted segment.
                    assert!(!dir.path().join(format!("{:020}.log.cleaned", 0)).exists());
                }
            }));
            held.started.wait();
            let total = p.size_in_bytes().expect("size");
            assert_eq!(p.apply_retention(None, Some(total - first), 2_000).expect("retention"), 1);
            held.resume.wait();
            pass.join().expect("the pass")
        })
        .expect("clean");
        assert_eq!(cleaned_to, -1);
        assert!(stats.skipped >= 1, "{stats:?}");
        assert!(cleaned_files(dir.path()).is_empty());
    }

    #[test]
    fn deleting_a_partition_waits_for_the_cleaners_write_into_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_dir = dir.path().join("t-0");
        let p = crate::partition::Partition::new("t".into(), uuid::Uuid::new_v4(), 0, log_with_history(&log_dir), 0);
        let held = HeldPass::new(PassPoint::Swap);
        let deleted = std::sync::atomic::AtomicBool::new(false);
        let result = std::thread::scope(|scope| {
            let pass = scope.spawn(|| p.clean_with(&POLICY, None, 2_000, &|at| held.hook(at)));
            held.started.wait();
            let delete = scope.spawn(|| {
                let r = p.delete();
                deleted.store(true, std::sync::atomic::Ordering::SeqCst);
                r
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!deleted.load(std::sync::atomic::Ordering::SeqCst), "the delete waits for the pass");
            held.resume.wait();
            let pass = pass.join().expect("the pass");
            delete.join().expect("the delete").expect("deleted");
            pass
        });
        assert!(result.is_ok(), "{:?}", result.err());
        assert!(!log_dir.exists());
    }

    #[test]
    fn a_failed_cleaned_segment_write_takes_the_log_dir_offline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = crate::partition::Partition::new("t".into(), uuid::Uuid::new_v4(), 0, log_with_history(dir.path()), 0);
        // A directory where the first run's `.log.cleaned` file goes: its write fails with an I/O error.
        std::fs::create_dir(dir.path().join(format!("{:020}.log.cleaned", 0))).expect("mkdir");
        let err = p.clean(&POLICY, None, 2_000).expect_err("the write fails");
        assert!(matches!(err, BrokerError::Storage(storage::StorageError::Io { .. })), "{err}");
        assert!(p.is_offline(), "the log dir is offline");
        assert!(p.append(&mut batch(&[("a", Some("x"))], 1_000), 1_000).is_err(), "nothing is written to it again");
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

    type Headers<'a> = &'a [(&'a str, Option<&'a str>)];

    /// A batch of (key, value, headers) records with timestamps 1000, 1010, …,
    /// written by our own codec (kafka-protocol's would merge duplicate keys).
    fn raw_batch(codec: Codec, producer: Option<(i64, i32)>, records: &[(Option<&str>, Option<&str>, Headers<'_>)]) -> Vec<u8> {
        let mut section = BytesMut::new();
        for (i, (k, v, headers)) in records.iter().enumerate() {
            let hs = headers.iter().map(|(hk, hv)| (hk.as_bytes(), hv.map(str::as_bytes)));
            write_record(&mut section, 10 * i as i64, i as i32, k.map(str::as_bytes), v.map(str::as_bytes), hs).expect("record");
        }
        let n = records.len() as i32;
        let (producer_id, base_sequence) = producer.unwrap_or((-1, -1));
        let header = BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: i16::from(codec.id()),
            last_offset_delta: n - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000 + 10 * (i64::from(n) - 1),
            producer_id,
            producer_epoch: if producer.is_some() { 0 } else { -1 },
            base_sequence,
            record_count: n,
        };
        write_batch(&header, n, &section).expect("batch").to_vec()
    }

    /// Every record of the log: offset, timestamp and its exact bytes, plus each batch's header.
    fn raw_contents(log: &Log) -> (Vec<(i64, i64, Bytes)>, Vec<BatchHeader>) {
        let (mut out, mut headers) = (Vec::new(), Vec::new());
        let read = |offset, max| Ok(log.read(offset, max)?);
        for_each_batch(&read, log.log_start_offset(), log.log_end_offset(), |h, bytes| {
            let (records, _) = records::decode_records(h, &bytes, 1 << 30).expect("decodes");
            for r in records {
                out.push((h.base_offset + i64::from(r.offset_delta), h.base_timestamp + r.timestamp_delta, r.bytes));
            }
            headers.push(*h);
            Ok(())
        })
        .expect("reads");
        (out, headers)
    }

    #[test]
    fn kept_records_are_copied_byte_for_byte_with_every_codec() {
        let dup: Headers<'_> = &[("trace", Some("1")), ("dup", Some("first")), ("dup", None), ("dup", Some("third")), ("", Some(""))];
        for codec in Codec::ALL {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = LogConfig { segment_bytes: 300, ..LogConfig::default() };
            let mut log = Log::open(dir.path(), config, true).expect("open");
            for round in 0..6 {
                let v = format!("value-{round}");
                let recs = [(Some("a"), Some(v.as_str()), dup), (Some("b"), None, dup), (Some(&*format!("u{round}")), Some(""), &[][..])];
                log.append(&mut raw_batch(codec, None, &recs), 0, 2_000).expect("append");
            }
            let (before, _) = raw_contents(&log);
            let policy = CleanPolicy { delete_retention_ms: 1 << 40, min_dirty_ratio: 0.0, segment_bytes: 300 };
            let stats = clean_log(&mut log, &policy, 3_000).expect("clean");
            assert!(stats.removed > 0, "{codec:?}: {stats:?}");
            let (after, headers) = raw_contents(&log);
            assert!(after.len() < before.len());
            // Every kept record is one of the originals, at its offset and timestamp, byte for byte.
            for record in &after {
                assert!(before.contains(record), "{codec:?}: {record:?} was changed");
            }
            let inactive_end = log.inactive_segments().expect("segments").last().expect("one").next_offset;
            let removed: Vec<i64> = before.iter().map(|r| r.0).filter(|o| !after.iter().any(|a| a.0 == *o)).collect();
            assert!(removed.iter().all(|o| *o < inactive_end), "{codec:?}: only inactive records go");
            for h in headers.iter().filter(|h| h.last_offset() < inactive_end) {
                assert_eq!(u8::from(h.compression()), codec.id(), "{codec:?}: rebuilt batches keep their codec");
            }
        }
    }

    #[test]
    fn segments_emptied_by_compaction_are_merged_even_past_segments_that_lose_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 150, ..LogConfig::default() };
        let mut log = Log::open(dir.path(), config, true).expect("open");
        // Segments alternate: one superseded record, one record of a unique key (nothing to remove).
        for i in 0..60 {
            let key = if i % 2 == 0 { "hot".to_string() } else { format!("unique-{i}") };
            log.append(&mut raw_batch(Codec::None, None, &[(Some(&key), Some("x"), &[])]), 0, 2_000).expect("append");
        }
        let before = log.segment_count();
        assert!(before >= 30, "{before} segments");
        let policy = CleanPolicy { delete_retention_ms: 1 << 40, min_dirty_ratio: 0.0, segment_bytes: 150 * 40 };
        let stats = clean_log(&mut log, &policy, 3_000).expect("clean");
        assert!(stats.removed >= 28, "{stats:?}");
        assert!(log.segment_count() <= 3, "{before} segments became {}", log.segment_count());
        let keys: Vec<String> = contents(&log).into_iter().map(|(_, k, _)| k).collect();
        assert_eq!(keys.iter().filter(|k| *k == "hot").count(), 1);
        assert_eq!(keys.iter().filter(|k| k.starts_with("unique-")).count(), 30);
        assert_eq!(clean_log(&mut log, &policy, 3_000).expect("clean"), CleanStats::default(), "stable");
    }

    #[test]
    fn a_producers_last_batch_stays_as_an_empty_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig { segment_bytes: 100, ..LogConfig::default() };
        let mut log = Log::open(dir.path(), config, true).expect("open");
        log.append(&mut raw_batch(Codec::Lz4, Some((7, 0)), &[(Some("k"), Some("1"), &[])]), 0, 2_000).expect("append");
        log.append(&mut raw_batch(Codec::Lz4, Some((8, 0)), &[(Some("k"), Some("2"), &[])]), 0, 2_000).expect("append");
        log.append(&mut raw_batch(Codec::Lz4, Some((7, 1)), &[(Some("k"), Some("3"), &[])]), 0, 2_000).expect("append");
        log.append(&mut raw_batch(Codec::None, None, &[(Some("x"), Some("4"), &[])]), 0, 2_000).expect("append");
        let policy = CleanPolicy { delete_retention_ms: 1 << 40, min_dirty_ratio: 0.0, segment_bytes: 1 << 20 };
        clean_log(&mut log, &policy, 3_000).expect("clean");
        let (records, headers) = raw_contents(&log);
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, [2, 3]);
        // Producer 8's only batch lost its record but stays, empty, with its offsets and sequence.
        let empty: Vec<&BatchHeader> = headers.iter().filter(|h| h.record_count == 0).collect();
        assert_eq!(empty.len(), 1, "{headers:?}");
        assert_eq!((empty[0].producer_id, empty[0].base_sequence, empty[0].base_offset, empty[0].last_offset()), (8, 0, 1, 1));
        // Producer 7's first batch went: its later batch carries its sequence.
        assert!(!headers.iter().any(|h| h.base_offset == 0));
    }
}
