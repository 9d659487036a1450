//! Per-log configuration, named after Kafka's settings.

use records::TimestampType;

/// Configuration of one partition log. Field docs name the Kafka broker
/// setting (and topic-level override) each one mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.segment.bytes` / `segment.bytes`: roll a new segment before an
    /// append would make the active one larger than this. Default 1 GiB.
    pub segment_bytes: u64,
    /// `log.roll.ms` / `segment.ms`: roll when the active segment's first
    /// append is older than this. Default 7 days.
    pub segment_ms: u64,
    /// `log.index.interval.bytes` / `index.interval.bytes`: add an index entry
    /// once more than this many bytes were appended since the last one.
    /// Default 4096.
    pub index_interval_bytes: u64,
    /// `log.index.size.max.bytes` / `segment.index.bytes`: roll when an index
    /// file would exceed this size. Default 10 MiB.
    pub segment_index_bytes: u64,
    /// `log.flush.interval.messages` / `flush.messages`: fsync after this many
    /// records. Default `u64::MAX` (never; rely on replication and the page
    /// cache, as Kafka does).
    pub flush_interval_messages: u64,
    /// `log.flush.interval.ms` / `flush.ms`: fsync when unflushed data is this
    /// old (checked by [`crate::Log::maybe_flush_by_time`]). Default `None`.
    pub flush_interval_ms: Option<u64>,
    /// `message.max.bytes` / `max.message.bytes`: largest accepted batch.
    /// Default 1048588.
    pub max_message_bytes: usize,
    /// `log.message.timestamp.type` / `message.timestamp.type`.
    /// Default CreateTime.
    pub timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_interval_messages: u64::MAX,
            flush_interval_ms: None,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
        }
    }
}
