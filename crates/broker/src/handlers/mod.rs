//! Request handlers, one file per Kafka API family. Each is thin: check the
//! request, call a broker service, build the response.

pub(crate) mod api_versions;
pub(crate) mod cluster;
pub(crate) mod configs;
mod consumer_group;
mod delete_records;
pub(crate) mod describe_quorum;
pub(crate) mod fetch;
mod groups;
mod list_offsets;
mod log_dirs;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod producer_ids;
pub(crate) mod txn_markers;
pub(crate) mod topics;

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::group::ClientInfo;
use crate::Broker;

/// KIP-430 authorized operations with no authorizer: every operation Kafka
/// defines for the resource type (bit N is `AclOperation` code N).
pub(crate) mod authorized_operations {
    /// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    pub(crate) const TOPIC: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
    /// READ, DELETE, DESCRIBE.
    pub(crate) const GROUP: i32 = (1 << 3) | (1 << 6) | (1 << 8);
    /// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    pub(crate) const CLUSTER: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
    /// What Kafka answers when the request did not ask.
    pub(crate) const NOT_ASKED: i32 = i32::MIN;

    /// `operations` if asked for, else Kafka's "not asked" value.
    pub(crate) fn if_asked(asked: bool, operations: i32) -> i32 {
        if asked { operations } else { NOT_ASKED }
    }
}

/// What a handler gives back.
pub(crate) enum Reply {
    /// Send this response (boxed: responses are large, the other variants empty).
    Response(Box<ResponseKind>),
    /// Send nothing (acks=0 produce).
    None,
    /// Close the connection (a failed acks=0 produce).
    Close,
}

/// The APIs this broker serves and the highest version of each it implements;
/// the lowest is the protocol crate's lowest.
const IMPLEMENTED: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 16),
    (ApiKey::ListOffsets, 10),
    (ApiKey::Metadata, 12),
    (ApiKey::FindCoordinator, 6),
    (ApiKey::ApiVersions, 4),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::AlterConfigs, 2),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::DescribeCluster, 2),
    (ApiKey::DescribeQuorum, 2),
    (ApiKey::InitProducerId, 5),
    (ApiKey::JoinGroup, 9),
    (ApiKey::SyncGroup, 5),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::OffsetCommit, 9),
    (ApiKey::OffsetFetch, 9),
    (ApiKey::ListGroups, 5),
    (ApiKey::DescribeGroups, 6),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::OffsetDelete, 0),
    (ApiKey::ConsumerGroupHeartbeat, 1),
    (ApiKey::ConsumerGroupDescribe, 1),
    (ApiKey::DeleteRecords, 2),
    (ApiKey::DescribeLogDirs, 4),
    (ApiKey::OffsetForLeaderEpoch, 4),
    (ApiKey::DescribeTopicPartitions, 0),
];

/// The version range served for an API, None if it is not served.
pub(crate) fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    IMPLEMENTED.iter().find(|(k, _)| *k == key).map(|(k, max)| {
        let range = k.valid_versions();
        (range.min, (*max).min(range.max))
    })
}

/// Every served API with its range, for ApiVersions.
pub(crate) fn all_supported() -> impl Iterator<Item = (ApiKey, i16, i16)> {
    IMPLEMENTED.iter().filter_map(|(k, _)| supported_versions(*k).map(|(min, max)| (*k, min, max)))
}

