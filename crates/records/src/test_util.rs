//! Test helpers: builds valid v2 record batches, uncompressed or compressed
//! (for this crate's tests and, with the `test-util` feature, other crates').
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write;

use crate::compression::{GZIP, LZ4, NONE, SNAPPY, SNAPPY_XERIAL_HEADER};

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A valid batch with `values.len()` records; record `i` has timestamp
/// `base_ts + i * ts_step` and a null key.
pub fn batch_with(_n: usize, base_ts: i64, values: &[&[u8]], ts_step: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut r = Vec::new();
        r.push(0u8); // attributes
        varint(&mut r, i as i64 * ts_step); // timestamp delta
        varint(&mut r, i as i64); // offset delta
        varint(&mut r, -1); // null key
        varint(&mut r, v.len() as i64);
        r.extend_from_slice(v);
        varint(&mut r, 0); // no headers
        varint(&mut records, r.len() as i64);
        records.extend(r);
    }
    let n = values.len() as i32;
    let max_ts = base_ts + (i64::from(n.max(1)) - 1) * ts_step;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A valid batch of `n` records of 10 bytes each, all with timestamp `ts`.
pub fn batch(n: usize, ts: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("value-{i:04}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    batch_with(n, ts, &refs, 0)
}

/// A valid batch of one record whose value is `size` bytes.
pub fn sized_batch(size: usize, ts: i64) -> Vec<u8> {
    let v = vec![b'x'; size];
    batch_with(1, ts, &[&v], 0)
}

/// `data` compressed with `codec` (snappy in xerial framing of 1000-byte blocks).
pub fn compress(codec: u8, data: &[u8]) -> Vec<u8> {
    match codec {
        NONE => data.to_vec(),
        GZIP => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        }
        SNAPPY => {
            let mut out = SNAPPY_XERIAL_HEADER.to_vec();
            for chunk in data.chunks(1000) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        LZ4 => {
            let mut enc = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
            enc.write_all(data).unwrap();
            let (out, r) = enc.finish();
            r.unwrap();
            out
        }
        _ => zstd::stream::encode_all(data, 3).unwrap(),
    }
}

/// `batch` (uncompressed) with its records section replaced by `section`, the
/// codec bits set to `codec`, and, if given, a record count of `claimed` (with a
/// matching last offset delta); length and CRC are fixed up.
pub fn with_section(batch: &[u8], codec: u8, section: &[u8], claimed: Option<i32>) -> Vec<u8> {
    let mut b = batch[..61].to_vec();
    b.extend_from_slice(section);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    b[21..23].copy_from_slice(&i16::from(codec).to_be_bytes());
    if let Some(n) = claimed {
        b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
        b[57..61].copy_from_slice(&n.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A valid batch of `n` records compressed with `codec`.
pub fn compressed_batch(n: usize, codec: u8) -> Vec<u8> {
    let plain = batch(n, 0);
    with_section(&plain, codec, &compress(codec, &plain[61..]), None)
}
