//! The records inside magic-v2 batches, byte-preserving: compression codecs,
//! varints, record framing, and building a batch around a records section.
//!
//! Shared by the client (producer encoding, consumer decoding) and the broker's
//! log cleaner (which keeps some records of a batch and copies their bytes
//! verbatim). Kafka's record format keeps headers as an ordered list in which
//! keys may repeat, and nothing here ever turns them into a map. Record layout
//! inside a batch's records section (after the 61-byte header, possibly
//! compressed):
//!
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
//! headerCount varint | { keyLength varint | key | valueLength varint (-1 = null) | value }*
//! ```
//!
//! Decoding never trusts a count or length from the wire to size an
//! allocation: every count is checked against the bytes actually present, and
//! decompression stops at a caller-given limit.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::{self as wire, BatchHeader};

/// `compression.type` of a record batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (Kafka's xerial framing).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Every codec, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec id stored in attribute bits 0-2.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with this attribute id, if it is a known one.
    pub fn from_id(id: u8) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
}

/// A codec name that is none of Kafka's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compression must be none, gzip, snappy, lz4 or zstd, not {0:?}")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;
    fn from_str(s: &str) -> Result<Compression, UnknownCompression> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(UnknownCompression(other.to_owned())),
        }
    }
}

/// Why records could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Decompressing would exceed the caller's limit.
    #[error("the records decompress to more than the limit")]
    OverBudget,
    /// Bytes that are not what the format says (the reason is given).
    #[error("{0}")]
    Corrupt(String),
    /// A record or batch that cannot be written (a field too long, a codec failure).
    #[error("{0}")]
    Encode(String),
}

type CodecResult<T> = Result<T, CodecError>;

fn corrupt(why: impl Into<String>) -> CodecError {
    CodecError::Corrupt(why.into())
}

/// Partition leader epoch written by producers (Kafka's `NO_PARTITION_LEADER_EPOCH`).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Xerial snappy framing: 8 magic bytes, version 1, compatible version 1.
/// Block size of xerial snappy streams (snappy-java's default).
const SNAPPY_BLOCK: usize = 32 * 1024;
/// The smallest possible record: length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
const MIN_RECORD_SIZE: usize = 7;
/// The smallest possible header: key length and value length, one byte each.
const MIN_HEADER_SIZE: usize = 2;

// ---------------------------------------------------------------------------
// Varints (zigzag, as Kafka's ByteUtils).

fn put_uvarint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Appends `v` as a zigzag varint.
pub fn put_varint(out: &mut impl BufMut, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends `v` as a zigzag varlong.
pub fn put_varlong(out: &mut impl BufMut, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn read_uvarint(b: &[u8], at: &mut usize, max_bytes: usize) -> CodecResult<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *b
            .get(*at)
            .ok_or_else(|| corrupt("varint runs past the record"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt(format!("varint longer than {max_bytes} bytes")))
}

/// Reads a zigzag varint at `*at`, advancing it.
pub fn read_varint(b: &[u8], at: &mut usize) -> CodecResult<i32> {
    let v = read_uvarint(b, at, 5)?;
    let v = u32::try_from(v).map_err(|_| corrupt("varint overflows 32 bits"))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// Reads a zigzag varlong at `*at`, advancing it.
pub fn read_varlong(b: &[u8], at: &mut usize) -> CodecResult<i64> {
    let v = read_uvarint(b, at, 10)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

// ---------------------------------------------------------------------------
// Records.

/// One record header as stored: the key's bytes (UTF-8 by contract, not checked
/// here) and the value (`None`: null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    /// Header key bytes.
    pub key: Bytes,
    /// Header value; `None` is a null value (length -1).
    pub value: Option<Bytes>,
}

/// One record of a records section, with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order, duplicate keys kept.
    pub headers: Vec<RawHeader>,
    /// The whole record as framed in the section: its length varint and body.
    /// Copying these bytes into a batch with the same base offset and base
    /// timestamp keeps the record exactly as it was.
    pub bytes: Bytes,
}

fn len_i32(len: usize, what: &str) -> CodecResult<i32> {
    i32::try_from(len).map_err(|_| CodecError::Encode(format!("{what} of {len} bytes is too long")))
}

fn put_nullable(out: &mut impl BufMut, b: Option<&[u8]>, what: &str) -> CodecResult<()> {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len(), what)?);
            out.put_slice(b);
        }
    }
    Ok(())
}

