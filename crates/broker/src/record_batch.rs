//! Record batches the broker writes itself (group records; test data), encoded
//! as one batch with offsets from 0 that the log then assigns.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

/// One record to write: key, value (None: a tombstone) and timestamp.
pub(crate) type Entry = (Option<Bytes>, Option<Bytes>, i64);

/// Encodes `entries` as a single v2 record batch.
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
