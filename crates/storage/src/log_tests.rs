//! Behaviour tests of [`Log`].
#![allow(clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::io::Write;

use super::*;
use records::batch::{self, BatchHeader, BatchIter, TimestampType};
use crate::segment::{rename_segment_files, CLEANED_EXT, SWAP_EXT};
use records::test_util::{batch, batch_with, sized_batch};

fn small_config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn append(log: &mut Log, n: usize, ts: i64) -> AppendInfo {
    log.append(&mut batch(n, ts), 0, ts).unwrap()
}

fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    BatchIter::new(bytes).map(|b| b.unwrap().header).collect()
}

/// Every batch of the log, read one batch at a time from the start.
fn all_batches(log: &Log) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1).unwrap();
        let b = BatchIter::new(&bytes).next().unwrap().unwrap();
        offset = b.header.next_offset();
        out.push(b.bytes.to_vec());
    }
    out
}

/// An empty log in `dir` whose segments roll after `batches` batches of
/// `records` records each (as [`append`] writes them), and its config.
fn log_with_segments_of(dir: &std::path::Path, records: usize, batches: u64) -> (Log, LogConfig) {
    let cfg = LogConfig {
        segment_bytes: batch(records, 0).len() as u64 * batches,
        ..small_config()
    };
    (Log::open(dir, cfg.clone(), true).unwrap(), cfg)
}

fn log_file(log: &Log, base: i64) -> std::path::PathBuf {
    log.dir().join(format!("{base:020}.log"))
}

#[test]
fn append_assigns_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let a = append(&mut log, 3, 10);
    assert_eq!(
        (a.base_offset, a.last_offset, a.record_count, a.batch_count),
        (0, 2, 3, 1)
    );
    let b = append(&mut log, 2, 11);
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    // Several batches in one append get consecutive offsets too.
    let mut two = batch(4, 12);
    two.extend(batch(1, 13));
    let c = log.append(&mut two, 0, 13).unwrap();
    assert_eq!(
        (c.base_offset, c.last_offset, c.batch_count, c.record_count),
        (5, 9, 2, 5)
    );
    assert_eq!(c.max_timestamp, 13);
    assert_eq!(log.log_end_offset(), 10);
    let hs = headers(&log.read(0, usize::MAX).unwrap());
    let bases: Vec<i64> = hs.iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, vec![0, 3, 5, 9]);
}

#[test]
fn append_patches_the_callers_buffer_with_offset_and_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    append(&mut log, 2, 0);
    let mut b = batch(2, 0);
    log.append(&mut b, 7, 0).unwrap();
    let h = batch::validate(&b, usize::MAX).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (2, 7));
    assert_eq!(&log.read(2, 1).unwrap()[..], &b[..]);
}

#[test]
fn log_append_time_stamps_batches_and_keeps_crc_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    let info = log.append(&mut batch(2, 5), 0, 1_000).unwrap();
    assert_eq!(info.log_append_time, Some(1_000));
    assert_eq!(info.max_timestamp, 1_000);
    let bytes = log.read(0, usize::MAX).unwrap();
    let h = batch::validate(&bytes, usize::MAX).unwrap();
    assert_eq!(h.max_timestamp, 1_000);
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
}

#[test]
fn read_returns_whole_batches_from_the_containing_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    for _ in 0..50 {
        append(&mut log, 5, 0);
    }
    // Offset 17 is inside the batch 15..=19.
    let bytes = log.read(17, 3 * batch(5, 0).len() + 10).unwrap();
    let hs = headers(&bytes);
    assert_eq!(hs.len(), 3);
    assert_eq!(hs[0].base_offset, 15);
    assert_eq!(hs[2].last_offset(), 29);
    // Every offset reads back starting with its containing batch.
    for offset in 0..log.log_end_offset() {
        let h = headers(&log.read(offset, 1).unwrap())[0];
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "offset {offset}"
        );
    }
}

#[test]
fn read_returns_at_least_one_batch_larger_than_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    log.append(&mut sized_batch(10_000, 0), 0, 0).unwrap();
    append(&mut log, 1, 0);
    let bytes = log.read(0, 100).unwrap();
    assert_eq!(headers(&bytes).len(), 1);
    assert!(bytes.len() > 10_000);
    assert!(log.read(0, 0).unwrap().len() > 10_000);
}

