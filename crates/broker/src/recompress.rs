//! A topic's produce-time policy: `message.timestamp.before/after.max.ms` bounds
//! and `compression.type` recompression.
//!
//! Recompression never decodes records: the records section of a batch is the
//! same byte sequence whatever the codec, so it is decompressed (bounded) and
//! compressed again, and only the header's codec bits, length and CRC change.
//! Every header (duplicate keys too), timestamp, key, value and producer field is
//! kept byte for byte. Batches already in the topic's codec are not touched.

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use records::batch::{BatchHeader, ATTRIBUTES_OFFSET, COMPRESSION_MASK};
use records::Compression;

use crate::error::{BrokerError, Result};

/// Size of a v2 batch header; the records section follows it.
const HEADER_SIZE: usize = 61;
/// Offset of `batchLength`.
const LENGTH_OFFSET: usize = 8;
/// Offset of the CRC.
const CRC_OFFSET: usize = 17;

/// A codec with its level, as a topic's `compression.type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `uncompressed`.
    None,
    /// `gzip` at `compression.gzip.level` (-1: the library default).
    Gzip(i32),
    /// `snappy`.
    Snappy,
    /// `lz4` at `compression.lz4.level`.
    Lz4(i32),
    /// `zstd` at `compression.zstd.level`.
    Zstd(i32),
}

impl Codec {
    /// The codec's id in a batch's attributes.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip(_) => 1,
            Codec::Snappy => 2,
            Codec::Lz4(_) => 3,
            Codec::Zstd(_) => 4,
        }
    }
}

/// What a topic's configs ask of produced batches before they are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducePolicy {
    /// The codec batches are stored with; None for `producer`.
    pub target: Option<Codec>,
    /// `message.timestamp.type=LogAppendTime` (the bounds do not apply then).
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `min.insync.replicas`: the ISR an acks=all produce needs.
    pub min_insync_replicas: i32,
}

impl Default for ProducePolicy {
    fn default() -> Self {
        ProducePolicy { target: None, log_append_time: false, timestamp_before_max_ms: i64::MAX, timestamp_after_max_ms: i64::MAX, min_insync_replicas: 1 }
    }
}

/// Applies the policy to one produced batch: INVALID_TIMESTAMP for a CreateTime
/// timestamp out of bounds, and the batch in the topic's codec if it had another
/// (`Ok(None)`: keep the batch as it is). Bytes that do not parse as a batch are
/// left for the log's validation to refuse. Without timestamp bounds (the
/// default) and with `producer` or a matching codec, nothing is decoded.
pub fn prepare(policy: &ProducePolicy, batch: &[u8], now_ms: i64, max_decompressed: usize) -> Result<Option<BytesMut>> {
    let Ok(header) = BatchHeader::parse(batch) else { return Ok(None) };
    let Some(codec) = Codec::from_id(header.compression()) else { return Ok(None) };
    let bounded = !policy.log_append_time && (policy.timestamp_before_max_ms < i64::MAX || policy.timestamp_after_max_ms < i64::MAX);
    let target = policy
        .target
        .filter(|t| t.id() != codec.id() && !header.is_control() && batch.len() == header.total_size());
    let records = batch.get(HEADER_SIZE..).unwrap_or_default();
    let plain = if target.is_some() || (bounded && codec != Codec::None) {
        Some(decompress(codec, records, max_decompressed)?)
    } else {
        None
    };
    if bounded {
        check_timestamps(policy, &header, plain.as_deref().unwrap_or(records), now_ms)?;
    }
    match (target, plain) {
        (Some(target), Some(plain)) => Ok(Some(rebuild(batch, target, &compress(target, &plain)?)?)),
        _ => Ok(None),
    }
}

