//! [`Log`]: a partition's append-only log, a sequence of segments.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::{debug, warn};

use records::batch::{self, BatchHeader, BatchIter, TimestampType};
use crate::config::LogConfig;
use crate::error::{io_err, Result, StorageError};
use crate::leader_epoch::{EpochEntry, LeaderEpochCache};
use crate::producer_state::{ProducerBatch, ProducerStateManager};
use crate::recovery::{complete_swap, open_segments, rebuild_segment, sync_dir};
use crate::segment::{
    remove_if_exists, rename_segment_files, staged_path, BatchMeta, HeaderScan, Segment,
    CLEANED_EXT, LOG_SUFFIX, SEGMENT_SUFFIXES, SWAP_EXT,
};

/// What [`Log::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset assigned to the last record.
    pub last_offset: i64,
    /// Largest batch max-timestamp of the append (the append time under
    /// LogAppendTime).
    pub max_timestamp: i64,
    /// `Some(now_ms)` when the log uses LogAppendTime (goes into the produce
    /// response), else `None`.
    pub log_append_time: Option<i64>,
    /// Number of records appended.
    pub record_count: i64,
    /// Number of batches appended.
    pub batch_count: usize,
    /// True when an idempotent producer retried a batch the log already
    /// holds: nothing was appended, the offsets are the original batch's.
    pub duplicate: bool,
}

/// One segment as [`Log::inactive_segments`] reports it to a log cleaner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's base offset (its file name).
    pub base_offset: i64,
    /// Offset after the segment's last batch; `base_offset` when it is empty.
    /// Offsets from here up to the next segment's base were compacted away.
    pub next_offset: i64,
    /// Bytes of batches in the `.log` file.
    pub size_bytes: u64,
    /// The largest batch timestamp or, when no batch has one, the `.log`
    /// file's modification time in ms since the epoch (what retention uses).
    pub largest_timestamp: i64,
}

/// A run of inactive segments a replacement segment is written for, as
/// [`Log::replacement_target`] saw it. It holds no lock and no file: writing
/// the replacement ([`ReplacementTarget::stage`]) needs no access to the log.
#[derive(Debug, Clone)]
pub struct ReplacementTarget {
    dir: PathBuf,
    config: LogConfig,
    first_base: i64,
    last_base: i64,
    /// Each replaced segment's base offset, next offset and size.
    run: Vec<(i64, i64, u64)>,
    /// The last replaced segment's modification time, which the new one gets.
    modified: std::time::SystemTime,
}

/// A replacement segment written and fsynced as
/// `<first_base>.{log,index,timeindex}.cleaned` files, waiting for
/// [`Log::swap_in`] (or [`StagedReplacement::discard`]). Dropped without
/// either, its files stay until the log is next opened, which deletes them.
#[derive(Debug)]
#[must_use = "swap it in or discard it"]
pub struct StagedReplacement {
    target: ReplacementTarget,
    bytes: usize,
}

/// What [`Log::swap_in`] did.
#[derive(Debug)]
#[must_use]
pub enum SwapOutcome {
    /// The new segment took the place of the run.
    Swapped,
    /// The run changed (retention, DeleteRecords, a truncation or another
    /// replacement) after the target was taken: nothing was swapped.
    Changed(StagedReplacement),
}

impl ReplacementTarget {
    /// The second step of a segment replacement (see [`Log::replace_segments`]),
    /// without the log: checks `batches` against the run and writes them as
    /// the new segment's `.cleaned` files (indexed as appends are), fsynced.
    /// Bad batches give [`StorageError::InvalidReplacement`]; on any error no
    /// `.cleaned` file stays.
    pub fn stage(self, batches: &[u8]) -> Result<StagedReplacement> {
        let limit = self.run.last().map_or(self.first_base, |&(_, next, _)| next);
        let metas = check_replacement(batches, self.first_base, limit).map_err(|reason| {
            StorageError::InvalidReplacement {
                dir: self.dir.clone(),
                first_base: self.first_base,
                last_base: self.last_base,
                reason,
            }
        })?;
        Segment::write_cleaned(&self.dir, self.first_base, &self.config, batches, &metas, self.modified)?;
        Ok(StagedReplacement { target: self, bytes: batches.len() })
    }
}

impl StagedReplacement {
    /// The path of the staged `.log.cleaned` file.
    pub fn log_path(&self) -> PathBuf {
        staged_path(&self.target.dir, self.target.first_base, LOG_SUFFIX, Some(CLEANED_EXT))
    }

    /// Deletes the `.cleaned` files (a run that changed meanwhile).
    pub fn discard(self) -> Result<()> {
        for suffix in SEGMENT_SUFFIXES {
            remove_if_exists(&staged_path(&self.target.dir, self.target.first_base, suffix, Some(CLEANED_EXT)))?;
        }
        Ok(())
    }
}

/// Best-effort removal of a replacement's `.cleaned` and `.swap` files after
/// a failed rename (the error that caused it is what the caller reports).
fn remove_staged(dir: &Path, first_base: i64) {
    for stage in [CLEANED_EXT, SWAP_EXT] {
        for suffix in SEGMENT_SUFFIXES {
            let _ = remove_if_exists(&staged_path(dir, first_base, suffix, Some(stage)));
        }
    }
}

