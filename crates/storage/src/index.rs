//! Sparse segment indexes in Kafka's file formats.
//!
//! * `.index` ([`OffsetIndex`]): 8-byte entries, relative offset u32 BE and
//!   file position u32 BE. An entry `(o, p)` means "the batch starting at
//!   position `p` has last offset `base + o`" (Kafka's convention).
//! * `.timeindex` ([`TimeIndex`]): 12-byte entries, timestamp i64 BE and
//!   relative offset u32 BE. An entry `(t, o)` means "the largest timestamp
//!   in this segment up to offset `base + o` is `t`, first reached by the
//!   batch whose last offset is `base + o`". Timestamps strictly increase.
//!
//! Both are plain append-only files mirrored in memory (no preallocation, no
//! mmap). Entries are only written after the data they point at. Lookups use
//! the memory copy only, so the file is open only while the segment is
//! written: appends open it and keep it open until [`Index::release`]; the
//! rare rewrite of a closed index opens it, writes, fsyncs and closes again.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};

/// A fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Decodes one entry from exactly `SIZE` bytes.
    fn decode(b: &[u8]) -> Option<Self>;
    /// Appends the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// The entry's offset relative to the segment base.
    fn relative_offset(&self) -> u32;
}

/// One `.index` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    /// Last offset of the indexed batch, relative to the segment base.
    pub(crate) relative_offset: u32,
    /// File position of the indexed batch's first byte.
    pub(crate) position: u32,
}

/// One `.timeindex` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    /// Largest timestamp so far in the segment.
    pub(crate) timestamp: i64,
    /// Last offset (relative) of the batch that first reached `timestamp`.
    pub(crate) relative_offset: u32,
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn decode(b: &[u8]) -> Option<Self> {
        Some(OffsetEntry {
            relative_offset: u32::from_be_bytes(arr(b, 0)?),
            position: u32::from_be_bytes(arr(b, 4)?),
        })
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn decode(b: &[u8]) -> Option<Self> {
        Some(TimeEntry {
            timestamp: i64::from_be_bytes(arr(b, 0)?),
            relative_offset: u32::from_be_bytes(arr(b, 8)?),
        })
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// What [`Index::open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexState {
    /// The file existed and decoded cleanly (semantic checks still pending).
    Loaded,
    /// The file did not exist (now created empty).
    Missing,
    /// The file was unusable; the reason is given. Entries are empty.
    Corrupt(String),
}

/// An append-only index file and its in-memory copy.
#[derive(Debug)]
pub(crate) struct Index<E: IndexEntry> {
    path: PathBuf,
    /// Open only while appends go to the index (see the module docs).
    file: Option<File>,
    base_offset: i64,
    entries: Vec<E>,
    max_entries: usize,
    dirty: bool,
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err(path))
}

/// The `.index` file of a segment.
pub(crate) type OffsetIndex = Index<OffsetEntry>;
/// The `.timeindex` file of a segment.
pub(crate) type TimeIndex = Index<TimeEntry>;

