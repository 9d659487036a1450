//! Idempotent-producer state of a log (KIP-98; Kafka's `ProducerStateManager`):
//! the last batches each producer id appended, so that a retried batch is
//! answered with its original offsets instead of being appended again, a gap
//! in sequence numbers is refused and an older producer epoch is fenced.
//!
//! The state is a function of the log: [`crate::Log`] checks and records every
//! appended batch under its own `&mut self`, rolls the state back when the log
//! is truncated and rebuilds it on open from the latest snapshot plus a scan of
//! the batches after it. Snapshots are Kafka's `<20-digit offset>.snapshot`
//! files beside the segments (the state of the log below that offset), written
//! when a segment rolls and on a clean close, in Kafka's version-1 format (all
//! integers big-endian):
//!
//! ```text
//! version i16 (1) | crc u32 (CRC-32C of everything after it) | count i32 |
//! count x (producer id i64, epoch i16, last sequence i32, last offset i64,
//!          offset delta i32, timestamp i64, coordinator epoch i32,
//!          current txn first offset i64)
//! ```
//!
//! As in Kafka a snapshot holds only each producer's last batch, so after a
//! restart only the last batch of a producer before the snapshot (and every
//! batch after it, which the scan finds) is recognised as a duplicate.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use tracing::warn;

use records::batch::BatchHeader;
use crate::checkpoint::write_durably;
use crate::error::{io_err, Result, StorageError};

/// File suffix of producer-state snapshots.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";

/// Batches remembered per producer, as in Kafka (max.in.flight = 5).
const REMEMBERED_BATCHES: usize = 5;

const SNAPSHOT_VERSION: i16 = 1;
/// Bytes before the entries: version, CRC, entry count.
const SNAPSHOT_HEADER: usize = 2 + 4 + 4;
const ENTRY_SIZE: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

/// One batch a producer appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMetadata {
    last_sequence: i32,
    last_offset: i64,
    /// `last_offset - base_offset` (= last sequence - first sequence).
    offset_delta: i32,
    /// The batch's max timestamp.
    timestamp: i64,
}

impl BatchMetadata {
    fn first_sequence(&self) -> i32 {
        wrap(i64::from(self.last_sequence) - i64::from(self.offset_delta))
    }

    fn base_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}

/// What the log remembers of one producer id.
#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    /// The last batches, oldest first.
    batches: VecDeque<BatchMetadata>,
}

/// A batch the log already holds: where it was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duplicate {
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) timestamp: i64,
}

/// One producer batch of an append, as [`ProducerStateManager::record`] takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerBatch {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) timestamp: i64,
}

impl ProducerBatch {
    /// The producer part of a batch appended at `base_offset` with max
    /// timestamp `timestamp`; `None` for batches without a producer id and
    /// for control batches (transaction markers).
    pub(crate) fn of(h: &BatchHeader, base_offset: i64, timestamp: i64) -> Option<ProducerBatch> {
        (h.producer_id >= 0 && !h.is_control()).then(|| ProducerBatch {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_sequence: h.base_sequence,
            last_sequence: wrap(i64::from(h.base_sequence) + i64::from(h.last_offset_delta)),
            base_offset,
            last_offset: base_offset + i64::from(h.last_offset_delta),
            timestamp,
        })
    }
}

/// Sequences wrap from `i32::MAX` to 0.
fn wrap(sequence: i64) -> i32 {
    sequence.rem_euclid(i64::from(i32::MAX) + 1) as i32
}

fn next_sequence(last: i32) -> i32 {
    wrap(i64::from(last) + 1)
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

/// The producer states of one log and its snapshot files.
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
    /// Offsets of the snapshot files on disk.
    snapshots: BTreeSet<i64>,
}