#[test]
fn read_at_log_end_is_empty_and_outside_the_log_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    assert!(log.read(0, 100).unwrap().is_empty());
    append(&mut log, 3, 0);
    assert!(log.read(3, 100).unwrap().is_empty());
    assert!(matches!(
        log.read(4, 100),
        Err(StorageError::OffsetOutOfRange {
            offset: 4,
            log_start: 0,
            log_end: 3
        })
    ));
    assert!(matches!(
        log.read(-1, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn bad_crc_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    append(&mut log, 1, 0);
    let mut records = batch(2, 0);
    let mut bad = batch(2, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    records.extend(bad);
    let before = records.clone();
    assert!(matches!(
        log.append(&mut records, 0, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    assert_eq!(records, before, "the buffer is untouched");
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(
        std::fs::metadata(log_file(&log, 0)).unwrap().len(),
        batch(1, 0).len() as u64
    );
}

#[test]
fn malformed_appends_are_rejected_with_the_matching_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    let mut partial = batch(2, 0);
    partial.extend_from_slice(&batch(1, 0)[..20]);
    assert!(matches!(
        log.append(&mut partial, 0, 0),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut magic1 = batch(1, 0);
    magic1[16] = 1;
    assert!(matches!(
        log.append(&mut magic1, 0, 0),
        Err(StorageError::UnsupportedMagic(1))
    ));
    assert!(matches!(
        log.append(&mut [], 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    let mut empty_batch = batch_with(0, 0, &[], 0);
    assert!(matches!(
        log.append(&mut empty_batch, 0, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_in_bytes(), 0);
}

#[test]
fn oversized_batch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        max_message_bytes: 1000,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    let mut big = sized_batch(1000, 0);
    let size = big.len();
    assert!(matches!(
        log.append(&mut big, 0, 0),
        Err(StorageError::RecordTooLarge { size: s, max: 1000 }) if s == size
    ));
    assert_eq!(log.log_end_offset(), 0);
    log.append(&mut sized_batch(500, 0), 0, 0).unwrap();
}

#[test]
fn segments_roll_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(5, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    for _ in 0..10 {
        append(&mut log, 5, 0);
    }
    assert_eq!(log.segment_count(), 4);
    for base in [0, 15, 30, 45] {
        assert!(log_file(&log, base).exists(), "segment {base}");
        assert!(std::fs::metadata(log_file(&log, base)).unwrap().len() <= one * 3);
    }
    assert_eq!(all_batches(&log).len(), 10);
    // A read that starts in one segment continues in the next on the next call.
    let first = headers(&log.read(14, usize::MAX).unwrap());
    assert_eq!(first.last().unwrap().next_offset(), 15);
}

#[test]
fn segments_roll_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1_000,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    log.append(&mut batch(1, 0), 0, 10_000).unwrap();
    log.append(&mut batch(1, 0), 0, 10_900).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&mut batch(1, 0), 0, 11_001).unwrap();
    assert_eq!(log.segment_count(), 2);
    log.append(&mut batch(1, 0), 0, 11_500).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert!(log_file(&log, 2).exists());
}

#[test]
fn segments_roll_when_an_index_is_full() {
    let dir = tempfile::tempdir().unwrap();
    // Room for three offset-index entries (and two time-index entries); an
    // entry for every batch but the first, all with the same timestamp so
    // the time index holds one entry.
    let cfg = LogConfig {
        segment_index_bytes: 24,
        index_interval_bytes: 1,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    for _ in 0..5 {
        append(&mut log, 1, 0);
    }
    // Batches 1..=3 are indexed, then the index is full and batch 4 rolls.
    assert_eq!(log.segment_count(), 2);
    assert!(log_file(&log, 4).exists());
    assert_eq!(
        std::fs::metadata(dir.path().join(format!("{:020}.index", 0)))
            .unwrap()
            .len(),
        24
    );
}

#[test]
fn index_entries_are_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(5, 0).len() as u64;
    let cfg = LogConfig {
        index_interval_bytes: one * 4,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    for i in 0..100 {
        append(&mut log, 5, i);
    }
    let idx = std::fs::read(dir.path().join(format!("{:020}.index", 0))).unwrap();
    // An entry once more than 4 batches were written since the last: every 5th batch.
    assert_eq!(idx.len(), 8 * 19);
    let entries: Vec<(u32, u32)> = idx
        .chunks(8)
        .map(|c| {
            (
                u32::from_be_bytes(c[..4].try_into().unwrap()),
                u32::from_be_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect();
    // Entry k indexes batch 5(k+1): last offset 25(k+1)+4 at position 5(k+1)*one.
    for (k, (rel, pos)) in entries.iter().enumerate() {
        let b = 5 * (k as u32 + 1);
        assert_eq!((*rel, *pos), (5 * b + 4, b * one as u32));
    }
    let tidx = std::fs::read(dir.path().join(format!("{:020}.timeindex", 0))).unwrap();
    assert_eq!(tidx.len(), 12 * 19);
}

#[test]
fn reopen_after_clean_close_finds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, cfg) = log_with_segments_of(dir.path(), 3, 10);
    for i in 0..35 {
        append(&mut log, 3, 100 + i);
    }
    let before = all_batches(&log);
    let segments = log.segment_count();
    log.close().unwrap();

    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(log.segment_count(), segments);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 105));
    assert_eq!(all_batches(&log), before);
    let max = log.batch_with_max_timestamp().unwrap().unwrap();
    assert_eq!(BatchHeader::parse(&max).unwrap().max_timestamp, 134);
    assert_eq!(append(&mut log, 1, 0).base_offset, 105);
}

#[test]
fn recovery_truncates_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    for i in 0..20 {
        append(&mut log, 4, i);
    }
    let before = all_batches(&log);
    let path = log_file(&log, 0);
    let good_len = std::fs::metadata(&path).unwrap().len();
    drop(log); // no close: a crash
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&batch(4, 0)[..40]).unwrap();
    drop(f);

    let mut log = Log::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(log.log_end_offset(), 80);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(all_batches(&log), before);
    assert_eq!(append(&mut log, 1, 0).base_offset, 80);
}

#[test]
fn recovery_cuts_at_the_first_batch_with_a_bad_crc() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    for i in 0..10 {
        append(&mut log, 2, i);
    }
    let path = log_file(&log, 0);
    drop(log);
    let mut bytes = std::fs::read(&path).unwrap();
    let one = batch(2, 0).len();
    bytes[6 * one + 70] ^= 0xff; // inside batch 6's records
    bytes.extend_from_slice(b"garbage after a crash");
    std::fs::write(&path, &bytes).unwrap();

    let log = Log::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 6 * one as u64);
    assert_eq!(all_batches(&log).len(), 6);
}

#[test]
fn recovery_rebuilds_missing_index() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(3, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 10,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..25 {
        append(&mut log, 3, i);
    }
    let before = all_batches(&log);
    log.close().unwrap();
    let index = dir.path().join(format!("{:020}.index", 0));
    let timeindex = dir.path().join(format!("{:020}.timeindex", 30));
    let index_bytes = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    std::fs::remove_file(&timeindex).unwrap();

    let log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), index_bytes);
    assert!(timeindex.exists());
    assert_eq!(all_batches(&log), before);
    let h = BatchHeader::parse(&log.batch_at_or_after_timestamp(12).unwrap().unwrap()).unwrap();
    assert_eq!(h.base_offset, 36);
}

#[test]
fn recovery_rebuilds_corrupt_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config();
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..40 {
        append(&mut log, 3, i);
    }
    let before = all_batches(&log);
    log.close().unwrap();
    let index = dir.path().join(format!("{:020}.index", 0));
    let good = std::fs::read(&index).unwrap();
    assert!(good.len() >= 16);

    // Not a multiple of the entry size.
    std::fs::write(&index, &good[..good.len() - 3]).unwrap();
    let log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good);
    assert_eq!(all_batches(&log), before);
    log.close().unwrap();

    // Position past the end of the file.
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&index, &bad).unwrap();
    let log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good);
    log.close().unwrap();

    // Entries out of order.
    let mut bad = good.clone();
    bad.splice(0..0, good[8..16].iter().copied());
    bad.truncate(good.len());
    std::fs::write(&index, &bad).unwrap();
    let log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good);
    log.close().unwrap();

    // Well-formed but pointing into the middle of a batch.
    let mut bad = good.clone();
    let last = bad.len() - 8;
    let pos = u32::from_be_bytes(bad[last + 4..].try_into().unwrap());
    bad[last + 4..].copy_from_slice(&(pos + 5).to_be_bytes());
    std::fs::write(&index, &bad).unwrap();
    let log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(std::fs::read(&index).unwrap(), good);
    assert_eq!(all_batches(&log), before);
}

