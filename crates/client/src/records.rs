//! Magic-v2 record batches: the producer's encoder and the consumer's decoder.
//!
//! Kafka's record format keeps headers as an ordered list in which keys may repeat,
//! so headers are a `Vec<Header>` here and round-trip exactly (order, duplicates and
//! null values). The byte-level work (codecs, varints, record framing, bounded
//! decompression) is the `records` crate's, which the broker's
//! log cleaner shares; this module adds the client's view of a record (absolute
//! offsets and timestamps, UTF-8 header keys) and a [`DecodeBudget`] shared by the
//! batches of one fetch.
//!
//! Decoding never trusts a count or length from the wire to size an allocation: every
//! count is checked against the bytes that are actually present first, and
//! decompression is bounded by a [`DecodeBudget`].

use bytes::{Bytes, BytesMut};
use records::batch::{BatchHeader, BatchIter};
use records::{BatchWriter, Error as CodecError};
pub use records::{BatchOptions, Compression, TimestampType};

use crate::error::{Error, Result};

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

fn encode_error(e: CodecError) -> Error {
    Error::protocol(e.to_string())
}

/// Encodes `records` as one magic-v2 record batch with base offset 0.
///
/// Records get offset deltas 0, 1, 2, …; the base timestamp is the first record's
/// timestamp and the max timestamp the largest (as Kafka's producer does). Fails for
/// an empty slice or a field too long for its length prefix.
pub fn encode_batch(records: &[Record], options: &BatchOptions) -> Result<BytesMut> {
    let mut batch = BatchWriter::new(*options);
    for r in records {
        let headers = r.headers.iter().map(|h| (h.key.as_bytes(), h.value.as_deref()));
        batch.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), headers).map_err(encode_error)?;
    }
    batch.finish().map_err(encode_error)
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
            Err(CodecError::OverBudget) if self.budget.used > 0 => None,
            Err(CodecError::OverBudget) => Some(Err(Error::protocol(format!(
                "record batch at offset {} decompresses to more than {} bytes",
                header.base_offset, self.budget.limit
            )))),
            Err(why) => Some(Err(Error::protocol(format!(
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

/// Decodes the whole batch `bytes` whose header is `h`; returns it and how many bytes
/// were decompressed.
fn decode_one(
    h: &BatchHeader,
    bytes: &Bytes,
    budget: usize,
) -> std::result::Result<(DecodedBatch, usize), CodecError> {
    let (raw, decompressed) = records::decode_records(h, bytes, budget)?;
    let compression = Compression::from_id(h.compression()).unwrap_or_default();
    let timestamp_type = h.timestamp_type();
    let records = raw
        .into_iter()
        .map(|r| Record {
            offset: r.offset(h),
            timestamp: r.timestamp(h),
            timestamp_type,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                // As Kafka's consumer: invalid UTF-8 is replaced, not fatal.
                .map(|hd| Header::new(String::from_utf8_lossy(&hd.key).into_owned(), hd.value))
                .collect(),
        })
        .collect();
    let batch = DecodedBatch {
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
        partition_leader_epoch: h.partition_leader_epoch,
        compression,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use records::batch as wire;
    use records::{put_varint, put_varlong};

    const CODECS: [Compression; 5] = Compression::ALL;
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
}
