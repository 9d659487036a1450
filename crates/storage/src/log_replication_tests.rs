//! Behaviour tests of the replication files of [`Log`]: the leader-epoch
//! cache, producer-state snapshots, and how both follow truncation, log start
//! moves and restarts.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use super::*;
use crate::leader_epoch::LEADER_EPOCH_CHECKPOINT;
use records::test_util::batch;

fn config_rolling_after(batches: u64) -> LogConfig {
    LogConfig {
        segment_bytes: batch(3, 0).len() as u64 * batches,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A batch of `n` records of producer `pid` with `epoch`, first sequence `seq`.
fn producer_batch(n: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut b = batch(n, 0);
    b[43..51].copy_from_slice(&pid.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn produce(log: &mut Log, n: usize, pid: i64, seq: i32) -> Result<AppendInfo> {
    log.append(&mut producer_batch(n, pid, 0, seq), 0, 0)
}

fn snapshots(dir: &std::path::Path) -> Vec<i64> {
    let mut found: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".snapshot").map(|s| s.parse().unwrap())
        })
        .collect();
    found.sort_unstable();
    found
}

fn epochs(log: &Log) -> Vec<(i32, i64)> {
    log.leader_epochs().iter().map(|e| (e.epoch, e.start_offset)).collect()
}

fn segment_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log") || n.ends_with("index"))
        .collect();
    names.sort();
    names
}

/// What `f` logged at WARN.
fn warnings_during<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    (out, text.lines().map(str::to_owned).collect())
}

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_not_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config_rolling_after(100), true).unwrap();
    let first = produce(&mut log, 3, 7, 0).unwrap();
    produce(&mut log, 2, 7, 3).unwrap();
    let retry = produce(&mut log, 2, 7, 3).unwrap();
    assert!(retry.duplicate && !first.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset, retry.record_count), (3, 4, 0));
    assert_eq!(produce(&mut log, 3, 7, 0).unwrap().base_offset, 0, "an older in-flight batch");
    assert_eq!(log.log_end_offset(), 5);
    let gap = produce(&mut log, 1, 7, 9).unwrap_err();
    assert!(matches!(gap, StorageError::OutOfOrderSequence(_)), "{gap}");
    log.append(&mut producer_batch(1, 7, 1, 0), 0, 0).unwrap();
    let fenced = produce(&mut log, 1, 7, 5).unwrap_err();
    assert!(matches!(fenced, StorageError::InvalidProducerEpoch(_)), "{fenced}");
    assert_eq!(log.log_end_offset(), 6, "refused batches append nothing");
    // Two batches of one producer in one append are checked in order.
    let mut two = producer_batch(1, 8, 0, 0);
    two.extend(producer_batch(1, 8, 0, 2));
    assert!(matches!(log.append(&mut two, 0, 0), Err(StorageError::OutOfOrderSequence(_))));
    assert_eq!(log.log_end_offset(), 6);
}

#[test]
fn producer_state_survives_a_clean_close_in_a_kafka_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config_rolling_after(100), true).unwrap();
    produce(&mut log, 3, 7, 0).unwrap();
    produce(&mut log, 2, 9, 0).unwrap();
    log.close().unwrap();
    assert_eq!(snapshots(dir.path()), vec![5]);
    let bytes = std::fs::read(dir.path().join("00000000000000000005.snapshot")).unwrap();
    assert_eq!(&bytes[..2], &1i16.to_be_bytes(), "snapshot version 1");
    assert_eq!(crc32c::crc32c(&bytes[6..]).to_be_bytes(), bytes[2..6]);
    assert_eq!(&bytes[6..10], &2i32.to_be_bytes(), "two producers");
    let mut log = Log::open(dir.path(), config_rolling_after(100), true).unwrap();
    let retry = produce(&mut log, 2, 9, 0).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 3);
    assert_eq!(produce(&mut log, 1, 7, 3).unwrap().base_offset, 5);
}

#[test]
fn producer_state_is_rebuilt_from_the_log_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_rolling_after(2);
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..5 {
        produce(&mut log, 3, 7, i * 3).unwrap();
    }
    assert!(log.segment_count() > 1);
    let rolled = snapshots(dir.path());
    assert!(!rolled.is_empty() && rolled.iter().all(|s| *s > 0), "{rolled:?}");
    drop(log); // a crash: no snapshot at the log end
    let mut log = Log::open(dir.path(), cfg, false).unwrap();
    // The last batch lies after the latest snapshot: found by the scan.
    let retry = produce(&mut log, 3, 7, 12).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 12);
    assert_eq!(log.log_end_offset(), 15);
}

