//! One partition this broker hosts: its log, leader epoch and high watermark.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;
use storage::batch::BatchHeader;
use storage::{Log, LogConfig, StorageError};
use uuid::Uuid;

use crate::error::{BrokerError, Result};
use crate::log_dir_health::LogDirHealth;
use crate::producer_state::{ProducerStates, SequenceCheck};
use crate::recompress::ProducePolicy;

/// A hosted partition. On a single node this broker is always the leader and the
/// high watermark equals the log end; replication will move the high watermark
/// only when the in-sync replicas have the records.
pub struct Partition {
    /// The topic's name.
    pub topic: String,
    /// The topic's id.
    pub topic_id: Uuid,
    /// The partition index.
    pub index: i32,
    /// The log dir holding this partition's directory.
    log_dir: PathBuf,
    // Fetches read under the read lock, so they run beside each other.
    log: RwLock<Option<PartitionLog>>,
    leader_epoch: AtomicI32,
    high_watermark: AtomicI64,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    // Read on every produce; written on a config change.
    produce_policy: RwLock<ProducePolicy>,
    /// Why the log could not be opened at start, for a partition taken offline.
    offline: Option<String>,
    /// Whether the log dir failed: an I/O error writing this log takes the
    /// whole dir offline, and nothing in it is written again.
    health: Arc<LogDirHealth>,
}

/// The log and the producer state that must change together with it.
struct PartitionLog {
    log: Log,
    producers: ProducerStates,
}

/// Where a produced batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// The broker's timestamp, if the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
}