#[test]
fn unclean_reopen_of_a_multi_segment_log_keeps_every_segment() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 4,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..11 {
        append(&mut log, 2, i);
    }
    let before = all_batches(&log);
    drop(log);
    let mut log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!(log.segment_count(), 3);
    assert_eq!(all_batches(&log), before);
    assert_eq!(append(&mut log, 1, 0).base_offset, 22);
}

#[test]
fn truncate_to_removes_tail_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(5, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..10 {
        append(&mut log, 5, i);
    }
    assert_eq!(log.segment_count(), 4);
    let before = all_batches(&log);
    // 22 is inside batch 20..=24 of the second segment (15..30): it goes too.
    log.truncate_to(22).unwrap();
    assert_eq!(log.log_end_offset(), 20);
    assert_eq!(log.segment_count(), 2);
    assert!(!log_file(&log, 30).exists());
    assert!(!log_file(&log, 45).exists());
    assert_eq!(all_batches(&log), before[..4]);
    assert_eq!(
        BatchHeader::parse(&log.batch_with_max_timestamp().unwrap().unwrap())
            .unwrap()
            .base_offset,
        15
    );
    assert!(log.batch_at_or_after_timestamp(4).unwrap().is_none());
    // Appends continue from the new end and survive a reopen.
    assert_eq!(append(&mut log, 5, 0).base_offset, 20);
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!(log.log_end_offset(), 25);
    assert_eq!(all_batches(&log)[..4], before[..4]);

    // Truncating beyond the end changes nothing.
    let mut log = log;
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 25);
}

#[test]
fn truncate_to_a_segment_boundary_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(5, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 3,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    for _ in 0..10 {
        append(&mut log, 5, 0);
    }
    log.truncate_to(30).unwrap();
    assert_eq!((log.segment_count(), log.log_end_offset()), (2, 30));
    log.truncate_to(0).unwrap();
    assert_eq!(
        (
            log.segment_count(),
            log.log_start_offset(),
            log.log_end_offset()
        ),
        (1, 0, 0)
    );
    assert!(log.read(0, 100).unwrap().is_empty());
    assert_eq!(log.size_in_bytes(), 0);
    assert_eq!(append(&mut log, 1, 0).base_offset, 0);
}

#[test]
fn timestamp_lookup_finds_first_batch_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 20,
        index_interval_bytes: one * 2,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    // Timestamps 0, 10, 20, ... with a dip at batch 30 (ts 5).
    for i in 0..60i64 {
        let ts = if i == 30 { 5 } else { i * 10 };
        append(&mut log, 2, ts);
    }
    assert_eq!(log.segment_count(), 3);
    let at = |log: &Log, ts| {
        log.batch_at_or_after_timestamp(ts)
            .unwrap()
            .map(|b| BatchHeader::parse(&b).unwrap().base_offset)
    };
    for ts in [0, 1, 10, 95, 200, 205, 299, 300, 310, 585, 590] {
        let expect = (0..60i64)
            .find(|i| (if *i == 30 { 5 } else { i * 10 }) >= ts)
            .map(|i| i * 2);
        assert_eq!(at(&log, ts), expect, "ts {ts}");
    }
    assert_eq!(at(&log, 591), None);
    assert_eq!(at(&log, -5), Some(0));
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(at(&log, 305), Some(62));
    assert_eq!(at(&log, 591), None);
}

#[test]
fn max_timestamp_batch_is_the_first_with_the_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    assert!(log.batch_with_max_timestamp().unwrap().is_none());
    for ts in [5, 50, 7, 50, 3] {
        append(&mut log, 1, ts);
    }
    let find =
        |log: &Log| BatchHeader::parse(&log.batch_with_max_timestamp().unwrap().unwrap()).unwrap();
    assert_eq!((find(&log).base_offset, find(&log).max_timestamp), (1, 50));
    drop(log);
    let log = Log::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(find(&log).base_offset, 1);
}

