//! Opening a log directory: find the segments, check or rebuild their
//! indexes, and cut torn tails after an unclean shutdown.
//!
//! Rules:
//! * With `clean_shutdown == false` the last segment is always scanned batch
//!   by batch, checking framing, magic, CRC-32C and offset order; the first
//!   bad batch and everything after it is cut off and both indexes are
//!   rebuilt from the scan.
//! * Any segment whose `.index` or `.timeindex` is missing or fails the
//!   sanity checks (entry size, monotonic entries, positions inside the file,
//!   offsets inside the segment), or whose tail disagrees with its index, is
//!   scanned and rebuilt the same way, clean shutdown or not.
//! * A segment other than the last was flushed when the next one rolled, so a
//!   corrupt batch found in it by such a scan is damage from outside, not a
//!   torn write: a batch whose CRC fails but whose framing holds is dropped
//!   alone (the batches after it move up); damaged framing cuts that segment
//!   there. Every later segment is kept, one WARN names the offsets lost, and
//!   reads skip the gap as they skip compacted offsets. Only the active
//!   (unflushed) segment's tail is cut as a torn write.
//! * Before all that, interrupted segment replacements (see
//!   [`crate::Log::replace_segments`]) are settled: `*.cleaned` files were
//!   not complete and are deleted; a `<base>.log.swap` file was complete, so
//!   the old segment files it covers (base offsets from `base` up to the
//!   swap's next offset) are deleted and the `.swap` files renamed to their
//!   final names. A `.swap` index without its `.swap` log is deleted.

use std::fs::File;
use std::path::Path;

use tracing::{debug, info, warn};

use records::batch::{BatchHeader, ATTRIBUTES_OFFSET, HEADER_SIZE};
use crate::config::LogConfig;
use crate::error::{io_err, Result, StorageError};
use crate::index::{IndexState, OffsetEntry, TimeEntry};
use crate::segment::{
    file_path, remove_if_exists, rename_segment_files, staged_path, FileWindow, HeaderScan,
    Segment, CLEANED_EXT, INDEX_SUFFIX, LOG_SUFFIX, SEGMENT_SUFFIXES, SWAP_EXT, TIME_INDEX_SUFFIX,
};

const SCAN_CHUNK: usize = 1 << 20;

/// fsyncs a directory so created, renamed or deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Parses `<20 digits>.<suffix>` file names.
fn parse_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// Every `<20 digits>.<suffix>` file in `dir` as (base offset, suffix).
fn list_files(dir: &Path) -> Result<Vec<(i64, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        if let Some((base, suffix)) = name.to_str().and_then(parse_name) {
            files.push((base, suffix.to_owned()));
        }
    }
    Ok(files)
}

/// Second half of a segment replacement, shared by
/// [`crate::Log::replace_segments`] and recovery: the complete replacement
/// segment is in `<base>.*.swap` files; deletes the old segment files with
/// base offsets in `[base, end)` (oldest first, each `.log` before its
/// indexes), renames the `.swap` files to their final names and fsyncs `dir`.
/// Idempotent, so a crash at any point is finished by running it again.
pub(crate) fn complete_swap(dir: &Path, base: i64, end: i64) -> Result<()> {
    let mut old: Vec<(i64, String)> = list_files(dir)?
        .into_iter()
        .filter(|(b, suffix)| {
            (base..end).contains(b) && SEGMENT_SUFFIXES.contains(&suffix.as_str())
        })
        .collect();
    old.sort_by_key(|(b, suffix)| (*b, suffix != LOG_SUFFIX));
    for (b, suffix) in old {
        remove_if_exists(&file_path(dir, b, &suffix))?;
    }
    rename_segment_files(dir, base, Some(SWAP_EXT), None)?;
    sync_dir(dir)
}