/// A partition's log on disk: segments of whole v2 record batches named by
/// base offset, each with a sparse offset index and time index.
///
/// Mutating methods take `&mut self`; reads take `&self` and use positional
/// reads, so a `RwLock<Log>` lets fetches run concurrently.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset; never empty; the last one is active.
    segments: Vec<Segment>,
    /// The log start offset as DeleteRecords (or a checkpoint) moved it; the
    /// effective start is the larger of this and the oldest segment's base.
    log_start_offset: i64,
    unflushed_messages: u64,
    first_unflushed_ms: Option<i64>,
    /// Offsets below this are known to be on disk (fsynced).
    recovery_point: i64,
    /// Leader epochs and their start offsets (`leader-epoch-checkpoint`).
    epochs: LeaderEpochCache,
    /// Idempotent producers' last batches (`<offset>.snapshot`).
    producers: ProducerStateManager,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Log {
    /// Opens the log in `dir` (creating the directory if missing) and
    /// recovers it.
    ///
    /// `clean_shutdown == false` scans the active segment batch by batch
    /// (framing, magic, CRC-32C, offset order), truncates the torn or corrupt
    /// tail from the file and indexes, and rebuilds its indexes. In either
    /// mode, any segment whose `.index`/`.timeindex` is missing or corrupt
    /// (size not a multiple of the entry size, entries not increasing,
    /// pointing past the file end or outside the segment) is rebuilt by a
    /// scan; a corrupt batch in a non-active (flushed) segment costs only
    /// that batch (or, if its framing is damaged, the rest of that segment):
    /// later segments stay.
    ///
    /// The leader-epoch cache is read from `leader-epoch-checkpoint` (rebuilt
    /// from the batches if missing or damaged), the producer state from the
    /// latest snapshot plus a scan of the batches after it.
    pub fn open(dir: &Path, config: LogConfig, clean_shutdown: bool) -> Result<Log> {
        Log::open_with_recovery_point(dir, config, clean_shutdown, None)
    }

    /// [`Log::open`] knowing the log's recovery point (from the log dir's
    /// `recovery-point-offset-checkpoint`): everything below it was flushed,
    /// so after an unclean shutdown the active segment is checked only from
    /// its indexed batch at or below the recovery point on (as Kafka recovers
    /// only above it), and no producer-state snapshot above it is trusted.
    pub fn open_with_recovery_point(
        dir: &Path,
        config: LogConfig,
        clean_shutdown: bool,
        recovery_point: Option<i64>,
    ) -> Result<Log> {
        let mut segments = open_segments(dir, &config, clean_shutdown, recovery_point)?;
        // Only the active segment may keep files open (recovery's writes to
        // older ones are flushed here).
        let inactive = segments.len().saturating_sub(1);
        for seg in &mut segments[..inactive] {
            seg.release_files()?;
        }
        let log_end = segments.last().map_or(0, |s| s.next_offset);
        let (producers, snapshot) =
            ProducerStateManager::load(dir, recovery_point.map_or(log_end, |rp| rp.min(log_end)))?;
        let (epochs, epochs_complete) = match LeaderEpochCache::load(dir) {
            Ok(Some(cache)) => (cache, true),
            Ok(None) => (LeaderEpochCache::empty(dir), false),
            Err(StorageError::CorruptRecord(why)) => {
                warn!(dir = %dir.display(), %why, "rebuilding the leader-epoch cache from the log");
                (LeaderEpochCache::empty(dir), false)
            }
            Err(e) => return Err(e),
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: 0,
            unflushed_messages: 0,
            first_unflushed_ms: None,
            recovery_point: log_end,
            epochs,
            producers,
        };
        log.load_replication_state(snapshot, epochs_complete)?;
        debug!(
            dir = %log.dir.display(),
            log_start = log.log_start_offset(),
            log_end = log.log_end_offset(),
            segments = log.segments.len(),
            "log opened"
        );
        // Make recovery's rewrites durable (no-op when nothing changed).
        log.flush()?;
        Ok(log)
    }

    /// Brings the leader-epoch cache and the producer state up to the
    /// segments: replays the batches from the producer snapshot at `snapshot`
    /// (from the log start without one) and, unless `epochs_complete`, rebuilds
    /// the epoch cache from every batch.
    fn load_replication_state(&mut self, snapshot: Option<i64>, epochs_complete: bool) -> Result<()> {
        let log_end = self.log_end_offset();
        let first_base = self.segments.first().map_or(0, |s| s.base_offset);
        let replay_from = snapshot.unwrap_or(first_base);
        if epochs_complete {
            self.epochs.truncate_from_end(log_end)?;
        } else {
            let mut rebuilt: Vec<EpochEntry> = Vec::new();
            for_each_batch(&self.segments, first_base, |h| {
                if h.partition_leader_epoch >= 0
                    && rebuilt.last().is_none_or(|e| h.partition_leader_epoch > e.epoch)
                {
                    rebuilt.push(EpochEntry {
                        epoch: h.partition_leader_epoch,
                        start_offset: h.base_offset,
                    });
                }
            })?;
            self.epochs.replace(rebuilt)?;
        }
        self.epochs.truncate_from_start(self.log_start_offset())?;
        let (producers, epochs) = (&mut self.producers, &mut self.epochs);
        let mut assigned = Ok(());
        for_each_batch(&self.segments, replay_from, |h| {
            if let Some(batch) = ProducerBatch::of(h, h.base_offset, h.max_timestamp) {
                producers.record(&batch);
            }
            // Batches a crash kept but whose epoch the checkpoint missed (as
            // Kafka's recovery, only epochs above the latest).
            let newer = epochs.latest_epoch().is_none_or(|e| h.partition_leader_epoch > e);
            if epochs_complete && newer && assigned.is_ok() {
                assigned = epochs.assign(h.partition_leader_epoch, h.base_offset);
            }
        })?;
        assigned
    }

    /// Kafka's OffsetsForLeaderEpoch for this log: the largest epoch <=
    /// `epoch` that appended here and the offset where it ended (the start of
    /// the next epoch, or the log end for the latest); `(-1, -1)` for an
    /// undefined epoch or one above the latest (see
    /// [`crate::leader_epoch`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Starts `epoch` at the log end in the leader-epoch cache (Kafka's
    /// `maybeAssignEpochStartOffset` when a broker becomes leader), so that
    /// OffsetsForLeaderEpoch knows the epoch before anything is appended in
    /// it; nothing changes if it is already the latest epoch.
    pub fn assign_epoch_start(&mut self, epoch: i32) -> Result<()> {
        let log_end = self.log_end_offset();
        self.epochs.assign(epoch, log_end)
    }

    /// The leader epochs and their start offsets, oldest first.
    pub fn leader_epochs(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    /// The latest leader epoch that appended to the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// Offsets below this are on disk: the log end at the last flush (Kafka's
    /// recovery point, checkpointed per log dir).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// The log's configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (topic config change); applies from the
    /// next append.
    pub fn set_config(&mut self, config: LogConfig) {
        for s in &mut self.segments {
            s.apply_config(&config);
        }
        self.config = config;
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// First offset of the log: the oldest segment's base offset, or, when
    /// [`Log::advance_log_start_offset`] moved it further, that offset.
    pub fn log_start_offset(&self) -> i64 {
        let first_base = self.segments.first().map_or(0, |s| s.base_offset);
        first_base.max(self.log_start_offset)
    }

    /// Moves the log start offset forward to `offset` (Kafka's
    /// `maybeIncrementLogStartOffset`, for DeleteRecords and for the offset a
    /// `log-start-offset-checkpoint` recorded) and deletes the segments that
    /// lie wholly below it (the active segment stays). Offsets below the new
    /// start are out of range for reads. An offset at or below the current
    /// start changes nothing; past the log end it is
    /// [`StorageError::OffsetOutOfRange`]. Returns the number of deleted
    /// segments.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<usize> {
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        if offset > log_end {
            return Err(StorageError::OffsetOutOfRange { offset, log_start, log_end });
        }
        if offset <= log_start {
            return Ok(0);
        }
        self.log_start_offset = offset;
        // A segment goes when the next one starts at or below the new start.
        let doomed = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset <= offset)
            .count();
        for seg in self.segments.drain(..doomed).collect::<Vec<_>>() {
            debug!(segment = %seg.log_path.display(), offset, "deleting segment below the log start offset");
            seg.delete_files()?;
        }
        if doomed > 0 {
            sync_dir(&self.dir)?;
        }
        self.after_log_start_moved()?;
        Ok(doomed)
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.next_offset)
    }

    /// Number of segments (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Segments that keep files open: at most one, the active segment (for
    /// tests and metrics). The others are read through [`crate::file_cache`].
    pub fn segments_with_open_files(&self) -> usize {
        self.segments.iter().filter(|s| s.holds_files()).count()
    }

    /// Total bytes of batch data in all segments.
    pub fn size_in_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    fn active(&mut self) -> Result<&mut Segment> {
        let dir = &self.dir;
        self.segments.last_mut().ok_or_else(|| StorageError::Io {
            path: dir.clone(),
            source: std::io::Error::other("log has no segments"),
        })
    }

    /// Validates, stamps and appends the batches in `records`.
    ///
    /// Every batch is validated first (exact length framing with no trailing
    /// partial batch, magic 2, size <= `max_message_bytes`, known
    /// compression, record count >= 1 and `last_offset_delta ==
    /// record_count - 1`, CRC-32C); on any error nothing is appended. Then
    /// each batch gets, in place, consecutive base offsets from the log end
    /// and `leader_epoch` (neither is covered by the CRC); under
    /// LogAppendTime the timestamp-type bit and max timestamp are set to
    /// `now_ms` and the CRC recomputed. A new segment is rolled first if the
    /// active one would exceed `segment_bytes`, is older than `segment_ms`
    /// (since its first append), has a full index, or the offsets would not
    /// fit its relative-offset range. The bytes are written verbatim.
    pub fn append(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        // 1. Validate everything before touching anything.
        let mut found = Vec::new();
        for b in BatchIter::new(records) {
            let b = b?;
            let h = batch::validate(b.bytes, self.config.max_message_bytes)?;
            found.push((b.position, h));
        }
        if found.is_empty() {
            return Err(StorageError::InvalidRecord(
                "append contains no record batch".into(),
            ));
        }
        let record_count: i64 = found
            .iter()
            .map(|(_, h)| i64::from(h.last_offset_delta) + 1)
            .sum();
        let base_offset = self.log_end_offset();
        let last_offset = base_offset + record_count - 1;
        let append_time = self.config.timestamp_type == TimestampType::LogAppendTime;

        // 2. Idempotent producers: a retried batch is answered from the
        // state, a gap or an old epoch refused, before anything is written.
        let mut producer_batches = Vec::new();
        let mut next = base_offset;
        for (_, h) in &found {
            let ts = if append_time { now_ms } else { h.max_timestamp };
            if let Some(batch) = ProducerBatch::of(h, next, ts) {
                if let Some(dup) = self.producers.check(&producer_batches, &batch)? {
                    return Ok(AppendInfo {
                        base_offset: dup.base_offset,
                        last_offset: dup.last_offset,
                        max_timestamp: dup.timestamp,
                        log_append_time: None,
                        record_count: 0,
                        batch_count: 0,
                        duplicate: true,
                    });
                }
                producer_batches.push(batch);
            }
            next += i64::from(h.last_offset_delta) + 1;
        }

        // 3. Roll if needed.
        self.maybe_roll(records.len(), last_offset, now_ms)?;

        // 4. Stamp offsets, epoch and (LogAppendTime) timestamps.
        let mut metas = Vec::with_capacity(found.len());
        let mut next = base_offset;
        let mut max_timestamp = -1;
        for (pos, h) in &found {
            let total = h.total_size();
            let bytes = records
                .get_mut(*pos..*pos + total)
                .ok_or_else(|| StorageError::CorruptRecord("batch out of bounds".into()))?;
            batch::set_base_offset(bytes, next)?;
            batch::set_partition_leader_epoch(bytes, leader_epoch)?;
            let ts = if append_time {
                batch::set_max_timestamp(bytes, TimestampType::LogAppendTime, now_ms)?;
                now_ms
            } else {
                h.max_timestamp
            };
            max_timestamp = max_timestamp.max(ts);
            let last = next + i64::from(h.last_offset_delta);
            metas.push(BatchMeta {
                size: total,
                last_offset: last,
                max_timestamp: ts,
            });
            next = last + 1;
        }

        self.write(records, &metas, record_count, now_ms)?;
        for batch in &producer_batches {
            self.producers.record(batch);
        }
        self.epochs.assign(leader_epoch, base_offset)?;
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            log_append_time: append_time.then_some(now_ms),
            record_count,
            batch_count: found.len(),
            duplicate: false,
        })
    }

    /// Appends batches that already carry their offsets, epochs and
    /// timestamps (a follower appending what it fetched from the leader).
    ///
    /// Every batch is checked first (framing, magic 2, CRC-32C, size <=
    /// `max_message_bytes`); offsets must be increasing and the first base
    /// offset >= the log end (gaps are allowed: compacted leaders have them),
    /// else [`StorageError::InvalidRecord`]. Nothing is appended on error.
    /// Bytes are written unchanged.
    pub fn append_replicated(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        let mut metas = Vec::new();
        let mut next = self.log_end_offset();
        let mut first = None;
        let mut record_count = 0i64;
        let mut max_timestamp = -1;
        let mut headers = Vec::new();
        for b in BatchIter::new(records) {
            let b = b?;
            let h = BatchHeader::parse(b.bytes)?;
            if h.total_size() > self.config.max_message_bytes {
                return Err(StorageError::RecordTooLarge {
                    size: h.total_size(),
                    max: self.config.max_message_bytes,
                });
            }
            h.verify_crc(b.bytes)?;
            if h.base_offset < next || h.last_offset_delta < 0 {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch {}..={} does not follow offset {}",
                    h.base_offset,
                    h.last_offset(),
                    next - 1
                )));
            }
            first.get_or_insert(h.base_offset);
            next = h.next_offset();
            record_count += i64::from(h.record_count.max(0));
            max_timestamp = max_timestamp.max(h.max_timestamp);
            metas.push(BatchMeta {
                size: h.total_size(),
                last_offset: h.last_offset(),
                max_timestamp: h.max_timestamp,
            });
            headers.push(h);
        }
        let Some(base_offset) = first else {
            return Err(StorageError::InvalidRecord(
                "append contains no record batch".into(),
            ));
        };
        let last_offset = next - 1;
        // A gap larger than a segment's offset range starts a new segment there.
        self.maybe_roll(records.len(), last_offset, now_ms)?;
        if self.log_end_offset() < base_offset && self.segments.last().is_some_and(|s| s.size == 0)
        {
            self.restart_active_at(base_offset)?;
        }
        self.write(records, &metas, record_count, now_ms)?;
        // The leader checked the producers' sequences; a follower records them.
        for h in &headers {
            if let Some(batch) = ProducerBatch::of(h, h.base_offset, h.max_timestamp) {
                self.producers.record(&batch);
            }
            self.epochs.assign(h.partition_leader_epoch, h.base_offset)?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            log_append_time: None,
            record_count,
            batch_count: metas.len(),
            duplicate: false,
        })
    }

    /// Replaces an empty active segment by one based at `base`.
    fn restart_active_at(&mut self, base: i64) -> Result<()> {
        if let Some(old) = self.segments.pop() {
            old.delete_files()?;
        }
        self.segments
            .push(Segment::create(&self.dir, base, &self.config)?);
        sync_dir(&self.dir)
    }

    /// Writes validated, stamped batches to the active segment and applies
    /// the flush policy (`record_count` counts towards
    /// `flush_interval_messages`).
    fn write(
        &mut self,
        records: &[u8],
        metas: &[BatchMeta],
        record_count: i64,
        now_ms: i64,
    ) -> Result<()> {
        let interval = self.config.index_interval_bytes;
        self.active()?.append(records, metas, interval, now_ms)?;
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(record_count.max(0) as u64);
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Whether appending `append_bytes` holding `record_count` records now
    /// would fsync (`flush_interval_messages`) or roll a segment (file
    /// creation, a directory fsync): disk work a caller may want to run off an
    /// async worker. A hint: a concurrent append may change the answer.
    pub fn append_may_block(&self, append_bytes: usize, record_count: i64, now_ms: i64) -> bool {
        let records = u64::try_from(record_count.max(0)).unwrap_or(0);
        let last_offset = self.log_end_offset() + record_count.max(1) - 1;
        self.unflushed_messages.saturating_add(records) >= self.config.flush_interval_messages
            || self.roll_reason(append_bytes, last_offset, now_ms).is_some()
    }

    fn maybe_roll(&mut self, append_bytes: usize, last_offset: i64, now_ms: i64) -> Result<()> {
        match self.roll_reason(append_bytes, last_offset, now_ms) {
            Some(reason) => self.roll(reason),
            None => Ok(()),
        }
    }

    /// Why an append of `append_bytes` up to `last_offset` must roll first, if it must.
    fn roll_reason(&self, append_bytes: usize, last_offset: i64, now_ms: i64) -> Option<&'static str> {
        let config = &self.config;
        let active = self.segments.last()?;
        if active.size == 0 {
            return None;
        }
        let segment_ms = to_i64(config.segment_ms);
        // Index positions are u32: never let a segment grow past 4 GiB.
        let max_size = config.segment_bytes.min(u64::from(u32::MAX));
        let reason = if active.size.saturating_add(append_bytes as u64) > max_size {
            "size"
        } else if active
            .roll_base_ms
            .is_some_and(|b| now_ms.saturating_sub(b) > segment_ms)
        {
            "time"
        } else if active.offset_index.is_full() || active.time_index.is_full() {
            "index full"
        } else if last_offset - active.base_offset > i64::from(i32::MAX) {
            "offset range"
        } else {
            return None;
        };
        Some(reason)
    }

    fn roll(&mut self, reason: &str) -> Result<()> {
        let new_base = self.log_end_offset();
        let active = self.active()?;
        active.seal_time_index()?;
        // Flushed and closed: from now on it is read through the file cache.
        active.release_files()?;
        debug!(dir = %self.dir.display(), new_base, reason, "rolling segment");
        let seg = Segment::create(&self.dir, new_base, &self.config)?;
        sync_dir(&self.dir)?;
        self.segments.push(seg);
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        self.recovery_point = new_base;
        // As Kafka: the producer state as of the new segment's base, so an
        // open replays at most the active segment.
        self.producers.take_snapshot(new_base)
    }

    fn check_range(&self, offset: i64) -> Result<()> {
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        if offset < log_start || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        Ok(())
    }

    /// Whole batches starting with the one that contains `offset`, up to
    /// `max_bytes` in total but always at least one whole batch when one
    /// exists (KIP-74). Reads from one segment only, so it may return less
    /// than `max_bytes` at a segment boundary. `offset == log_end` gives an
    /// empty result; outside `[log_start, log_end]` is
    /// [`StorageError::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        self.check_range(offset)?;
        if offset == self.log_end_offset() {
            return Ok(Bytes::new());
        }
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for seg in self.segments.get(first..).unwrap_or_default() {
            if let Some((pos, h)) = seg.find(offset)? {
                return seg.read_from(pos, &h, max_bytes);
            }
        }
        Ok(Bytes::new())
    }

    /// Raw bytes of the first batch whose max timestamp is >= `ts` (found via
    /// the time index), or `None`. Batches with negative timestamps are
    /// never matched.
    pub fn batch_at_or_after_timestamp(&self, ts: i64) -> Result<Option<Bytes>> {
        for seg in &self.segments {
            if seg.max_timestamp.is_some_and(|(t, _)| t >= ts) {
                if let Some((pos, h)) = seg.find_timestamp(ts)? {
                    return seg
                        .read_exact(pos, h.total_size())
                        .map(|v| Some(Bytes::from(v)));
                }
            }
        }
        Ok(None)
    }

    /// Raw bytes of the batch with the largest max timestamp (Kafka's
    /// `MAX_TIMESTAMP` lookup). On ties the first (lowest-offset) batch wins,
    /// as in Kafka. `None` if the log holds no batch with a timestamp >= 0.
    pub fn batch_with_max_timestamp(&self) -> Result<Option<Bytes>> {
        let mut best: Option<(&Segment, i64)> = None;
        for seg in &self.segments {
            if let Some((t, _)) = seg.max_timestamp {
                if best.is_none_or(|(_, bt)| t > bt) {
                    best = Some((seg, t));
                }
            }
        }
        let Some((seg, t)) = best else {
            return Ok(None);
        };
        match seg.find_timestamp(t)? {
            Some((pos, h)) => seg
                .read_exact(pos, h.total_size())
                .map(|v| Some(Bytes::from(v))),
            None => Ok(None),
        }
    }

    /// Every segment except the active one, oldest first: the segments a log
    /// cleaner may rewrite with [`Log::replace_segments`].
    ///
    /// Fails only if a segment without batch timestamps cannot report its
    /// file's modification time.
    pub fn inactive_segments(&self) -> Result<Vec<SegmentInfo>> {
        let inactive = self.segments.len().saturating_sub(1);
        self.segments[..inactive]
            .iter()
            .map(|s| {
                Ok(SegmentInfo {
                    base_offset: s.base_offset,
                    next_offset: s.next_offset,
                    size_bytes: s.size,
                    largest_timestamp: s.largest_timestamp()?,
                })
            })
            .collect()
    }

    /// All batches of the segment whose base offset is `base_offset`, as
    /// stored (at most its size, which rolling keeps near `segment_bytes`).
    /// [`StorageError::NoSuchSegment`] if no segment starts there.
    pub fn read_segment(&self, base_offset: i64) -> Result<Bytes> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.base_offset == base_offset)
            .ok_or_else(|| StorageError::NoSuchSegment {
                dir: self.dir.clone(),
                base_offset,
            })?;
        let len = usize::try_from(seg.size).map_err(|_| {
            StorageError::CorruptRecord(format!(
                "{}: {} bytes do not fit in memory",
                seg.log_path.display(),
                seg.size
            ))
        })?;
        seg.read_exact(0, len).map(Bytes::from)
    }

    /// Replaces the consecutive inactive segments whose base offsets run from
    /// `first_base` to `last_base` (both included) by one segment based at
    /// `first_base` holding `batches`: a log cleaner's output, batches that
    /// keep their original offsets, leader epochs and timestamps.
    ///
    /// `batches` must be whole batches (magic 2, known compression, CRC-32C,
    /// `0 <= recordCount <= lastOffsetDelta + 1`, see
    /// [`records::validate_cleaned`]) with strictly increasing offsets inside
    /// `[first_base, next offset of the last replaced segment)` and within a
    /// segment's relative-offset and 4 GiB position range. It may be empty:
    /// the segment then stays, empty, so its base offset still covers the
    /// removed offsets. Reads of removed offsets return the next kept batch.
    /// A range that is not such a run of segments, or that includes the
    /// active segment, and any bad batch give
    /// [`StorageError::InvalidReplacement`] and change nothing.
    ///
    /// The three steps of [`Log::replacement_target`],
    /// [`ReplacementTarget::stage`] and [`Log::swap_in`] at once; a caller
    /// that must not hold its lock on the log while the new files are
    /// written and fsynced (the log cleaner) runs them one by one.
    pub fn replace_segments(
        &mut self,
        first_base: i64,
        last_base: i64,
        batches: &[u8],
    ) -> Result<()> {
        let staged = self.replacement_target(first_base, last_base)?.stage(batches)?;
        match self.swap_in(staged)? {
            SwapOutcome::Swapped => Ok(()),
            // Nothing changed the log between the steps.
            SwapOutcome::Changed(staged) => staged.discard(),
        }
    }

    /// The first step of a segment replacement (see
    /// [`Log::replace_segments`]): the run of inactive segments from
    /// `first_base` to `last_base` as it is now, for
    /// [`ReplacementTarget::stage`] to write its replacement without the log.
    /// [`StorageError::InvalidReplacement`] if it is no such run.
    pub fn replacement_target(&self, first_base: i64, last_base: i64) -> Result<ReplacementTarget> {
        let refuse = |reason: String| StorageError::InvalidReplacement {
            dir: self.dir.clone(),
            first_base,
            last_base,
            reason,
        };
        let position = |base: i64| self.segments.iter().position(|s| s.base_offset == base);
        let (Some(first), Some(last)) = (position(first_base), position(last_base)) else {
            return Err(refuse("no segment starts at one of these offsets".into()));
        };
        if first > last {
            return Err(refuse("the range is empty".into()));
        }
        if last + 1 >= self.segments.len() {
            return Err(refuse("the range includes the active segment".into()));
        }
        let modified = self.segments[last]
            .log
            .metadata()
            .and_then(|m| m.modified())
            .map_err(io_err(&self.segments[last].log_path))?;
        Ok(ReplacementTarget {
            dir: self.dir.clone(),
            config: self.config.clone(),
            first_base,
            last_base,
            run: self.segments[first..=last]
                .iter()
                .map(|s| (s.base_offset, s.next_offset, s.size))
                .collect(),
            modified,
        })
    }

    /// The last step of a segment replacement (see
    /// [`Log::replace_segments`]): if the run `staged` replaces is still the
    /// log's, unchanged (base offsets, next offsets, sizes) and inactive, puts
    /// the new segment in its place; else changes nothing and hands `staged`
    /// back ([`SwapOutcome::Changed`]) for the caller to discard.
    ///
    /// The swap is Kafka's: the `.cleaned` files are renamed to `.swap` (the
    /// directory fsynced), then the old segments' files are deleted, the
    /// `.swap` files renamed to their final names and the directory fsynced.
    /// [`Log::open`] finishes or discards a replacement a crash interrupted.
    /// The log start and end offsets do not change. If an I/O error stops
    /// the swap after the `.swap` rename, the old segments' files may be gone
    /// (they are not kept open, see [`crate::file_cache`]) and reads of the
    /// replaced offsets fail; reopen the log (as after any storage I/O error)
    /// and recovery finishes the swap.
    pub fn swap_in(&mut self, staged: StagedReplacement) -> Result<SwapOutcome> {
        let target = &staged.target;
        let first_base = target.first_base;
        let first = self.segments.iter().position(|s| s.base_offset == first_base);
        let now = first.and_then(|at| self.segments.get(at..at + target.run.len()));
        let unchanged = now.is_some_and(|now| {
            now.iter()
                .map(|s| (s.base_offset, s.next_offset, s.size))
                .eq(target.run.iter().copied())
        });
        let (Some(first), true) = (first, unchanged) else {
            return Ok(SwapOutcome::Changed(staged));
        };
        let last = first + target.run.len() - 1;
        if last + 1 >= self.segments.len() {
            return Ok(SwapOutcome::Changed(staged));
        }
        let end = self.segments[last + 1].base_offset;
        let dir = &self.dir;
        let renamed = rename_segment_files(dir, first_base, Some(CLEANED_EXT), Some(SWAP_EXT))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = renamed {
            remove_staged(dir, first_base);
            return Err(e);
        }
        // From here on the replacement is durable: recovery would finish it.
        complete_swap(dir, first_base, end)?;
        let (mut seg, _, _) = Segment::open_files(dir, first_base, &self.config)?;
        match seg.load_tail() {
            Ok(()) => {}
            Err(e @ StorageError::Io { .. }) => return Err(e),
            Err(_) => {
                rebuild_segment(&mut seg, Some(end), self.config.index_interval_bytes)?;
            }
        }
        let old: Vec<Segment> = self.segments.splice(first..=last, [seg]).collect();
        drop(old);
        let bases: Vec<i64> = self.segments.iter().map(|s| s.base_offset).collect();
        self.producers.remove_stray_snapshots(&bases)?;
        debug!(
            dir = %self.dir.display(),
            first_base,
            last_base = staged.target.last_base,
            bytes = staged.bytes,
            "replaced segments"
        );
        Ok(SwapOutcome::Swapped)
    }

    /// Removes every batch whose last offset is >= `offset` (whole batches:
    /// a batch straddling `offset` goes too), deleting whole segments and
    /// truncating files and indexes. The log end becomes the base offset of
    /// the first removed batch; nothing changes if no batch qualifies.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            // As Kafka, the epoch cache is truncated anyway: a broker that
            // led an epoch without appending in it left an entry at the log
            // end that its new leader does not have.
            return self.epochs.truncate_from_end(self.log_end_offset());
        }
        // Segments [0, keep) start below `offset`; the rest go entirely.
        let keep = self.segments.partition_point(|s| s.base_offset < offset);
        let mut removed_base = None;
        if let Some(seg) = keep.checked_sub(1).and_then(|i| self.segments.get_mut(i)) {
            removed_base = seg.truncate_to(offset)?;
        }
        if removed_base.is_none() {
            for seg in self.segments.get(keep..).unwrap_or_default() {
                let mut scan = HeaderScan::new(&seg.log, &seg.log_path, 0, seg.size);
                if let Some((_, h)) = scan.next_header()? {
                    removed_base = Some(h.base_offset);
                    break;
                }
            }
        }
        let Some(new_end) = removed_base else {
            return Ok(());
        };
        for seg in self.segments.drain(keep..).rev().collect::<Vec<_>>() {
            seg.delete_files()?;
        }
        if self.segments.is_empty() {
            self.segments
                .push(Segment::create(&self.dir, new_end, &self.config)?);
        }
        self.log_start_offset = self.log_start_offset.min(self.log_end_offset());
        sync_dir(&self.dir)?;
        let log_end = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(log_end);
        self.epochs.truncate_from_end(log_end)?;
        // The producer state goes back to the latest snapshot at or below the
        // new end, and the batches after it are replayed.
        let from = self.producers.truncate_to(log_end)?;
        let first_base = self.segments.first().map_or(0, |s| s.base_offset);
        let producers = &mut self.producers;
        for_each_batch(&self.segments, from.unwrap_or(first_base), |h| {
            if let Some(batch) = ProducerBatch::of(h, h.base_offset, h.max_timestamp) {
                producers.record(&batch);
            }
        })?;
        debug!(dir = %self.dir.display(), offset, log_end, "log truncated");
        Ok(())
    }

    /// Removes every batch and starts the log afresh, empty, at `offset`
    /// (Kafka's `truncateFullyAndStartAt`: a follower whose log end fell
    /// below its leader's log start). The leader-epoch cache and the
    /// producer state are emptied with it.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        for seg in self.segments.drain(..).collect::<Vec<_>>() {
            seg.delete_files()?;
        }
        self.segments.push(Segment::create(&self.dir, offset, &self.config)?);
        self.log_start_offset = offset;
        self.recovery_point = offset;
        sync_dir(&self.dir)?;
        self.epochs.truncate_from_end(i64::MIN)?;
        self.producers.truncate_to(-1)?;
        debug!(dir = %self.dir.display(), offset, "log truncated fully");
        Ok(())
    }

    /// Deletes the oldest segments that retention allows to go, as Kafka's
    /// `cleanup.policy=delete`, and returns how many were deleted. The log
    /// start offset moves to the oldest remaining segment.
    ///
    /// A segment goes, oldest first, while all its offsets, up to the next
    /// segment's base (compaction may have emptied its tail), are below
    /// `upper_bound_offset` (pass the high watermark so unreplicated data
    /// stays) and either its largest timestamp (or, without timestamps, its
    /// file's modification time) is more than `retention_ms` before `now_ms`,
    /// or the log without it is still at least `retention_bytes` large. The
    /// first segment that may not go stops the deletion. If every segment
    /// goes, an empty segment at the log end takes over (as Kafka rolls).
    pub fn delete_retained_segments(
        &mut self,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
        upper_bound_offset: i64,
        now_ms: i64,
    ) -> Result<usize> {
        let mut excess = retention_bytes.map(|limit| self.size_in_bytes().saturating_sub(limit));
        let mut count = 0;
        let active = self.segments.len().saturating_sub(1);
        for (i, seg) in self.segments.iter().enumerate() {
            let end = self
                .segments
                .get(i + 1)
                .map_or(seg.next_offset, |next| next.base_offset);
            if (i == active && seg.size == 0) || end > upper_bound_offset {
                break;
            }
            let by_time = match retention_ms {
                Some(ms) => now_ms.saturating_sub(seg.largest_timestamp()?) > to_i64(ms),
                None => false,
            };
            // `e > 0`: a segment emptied by compaction is no reason to delete
            // anything while the log is within `retention_bytes`.
            let by_size = excess.is_some_and(|e| e > 0 && e >= seg.size);
            if !(by_time || by_size) {
                break;
            }
            if let Some(e) = excess.as_mut() {
                *e = e.saturating_sub(seg.size);
            }
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            self.roll("retention")?;
        }
        for seg in self.segments.drain(..count).collect::<Vec<_>>() {
            debug!(segment = %seg.log_path.display(), "deleting segment by retention");
            seg.delete_files()?;
        }
        sync_dir(&self.dir)?;
        self.after_log_start_moved()?;
        Ok(count)
    }

    /// fsyncs the `.log` and index files of every segment with unflushed
    /// writes.
    pub fn flush(&mut self) -> Result<()> {
        for seg in &mut self.segments {
            seg.flush()?;
        }
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Flushes if `flush_interval_ms` is set and the oldest unflushed append
    /// is at least that old. Call periodically.
    pub fn maybe_flush_by_time(&mut self, now_ms: i64) -> Result<()> {
        if let (Some(interval), Some(first)) =
            (self.config.flush_interval_ms, self.first_unflushed_ms)
        {
            if now_ms.saturating_sub(first) >= to_i64(interval) {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the final time-index entry, flushes and closes the files (for a
    /// clean shutdown; reopen with `clean_shutdown == true`).
    ///
    /// The producer state is snapshotted at the log end, so the next open
    /// reads it instead of scanning.
    pub fn close(mut self) -> Result<()> {
        self.active()?.seal_time_index()?;
        self.flush()?;
        let log_end = self.log_end_offset();
        if self.producers.latest_snapshot() != Some(log_end) {
            self.producers.take_snapshot(log_end)?;
        }
        Ok(())
    }

    /// After segments below the log start were deleted: the epochs below it
    /// are forgotten and the producer snapshots of deleted segments go.
    fn after_log_start_moved(&mut self) -> Result<()> {
        self.epochs.truncate_from_start(self.log_start_offset())?;
        let first_base = self.segments.first().map_or(0, |s| s.base_offset);
        self.producers.delete_snapshots_before(first_base)
    }

    /// Deletes the log's directory and everything in it.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))
    }
}

/// Calls `f` with the header of every batch of `segments` whose last offset
/// is >= `from`, in offset order.
fn for_each_batch(segments: &[Segment], from: i64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
    let first = segments
        .partition_point(|s| s.base_offset <= from)
        .saturating_sub(1);
    for seg in segments.get(first..).unwrap_or_default() {
        let start = if seg.base_offset < from {
            match seg.find(from)? {
                Some((pos, _)) => pos,
                None => continue,
            }
        } else {
            0
        };
        let mut scan = HeaderScan::new(&seg.log, &seg.log_path, start, seg.size);
        while let Some((_, h)) = scan.next_header()? {
            if h.last_offset() >= from {
                f(&h);
            }
        }
    }
    Ok(())
}

/// Checks the batches of [`Log::replace_segments`] against the offsets
/// `[first_base, limit)` and describes them for indexing; the error is the
/// reason for refusing them.
fn check_replacement(
    batches: &[u8],
    first_base: i64,
    limit: i64,
) -> std::result::Result<Vec<BatchMeta>, String> {
    if u32::try_from(batches.len()).is_err() {
        return Err(format!("{} bytes do not fit one segment", batches.len()));
    }
    let mut metas = Vec::new();
    let mut next = first_base;
    for b in BatchIter::new(batches) {
        let b = b.map_err(|e| format!("batch {}: {e}", metas.len()))?;
        let at = |what: String| format!("batch at position {}: {what}", b.position);
        let h = batch::validate_cleaned(b.bytes).map_err(|e| at(e.to_string()))?;
        let last = h.last_offset();
        if h.base_offset < next {
            return Err(at(format!(
                "offsets {}..={last} do not follow offset {}",
                h.base_offset,
                next - 1
            )));
        }
        if last >= limit || last - first_base > i64::from(i32::MAX) {
            return Err(at(format!(
                "offsets {}..={last} lie outside the replaced segments [{first_base}, {limit})",
                h.base_offset
            )));
        }
        next = h.next_offset();
        metas.push(BatchMeta {
            size: h.total_size(),
            last_offset: last,
            max_timestamp: h.max_timestamp,
        });
    }
    Ok(metas)
}

#[cfg(test)]
#[path = "log_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "log_replication_tests.rs"]
mod replication_tests;