/// Runs the handler for a decoded request that came in on the listener named
/// `listener` (the endpoints a response names are those of that listener).
pub(crate) async fn handle(broker: &Arc<Broker>, client: &ClientInfo, listener: &str, version: i16, request: RequestKind) -> Reply {
    // Metadata changes go to the active controller (KIP-590 forwarding).
    let request = match request {
        RequestKind::CreateTopics(_)
        | RequestKind::DeleteTopics(_)
        | RequestKind::CreatePartitions(_)
        | RequestKind::IncrementalAlterConfigs(_)
        | RequestKind::AlterConfigs(_) => match crate::forwarding::forward(broker, version, request).await {
            Ok(response) => return Reply::Response(Box::new(response)),
            Err(request) => request,
        },
        other => other,
    };
    let response: ResponseKind = match request {
        RequestKind::ApiVersions(_) => api_versions::handle().into(),
        RequestKind::Metadata(req) => metadata::handle(broker, req, version, listener).into(),
        RequestKind::DescribeTopicPartitions(req) => metadata::describe_topic_partitions(broker, req, listener).into(),
        RequestKind::Produce(req) => match produce::handle(broker, req, version, listener).await {
            produce::ProduceOutcome::Respond(resp) => resp.into(),
            produce::ProduceOutcome::Silent => return Reply::None,
            produce::ProduceOutcome::Close => return Reply::Close,
        },
        RequestKind::ListOffsets(req) => list_offsets::handle(broker, req, version).into(),
        // These create or delete logs and fsync the metadata log.
        RequestKind::CreateTopics(req) => blocking(|| topics::create(broker, req, version)).into(),
        RequestKind::DeleteTopics(req) => blocking(|| topics::delete(broker, req)).into(),
        RequestKind::CreatePartitions(req) => blocking(|| topics::create_partitions(broker, req)).into(),
        RequestKind::DescribeConfigs(req) => configs::describe(broker, req).into(),
        RequestKind::DescribeCluster(req) => cluster::describe(broker, req, version, listener).into(),
        RequestKind::DescribeQuorum(req) => describe_quorum::forward_or_handle(broker, &req, version).await.into(),
        RequestKind::AlterConfigs(req) => blocking(|| configs::alter(broker, req)).into(),
        RequestKind::IncrementalAlterConfigs(req) => blocking(|| configs::incremental_alter(broker, req)).into(),
        RequestKind::InitProducerId(req) => producer_ids::init(broker, req).into(),
        RequestKind::FindCoordinator(req) => cluster::find_coordinator(broker, req, version, listener).into(),
        RequestKind::JoinGroup(req) => groups::join(broker, client, req, version).await.into(),
        RequestKind::SyncGroup(req) => groups::sync(broker, req).await.into(),
        RequestKind::Heartbeat(req) => groups::heartbeat(broker, req).await.into(),
        RequestKind::LeaveGroup(req) => groups::leave(broker, req, version).await.into(),
        RequestKind::ListGroups(req) => groups::list(broker, req).into(),
        RequestKind::DescribeGroups(req) => groups::describe(broker, req, version).into(),
        RequestKind::DeleteGroups(req) => groups::delete(broker, req).await.into(),
        RequestKind::OffsetCommit(req) => offsets::commit(broker, req, version).await.into(),
        RequestKind::OffsetFetch(req) => offsets::fetch(broker, req, version).into(),
        RequestKind::OffsetDelete(req) => offsets::delete(broker, req).await.into(),
        RequestKind::ConsumerGroupHeartbeat(req) => consumer_group::heartbeat(broker, client, req, version).await.into(),
        RequestKind::ConsumerGroupDescribe(req) => consumer_group::describe(broker, req, version).into(),
        // Deletes segments and fsyncs the log start offset checkpoint.
        RequestKind::DeleteRecords(req) => blocking(|| delete_records::handle(broker, req)).into(),
        RequestKind::DescribeLogDirs(req) => log_dirs::describe(broker, req).into(),
        RequestKind::OffsetForLeaderEpoch(req) => offset_for_leader_epoch::handle(broker, req).into(),
        RequestKind::WriteTxnMarkers(req) => txn_markers::write(broker, req).await.into(),
        other => {
            // Unreachable in practice: net.rs only decodes served APIs, and
            // dispatches Fetch itself (its response holds budgeted memory).
            tracing::warn!(request = ?std::mem::discriminant(&other), "no handler");
            return Reply::None;
        }
    };
    Reply::Response(Box::new(response))
}

pub(crate) use crate::blocking;

/// A string for a response field.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
