//! Magic-v2 record batches: the producer's encoder and the consumer's decoder.
//!
//! Kafka's record format keeps headers as an ordered list in which keys may repeat,
//! so headers are a `Vec<Header>` here and round-trip exactly (order, duplicates and
//! null values). Record layout inside a batch (after the 61-byte header, possibly
//! compressed):
//!
//! ```text
//! length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//! keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
//! headerCount varint | { keyLength varint | key (UTF-8) | valueLength varint (-1 = null) | value }*
//! ```
//!
//! Decoding never trusts a count or length from the wire to size an allocation: every
//! count is checked against the bytes that are actually present first, and
//! decompression is bounded by a [`DecodeBudget`].

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use storage::batch::{self as wire, BatchHeader, BatchIter};
use storage::compression::SNAPPY_XERIAL_HEADER;

use crate::error::{Error, Result};

/// `compression.type` of a record batch.
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

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Compression> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "snappy" => Ok(Compression::Snappy),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::InvalidConfig(format!(
                "compression must be none, gzip, snappy, lz4 or zstd, not {other:?}"
            ))),
        }
    }
}

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when it appended the record.
    LogAppendTime,
}

impl fmt::Display for TimestampType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Kafka's TimestampType.toString().
        f.write_str(match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        })
    }
}

/// One record header. Keys may repeat within a record; order is significant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key (UTF-8).
    pub key: String,
    /// Header value; `None` is a null value (length -1 on the wire).
    pub value: Option<Bytes>,
}

impl Header {
    /// A header.
    pub fn new(key: impl Into<String>, value: Option<Bytes>) -> Header {
        Header {
            key: key.into(),
            value,
        }
    }
}

/// One record of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset (`base_offset + offsetDelta`). Ignored by [`encode_batch`],
    /// which numbers records 0, 1, 2, … (brokers assign the real offsets).
    pub offset: i64,
    /// Timestamp in ms since the epoch (the batch's max timestamp under LogAppendTime).
    pub timestamp: i64,
    /// What the timestamp means. Ignored by [`encode_batch`] (producers write CreateTime).
    pub timestamp_type: TimestampType,
    /// Key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order, duplicates kept.
    pub headers: Vec<Header>,
}

/// Producer-side batch fields for [`encode_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Codec for the records section.
    pub compression: Compression,
    /// Producer id, -1 for none.
    pub producer_id: i64,
    /// Producer epoch, -1 for none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 for none.
    pub base_sequence: i32,
    /// Sets the transactional attribute bit.
    pub transactional: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
        }
    }
}

impl BatchOptions {
    /// Plain (non-idempotent) options with this codec.
    pub fn with_compression(compression: Compression) -> BatchOptions {
        BatchOptions {
            compression,
            ..BatchOptions::default()
        }
    }
}

/// Partition leader epoch written by producers (Kafka's `NO_PARTITION_LEADER_EPOCH`).
const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// Block size of xerial snappy streams (snappy-java's default).
const SNAPPY_BLOCK: usize = 32 * 1024;
/// The smallest possible record: length, attributes, timestamp delta, offset delta,
/// key length, value length and header count, one byte each.
const MIN_RECORD_SIZE: usize = 7;
/// The smallest possible header: key length and value length, one byte each.
const MIN_HEADER_SIZE: usize = 2;