impl ProducerStateManager {
    /// The state of the log in `dir` as of its latest valid snapshot at or
    /// below `limit`, and that snapshot's offset (`None`: start from empty).
    /// Snapshots above `limit` describe records the log no longer has and
    /// are deleted; a damaged one is deleted with one WARN and the next older
    /// one is tried.
    pub(crate) fn load(dir: &Path, limit: i64) -> Result<(ProducerStateManager, Option<i64>)> {
        let mut snapshots = BTreeSet::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let name = entry.map_err(io_err(dir))?.file_name();
            let offset = name
                .to_str()
                .and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX)?.strip_suffix('.'))
                .filter(|stem| stem.len() == 20)
                .and_then(|stem| stem.parse::<i64>().ok());
            snapshots.extend(offset);
        }
        let mut manager = ProducerStateManager {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            snapshots,
        };
        manager.delete_snapshots_after(limit)?;
        let loaded = manager.load_latest()?;
        Ok((manager, loaded))
    }

    /// Replaces the state by the latest valid snapshot's (or nothing) and
    /// returns its offset; damaged snapshots are deleted on the way.
    fn load_latest(&mut self) -> Result<Option<i64>> {
        self.producers.clear();
        while let Some(&offset) = self.snapshots.last() {
            let path = snapshot_path(&self.dir, offset);
            match read_snapshot(&path) {
                Ok(producers) => {
                    self.producers = producers;
                    return Ok(Some(offset));
                }
                Err(StorageError::CorruptRecord(why)) => {
                    warn!(path = %path.display(), %why, "ignoring a damaged producer-state snapshot; rebuilding the state from the log");
                    self.delete_snapshot(offset)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Checks an idempotent producer's batch against the state (and the
    /// earlier batches of the same append, in `pending`): a duplicate of a
    /// remembered batch, a batch to append, or INVALID_PRODUCER_EPOCH /
    /// OUT_OF_ORDER_SEQUENCE_NUMBER. An unknown producer may start anywhere
    /// (its state may predate the log start).
    pub(crate) fn check(&self, pending: &[ProducerBatch], batch: &ProducerBatch) -> Result<Option<Duplicate>> {
        let mut entry = self.producers.get(&batch.producer_id).cloned();
        for p in pending.iter().filter(|p| p.producer_id == batch.producer_id) {
            apply(entry.get_or_insert_with(ProducerEntry::default), p);
        }
        let Some(entry) = entry else {
            return Ok(None);
        };
        let (pid, epoch, first) = (batch.producer_id, batch.epoch, batch.first_sequence);
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "producer {pid}'s epoch {epoch} is older than the current epoch {}",
                entry.epoch
            )));
        }
        if epoch > entry.epoch {
            if first != 0 {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "producer {pid} with new epoch {epoch} must start at sequence 0, not {first}"
                )));
            }
            return Ok(None);
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence() == first && b.last_sequence == batch.last_sequence)
        {
            return Ok(Some(Duplicate {
                base_offset: dup.base_offset(),
                last_offset: dup.last_offset,
                timestamp: dup.timestamp,
            }));
        }
        match entry.batches.back() {
            Some(prev) if first != next_sequence(prev.last_sequence) => {
                Err(StorageError::OutOfOrderSequence(format!(
                    "out of order sequence number for producer {pid}: expected {}, got {first}",
                    next_sequence(prev.last_sequence)
                )))
            }
            _ => Ok(None),
        }
    }

    /// Records an appended (or, on open, replayed) batch.
    pub(crate) fn record(&mut self, batch: &ProducerBatch) {
        apply(self.producers.entry(batch.producer_id).or_default(), batch);
    }

    /// Rolls the state back for a log truncated to end at `end`: deletes the
    /// snapshots above `end` and loads the latest remaining one; returns its
    /// offset (the caller replays the log from there).
    pub(crate) fn truncate_to(&mut self, end: i64) -> Result<Option<i64>> {
        self.delete_snapshots_after(end)?;
        self.load_latest()
    }

    /// Writes the state as the snapshot at `offset` (the log end: the state
    /// covers every batch below it), durably.
    pub(crate) fn take_snapshot(&mut self, offset: i64) -> Result<()> {
        let path = snapshot_path(&self.dir, offset);
        let mut entries: Vec<(&i64, &ProducerEntry)> = self.producers.iter().collect();
        entries.sort_by_key(|(pid, _)| **pid);
        let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER + entries.len() * ENTRY_SIZE);
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let count = i32::try_from(entries.len()).unwrap_or(i32::MAX);
        bytes.extend_from_slice(&count.to_be_bytes());
        for (pid, entry) in entries.into_iter().take(count as usize) {
            let last = entry.batches.back().copied().unwrap_or(BatchMetadata {
                last_sequence: -1,
                last_offset: -1,
                offset_delta: 0,
                timestamp: -1,
            });
            bytes.extend_from_slice(&pid.to_be_bytes());
            bytes.extend_from_slice(&entry.epoch.to_be_bytes());
            bytes.extend_from_slice(&last.last_sequence.to_be_bytes());
            bytes.extend_from_slice(&last.last_offset.to_be_bytes());
            bytes.extend_from_slice(&last.offset_delta.to_be_bytes());
            bytes.extend_from_slice(&last.timestamp.to_be_bytes());
            bytes.extend_from_slice(&(-1i32).to_be_bytes()); // no transaction coordinator
            bytes.extend_from_slice(&(-1i64).to_be_bytes()); // no ongoing transaction
        }
        let crc = crc32c::crc32c(&bytes[6..]);
        bytes[2..6].copy_from_slice(&crc.to_be_bytes());
        write_durably(&path, &bytes).map_err(io_err(&path))?;
        self.snapshots.insert(offset);
        Ok(())
    }

    /// The offset of the latest snapshot, if any.
    pub(crate) fn latest_snapshot(&self) -> Option<i64> {
        self.snapshots.last().copied()
    }

    /// Deletes the snapshots below `offset` (their segments are gone).
    pub(crate) fn delete_snapshots_before(&mut self, offset: i64) -> Result<()> {
        let old: Vec<i64> = self.snapshots.range(..offset).copied().collect();
        for o in old {
            self.delete_snapshot(o)?;
        }
        Ok(())
    }

    /// Deletes the snapshots that belong to no segment of `bases` (the
    /// segments a log cleaner replaced), keeping the latest one when it lies
    /// above every base (a clean close's snapshot at the log end), as Kafka's
    /// `removeStraySnapshots`.
    pub(crate) fn remove_stray_snapshots(&mut self, bases: &[i64]) -> Result<()> {
        let max_base = bases.iter().copied().max().unwrap_or(0);
        let latest = self.latest_snapshot();
        let stray: Vec<i64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| bases.binary_search(o).is_err() && !(Some(*o) == latest && *o > max_base))
            .collect();
        for o in stray {
            self.delete_snapshot(o)?;
        }
        Ok(())
    }

    fn delete_snapshots_after(&mut self, offset: i64) -> Result<()> {
        let stale: Vec<i64> = self.snapshots.range(offset + 1..).copied().collect();
        for o in stale {
            self.delete_snapshot(o)?;
        }
        Ok(())
    }

    fn delete_snapshot(&mut self, offset: i64) -> Result<()> {
        self.snapshots.remove(&offset);
        crate::segment::remove_if_exists(&snapshot_path(&self.dir, offset))
    }
}