#[test]
fn flush_policies_do_not_lose_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush_interval_messages: 3,
        flush_interval_ms: Some(100),
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    append(&mut log, 2, 0);
    assert_eq!(log.unflushed_messages, 2);
    append(&mut log, 2, 0);
    assert_eq!(log.unflushed_messages, 0);
    log.append(&mut batch(1, 0), 0, 1_000).unwrap();
    log.maybe_flush_by_time(1_050).unwrap();
    assert_eq!(log.unflushed_messages, 1);
    log.maybe_flush_by_time(1_100).unwrap();
    assert_eq!(log.unflushed_messages, 0);
    drop(log);
    assert_eq!(
        Log::open(dir.path(), cfg, false).unwrap().log_end_offset(),
        5
    );
}

#[test]
fn set_config_applies_to_later_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), small_config(), true).unwrap();
    append(&mut log, 1, 0);
    log.set_config(LogConfig {
        max_message_bytes: 10,
        ..small_config()
    });
    assert_eq!(log.config().max_message_bytes, 10);
    assert!(matches!(
        log.append(&mut batch(1, 0), 0, 0),
        Err(StorageError::RecordTooLarge { .. })
    ));
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = Log::open(&path, small_config(), true).unwrap();
    append(&mut log, 1, 0);
    assert!(log_file(&log, 0).exists());
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn open_ignores_foreign_files_and_removes_orphan_indexes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leader-epoch-checkpoint"), b"0\n0\n").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.index", 500)), [0u8; 8]).unwrap();
    let log = Log::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert!(dir.path().join("leader-epoch-checkpoint").exists());
    assert!(!dir.path().join(format!("{:020}.index", 500)).exists());
}

#[test]
fn replicated_appends_keep_leader_offsets_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = Log::open(leader_dir.path(), small_config(), true).unwrap();
    for i in 0..5 {
        leader.append(&mut batch(3, i), 4, i).unwrap();
    }
    let fetched = leader.read(0, usize::MAX).unwrap();
    let mut follower = Log::open(dir.path(), small_config(), true).unwrap();
    let info = follower.append_replicated(&fetched, 0).unwrap();
    assert_eq!(
        (
            info.base_offset,
            info.last_offset,
            info.batch_count,
            info.record_count
        ),
        (0, 14, 5, 15)
    );
    assert_eq!(follower.read(0, usize::MAX).unwrap(), fetched);
    assert_eq!(
        headers(&follower.read(3, 1).unwrap())[0].partition_leader_epoch,
        4
    );
    // Re-appending what the follower already has is refused, nothing written.
    assert!(matches!(
        follower.append_replicated(&fetched, 0),
        Err(StorageError::InvalidRecord(_))
    ));
    assert_eq!(follower.log_end_offset(), 15);
    let mut corrupt = fetched.to_vec();
    corrupt[100] ^= 1;
    assert!(follower.append_replicated(&corrupt, 0).is_err());
}

#[test]
fn replicated_append_into_an_empty_log_starts_at_the_leaders_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut follower = Log::open(dir.path(), small_config(), true).unwrap();
    let mut b = batch(2, 0);
    batch::set_base_offset(&mut b, 1_000).unwrap();
    follower.append_replicated(&b, 0).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (1_000, 1_002)
    );
    assert!(log_file(&follower, 1_000).exists());
    assert!(!log_file(&follower, 0).exists());
    drop(follower);
    let follower = Log::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (1_000, 1_002)
    );
}

#[test]
fn retention_deletes_old_segments_below_the_upper_bound() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(5, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: one * 2,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    for i in 0..8 {
        append(&mut log, 5, i * 100); // segments hold ts {0,100}, {200,300}, ...
    }
    assert_eq!(log.segment_count(), 4);
    // By time: segments whose newest record is older than 250 ms at t=600.
    assert_eq!(
        log.delete_retained_segments(Some(250), None, i64::MAX, 600)
            .unwrap(),
        2
    );
    assert_eq!((log.log_start_offset(), log.segment_count()), (20, 2));
    assert!(!log_file(&log, 0).exists());
    assert!(matches!(
        log.read(0, 1),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // The upper bound (high watermark) protects unreplicated segments.
    assert_eq!(
        log.delete_retained_segments(None, Some(0), 25, 600)
            .unwrap(),
        0
    );
    // By size: keep at least `retention_bytes`.
    assert_eq!(
        log.delete_retained_segments(None, Some(one * 2), i64::MAX, 600)
            .unwrap(),
        1
    );
    assert_eq!(log.log_start_offset(), 30);
    // Everything can go; an empty segment at the log end remains.
    assert_eq!(
        log.delete_retained_segments(None, Some(0), i64::MAX, 600)
            .unwrap(),
        1
    );
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (40, 40, 1)
    );
    assert_eq!(append(&mut log, 1, 0).base_offset, 40);
}

#[test]
fn recovery_of_a_damaged_older_segment_keeps_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(2, 0).len();
    let cfg = LogConfig {
        segment_bytes: one as u64 * 4,
        ..small_config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..12 {
        append(&mut log, 2, i);
    }
    assert_eq!(log.segment_count(), 3);
    let before = all_batches(&log);
    log.close().unwrap();
    // Damage the third batch of the middle segment (offsets 8..16) and lose its index.
    let middle = dir.path().join(format!("{:020}.log", 8));
    let mut bytes = std::fs::read(&middle).unwrap();
    bytes[2 * one + 65] ^= 0xff;
    std::fs::write(&middle, &bytes).unwrap();
    std::fs::remove_file(dir.path().join(format!("{:020}.index", 8))).unwrap();

    // Clean shutdown or not: only offsets 12..=13 (the bad batch) are lost;
    // the batch after it and the last segment are intact.
    for clean in [true, false] {
        let log = Log::open(dir.path(), cfg.clone(), clean).unwrap();
        assert_eq!((log.segment_count(), log.log_end_offset()), (3, 24));
        let mut expected = before[..6].to_vec();
        expected.extend_from_slice(&before[7..]);
        assert_eq!(all_batches(&log), expected);
        // A read inside the gap answers the next batch, as after compaction.
        assert_eq!(headers(&log.read(12, 1 << 20).unwrap())[0].base_offset, 14);
        assert_eq!(headers(&log.read(15, 1 << 20).unwrap())[0].base_offset, 14);
        log.close().unwrap();
    }
    assert_eq!(std::fs::metadata(&middle).unwrap().len(), 3 * one as u64);
    let mut log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(append(&mut log, 1, 0).base_offset, 24);
}

// ---- Segment replacement (the log cleaner's swap) ----

/// Two-record batches, three to a segment, every batch after a segment's
/// first indexed.
fn cleaner_config() -> LogConfig {
    LogConfig {
        segment_bytes: batch(2, 0).len() as u64 * 3,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

/// A log with segments 0 (offsets 0..6) and 6 (6..12), both inactive, and
/// the active segment 12 (12..16). Batch `i` holds offsets `2i, 2i+1` and has
/// timestamp `100 * i`.
fn cleanable_log(dir: &std::path::Path) -> Log {
    let mut log = Log::open(dir, cleaner_config(), true).unwrap();
    for i in 0..8 {
        append(&mut log, 2, 100 * i);
    }
    assert_eq!(log.segment_count(), 3);
    log
}

/// The batches of segments 0 and 6 whose base offsets are in `keep`.
fn kept_batches(log: &Log, keep: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    for base in [0, 6] {
        let seg = log.read_segment(base).unwrap();
        for b in BatchIter::new(&seg) {
            let b = b.unwrap();
            if keep.contains(&b.header.base_offset) {
                out.extend_from_slice(b.bytes);
            }
        }
    }
    out
}

/// Base offset of the batch a fetch at `offset` starts with.
fn read_base(log: &Log, offset: i64) -> Option<i64> {
    let bytes = log.read(offset, 1).unwrap();
    BatchIter::new(&bytes)
        .next()
        .map(|b| b.unwrap().header.base_offset)
}

fn at_timestamp(log: &Log, ts: i64) -> Option<i64> {
    log.batch_at_or_after_timestamp(ts)
        .unwrap()
        .map(|b| BatchHeader::parse(&b).unwrap().base_offset)
}

/// The sorted names of the segment files in `dir` (the replication files,
/// snapshots and the leader-epoch checkpoint, have their own tests).
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".snapshot") && n != "leader-epoch-checkpoint")
        .collect();
    names.sort();
    names
}

