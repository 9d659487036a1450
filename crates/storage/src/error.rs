//! The crate's one error type.
//!
//! Every variant maps to exactly one Kafka error code; the broker owns that
//! mapping, the variants document the intended code.

use std::path::PathBuf;

/// Errors returned by the storage layer.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    /// An operating-system I/O error on `path` (Kafka: KAFKA_STORAGE_ERROR).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation touched.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not a well-formed record batch: bad CRC, bad length
    /// framing, truncated batch, unknown compression (Kafka: CORRUPT_MESSAGE).
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// A well-framed batch whose fields contradict each other, e.g. a
    /// `lastOffsetDelta` that does not match `recordCount` or an empty batch
    /// (Kafka: INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A batch whose magic byte is not 2 (Kafka: UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("unsupported record batch magic {0} (only magic 2 is supported)")]
    UnsupportedMagic(i8),
    /// One batch larger than `max.message.bytes` (Kafka: MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The configured maximum (`max.message.bytes`).
        max: usize,
    },
    /// A read or truncation outside `[log_start, log_end]`
    /// (Kafka: OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset at the time of the request.
        log_start: i64,
        /// The log end offset at the time of the request.
        log_end: i64,
    },
    /// An idempotent producer's batch with an epoch older than the one the
    /// log knows for its producer id (Kafka: INVALID_PRODUCER_EPOCH).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// An idempotent producer's batch whose first sequence number does not
    /// follow the producer's last batch (Kafka: OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    /// No segment of the log in `dir` starts at `base_offset`, e.g. a log
    /// cleaner working from a stale segment list (Kafka: KAFKA_STORAGE_ERROR,
    /// never sent to clients).
    #[error("no segment with base offset {base_offset} in {}", dir.display())]
    NoSuchSegment {
        /// The log's directory.
        dir: PathBuf,
        /// The requested base offset.
        base_offset: i64,
    },
    /// [`crate::Log::replace_segments`] refused its arguments: a range that is
    /// not a run of inactive segments, or replacement batches that are
    /// malformed, fail their CRC or hold offsets out of order or outside the
    /// replaced segments. Nothing was changed (Kafka: KAFKA_STORAGE_ERROR,
    /// never sent to clients).
    #[error(
        "cannot replace segments {first_base:020}.log..={last_base:020}.log in {}: {reason}",
        dir.display()
    )]
    InvalidReplacement {
        /// The log's directory.
        dir: PathBuf,
        /// Base offset of the first segment to replace.
        first_base: i64,
        /// Base offset of the last segment to replace.
        last_base: i64,
        /// What is wrong.
        reason: String,
    },
}

impl From<records::Error> for StorageError {
    fn from(e: records::Error) -> StorageError {
        match e {
            records::Error::Corrupt(why) => StorageError::CorruptRecord(why),
            records::Error::UnsupportedMagic(magic) => StorageError::UnsupportedMagic(magic),
            records::Error::TooLarge { size, max } => StorageError::RecordTooLarge { size, max },
            // The log validates and patches batches; it neither decompresses
            // whole sections nor encodes records, so the rest are invalid input.
            e => StorageError::InvalidRecord(e.to_string()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// Builds a closure that wraps an `io::Error` with the path it concerns.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}