/// Encodes `records` as one magic-v2 record batch with base offset 0.
///
/// Records get offset deltas 0, 1, 2, …; the base timestamp is the first record's
/// timestamp and the max timestamp the largest (as Kafka's producer does). Fails for
/// an empty slice or a field too long for its length prefix.
pub fn encode_batch(records: &[Record], options: &BatchOptions) -> Result<BytesMut> {
    let Some(first) = records.first() else {
        return Err(Error::protocol("cannot encode an empty record batch"));
    };
    let count = i32::try_from(records.len())
        .map_err(|_| Error::protocol("too many records for one batch"))?;
    let base_timestamp = first.timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);

    let mut plain = BytesMut::new();
    let mut body = Vec::new();
    for (delta, r) in records.iter().enumerate() {
        body.clear();
        encode_record_body(
            &mut body,
            r,
            r.timestamp.wrapping_sub(base_timestamp),
            delta,
        )?;
        put_varint(&mut plain, len_i32(body.len(), "record")?);
        plain.extend_from_slice(&body);
    }
    let payload = compress(options.compression, &plain)?;

    let mut attributes = i16::from(options.compression.id());
    if options.transactional {
        attributes |= wire::TRANSACTIONAL_MASK;
    }
    let total = wire::HEADER_SIZE + payload.len();
    let batch_length = len_i32(total - wire::LOG_OVERHEAD, "record batch")?;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_i64(0); // base offset
    buf.put_i32(batch_length);
    buf.put_i32(NO_PARTITION_LEADER_EPOCH);
    buf.put_i8(wire::MAGIC_V2);
    buf.put_u32(0); // CRC, filled in below
    buf.put_i16(attributes);
    buf.put_i32(count - 1); // last offset delta
    buf.put_i64(base_timestamp);
    buf.put_i64(max_timestamp);
    buf.put_i64(options.producer_id);
    buf.put_i16(options.producer_epoch);
    buf.put_i32(options.base_sequence);
    buf.put_i32(count);
    buf.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&buf[wire::ATTRIBUTES_OFFSET..]);
    buf[wire::CRC_OFFSET..wire::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

fn len_i32(len: usize, what: &str) -> Result<i32> {
    i32::try_from(len).map_err(|_| Error::protocol(format!("{what} of {len} bytes is too long")))
}

fn encode_record_body(
    out: &mut Vec<u8>,
    r: &Record,
    timestamp_delta: i64,
    offset_delta: usize,
) -> Result<()> {
    out.push(0); // attributes: unused in v2 records
    put_varlong(out, timestamp_delta);
    put_varint(out, len_i32(offset_delta, "offset delta")?);
    put_nullable(out, r.key.as_deref(), "key")?;
    put_nullable(out, r.value.as_deref(), "value")?;
    put_varint(out, len_i32(r.headers.len(), "header list")?);
    for h in &r.headers {
        put_varint(out, len_i32(h.key.len(), "header key")?);
        out.extend_from_slice(h.key.as_bytes());
        put_nullable(out, h.value.as_deref(), "header value")?;
    }
    Ok(())
}

fn put_nullable(out: &mut impl BufMut, b: Option<&[u8]>, what: &str) -> Result<()> {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, len_i32(b.len(), what)?);
            out.put_slice(b);
        }
    }
    Ok(())
}

fn put_uvarint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_varint(out: &mut impl BufMut, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

fn put_varlong(out: &mut impl BufMut, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn compress(codec: Compression, plain: &[u8]) -> Result<Vec<u8>> {
    let failed =
        |e: &dyn fmt::Display| Error::protocol(format!("cannot compress ({codec:?}): {e}"));
    match codec {
        Compression::None => Ok(plain.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(plain).map_err(|e| failed(&e))?;
            enc.finish().map_err(|e| failed(&e))
        }
        Compression::Snappy => {
            let mut out = SNAPPY_XERIAL_HEADER.to_vec();
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
                .level(4)
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
        Compression::Zstd => zstd::stream::encode_all(plain, 3).map_err(|e| failed(&e)),
    }
}

/// A bound on how many bytes decoding may decompress, shared by every batch decoded
/// with it (e.g. all partitions of one fetch response).
///
/// A batch that does not fit in what is left ends decoding quietly, so the caller
/// can come back for it later; one that does not fit even in an untouched budget is
/// an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudget {
    limit: usize,
    used: usize,
}

impl DecodeBudget {
    /// A budget of `limit` decompressed bytes.
    pub fn new(limit: usize) -> DecodeBudget {
        DecodeBudget { limit, used: 0 }
    }

    /// Decompressed bytes left.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.used)
    }

    /// Decompressed bytes used so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

/// One decoded record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record (`base_offset + lastOffsetDelta`); consumers move
    /// past it even when they skip the batch (control batches).
    pub last_offset: i64,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Codec of the records section.
    pub compression: Compression,
    /// Timestamp type of the batch (and of every record in it).
    pub timestamp_type: TimestampType,
    /// `baseTimestamp`.
    pub base_timestamp: i64,
    /// `maxTimestamp` (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Written inside a transaction.
    pub is_transactional: bool,
    /// A control batch (transaction marker); its records are markers, not data.
    pub is_control: bool,
    /// Size of the batch in the buffer it was read from.
    pub size_in_bytes: usize,
    /// The records, in order.
    pub records: Vec<Record>,
}

impl DecodedBatch {
    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset.saturating_add(1)
    }
}