/// Appends one framed record (length varint, then the body) to a records section.
pub fn write_record<'h>(
    out: &mut impl BufMut,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl ExactSizeIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
) -> CodecResult<()> {
    let mut body = Vec::new();
    body.push(0); // attributes: unused in v2 records
    put_varlong(&mut body, timestamp_delta);
    put_varint(&mut body, offset_delta);
    put_nullable(&mut body, key, "key")?;
    put_nullable(&mut body, value, "value")?;
    put_varint(&mut body, len_i32(headers.len(), "header list")?);
    for (k, v) in headers {
        put_varint(&mut body, len_i32(k.len(), "header key")?);
        body.extend_from_slice(k);
        put_nullable(&mut body, v, "header value")?;
    }
    put_varint(out, len_i32(body.len(), "record")?);
    out.put_slice(&body);
    Ok(())
}

fn read_bytes(b: &Bytes, at: &mut usize, n: usize) -> CodecResult<Bytes> {
    let end = at
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| corrupt(format!("field of {n} bytes runs past the record")))?;
    let out = b.slice(*at..end);
    *at = end;
    Ok(out)
}

/// A length-prefixed field; a negative length is null (as Kafka reads it).
fn read_nullable(b: &Bytes, at: &mut usize) -> CodecResult<Option<Bytes>> {
    let n = read_varint(b, at)?;
    match usize::try_from(n) {
        Ok(n) => read_bytes(b, at, n).map(Some),
        Err(_) => Ok(None),
    }
}

/// Parses the framed record at `*at` of a (decompressed) records section,
/// advancing `*at` past it. Every field must lie inside the record's length.
pub fn parse_record(section: &Bytes, at: &mut usize) -> CodecResult<RawRecord> {
    let start = *at;
    let len = read_varint(section, at)?;
    let len = usize::try_from(len).map_err(|_| corrupt(format!("negative record length {len}")))?;
    let end = at
        .checked_add(len)
        .filter(|e| *e <= section.len())
        .ok_or_else(|| corrupt(format!("record length {len} runs past the batch")))?;
    // Parse within the record's own bytes, so no field can run into the next record.
    let rec = section.slice(..end);
    let _attributes = read_bytes(&rec, at, 1)?;
    let timestamp_delta = read_varlong(&rec, at)?;
    let offset_delta = read_varint(&rec, at)?;
    let key = read_nullable(&rec, at)?;
    let value = read_nullable(&rec, at)?;
    let header_count = read_varint(&rec, at)?;
    let header_count = usize::try_from(header_count)
        .map_err(|_| corrupt(format!("negative header count {header_count}")))?;
    if header_count > (end - *at) / MIN_HEADER_SIZE {
        return Err(corrupt(format!(
            "header count {header_count} does not fit in {} bytes",
            end - *at
        )));
    }
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let key_len = read_varint(&rec, at)?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| corrupt(format!("negative header key length {key_len}")))?;
        let key = read_bytes(&rec, at, key_len)?;
        let value = read_nullable(&rec, at)?;
        headers.push(RawHeader { key, value });
    }
    if *at != end {
        return Err(corrupt(format!(
            "record length {len} does not match its {} bytes of fields",
            len - (end - *at)
        )));
    }
    Ok(RawRecord {
        offset_delta,
        timestamp_delta,
        key,
        value,
        headers,
        bytes: section.slice(start..end),
    })
}

