//! One segment: a `.log` file of whole batches plus its two sparse indexes.
//!
//! Only the segment being written keeps its files open ("pinned"); every
//! other segment's `.log` is read through the process-wide cache of open
//! handles ([`crate::file_cache`]) and its indexes, held in memory, have no
//! open file at all. A segment is pinned by its first write and released
//! (flushed, then closed) when it rolls.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use records::batch::{frame_size, BatchHeader, HEADER_SIZE};
use crate::config::LogConfig;
use crate::error::{io_err, Result, StorageError};
use crate::index::{IndexState, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

/// Extension of segment data files.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Extra extension of a replacement segment's files while they are written.
pub(crate) const CLEANED_EXT: &str = "cleaned";
/// Extra extension of a complete replacement segment's files, waiting to take
/// the place of the segments they replace.
pub(crate) const SWAP_EXT: &str = "swap";
/// A segment's file suffixes, the `.log` last: a replacement renames it last,
/// so a `.log.swap` file means its indexes were renamed before it.
pub(crate) const SEGMENT_SUFFIXES: [&str; 3] = [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX];

/// `<dir>/<20-digit base offset>.<suffix>`, Kafka's naming.
pub(crate) fn file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// [`file_path`] with the extra extension `stage` (`cleaned`, `swap`) if any.
pub(crate) fn staged_path(
    dir: &Path,
    base_offset: i64,
    suffix: &str,
    stage: Option<&str>,
) -> PathBuf {
    match stage {
        Some(ext) => dir.join(format!("{base_offset:020}.{suffix}.{ext}")),
        None => file_path(dir, base_offset, suffix),
    }
}

/// Removes `path`; a missing file is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Renames the files of segment `base_offset` from stage `from` to stage `to`
/// (`None`: the final names), in [`SEGMENT_SUFFIXES`] order. Files that do
/// not exist are skipped.
pub(crate) fn rename_segment_files(
    dir: &Path,
    base_offset: i64,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<()> {
    for suffix in SEGMENT_SUFFIXES {
        let src = staged_path(dir, base_offset, suffix, from);
        let dst = staged_path(dir, base_offset, suffix, to);
        match std::fs::rename(&src, &dst) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&src)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// What the log needs to know about each batch of an append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchMeta {
    /// Total size in bytes.
    pub(crate) size: usize,
    /// Offset of the batch's last record.
    pub(crate) last_offset: i64,
    /// The batch's max timestamp as written.
    pub(crate) max_timestamp: i64,
}

/// Positional reads, from a plain file or a segment's [`LogFile`].
pub(crate) trait ReadAt {
    /// Fills `buf` from position `pos`.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, pos)
    }
}

/// A segment's `.log` file: open read-write while pinned (the segment being
/// written), else opened read-only on demand through the file cache.
///
/// Invariant: an unpinned file has no writes of ours that are not fsynced
/// (writes pin the file; it is unpinned only after a flush; the rare writes
/// to an unpinned file, recovery truncating it, fsync at once).
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    /// Key in the file cache, unique to this open of the segment.
    id: u64,
    pinned: Option<File>,
}

/// A handle for one read: the pinned file or a cached one.
enum Handle<'a> {
    Pinned(&'a File),
    Cached(Arc<File>),
}

impl std::ops::Deref for Handle<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        match self {
            Handle::Pinned(f) => f,
            Handle::Cached(f) => f,
        }
    }
}

impl LogFile {
    /// A file read on demand (nothing is opened yet).
    fn unpinned(path: PathBuf) -> LogFile {
        LogFile {
            path,
            id: crate::file_cache::next_id(),
            pinned: None,
        }
    }