/// The files of [`cleanable_log`] once segments 0 and 6 became one: only
/// segments 0 and 12, no `.cleaned` or `.swap` file.
fn merged_files() -> Vec<String> {
    [0, 12]
        .iter()
        .flat_map(|b| ["index", "log", "timeindex"].map(|s| format!("{b:020}.{s}")))
        .collect()
}

/// What a fetch at each offset of the log starts with, and what each batch
/// timestamp finds.
fn read_view(log: &Log) -> Vec<(Option<i64>, Option<i64>)> {
    (log.log_start_offset()..log.log_end_offset())
        .map(|o| (read_base(log, o), at_timestamp(log, o * 50)))
        .collect()
}

/// `b` (two records) rewritten as a compactor leaves it: one record, the
/// original last offset kept in `lastOffsetDelta`.
fn compacted_to_one_record(b: &[u8]) -> Vec<u8> {
    let h = BatchHeader::parse(b).unwrap();
    let mut one = batch_with(1, h.base_timestamp, &[b"kept"], 0);
    one[35..43].copy_from_slice(&h.max_timestamp.to_be_bytes());
    one[23..27].copy_from_slice(&h.last_offset_delta.to_be_bytes());
    let crc = crc32c::crc32c(&one[21..]);
    one[17..21].copy_from_slice(&crc.to_be_bytes());
    batch::set_base_offset(&mut one, h.base_offset).unwrap();
    batch::set_partition_leader_epoch(&mut one, h.partition_leader_epoch).unwrap();
    one
}

#[test]
fn inactive_segments_and_read_segment_describe_every_segment_but_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = cleanable_log(dir.path());
    let one = batch(2, 0).len() as u64;
    let infos = log.inactive_segments().unwrap();
    let described: Vec<(i64, i64, u64, i64)> = infos
        .iter()
        .map(|s| {
            (
                s.base_offset,
                s.next_offset,
                s.size_bytes,
                s.largest_timestamp,
            )
        })
        .collect();
    assert_eq!(described, vec![(0, 6, 3 * one, 200), (6, 12, 3 * one, 500)]);
    let seg = log.read_segment(6).unwrap();
    let bases: Vec<i64> = headers(&seg).iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, vec![6, 8, 10]);
    assert!(matches!(
        log.read_segment(3),
        Err(StorageError::NoSuchSegment { base_offset: 3, .. })
    ));
}