/// Decodes every whole batch of `buf` (e.g. a fetched partition's records), with at
/// most `max_decompressed` bytes decompressed in all. A trailing partial batch is
/// ignored; decoding also stops quietly before a batch that no longer fits in the
/// budget (see [`DecodeBudget`]). Any malformed batch, bad CRC or unsupported magic
/// is an error.
pub fn decode_batches(buf: Bytes, max_decompressed: usize) -> Result<Vec<DecodedBatch>> {
    let mut budget = DecodeBudget::new(max_decompressed);
    Batches::new(buf, &mut budget).collect()
}

/// Iterates the batches of a buffer, decoding each; see [`decode_batches`]. After an
/// error it ends, so the batches before a bad one can still be used.
#[derive(Debug)]
pub struct Batches<'a> {
    buf: Bytes,
    pos: usize,
    budget: &'a mut DecodeBudget,
    done: bool,
}

impl<'a> Batches<'a> {
    /// Iterates the batches of `buf`, decompressing within `budget`.
    pub fn new(buf: Bytes, budget: &'a mut DecodeBudget) -> Batches<'a> {
        Batches {
            buf,
            pos: 0,
            budget,
            done: false,
        }
    }

    /// Position in the buffer of the next batch (after an error: of the bad batch).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn step(&mut self) -> Option<Result<DecodedBatch>> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (header, total) = match BatchIter::stop_at_partial_tail(rest).next()? {
            Ok(b) => (b.header, b.bytes.len()),
            Err(e) => {
                return Some(Err(Error::protocol(format!(
                    "bad record batch at byte {}: {e}",
                    self.pos
                ))))
            }
        };
        let bytes = self.buf.slice(self.pos..self.pos + total);
        match decode_one(&header, &bytes, self.budget.remaining()) {
            Ok((batch, decompressed)) => {
                self.budget.used = self.budget.used.saturating_add(decompressed);
                self.pos += total;
                Some(Ok(batch))
            }
            Err(DecodeError::OverBudget) if self.budget.used > 0 => None,
            Err(DecodeError::OverBudget) => Some(Err(Error::protocol(format!(
                "record batch at offset {} decompresses to more than {} bytes",
                header.base_offset, self.budget.limit
            )))),
            Err(DecodeError::Corrupt(why)) => Some(Err(Error::protocol(format!(
                "corrupt record batch at offset {}: {why}",
                header.base_offset
            )))),
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<DecodedBatch>;

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

#[derive(Debug)]
enum DecodeError {
    /// Decompressing would exceed the budget.
    OverBudget,
    Corrupt(String),
}

type DecodeResult<T> = std::result::Result<T, DecodeError>;

fn corrupt(why: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(why.into())
}

/// Decodes the whole batch `bytes` whose header is `h`; returns it and how many bytes
/// were decompressed.
fn decode_one(
    h: &BatchHeader,
    bytes: &Bytes,
    budget: usize,
) -> DecodeResult<(DecodedBatch, usize)> {
    h.verify_crc(bytes).map_err(|e| corrupt(e.to_string()))?;
    let codec = Compression::from_id(h.compression())
        .ok_or_else(|| corrupt(format!("unknown compression codec id {}", h.compression())))?;
    let section = bytes.slice(wire::HEADER_SIZE..);
    let (plain, decompressed) = match codec {
        Compression::None => (section, 0),
        c => {
            let plain = decompress(c, &section, budget)?;
            let n = plain.len();
            (Bytes::from(plain), n)
        }
    };
    let count = usize::try_from(h.record_count)
        .map_err(|_| corrupt(format!("negative record count {}", h.record_count)))?;
    if count > plain.len() / MIN_RECORD_SIZE {
        return Err(corrupt(format!(
            "record count {count} does not fit in {} bytes",
            plain.len()
        )));
    }
    let timestamp_type = match h.timestamp_type() {
        wire::TimestampType::CreateTime => TimestampType::CreateTime,
        wire::TimestampType::LogAppendTime => TimestampType::LogAppendTime,
    };
    let mut records = Vec::with_capacity(count);
    let mut at = 0usize;
    for i in 0..count {
        let r = decode_record(&plain, &mut at, h, timestamp_type).map_err(|e| match e {
            DecodeError::Corrupt(why) => corrupt(format!("record {i}: {why}")),
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
    let batch = DecodedBatch {
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
        partition_leader_epoch: h.partition_leader_epoch,
        compression: codec,
        timestamp_type,
        base_timestamp: h.base_timestamp,
        max_timestamp: h.max_timestamp,
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        is_transactional: h.is_transactional(),
        is_control: h.is_control(),
        size_in_bytes: bytes.len(),
        records,
    };
    Ok((batch, decompressed))
}

fn decode_record(
    plain: &Bytes,
    at: &mut usize,
    h: &BatchHeader,
    timestamp_type: TimestampType,
) -> DecodeResult<Record> {
    let len = read_varint(plain, at)?;
    let len = usize::try_from(len).map_err(|_| corrupt(format!("negative record length {len}")))?;
    let end = at
        .checked_add(len)
        .filter(|e| *e <= plain.len())
        .ok_or_else(|| corrupt(format!("record length {len} runs past the batch")))?;
    // Parse within the record's own bytes, so no field can run into the next record.
    let rec = plain.slice(..end);
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
        // As Kafka's consumer: invalid UTF-8 is replaced, not fatal.
        let key = String::from_utf8_lossy(&key).into_owned();
        let value = read_nullable(&rec, at)?;
        headers.push(Header { key, value });
    }
    if *at != end {
        return Err(corrupt(format!(
            "record length {len} does not match its {} bytes of fields",
            len - (end - *at)
        )));
    }
    let timestamp = match timestamp_type {
        TimestampType::LogAppendTime => h.max_timestamp,
        TimestampType::CreateTime => h.base_timestamp.wrapping_add(timestamp_delta),
    };
    Ok(Record {
        offset: h.base_offset.wrapping_add(i64::from(offset_delta)),
        timestamp,
        timestamp_type,
        key,
        value,
        headers,
    })
}

fn read_bytes(b: &Bytes, at: &mut usize, n: usize) -> DecodeResult<Bytes> {
    let end = at
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| corrupt(format!("field of {n} bytes runs past the record")))?;
    let out = b.slice(*at..end);
    *at = end;
    Ok(out)
}

/// A length-prefixed field; a negative length is null (as Kafka reads it).
fn read_nullable(b: &Bytes, at: &mut usize) -> DecodeResult<Option<Bytes>> {
    let n = read_varint(b, at)?;
    match usize::try_from(n) {
        Ok(n) => read_bytes(b, at, n).map(Some),
        Err(_) => Ok(None),
    }
}

fn read_uvarint(b: &[u8], at: &mut usize, max_bytes: usize) -> DecodeResult<u64> {
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

fn read_varint(b: &[u8], at: &mut usize) -> DecodeResult<i32> {
    let v = read_uvarint(b, at, 5)?;
    let v = u32::try_from(v).map_err(|_| corrupt("varint overflows 32 bits"))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn read_varlong(b: &[u8], at: &mut usize) -> DecodeResult<i64> {
    let v = read_uvarint(b, at, 10)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// Decompresses `data`, failing with [`DecodeError::OverBudget`] beyond `limit` bytes.
/// The codecs' streams are the storage crate's, which the broker validates with.
fn decompress(codec: Compression, data: &[u8], limit: usize) -> DecodeResult<Vec<u8>> {
    if codec == Compression::None {
        if data.len() > limit {
            return Err(DecodeError::OverBudget);
        }
        return Ok(data.to_vec());
    }
    let r = storage::compression::reader(codec.id(), data)
        .map_err(|e| corrupt(format!("cannot decompress ({codec:?}): {e}")))?;
    read_bounded(r, limit, codec)
}

/// Reads `r` to the end, growing the output by doubling and never past `limit + 1`.
fn read_bounded(mut r: impl Read, limit: usize, codec: Compression) -> DecodeResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            if filled > limit {
                return Err(DecodeError::OverBudget);
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
        return Err(DecodeError::OverBudget);
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    const BIG: usize = 64 << 20;

    fn rec(
        key: Option<&str>,
        value: Option<&str>,
        ts: i64,
        headers: &[(&str, Option<&str>)],
    ) -> Record {
        Record {
            offset: 0,
            timestamp: ts,
            timestamp_type: TimestampType::CreateTime,
            key: key.map(|k| Bytes::from(k.to_owned())),
            value: value.map(|v| Bytes::from(v.to_owned())),
            headers: headers
                .iter()
                .map(|(k, v)| Header::new(*k, v.map(|v| Bytes::from(v.to_owned()))))
                .collect(),
        }
    }

    /// The records as decoding should return them from a batch at `base`.
    fn numbered(records: &[Record], base: i64) -> Vec<Record> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                offset: base + i as i64,
                ..r.clone()
            })
            .collect()
    }

    fn one_batch(bytes: BytesMut) -> DecodedBatch {
        let mut batches = decode_batches(bytes.freeze(), BIG).expect("decodes");
        assert_eq!(batches.len(), 1);
        batches.remove(0)
    }

    fn sample() -> Vec<Record> {
        vec![
            rec(
                Some("k0"),
                Some("v0"),
                1_700_000_000_500,
                &[("a", Some("1")), ("b", None)],
            ),
            rec(None, Some("v1"), 1_700_000_000_000, &[]),
            rec(
                Some("k2"),
                None,
                1_700_000_000_900,
                &[("a", Some("x")), ("a", Some("y"))],
            ),
            rec(Some(""), Some(""), -5, &[("", Some(""))]),
        ]
    }

    /// Recomputes the CRC after a test edits a batch.
    fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[wire::ATTRIBUTES_OFFSET..]);
        b[wire::CRC_OFFSET..wire::CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn duplicate_header_keys_survive_in_order() {
        let headers = [
            ("trace", Some("1")),
            ("dup", Some("first")),
            ("other", None),
            ("dup", None),
            ("dup", Some("third")),
            ("trace", Some("2")),
        ];
        let records = vec![rec(Some("k"), Some("v"), 42, &headers)];
        for codec in CODECS {
            let b = one_batch(
                encode_batch(&records, &BatchOptions::with_compression(codec)).expect("encodes"),
            );
            assert_eq!(b.records, numbered(&records, 0), "{codec:?}");
            let keys: Vec<&str> = b.records[0]
                .headers
                .iter()
                .map(|h| h.key.as_str())
                .collect();
            assert_eq!(keys, ["trace", "dup", "other", "dup", "dup", "trace"]);
        }
    }

    #[test]
    fn every_codec_round_trips() {
        let mut records = sample();
        // Enough data for several snappy blocks and lz4 blocks.
        let big: String = (0..200_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        records.push(rec(
            Some("big"),
            Some(&big),
            1_700_000_001_000,
            &[("h", Some(&big[..70_000]))],
        ));
        for codec in CODECS {
            let bytes =
                encode_batch(&records, &BatchOptions::with_compression(codec)).expect("encodes");
            assert_eq!(&bytes[0..8], &[0u8; 8], "base offset 0");
            assert_eq!(bytes[wire::MAGIC_OFFSET], 2);
            let header = BatchHeader::parse(&bytes).expect("header");
            header.validate_fields().expect("consistent header");
            assert_eq!(header.compression(), codec.id());
            assert_eq!(header.producer_id, -1);
            assert_eq!(header.producer_epoch, -1);
            assert_eq!(header.base_sequence, -1);
            assert_eq!(header.partition_leader_epoch, -1);
            assert_eq!(
                header.base_timestamp, 1_700_000_000_500,
                "first record's timestamp"
            );
            assert_eq!(header.max_timestamp, 1_700_000_001_000);
            let b = one_batch(bytes);
            assert_eq!(b.compression, codec);
            assert_eq!((b.base_offset, b.last_offset), (0, 4));
            assert!(!b.is_control && !b.is_transactional);
            assert_eq!(b.records, numbered(&records, 0), "{codec:?}");
        }
    }

    #[test]
    fn producer_ids_and_transactional_bit_are_written() {
        let opts = BatchOptions {
            compression: Compression::Zstd,
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 1000,
            transactional: true,
        };
        let b = one_batch(encode_batch(&sample(), &opts).expect("encodes"));
        assert_eq!(
            (b.producer_id, b.producer_epoch, b.base_sequence),
            (77, 3, 1000)
        );
        assert!(b.is_transactional);
    }

    #[test]
    fn null_key_and_null_value_round_trip() {
        let records = vec![
            rec(None, None, 1, &[]),
            rec(Some(""), None, 2, &[("n", None)]),
            rec(None, Some(""), 3, &[("e", Some(""))]),
        ];
        for codec in CODECS {
            let b = one_batch(
                encode_batch(&records, &BatchOptions::with_compression(codec)).expect("encodes"),
            );
            assert_eq!(b.records, numbered(&records, 0), "{codec:?}");
            assert_eq!(b.records[0].key, None);
            assert_eq!(b.records[0].value, None);
            assert_eq!(b.records[1].key.as_deref(), Some(&b""[..]));
            assert_eq!(b.records[1].headers[0].value, None);
            assert_eq!(b.records[2].headers[0].value.as_deref(), Some(&b""[..]));
        }
    }

    #[test]
    fn partial_trailing_batch_is_ignored() {
        let mut data = BytesMut::new();
        for (base, codec) in [(10i64, Compression::None), (14, Compression::Lz4)] {
            let mut b =
                encode_batch(&sample(), &BatchOptions::with_compression(codec)).expect("encodes");
            b[0..8].copy_from_slice(&base.to_be_bytes()); // not covered by the CRC
            data.extend_from_slice(&b);
        }
        let whole = data.len();
        let tail = encode_batch(&sample(), &BatchOptions::default()).expect("encodes");
        for cut in [1, 11, 12, 60, 61, tail.len() - 1] {
            let mut buf = data.clone();
            buf.extend_from_slice(&tail[..cut]);
            let batches = decode_batches(buf.freeze(), BIG).expect("decodes");
            assert_eq!(batches.len(), 2, "cut at {cut}");
            assert_eq!(batches[0].records, numbered(&sample(), 10));
            assert_eq!(batches[1].records, numbered(&sample(), 14));
            assert_eq!(batches[1].next_offset(), 18);
        }
        let mut budget = DecodeBudget::new(BIG);
        let mut it = Batches::new(data.freeze(), &mut budget);
        assert!(it.by_ref().all(|b| b.is_ok()));
        assert_eq!(it.position(), whole);
    }

    #[test]
    fn bad_crc_is_rejected() {
        for codec in CODECS {
            let good =
                encode_batch(&sample(), &BatchOptions::with_compression(codec)).expect("encodes");
            let mut bad = good.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x01;
            let mut data = good.clone();
            data.extend_from_slice(&bad);
            let err = decode_batches(data.clone().freeze(), BIG).expect_err("bad CRC");
            assert!(err.to_string().contains("CRC"), "{err}");
            // The good batch before it is still usable.
            let mut budget = DecodeBudget::new(BIG);
            let got: Vec<_> = Batches::new(data.freeze(), &mut budget).collect();
            assert_eq!(got.len(), 2);
            assert!(got[0].is_ok() && got[1].is_err());
        }
    }

    #[test]
    fn lying_counts_do_not_allocate() {
        let started = Instant::now();
        for codec in CODECS {
            let good = encode_batch(
                &[rec(Some("k"), Some("v"), 1, &[("h", None)])],
                &BatchOptions::with_compression(codec),
            )
            .expect("encodes");
            for count in [i32::MAX, i32::MIN, 1 << 30, 2] {
                let mut b = good.clone();
                b[wire::RECORD_COUNT_OFFSET..wire::RECORD_COUNT_OFFSET + 4]
                    .copy_from_slice(&count.to_be_bytes());
                fix_crc(&mut b);
                assert!(
                    decode_batches(b.freeze(), BIG).is_err(),
                    "{codec:?}: record count {count}"
                );
            }
        }
        // A header count of 2^31 - 1 (the largest a varint holds) in a tiny record.
        let mut plain = Vec::new();
        let mut body = vec![0u8]; // attributes
        put_varlong(&mut body, 0);
        put_varint(&mut body, 0);
        put_varint(&mut body, -1);
        put_varint(&mut body, -1);
        put_varint(&mut body, i32::MAX);
        body.extend_from_slice(&[2, b'h', 1]);
        put_varint(&mut plain, body.len() as i32);
        plain.extend_from_slice(&body);
        let mut b =
            encode_batch(&[rec(None, None, 0, &[])], &BatchOptions::default()).expect("encodes");
        b.truncate(wire::HEADER_SIZE);
        b.extend_from_slice(&plain);
        let len = (b.len() - wire::LOG_OVERHEAD) as i32;
        b[wire::LENGTH_OFFSET..wire::LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut b);
        let err = decode_batches(b.freeze(), BIG).expect_err("lying header count");
        assert!(err.to_string().contains("header count"), "{err}");
        // A varint of 2^31 does not even fit.
        let mut at = 0;
        let mut v = Vec::new();
        put_uvarint(&mut v, 1 << 32);
        assert!(read_varint(&v, &mut at).is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn log_append_time_sets_every_timestamp() {
        let mut b = encode_batch(
            &sample(),
            &BatchOptions::with_compression(Compression::Gzip),
        )
        .expect("encodes");
        wire::set_max_timestamp(
            &mut b,
            wire::TimestampType::LogAppendTime,
            1_800_000_000_000,
        )
        .expect("patches");
        let b = one_batch(b);
        assert_eq!(b.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(b.records.len(), 4);
        for r in &b.records {
            assert_eq!(r.timestamp, 1_800_000_000_000);
            assert_eq!(r.timestamp_type, TimestampType::LogAppendTime);
        }
    }

    #[test]
    fn control_batches_are_flagged_with_their_offsets() {
        let mut b = encode_batch(
            &[rec(Some("\0\0\0\x01"), Some("\0\0\0\0\0\0"), 5, &[])],
            &BatchOptions::default(),
        )
        .expect("encodes");
        b[0..8].copy_from_slice(&41i64.to_be_bytes());
        b[wire::ATTRIBUTES_OFFSET + 1] |= (wire::CONTROL_MASK | wire::TRANSACTIONAL_MASK) as u8;
        fix_crc(&mut b);
        let b = one_batch(b);
        assert!(b.is_control && b.is_transactional);
        assert_eq!(
            (b.base_offset, b.last_offset, b.next_offset()),
            (41, 41, 42)
        );
    }

    #[test]
    fn decompression_is_bounded() {
        let zeros = "\0".repeat(1 << 20);
        let records = vec![rec(None, Some(&zeros), 0, &[])];
        for codec in CODECS.into_iter().skip(1) {
            let one =
                encode_batch(&records, &BatchOptions::with_compression(codec)).expect("encodes");
            assert!(one.len() < 100_000, "{codec:?} compresses zeros");
            // Alone over the limit: an error.
            assert!(
                decode_batches(one.clone().freeze(), 1 << 19).is_err(),
                "{codec:?}"
            );
            // Two batches, room for one: the first decodes, the second waits.
            let mut two = one.clone();
            two.extend_from_slice(&one);
            let got = decode_batches(two.freeze(), (1 << 20) + 4096).expect("decodes");
            assert_eq!(got.len(), 1, "{codec:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let good = encode_batch(
            &sample(),
            &BatchOptions::with_compression(Compression::None),
        )
        .expect("encodes");
        let mut seed = 0x1234_5678_u32;
        for _ in 0..2000 {
            let mut b = good.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = wire::HEADER_SIZE + (seed as usize >> 8) % (b.len() - wire::HEADER_SIZE);
                b[i] = (seed >> 3) as u8;
            }
            fix_crc(&mut b);
            let _ = decode_batches(b.freeze(), BIG);
        }
        for codec in CODECS.into_iter().skip(1) {
            let good =
                encode_batch(&sample(), &BatchOptions::with_compression(codec)).expect("encodes");
            for i in wire::HEADER_SIZE..good.len() {
                let mut b = good.clone();
                b[i] ^= 0x5a;
                fix_crc(&mut b);
                let _ = decode_batches(b.freeze(), BIG);
            }
        }
    }

    /// Interoperability with kafka_protocol's codec, for records without duplicate
    /// header keys (which it cannot represent).
    #[test]
    fn batches_interoperate_with_kafka_protocol() {
        use kafka_protocol::records::{
            Compression as KpCompression, RecordBatchDecoder, RecordBatchEncoder,
            RecordEncodeOptions,
        };
        let kp_codec = |c: Compression| match c {
            Compression::None => KpCompression::None,
            Compression::Gzip => KpCompression::Gzip,
            Compression::Snappy => KpCompression::Snappy,
            Compression::Lz4 => KpCompression::Lz4,
            Compression::Zstd => KpCompression::Zstd,
        };
        let records: Vec<Record> = sample()
            .into_iter()
            .filter(|r| r.headers.len() < 2 || r.headers[0].key != r.headers[1].key)
            .collect();
        for codec in CODECS {
            // Ours -> theirs.
            let bytes =
                encode_batch(&records, &BatchOptions::with_compression(codec)).expect("encodes");
            let sets = RecordBatchDecoder::decode_all(&mut bytes.clone().freeze())
                .expect("kafka_protocol decodes");
            assert_eq!(sets.len(), 1);
            let theirs = &sets[0].records;
            assert_eq!(theirs.len(), records.len());
            for (t, r) in theirs.iter().zip(&records) {
                assert_eq!(
                    (&t.key, &t.value, t.timestamp),
                    (&r.key, &r.value, r.timestamp),
                    "{codec:?}"
                );
                let th: Vec<Header> = t
                    .headers
                    .iter()
                    .map(|(k, v)| Header::new(k.to_string(), v.clone()))
                    .collect();
                assert_eq!(th, r.headers);
            }
            // Theirs -> ours.
            let kp: Vec<kafka_protocol::records::Record> = records
                .iter()
                .enumerate()
                .map(|(i, r)| kafka_protocol::records::Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: kafka_protocol::records::TimestampType::Creation,
                    offset: i as i64,
                    sequence: i as i32 - 1,
                    timestamp: r.timestamp,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                kafka_protocol::protocol::StrBytes::from_string(h.key.clone()),
                                h.value.clone(),
                            )
                        })
                        .collect(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                kp.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: kp_codec(codec),
                },
            )
            .expect("kafka_protocol encodes");
            let b = one_batch(buf);
            assert_eq!(b.records, numbered(&records, 0), "{codec:?}");
        }
    }
}
