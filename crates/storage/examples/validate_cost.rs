//! What validating a compressed batch's records costs on produce.
//!
//! Builds one producer-like batch per codec (records of `--record-size` bytes,
//! `--batch-bytes` of them uncompressed), then times `batch::validate` (header,
//! CRC, and the records streamed through the codec) against the header and CRC
//! checks alone (what was validated before compressed batches were walked).
//!
//!     cargo run --release -p potok-storage --example validate_cost [-- RECORD_SIZE BATCH_BYTES]
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use storage::batch::{self, BatchHeader, HEADER_SIZE};
use storage::compression::{self, GZIP, LZ4, NONE, SNAPPY, ZSTD};

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Records with somewhat compressible values, as a producer of JSON-ish data sends.
fn records(n: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let value: Vec<u8> = format!("{{\"id\":{i},\"payload\":\"{}\"}}", "abcdefgh".repeat(size / 8))
            .into_bytes()
            .into_iter()
            .take(size)
            .collect();
        let mut r = vec![0u8];
        varint(&mut r, 0);
        varint(&mut r, i as i64);
        varint(&mut r, -1);
        varint(&mut r, value.len() as i64);
        r.extend_from_slice(&value);
        varint(&mut r, 0);
        varint(&mut out, r.len() as i64);
        out.extend(r);
    }
    out
}

fn compress(codec: u8, data: &[u8]) -> Vec<u8> {
    match codec {
        NONE => data.to_vec(),
        GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        SNAPPY => {
            let mut out = compression::SNAPPY_XERIAL_HEADER.to_vec();
            for chunk in data.chunks(32 * 1024) {
                let b = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend(b);
            }
            out
        }
        LZ4 => {
            let mut e = lz4::EncoderBuilder::new().block_size(lz4::BlockSize::Max64KB).build(Vec::new()).unwrap();
            e.write_all(data).unwrap();
            let (out, r) = e.finish();
            r.unwrap();
            out
        }
        _ => zstd::stream::encode_all(data, 3).unwrap(),
    }
}

fn batch(codec: u8, n: usize, section: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + section.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&i16::from(codec).to_be_bytes());
    b.extend_from_slice(&(n as i32 - 1).to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(n as i32).to_be_bytes());
    b.extend_from_slice(section);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Mean time per call of `f`, run for about half a second.
fn time(mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < Duration::from_millis(500) {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let record_size = args.first().copied().unwrap_or(100);
    let batch_bytes = args.get(1).copied().unwrap_or(1 << 20);
    let n = (batch_bytes / (record_size + 8)).max(1);
    let plain = records(n, record_size);
    println!("{n} records of {record_size} bytes per batch ({} bytes uncompressed)", plain.len());
    println!("{:<7} {:>10} {:>16} {:>16} {:>14}", "codec", "batch", "header+CRC", "+ records", "records MB/s");
    for (name, codec) in [("none", NONE), ("gzip", GZIP), ("snappy", SNAPPY), ("lz4", LZ4), ("zstd", ZSTD)] {
        let b = batch(codec, n, &compress(codec, &plain));
        let before = time(|| {
            let h = BatchHeader::parse(&b).unwrap();
            h.validate_fields().unwrap();
            h.verify_crc(&b).unwrap();
        });
        let after = time(|| {
            batch::validate(&b, usize::MAX).unwrap();
        });
        let mb_s = plain.len() as f64 / after.as_secs_f64() / 1e6;
        println!(
            "{name:<7} {:>10} {:>13.1} µs {:>13.1} µs {:>14.0}",
            b.len(),
            before.as_secs_f64() * 1e6,
            after.as_secs_f64() * 1e6,
            mb_s
        );
        assert!(b.len() > HEADER_SIZE);
    }
}