    fn handle(&self) -> std::io::Result<Handle<'_>> {
        match &self.pinned {
            Some(f) => Ok(Handle::Pinned(f)),
            None => crate::file_cache::get(self.id, &self.path).map(Handle::Cached),
        }
    }

    /// The file kept open read-write (opened now if it was not).
    fn pin(&mut self) -> std::io::Result<&File> {
        if self.pinned.is_none() {
            let file = OpenOptions::new().read(true).write(true).open(&self.path)?;
            crate::file_cache::forget(self.id);
            self.pinned = Some(file);
        }
        self.pinned
            .as_ref()
            .ok_or_else(|| std::io::Error::other("file not open"))
    }

    /// Closes the pinned handle; the caller has flushed it.
    fn unpin(&mut self) {
        self.pinned = None;
    }

    /// Writes `buf` at `pos` (pins the file).
    pub(crate) fn write_all_at(&mut self, buf: &[u8], pos: u64) -> std::io::Result<()> {
        self.pin()?.write_all_at(buf, pos)
    }

    /// Truncates or extends the file. An unpinned file is opened for this
    /// alone and fsynced before it is closed again.
    pub(crate) fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        match &self.pinned {
            Some(f) => f.set_len(len),
            None => {
                let f = OpenOptions::new().write(true).open(&self.path)?;
                f.set_len(len)?;
                f.sync_data()
            }
        }
    }

    /// Sets the modification time (pins the file).
    pub(crate) fn set_modified(&mut self, t: std::time::SystemTime) -> std::io::Result<()> {
        self.pin()?.set_modified(t)
    }

    /// fsyncs the file's data; nothing to do for an unpinned file (see the
    /// invariant).
    pub(crate) fn sync_data(&self) -> std::io::Result<()> {
        match &self.pinned {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }

    /// The file's metadata, from its path (opens nothing).
    pub(crate) fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        std::fs::metadata(&self.path)
    }

    /// Whether the file is kept open.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }
}

impl ReadAt for LogFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(&*self.handle()?, buf, pos)
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        crate::file_cache::forget(self.id);
    }
}

/// A segment of the log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) log_path: PathBuf,
    pub(crate) log: LogFile,
    /// Bytes of whole batches in the `.log` file.
    pub(crate) size: u64,
    /// Offset after the last batch (the base offset when empty).
    pub(crate) next_offset: i64,
    pub(crate) offset_index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    pub(crate) bytes_since_last_index: u64,
    /// Largest batch max-timestamp (>= 0) and the last offset of the first
    /// batch that reached it.
    pub(crate) max_timestamp: Option<(i64, i64)>,
    /// Wall-clock time of the first append (or first batch's timestamp after
    /// a reopen); drives `segment.ms` rolling.
    pub(crate) roll_base_ms: Option<i64>,
    dirty: bool,
}

/// Reads a file region through a reusable window of `chunk` bytes, so that
/// scanning many small batch headers costs few syscalls.
pub(crate) struct FileWindow<'a, F: ReadAt + ?Sized = File> {
    file: &'a F,
    path: &'a Path,
    end: u64,
    start: u64,
    buf: Vec<u8>,
    chunk: usize,
}

impl<'a, F: ReadAt + ?Sized> FileWindow<'a, F> {
    pub(crate) fn new(file: &'a F, path: &'a Path, end: u64, chunk: usize) -> Self {
        FileWindow {
            file,
            path,
            end,
            start: 0,
            buf: Vec::new(),
            chunk,
        }
    }

    /// `len` bytes at `pos`; errors if the range passes `end`.
    pub(crate) fn get(&mut self, pos: u64, len: usize) -> Result<&[u8]> {
        let need_end = pos
            .checked_add(len as u64)
            .filter(|e| *e <= self.end)
            .ok_or_else(|| {
                StorageError::CorruptRecord(format!(
                    "{}: {len} bytes at position {pos} run past the end ({})",
                    self.path.display(),
                    self.end
                ))
            })?;
        let cached_end = self.start + self.buf.len() as u64;
        if pos < self.start || need_end > cached_end {
            let n = (len.max(self.chunk) as u64).min(self.end - pos) as usize;
            self.buf.resize(n, 0);
            self.start = pos;
            if let Err(e) = self.file.read_exact_at(&mut self.buf, pos) {
                self.buf.clear();
                return Err(io_err(self.path)(e));
            }
        }
        let off = (pos - self.start) as usize;
        self.buf.get(off..off + len).ok_or_else(|| {
            StorageError::CorruptRecord(format!("{}: window out of range", self.path.display()))
        })
    }
}