#[test]
fn replacing_two_segments_by_a_subset_keeps_offsets_readable_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = cleanable_log(dir.path());
    let active_before = std::fs::read(log_file(&log, 12)).unwrap();
    let mut kept = kept_batches(&log, &[2, 8]);
    let last = compacted_to_one_record(&log.read(10, 1).unwrap());
    kept.extend_from_slice(&last);

    log.replace_segments(0, 6, &kept).unwrap();

    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 16));
    assert_eq!(log.segment_count(), 2);
    let infos = log.inactive_segments().unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(
        (
            infos[0].base_offset,
            infos[0].next_offset,
            infos[0].size_bytes
        ),
        (0, 12, kept.len() as u64)
    );
    assert_eq!(&log.read_segment(0).unwrap()[..], &kept[..]);
    assert!(!log_file(&log, 6).exists());
    assert_eq!(file_names(dir.path()), merged_files());
    // A fetch of a removed offset starts at the next kept batch.
    let expect = [2, 2, 2, 2, 8, 8, 8, 8, 8, 8, 10, 10, 12, 12, 14, 14];
    for (offset, want) in expect.iter().enumerate() {
        assert_eq!(
            read_base(&log, offset as i64),
            Some(*want),
            "offset {offset}"
        );
    }
    // The compacted batch keeps its last offset.
    assert_eq!(headers(&log.read(11, 1).unwrap())[0].last_offset(), 11);
    // The new segment is indexed as appends are: every batch but the first.
    let seg = &log.segments[0];
    let positions: Vec<(u32, u32)> = seg
        .offset_index
        .entries()
        .iter()
        .map(|e| (e.relative_offset, e.position))
        .collect();
    let b2 = batch(2, 0).len() as u32;
    assert_eq!(positions, vec![(9, b2), (11, 2 * b2)]);
    let times: Vec<(i64, u32)> = seg
        .time_index
        .entries()
        .iter()
        .map(|e| (e.timestamp, e.relative_offset))
        .collect();
    assert_eq!(times, vec![(400, 9), (500, 11)]);
    // Timestamp lookups skip the removed batches (timestamps 0, 200, 300).
    for (ts, want) in [(0, 2), (100, 2), (101, 8), (300, 8), (401, 10), (501, 12)] {
        assert_eq!(at_timestamp(&log, ts), Some(want), "ts {ts}");
    }
    // The active segment is untouched and appends continue.
    assert_eq!(std::fs::read(log_file(&log, 12)).unwrap(), active_before);
    assert_eq!(append(&mut log, 2, 800).base_offset, 16);
    assert_eq!(read_base(&log, 16), Some(16));
}

#[test]
fn replacement_with_bad_batches_or_ranges_errors_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = cleanable_log(dir.path());
    let files = file_names(dir.path());
    let view = read_view(&log);
    let good = kept_batches(&log, &[2, 8]);

    let mut bad_crc = good.clone();
    let end = bad_crc.len() - 1;
    bad_crc[end] ^= 0xff;
    let unordered = [kept_batches(&log, &[8]), kept_batches(&log, &[2])].concat();
    let repeated = [kept_batches(&log, &[2]), kept_batches(&log, &[2])].concat();
    let mut below_range = kept_batches(&log, &[2]);
    batch::set_base_offset(&mut below_range, -2).unwrap();
    let beyond_range = [good.clone(), log.read(12, 1).unwrap().to_vec()].concat();
    let torn = good[..good.len() - 3].to_vec();
    let mut forged_count = kept_batches(&log, &[2]);
    forged_count[57..61].copy_from_slice(&3i32.to_be_bytes());
    let crc = crc32c::crc32c(&forged_count[21..]);
    forged_count[17..21].copy_from_slice(&crc.to_be_bytes());

    let attempts: Vec<(&str, i64, i64, Vec<u8>)> = vec![
        ("bad CRC", 0, 6, bad_crc),
        ("unordered", 0, 6, unordered),
        ("repeated offsets", 0, 6, repeated),
        ("offset below the range", 0, 6, below_range),
        ("offset beyond the range", 0, 6, beyond_range),
        (
            "batch 8 outside a replacement of segment 0 alone",
            0,
            0,
            good.clone(),
        ),
        ("torn batch", 0, 6, torn),
        ("more records than offsets", 0, 6, forged_count),
        ("active segment included", 6, 12, kept_batches(&log, &[8])),
        ("no segment at 3", 3, 6, good.clone()),
        ("reversed range", 6, 0, good.clone()),
    ];
    for (what, first, last, bytes) in attempts {
        let err = log.replace_segments(first, last, &bytes).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidReplacement { .. }),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{what}: {err}"
        );
        assert_eq!(file_names(dir.path()), files, "{what}");
        assert_eq!(log.segment_count(), 3, "{what}");
        assert_eq!(read_view(&log), view, "{what}");
    }
    // The same log still accepts a good replacement.
    log.replace_segments(0, 6, &good).unwrap();
    assert_eq!(read_base(&log, 0), Some(2));
}

#[test]
fn replacing_with_no_batches_leaves_an_empty_segment_that_keeps_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cleaner_config();
    let mut log = cleanable_log(dir.path());
    log.replace_segments(0, 6, &[]).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 16));
    let infos = log.inactive_segments().unwrap();
    assert_eq!(
        infos
            .iter()
            .map(|s| (s.base_offset, s.next_offset, s.size_bytes))
            .collect::<Vec<_>>(),
        vec![(0, 0, 0)]
    );
    assert!(log.read_segment(0).unwrap().is_empty());
    for offset in 0..12 {
        assert_eq!(read_base(&log, offset), Some(12), "offset {offset}");
    }
    assert_eq!(at_timestamp(&log, 0), Some(12));
    drop(log);
    let mut log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 16));
    assert_eq!(read_base(&log, 3), Some(12));

    // The empty segment neither blocks retention nor triggers it alone.
    assert_eq!(
        log.delete_retained_segments(None, Some(1 << 20), i64::MAX, 0)
            .unwrap(),
        0
    );
    assert_eq!(
        log.delete_retained_segments(Some(1), None, 11, i64::MAX)
            .unwrap(),
        0
    );
    assert_eq!(
        log.delete_retained_segments(Some(1), None, 12, i64::MAX)
            .unwrap(),
        1
    );
    assert_eq!((log.log_start_offset(), log.segment_count()), (12, 1));
}

