//! The client's one error type, and Kafka error codes as typed errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Could not open a TCP connection to a broker.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The `host:port` we tried.
        addr: String,
        /// What the operating system said (part of the message, so not a `source`).
        error: Arc<std::io::Error>,
    },
    /// Reading from or writing to an open connection failed.
    #[error("I/O error talking to {addr}: {error}")]
    Io {
        /// The broker's `host:port`.
        addr: String,
        /// What the operating system said (part of the message, so not a `source`).
        error: Arc<std::io::Error>,
    },
    /// The connection closed before the response arrived.
    #[error("connection to {addr} closed")]
    Disconnected {
        /// The broker's `host:port`.
        addr: String,
    },
    /// A request or response could not be encoded or decoded, or broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker's response frame is larger than the client accepts.
    #[error("response of {size} bytes from {addr} exceeds the limit of {max} bytes")]
    ResponseTooLarge {
        /// The broker's `host:port`.
        addr: String,
        /// The size the frame announced.
        size: i64,
        /// The configured limit.
        max: usize,
    },
    /// Client and broker share no version of an API.
    #[error("broker {addr} supports no version of {api} that this client speaks")]
    UnsupportedApi {
        /// The broker's `host:port`.
        addr: String,
        /// The API's name, e.g. `Produce`.
        api: String,
    },
    /// An operation did not finish in time.
    #[error("timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    /// The partition has no leader right now, or the leader is not a known broker.
    #[error("no leader for {topic}-{partition}")]
    NoLeader {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// The partition is not among the consumer's assigned partitions.
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The producer was closed (or its background task ended) before the record was sent.
    #[error("producer is closed")]
    ProducerClosed,
}

impl Error {
    /// The Kafka error code, when the broker returned one.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka(e) => Some(e.code),
            _ => None,
        }
    }

    /// Whether retrying the same operation (after a metadata refresh) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka(e) => e.code.is_retriable(),
            Error::Connect { .. }
            | Error::Io { .. }
            | Error::Disconnected { .. }
            | Error::NoLeader { .. }
            | Error::Timeout(..) => true,
            _ => false,
        }
    }

    pub(crate) fn protocol(what: impl fmt::Display) -> Self {
        Error::Protocol(what.to_string())
    }
}

/// A Kafka error code with the broker's message, if it sent one.
///
/// Displays as Kafka names the error, e.g. `TOPIC_ALREADY_EXISTS: Topic 'x' already exists.`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    /// The error code.
    pub code: ResponseError,
    /// The broker's error message, if any.
    pub message: Option<String>,
}

impl KafkaError {
    /// Builds the error for `code`, or `None` when `code` is 0 (no error).
    pub fn from_code(code: i16, message: Option<&str>) -> Option<Self> {
        ResponseError::try_from_code(code).map(|code| KafkaError {
            code,
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        })
    }

    /// Kafka's name for the error, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn name(&self) -> String {
        kafka_error_name(self.code)
    }

    /// The broker's message, else the one Kafka's Java client shows for the code.
    pub fn description(&self) -> Option<&str> {
        self.message
            .as_deref()
            .or_else(|| default_message(self.code))
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(m) => write!(f, "{}: {}", self.name(), m),
            None => f.write_str(&self.name()),
        }
    }
}

impl std::error::Error for KafkaError {}

/// Turns a response's `(error_code, error_message)` into a `Result`.
pub(crate) fn check(code: i16, message: Option<&str>) -> Result<()> {
    match KafkaError::from_code(code, message) {
        Some(e) => Err(Error::Kafka(e)),
        None => Ok(()),
    }
}