/// Walks batch headers from a position to an end position.
pub(crate) struct HeaderScan<'a, F: ReadAt + ?Sized = File> {
    window: FileWindow<'a, F>,
    pos: u64,
    end: u64,
}

impl<'a, F: ReadAt + ?Sized> HeaderScan<'a, F> {
    pub(crate) fn new(file: &'a F, path: &'a Path, start: u64, end: u64) -> Self {
        HeaderScan {
            window: FileWindow::new(file, path, end, 16 * 1024),
            pos: start,
            end,
        }
    }

    /// Next `(position, header)`, `None` at the end; an error for a partial
    /// or malformed header or a batch running past the end.
    pub(crate) fn next_header(&mut self) -> Result<Option<(u64, BatchHeader)>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let header = BatchHeader::parse(self.window.get(self.pos, HEADER_SIZE)?)?;
        let total = header.total_size() as u64;
        if self.pos + total > self.end {
            return Err(StorageError::CorruptRecord(format!(
                "batch at position {} of {total} bytes runs past the end ({})",
                self.pos, self.end
            )));
        }
        let at = self.pos;
        self.pos += total;
        Ok(Some((at, header)))
    }
}

fn open_rw(path: &Path, truncate: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(io_err(path))
}

impl Segment {
    /// Creates a new, empty segment (replacing any stale files of that name).
    pub(crate) fn create(dir: &Path, base_offset: i64, config: &LogConfig) -> Result<Segment> {
        Self::create_staged(dir, base_offset, config, None)
    }

