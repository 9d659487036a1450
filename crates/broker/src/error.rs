//! The broker's errors and the one place they become Kafka error codes.

use kafka_protocol::error::ResponseError;
use storage::StorageError;
use thiserror::Error;

/// A failure while serving a request; [`BrokerError::code`] is what the client sees.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The partition's log refused or failed the operation.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The metadata log failed.
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    /// A precise Kafka error with a message for the client.
    #[error("{message}")]
    Kafka {
        /// The Kafka error.
        error: ResponseError,
        /// Why, for the client's error_message field.
        message: String,
    },
}

impl BrokerError {
    /// A Kafka error with a message.
    pub fn kafka(error: ResponseError, message: impl Into<String>) -> BrokerError {
        BrokerError::Kafka { error, message: message.into() }
    }

    /// The Kafka error this failure is reported as.
    pub fn response_error(&self) -> ResponseError {
        match self {
            BrokerError::Storage(e) => match e {
                StorageError::CorruptRecord(_) => ResponseError::CorruptMessage,
                StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
                StorageError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
                StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
                StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                StorageError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
                StorageError::OutOfOrderSequence(_) => ResponseError::OutOfOrderSequenceNumber,
                _ => ResponseError::KafkaStorageError,
            },
            BrokerError::Metadata(metadata::MetadataError::NotController(_)) => ResponseError::NotController,
            BrokerError::Metadata(metadata::MetadataError::CommitUncertain(_)) => ResponseError::RequestTimedOut,
            BrokerError::Metadata(_) => ResponseError::KafkaStorageError,
            BrokerError::Kafka { error, .. } => *error,
        }
    }

    /// The numeric Kafka error code.
    pub fn code(&self) -> i16 {
        self.response_error().code()
    }
}

/// Result of broker operations.
pub type Result<T> = std::result::Result<T, BrokerError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_without_leader_is_not_controller_and_an_unknown_outcome_a_timeout() {
        let not_controller = BrokerError::from(metadata::MetadataError::NotController("no leader".into()));
        assert_eq!(not_controller.response_error(), ResponseError::NotController);
        let uncertain = BrokerError::from(metadata::MetadataError::CommitUncertain("timed out".into()));
        assert_eq!(uncertain.response_error(), ResponseError::RequestTimedOut);
    }
}
