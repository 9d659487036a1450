//! Record batches the broker itself writes (group records; test data) and
//! reads record by record (replaying `__consumer_offsets`, compaction).

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One record to write: key, value (None: a tombstone) and timestamp.
pub(crate) type Entry = (Option<Bytes>, Option<Bytes>, i64);

/// Encodes `entries` as a single v2 record batch with offsets from 0 (the log
/// assigns the real ones).
pub(crate) fn encode(entries: impl IntoIterator<Item = Entry>, compression: Compression) -> Result<BytesMut, String> {
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch when offset - sequence changes.
            sequence: i as i32,
            timestamp,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Calls `f` with the decoded (decompressed) records of every batch from
/// `start` up to `end`, with the batch's compression; `read` gives whole
/// batches from an offset. Errors name the offset of the bad batch.
pub(crate) fn scan(
    mut read: impl FnMut(i64) -> crate::error::Result<Bytes>,
    start: i64,
    end: i64,
    mut f: impl FnMut(Vec<Record>, Compression) -> crate::error::Result<()>,
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
            let compression = match batch.header.compression() {
                1 => Compression::Gzip,
                2 => Compression::Snappy,
                3 => Compression::Lz4,
                4 => Compression::Zstd,
                _ => Compression::None,
            };
            let mut raw = chunk.slice(batch.position..batch.position + batch.bytes.len());
            let set = RecordBatchDecoder::decode(&mut raw).map_err(|e| corrupt(batch.header.base_offset, e.to_string()))?;
            f(set.records, compression)?;
            next = batch.header.next_offset();
        }
        if next <= offset {
            break; // nothing more to read (e.g. a gap at the end)
        }
        offset = next;
    }
    Ok(())
}
