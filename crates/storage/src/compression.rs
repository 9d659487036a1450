//! Kafka's compression codecs as streams, and the walk over a batch's records.
//!
//! The broker validates compressed batches by streaming their records through
//! the decompressor: nothing is materialised, memory is the decoder's own
//! window plus a few kilobytes, whatever the batch claims. The client decodes
//! fetched batches with the same readers (bounded by its own budget).

use std::io::{self, BufRead, BufReader, Read};

/// Codec ids of the batch attributes (`attributes & 7`).
pub const NONE: u8 = 0;
/// gzip (RFC 1952; concatenated members are read as one stream, as Java's
/// `GZIPInputStream` does).
pub const GZIP: u8 = 1;
/// snappy, in snappy-java's xerial framing or raw.
pub const SNAPPY: u8 = 2;
/// lz4 frame format.
pub const LZ4: u8 = 3;
/// zstd.
pub const ZSTD: u8 = 4;

/// The xerial snappy stream header: 8 magic bytes, version 1, compatible version 1.
pub const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// A snappy block never expands by more than this factor (a 3-byte copy
/// element yields at most 64 bytes), so a block claiming more is refused
/// before its output is allocated.
const SNAPPY_MAX_EXPANSION: usize = 22;

/// A streaming decompressor of `data` compressed with `codec` (an attributes
/// codec id). `NONE` reads `data` as is. Errors: unknown codec, or a stream
/// whose header is already unreadable (lz4, zstd).
pub fn reader<'a>(codec: u8, data: &'a [u8]) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        NONE => Box::new(data),
        GZIP => Box::new(flate2::read::MultiGzDecoder::new(data)),
        SNAPPY => Box::new(SnappyReader::new(data)),
        LZ4 => Box::new(lz4::Decoder::new(data)?),
        // The decoder refuses frames whose window is over zstd's default limit
        // of 2^27 bytes, which bounds its memory.
        ZSTD => Box::new(zstd::stream::read::Decoder::with_buffer(data)?),
        other => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unknown compression codec id {other}")))
        }
    })
}

/// Kafka's snappy, one block decompressed at a time: xerial framing (the
/// 16-byte header, then blocks each prefixed with its compressed length), or
/// raw snappy without the header, as snappy-java reads it.
struct SnappyReader<'a> {
    rest: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    pos: usize,
    decoder: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8]) -> SnappyReader<'a> {
        let framed = data.starts_with(&SNAPPY_XERIAL_HEADER[..8]);
        SnappyReader { rest: data, framed, block: Vec::new(), pos: 0, decoder: snap::raw::Decoder::new() }
    }

    /// Decompresses the next block into `self.block`; false at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        if self.rest.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            if let Some(tail) = self.rest.strip_prefix(&SNAPPY_XERIAL_HEADER[..8]) {
                // The header (again, for concatenated streams) carries no data.
                self.rest = tail.get(8..).ok_or_else(|| bad("truncated xerial snappy header".into()))?;
                return Ok(true);
            }
            let (len, tail) =
                self.rest.split_first_chunk::<4>().ok_or_else(|| bad("truncated snappy block length".into()))?;
            let len = u32::from_be_bytes(*len) as usize;
            if len > tail.len() {
                return Err(bad(format!("snappy block of {len} bytes but {} remain", tail.len())));
            }
            let (compressed, tail) = tail.split_at(len);
            self.rest = tail;
            compressed
        } else {
            std::mem::take(&mut self.rest)
        };
        let n = snap::raw::decompress_len(compressed).map_err(|e| bad(e.to_string()))?;
        if n > compressed.len().saturating_mul(SNAPPY_MAX_EXPANSION).saturating_add(64) {
            return Err(bad(format!("snappy block of {} bytes claims {n} bytes", compressed.len())));
        }
        self.block.resize(n, 0);
        let written = self.decoder.decompress(compressed, &mut self.block).map_err(|e| bad(e.to_string()))?;
        self.block.truncate(written);
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let available = self.block.get(self.pos..).unwrap_or_default();
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// Why a record walk failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// The stream itself is broken: the payload does not decompress.
    Stream(String),
    /// A record's framing is broken: its length runs past the data or is
    /// shorter than its fields, or its offset delta is out of sequence.
    Records(String),
    /// Well-framed records, but not as many as the header claims.
    Count(String),
}

/// Walks the length-prefixed records read from `records` (a batch's records
/// section, decompressed; a `&[u8]` for an uncompressed batch, a `BufReader`
/// over [`reader`] for a compressed one) as Kafka's validator does, without
/// keeping any: each record's length, attributes, timestamp delta and offset
/// delta, then skips its body. The records must be exactly `claimed` many; with
/// `check_offsets`, record `i` must carry offset delta `i` (Kafka's rule for
/// compressed batches). Stops at the first record past `claimed`.
pub fn walk_records(mut r: impl BufRead, claimed: i32, check_offsets: bool) -> Result<(), WalkError> {
    let claimed = i64::from(claimed);
    let mut held = 0i64;
    loop {
        // A clean end of data between records ends the walk.
        if r.fill_buf().map_err(stream_error)?.is_empty() {
            break;
        }
        if held == claimed {
            return Err(WalkError::Count(format!("batch header claims {claimed} records but more are present")));
        }
        let len = zigzag32(read_varint(&mut r, 5)?)?;
        let len = u64::try_from(len)
            .map_err(|_| WalkError::Records(format!("record {held} has a negative length {len}")))?;
        let (_attributes, a) = (next_byte(&mut r)?.ok_or_else(|| premature_end(held))?, 1u64);
        let (_timestamp_delta, t) = read_varint_counted(&mut r, 10)?;
        let (offset_delta, o) = read_varint_counted(&mut r, 5)?;
        let offset_delta = zigzag32(offset_delta)?;
        let used = a + t + o;
        if used > len {
            return Err(WalkError::Records(format!("record {held} of {len} bytes is shorter than its fields")));
        }
        if check_offsets && i64::from(offset_delta) != held {
            return Err(WalkError::Records(format!(
                "record {held} inside the compressed batch has offset delta {offset_delta}: offsets must be consecutive"
            )));
        }
        skip(&mut r, len - used, held)?;
        held += 1;
    }
    if held != claimed {
        return Err(WalkError::Count(format!("batch header claims {claimed} records but holds {held}")));
    }
    Ok(())
}