/// Adds `batch` to a producer's entry (a new epoch starts afresh).
fn apply(entry: &mut ProducerEntry, batch: &ProducerBatch) {
    if batch.epoch != entry.epoch {
        entry.epoch = batch.epoch;
        entry.batches.clear();
    }
    if entry.batches.len() == REMEMBERED_BATCHES {
        entry.batches.pop_front();
    }
    entry.batches.push_back(BatchMetadata {
        last_sequence: batch.last_sequence,
        last_offset: batch.last_offset,
        offset_delta: i32::try_from(batch.last_offset - batch.base_offset).unwrap_or(i32::MAX),
        timestamp: batch.timestamp,
    });
}

/// Parses a snapshot file; damage (size, version, CRC) is
/// [`StorageError::CorruptRecord`].
fn read_snapshot(path: &Path) -> Result<HashMap<i64, ProducerEntry>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let bad = |why: String| StorageError::CorruptRecord(format!("{}: {why}", path.display()));
    let header = bytes
        .get(..SNAPSHOT_HEADER)
        .ok_or_else(|| bad(format!("{} bytes are too short", bytes.len())))?;
    let version = i16::from_be_bytes([header[0], header[1]]);
    if version != SNAPSHOT_VERSION {
        return Err(bad(format!("unknown snapshot version {version}")));
    }
    let crc = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
    if crc32c::crc32c(&bytes[6..]) != crc {
        return Err(bad("CRC mismatch".into()));
    }
    let count = i32::from_be_bytes([header[6], header[7], header[8], header[9]]);
    let entries = &bytes[SNAPSHOT_HEADER..];
    if count < 0 || entries.len() != count as usize * ENTRY_SIZE {
        return Err(bad(format!("{count} entries do not fill {} bytes", entries.len())));
    }
    let mut producers = HashMap::new();
    for e in entries.chunks_exact(ENTRY_SIZE) {
        let i64_at = |at: usize| i64::from_be_bytes(e[at..at + 8].try_into().unwrap_or_default());
        let i32_at = |at: usize| i32::from_be_bytes(e[at..at + 4].try_into().unwrap_or_default());
        let epoch = i16::from_be_bytes([e[8], e[9]]);
        let (last_sequence, last_offset, offset_delta, timestamp) =
            (i32_at(10), i64_at(14), i32_at(22), i64_at(26));
        let mut batches = VecDeque::new();
        if last_offset >= 0 {
            batches.push_back(BatchMetadata { last_sequence, last_offset, offset_delta, timestamp });
        }
        producers.insert(i64_at(0), ProducerEntry { epoch, batches });
    }
    Ok(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, count: i32, base: i64) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            epoch,
            first_sequence: first,
            last_sequence: wrap(i64::from(first) + i64::from(count) - 1),
            base_offset: base,
            last_offset: base + i64::from(count) - 1,
            timestamp: 1000 + base,
        }
    }

    fn manager(dir: &Path) -> ProducerStateManager {
        ProducerStateManager::load(dir, i64::MAX).expect("load").0
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_its_original_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = manager(dir.path());
        let first = batch(7, 0, 0, 10, 100);
        assert_eq!(m.check(&[], &first).expect("first"), None);
        m.record(&first);
        let next = batch(7, 0, 10, 5, 110);
        assert_eq!(m.check(&[], &next).expect("next"), None);
        m.record(&next);
        let dup = m.check(&[], &batch(7, 0, 0, 10, 999)).expect("retry");
        assert_eq!(dup, Some(Duplicate { base_offset: 100, last_offset: 109, timestamp: 1100 }));
    }

    #[test]
    fn sequence_gap_and_old_epoch_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = manager(dir.path());
        m.record(&batch(7, 1, 0, 10, 0));
        let gap = m.check(&[], &batch(7, 1, 20, 1, 10)).expect_err("gap");
        assert!(matches!(gap, StorageError::OutOfOrderSequence(_)), "{gap}");
        let fenced = m.check(&[], &batch(7, 0, 10, 1, 10)).expect_err("old epoch");
        assert!(matches!(fenced, StorageError::InvalidProducerEpoch(_)), "{fenced}");
        let restart = m.check(&[], &batch(7, 2, 3, 1, 10)).expect_err("new epoch not at 0");
        assert!(matches!(restart, StorageError::OutOfOrderSequence(_)), "{restart}");
        assert_eq!(m.check(&[], &batch(7, 2, 0, 1, 10)).expect("new epoch"), None);
        // Batches earlier in the same append count.
        let pending = [batch(7, 1, 10, 2, 10)];
        assert_eq!(m.check(&pending, &batch(7, 1, 12, 1, 12)).expect("in order"), None);
        assert!(m.check(&pending, &batch(7, 1, 10, 1, 12)).is_err());
    }

    #[test]
    fn sequences_wrap_around() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = manager(dir.path());
        let last = batch(3, 0, i32::MAX - 1, 2, 0);
        assert_eq!(last.last_sequence, i32::MAX);
        m.record(&last);
        let wrapped = batch(3, 0, 0, 4, 2);
        assert_eq!(m.check(&[], &wrapped).expect("wrapped"), None);
        m.record(&wrapped);
        assert!(m.check(&[], &last).expect("dup").is_some());
    }

    #[test]
    fn snapshot_round_trip_keeps_each_producers_last_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = manager(dir.path());
        m.record(&batch(7, 0, 0, 10, 0));
        m.record(&batch(7, 0, 10, 5, 10));
        m.record(&batch(9, 4, 0, 1, 15));
        m.take_snapshot(16).expect("snapshot");
        let path = dir.path().join("00000000000000000016.snapshot");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), SNAPSHOT_HEADER + 2 * ENTRY_SIZE);
        assert_eq!(&bytes[..2], &[0, 1], "version 1");
        assert_eq!(&bytes[6..10], &2i32.to_be_bytes());
        let (loaded, at) = ProducerStateManager::load(dir.path(), 16).expect("load");
        assert_eq!(at, Some(16));
        assert!(loaded.check(&[], &batch(7, 0, 10, 5, 0)).expect("last batch").is_some());
        assert!(loaded.check(&[], &batch(7, 0, 0, 10, 0)).is_err(), "only the last batch is in a snapshot");
        assert!(loaded.check(&[], &batch(9, 4, 0, 1, 0)).expect("other producer").is_some());
        assert!(loaded.check(&[], &batch(9, 3, 1, 1, 0)).is_err(), "epoch kept");
    }

    #[test]
    fn damaged_or_stale_snapshots_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = manager(dir.path());
        m.record(&batch(7, 0, 0, 1, 0));
        m.take_snapshot(1).expect("snapshot");
        m.record(&batch(7, 0, 1, 1, 1));
        m.take_snapshot(2).expect("snapshot");
        m.take_snapshot(5).expect("snapshot");
        // 5 is past the log end; 2 is garbled: 1 is loaded.
        let garbled = dir.path().join("00000000000000000002.snapshot");
        let mut bytes = std::fs::read(&garbled).expect("read");
        bytes[20] ^= 0xff;
        std::fs::write(&garbled, bytes).expect("write");
        let (m, at) = ProducerStateManager::load(dir.path(), 3).expect("load");
        assert_eq!(at, Some(1));
        assert!(!garbled.exists() && !dir.path().join("00000000000000000005.snapshot").exists());
        assert!(m.check(&[], &batch(7, 0, 0, 1, 0)).expect("dup").is_some());
        // A truncated file is damage too.
        std::fs::write(dir.path().join("00000000000000000001.snapshot"), [0, 1, 0]).expect("write");
        let (m, at) = ProducerStateManager::load(dir.path(), 3).expect("load");
        assert_eq!((at, m.latest_snapshot()), (None, None));
    }
}
