//! The leader-epoch cache of a log (Kafka's `LeaderEpochFileCache`): for each
//! leader epoch that appended to the log, the offset of its first batch, kept
//! in the partition directory's `leader-epoch-checkpoint`:
//!
//! ```text
//! 0                      version
//! 2                      number of entries
//! 0 0                    epoch, start offset
//! 3 150
//! ```
//!
//! A follower asks the leader where its epoch ended (OffsetsForLeaderEpoch,
//! [`LeaderEpochCache::end_offset_for`]) and truncates to that, so a log never
//! keeps records a new leader does not have. Epochs and start offsets both
//! increase strictly along the entries.

use std::path::{Path, PathBuf};

use crate::checkpoint::{read_entries, write_entries};
use crate::error::Result;

/// The file name of a log's leader-epoch cache, in the partition directory.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Kafka's `UNDEFINED_EPOCH` / `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED: i64 = -1;

/// One leader epoch and the offset of its first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// Offset of the first batch that epoch appended.
    pub start_offset: i64,
}

/// A log's leader epochs in memory, written through to its checkpoint file
/// on every change.
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// The cache of the log in `dir` as its checkpoint holds it, or `None`
    /// when the file is missing; a damaged file is an error naming it (the
    /// caller rebuilds the cache from the segments).
    pub(crate) fn load(dir: &Path) -> Result<Option<LeaderEpochCache>> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        if !path.exists() {
            return Ok(None);
        }
        let entries = read_entries(&path, |fields| match fields {
            [epoch, offset] => Some(EpochEntry {
                epoch: epoch.parse().ok()?,
                start_offset: offset.parse().ok()?,
            }),
            _ => None,
        })?;
        let increasing = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        if !increasing || entries.iter().any(|e| e.epoch < 0 || e.start_offset < 0) {
            return Err(crate::StorageError::CorruptRecord(format!(
                "checkpoint file {}: epochs or offsets do not increase",
                path.display()
            )));
        }
        Ok(Some(LeaderEpochCache { path, entries }))
    }

    /// An empty cache for the log in `dir` (nothing written yet).
    pub(crate) fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            path: dir.join(LEADER_EPOCH_CHECKPOINT),
            entries: Vec::new(),
        }
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch, if any batch carried one.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` appended from `start_offset` on, unless it is
    /// already the latest epoch starting at or before there. Entries that
    /// contradict the new one (an epoch at least as large, or a start offset
    /// at least as large) are dropped, as in Kafka. Negative epochs (batches
    /// of clients older than KIP-101) are ignored. Writes the file if changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        if epoch < 0 || start_offset < 0 {
            return Ok(());
        }
        if let Some(last) = self.entries.last() {
            if last.epoch == epoch && last.start_offset <= start_offset {
                return Ok(());
            }
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry { epoch, start_offset });
        self.write()
    }

    /// Drops the epochs that start at or after `end_offset` (the log was
    /// truncated there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        if self.entries.last().is_some_and(|e| e.start_offset >= end_offset) {
            self.entries.retain(|e| e.start_offset < end_offset);
            self.write()?;
        }
        Ok(())
    }

    /// Forgets what lies below the new log start offset: of the epochs
    /// starting at or below it only the last stays, moved to start there.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        let below = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        let Some(keep) = below.checked_sub(1) else {
            return Ok(());
        };
        if keep == 0 && self.entries[0].start_offset == start_offset {
            return Ok(());
        }
        self.entries.drain(..keep);
        self.entries[0].start_offset = start_offset;
        self.write()
    }

    /// Kafka's OffsetsForLeaderEpoch answer for `requested` on a log ending
    /// at `log_end`: the largest epoch <= `requested` and the start offset of
    /// the epoch after it, or `log_end` when `requested` is the latest epoch.
    /// Below the first known epoch it is (`requested`, the first start
    /// offset), as Kafka answers when the log start moved past older epochs;
    /// [`UNDEFINED`] twice for an undefined (negative) epoch, one above the
    /// latest, or an empty cache.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        let undefined = (UNDEFINED as i32, UNDEFINED);
        if requested < 0 {
            return undefined;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end);
        }
        let Some(higher) = self.entries.iter().position(|e| e.epoch > requested) else {
            return undefined;
        };
        let end = self.entries[higher].start_offset;
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].epoch, end),
            None => (requested, end),
        }
    }

    /// Replaces the entries (a rebuild from the segments) and writes them.
    pub(crate) fn replace(&mut self, entries: Vec<EpochEntry>) -> Result<()> {
        self.entries = entries;
        self.write()
    }

    fn write(&self) -> Result<()> {
        let lines = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset));
        write_entries(&self.path, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(dir);
        for &(epoch, offset) in entries {
            c.assign(epoch, offset).expect("assign");
        }
        c
    }

    fn pairs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(LeaderEpochCache::load(dir.path()).expect("load").is_none());
        let c = cache(dir.path(), &[(0, 0), (0, 5), (3, 150), (-1, 200)]);
        assert_eq!(pairs(&c), vec![(0, 0), (3, 150)]);
        let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).expect("read");
        assert_eq!(text, "0\n2\n0 0\n3 150\n");
        let loaded = LeaderEpochCache::load(dir.path()).expect("load").expect("present");
        assert_eq!(pairs(&loaded), vec![(0, 0), (3, 150)]);
    }

    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        for text in ["0\n2\n0 0\n", "0\n1\n0\n", "0\n2\n3 10\n1 20\n", "\u{0}\u{ff}garbage"] {
            std::fs::write(&path, text).expect("write");
            let err = LeaderEpochCache::load(dir.path()).expect_err(text);
            assert!(err.to_string().contains(LEADER_EPOCH_CHECKPOINT), "{err}");
        }
    }

    #[test]
    fn a_contradicting_epoch_replaces_later_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cache(dir.path(), &[(1, 0), (2, 10), (4, 20)]);
        c.assign(3, 15).expect("assign");
        assert_eq!(pairs(&c), vec![(1, 0), (2, 10), (3, 15)]);
    }

    #[test]
    fn truncation_from_either_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cache(dir.path(), &[(1, 0), (2, 10), (4, 20)]);
        c.truncate_from_end(20).expect("end");
        assert_eq!(pairs(&c), vec![(1, 0), (2, 10)]);
        c.truncate_from_end(25).expect("no-op");
        assert_eq!(pairs(&c), vec![(1, 0), (2, 10)]);
        c.truncate_from_start(12).expect("start");
        assert_eq!(pairs(&c), vec![(2, 12)]);
        c.truncate_from_start(5).expect("below: no-op");
        assert_eq!(pairs(&c), vec![(2, 12)]);
        let loaded = LeaderEpochCache::load(dir.path()).expect("load").expect("present");
        assert_eq!(pairs(&loaded), vec![(2, 12)]);
    }

    #[test]
    fn end_offsets_follow_kafkas_offsets_for_leader_epoch() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(LeaderEpochCache::empty(dir.path()).end_offset_for(0, 7), (-1, -1));
        let c = cache(dir.path(), &[(1, 5), (3, 10), (6, 20)]);
        assert_eq!(c.end_offset_for(6, 30), (6, 30), "latest epoch: the log end");
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(c.end_offset_for(4, 30), (3, 20), "unknown epoch: the one below it");
        assert_eq!(c.end_offset_for(0, 30), (0, 5), "below the first epoch");
        assert_eq!(c.end_offset_for(7, 30), (-1, -1), "above the latest");
        assert_eq!(c.end_offset_for(-1, 30), (-1, -1));
    }
}
