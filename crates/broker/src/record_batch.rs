//! Record batches the broker itself writes (group records; test data) and
//! reads record by record (replaying `__consumer_offsets`, compaction), with
//! the `records` crate's codec.

use bytes::{Bytes, BytesMut};
use records::{BatchHeader, BatchOptions, BatchWriter, Compression, RawRecord};

/// The most one batch read record by record may decompress to.
pub(crate) const MAX_DECOMPRESSED: usize = 256 << 20;

/// One record to write: key, value (None: a tombstone) and timestamp.
pub(crate) type Entry = (Option<Bytes>, Option<Bytes>, i64);

/// Encodes `entries` as a single v2 record batch with offsets from 0 (the log
/// assigns the real ones).
pub(crate) fn encode(entries: impl IntoIterator<Item = Entry>, compression: Compression) -> Result<BytesMut, String> {
    let mut batch = BatchWriter::new(BatchOptions::with_compression(compression));
    for (key, value, timestamp) in entries {
        batch.push(timestamp, key.as_deref(), value.as_deref(), std::iter::empty()).map_err(|e| e.to_string())?;
    }
    batch.finish().map_err(|e| e.to_string())
}

/// Calls `f` with the header and the decoded (decompressed) records of every
/// batch from `start` up to `end`; `read` gives whole batches from an offset.
/// Errors name the offset of the bad batch.
pub(crate) fn scan(
    mut read: impl FnMut(i64) -> crate::error::Result<Bytes>,
    start: i64,
    end: i64,
    mut f: impl FnMut(&BatchHeader, Vec<RawRecord>) -> crate::error::Result<()>,
) -> crate::error::Result<()> {
    let corrupt = |offset: i64, reason: String| {
        crate::error::BrokerError::kafka(
            kafka_protocol::error::ResponseError::CorruptMessage,
            format!("corrupt record batch at offset {offset}: {reason}"),
        )
    };
    let mut offset = start;
    while offset < end {
        let chunk = read(offset)?;
        let mut next = offset;
        for batch in records::BatchIter::stop_at_partial_tail(&chunk) {
            let batch = batch.map_err(|e| corrupt(next, e.to_string()))?;
            let bytes = chunk.slice(batch.position..batch.position + batch.bytes.len());
            let (records, _) = records::decode_records(&batch.header, &bytes, MAX_DECOMPRESSED)
                .map_err(|e| corrupt(batch.header.base_offset, e.to_string()))?;
            f(&batch.header, records)?;
            next = batch.header.next_offset();
        }
        if next <= offset {
            break; // nothing more to read (e.g. a gap at the end)
        }
        offset = next;
    }
    Ok(())
}