impl<E: IndexEntry> Index<E> {
    /// Opens (creating if missing) and loads the index at `path`.
    pub(crate) fn open(
        path: &Path,
        base_offset: i64,
        max_bytes: u64,
    ) -> Result<(Self, IndexState)> {
        let bytes = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(path)(e)),
        };
        if bytes.is_none() {
            // Created now, so that a segment with no entries has its file.
            open_rw(path)?;
        }
        let mut entries = Vec::new();
        let state = match bytes {
            None => IndexState::Missing,
            Some(b) if b.len() % E::SIZE != 0 => {
                IndexState::Corrupt(format!("size {} is not a multiple of {}", b.len(), E::SIZE))
            }
            Some(b) => {
                entries.reserve(b.len() / E::SIZE);
                let mut state = IndexState::Loaded;
                for chunk in b.chunks_exact(E::SIZE) {
                    match E::decode(chunk) {
                        Some(e) => entries.push(e),
                        None => {
                            state = IndexState::Corrupt("undecodable entry".into());
                            entries.clear();
                            break;
                        }
                    }
                }
                state
            }
        };
        let max_entries = usize::try_from(max_bytes / E::SIZE as u64).unwrap_or(usize::MAX);
        Ok((
            Index {
                path: path.to_path_buf(),
                file: None,
                base_offset,
                entries,
                max_entries,
                dirty: false,
            },
            state,
        ))
    }

    /// The in-memory entries.
    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The last entry, if any.
    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// True when no further entry fits under `segment.index.bytes`.
    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// Absolute offset of an entry.
    pub(crate) fn absolute(&self, e: &E) -> i64 {
        self.base_offset + i64::from(e.relative_offset())
    }

    /// Appends entries (those that would overflow the size limit are dropped;
    /// the index is sparse so that only costs lookup speed).
    pub(crate) fn append(&mut self, new: &[E]) -> Result<()> {
        let room = self.max_entries.saturating_sub(self.entries.len());
        let new = &new[..new.len().min(room)];
        if new.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(new.len() * E::SIZE);
        for e in new {
            e.encode(&mut buf);
        }
        let at = (self.entries.len() * E::SIZE) as u64;
        self.open_file()?
            .write_all_at(&buf, at)
            .map_err(io_err(&self.path))?;
        self.entries.extend_from_slice(new);
        self.dirty = true;
        Ok(())
    }

    /// The file, opened and kept open if it was closed.
    fn open_file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            self.file = Some(open_rw(&self.path)?);
        }
        self.file
            .as_ref()
            .ok_or_else(|| io_err(&self.path)(std::io::Error::other("index file not open")))
    }

    /// Runs `f` on the file: the open one (marking the index dirty), or one
    /// opened for this alone and fsynced before it is closed again.
    fn change_file(&mut self, f: impl FnOnce(&File) -> std::io::Result<()>) -> Result<()> {
        match &self.file {
            Some(file) => {
                f(file).map_err(io_err(&self.path))?;
                self.dirty = true;
            }
            None => {
                let file = open_rw(&self.path)?;
                f(&file)
                    .and_then(|()| file.sync_data())
                    .map_err(io_err(&self.path))?;
            }
        }
        Ok(())
    }

    /// Flushes and closes the file (the segment no longer takes appends).
    pub(crate) fn release(&mut self) -> Result<()> {
        self.flush()?;
        self.file = None;
        Ok(())
    }

    /// Whether the file is open.
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Replaces the whole file with `entries`.
    pub(crate) fn rewrite(&mut self, entries: Vec<E>) -> Result<()> {
        let mut entries = entries;
        entries.truncate(self.max_entries);
        let mut buf = Vec::with_capacity(entries.len() * E::SIZE);
        for e in &entries {
            e.encode(&mut buf);
        }
        self.change_file(|file| {
            file.set_len(0)?;
            file.write_all_at(&buf, 0)
        })?;
        self.entries = entries;
        Ok(())
    }

    /// Keeps only the first `n` entries.
    pub(crate) fn truncate_entries(&mut self, n: usize) -> Result<()> {
        if n >= self.entries.len() {
            return Ok(());
        }
        self.change_file(|file| file.set_len((n * E::SIZE) as u64))?;
        self.entries.truncate(n);
        Ok(())
    }

    /// Updates the size limit (from a new `segment.index.bytes`).
    pub(crate) fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_entries = usize::try_from(max_bytes / E::SIZE as u64).unwrap_or(usize::MAX);
    }

    /// fsyncs the file if it changed since the last flush.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if let (true, Some(file)) = (self.dirty, &self.file) {
            file.sync_data().map_err(io_err(&self.path))?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Path of the index file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Index<OffsetEntry> {
    /// Largest entry whose offset is <= `offset`, as (absolute offset,
    /// position); `(base, 0)` when there is none.
    pub(crate) fn lookup(&self, offset: i64) -> (i64, u64) {
        let n = self.entries.partition_point(|e| self.absolute(e) <= offset);
        match n.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(e) => (self.absolute(e), u64::from(e.position)),
            None => (self.base_offset, 0),
        }
    }

    /// Drops entries pointing at or past file position `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        let n = self
            .entries
            .partition_point(|e| u64::from(e.position) < position);
        self.truncate_entries(n)
    }

    /// Checks Kafka's invariants against the segment: offsets and positions
    /// strictly increase, positions lie inside the log file and offsets below
    /// `offset_limit` (the next segment's base, if any).
    pub(crate) fn sanity_check(
        &self,
        log_size: u64,
        offset_limit: Option<i64>,
    ) -> std::result::Result<(), String> {
        let mut prev: Option<&OffsetEntry> = None;
        for e in &self.entries {
            if u64::from(e.position) >= log_size {
                return Err(format!("entry {e:?} points past the log end {log_size}"));
            }
            if offset_limit.is_some_and(|l| self.absolute(e) >= l) {
                return Err(format!("entry {e:?} beyond the next segment's base"));
            }
            if let Some(p) = prev {
                if e.relative_offset <= p.relative_offset || e.position <= p.position {
                    return Err(format!("entries not increasing: {p:?} then {e:?}"));
                }
            }
            prev = Some(e);
        }
        Ok(())
    }
}