/// A buffered reader over a compressed records section, for [`walk_records`].
pub fn buffered<'a>(codec: u8, data: &'a [u8]) -> io::Result<BufReader<Box<dyn Read + 'a>>> {
    Ok(BufReader::with_capacity(16 * 1024, reader(codec, data)?))
}

fn stream_error(e: io::Error) -> WalkError {
    WalkError::Stream(e.to_string())
}

fn premature_end(record: i64) -> WalkError {
    WalkError::Records(format!("record {record} runs past the end of the records"))
}

/// The next byte, None at the end of the data.
fn next_byte(r: &mut impl BufRead) -> Result<Option<u8>, WalkError> {
    let b = match r.fill_buf().map_err(stream_error)?.first() {
        Some(&b) => b,
        None => return Ok(None),
    };
    r.consume(1);
    Ok(Some(b))
}

/// Skips `n` bytes without copying them out of the reader's buffer.
fn skip(r: &mut impl BufRead, mut n: u64, record: i64) -> Result<(), WalkError> {
    while n > 0 {
        let available = r.fill_buf().map_err(stream_error)?.len();
        if available == 0 {
            return Err(premature_end(record));
        }
        let k = available.min(usize::try_from(n).unwrap_or(usize::MAX));
        r.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// An unsigned varint of at most `max_bytes` bytes.
fn read_varint(r: &mut impl BufRead, max_bytes: usize) -> Result<u64, WalkError> {
    read_varint_counted(r, max_bytes).map(|(v, _)| v)
}

/// An unsigned varint of at most `max_bytes` bytes and how many it took.
fn read_varint_counted(r: &mut impl BufRead, max_bytes: usize) -> Result<(u64, u64), WalkError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = next_byte(r)?
            .ok_or_else(|| WalkError::Records("a record's varint runs past the end of the records".into()))?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i as u64 + 1));
        }
    }
    Err(WalkError::Records(format!("varint longer than {max_bytes} bytes in a record")))
}

fn zigzag32(v: u64) -> Result<i32, WalkError> {
    let v = u32::try_from(v).map_err(|_| WalkError::Records("varint overflows 32 bits in a record".into()))?;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::compress;

    /// Uncompressed records section of `n` records with consecutive offset deltas.
    fn records(n: usize, deltas: impl Fn(usize) -> u8) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            // attributes, timestamp delta 0, offset delta (zigzag), key null, value "v", 0 headers
            let body = [0u8, 0, deltas(i) << 1, 1, 2, b'v', 0];
            out.push((body.len() as u8) << 1);
            out.extend_from_slice(&body);
        }
        out
    }

    fn walk(codec: u8, data: &[u8], claimed: i32) -> Result<(), WalkError> {
        let r = buffered(codec, data).map_err(stream_error)?;
        walk_records(r, claimed, true)
    }

    #[test]
    fn every_codec_streams_the_records_it_holds() {
        // Offset deltas wrap at 64: record 64 is out of sequence.
        let plain = records(300, |i| (i % 64) as u8);
        let good = records(60, |i| i as u8);
        for codec in [NONE, GZIP, SNAPPY, LZ4, ZSTD] {
            let data = compress(codec, &good);
            walk(codec, &data, 60).unwrap_or_else(|e| panic!("codec {codec}: {e:?}"));
            // A lying count either way is a records error.
            assert!(matches!(walk(codec, &data, 61), Err(WalkError::Count(_))), "codec {codec}");
            assert!(matches!(walk(codec, &data, 3), Err(WalkError::Count(_))), "codec {codec}");
            assert!(matches!(walk(codec, &data, i32::MAX), Err(WalkError::Count(_))), "codec {codec}");
            // Non-consecutive offset deltas.
            let data = compress(codec, &plain);
            assert!(matches!(walk(codec, &data, 300), Err(WalkError::Records(_))), "codec {codec}");
        }
    }

    #[test]
    fn a_payload_that_does_not_decompress_is_a_stream_error() {
        let garbage = b"this is not compressed at all, not even a little".to_vec();
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            assert!(matches!(walk(codec, &garbage, 1), Err(WalkError::Stream(_))), "codec {codec}");
        }
        // Truncated streams too.
        let data = compress(GZIP, &records(10, |i| i as u8));
        assert!(matches!(walk(GZIP, &data[..data.len() / 2], 10), Err(WalkError::Stream(_))));
    }

    #[test]
    fn a_record_running_past_the_end_is_a_records_error() {
        let mut plain = records(2, |i| i as u8);
        plain.truncate(plain.len() - 3);
        assert!(matches!(walk(GZIP, &compress(GZIP, &plain), 2), Err(WalkError::Records(_))));
        let huge_len = [0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0];
        assert!(matches!(walk(GZIP, &compress(GZIP, &huge_len), 1), Err(WalkError::Records(_))));
    }

    #[test]
    fn a_snappy_block_claiming_a_huge_size_allocates_nothing() {
        // varint 0xffffffff (4 GiB - 1) then nothing.
        let raw = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(walk(SNAPPY, &raw, 1), Err(WalkError::Stream(_))));
    }
}