/// The records of the whole batch `batch` (whose header is `header`), with at
/// most `limit` bytes decompressed; also returns how many bytes were
/// decompressed (0 for an uncompressed batch). Checks the CRC, the codec, that
/// the header's record count fits the bytes and that the records fill the
/// section exactly.
pub fn decode_records(
    header: &BatchHeader,
    batch: &Bytes,
    limit: usize,
) -> CodecResult<(Vec<RawRecord>, usize)> {
    header
        .verify_crc(batch)
        .map_err(|e| corrupt(e.to_string()))?;
    let codec = Compression::from_id(header.compression()).ok_or_else(|| {
        corrupt(format!(
            "unknown compression codec id {}",
            header.compression()
        ))
    })?;
    let section = batch.slice(wire::HEADER_SIZE.min(batch.len())..);
    let (plain, decompressed) = match codec {
        Compression::None => (section, 0),
        c => {
            let plain = decompress(c, &section, limit)?;
            let n = plain.len();
            (Bytes::from(plain), n)
        }
    };
    let count = usize::try_from(header.record_count)
        .map_err(|_| corrupt(format!("negative record count {}", header.record_count)))?;
    if count > plain.len() / MIN_RECORD_SIZE {
        return Err(corrupt(format!(
            "record count {count} does not fit in {} bytes",
            plain.len()
        )));
    }
    let mut records = Vec::with_capacity(count);
    let mut at = 0usize;
    for i in 0..count {
        let r = parse_record(&plain, &mut at).map_err(|e| match e {
            CodecError::Corrupt(why) => corrupt(format!("record {i}: {why}")),
            e => e,
        })?;
        records.push(r);
    }
    if at != plain.len() {
        return Err(corrupt(format!(
            "{} bytes left over after the {count} records the header announces",
            plain.len() - at
        )));
    }
    Ok((records, decompressed))
}

// ---------------------------------------------------------------------------
// Batches.

