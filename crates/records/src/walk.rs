//! The walk over a batch's records that validation does: each record's framing
//! checked, its body skipped, nothing kept.
//!
//! An uncompressed batch is walked in place; a compressed one through its
//! streaming decompressor ([`crate::compression::buffered`]), so memory is the
//! decoder's window plus a few kilobytes, whatever the batch claims.

use std::io::{self, BufRead};

use crate::varint::unzigzag32;

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
    unzigzag32(v).ok_or_else(|| WalkError::Records("varint overflows 32 bits in a record".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::{buffered, GZIP, NONE, SNAPPY, LZ4, ZSTD};
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