#[test]
fn reopening_after_a_replacement_gives_the_same_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cleaner_config();
    let mut log = cleanable_log(dir.path());
    let kept = kept_batches(&log, &[0, 6, 10]);
    log.replace_segments(0, 6, &kept).unwrap();
    let view = read_view(&log);
    let batches = all_batches(&log);
    assert_eq!(batches.len(), 5);
    log.close().unwrap();

    let log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    assert_eq!(
        (read_view(&log), all_batches(&log)),
        (view.clone(), batches.clone())
    );
    drop(log);
    // Unclean: the indexes are gone too, so every segment is rebuilt.
    for base in [0, 12] {
        for suffix in ["index", "timeindex"] {
            std::fs::remove_file(dir.path().join(format!("{base:020}.{suffix}"))).unwrap();
        }
    }
    let log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!((read_view(&log), all_batches(&log)), (view, batches));
    assert_eq!(log.segments[0].offset_index.entries().len(), 2);
}

#[test]
fn a_leftover_cleaned_segment_is_discarded_on_open() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = cleanable_log(dir.path());
        let view = read_view(&log);
        let files = file_names(dir.path());
        let kept = kept_batches(&log, &[2]);
        log.close().unwrap();
        // Crash while the cleaned segment was being written.
        for suffix in ["log", "index"] {
            let p = dir.path().join(format!("{:020}.{suffix}.cleaned", 0));
            std::fs::write(p, &kept).unwrap();
        }
        let log = Log::open(dir.path(), cleaner_config(), clean).unwrap();
        assert_eq!(file_names(dir.path()), files, "clean shutdown {clean}");
        assert_eq!(read_view(&log), view, "clean shutdown {clean}");
    }
}

#[test]
fn a_leftover_swap_is_completed_on_open_whatever_step_the_crash_interrupted() {
    // Steps of the swap after the `.swap` rename a crash can interrupt.
    let crash_points = [
        "old segments all present",
        "old segment 0 deleted",
        "old segments deleted",
        "indexes renamed to their final names",
    ];
    for point in crash_points {
        for clean in [true, false] {
            let what = format!("{point}, clean shutdown {clean}");
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            let cfg = cleaner_config();
            let log = cleanable_log(d);
            let kept = kept_batches(&log, &[2, 8]);
            let expected: Vec<Vec<u8>> = BatchIter::new(&kept)
                .map(|b| b.unwrap().bytes.to_vec())
                .chain(all_batches(&log).into_iter().skip(6))
                .collect();
            let metas = check_replacement(&kept, 0, 12).unwrap();
            log.close().unwrap();
            Segment::write_cleaned(d, 0, &cfg, &kept, &metas, std::time::SystemTime::now())
                .unwrap();
            rename_segment_files(d, 0, Some(CLEANED_EXT), Some(SWAP_EXT)).unwrap();
            let remove = |base: i64, suffix: &str| {
                std::fs::remove_file(d.join(format!("{base:020}.{suffix}"))).unwrap()
            };
            if point != crash_points[0] {
                remove(0, "log");
            }
            if point == crash_points[2] || point == crash_points[3] {
                for (base, suffix) in [
                    (0, "index"),
                    (0, "timeindex"),
                    (6, "log"),
                    (6, "index"),
                    (6, "timeindex"),
                ] {
                    remove(base, suffix);
                }
            }
            if point == crash_points[3] {
                for suffix in ["index", "timeindex"] {
                    std::fs::rename(
                        d.join(format!("{:020}.{suffix}.swap", 0)),
                        d.join(format!("{:020}.{suffix}", 0)),
                    )
                    .unwrap();
                }
            }

            let log = Log::open(d, cfg, clean).unwrap();
            assert_eq!(file_names(d), merged_files(), "{what}");
            assert_eq!(
                (log.log_start_offset(), log.log_end_offset()),
                (0, 16),
                "{what}"
            );
            assert_eq!(all_batches(&log), expected, "{what}");
            assert_eq!(read_base(&log, 5), Some(8), "{what}");
            assert_eq!(at_timestamp(&log, 101), Some(8), "{what}");
        }
    }
}

#[test]
fn a_damaged_leftover_swap_is_discarded_while_the_old_segments_remain() {
    let dir = tempfile::tempdir().unwrap();
    let log = cleanable_log(dir.path());
    let view = read_view(&log);
    let files = file_names(dir.path());
    let kept = kept_batches(&log, &[2, 8]);
    log.close().unwrap();
    let swap = dir.path().join(format!("{:020}.log.swap", 0));
    std::fs::write(&swap, &kept[..kept.len() - 10]).unwrap();
    let log = Log::open(dir.path(), cleaner_config(), true).unwrap();
    assert_eq!(file_names(dir.path()), files);
    assert_eq!(read_view(&log), view);
}

#[test]
fn a_swap_index_without_its_swap_log_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = cleanable_log(dir.path());
    let view = read_view(&log);
    let files = file_names(dir.path());
    log.close().unwrap();
    std::fs::write(dir.path().join(format!("{:020}.index.swap", 0)), [0u8; 8]).unwrap();
    let log = Log::open(dir.path(), cleaner_config(), false).unwrap();
    assert_eq!(file_names(dir.path()), files);
    assert_eq!(read_view(&log), view);
}