/// Builds a whole batch from `header`'s fields (base offset, leader epoch,
/// attributes, last offset delta, timestamps, producer id/epoch, base
/// sequence; `batch_length`, `crc` and `magic` are computed) holding
/// `record_count` records whose framed bytes are `records` (uncompressed),
/// compressed with the codec of the attributes.
pub fn write_batch(
    header: &BatchHeader,
    record_count: i32,
    records: &[u8],
) -> CodecResult<BytesMut> {
    let codec = Compression::from_id(header.compression()).ok_or_else(|| {
        CodecError::Encode(format!(
            "unknown compression codec id {}",
            header.compression()
        ))
    })?;
    let payload = match codec {
        Compression::None => None,
        c => Some(compress(c, records)?),
    };
    let payload = payload.as_deref().unwrap_or(records);
    let total = wire::HEADER_SIZE + payload.len();
    let batch_length = len_i32(total - wire::LOG_OVERHEAD, "record batch")?;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_i64(header.base_offset);
    buf.put_i32(batch_length);
    buf.put_i32(header.partition_leader_epoch);
    buf.put_i8(wire::MAGIC_V2);
    buf.put_u32(0); // CRC, filled in below
    buf.put_i16(header.attributes);
    buf.put_i32(header.last_offset_delta);
    buf.put_i64(header.base_timestamp);
    buf.put_i64(header.max_timestamp);
    buf.put_i64(header.producer_id);
    buf.put_i16(header.producer_epoch);
    buf.put_i32(header.base_sequence);
    buf.put_i32(record_count);
    buf.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buf[wire::ATTRIBUTES_OFFSET..]);
    buf[wire::CRC_OFFSET..wire::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

// ---------------------------------------------------------------------------
// Codecs.

/// Compresses a records section as Kafka's clients do for `codec`, at the
/// codec's default level.
pub fn compress(codec: Compression, plain: &[u8]) -> CodecResult<Vec<u8>> {
    compress_at(codec, None, plain)
}

/// Compresses a records section with `codec` at `level` (Kafka's
/// `compression.gzip/lz4/zstd.level`; None or a negative gzip level: the default).
pub fn compress_at(codec: Compression, level: Option<i32>, plain: &[u8]) -> CodecResult<Vec<u8>> {
    let failed =
        |e: &dyn fmt::Display| CodecError::Encode(format!("cannot compress ({codec:?}): {e}"));
    match codec {
        Compression::None => Ok(plain.to_vec()),
        Compression::Gzip => {
            let level = match level.and_then(|l| u32::try_from(l).ok()) {
                Some(l) => flate2::Compression::new(l),
                None => flate2::Compression::default(),
            };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
            enc.write_all(plain).map_err(|e| failed(&e))?;
            enc.finish().map_err(|e| failed(&e))
        }
        Compression::Snappy => {
            let mut out = crate::compression::SNAPPY_XERIAL_HEADER.to_vec();
            let mut enc = snap::raw::Encoder::new();
            let mut block = Vec::new();
            for chunk in plain.chunks(SNAPPY_BLOCK) {
                block.resize(snap::raw::max_compress_len(chunk.len()), 0);
                let n = enc.compress(chunk, &mut block).map_err(|e| failed(&e))?;
                let n32 = u32::try_from(n).map_err(|e| failed(&e))?;
                out.extend_from_slice(&n32.to_be_bytes());
                out.extend_from_slice(block.get(..n).unwrap_or_default());
            }
            Ok(out)
        }
        Compression::Lz4 => {
            // As Kafka's KafkaLZ4BlockOutputStream: 64 KiB independent blocks, no checksums.
            let mut enc = lz4::EncoderBuilder::new()
                .level(level.map_or(4, |l| u32::try_from(l).unwrap_or(0)))
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(|e| failed(&e))?;
            enc.write_all(plain).map_err(|e| failed(&e))?;
            let (out, r) = enc.finish();
            r.map_err(|e| failed(&e))?;
            Ok(out)
        }
        Compression::Zstd => zstd::stream::encode_all(plain, level.unwrap_or(3)).map_err(|e| failed(&e)),
    }
}

/// Decompresses `data`, failing with [`CodecError::OverBudget`] beyond `limit` bytes.
/// The codecs' streams are [`crate::compression::reader`]'s, shared with batch validation.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> CodecResult<Vec<u8>> {
    if codec == Compression::None && data.len() > limit {
        return Err(CodecError::OverBudget);
    }
    let stream = crate::compression::reader(codec.id(), data)
        .map_err(|e| corrupt(format!("cannot decompress ({codec:?}): {e}")))?;
    read_bounded(stream, limit, codec)
}

