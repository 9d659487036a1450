//! Kafka RecordBatch (magic v2) headers: parse, validate, patch.
//!
//! The log never decodes records; it reads the fixed 61-byte batch header,
//! and validation walks the records' framing without keeping any. Layout (all big endian):
//!
//! | field                | type | offset |
//! |----------------------|------|--------|
//! | baseOffset           | i64  | 0      |
//! | batchLength          | i32  | 8      |
//! | partitionLeaderEpoch | i32  | 12     |
//! | magic                | i8   | 16     |
//! | crc (CRC-32C of 21..end) | u32 | 17  |
//! | attributes           | i16  | 21     |
//! | lastOffsetDelta      | i32  | 23     |
//! | baseTimestamp        | i64  | 27     |
//! | maxTimestamp         | i64  | 35     |
//! | producerId           | i64  | 43     |
//! | producerEpoch        | i16  | 51     |
//! | baseSequence         | i32  | 53     |
//! | recordCount          | i32  | 57     |
//! | records              | ...  | 61     |
//!
//! Every function bounds-checks its input and returns an error instead of
//! panicking; no length field ever sizes an allocation.

use crate::compression;
use crate::error::{Error, Result};
use crate::walk::{walk_records, WalkError};

/// Size of the fixed v2 batch header in bytes.
pub const HEADER_SIZE: usize = 61;
/// Size of the `baseOffset` + `batchLength` prefix that frames every batch
/// (of any magic).
pub const LOG_OVERHEAD: usize = 12;
/// The only supported magic value.
pub const MAGIC_V2: i8 = 2;

/// Offset of `baseOffset`.
pub const BASE_OFFSET_OFFSET: usize = 0;
/// Offset of `batchLength`.
pub const LENGTH_OFFSET: usize = 8;
/// Offset of `partitionLeaderEpoch`.
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
/// Offset of `magic`.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of `crc`.
pub const CRC_OFFSET: usize = 17;
/// Offset of `attributes`; the CRC covers everything from here to the end.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of `lastOffsetDelta`.
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
/// Offset of `baseTimestamp`.
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
/// Offset of `maxTimestamp`.
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Offset of `producerId`.
pub const PRODUCER_ID_OFFSET: usize = 43;
/// Offset of `producerEpoch`.
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
/// Offset of `baseSequence`.
pub const BASE_SEQUENCE_OFFSET: usize = 53;
/// Offset of `recordCount`.
pub const RECORD_COUNT_OFFSET: usize = 57;

/// Attribute bits holding the compression codec.
pub const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit set when timestamps are LogAppendTime.
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// Attribute bit set on transactional batches.
pub const TRANSACTIONAL_MASK: i16 = 0x10;
/// Attribute bit set on control batches (transaction markers).
pub const CONTROL_MASK: i16 = 0x20;
/// Attribute bit set when the batch carries a delete horizon (compaction).
pub const DELETE_HORIZON_MASK: i16 = 0x40;

/// Highest known compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const MAX_COMPRESSION_ID: u8 = 4;

/// How a batch's timestamps were set (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamps are kept (Kafka's default).
    #[default]
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

impl std::fmt::Display for TimestampType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Kafka's TimestampType.toString().
        f.write_str(match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        })
    }
}

/// The parsed fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; always 2 for a parsed header.
    pub magic: i8,
    /// CRC-32C of bytes 21..end as stored in the batch.
    pub crc: u32,
    /// Attribute bits (compression, timestamp type, transactional, control).
    pub attributes: i16,
    /// `lastOffset - baseOffset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (or the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records as claimed by the header (never trust for allocation).
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> Result<i64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| short(b.len(), at + 8))
}
fn be_i32(b: &[u8], at: usize) -> Result<i32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| short(b.len(), at + 4))
}
fn be_u32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| short(b.len(), at + 4))
}
fn be_i16(b: &[u8], at: usize) -> Result<i16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(i16::from_be_bytes)
        .ok_or_else(|| short(b.len(), at + 2))
}
fn put(b: &mut [u8], at: usize, v: &[u8]) -> Result<()> {
    let len = b.len();
    let dst = b
        .get_mut(at..at + v.len())
        .ok_or_else(|| short(len, at + v.len()))?;
    dst.copy_from_slice(v);
    Ok(())
}
fn short(have: usize, need: usize) -> Error {
    Error::Corrupt(format!(
        "batch truncated: {have} bytes, need at least {need}"
    ))
}