/// Kafka 3.6+'s timestamp bounds, on the batch's largest timestamp and on every
/// record's (`records`: the uncompressed records section).
fn check_timestamps(policy: &ProducePolicy, header: &BatchHeader, records: &[u8], now_ms: i64) -> Result<()> {
    let earliest = now_ms.saturating_sub(policy.timestamp_before_max_ms);
    let latest = now_ms.saturating_add(policy.timestamp_after_max_ms);
    let out_of_range = |ts: i64| {
        BrokerError::kafka(
            ResponseError::InvalidTimestamp,
            format!("Timestamp {ts} of a record in the batch is out of range. The timestamp should be within [{earliest}, {latest}]"),
        )
    };
    if !(earliest..=latest).contains(&header.max_timestamp) {
        return Err(out_of_range(header.max_timestamp));
    }
    // Each record: length, attributes (1 byte), timestamp delta, ... (varints).
    let mut at = 0;
    while at < records.len() {
        let Some(length) = read_varlong(records, &mut at) else { break };
        let start = at;
        at += 1;
        let Some(delta) = read_varlong(records, &mut at) else { break };
        let ts = header.base_timestamp.saturating_add(delta);
        if !(earliest..=latest).contains(&ts) {
            return Err(out_of_range(ts));
        }
        // A malformed length is the log's validation to refuse.
        let Some(next) = usize::try_from(length).ok().and_then(|l| start.checked_add(l)) else { break };
        at = next;
    }
    Ok(())
}

/// A zig-zag varlong at `at` (at most 10 bytes), advancing `at`.
fn read_varlong(b: &[u8], at: &mut usize) -> Option<i64> {
    records::read_varlong(b, at).ok()
}

/// The batch's header with the new codec and length, the new records section and
/// a new CRC.
fn rebuild(batch: &[u8], target: Codec, records: &[u8]) -> Result<BytesMut> {
    let header = batch.get(..HEADER_SIZE).ok_or_else(|| corrupt("batch shorter than its header"))?;
    let length = i32::try_from(HEADER_SIZE - LENGTH_OFFSET - 4 + records.len())
        .map_err(|_| BrokerError::kafka(ResponseError::MessageTooLarge, "recompressed batch exceeds 2 GiB"))?;
    let mut out = BytesMut::with_capacity(HEADER_SIZE + records.len());
    out.put_slice(header);
    out.put_slice(records);
    out[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = i16::from_be_bytes([out[ATTRIBUTES_OFFSET], out[ATTRIBUTES_OFFSET + 1]]);
    let attributes = (attributes & !COMPRESSION_MASK) | i16::from(target.id());
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

impl Codec {
    fn from_id(id: u8) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip(-1),
            2 => Codec::Snappy,
            3 => Codec::Lz4(9),
            4 => Codec::Zstd(3),
            _ => return None,
        })
    }
}

fn corrupt(why: impl Into<String>) -> BrokerError {
    BrokerError::kafka(ResponseError::CorruptMessage, why)
}

/// The records section in `codec`.
impl Codec {
    /// The storage codec and the level to compress at.
    fn storage(self) -> (Compression, Option<i32>) {
        match self {
            Codec::None => (Compression::None, None),
            Codec::Gzip(level) => (Compression::Gzip, Some(level)),
            Codec::Snappy => (Compression::Snappy, None),
            Codec::Lz4(level) => (Compression::Lz4, Some(level)),
            Codec::Zstd(level) => (Compression::Zstd, Some(level)),
        }
    }
}

fn compress(codec: Codec, plain: &[u8]) -> Result<Vec<u8>> {
    let (compression, level) = codec.storage();
    records::compression::compress_at(compression, level, plain)
        .map_err(|e| BrokerError::kafka(ResponseError::UnknownServerError, e.to_string()))
}

fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>> {
    records::compression::decompress(codec.storage().0, data, limit).map_err(|e| match e {
        records::Error::OverBudget => {
            BrokerError::kafka(ResponseError::InvalidRecord, format!("batch decompresses to more than {limit} bytes"))
        }
        e => corrupt(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(compression: Compression, timestamps: &[i64]) -> BytesMut {
        let entries = timestamps.iter().map(|&ts| (Some(Bytes::from_static(b"k")), Some(Bytes::from(vec![b'v'; 300])), ts));
        crate::record_batch::encode(entries, compression).expect("encode")
    }

    /// A batch whose one record has two headers with the same key (and a null value).
    fn duplicate_headers() -> BytesMut {
        let mut record = Vec::new();
        let put_varint = |out: &mut Vec<u8>, v: i64| {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        };
        record.push(0); // attributes
        put_varint(&mut record, 0); // timestamp delta
        put_varint(&mut record, 0); // offset delta
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, 1);
        record.push(b'x');
        put_varint(&mut record, 2); // two headers, same key
        for value in [Some(&b"a"[..]), None] {
            put_varint(&mut record, 1);
            record.push(b'h');
            match value {
                Some(v) => {
                    put_varint(&mut record, v.len() as i64);
                    record.extend_from_slice(v);
                }
                None => put_varint(&mut record, -1),
            }
        }
        let mut records = Vec::new();
        put_varint(&mut records, record.len() as i64);
        records.extend_from_slice(&record);
        let mut b = batch(Compression::None, &[5]);
        b.truncate(HEADER_SIZE);
        rebuild(&b, Codec::None, &records).expect("rebuild")
    }

    fn policy(target: Option<Codec>) -> ProducePolicy {
        ProducePolicy { target, ..ProducePolicy::default() }
    }

    #[test]
    fn recompression_keeps_every_record_byte_and_only_changes_the_header() {
        let original = duplicate_headers();
        let plain = original[HEADER_SIZE..].to_vec();
        for target in [Codec::Gzip(-1), Codec::Snappy, Codec::Lz4(9), Codec::Zstd(3)] {
            let out = prepare(&policy(Some(target)), &original, 0, 1 << 20).expect("prepare").expect("rewritten");
            let h = BatchHeader::parse(&out).expect("header");
            assert_eq!(h.compression(), target.id());
            assert_eq!(h.total_size(), out.len());
            h.verify_crc(&out).expect("crc");
            assert_eq!(&out[12..17], &original[12..17], "epoch and magic kept");
            assert_eq!(&out[ATTRIBUTES_OFFSET + 2..HEADER_SIZE], &original[ATTRIBUTES_OFFSET + 2..HEADER_SIZE]);
            let back = decompress(Codec::from_id(h.compression()).expect("codec"), &out[HEADER_SIZE..], 1 << 20).expect("decompress");
            assert_eq!(back, plain, "{target:?}");
            // And back to uncompressed: byte-identical to the original batch.
            let undone = prepare(&policy(Some(Codec::None)), &out, 0, 1 << 20).expect("prepare").expect("rewritten");
            assert_eq!(&undone[..], &original[..], "{target:?}");
        }
    }

    #[test]
    fn batches_in_the_topic_codec_or_under_producer_are_untouched() {
        let b = batch(Compression::Zstd, &[1, 2]);
        assert_eq!(prepare(&policy(Some(Codec::Zstd(3))), &b, 0, 1 << 20).expect("prepare"), None);
        assert_eq!(prepare(&policy(None), &b, 0, 1 << 20).expect("prepare"), None);
        let decoded = prepare(&policy(Some(Codec::Lz4(9))), &b, 0, 1 << 20).expect("prepare").expect("rewritten");
        let h = BatchHeader::parse(&decoded).expect("header");
        let (records, _) = records::decode_records(&h, &decoded.freeze(), 1 << 20).expect("decode");
        assert_eq!(records.iter().map(|r| r.timestamp(&h)).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn decompression_is_bounded() {
        let b = batch(Compression::Gzip, &[1; 50]);
        let err = prepare(&policy(Some(Codec::None)), &b, 0, 100).expect_err("too big");
        assert_eq!(err.response_error(), ResponseError::InvalidRecord);
    }

    #[test]
    fn create_time_out_of_bounds_is_invalid_timestamp() {
        let bounded = ProducePolicy { timestamp_before_max_ms: 1000, timestamp_after_max_ms: 10, ..ProducePolicy::default() };
        let now = 1_000_000;
        assert!(prepare(&bounded, &batch(Compression::None, &[now - 1000, now + 10]), now, 1 << 20).is_ok());
        for ts in [now - 1001, now + 11] {
            let err = prepare(&bounded, &batch(Compression::None, &[ts]), now, 1 << 20).expect_err("out of range");
            assert_eq!(err.response_error(), ResponseError::InvalidTimestamp);
        }
        let append_time = ProducePolicy { log_append_time: true, ..bounded };
        assert!(prepare(&append_time, &batch(Compression::None, &[0]), now, 1 << 20).is_ok());
        // A record older than the batch's first one, in any codec, is found too.
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let err = prepare(&bounded, &batch(compression, &[now, now - 5000, now]), now, 1 << 20).expect_err("old record");
            assert_eq!(err.response_error(), ResponseError::InvalidTimestamp, "{compression:?}");
        }
    }
}