impl Index<TimeEntry> {
    /// Largest entry whose timestamp is <= `ts`, as (timestamp, absolute offset).
    pub(crate) fn lookup(&self, ts: i64) -> Option<(i64, i64)> {
        let n = self.entries.partition_point(|e| e.timestamp <= ts);
        let e = self.entries.get(n.checked_sub(1)?)?;
        Some((e.timestamp, self.absolute(e)))
    }

    /// Appends `(ts, offset)` if `ts` is larger than the last entry's
    /// timestamp (or than -1 when empty), as Kafka's `maybeAppend`.
    pub(crate) fn maybe_append(&mut self, ts: i64, offset: i64) -> Result<()> {
        let last_ts = self.entries.last().map_or(-1, |e| e.timestamp);
        if ts <= last_ts {
            return Ok(());
        }
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return Ok(());
        };
        self.append(&[TimeEntry {
            timestamp: ts,
            relative_offset: rel,
        }])
    }

    /// Drops entries whose offset is >= `offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) -> Result<()> {
        let base = self.base_offset;
        let n = self
            .entries
            .iter()
            .take_while(|e| base + i64::from(e.relative_offset) < offset)
            .count();
        self.truncate_entries(n)
    }

    /// Checks that timestamps strictly increase, offsets do not decrease and
    /// stay below `offset_limit`.
    pub(crate) fn sanity_check(
        &self,
        offset_limit: Option<i64>,
    ) -> std::result::Result<(), String> {
        let mut prev: Option<&TimeEntry> = None;
        for e in &self.entries {
            if offset_limit.is_some_and(|l| self.absolute(e) >= l) {
                return Err(format!("entry {e:?} beyond the segment's offsets"));
            }
            if let Some(p) = prev {
                if e.timestamp <= p.timestamp || e.relative_offset < p.relative_offset {
                    return Err(format!("entries not increasing: {p:?} then {e:?}"));
                }
            }
            prev = Some(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn offset_index_round_trips_and_looks_up_floor_entries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let (mut idx, st) = OffsetIndex::open(&p, 100, 1 << 20).unwrap();
        assert_eq!(st, IndexState::Missing);
        idx.append(&[
            OffsetEntry {
                relative_offset: 5,
                position: 100,
            },
            OffsetEntry {
                relative_offset: 9,
                position: 300,
            },
        ])
        .unwrap();
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(104), (100, 0));
        assert_eq!(idx.lookup(105), (105, 100));
        assert_eq!(idx.lookup(1000), (109, 300));
        drop(idx);
        let (idx, st) = OffsetIndex::open(&p, 100, 1 << 20).unwrap();
        assert_eq!(st, IndexState::Loaded);
        assert_eq!(idx.entries().len(), 2);
        assert!(idx.sanity_check(400, None).is_ok());
        assert!(idx.sanity_check(300, None).is_err());
        assert!(idx.sanity_check(400, Some(108)).is_err());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 16);
    }

    #[test]
    fn index_with_partial_entry_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.timeindex");
        std::fs::write(&p, [0u8; 13]).unwrap();
        let (idx, st) = TimeIndex::open(&p, 0, 1 << 20).unwrap();
        assert!(matches!(st, IndexState::Corrupt(_)));
        assert!(idx.entries().is_empty());
    }

    #[test]
    fn time_index_only_grows_in_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let (mut idx, _) = TimeIndex::open(&dir.path().join("t"), 10, 1 << 20).unwrap();
        idx.maybe_append(5, 10).unwrap();
        idx.maybe_append(5, 12).unwrap();
        idx.maybe_append(3, 13).unwrap();
        idx.maybe_append(8, 14).unwrap();
        assert_eq!(idx.entries().len(), 2);
        assert_eq!(idx.lookup(4), None);
        assert_eq!(idx.lookup(7), Some((5, 10)));
        assert_eq!(idx.lookup(8), Some((8, 14)));
        idx.truncate_to_offset(14).unwrap();
        assert_eq!(idx.entries().len(), 1);
    }

    #[test]
    fn full_index_drops_extra_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (mut idx, _) = OffsetIndex::open(&dir.path().join("i"), 0, 16).unwrap();
        assert!(!idx.is_full());
        let e = |o, p| OffsetEntry {
            relative_offset: o,
            position: p,
        };
        idx.append(&[e(1, 1), e(2, 2), e(3, 3)]).unwrap();
        assert!(idx.is_full());
        assert_eq!(idx.entries().len(), 2);
    }
}