/// Reads the `batchLength` framing of the batch at the start of `buf` and
/// returns the batch's total size (`12 + batchLength`), valid for any magic.
/// Fails if fewer than 12 bytes are present or the length is too small to
/// hold a v2 header.
pub fn frame_size(buf: &[u8]) -> Result<usize> {
    let len = be_i32(buf, LENGTH_OFFSET)?;
    let min = (HEADER_SIZE - LOG_OVERHEAD) as i32;
    if len < min {
        return Err(Error::Corrupt(format!(
            "batch length {len} is smaller than the minimum {min}"
        )));
    }
    Ok(LOG_OVERHEAD + len as usize)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`, which must hold at least the
    /// 61 header bytes (it need not hold the whole batch).
    ///
    /// Errors: [`Error::Corrupt`] for short input or a length too
    /// small for a v2 header, [`Error::UnsupportedMagic`] for magic != 2.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < LOG_OVERHEAD + 5 {
            return Err(short(buf.len(), HEADER_SIZE));
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(Error::UnsupportedMagic(magic));
        }
        if buf.len() < HEADER_SIZE {
            return Err(short(buf.len(), HEADER_SIZE));
        }
        frame_size(buf)?;
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFFSET)?,
            batch_length: be_i32(buf, LENGTH_OFFSET)?,
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET)?,
            magic,
            crc: be_u32(buf, CRC_OFFSET)?,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET)?,
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET)?,
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET)?,
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET)?,
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET)?,
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET)?,
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET)?,
            record_count: be_i32(buf, RECORD_COUNT_OFFSET)?,
        })
    }

    /// Total size of the batch on disk: `12 + batch_length`.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset following this batch (`last_offset() + 1`).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec id (`attributes & 7`): 0 none, 1 gzip, 2 snappy,
    /// 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// The timestamp type recorded in the attributes.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// True for batches written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_MASK != 0
    }

    /// True for control batches (transaction commit/abort markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_MASK != 0
    }

    /// True when the batch carries a compaction delete horizon.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_MASK != 0
    }

    /// Checks the stored CRC against CRC-32C of `batch[21..total_size]`.
    /// `batch` must start at this batch and hold it whole.
    pub fn verify_crc(&self, batch: &[u8]) -> Result<()> {
        let computed = compute_crc(batch)?;
        if computed != self.crc {
            return Err(Error::Corrupt(format!(
                "CRC mismatch in batch at offset {}: stored {:#010x}, computed {:#010x}",
                self.base_offset, self.crc, computed
            )));
        }
        Ok(())
    }

    /// Checks the header's self-consistency as Kafka's validator does for
    /// client batches: known compression, record count >= 1 and
    /// `last_offset_delta == record_count - 1`.
    pub fn validate_fields(&self) -> Result<()> {
        self.check_compression()?;
        if self.record_count <= 0 {
            return Err(Error::Invalid(format!(
                "invalid record count {} in batch",
                self.record_count
            )));
        }
        if self.last_offset_delta < 0
            || i64::from(self.last_offset_delta) + 1 != i64::from(self.record_count)
        {
            return Err(Error::Invalid(format!(
                "inconsistent batch: last offset delta {} with record count {}",
                self.last_offset_delta, self.record_count
            )));
        }
        Ok(())
    }

    fn check_compression(&self) -> Result<()> {
        if self.compression() > MAX_COMPRESSION_ID {
            return Err(Error::Corrupt(format!(
                "unknown compression codec id {}",
                self.compression()
            )));
        }
        Ok(())
    }
}

/// CRC-32C over `batch[21..total_size]`, where the total size comes from the
/// batch's own length field. Fails if `batch` does not hold the whole batch.
pub fn compute_crc(batch: &[u8]) -> Result<u32> {
    let total = frame_size(batch)?;
    let body = batch
        .get(ATTRIBUTES_OFFSET..total)
        .ok_or_else(|| short(batch.len(), total))?;
    Ok(crc32c::crc32c(body))
}

/// Fully validates one batch occupying exactly `batch`: header, magic,
/// `max_size`, field consistency and CRC. Checks run in Kafka's order
/// (size before CRC) so the error code matches Kafka's.
pub fn validate(batch: &[u8], max_size: usize) -> Result<BatchHeader> {
    let header = parse_whole(batch)?;
    let total = header.total_size();
    if total > max_size {
        return Err(Error::TooLarge {
            size: total,
            max: max_size,
        });
    }
    header.validate_fields()?;
    header.verify_crc(batch)?;
    check_records_held(&header, batch, true)?;
    Ok(header)
}

/// Parses the header of the batch that occupies exactly `batch`.
fn parse_whole(batch: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_size();
    if total != batch.len() {
        return Err(Error::Corrupt(format!(
            "batch length field says {total} bytes but {} are present",
            batch.len()
        )));
    }
    Ok(header)
}

/// Checks that the batch holds exactly the records its header claims, walking
/// their length prefixes. An uncompressed batch is walked in place; a compressed
/// one is streamed through its decompressor (nothing is materialised) and its
/// records must also carry consecutive offset deltas, as Kafka's validator
/// requires of a client's batch (`client_batch`; a cleaned batch keeps gaps).
/// A payload that does not decompress is CORRUPT_MESSAGE, records
/// that contradict the header INVALID_RECORD.
fn check_records_held(header: &BatchHeader, batch: &[u8], client_batch: bool) -> Result<()> {
    let section = batch.get(HEADER_SIZE..).unwrap_or_default();
    let codec = header.compression();
    let walked = if codec == compression::NONE {
        walk_records(section, header.record_count, false)
    } else {
        compression::buffered(codec, section)
            .map_err(|e| WalkError::Stream(e.to_string()))
            .and_then(|records| walk_records(records, header.record_count, client_batch))
    };
    match walked {
        Ok(()) => Ok(()),
        Err(WalkError::Stream(why)) => Err(Error::Corrupt(format!(
            "batch at offset {} does not decompress (codec {codec}): {why}",
            header.base_offset
        ))),
        // An uncompressed batch whose lengths do not tile its records is
        // malformed bytes (as before this walk was shared).
        Err(WalkError::Records(why)) if codec == compression::NONE => {
            Err(Error::Corrupt(why))
        }
        Err(WalkError::Records(why) | WalkError::Count(why)) => {
            Err(Error::Invalid(why))
        }
    }
}

/// Validates one batch occupying exactly `batch` as the output of a log
/// cleaner: header, magic, known compression and CRC, like [`validate`], but
/// a compacted batch keeps its original `lastOffsetDelta` while losing
/// records, so it only needs `0 <= recordCount <= lastOffsetDelta + 1`
/// (Kafka keeps empty batches to preserve producer state). No size limit.
pub fn validate_cleaned(batch: &[u8]) -> Result<BatchHeader> {
    let header = parse_whole(batch)?;
    header.check_compression()?;
    if header.last_offset_delta < 0
        || header.record_count < 0
        || i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1
    {
        return Err(Error::Invalid(format!(
            "inconsistent batch: last offset delta {} with record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    header.verify_crc(batch)?;
    check_records_held(&header, batch, false)?;
    Ok(header)
}

/// Overwrites `baseOffset` of the batch at the start of `batch`. The CRC does
/// not cover this field.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<()> {
    put(batch, BASE_OFFSET_OFFSET, &base_offset.to_be_bytes())
}

/// Overwrites `partitionLeaderEpoch`. The CRC does not cover this field.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<()> {
    put(batch, PARTITION_LEADER_EPOCH_OFFSET, &epoch.to_be_bytes())
}

/// Sets the timestamp-type attribute bit and `maxTimestamp`, then recomputes
/// the CRC (both fields are covered by it). `batch` must hold the whole batch.
pub fn set_max_timestamp(
    batch: &mut [u8],
    ts_type: TimestampType,
    max_timestamp: i64,
) -> Result<()> {
    let attributes = be_i16(batch, ATTRIBUTES_OFFSET)?;
    let attributes = match ts_type {
        TimestampType::CreateTime => attributes & !TIMESTAMP_TYPE_MASK,
        TimestampType::LogAppendTime => attributes | TIMESTAMP_TYPE_MASK,
    };
    // Check the whole batch is present before touching anything.
    compute_crc(batch)?;
    put(batch, ATTRIBUTES_OFFSET, &attributes.to_be_bytes())?;
    put(batch, MAX_TIMESTAMP_OFFSET, &max_timestamp.to_be_bytes())?;
    let crc = compute_crc(batch)?;
    put(batch, CRC_OFFSET, &crc.to_be_bytes())
}

/// One batch found by [`BatchIter`].
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The parsed header.
    pub header: BatchHeader,
    /// Position of the batch's first byte within the iterated buffer.
    pub position: usize,
    /// The whole batch (`header.total_size()` bytes).
    pub bytes: &'a [u8],
}

/// Iterates the batches of a byte slice using their length framing.
///
/// It parses headers only (no CRC check). On malformed or truncated data it
/// yields one error and then stops; [`BatchIter::position`] then tells where
/// the bad batch starts, i.e. the length of the well-framed prefix. Built
/// with [`BatchIter::stop_at_partial_tail`], it instead ends quietly at a
/// trailing partial batch (as in fetch responses, which may end mid-batch).
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
    lenient_tail: bool,
}

impl<'a> BatchIter<'a> {
    /// Strict iterator: a truncated trailing batch is an error.
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            pos: 0,
            done: false,
            lenient_tail: false,
        }
    }

    /// Lenient iterator: a trailing partial batch ends iteration without error.
    /// Malformed headers are still errors.
    pub fn stop_at_partial_tail(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            pos: 0,
            done: false,
            lenient_tail: true,
        }
    }

    /// Position of the next batch (after an error: of the bad batch).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn step(&mut self) -> Option<Result<Batch<'a>>> {
        let rest = self.remaining();
        if rest.is_empty() {
            return None;
        }
        if rest.len() < HEADER_SIZE {
            if self.lenient_tail {
                return None;
            }
            return Some(Err(short(rest.len(), HEADER_SIZE)));
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let total = header.total_size();
        let Some(bytes) = rest.get(..total) else {
            if self.lenient_tail {
                return None;
            }
            return Some(Err(Error::Corrupt(format!(
                "truncated batch at position {}: {} of {} bytes present",
                self.pos,
                rest.len(),
                total
            ))));
        };
        let batch = Batch {
            header,
            position: self.pos,
            bytes,
        };
        self.pos += total;
        Some(Ok(batch))
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<Batch<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::{GZIP, LZ4, SNAPPY, ZSTD};
    use crate::test_util::{batch, batch_with, compress, compressed_batch, with_section};

    const CODECS: [u8; 4] = [GZIP, SNAPPY, LZ4, ZSTD];

    #[test]
    fn compressed_batches_hold_exactly_the_records_they_claim() {
        for codec in CODECS {
            let good = compressed_batch(3, codec);
            let h = validate(&good, usize::MAX).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
            assert_eq!(h.compression(), codec);
            let one = batch(1, 0);
            let three = batch(3, 0);
            // The repros: 2^31-1 claimed with 1 inside, 1 claimed with 3 inside.
            let forged = with_section(&one, codec, &compress(codec, &one[HEADER_SIZE..]), Some(i32::MAX));
            assert!(matches!(validate(&forged, usize::MAX), Err(Error::Invalid(_))), "codec {codec}");
            let forged = with_section(&three, codec, &compress(codec, &three[HEADER_SIZE..]), Some(1));
            assert!(matches!(validate(&forged, usize::MAX), Err(Error::Invalid(_))), "codec {codec}");
            // A payload that is not compressed with the codec at all.
            let garbage = with_section(&one, codec, b"definitely not a compressed stream of records", None);
            assert!(matches!(validate(&garbage, usize::MAX), Err(Error::Corrupt(_))), "codec {codec}");
            // A cleaned batch (records lost, offsets kept) needs no consecutive deltas.
            assert!(validate_cleaned(&good).is_ok());
        }
    }

    #[test]
    fn uncompressed_batch_claiming_more_records_than_it_holds_is_invalid() {
        let mut b = batch(2, 0);
        // Claim 1,000,000 records (count and last offset delta agree, CRC fixed up).
        b[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&1_000_000i32.to_be_bytes());
        b[23..27].copy_from_slice(&999_999i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(validate(&b, usize::MAX), Err(Error::Invalid(_))));
        assert!(validate(&batch(2, 0), usize::MAX).is_ok());
    }

    #[test]
    fn parse_reads_every_header_field() {
        let b = batch_with(3, 1_000, &[b"a", b"bb", b"ccc"], 5);
        let h = BatchHeader::parse(&b).expect("parse");
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.magic, 2);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_010);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_transactional());
        assert!(!h.is_control());
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        h.verify_crc(&b).expect("crc");
        validate(&b, 1 << 20).expect("valid");
    }

    #[test]
    fn parse_rejects_short_input_and_bad_magic_without_panicking() {
        let b = batch(1, 0);
        for n in 0..HEADER_SIZE {
            assert!(BatchHeader::parse(&b[..n]).is_err());
        }
        let mut bad = b.clone();
        bad[MAGIC_OFFSET] = 1;
        assert!(matches!(
            BatchHeader::parse(&bad),
            Err(Error::UnsupportedMagic(1))
        ));
        let mut tiny = b.clone();
        tiny[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&tiny),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn validate_detects_crc_size_and_count_errors() {
        let b = batch(2, 0);
        let mut flipped = b.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(matches!(
            validate(&flipped, 1 << 20),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            validate(&b, 10),
            Err(Error::TooLarge { .. })
        ));
        let mut inconsistent = b.clone();
        inconsistent[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
            .copy_from_slice(&5i32.to_be_bytes());
        assert!(matches!(
            validate(&inconsistent, 1 << 20),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            validate(&b[..b.len() - 1], 1 << 20),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn validate_cleaned_accepts_batches_that_lost_records_but_kept_their_offsets() {
        let with_delta = |count: i32, delta: i32| {
            let mut b = batch(1, 0);
            b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
                .copy_from_slice(&delta.to_be_bytes());
            b[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&count.to_be_bytes());
            let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
            b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            b
        };
        let compacted = validate_cleaned(&with_delta(1, 4)).expect("one record left of five");
        assert_eq!(compacted.last_offset(), 4);
        assert!(validate(&with_delta(1, 4), usize::MAX).is_err());
        for (count, delta) in [(2, 0), (1, -1), (-1, 3), (2, 4)] {
            assert!(
                validate_cleaned(&with_delta(count, delta)).is_err(),
                "{count} {delta}"
            );
        }
    }

    #[test]
    fn patching_offset_and_epoch_keeps_crc_valid() {
        let mut b = batch(2, 0);
        set_base_offset(&mut b, 42).expect("patch");
        set_partition_leader_epoch(&mut b, 7).expect("patch");
        let h = validate(&b, 1 << 20).expect("still valid");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.partition_leader_epoch, 7);
        assert!(set_base_offset(&mut b[..4], 1).is_err());
    }

    #[test]
    fn set_max_timestamp_sets_log_append_time_and_fixes_crc() {
        let mut b = batch(2, 0);
        set_max_timestamp(&mut b, TimestampType::LogAppendTime, 99).expect("patch");
        let h = validate(&b, 1 << 20).expect("valid");
        assert_eq!(h.max_timestamp, 99);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    }

    #[test]
    fn iterator_frames_batches_and_reports_truncation() {
        let mut buf = batch(1, 0);
        buf.extend(batch(3, 0));
        let whole = buf.len();
        buf.extend_from_slice(&batch(2, 0)[..30]);
        let mut it = BatchIter::new(&buf);
        assert_eq!(it.next().expect("1").expect("ok").header.record_count, 1);
        let second = it.next().expect("2").expect("ok");
        assert_eq!(second.header.record_count, 3);
        assert!(it.next().expect("3").is_err());
        assert_eq!(it.position(), whole);
        assert!(it.next().is_none());

        let lenient: Vec<_> = BatchIter::stop_at_partial_tail(&buf).collect();
        assert_eq!(lenient.len(), 2);
        assert!(lenient.iter().all(|r| r.is_ok()));
    }

    #[test]
    fn iterator_never_panics_on_garbage() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            for r in BatchIter::new(&buf) {
                let _ = r;
            }
            let _ = validate(&buf, usize::MAX);
        }
    }

    /// What validating a batch's records costs on produce, per codec: the full
    /// `validate` against the header and CRC checks alone (all that compressed
    /// batches had before their records were walked). Not a check, a measure:
    /// `cargo test --release -p potok-records --lib validation_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn validation_cost_per_codec() {
        use std::time::{Duration, Instant};
        fn time(mut f: impl FnMut()) -> Duration {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < Duration::from_millis(500) {
                f();
                n += 1;
            }
            start.elapsed() / n
        }
        // ~1 MiB of 100-byte JSON-ish values, as a batching producer sends.
        let values: Vec<Vec<u8>> = (0..9_000)
            .map(|i| format!("{{\"id\":{i:08},\"payload\":\"{}\"}}", "abcdefgh".repeat(10)).into_bytes())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let plain = batch_with(refs.len(), 0, &refs, 1);
        println!("{} records, {} bytes uncompressed", refs.len(), plain.len());
        println!("{:<7} {:>9} {:>14} {:>14} {:>9}", "codec", "bytes", "header+CRC", "validate", "MB/s");
        for codec in [0, GZIP, SNAPPY, LZ4, ZSTD] {
            let b = with_section(&plain, codec, &compress(codec, &plain[HEADER_SIZE..]), None);
            let before = time(|| {
                let h = BatchHeader::parse(&b).expect("parse");
                h.validate_fields().expect("fields");
                h.verify_crc(&b).expect("crc");
            });
            let after = time(|| {
                validate(&b, usize::MAX).expect("valid");
            });
            println!(
                "{codec:<7} {:>9} {:>11.1} µs {:>11.1} µs {:>9.0}",
                b.len(),
                before.as_secs_f64() * 1e6,
                after.as_secs_f64() * 1e6,
                plain.len() as f64 / after.as_secs_f64() / 1e6
            );
        }
    }
}