/// An offset and the timestamp of the record there, for ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(topic: String, topic_id: Uuid, index: i32, log: Log, leader_epoch: i32) -> Partition {
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        let log_dir = log.dir().parent().map_or_else(|| log.dir().to_path_buf(), Path::to_path_buf);
        Partition {
            topic,
            topic_id,
            index,
            log: RwLock::new(Some(PartitionLog { log, producers: ProducerStates::default() })),
            leader_epoch: AtomicI32::new(leader_epoch),
            high_watermark: AtomicI64::new(end),
            log_start_offset: AtomicI64::new(start),
            log_end_offset: AtomicI64::new(end),
            produce_policy: RwLock::new(ProducePolicy::default()),
            offline: None,
            health: Arc::new(LogDirHealth::new(log_dir.clone(), false)),
            log_dir,
        }
    }

    /// Shares the health of the log dir the partition lives in (a partition
    /// made without it watches its dir alone).
    pub(crate) fn in_log_dir(mut self, health: Arc<LogDirHealth>) -> Partition {
        self.health = health;
        self
    }

    /// A partition whose log could not be opened at start: every operation on
    /// it answers KAFKA_STORAGE_ERROR with `reason`, while the broker serves
    /// the others.
    pub fn offline(topic: String, topic_id: Uuid, index: i32, dir: &Path, leader_epoch: i32, reason: String) -> Partition {
        let log_dir = dir.parent().map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        Partition {
            topic,
            topic_id,
            index,
            log: RwLock::new(None),
            leader_epoch: AtomicI32::new(leader_epoch),
            high_watermark: AtomicI64::new(0),
            log_start_offset: AtomicI64::new(0),
            log_end_offset: AtomicI64::new(0),
            produce_policy: RwLock::new(ProducePolicy::default()),
            offline: Some(reason),
            health: Arc::new(LogDirHealth::new(log_dir.clone(), false)),
            log_dir,
        }
    }

    fn with_log<T>(&self, f: impl FnOnce(&mut Log) -> Result<T>) -> Result<T> {
        self.with_state(|state| f(&mut state.log))
    }

    /// Runs a change of the log; an I/O error takes the log dir offline (and
    /// nothing is written to an offline dir).
    fn with_state<T>(&self, f: impl FnOnce(&mut PartitionLog) -> Result<T>) -> Result<T> {
        let mut guard = self.log.write();
        self.check_log_dir()?;
        let Some(state) = guard.as_mut() else { return Err(self.deleted()) };
        let result = f(state);
        if let Err(BrokerError::Storage(e @ StorageError::Io { .. })) = &result {
            self.health.fail(e);
        }
        result
    }

    fn reading_log<T>(&self, f: impl FnOnce(&Log) -> Result<T>) -> Result<T> {
        self.check_log_dir()?;
        match self.log.read().as_ref() {
            Some(state) => f(&state.log),
            None => Err(self.deleted()),
        }
    }

    fn check_log_dir(&self) -> Result<()> {
        self.health.check(&format_args!("partition {}-{}", self.topic, self.index))
    }

    /// True for a partition whose log could not be opened at start or whose
    /// log dir failed.
    pub fn is_offline(&self) -> bool {
        self.offline.is_some() || self.health.is_offline()
    }

    /// Ok while the log is open; the error an operation on it would get
    /// otherwise (offline: KAFKA_STORAGE_ERROR, deleted: UNKNOWN_TOPIC_OR_PARTITION).
    pub fn check_online(&self) -> Result<()> {
        self.reading_log(|_| Ok(()))
    }

    fn deleted(&self) -> BrokerError {
        if let Some(reason) = &self.offline {
            return BrokerError::kafka(
                ResponseError::KafkaStorageError,
                format!("partition {}-{} is offline: {reason}", self.topic, self.index),
            );
        }
        BrokerError::kafka(
            ResponseError::UnknownTopicOrPartition,
            format!("partition {}-{} was deleted", self.topic, self.index),
        )
    }

    /// Validates and appends produced batches (patched in place), advancing the
    /// high watermark. A retried batch of an idempotent producer is not appended
    /// again: its original offset is returned.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<Appended> {
        let leader_epoch = self.leader_epoch();
        let idempotent = BatchHeader::parse(records).ok().filter(|h| h.producer_id >= 0);
        self.with_state(|state| {
            if let Some(h) = &idempotent {
                let check = state.producers.check(h.producer_id, h.producer_epoch, h.base_sequence, h.record_count)?;
                if let SequenceCheck::Duplicate { base_offset } = check {
                    return Ok(Appended { base_offset, log_append_time: None });
                }
            }
            let info = state.log.append(records, leader_epoch, now_ms)?;
            if let Some(h) = &idempotent {
                state.producers.record(h.producer_id, h.producer_epoch, h.base_sequence, h.record_count, info.base_offset);
            }
            let end = state.log.log_end_offset();
            self.log_end_offset.store(end, Ordering::Release);
            self.high_watermark.store(end, Ordering::Release);
            Ok(Appended { base_offset: info.base_offset, log_append_time: info.log_append_time })
        })
    }

    /// Whether appending `records` now would fsync (`flush.messages`) or roll
    /// a segment: disk work to keep off the async workers. A hint (another
    /// append may come first).
    pub fn append_may_block(&self, records: &[u8], now_ms: i64) -> bool {
        let count = BatchHeader::parse(records).map_or(1, |h| i64::from(h.record_count));
        self.log.read().as_ref().is_some_and(|state| state.log.append_may_block(records.len(), count, now_ms))
    }

    /// Compacts the log's inactive segments unless none rolled since
    /// `cleaned_up_to` (what the previous pass returned). Returns how far the
    /// inactive segments now reach (-1 when the log changed under the pass, so
    /// that the next one tries again) and what the pass did.
    pub(crate) fn clean(
        &self,
        policy: &crate::log_cleaner::CleanPolicy,
        cleaned_up_to: Option<i64>,
        now_ms: i64,
    ) -> Result<(i64, crate::log_cleaner::CleanStats)> {
        self.clean_with(policy, cleaned_up_to, now_ms, &|_| {})
    }

    /// [`Partition::clean`], calling `at` before each chunk the pass reads and
    /// before its swap (where a test holds it).
    pub(crate) fn clean_with(
        &self,
        policy: &crate::log_cleaner::CleanPolicy,
        cleaned_up_to: Option<i64>,
        now_ms: i64,
        at: &dyn Fn(crate::log_cleaner::PassPoint),
    ) -> Result<(i64, crate::log_cleaner::CleanStats)> {
        use crate::log_cleaner::{apply, plan, LogSnapshot, PassPoint};
        let snapshot = self.reading_log(LogSnapshot::of)?;
        let end = snapshot.cleanable_end();
        if cleaned_up_to == Some(end) || end < 0 {
            return Ok((end, Default::default()));
        }
        // Copy without holding the lock (each chunk read takes it briefly), so
        // produce and fetch go on during the pass...
        let read = |offset, max_bytes| {
            at(PassPoint::Read);
            self.reading_log(|log| Ok(log.read(offset, max_bytes)?))
        };
        let replacements = match plan(&read, &snapshot, policy, now_ms) {
            Ok(replacements) => replacements,
            // Retention or DeleteRecords moved the log start under the pass.
            Err(BrokerError::Storage(StorageError::OffsetOutOfRange { .. })) => return Ok((-1, Default::default())),
            Err(e) => return Err(e),
        };
        if replacements.is_empty() {
            return Ok((end, Default::default()));
        }
        // ...then swap under the write lock, only segments that did not change.
        at(PassPoint::Swap);
        let stats = self.with_log(|log| apply(log, replacements))?;
        Ok((if stats.skipped > 0 { -1 } else { end }, stats))
    }

    /// Whole batches from the one holding `offset`, at most `max_bytes` (but at
    /// least one batch), never past the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let high_watermark = self.high_watermark();
        let bytes = self.reading_log(|log| Ok(log.read(offset, max_bytes)?))?;
        Ok(below_offset(bytes, high_watermark))
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// The high watermark: the end of the records every in-sync replica has.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// The first record at or after the log start offset with a timestamp at or
    /// after `ts`.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampAndOffset>> {
        let start = self.log_start_offset();
        let matches = |t: i64, o: i64| t >= ts && o >= start;
        let Some(batch) = self.reading_log(|log| Ok(log.batch_at_or_after_timestamp(ts)?))? else {
            return Ok(None);
        };
        match find_record(batch, matches, false) {
            Some(found) => Ok(Some(found)),
            // The time index found a batch below the log start (DeleteRecords moved
            // it into a segment): look on from the start, as Kafka does.
            None => self.scan_for_timestamp(start, matches),
        }
    }

    /// The first record from `start` on that `matches` (timestamp, offset),
    /// decoding only batches whose max timestamp could match.
    fn scan_for_timestamp(&self, start: i64, matches: impl Fn(i64, i64) -> bool + Copy) -> Result<Option<TimestampAndOffset>> {
        let mut offset = start;
        while offset < self.high_watermark() {
            let bytes = self.read(offset, 1 << 20)?;
            let mut position = 0;
            while let Ok(h) = BatchHeader::parse(&bytes[position..]) {
                let size = h.total_size();
                if position + size > bytes.len() {
                    break;
                }
                if matches(h.max_timestamp, h.last_offset()) {
                    if let Some(found) = find_record(bytes.slice(position..position + size), matches, false) {
                        return Ok(Some(found));
                    }
                }
                offset = h.next_offset();
                position += size;
            }
            if position == 0 {
                break;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first one on ties, as Kafka).
    pub fn max_timestamp(&self) -> Result<Option<TimestampAndOffset>> {
        let batch = self.reading_log(|log| Ok(log.batch_with_max_timestamp()?))?;
        Ok(batch.and_then(|b| find_record(b, |_, _| true, true)))
    }

    /// The log dir this partition lives in.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Bytes of record batches in the partition's segments.
    pub fn size_in_bytes(&self) -> Result<u64> {
        self.reading_log(|log| Ok(log.size_in_bytes()))
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high
    /// watermark), deleting the segments wholly below it, and returns the new
    /// low watermark. Past the high watermark, or negative, is
    /// OFFSET_OUT_OF_RANGE, as in Kafka; an offset below the current start
    /// changes nothing.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&offset) {
            return Err(BrokerError::kafka(
                ResponseError::OffsetOutOfRange,
                format!(
                    "Cannot increment the log start offset to {offset} of partition {}-{} since it is larger than the high watermark {high_watermark}",
                    self.topic, self.index
                ),
            ));
        }
        self.advance_log_start_offset(offset)
    }

    /// Moves the log start offset forward to `offset` (at most the log end),
    /// as a `log-start-offset-checkpoint` recorded it; returns the new start.
    pub fn advance_log_start_offset(&self, offset: i64) -> Result<i64> {
        self.with_log(|log| {
            log.advance_log_start_offset(offset.min(log.log_end_offset()))?;
            let start = log.log_start_offset();
            self.log_start_offset.store(start, Ordering::Release);
            Ok(start)
        })
    }

    /// What the topic's configs ask of produced batches (compression, timestamps).
    pub fn produce_policy(&self) -> ProducePolicy {
        *self.produce_policy.read()
    }

    /// Sets the produce policy (a topic config change).
    pub fn set_produce_policy(&self, policy: ProducePolicy) {
        *self.produce_policy.write() = policy;
    }

    /// Applies new log settings (a topic config change).
    pub fn set_log_config(&self, config: LogConfig) -> Result<()> {
        self.with_log(|log| {
            log.set_config(config);
            Ok(())
        })
    }

    /// Deletes segments past retention (`retention.ms` / `retention.bytes`, None
    /// for unlimited), never beyond the high watermark; returns how many went.
    pub fn apply_retention(&self, retention_ms: Option<u64>, retention_bytes: Option<u64>, now_ms: i64) -> Result<usize> {
        let high_watermark = self.high_watermark();
        self.with_log(|log| {
            let deleted = log.delete_retained_segments(retention_ms, retention_bytes, high_watermark, now_ms)?;
            self.log_start_offset.store(log.log_start_offset(), Ordering::Release);
            Ok(deleted)
        })
    }

    /// Fsyncs if `flush.ms` has passed.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<()> {
        self.with_log(|log| Ok(log.maybe_flush_by_time(now_ms)?))
    }

    /// Fsyncs everything written so far.
    pub fn flush(&self) -> Result<()> {
        self.with_log(|log| Ok(log.flush()?))
    }

    /// Flushes and closes the log; later calls fail with UNKNOWN_TOPIC_OR_PARTITION.
    /// In a failed log dir the log is dropped unflushed: nothing is written there.
    pub fn close(&self) -> Result<()> {
        let taken = self.log.write().take();
        match taken {
            Some(_) if self.health.is_offline() => Ok(()),
            Some(state) => Ok(self.health.watch(state.log.close())?),
            None => Ok(()),
        }
    }

    /// Closes the log and removes its directory. In a failed log dir the
    /// directory stays; the next start removes it (the topic is gone from the metadata).
    pub fn delete(&self) -> Result<()> {
        let taken = self.log.write().take();
        match taken {
            Some(_) if self.health.is_offline() => Ok(()),
            Some(state) => Ok(self.health.watch(state.log.delete())?),
            None => Ok(()),
        }
    }
}