/// Reads `r` to the end, growing the output by doubling and never past `limit + 1`.
fn read_bounded(mut r: impl Read, limit: usize, codec: Compression) -> CodecResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            if filled > limit {
                return Err(CodecError::OverBudget);
            }
            let grow = filled.max(8 * 1024).min(limit + 1 - filled);
            out.reserve_exact(grow);
            out.resize(filled + grow, 0);
        }
        let Some(dst) = out.get_mut(filled..) else {
            break;
        };
        match r.read(dst) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(format!("cannot decompress ({codec:?}): {e}"))),
        }
    }
    if filled > limit {
        return Err(CodecError::OverBudget);
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CODECS: [Compression; 5] = Compression::ALL;

    fn header(codec: Compression, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 100,
            batch_length: 0,
            partition_leader_epoch: 7,
            magic: wire::MAGIC_V2,
            crc: 0,
            attributes: i16::from(codec.id()),
            last_offset_delta: count - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_009,
            producer_id: 5,
            producer_epoch: 1,
            base_sequence: 40,
            record_count: count,
        }
    }

    fn section(n: i32) -> BytesMut {
        let mut out = BytesMut::new();
        for i in 0..n {
            let key = format!("k{i}");
            let headers = [
                (&b"dup"[..], Some(&b"1"[..])),
                (&b"dup"[..], None),
                (&b""[..], Some(&b""[..])),
            ];
            let value = (i % 2 == 0).then_some(&b"value"[..]);
            write_record(
                &mut out,
                i64::from(i),
                i,
                Some(key.as_bytes()),
                value,
                headers.into_iter(),
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn a_written_batch_decodes_to_the_same_record_bytes_with_every_codec() {
        let plain = section(10);
        for codec in CODECS {
            let h = header(codec, 10);
            let batch = write_batch(&h, 10, &plain).unwrap().freeze();
            let parsed = BatchHeader::parse(&batch).unwrap();
            parsed.validate_fields().unwrap();
            assert_eq!(
                (parsed.base_offset, parsed.compression()),
                (100, codec.id())
            );
            assert_eq!(
                (
                    parsed.producer_id,
                    parsed.producer_epoch,
                    parsed.base_sequence
                ),
                (5, 1, 40)
            );
            let (records, decompressed) = decode_records(&parsed, &batch, 1 << 20).unwrap();
            assert_eq!(
                decompressed,
                if codec == Compression::None {
                    0
                } else {
                    plain.len()
                }
            );
            let copied: Vec<u8> = records.iter().flat_map(|r| r.bytes.to_vec()).collect();
            assert_eq!(
                copied,
                plain.to_vec(),
                "{codec:?}: record bytes are kept verbatim"
            );
            let r = &records[3];
            assert_eq!((r.offset_delta, r.timestamp_delta), (3, 3));
            assert_eq!(r.key.as_deref(), Some(&b"k3"[..]));
            assert_eq!(r.value, None);
            let keys: Vec<&[u8]> = r.headers.iter().map(|h| &h.key[..]).collect();
            assert_eq!(keys, [&b"dup"[..], b"dup", b""]);
            assert_eq!(r.headers[1].value, None);
            assert_eq!(r.headers[2].value.as_deref(), Some(&b""[..]));
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let zeros = vec![0u8; 1 << 20];
        for codec in CODECS.into_iter().skip(1) {
            let packed = compress(codec, &zeros).unwrap();
            assert!(packed.len() < 100_000, "{codec:?} compresses zeros");
            assert_eq!(
                decompress(codec, &packed, 1 << 19),
                Err(CodecError::OverBudget),
                "{codec:?}"
            );
            assert_eq!(decompress(codec, &packed, 1 << 20).unwrap().len(), 1 << 20);
        }
    }

    #[test]
    fn lying_counts_and_lengths_are_errors() {
        let plain = section(2);
        let good = write_batch(&header(Compression::None, 2), 2, &plain).unwrap();
        for count in [3i32, 1 << 30, -1] {
            let mut b = good.clone();
            b[wire::RECORD_COUNT_OFFSET..wire::RECORD_COUNT_OFFSET + 4]
                .copy_from_slice(&count.to_be_bytes());
            let crc = crc32c::crc32c(&b[wire::ATTRIBUTES_OFFSET..]);
            b[wire::CRC_OFFSET..wire::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            let parsed = BatchHeader::parse(&b).unwrap();
            assert!(
                decode_records(&parsed, &b.freeze(), 1 << 20).is_err(),
                "count {count}"
            );
        }
        let mut at = 0;
        let mut v = Vec::new();
        put_uvarint(&mut v, 1 << 32);
        assert!(read_varint(&v, &mut at).is_err());
    }

    #[test]
    fn codec_names_parse_as_kafka_spells_them() {
        assert_eq!("ZSTD".parse::<Compression>(), Ok(Compression::Zstd));
        assert_eq!(
            " uncompressed ".parse::<Compression>(),
            Ok(Compression::None)
        );
        assert!("brotli".parse::<Compression>().is_err());
    }
}
