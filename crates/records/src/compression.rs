//! Kafka's compression codecs: the codec ids of a batch's attributes, their
//! streaming decompressors, and compression as Kafka's clients do it.
//!
//! The broker validates compressed batches by streaming their records through
//! [`reader`]: nothing is materialised, memory is the decoder's own window plus
//! a few kilobytes, whatever the batch claims. Whole-section decompression
//! ([`decompress`], for the client, the cleaner and recompression) uses the same
//! readers and stops at a caller-given limit.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::str::FromStr;

use crate::error::{corrupt, Error, Result};

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

/// Block size of xerial snappy streams (snappy-java's default).
const SNAPPY_BLOCK: usize = 32 * 1024;

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
    fn from_str(s: &str) -> std::result::Result<Compression, UnknownCompression> {
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

/// A buffered reader over a compressed records section, for
/// [`crate::walk_records`].
pub fn buffered<'a>(codec: u8, data: &'a [u8]) -> io::Result<BufReader<Box<dyn Read + 'a>>> {
    Ok(BufReader::with_capacity(16 * 1024, reader(codec, data)?))
}

/// Compresses a records section as Kafka's clients do for `codec`, at the
/// codec's default level.
pub fn compress(codec: Compression, plain: &[u8]) -> Result<Vec<u8>> {
    compress_at(codec, None, plain)
}

/// Compresses a records section with `codec` at `level` (Kafka's
/// `compression.gzip/lz4/zstd.level`; None or a negative gzip level: the default).
pub fn compress_at(codec: Compression, level: Option<i32>, plain: &[u8]) -> Result<Vec<u8>> {
    let failed =
        |e: &dyn fmt::Display| Error::Encode(format!("cannot compress ({codec:?}): {e}"));
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

/// Decompresses `data`, failing with [`Error::OverBudget`] beyond `limit` bytes.
/// The codecs' streams are [`reader`]'s, shared with batch validation.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>> {
    if codec == Compression::None && data.len() > limit {
        return Err(Error::OverBudget);
    }
    let stream = reader(codec.id(), data)
        .map_err(|e| corrupt(format!("cannot decompress ({codec:?}): {e}")))?;
    read_bounded(stream, limit, codec)
}

/// Reads `r` to the end, growing the output by doubling and never past `limit + 1`.
fn read_bounded(mut r: impl Read, limit: usize, codec: Compression) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            if filled > limit {
                return Err(Error::OverBudget);
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
        return Err(Error::OverBudget);
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_codec_round_trips_and_decompression_is_bounded() {
        let zeros = vec![0u8; 1 << 20];
        for codec in Compression::ALL.into_iter().skip(1) {
            let packed = compress(codec, &zeros).unwrap();
            assert!(packed.len() < 100_000, "{codec:?} compresses zeros");
            assert_eq!(decompress(codec, &packed, 1 << 19), Err(Error::OverBudget), "{codec:?}");
            assert_eq!(decompress(codec, &packed, 1 << 20).unwrap(), zeros, "{codec:?}");
            assert_eq!(Compression::from_id(codec.id()), Some(codec));
        }
        assert_eq!(decompress(Compression::None, &zeros, 10), Err(Error::OverBudget));
        assert!(reader(5, &zeros).is_err(), "unknown codec id");
    }

    #[test]
    fn codec_names_parse_as_kafka_spells_them() {
        assert_eq!("ZSTD".parse::<Compression>(), Ok(Compression::Zstd));
        assert_eq!(" uncompressed ".parse::<Compression>(), Ok(Compression::None));
        assert!("brotli".parse::<Compression>().is_err());
    }
}