/// Settles segment replacements a crash interrupted (see the module docs).
fn recover_replacements(dir: &Path, files: &[(i64, String)]) -> Result<()> {
    let swap_log = format!("{LOG_SUFFIX}.{SWAP_EXT}");
    let mut changed = false;
    for (base, suffix) in files {
        if suffix.ends_with(CLEANED_EXT) {
            let p = dir.join(format!("{base:020}.{suffix}"));
            info!(path = %p.display(), "removing unfinished replacement segment file");
            remove_if_exists(&p)?;
            changed = true;
        }
    }
    let mut swaps: Vec<i64> = files
        .iter()
        .filter(|(_, suffix)| *suffix == swap_log)
        .map(|(base, _)| *base)
        .collect();
    swaps.sort_unstable();
    for base in swaps {
        changed = true;
        let path = staged_path(dir, base, LOG_SUFFIX, Some(SWAP_EXT));
        let (next, damage) = scan_swap(&path, base)?;
        match damage {
            // The swap file was fsynced before it got its name, so this is
            // damage from outside; the old segments are the better copy as
            // long as none of them was deleted yet (the first goes first).
            Some(why) if file_path(dir, base, LOG_SUFFIX).exists() => {
                warn!(path = %path.display(), %why, "discarding damaged replacement segment");
                for suffix in SEGMENT_SUFFIXES {
                    remove_if_exists(&staged_path(dir, base, suffix, Some(SWAP_EXT)))?;
                }
            }
            _ => {
                info!(path = %path.display(), next, "completing interrupted segment replacement");
                complete_swap(dir, base, next.max(base + 1))?;
            }
        }
    }
    for (base, suffix) in files {
        if suffix.ends_with(SWAP_EXT) && *suffix != swap_log {
            // Renamed by `complete_swap` already, or an index whose `.log.swap`
            // was never renamed into place.
            remove_if_exists(&dir.join(format!("{base:020}.{suffix}")))?;
            changed = true;
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Offset after the last well-framed batch of the `.log.swap` file at
/// `path`, and what is wrong with the rest of the file, if anything (the
/// load that follows cuts such a tail).
fn scan_swap(path: &Path, base: i64) -> Result<(i64, Option<String>)> {
    let file = File::open(path).map_err(io_err(path))?;
    let size = file.metadata().map_err(io_err(path))?.len();
    let mut scan = HeaderScan::new(&file, path, 0, size);
    let mut next = base;
    loop {
        match scan.next_header() {
            Ok(Some((_, h))) => next = h.next_offset(),
            Ok(None) => return Ok((next, None)),
            Err(e @ StorageError::Io { .. }) => return Err(e),
            Err(e) => return Ok((next, Some(e.to_string()))),
        }
    }
}

/// Opens every segment in `dir` (creating the directory and a first empty
/// segment when needed) and recovers them as described in the module docs.
///
/// After an unclean shutdown with a known `recovery_point` (everything below
/// it was flushed), the last segment is checked only from the indexed batch
/// at or below the recovery point on, as long as its indexes are intact
/// there; the batches below it are trusted as on a clean open.
pub(crate) fn open_segments(
    dir: &Path,
    config: &LogConfig,
    clean_shutdown: bool,
    recovery_point: Option<i64>,
) -> Result<Vec<Segment>> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    recover_replacements(dir, &list_files(dir)?)?;
    let mut bases = Vec::new();
    let mut others = Vec::new();
    for (base, suffix) in list_files(dir)? {
        match suffix.as_str() {
            LOG_SUFFIX => bases.push(base),
            INDEX_SUFFIX | TIME_INDEX_SUFFIX => others.push((base, suffix)),
            s if s.ends_with("deleted") => {
                let p = dir.join(format!("{base:020}.{s}"));
                std::fs::remove_file(&p).map_err(io_err(&p))?;
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    // Indexes without a log file are leftovers of an interrupted delete.
    for (base, suffix) in others {
        if bases.binary_search(&base).is_err() {
            let p = dir.join(format!("{base:020}.{suffix}"));
            info!(path = %p.display(), "removing orphan index file");
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let limit = bases.get(i + 1).copied();
        let (mut seg, offset_state, time_state) = Segment::open_files(dir, base, config)?;
        let mut reason = None;
        let mut resume = None;
        if !clean_shutdown && is_last {
            reason = Some("unclean shutdown".to_owned());
            if let (Some(rp), IndexState::Loaded, IndexState::Loaded) =
                (recovery_point, &offset_state, &time_state)
            {
                resume = resume_point(&seg, rp)?;
            }
        }
        for (name, state) in [("offset index", &offset_state), ("time index", &time_state)] {
            if reason.is_none() {
                match state {
                    IndexState::Loaded => {}
                    IndexState::Missing => reason = Some(format!("{name} missing")),
                    IndexState::Corrupt(why) => reason = Some(format!("{name} corrupt: {why}")),
                }
            }
        }
        if reason.is_none() {
            if let Err(why) = seg.offset_index.sanity_check(seg.size, limit) {
                reason = Some(format!("offset index corrupt: {why}"));
            } else if let Err(why) = seg.time_index.sanity_check(limit) {
                reason = Some(format!("time index corrupt: {why}"));
            }
        }
        if reason.is_none() {
            match seg.load_tail() {
                Ok(()) => {}
                Err(e @ StorageError::Io { .. }) => return Err(e),
                Err(e) => reason = Some(e.to_string()),
            }
        }
        if let Some(reason) = reason {
            if clean_shutdown || !is_last {
                warn!(segment = %seg.log_path.display(), %reason, "rebuilding segment indexes");
            }
            // A segment below the active one was flushed when it rolled, so
            // the segments after it are intact: only its own corrupt bytes go
            // (rebuild_segment warns naming the offsets lost) and the log keeps
            // a gap, which reads skip as they skip compacted offsets.
            rebuild_segment_from(&mut seg, limit, config.index_interval_bytes, resume)?;
        }
        segments.push(seg);
    }
    finish(dir, config, segments)
}

fn finish(dir: &Path, config: &LogConfig, mut segments: Vec<Segment>) -> Result<Vec<Segment>> {
    match segments.last_mut() {
        Some(active) => active.load_roll_base()?,
        None => {
            segments.push(Segment::create(dir, 0, config)?);
            sync_dir(dir)?;
        }
    }
    Ok(segments)
}

/// Scans `seg` batch by batch, keeps the longest valid prefix (framing,
/// magic 2, CRC-32C, increasing offsets below `offset_limit`), truncates the
/// rest and rewrites both indexes. Returns the number of bytes cut.
///
/// With an `offset_limit` (a segment below the active one, flushed when the
/// next one rolled) a batch whose CRC fails but whose framing holds is damage
/// from outside, not a torn write: only that batch is dropped (the bytes after
/// it move up) and the scan goes on, so its intact neighbours stay. One WARN
/// names the offsets lost.
pub(crate) fn rebuild_segment(
    seg: &mut Segment,
    offset_limit: Option<i64>,
    index_interval: u64,
) -> Result<u64> {
    rebuild_segment_from(seg, offset_limit, index_interval, None)
}

/// Where a scan of the last segment may start after an unclean shutdown: the
/// state of the trusted batches before `pos`.
#[derive(Debug)]
pub(crate) struct Resume {
    pos: u64,
    next: i64,
    offset_entries: Vec<OffsetEntry>,
    time_entries: Vec<TimeEntry>,
    max_ts: Option<(i64, i64)>,
}

/// The resume point of `seg` for a recovery point `rp`: the last offset-index
/// entry whose batch ends below `rp` (its batch and all after it are checked
/// again); the entries before it, the time-index entries before that batch,
/// and a header scan from the previous entry give the state up to there, as
/// a clean open derives it. `None` (scan everything) when fewer than two
/// entries lie below `rp` or the indexes and headers disagree.
fn resume_point(seg: &Segment, rp: i64) -> Result<Option<Resume>> {
    let base = seg.base_offset;
    let entries = seg.offset_index.entries();
    let mut below = 0;
    for (i, e) in entries.iter().enumerate() {
        let sane = i == 0
            || (e.position > entries[i - 1].position
                && e.relative_offset > entries[i - 1].relative_offset);
        if !sane || base + i64::from(e.relative_offset) >= rp || u64::from(e.position) >= seg.size {
            break;
        }
        below += 1;
    }
    if below < 2 {
        return Ok(None);
    }
    let start = entries[below - 1];
    let previous = entries[below - 2];
    let mut time_entries: Vec<TimeEntry> = Vec::new();
    for t in seg.time_index.entries() {
        let increasing = time_entries
            .last()
            .is_none_or(|l| t.timestamp > l.timestamp && t.relative_offset > l.relative_offset);
        if !increasing || t.relative_offset >= start.relative_offset {
            break;
        }
        time_entries.push(*t);
    }
    let mut max_ts = time_entries
        .last()
        .map(|t| (t.timestamp, base + i64::from(t.relative_offset)));
    let mut scan = HeaderScan::new(&seg.log, &seg.log_path, u64::from(previous.position), u64::from(start.position));
    let mut next = base;
    loop {
        match scan.next_header() {
            Ok(Some((_, h))) => {
                if h.base_offset < next || h.last_offset_delta < 0 {
                    return Ok(None);
                }
                if h.max_timestamp > max_ts.map_or(-1, |t| t.0) {
                    max_ts = Some((h.max_timestamp, h.last_offset()));
                }
                next = h.next_offset();
            }
            Ok(None) => break,
            Err(e @ StorageError::Io { .. }) => return Err(e),
            Err(_) => return Ok(None),
        }
    }
    if next <= base + i64::from(previous.relative_offset) {
        return Ok(None);
    }
    Ok(Some(Resume {
        pos: u64::from(start.position),
        next,
        offset_entries: entries[..below - 1].to_vec(),
        time_entries,
        max_ts,
    }))
}

/// [`rebuild_segment`] starting at `resume` (the batches before it are
/// trusted) instead of the segment's first byte.
pub(crate) fn rebuild_segment_from(
    seg: &mut Segment,
    offset_limit: Option<i64>,
    index_interval: u64,
    resume: Option<Resume>,
) -> Result<u64> {
    let size = seg.size;
    let base = seg.base_offset;
    let mut window = FileWindow::new(&seg.log, &seg.log_path, size, SCAN_CHUNK);
    let mut pos = 0u64;
    let mut next = base;
    let mut offset_entries = Vec::new();
    let mut time_entries: Vec<TimeEntry> = Vec::new();
    let mut max_ts: Option<(i64, i64)> = None;
    let mut since_index = 0u64;
    if let Some(r) = resume {
        debug!(segment = %seg.log_path.display(), position = r.pos, offset = r.next, "recovering from the recovery point");
        (pos, next, offset_entries, time_entries, max_ts) =
            (r.pos, r.next, r.offset_entries, r.time_entries, r.max_ts);
        // The batch at the resume point had an index entry: it gets it again.
        since_index = index_interval.saturating_add(1);
    }
    let mut bad: Option<String> = None;
    // Corrupt batches dropped from a flushed segment: their byte ranges, the
    // bytes they add up to, and the offset ranges lost with them.
    let mut skipped: Vec<(u64, u64)> = Vec::new();
    let mut skipped_bytes = 0u64;
    let mut lost: Vec<(i64, i64)> = Vec::new();
    let mut lost_from: Option<i64> = None;
    while pos < size {
        let header = match window.get(pos, HEADER_SIZE).and_then(|b| Ok(BatchHeader::parse(b)?)) {
            Ok(h) => h,
            Err(e @ StorageError::Io { .. }) => return Err(e),
            Err(e) => {
                bad = Some(e.to_string());
                break;
            }
        };
        let total = header.total_size() as u64;
        if pos + total > size {
            bad = Some(format!("batch of {total} bytes at {pos} is torn"));
            break;
        }
        let last = header.last_offset();
        if header.base_offset < next
            || header.last_offset_delta < 0
            || last - base > i64::from(i32::MAX)
            || offset_limit.is_some_and(|l| last >= l)
        {
            bad = Some(format!(
                "batch at {pos} has out-of-order offsets {}..={last}",
                header.base_offset
            ));
            break;
        }
        let mut crc = 0u32;
        let mut at = pos + ATTRIBUTES_OFFSET as u64;
        let end = pos + total;
        while at < end {
            let n = usize::try_from(end - at)
                .unwrap_or(SCAN_CHUNK)
                .min(SCAN_CHUNK);
            crc = crc32c::crc32c_append(crc, window.get(at, n)?);
            at += n as u64;
        }
        if crc != header.crc {
            if offset_limit.is_some() {
                skipped.push((pos, total));
                skipped_bytes += total;
                lost_from.get_or_insert(next);
                pos = end;
                continue;
            }
            bad = Some(format!("CRC mismatch in batch at {pos}"));
            break;
        }
        if let Some(from) = lost_from.take() {
            lost.push((from, header.base_offset - 1));
        }
        // Index exactly as the append path does, at the position the batch
        // has once the skipped batches before it are gone.
        if header.max_timestamp > max_ts.map_or(-1, |t| t.0) {
            max_ts = Some((header.max_timestamp, last));
        }
        if since_index > index_interval {
            if let (Ok(rel), Ok(position)) = (u32::try_from(last - base), u32::try_from(pos - skipped_bytes)) {
                offset_entries.push(OffsetEntry {
                    relative_offset: rel,
                    position,
                });
                if let Some((ts, off)) = max_ts {
                    if ts > time_entries.last().map_or(-1, |e| e.timestamp) {
                        if let Ok(rel) = u32::try_from(off - base) {
                            time_entries.push(TimeEntry {
                                timestamp: ts,
                                relative_offset: rel,
                            });
                        }
                    }
                }
            }
            since_index = 0;
        }
        since_index += total;
        next = header.next_offset();
        pos = end;
    }
    drop(window);
    let cut = size - pos;
    if let Some(from) = lost_from {
        if bad.is_none() {
            lost.push((from, offset_limit.map_or(from, |l| l - 1)));
        }
    }
    if !skipped.is_empty() {
        let offsets: Vec<String> = lost.iter().map(|(a, b)| format!("{a}..={b}")).collect();
        warn!(
            segment = %seg.log_path.display(),
            batches = skipped.len(),
            lost_bytes = skipped_bytes,
            lost_offsets = %offsets.join(","),
            "dropping corrupt batches from a flushed segment; the batches around them are kept"
        );
        close_gaps(seg, &skipped, pos)?;
    }
    let pos = pos - skipped_bytes;
    if cut > 0 {
        let lost_offsets = match offset_limit {
            Some(limit) if limit > next => format!("{next}..={}", limit - 1),
            Some(_) => "none".to_owned(),
            None => format!("{next} and later"),
        };
        warn!(
            segment = %seg.log_path.display(),
            valid_bytes = pos,
            cut_bytes = cut,
            %lost_offsets,
            reason = bad.as_deref().unwrap_or(""),
            "truncating invalid tail of segment"
        );
        seg.log.set_len(pos).map_err(io_err(&seg.log_path))?;
        seg.mark_dirty();
    }
    seg.size = pos;
    seg.next_offset = next;
    seg.max_timestamp = max_ts;
    seg.bytes_since_last_index = since_index;
    seg.offset_index.rewrite(offset_entries)?;
    seg.time_index.rewrite(time_entries)?;
    Ok(cut + skipped_bytes)
}

/// Removes the byte ranges `skipped` (sorted, inside `[0, end)`) from the
/// segment's `.log` by moving the bytes after each one up, and cuts the file
/// to what remains. A crash half-way leaves a tail whose offsets repeat or
/// break off; the next recovery cuts it there, so nothing is read twice.
fn close_gaps(seg: &mut Segment, skipped: &[(u64, u64)], end: u64) -> Result<()> {
    use crate::segment::ReadAt;
    let path = seg.log_path.clone();
    let Some(&(mut dst, _)) = skipped.first() else { return Ok(()) };
    let mut buf = vec![0u8; SCAN_CHUNK];
    for (i, &(start, len)) in skipped.iter().enumerate() {
        let mut src = start + len;
        let until = skipped.get(i + 1).map_or(end, |&(next, _)| next);
        while src < until {
            let n = usize::try_from(until - src).unwrap_or(SCAN_CHUNK).min(SCAN_CHUNK);
            seg.log.read_exact_at(&mut buf[..n], src).map_err(io_err(&path))?;
            seg.log.write_all_at(&buf[..n], dst).map_err(io_err(&path))?;
            src += n as u64;
            dst += n as u64;
        }
    }
    seg.log.set_len(dst).map_err(io_err(&path))?;
    seg.mark_dirty();
    Ok(())
}