#[test]
fn advancing_the_log_start_deletes_whole_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, cfg) = log_with_segments_of(dir.path(), 5, 3);
    for _ in 0..10 {
        append(&mut log, 5, 0);
    }
    // Segments start at 0, 15, 30, 45 (the active one).
    assert_eq!(log.advance_log_start_offset(17).unwrap(), 1, "only segment 0 lies wholly below 17");
    assert_eq!(log.log_start_offset(), 17);
    assert!(!log_file(&log, 0).exists());
    assert!(log_file(&log, 15).exists());
    assert!(matches!(log.read(16, 1), Err(StorageError::OffsetOutOfRange { log_start: 17, .. })));
    // Reading at the start returns the batch that holds it, as Kafka does.
    assert_eq!(headers(&log.read(17, 1).unwrap())[0].base_offset, 15);
    // Backwards is a no-op; past the log end is out of range.
    assert_eq!(log.advance_log_start_offset(3).unwrap(), 0);
    assert_eq!(log.log_start_offset(), 17);
    assert!(matches!(log.advance_log_start_offset(51), Err(StorageError::OffsetOutOfRange { .. })));
    // Up to the log end: the active segment stays, nothing is readable.
    assert_eq!(log.advance_log_start_offset(50).unwrap(), 2);
    assert_eq!(log.segment_count(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    assert!(log.read(50, 1).unwrap().is_empty());
    log.close().unwrap();
    // The offset itself is not stored in the log: reopening falls back to the
    // oldest segment's base (the broker re-applies its checkpoint).
    let log = Log::open(dir.path(), cfg, true).unwrap();
    assert_eq!(log.log_start_offset(), 45);
}

/// Counts this process's open descriptors on files under `dir`.
fn open_fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn only_the_active_segment_keeps_files_open_and_old_segments_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 200,
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone(), true).unwrap();
    for i in 0..2 * (crate::file_cache::CAPACITY as i64 + 200) {
        append(&mut log, 1, 1_000 + i);
    }
    let segments = log.segment_count();
    assert!(segments > crate::file_cache::CAPACITY + 100, "{segments} segments");
    assert_eq!(log.segments_with_open_files(), 1);
    // Every record of every segment reads back, through the bounded cache.
    let end = log.log_end_offset();
    assert_eq!(all_batches(&log).len() as i64, end);
    assert!(crate::file_cache::open_handles() <= crate::file_cache::CAPACITY);
    // Other tests share the cache, but none uses this directory: its open
    // files are this log's cached handles plus the active segment's.
    assert!(open_fds_under(dir.path()) <= crate::file_cache::CAPACITY + 3);
    assert_eq!(
        at_timestamp(&log, 1_010),
        Some(10),
        "time lookups in old segments"
    );

    // Retention and a reopen (after a crash, so recovery scans) work the same.
    log.delete_retained_segments(None, Some(200 * 100), end, 2_000)
        .unwrap();
    let start = log.log_start_offset();
    assert!(start > 0);
    drop(log);
    let log = Log::open(dir.path(), config, false).unwrap();
    assert_eq!(log.segments_with_open_files(), 0, "nothing is open until a write");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (start, end));
    assert_eq!(all_batches(&log).len() as i64, end - start);
    drop(log);
    assert_eq!(open_fds_under(dir.path()), 0, "closing the log closes its handles");
}

#[test]
fn append_may_block_tells_when_an_append_would_fsync_or_roll() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(2, 1_000);
    let config = LogConfig { segment_bytes: 2 * b.len() as u64, ..LogConfig::default() };
    let mut log = Log::open(dir.path(), config, true).unwrap();
    assert!(!log.append_may_block(b.len(), 2, 1_000), "an empty segment takes anything without rolling");
    log.append(&mut b.clone(), 0, 1_000).unwrap();
    assert!(!log.append_may_block(b.len(), 2, 1_000), "fits segment.bytes exactly");
    log.append(&mut b.clone(), 0, 1_000).unwrap();
    assert!(log.append_may_block(b.len(), 2, 1_000), "would exceed segment.bytes: a roll");
    let before = log.segment_count();
    log.append(&mut b.clone(), 0, 1_000).unwrap();
    assert_eq!(log.segment_count(), before + 1, "the hint was right");
    // Two records unflushed since the roll.
    let mut config = log.config().clone();
    config.flush_interval_messages = 5;
    log.set_config(config);
    assert!(!log.append_may_block(b.len(), 2, 1_000));
    assert!(log.append_may_block(b.len(), 3, 1_000), "would reach flush.messages: an fsync");
}

#[test]
fn appends_go_on_while_a_replacement_is_staged_and_survive_its_swap() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = cleanable_log(dir.path());
    let kept = kept_batches(&log, &[2, 8]);
    let target = log.replacement_target(0, 6).unwrap();
    // The `.cleaned` files are written and fsynced without the log.
    let staged = target.stage(&kept).unwrap();
    assert_eq!(std::fs::read(staged.log_path()).unwrap(), kept);
    let appended = append(&mut log, 2, 800);
    assert_eq!(appended.base_offset, 16);
    assert!(matches!(log.swap_in(staged).unwrap(), SwapOutcome::Swapped));
    let bases: Vec<i64> = all_batches(&log).iter().map(|b| BatchHeader::parse(b).unwrap().base_offset).collect();
    assert_eq!(bases, vec![2, 8, 12, 14, 16]);
    assert!(!file_names(dir.path()).iter().any(|n| n.ends_with(".cleaned") || n.ends_with(".swap")));
}

#[test]
fn a_staged_replacement_whose_run_changed_is_not_swapped_and_its_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = cleanable_log(dir.path());
    let files_before = file_names(dir.path());
    let kept = kept_batches(&log, &[2, 8]);
    let staged = log.replacement_target(0, 6).unwrap().stage(&kept).unwrap();
    // A truncation into segment 6 while the replacement was written.
    log.truncate_to(8).unwrap();
    let before = all_batches(&log);
    let SwapOutcome::Changed(staged) = log.swap_in(staged).unwrap() else { panic!("swapped a changed run") };
    staged.discard().unwrap();
    assert_eq!(all_batches(&log), before, "nothing changed");
    let names = file_names(dir.path());
    assert!(!names.iter().any(|n| n.ends_with(".cleaned") || n.ends_with(".swap")), "{names:?}");
    assert!(names.iter().all(|n| files_before.contains(n)), "{names:?}");
}