#[test]
fn truncation_rolls_the_producer_state_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config_rolling_after(1), true).unwrap();
    for i in 0..4 {
        produce(&mut log, 3, 7, i * 3).unwrap();
    }
    assert_eq!(snapshots(dir.path()), vec![3, 6, 9]);
    log.truncate_to(6).unwrap();
    assert_eq!(snapshots(dir.path()), vec![3, 6], "snapshots past the new end go");
    // The batch at 6 is gone: its retry is appended again, at 6.
    let again = produce(&mut log, 3, 7, 6).unwrap();
    assert!(!again.duplicate);
    assert_eq!(again.base_offset, 6);
    // Truncating into the middle of a segment replays from the snapshot below.
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert!(produce(&mut log, 3, 7, 0).unwrap().duplicate, "the batch at 0 stays");
    assert!(matches!(produce(&mut log, 3, 7, 6), Err(StorageError::OutOfOrderSequence(_))));
    assert_eq!(produce(&mut log, 3, 7, 3).unwrap().base_offset, 3);
}

#[test]
fn snapshots_go_with_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config_rolling_after(1), true).unwrap();
    for i in 0..4 {
        produce(&mut log, 3, 7, i * 3).unwrap();
    }
    assert_eq!(snapshots(dir.path()), vec![3, 6, 9]);
    log.advance_log_start_offset(7).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(snapshots(dir.path()), vec![6, 9]);
    assert!(produce(&mut log, 3, 7, 9).unwrap().duplicate, "state is kept");
}

#[test]
fn a_damaged_snapshot_is_rebuilt_from_the_log_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_rolling_after(100);
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    produce(&mut log, 3, 7, 0).unwrap();
    produce(&mut log, 3, 7, 3).unwrap();
    log.close().unwrap();
    let files = segment_files(dir.path());
    let path = dir.path().join("00000000000000000006.snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let (log, warnings) = warnings_during(|| Log::open(dir.path(), cfg.clone(), true).unwrap());
    let mut log = log;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("00000000000000000006.snapshot"), "{warnings:?}");
    assert_eq!(segment_files(dir.path()), files, "no segment file touched");
    assert_eq!(log.log_end_offset(), 6);
    assert!(produce(&mut log, 3, 7, 3).unwrap().duplicate);
}

#[test]
fn leader_epochs_follow_appends_truncation_and_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config_rolling_after(1), true).unwrap();
    for (epoch, n) in [(0, 3), (0, 3), (2, 3), (5, 3), (5, 3)] {
        log.append(&mut batch(n, 0), epoch, 0).unwrap();
    }
    assert_eq!(epochs(&log), vec![(0, 0), (2, 6), (5, 9)]);
    let file = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
    assert_eq!(file, "0\n3\n0 0\n2 6\n5 9\n");
    assert_eq!(log.end_offset_for_epoch(0), (0, 6));
    assert_eq!(log.end_offset_for_epoch(1), (0, 6));
    assert_eq!(log.end_offset_for_epoch(5), (5, 15));
    assert_eq!(log.end_offset_for_epoch(6), (-1, -1));
    log.truncate_to(9).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (2, 6)]);
    assert_eq!(log.end_offset_for_epoch(2), (2, 9));
    log.append(&mut batch(3, 0), 6, 0).unwrap();
    log.advance_log_start_offset(4).unwrap();
    assert_eq!(epochs(&log), vec![(0, 4), (2, 6), (6, 9)]);
    assert_eq!(log.end_offset_for_epoch(0), (0, 6));
    log.close().unwrap();
    let file = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap();
    assert_eq!(file, "0\n3\n0 4\n2 6\n6 9\n");
    let log = Log::open(dir.path(), config_rolling_after(1), true).unwrap();
    assert_eq!(epochs(&log), vec![(0, 4), (2, 6), (6, 9)]);
}