    /// [`Segment::create`] with files named for stage `stage` (see
    /// [`staged_path`]).
    fn create_staged(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        stage: Option<&str>,
    ) -> Result<Segment> {
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_if_exists(&staged_path(dir, base_offset, suffix, stage))?;
        }
        let log_path = staged_path(dir, base_offset, LOG_SUFFIX, stage);
        // Created empty, then closed: a partition nobody writes to holds no
        // descriptor; the first append opens the file.
        open_rw(&log_path, true)?;
        let log = LogFile::unpinned(log_path.clone());
        let (seg, _, _) = Self::with_files(dir, base_offset, log_path, log, 0, config, stage)?;
        Ok(seg)
    }

    /// Writes `records` (checked, described by `metas`) as a complete segment
    /// in `<base>.{log,index,timeindex}.cleaned` files, indexed exactly as
    /// appends are and with a sealed time index, gives the `.log` file the
    /// modification time `modified` and fsyncs all three files. On error the
    /// `.cleaned` files are removed.
    pub(crate) fn write_cleaned(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        records: &[u8],
        metas: &[BatchMeta],
        modified: std::time::SystemTime,
    ) -> Result<()> {
        let stage = Some(CLEANED_EXT);
        let written = Self::create_staged(dir, base_offset, config, stage).and_then(|mut seg| {
            if !metas.is_empty() {
                seg.append(records, metas, config.index_interval_bytes, 0)?;
            }
            seg.seal_time_index()?;
            // Retention falls back to the file's age when no batch has a
            // timestamp; the copy must not look younger than the data it holds.
            seg.log
                .set_modified(modified)
                .map_err(io_err(&seg.log_path))?;
            seg.mark_dirty();
            seg.flush()
        });
        if written.is_err() {
            for suffix in SEGMENT_SUFFIXES {
                let _ = remove_if_exists(&staged_path(dir, base_offset, suffix, stage));
            }
        }
        written
    }

    /// Opens an existing segment's files without interpreting them: size is
    /// the file size and the indexes are loaded as found. Recovery then
    /// either trusts ([`Segment::load_tail`]) or rebuilds them. No file stays
    /// open: reads go through the file cache until a write pins the segment.
    pub(crate) fn open_files(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
    ) -> Result<(Segment, IndexState, IndexState)> {
        let log_path = file_path(dir, base_offset, LOG_SUFFIX);
        let log = LogFile::unpinned(log_path.clone());
        let size = log.metadata().map_err(io_err(&log_path))?.len();
        Self::with_files(dir, base_offset, log_path, log, size, config, None)
    }

    fn with_files(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        log: LogFile,
        size: u64,
        config: &LogConfig,
        stage: Option<&str>,
    ) -> Result<(Segment, IndexState, IndexState)> {
        let (offset_index, os) = OffsetIndex::open(
            &staged_path(dir, base_offset, INDEX_SUFFIX, stage),
            base_offset,
            config.segment_index_bytes,
        )?;
        let (time_index, ts) = TimeIndex::open(
            &staged_path(dir, base_offset, TIME_INDEX_SUFFIX, stage),
            base_offset,
            config.segment_index_bytes,
        )?;
        let seg = Segment {
            base_offset,
            log_path,
            log,
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            bytes_since_last_index: 0,
            max_timestamp: None,
            roll_base_ms: None,
            dirty: false,
        };
        Ok((seg, os, ts))
    }

    /// Writes `records` (already validated and patched) at the end and
    /// updates the indexes following Kafka's rule: a batch gets an entry when
    /// more than `index_interval` bytes were written since the last entry.
    /// On error (a full disk) nothing of the append stays: the file and the
    /// offset index are cut back, so its offsets are given out again.
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        metas: &[BatchMeta],
        index_interval: u64,
        now_ms: i64,
    ) -> Result<()> {
        let start = self.size;
        // Plan the index entries and the new state before writing anything.
        let mut max_timestamp = self.max_timestamp;
        let mut since_index = self.bytes_since_last_index;
        let mut next_offset = self.next_offset;
        let mut offset_entries = Vec::new();
        let mut time_entries: Vec<TimeEntry> = Vec::new();
        let mut last_time_ts = self.time_index.last().map_or(-1, |e| e.timestamp);
        let mut pos = start;
        for m in metas {
            if m.max_timestamp > max_timestamp.map_or(-1, |t| t.0) {
                max_timestamp = Some((m.max_timestamp, m.last_offset));
            }
            if since_index > index_interval {
                if let (Ok(rel), Ok(position)) = (
                    u32::try_from(m.last_offset - self.base_offset),
                    u32::try_from(pos),
                ) {
                    offset_entries.push(OffsetEntry {
                        relative_offset: rel,
                        position,
                    });
                    if let Some((ts, off)) = max_timestamp {
                        if ts > last_time_ts {
                            if let Ok(rel) = u32::try_from(off - self.base_offset) {
                                time_entries.push(TimeEntry {
                                    timestamp: ts,
                                    relative_offset: rel,
                                });
                                last_time_ts = ts;
                            }
                        }
                    }
                }
                since_index = 0;
            }
            pos += m.size as u64;
            since_index += m.size as u64;
            next_offset = m.last_offset + 1;
        }

        let offset_entries_before = self.offset_index.len();
        let written = self
            .log
            .write_all_at(records, start)
            .map_err(io_err(&self.log_path))
            .and_then(|()| self.offset_index.append(&offset_entries))
            .and_then(|()| self.time_index.append(&time_entries));
        if let Err(e) = written {
            // Best effort: do not leave a partial batch or its index entries behind.
            let _ = self.log.set_len(start);
            let _ = self.offset_index.truncate_entries(offset_entries_before);
            self.dirty = true;
            return Err(e);
        }
        self.dirty = true;
        self.size = start + records.len() as u64;
        self.roll_base_ms.get_or_insert(now_ms);
        self.max_timestamp = max_timestamp;
        self.bytes_since_last_index = since_index;
        self.next_offset = next_offset;
        Ok(())
    }

    /// Position and header of the first batch whose last offset >= `offset`.
    pub(crate) fn find(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let (_, start) = self.offset_index.lookup(offset);
        let mut scan = HeaderScan::new(&self.log, &self.log_path, start, self.size);
        while let Some((pos, h)) = scan.next_header()? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    /// Position and header of the first batch whose max timestamp >= `ts`.
    pub(crate) fn find_timestamp(&self, ts: i64) -> Result<Option<(u64, BatchHeader)>> {
        let from = self
            .time_index
            .lookup(ts)
            .map_or(self.base_offset, |(_, o)| o);
        let (_, start) = self.offset_index.lookup(from);
        let mut scan = HeaderScan::new(&self.log, &self.log_path, start, self.size);
        while let Some((pos, h)) = scan.next_header()? {
            if h.max_timestamp >= ts {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    /// Reads `len` bytes at `pos`.
    pub(crate) fn read_exact(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        if pos.checked_add(len as u64).is_none_or(|e| e > self.size) {
            return Err(StorageError::CorruptRecord(format!(
                "{}: read of {len} bytes at {pos} past the end ({})",
                self.log_path.display(),
                self.size
            )));
        }
        let mut buf = vec![0; len];
        self.log
            .read_exact_at(&mut buf, pos)
            .map_err(io_err(&self.log_path))?;
        Ok(buf)
    }

    /// Whole batches from `pos` (where `first` starts) up to `max_bytes`, but
    /// at least the first batch.
    pub(crate) fn read_from(
        &self,
        pos: u64,
        first: &BatchHeader,
        max_bytes: usize,
    ) -> Result<Bytes> {
        let first_size = first.total_size();
        let avail = usize::try_from(self.size - pos).unwrap_or(usize::MAX);
        let want = if first_size >= max_bytes {
            first_size
        } else {
            max_bytes.min(avail)
        };
        let mut buf = self.read_exact(pos, want)?;
        let mut end = 0;
        while let Some(rest) = buf.get(end..) {
            match frame_size(rest) {
                Ok(total) if total <= rest.len() => end += total,
                _ => break,
            }
        }
        buf.truncate(end);
        Ok(Bytes::from(buf))
    }

    /// Removes every batch whose last offset >= `offset`. Returns the base
    /// offset of the first removed batch, or `None` if nothing was removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<Option<i64>> {
        let Some((pos, h)) = self.find(offset)? else {
            return Ok(None);
        };
        self.log.set_len(pos).map_err(io_err(&self.log_path))?;
        self.dirty = true;
        self.size = pos;
        self.offset_index.truncate_to_position(pos)?;
        self.time_index.truncate_to_offset(h.base_offset)?;
        self.load_tail()?;
        if pos == 0 {
            self.next_offset = h.base_offset.max(self.base_offset);
            self.roll_base_ms = None;
        }
        Ok(Some(h.base_offset))
    }

    /// Derives the in-memory state (next offset, max timestamp, bytes since
    /// the last index entry) from trusted indexes plus a header scan of the
    /// batches after the last offset-index entry. Errors other than I/O mean
    /// the indexes or the tail are inconsistent and need a full rebuild.
    pub(crate) fn load_tail(&mut self) -> Result<()> {
        let last_entry = self.offset_index.last().copied();
        let start = last_entry.map_or(0, |e| u64::from(e.position));
        let mut best = self
            .time_index
            .last()
            .map(|e| (e.timestamp, self.base_offset + i64::from(e.relative_offset)));
        let mut next = self.base_offset;
        let mut scan = HeaderScan::new(&self.log, &self.log_path, start, self.size);
        let mut first = true;
        while let Some((_, h)) = scan.next_header()? {
            if first {
                if let Some(e) = last_entry {
                    let entry_offset = self.base_offset + i64::from(e.relative_offset);
                    if h.last_offset() > entry_offset {
                        return Err(StorageError::CorruptRecord(format!(
                            "{}: index entry {e:?} does not match the batch at its position",
                            self.offset_index.path().display()
                        )));
                    }
                }
                first = false;
            }
            if h.base_offset < next || h.last_offset_delta < 0 {
                return Err(StorageError::CorruptRecord(format!(
                    "{}: offsets go backwards at batch {}",
                    self.log_path.display(),
                    h.base_offset
                )));
            }
            next = h.next_offset();
            let better = match best {
                None => h.max_timestamp >= 0,
                Some((t, o)) => {
                    h.max_timestamp > t || (h.max_timestamp == t && h.last_offset() < o)
                }
            };
            if better {
                best = Some((h.max_timestamp, h.last_offset()));
            }
        }
        if let Some(e) = self.time_index.last() {
            if self.base_offset + i64::from(e.relative_offset) >= next {
                return Err(StorageError::CorruptRecord(format!(
                    "{}: entry {e:?} points past the last offset",
                    self.time_index.path().display()
                )));
            }
        }
        self.next_offset = next;
        self.max_timestamp = best;
        self.bytes_since_last_index = self.size - start;
        Ok(())
    }

    /// Sets the roll clock from the first batch's timestamp (used after a
    /// reopen, as Kafka does).
    pub(crate) fn load_roll_base(&mut self) -> Result<()> {
        if self.size > 0 && self.roll_base_ms.is_none() {
            let mut scan = HeaderScan::new(&self.log, &self.log_path, 0, self.size);
            if let Some((_, h)) = scan.next_header()? {
                self.roll_base_ms = Some(h.max_timestamp);
            }
        }
        Ok(())
    }

    /// The largest batch timestamp, or the file's modification time (ms since
    /// the epoch) when no batch has a timestamp, as Kafka's retention uses.
    pub(crate) fn largest_timestamp(&self) -> Result<i64> {
        if let Some((ts, _)) = self.max_timestamp {
            return Ok(ts);
        }
        let modified = self
            .log
            .metadata()
            .and_then(|m| m.modified())
            .map_err(io_err(&self.log_path))?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// Appends the final time-index entry for the segment's max timestamp
    /// (Kafka does this when a segment is rolled or closed).
    pub(crate) fn seal_time_index(&mut self) -> Result<()> {
        if let Some((ts, off)) = self.max_timestamp {
            self.time_index.maybe_append(ts, off)?;
        }
        Ok(())
    }

    /// Updates index size limits after a config change.
    pub(crate) fn apply_config(&mut self, config: &LogConfig) {
        self.offset_index.set_max_bytes(config.segment_index_bytes);
        self.time_index.set_max_bytes(config.segment_index_bytes);
    }

    /// Marks the log file as modified (recovery rewrites).
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// fsyncs the log file and the indexes if they changed.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.dirty {
            self.log.sync_data().map_err(io_err(&self.log_path))?;
            self.dirty = false;
        }
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Flushes the segment and closes its files (it no longer takes writes:
    /// it rolled, or it is not the active segment); reads then go through the
    /// file cache.
    pub(crate) fn release_files(&mut self) -> Result<()> {
        self.flush()?;
        self.log.unpin();
        self.offset_index.release()?;
        self.time_index.release()
    }

    /// Whether any of the segment's files is kept open.
    pub(crate) fn holds_files(&self) -> bool {
        self.log.is_pinned() || self.offset_index.is_open() || self.time_index.is_open()
    }

    /// Deletes the segment's three files.
    pub(crate) fn delete_files(self) -> Result<()> {
        let paths = [
            self.log_path.clone(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        drop(self);
        for p in paths {
            remove_if_exists(&p)?;
        }
        Ok(())
    }
}
