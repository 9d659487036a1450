use thiserror::Error;

/// Errors of the metadata log and image.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The metadata log's storage failed.
    #[error("metadata log: {0}")]
    Storage(#[from] storage::StorageError),
    /// A record in the metadata log could not be decoded.
    #[error("metadata log {dir}: corrupt record at offset {offset}: {reason}")]
    CorruptRecord {
        /// The log's directory.
        dir: std::path::PathBuf,
        /// Offset of the bad record.
        offset: i64,
        /// What was wrong with it.
        reason: String,
    },
    /// A metadata checkpoint file could not be read or written.
    #[error("metadata checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A metadata snapshot could not be read or written.
    #[error("metadata snapshot {path}: {reason}")]
    Snapshot {
        /// The snapshot file (or its directory).
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No controller leader took the change: nothing was appended, it can be
    /// retried (Kafka's NOT_CONTROLLER).
    #[error("no active controller: {0}")]
    NotController(String),
    /// The change may or may not be committed, or it is committed but was not
    /// applied on this controller in time (Kafka's REQUEST_TIMED_OUT).
    #[error("metadata change outcome unknown: {0}")]
    CommitUncertain(String),
    /// A record could not be encoded.
    #[error("metadata log: cannot encode record: {0}")]
    Encode(String),
}

/// Result of metadata operations.
pub type Result<T> = std::result::Result<T, MetadataError>;
