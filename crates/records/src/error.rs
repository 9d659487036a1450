//! The crate's one error type.
//!
//! Each variant stands for one Kafka error code; the users own that mapping
//! (storage turns these into its `StorageError`, the broker into codes).
//! `Corrupt`, `Invalid` and `Encode` display only their reason: callers say
//! which batch.

/// Why bytes are not a record batch, or records cannot be read or written.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bytes that are not a well-formed record batch: bad CRC, bad length
    /// framing, truncated batch or record, unknown compression, a payload
    /// that does not decompress (Kafka: CORRUPT_MESSAGE).
    #[error("{0}")]
    Corrupt(String),
    /// A well-framed batch whose fields contradict each other or its records,
    /// e.g. a `lastOffsetDelta` that does not match `recordCount`
    /// (Kafka: INVALID_RECORD).
    #[error("{0}")]
    Invalid(String),
    /// A batch whose magic byte is not 2 (Kafka: UNSUPPORTED_FOR_MESSAGE_FORMAT).
    #[error("unsupported record batch magic {0} (only magic 2 is supported)")]
    UnsupportedMagic(i8),
    /// One batch larger than the caller's limit, `max.message.bytes`
    /// (Kafka: MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Size of the offending batch in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Decompressing would exceed the caller's limit.
    #[error("the records decompress to more than the limit")]
    OverBudget,
    /// A record or batch that cannot be written (a field too long, a codec failure).
    #[error("{0}")]
    Encode(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn corrupt(why: impl Into<String>) -> Error {
    Error::Corrupt(why.into())
}
