//! Kafka's zigzag varints and varlongs (`ByteUtils`), as records use them.

use bytes::BufMut;

use crate::error::{corrupt, Result};

/// Appends `v` as an unsigned varint.
pub(crate) fn put_uvarint(out: &mut impl BufMut, mut v: u64) {
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

fn read_uvarint(b: &[u8], at: &mut usize, max_bytes: usize) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let byte = *b.get(*at).ok_or_else(|| corrupt("varint runs past the record"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt(format!("varint longer than {max_bytes} bytes")))
}

/// Reads a zigzag varint at `*at`, advancing it.
pub fn read_varint(b: &[u8], at: &mut usize) -> Result<i32> {
    let v = read_uvarint(b, at, 5)?;
    unzigzag32(v).ok_or_else(|| corrupt("varint overflows 32 bits"))
}

/// Reads a zigzag varlong at `*at`, advancing it.
pub fn read_varlong(b: &[u8], at: &mut usize) -> Result<i64> {
    let v = read_uvarint(b, at, 10)?;
    Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// The signed value of a zigzag-encoded 32-bit varint; None past 32 bits.
pub(crate) fn unzigzag32(v: u64) -> Option<i32> {
    let v = u32::try_from(v).ok()?;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varints_round_trip_at_their_limits() {
        for v in [0, 1, -1, 63, -64, 64, i32::MAX, i32::MIN] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut at = 0;
            assert_eq!(read_varint(&b, &mut at).unwrap(), v);
            assert_eq!(at, b.len());
        }
        for v in [0, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            let mut at = 0;
            assert_eq!(read_varlong(&b, &mut at).unwrap(), v);
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, 1 << 32);
        assert!(read_varint(&b, &mut 0).is_err(), "over 32 bits");
        assert!(read_varint(&[0x80, 0x80], &mut 0).is_err(), "runs past the end");
        assert!(read_varlong(&[0xff; 11], &mut 0).is_err(), "longer than 10 bytes");
    }
}