#[test]
fn a_missing_or_damaged_epoch_checkpoint_is_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_rolling_after(2);
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for (epoch, n) in [(1, 3), (1, 3), (3, 3), (4, 3)] {
        log.append(&mut batch(n, 0), epoch, 0).unwrap();
    }
    log.close().unwrap();
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
    let expected = "0\n3\n1 0\n3 6\n4 9\n";
    assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    let files = segment_files(dir.path());
    for damage in [None, Some("0\n3\n1 0\n"), Some("0\n3\n1 0\n3 x6\n4 9\n")] {
        match damage {
            None => std::fs::remove_file(&path).unwrap(),
            Some(text) => std::fs::write(&path, text).unwrap(),
        }
        let (log, warnings) = warnings_during(|| Log::open(dir.path(), cfg.clone(), true).unwrap());
        assert_eq!(epochs(&log), vec![(1, 0), (3, 6), (4, 9)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        assert_eq!(warnings.len(), usize::from(damage.is_some()), "{warnings:?}");
        if damage.is_some() {
            assert!(warnings[0].contains(LEADER_EPOCH_CHECKPOINT), "{warnings:?}");
        }
        assert_eq!(segment_files(dir.path()), files, "no segment file touched");
        drop(log);
    }
}

#[test]
fn an_epoch_the_checkpoint_missed_before_a_crash_is_found_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_rolling_after(100);
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    log.append(&mut batch(3, 0), 1, 0).unwrap();
    log.close().unwrap();
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
    let checkpoint = std::fs::read_to_string(&path).unwrap();
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    log.append(&mut batch(3, 0), 2, 0).unwrap();
    drop(log);
    // A crash between the segment write and the checkpoint write.
    std::fs::write(&path, checkpoint).unwrap();
    let log = Log::open(dir.path(), cfg, false).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (2, 3)]);
}

#[test]
fn an_unclean_open_checks_the_active_segment_only_from_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 256,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for i in 0..40 {
        log.append(&mut batch(4, 1000 + i), 0, 0).unwrap();
    }
    log.flush().unwrap();
    let recovery_point = log.recovery_point();
    assert_eq!(recovery_point, 160);
    for i in 0..10 {
        log.append(&mut batch(4, 900 + i), 0, 0).unwrap();
    }
    drop(log); // a crash
    let path = dir.path().join("00000000000000000000.log");
    let batch_size = batch(4, 0).len() as u64;
    // Damage inside the flushed part (batch 3's last byte) and a torn tail.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (4 * batch_size - 1) as usize;
    bytes[at] ^= 0xff;
    bytes.extend_from_slice(&batch(4, 0)[..30]);
    std::fs::write(&path, &bytes).unwrap();
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&path, copy.path().join("00000000000000000000.log")).unwrap();
    for suffix in ["index", "timeindex"] {
        let name = format!("00000000000000000000.{suffix}");
        std::fs::copy(dir.path().join(&name), copy.path().join(&name)).unwrap();
    }

    let from_rp = Log::open_with_recovery_point(dir.path(), cfg.clone(), false, Some(recovery_point)).unwrap();
    // Only the torn tail went: the batches below the recovery point were not checked again.
    assert_eq!(from_rp.log_end_offset(), 200);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 50 * batch_size);
    // Without a recovery point the whole segment is checked: the damage cuts it.
    let whole = Log::open(copy.path(), cfg.clone(), false).unwrap();
    assert_eq!(whole.log_end_offset(), 12);
    // The resumed recovery indexes as a full scan of the same bytes does.
    from_rp.close().unwrap();
    let reopened = Log::open(dir.path(), cfg.clone(), true).unwrap();
    for ts in [0, 905, 1000, 1039, 1040] {
        let a = reopened.batch_at_or_after_timestamp(ts).unwrap().map(|b| BatchHeader::parse(&b).unwrap().base_offset);
        let expected = match ts {
            0 => Some(0),
            905 => Some(0),
            1000 => Some(0),
            1039 => Some(156),
            _ => None,
        };
        assert_eq!(a, expected, "timestamp {ts}");
    }
    for offset in [0, 37, 100, 159, 160, 163, 199] {
        let b = reopened.read(offset, 1).unwrap();
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.base_offset <= offset && offset <= h.last_offset(), "offset {offset}: {h:?}");
    }
}

#[test]
fn a_cleaners_replacement_removes_the_snapshots_of_the_replaced_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config_rolling_after(1), true).unwrap();
    for i in 0..3 {
        produce(&mut log, 3, 7, i * 3).unwrap();
    }
    assert_eq!(snapshots(dir.path()), vec![3, 6]);
    let mut merged = log.read_segment(0).unwrap().to_vec();
    merged.extend_from_slice(&log.read_segment(3).unwrap());
    log.replace_segments(0, 3, &merged).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(snapshots(dir.path()), vec![6], "the snapshot of segment 3 went with it");
    assert!(produce(&mut log, 3, 7, 6).unwrap().duplicate, "state is kept");
    log.close().unwrap();
    assert_eq!(snapshots(dir.path()), vec![6, 9]);
}