/// Kafka's constant name for an error code (`Errors.java`), e.g. `NOT_LEADER_OR_FOLLOWER`.
pub fn kafka_error_name(code: ResponseError) -> String {
    if let ResponseError::Unknown(c) = code {
        return format!("UNKNOWN_ERROR_CODE_{c}");
    }
    // kafka-protocol names its variants by camel-casing Kafka's constants, so undoing
    // that gives Kafka's names back.
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// The message Kafka's Java client shows for errors the broker sends without one.
fn default_message(code: ResponseError) -> Option<&'static str> {
    use ResponseError as E;
    Some(match code {
        E::UnknownServerError => {
            "The server experienced an unexpected error when processing the request."
        }
        E::OffsetOutOfRange => {
            "The requested offset is not within the range of offsets maintained by the server."
        }
        E::CorruptMessage => "This message has failed its CRC checksum, exceeds the valid size, has a null key for a compacted topic, or is otherwise corrupt.",
        E::UnknownTopicOrPartition => "This server does not host this topic-partition.",
        E::LeaderNotAvailable => "There is no leader for this topic-partition as we are in the middle of a leadership election.",
        E::NotLeaderOrFollower => "For requests intended only for the leader, this error indicates that the broker is not the current leader. For requests intended for any replica, this error indicates that the broker is not a replica of the topic partition.",
        E::RequestTimedOut => "The request timed out.",
        E::MessageTooLarge => "The request included a message larger than the max message size the server will accept.",
        E::InvalidTopicException => "The request attempted to perform an operation on an invalid topic.",
        E::RecordListTooLarge => "The request included message batch larger than the configured segment size on the server.",
        E::NotEnoughReplicas => "Messages are rejected since there are fewer in-sync replicas than required.",
        E::NotEnoughReplicasAfterAppend => "Messages are written to the log, but to fewer in-sync replicas than required.",
        E::InvalidRequiredAcks => "Produce request specified an invalid value for required acks.",
        E::InvalidTimestamp => "The timestamp of the message is out of acceptable range.",
        E::UnsupportedVersion => "The version of API is not supported.",
        E::TopicAlreadyExists => "Topic with this name already exists.",
        E::InvalidPartitions => "Number of partitions is below 1.",
        E::InvalidReplicationFactor => "Replication factor is below 1 or larger than the number of available brokers.",
        E::InvalidConfig => "Configuration is invalid.",
        E::InvalidRequest => "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.",
        E::PolicyViolation => "Request parameters do not satisfy the configured policy.",
        E::KafkaStorageError => "Disk error when trying to access log file on the disk.",
        E::TopicDeletionDisabled => "Topic deletion is disabled.",
        E::UnsupportedCompressionType => "The requesting client does not support the compression type of given partition.",
        E::UnknownTopicId => "This server does not host this topic ID.",
        E::CoordinatorLoadInProgress => "The coordinator is loading and hence can't process requests.",
        E::CoordinatorNotAvailable => "The coordinator is not available.",
        E::NotCoordinator => "This is not the correct coordinator.",
        E::IllegalGeneration => "Specified group generation id is not valid.",
        E::InconsistentGroupProtocol => "The group member's supported protocols are incompatible with those of existing members or first group member tried to join with empty protocol type or empty protocol list.",
        E::InvalidGroupId => "The configured groupId is invalid.",
        E::UnknownMemberId => "The coordinator is not aware of this member.",
        E::InvalidSessionTimeout => "The session timeout is not within the range allowed by the broker (as configured by group.min.session.timeout.ms and group.max.session.timeout.ms).",
        E::RebalanceInProgress => "The group is rebalancing, so a rejoin is needed.",
        E::InvalidCommitOffsetSize => "The committing offset data size is not valid.",
        E::GroupAuthorizationFailed => "Group authorization failed.",
        E::NonEmptyGroup => "The group is not empty.",
        E::GroupIdNotFound => "The group id does not exist.",
        E::MemberIdRequired => "The group member needs to have a valid member id before actually entering a consumer group.",
        E::GroupMaxSizeReached => "The consumer group has reached its max size.",
        E::FencedInstanceId => "The broker rejected this static consumer since another consumer with the same group.instance.id has registered with a different member.id.",
        E::GroupSubscribedToTopic => "Deleting offsets of a topic is forbidden while the consumer group is actively subscribed to it.",
        E::OffsetMetadataTooLarge => "The metadata field of the offset request was too large.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_print_kafkas_name_and_the_broker_message() {
        let e = KafkaError::from_code(36, Some("Topic 'x' already exists."));
        let e = e.map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("TOPIC_ALREADY_EXISTS: Topic 'x' already exists.")
        );
    }

    #[test]
    fn kafka_error_names_match_kafkas_constants() {
        let name = |c: i16| ResponseError::try_from_code(c).map(kafka_error_name);
        assert_eq!(name(3).as_deref(), Some("UNKNOWN_TOPIC_OR_PARTITION"));
        assert_eq!(name(6).as_deref(), Some("NOT_LEADER_OR_FOLLOWER"));
        assert_eq!(name(17).as_deref(), Some("INVALID_TOPIC_EXCEPTION"));
        assert_eq!(name(-1).as_deref(), Some("UNKNOWN_SERVER_ERROR"));
        assert_eq!(name(9999).as_deref(), Some("UNKNOWN_ERROR_CODE_9999"));
        assert_eq!(name(0), None);
    }

    #[test]
    fn errors_without_a_broker_message_use_kafkas_default_text() {
        let e = KafkaError::from_code(3, None).map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("UNKNOWN_TOPIC_OR_PARTITION: This server does not host this topic-partition.")
        );
    }
}