/// The leading whole batches of `bytes` that start below `end`: consumers never
/// see records past the high watermark.
fn below_offset(bytes: Bytes, end: i64) -> Bytes {
    let mut position = 0;
    while let Ok(header) = BatchHeader::parse(&bytes[position..]) {
        if header.base_offset >= end || position + header.total_size() > bytes.len() {
            break;
        }
        position += header.total_size();
    }
    if position == bytes.len() {
        bytes
    } else {
        bytes.slice(..position)
    }
}

/// Decodes one batch (decompressing if needed) and finds a record: the first whose
/// timestamp matches, or with `max` the one with the largest timestamp.
fn find_record(mut batch: Bytes, matches: impl Fn(i64, i64) -> bool, max: bool) -> Option<TimestampAndOffset> {
    let set = RecordBatchDecoder::decode(&mut batch).ok()?;
    let mut best: Option<TimestampAndOffset> = None;
    for record in set.records {
        let found = TimestampAndOffset { timestamp: record.timestamp, offset: record.offset };
        if max {
            if best.is_none_or(|b| found.timestamp > b.timestamp) {
                best = Some(found);
            }
        } else if matches(record.timestamp, record.offset) {
            return Some(found);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::Compression;

    fn batch(timestamps: &[i64]) -> BytesMut {
        let entries = timestamps.iter().map(|&ts| (None, Some(Bytes::from_static(b"v")), ts));
        crate::record_batch::encode(entries, Compression::None).expect("encode")
    }

    fn partition(dir: &std::path::Path) -> Partition {
        let log = Log::open(dir, LogConfig::default(), true).expect("open");
        Partition::new("t".into(), Uuid::new_v4(), 0, log, 0)
    }

    #[test]
    fn reads_stop_at_the_high_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        p.append(&mut batch(&[1, 2]), 0).expect("append");
        p.append(&mut batch(&[3]), 0).expect("append");
        assert_eq!(p.high_watermark(), 3);
        let all = p.read(0, 1 << 20).expect("read");
        p.high_watermark.store(2, Ordering::Release);
        let visible = p.read(0, 1 << 20).expect("read");
        assert!(visible.len() < all.len());
        assert_eq!(BatchHeader::parse(&visible).expect("header").last_offset(), 1);
        assert_eq!(visible.len(), BatchHeader::parse(&visible).expect("header").total_size());
    }

    #[test]
    fn timestamp_lookup_finds_the_record_inside_a_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        p.append(&mut batch(&[100, 200, 300]), 0).expect("append");
        let found = p.offset_for_timestamp(150).expect("lookup").expect("found");
        assert_eq!(found, TimestampAndOffset { timestamp: 200, offset: 1 });
        assert_eq!(p.offset_for_timestamp(301).expect("lookup"), None);
        assert_eq!(p.max_timestamp().expect("max"), Some(TimestampAndOffset { timestamp: 300, offset: 2 }));
    }

    #[test]
    fn timestamp_lookup_skips_records_below_the_log_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        p.append(&mut batch(&[100, 200, 300]), 0).expect("append");
        p.append(&mut batch(&[400]), 0).expect("append");
        assert_eq!(p.delete_records_before(2).expect("delete"), 2);
        assert_eq!(p.offset_for_timestamp(150).expect("lookup"), Some(TimestampAndOffset { timestamp: 300, offset: 2 }));
        assert_eq!(p.delete_records_before(3).expect("delete"), 3);
        assert_eq!(p.offset_for_timestamp(0).expect("lookup"), Some(TimestampAndOffset { timestamp: 400, offset: 3 }));
        assert!(matches!(p.read(1, 1 << 20), Err(e) if e.code() == ResponseError::OffsetOutOfRange.code()));
    }

    #[test]
    fn a_failed_write_takes_the_whole_log_dir_offline_and_nothing_is_retried() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (failing, other) = (tmp.path().join("a"), tmp.path().join("b"));
        let healths = crate::log_dir_health::LogDirHealths::new(&[tmp.path().join("meta"), failing.clone(), other.clone()]);
        let open = |dir: &Path, name: &str| {
            let config = LogConfig { segment_bytes: 100, ..LogConfig::default() };
            let log = Log::open(&dir.join(name), config, true).expect("open");
            let health = Arc::clone(healths.of(dir).expect("a log dir"));
            Partition::new(name.into(), Uuid::new_v4(), 0, log, 0).in_log_dir(health)
        };
        let (p, neighbour, elsewhere) = (open(&failing, "p"), open(&failing, "n"), open(&other, "e"));
        p.append(&mut batch(&[1]), 0).expect("append");
        // The next append rolls a segment into a directory that is gone: an I/O error.
        std::fs::remove_dir_all(failing.join("p")).expect("remove");
        let err = p.append(&mut batch(&[2; 20]), 0).expect_err("roll fails");
        assert_eq!(err.response_error(), ResponseError::KafkaStorageError, "{err}");
        assert!(p.is_offline() && neighbour.is_offline(), "the whole dir is offline");
        assert_eq!(healths.offline_dirs(), vec![failing.clone()]);
        // Nothing is written there again, not even by a partition whose files are fine.
        let size = std::fs::metadata(failing.join("n").join("00000000000000000000.log")).expect("stat").len();
        for result in [neighbour.append(&mut batch(&[3]), 0).map(|_| ()), neighbour.flush(), p.flush(), neighbour.advance_log_start_offset(0).map(|_| ())] {
            assert_eq!(result.expect_err("offline").response_error(), ResponseError::KafkaStorageError);
        }
        assert!(matches!(neighbour.read(0, 1 << 20), Err(e) if e.response_error() == ResponseError::KafkaStorageError));
        assert!(matches!(neighbour.check_online(), Err(e) if e.to_string().contains("log dir")));
        assert_eq!(std::fs::metadata(failing.join("n").join("00000000000000000000.log")).expect("stat").len(), size);
        neighbour.close().expect("closing an offline partition writes nothing");
        // Another log dir keeps working.
        assert!(!elsewhere.is_offline());
        assert_eq!(elsewhere.append(&mut batch(&[4]), 0).expect("append").base_offset, 0);
        assert_eq!(elsewhere.read(0, 1 << 20).expect("read").len(), batch(&[4]).len());
    }

    #[test]
    fn retried_idempotent_batch_gets_its_first_offset_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = partition(dir.path());
        let mut first = batch(&[1, 2]);
        // producer id 9, epoch 0, base sequence 0: bytes 43..57 of the header.
        first[43..51].copy_from_slice(&9i64.to_be_bytes());
        first[51..53].copy_from_slice(&0i16.to_be_bytes());
        first[53..57].copy_from_slice(&0i32.to_be_bytes());
        let crc = crc32c::crc32c(&first[21..]);
        first[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut retry = first.clone();
        assert_eq!(p.append(&mut first, 0).expect("append").base_offset, 0);
        assert_eq!(p.append(&mut retry, 0).expect("retry").base_offset, 0);
        assert_eq!(p.log_end_offset(), 2, "the retry appended nothing");
    }
}
